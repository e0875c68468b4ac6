//go:build lab

package lab

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ScenarioDir holds the SIPp scenarios (test/lab/scenarios).
func ScenarioDir() string { return filepath.Join(labDir(), "scenarios") }

// SIPpSpec describes one SIPp run.
type SIPpSpec struct {
	NS       string // namespace to run in
	Scenario string // file in ScenarioDir, or a path
	// Local is the -i address and Port the -p port SIPp binds. Empty/zero:
	// SIPp's own choice.
	Local string
	Port  int
	// Remote is the destination "ip:port" of a UAC scenario; empty for a UAS.
	Remote string
	// Keys are -key NAME VALUE pairs ([NAME] in the scenario).
	Keys map[string]string
	// Args are further SIPp arguments (-m 1, -au, -ap, -d, ...).
	Args []string
	// Timeout bounds the run: SIPp gets -timeout and -timeout_error (it
	// exits with a failure when reached), and the harness kills it 15 s
	// later if it is still running. If zero, 60s.
	Timeout time.Duration
	// Name labels the artifacts; default: the scenario's base name and NS.
	Name string
}

// SIPpRun is a SIPp process running in the background.
type SIPpRun struct {
	Spec SIPpSpec
	Name string // artifact prefix: <Dir>/<Name>.*
	Proc *Proc
	lab  *Lab
}

// SIPpResult is what one SIPp run left behind.
type SIPpResult struct {
	Name     string
	ExitCode int               // SIPp: 0 all calls succeeded, 1 some failed, 97 internal command, 99 no calls, 255 fatal
	Stat     map[string]string // last row of the -trace_stat file, by column
	Counts   map[string]int    // last row of the -trace_counts file: "<step>_<message>_<kind>" -> n
	Err      error             // harness trouble: did not exit, files missing
	dir      string
}

// StartSIPp starts SIPp in the background with every trace the harness
// reads: statistics (-trace_stat), per-step counts (-trace_counts),
// unexpected messages (-trace_err), all messages (-trace_msg), the final
// screen (-trace_screen) and <log> actions (-trace_logs). The scenario is
// copied into the artifact directory first, and SIPp runs there.
func (l *Lab) StartSIPp(s SIPpSpec) *SIPpRun {
	l.T.Helper()
	if s.Timeout == 0 {
		s.Timeout = 60 * time.Second
	}
	src := s.Scenario
	if !filepath.IsAbs(src) {
		src = filepath.Join(ScenarioDir(), src)
	}
	xml, err := os.ReadFile(src)
	if err != nil {
		l.T.Fatalf("lab: sipp scenario: %v", err)
	}
	base := strings.TrimSuffix(filepath.Base(src), ".xml")
	name := s.Name
	if name == "" {
		name = base + "-" + strings.TrimPrefix(s.NS, Prefix)
	}
	name = l.nextName("sipp", name)
	if err := os.WriteFile(filepath.Join(l.Dir, name+".xml"), xml, 0o644); err != nil {
		l.T.Fatalf("lab: %v", err)
	}
	args := []string{"sipp", "-sf", name + ".xml", "-nostdin",
		"-timeout", fmt.Sprintf("%ds", int(s.Timeout.Seconds())), "-timeout_error",
		"-trace_stat", "-stf", name + "_stat.csv", "-fd", "1",
		"-trace_counts",
		"-trace_err", "-error_file", name + "_errors.log",
		"-trace_msg", "-message_file", name + "_messages.log",
		"-trace_screen", "-screen_file", name + "_screen.log",
		"-trace_logs", "-log_file", name + "_logs.log",
		// The lab checks behaviour, not performance, and may share a busy
		// host: SIPp's watchdog would otherwise end a 40 s call after 120
		// scheduling hiccups of 500 ms.
		"-watchdog_minor_threshold", "2000", "-watchdog_minor_maxtriggers", "1000",
		"-watchdog_major_threshold", "10000", "-watchdog_major_maxtriggers", "100",
		// A call SIPp aborts (timeout, unexpected message) fails anyway; its
		// automatic BYE ignores the route set and only adds noise to
		// captures and logs.
		"-default_behaviors", "all,-bye",
	}
	if s.Local != "" {
		args = append(args, "-i", s.Local)
	}
	if s.Port != 0 {
		args = append(args, "-p", strconv.Itoa(s.Port))
	}
	keys := make([]string, 0, len(s.Keys))
	for k := range s.Keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-key", k, s.Keys[k])
	}
	args = append(args, s.Args...)
	if s.Remote != "" {
		args = append(args, s.Remote)
	}
	if err := os.WriteFile(filepath.Join(l.Dir, name+".cmd"), []byte(strings.Join(append([]string{"ip", "netns", "exec", s.NS}, args...), " ")+"\n"), 0o644); err != nil {
		l.T.Fatalf("lab: %v", err)
	}
	return &SIPpRun{Spec: s, Name: name, Proc: l.Start(s.NS, name, args...), lab: l}
}

// Wait waits for SIPp to exit (at most Spec.Timeout + 15 s, then it is
// stopped) and collects its result.
func (r *SIPpRun) Wait() *SIPpResult {
	res := &SIPpResult{Name: r.Name, dir: r.lab.Dir, ExitCode: -1}
	code, err := r.Proc.Wait(r.Spec.Timeout + 15*time.Second)
	if err != nil {
		r.Proc.Stop()
		res.Err = err
	} else {
		res.ExitCode = code
	}
	res.collect(r.Proc.PID())
	return res
}

// Stop ends a SIPp run early (SIGTERM, then SIGKILL) and collects what it
// left.
func (r *SIPpRun) Stop() *SIPpResult {
	r.Proc.Stop()
	return r.Wait()
}

// RunSIPp runs SIPp to completion.
func (l *Lab) RunSIPp(s SIPpSpec) *SIPpResult {
	l.T.Helper()
	return l.StartSIPp(s).Wait()
}

// SIPp runs scenario in ns with raw SIPp arguments (the harness adds the
// trace options and a 60 s bound) and returns the result.
func (l *Lab) SIPp(ns, scenario string, args ...string) *SIPpResult {
	l.T.Helper()
	return l.RunSIPp(SIPpSpec{NS: ns, Scenario: scenario, Args: args})
}

func (res *SIPpResult) collect(pid int) {
	res.Stat = lastCSVRow(filepath.Join(res.dir, res.Name+"_stat.csv"))
	counts, _ := filepath.Glob(filepath.Join(res.dir, fmt.Sprintf("*_%d_counts.csv", pid)))
	if len(counts) > 0 {
		res.Counts = map[string]int{}
		for k, v := range lastCSVRow(counts[0]) {
			if n, err := strconv.Atoi(v); err == nil && strings.Contains(k, "_") {
				res.Counts[k] = n
			}
		}
	}
	if res.Stat == nil && res.Err == nil {
		res.Err = fmt.Errorf("sipp %s left no statistics (did it start? see %s.stderr)", res.Name, res.Name)
	}
}

// lastCSVRow reads a SIPp CSV file (";"-separated, header first) and returns
// its last row keyed by the header.
func lastCSVRow(path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var header, last []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "; \r")
		if line == "" {
			continue
		}
		if header == nil {
			header = strings.Split(line, ";")
			continue
		}
		last = strings.Split(line, ";")
	}
	if header == nil || last == nil {
		return nil
	}
	row := map[string]string{}
	for i, h := range header {
		if i < len(last) {
			row[h] = strings.TrimSpace(last[i])
		}
	}
	return row
}

// OK reports whether SIPp exited 0 (every call succeeded).
func (res *SIPpResult) OK() bool { return res.Err == nil && res.ExitCode == 0 }

func (res *SIPpResult) stat(col string) int {
	n, _ := strconv.Atoi(res.Stat[col])
	return n
}

// Successful is the number of calls that ran to the end of the scenario.
func (res *SIPpResult) Successful() int { return res.stat("SuccessfulCall(C)") }

// Failed is the number of failed calls.
func (res *SIPpResult) Failed() int { return res.stat("FailedCall(C)") }

// Count sums a per-step counter over every step of the scenario about
// message (a method, a status code, "Pause", or "*" for any) of the given
// kind: "Recv", "Sent", "Retrans", "Timeout" or "Unexp".
func (res *SIPpResult) Count(message, kind string) int {
	return res.CountBetween(0, 1<<30, message, kind)
}

// CountBetween is Count over the steps from (inclusive) to to (exclusive).
func (res *SIPpResult) CountBetween(from, to int, message, kind string) int {
	n := 0
	for k, v := range res.Counts {
		step, msg, knd, ok := splitCountKey(k)
		if ok && step >= from && step < to && (message == "*" || msg == message) && knd == kind {
			n += v
		}
	}
	return n
}

// StepsOf returns, in order, the indexes of the scenario steps that have a
// counter for message and kind; StepsOf("REGISTER", "Sent") finds the sends.
func (res *SIPpResult) StepsOf(message, kind string) []int {
	var steps []int
	for k := range res.Counts {
		step, msg, knd, ok := splitCountKey(k)
		if ok && msg == message && knd == kind {
			steps = append(steps, step)
		}
	}
	sort.Ints(steps)
	return steps
}

// splitCountKey splits a -trace_counts column such as "3_ACK_Recv".
func splitCountKey(k string) (step int, message, kind string, ok bool) {
	f := strings.Split(k, "_")
	if len(f) != 3 {
		return 0, "", "", false
	}
	step, err := strconv.Atoi(f[0])
	return step, f[1], f[2], err == nil
}

// Received lists the first line of every SIP message SIPp received, in
// order, from its message trace.
func (res *SIPpResult) Received() []string {
	return firstLines(filepath.Join(res.dir, res.Name+"_messages.log"), "message received")
}

// Sent lists the first line of every SIP message SIPp sent.
func (res *SIPpResult) Sent() []string {
	return firstLines(filepath.Join(res.dir, res.Name+"_messages.log"), "message sent")
}

// Messages returns the whole message trace.
func (res *SIPpResult) Messages() string {
	b, _ := os.ReadFile(filepath.Join(res.dir, res.Name+"_messages.log"))
	return string(b)
}

func firstLines(path, marker string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	want := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.Contains(line, marker):
			want = true
		case want && line != "":
			out = append(out, line)
			want = false
		}
	}
	return out
}

// Summary is a one-paragraph account of the run for failure messages:
// exit code, calls, the reasons SIPp counted failures, what it received and
// the tail of its error log.
func (res *SIPpResult) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sipp %s: exit %d, %d successful, %d failed calls", res.Name, res.ExitCode, res.Successful(), res.Failed())
	if res.Err != nil {
		fmt.Fprintf(&b, " (%v)", res.Err)
	}
	var reasons []string
	for k, v := range res.Stat {
		if strings.HasPrefix(k, "Failed") && strings.HasSuffix(k, "(C)") && k != "FailedCall(C)" && v != "0" && v != "" {
			reasons = append(reasons, strings.TrimSuffix(k, "(C)")+"="+v)
		}
	}
	sort.Strings(reasons)
	if len(reasons) > 0 {
		fmt.Fprintf(&b, "; %s", strings.Join(reasons, " "))
	}
	if rx := res.Received(); len(rx) > 0 {
		fmt.Fprintf(&b, "; received: %s", strings.Join(rx, " | "))
	} else {
		b.WriteString("; received nothing")
	}
	if e := tailFile(filepath.Join(res.dir, res.Name+"_errors.log"), 6); e != "" {
		fmt.Fprintf(&b, "\n  errors log tail:\n%s", e)
	}
	if e := tailFile(filepath.Join(res.dir, res.Name+".stderr"), 4); e != "" {
		fmt.Fprintf(&b, "\n  stderr tail:\n%s", e)
	}
	fmt.Fprintf(&b, "\n  artifacts: %s/%s*", res.dir, res.Name)
	return b.String()
}

// Phone is a SIP account on a phone in one of the lab's namespaces.
type Phone struct {
	Name     string // short label for artifacts: "a", "b", "pub"
	NS       string
	IP       string // the phone's own address (private behind a NAT)
	Port     int    // its SIP port; the same for every SIPp run of this phone
	User     string
	Password string
	Domain   string
}

// The lab's phones, without an account; see Phone.As.
var (
	PhoneA   = Phone{Name: "a", NS: NSA, IP: PhoneIP, Port: 5060}
	PhoneB   = Phone{Name: "b", NS: NSB, IP: PhoneIP, Port: 5060}
	PhonePub = Phone{Name: "pub", NS: NSPub, IP: PubIP, Port: 5060}
)

// As returns p with an account.
func (p Phone) As(user, password, domain string) Phone {
	p.User, p.Password, p.Domain = user, password, domain
	return p
}

func (p Phone) spec(scenario, remote string) SIPpSpec {
	return SIPpSpec{
		NS:       p.NS,
		Scenario: scenario,
		Local:    p.IP,
		Port:     p.Port,
		Remote:   remote,
		Keys:     map[string]string{"user": p.User, "domain": p.Domain},
		Name:     strings.TrimSuffix(scenario, ".xml") + "-" + p.Name,
	}
}

// Register runs uac_register.xml: p registers at registrar ("ip:port") with
// its account, answering one digest challenge, from p.IP:p.Port.
func (l *Lab) Register(p Phone, registrar string) *SIPpResult {
	l.T.Helper()
	s := p.spec("uac_register.xml", registrar)
	s.Keys["expires"] = "300"
	s.Args = []string{"-m", "1", "-aa", "-au", p.User, "-ap", p.Password, "-auth_uri", p.Domain}
	s.Timeout = 30 * time.Second
	return l.RunSIPp(s)
}

// StartCallee starts callee.xml on p: answer one INVITE, hold for hold, then
// send BYE. Register p first.
func (l *Lab) StartCallee(p Phone, hold time.Duration) *SIPpRun {
	l.T.Helper()
	s := p.spec("callee.xml", "")
	s.Args = []string{"-d", strconv.Itoa(int(hold.Milliseconds()))}
	s.Timeout = hold + 90*time.Second
	return l.StartSIPp(s)
}

// StartCaller starts caller.xml on p: call callee@p.Domain through proxy
// ("ip:port"), answering one challenge, and wait up to hold + 30 s for the
// callee's BYE.
func (l *Lab) StartCaller(p Phone, proxy, callee string, hold time.Duration) *SIPpRun {
	l.T.Helper()
	s := p.spec("caller.xml", proxy)
	s.Keys["callee"] = callee
	s.Args = []string{"-m", "1", "-aa", "-au", p.User, "-ap", p.Password,
		"-auth_uri", callee + "@" + p.Domain,
		"-recv_timeout", strconv.Itoa(int((hold + 30*time.Second).Milliseconds()))}
	s.Timeout = hold + 90*time.Second
	return l.StartSIPp(s)
}

// WaitListening waits until the SIPp run listens on its UDP port (a UAS is
// ready once it has bound its socket). It fails at once if SIPp exits.
func (r *SIPpRun) WaitListening(timeout time.Duration) error {
	return r.lab.waitListening(r.Spec.NS, r.Spec.Port, r.Proc, timeout)
}

// WaitListening waits until something listens on UDP port in ns.
func (l *Lab) WaitListening(ns string, port int, timeout time.Duration) error {
	return l.waitListening(ns, port, nil, timeout)
}

func (l *Lab) waitListening(ns string, port int, p *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := l.Exec(ns, "ss", "-Hlun", fmt.Sprintf("sport = :%d", port))
		if err == nil && strings.TrimSpace(out) != "" {
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited (code %d) before listening on udp port %d: %s", p.Name, p.ExitCode(), port, p.Tail(5))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on udp port %d in %s after %v", port, ns, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RunBadPassword runs uac_register_badpass.xml: attempts REGISTERs with
// p's (wrong) password, one after another.
func (l *Lab) RunBadPassword(p Phone, registrar string, attempts int) *SIPpResult {
	l.T.Helper()
	s := p.spec("uac_register_badpass.xml", registrar)
	s.Keys["expires"] = "300"
	s.Args = []string{"-m", strconv.Itoa(attempts), "-l", "1", "-aa",
		"-au", p.User, "-ap", p.Password, "-auth_uri", p.Domain}
	s.Timeout = time.Duration(attempts)*5*time.Second + 10*time.Second
	return l.RunSIPp(s)
}

// BanOutcome is what a uac_register_badpass.xml run met.
type BanOutcome struct {
	Attempts        int // calls SIPp ran
	Challenged      int // first REGISTERs answered with 401/407
	Refused         int // wrong-password REGISTERs answered with 401, 403 or 407
	SilentFirst     int // first REGISTERs that got no answer at all
	SilentAfterAuth int // wrong-password REGISTERs that got no answer at all
}

// BanOutcomeOf reads a uac_register_badpass.xml result from its per-step
// counts: the steps before the second REGISTER are the first attempt's.
func BanOutcomeOf(res *SIPpResult) BanOutcome {
	o := BanOutcome{Attempts: res.Successful() + res.Failed()}
	regs := res.StepsOf("REGISTER", "Sent")
	if len(regs) != 2 {
		return o
	}
	first, second, end := regs[0], regs[1], 1<<30
	for _, code := range []string{"401", "407"} {
		o.Challenged += res.CountBetween(first, second, code, "Recv")
	}
	for _, code := range []string{"401", "403", "407"} {
		o.Refused += res.CountBetween(second, end, code, "Recv")
	}
	o.SilentFirst = res.CountBetween(first, second, "*", "Timeout")
	o.SilentAfterAuth = res.CountBetween(second, end, "*", "Timeout")
	return o
}
