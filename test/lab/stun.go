//go:build lab

package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// STUN in the lab: sipedge's STUN server (RFC 5780 mode on se-edge's two
// addresses), `sipedge probe` run from the phones' namespaces, and two
// third-party programs from Debian for interop: the classic RFC 3489 client
// `stun` (package stun-client) and server `stund` (package stun-server),
// both Vovida's stund 0.97.

// Namespaces and addresses of the STUN work.
const (
	// NSSTUN is a host on the internet bridge with two public addresses
	// (AddSTUNHost), for a third-party STUN server.
	NSSTUN      = "se-stun"
	STUNHostIP  = "198.51.100.40" // se-stun's primary address
	STUNHostIP2 = "198.51.100.41" // se-stun's second address
	// EdgeSTUN is sipedge's STUN server in the lab (primary IP and port);
	// the alternate address is EdgeIP2, the alternate port 3479.
	EdgeSTUN = EdgeIP + ":3478"
)

// STUNConfig is the [stun] table that puts sipedge's STUN server into RFC
// 5780 mode on se-edge's two addresses (3478 and 3479 on each), for
// EdgeConfig.Extra.
const STUNConfig = "[stun]\nlisten = [\"" + EdgeSTUN + "\"]\nalternate_address = \"" + EdgeIP2 + "\"\n"

// AddSTUNHost adds namespace se-stun to the internet bridge with the two
// addresses STUNHostIP and STUNHostIP2 on its eth0 (no NAT, no firewall,
// no default route) and checks that se-pub can reach both.
func (l *Lab) AddSTUNHost() error {
	if _, err := run(context.Background(), "ip", "netns", "add", NSSTUN); err != nil {
		return err
	}
	steps := []struct {
		ns   string
		args []string
	}{
		{NSSTUN, []string{"ip", "link", "set", "lo", "up"}},
		{NSSTUN, []string{"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}},
		{NSInet, []string{"ip", "link", "add", "p-stun", "type", "veth", "peer", "name", IfPublic, "netns", NSSTUN}},
		{NSInet, []string{"ip", "link", "set", "p-stun", "master", "br0", "up"}},
		{NSSTUN, []string{"ip", "addr", "add", STUNHostIP + inetPrefix, "dev", IfPublic}},
		{NSSTUN, []string{"ip", "addr", "add", STUNHostIP2 + inetPrefix, "dev", IfPublic}},
		{NSSTUN, []string{"ip", "link", "set", IfPublic, "up"}},
	}
	for _, s := range steps {
		if err := l.must(s.ns, s.args...); err != nil {
			return fmt.Errorf("lab: adding %s: %w", NSSTUN, err)
		}
	}
	for _, ip := range []string{STUNHostIP, STUNHostIP2} {
		if _, err := l.Ping(NSPub, ip); err != nil {
			return fmt.Errorf("lab: after adding %s: %w", NSSTUN, err)
		}
	}
	return nil
}

// ProbeReport is the part of `sipedge probe --json` the lab checks. It is
// decoded with its own types (not natprobe.Report) so that the tests also
// pin the JSON field names, which the probe promises to keep stable.
type ProbeReport struct {
	Server struct {
		Name           string   `json:"name"`
		Address        string   `json:"address"`
		Software       string   `json:"software"`
		OtherAddress   string   `json:"other_address"`
		ResponseOrigin string   `json:"response_origin"`
		RFC5780        bool     `json:"rfc5780"`
		ClassicRFC3489 bool     `json:"classic_rfc3489"`
		ChangeRequest  *bool    `json:"change_request"`
		ResponsePort   *bool    `json:"response_port"`
		Notes          []string `json:"notes"`
	} `json:"server"`
	LocalAddress  string `json:"local_address"`
	PublicAddress string `json:"public_address"`
	NATPresent    bool   `json:"nat_present"`
	Mapping       string `json:"mapping"`
	Filtering     string `json:"filtering"`
	RFC3489Name   string `json:"rfc3489_name"`
	Rewriting     struct {
		Detected         *bool  `json:"detected"`
		MappedAddress    string `json:"mapped_address"`
		XORMappedAddress string `json:"xor_mapped_address"`
		Evidence         string `json:"evidence"`
	} `json:"rewriting"`
	Hairpinning     *bool `json:"hairpinning"`
	BindingLifetime *struct {
		Status  string  `json:"status"`
		Seconds float64 `json:"seconds"`
		LowerS  float64 `json:"lower_s"`
		UpperS  float64 `json:"upper_s"`
		MaxS    float64 `json:"max_s"`
		Steps   []struct {
			IdleS    float64 `json:"idle_s"`
			Survived *bool   `json:"survived"`
			Note     string  `json:"note"`
		} `json:"steps"`
		Note string `json:"note"`
	} `json:"binding_lifetime"`
	Tests []struct {
		Name         string  `json:"name"`
		From         string  `json:"from"`
		To           string  `json:"to"`
		Request      string  `json:"request"`
		Outcome      string  `json:"outcome"`
		ResponseFrom string  `json:"response_from"`
		Mapped       string  `json:"mapped"`
		RTTMs        float64 `json:"rtt_ms"`
		Sent         int     `json:"sent"`
		Note         string  `json:"note"`
	} `json:"tests"`
	Advice    []string `json:"advice"`
	DurationS float64  `json:"duration_s"`
	Error     string   `json:"error"`
}

// Test returns the probe's exchange called name ("binding", "mapping-2",
// "filtering-3", "hairpin", ...) as one line for logs, or "" if absent.
func (r *ProbeReport) Test(name string) string {
	for _, t := range r.Tests {
		if t.Name == name {
			s := fmt.Sprintf("%s %s -> %s [%s]: %s", t.Name, t.From, t.To, t.Request, t.Outcome)
			if t.ResponseFrom != "" {
				s += " from " + t.ResponseFrom
			}
			if t.Mapped != "" {
				s += " mapped " + t.Mapped
			}
			if t.Note != "" {
				s += " (" + t.Note + ")"
			}
			return s
		}
	}
	return ""
}

// ProbeRun is one run of `sipedge probe`.
type ProbeRun struct {
	NS       string
	Cmd      string   // the binary run
	Args     []string // after the binary
	ExitCode int
	Elapsed  time.Duration // wall time of the whole command
	Stdout   string        // the JSON report (with --json)
	Stderr   string        // progress lines and the error
	Report   *ProbeReport  // nil unless stdout held a JSON report
	JSONErr  error         // why Report is nil
	Files    string        // artifact files: <Files>.stdout, .stderr, .cmd, .json (the report)
	proc     *Proc
	start    time.Time
}

// StartProbe runs `sipedge probe --json ARGS...` in namespace ns in the
// background (the binary built by BuildSipedge); Wait collects it. stdout
// (the JSON report) and stderr (progress) are kept as artifacts
// NN-probe-<ns>-<label>.stdout/.stderr, with the command line in .cmd.
func (l *Lab) StartProbe(ns, label string, args ...string) *ProbeRun {
	l.T.Helper()
	return l.startProbe(ns, "probe", label, append([]string{BuildSipedge(l.T), "probe", "--json"}, args...))
}

func (l *Lab) startProbe(ns, kind, label string, full []string) *ProbeRun {
	l.T.Helper()
	name := l.nextName(kind, ns, label)
	_ = os.WriteFile(filepath.Join(l.Dir, name+".cmd"), []byte("ip netns exec "+ns+" "+strings.Join(full, " ")+"\n"), 0o644)
	r := &ProbeRun{NS: ns, Cmd: filepath.Base(full[0]), Args: full[1:], Files: filepath.Join(l.Dir, name), start: time.Now()}
	r.proc = l.Start(ns, name, full...)
	return r
}

// Wait waits up to timeout for the probe and parses its report.
func (r *ProbeRun) Wait(timeout time.Duration) error {
	code, err := r.proc.Wait(timeout)
	r.Elapsed = time.Since(r.start)
	if err != nil {
		r.proc.Stop()
		code = r.proc.ExitCode()
	}
	r.ExitCode = code
	out, _ := os.ReadFile(r.proc.Stdout)
	errb, _ := os.ReadFile(r.proc.Stderr)
	r.Stdout, r.Stderr = string(out), string(errb)
	if strings.TrimSpace(r.Stdout) == "" {
		r.JSONErr = fmt.Errorf("no report on stdout")
	} else {
		var rep ProbeReport
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			r.JSONErr = jerr
		} else {
			r.Report = &rep
			_ = os.WriteFile(r.Files+".json", out, 0o644)
		}
	}
	return err
}

// Summary is the run for a failure message: command, exit code, time,
// stderr and the JSON report.
func (r *ProbeRun) Summary() string {
	return fmt.Sprintf("%s %s in %s: exit %d after %.2fs\n--- stderr:\n%s--- stdout:\n%s",
		r.Cmd, strings.Join(r.Args, " "), r.NS, r.ExitCode, r.Elapsed.Seconds(), r.Stderr, r.Stdout)
}

// StunClientRun is one run of Debian's classic STUN client `stun` (package
// stun-client, Vovida 0.97).
type StunClientRun struct {
	NS       string
	Server   string
	ExitCode int
	Elapsed  time.Duration
	Output   string // stdout and stderr (-v), as written
	// Primary is what follows "Primary: " (the NAT type and the port and
	// hairpin flags), Value what "Return value is 0x…" says.
	Primary string
	Value   int
}

// The client's NAT types (RFC 3489 §10.1 tests I, II, III and I to the
// CHANGED-ADDRESS, plus a hairpin test): the low nibble of the return value
// is the type, 0x01 "preserves ports", 0x10 "no hairpin". The process exit
// code is that value (for one interface, it fits in a byte).
const (
	StunOpen             = 0x00 // "Open": no NAT, test II answered
	StunFullCone         = 0x02 // "Independent Mapping, Independent Filter"
	StunRestrictedCone   = 0x04 // "Independent Mapping, Address Dependent Filter"
	StunPortRestricted   = 0x06 // "Independent Mapping, Port Dependent Filter"
	StunSymmetric        = 0x08 // "Dependent Mapping"
	StunFirewall         = 0x0A // "Firewall": no NAT, test II not answered
	StunBlocked          = 0x0C // "Blocked or could not reach STUN server"
	StunUnknown          = 0x0E
	StunFlagPreservePort = 0x01
	StunFlagNoHairpin    = 0x10
)

var (
	stunPrimary = regexp.MustCompile(`(?m)^Primary: (.*?)\s*$`)
	stunValue   = regexp.MustCompile(`Return value is 0x([0-9a-fA-F]+)`)
)

// StunClient runs `stun SERVER -v EXTRA...` in ns (bounded by 20 s), keeps
// its output as the artifact NN-stun-<ns>-<label>.out and parses its
// verdict. EXTRA may be a test number: none (or 0) is the NAT type
// discovery; -1 opens an RTP/RTCP socket pair with plain Binding requests
// (stunOpenSocketPair: it prints "Got port pair at N", or "Opened a stun
// socket pair FAILED" when an answer does not parse).
func (l *Lab) StunClient(ns, label, server string, extra ...string) (*StunClientRun, error) {
	name := l.nextName("stun", ns, label)
	r := &StunClientRun{NS: ns, Server: server, ExitCode: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	args := append([]string{"netns", "exec", ns, "stun", server, "-v"}, extra...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	r.Elapsed = time.Since(start)
	r.Output = string(out)
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	_ = os.WriteFile(filepath.Join(l.Dir, name+".out"),
		[]byte(fmt.Sprintf("# ip %s\n# exit %d after %v\n%s", strings.Join(args, " "), r.ExitCode, r.Elapsed, out)), 0o644)
	if ctx.Err() != nil {
		return r, fmt.Errorf("stun %s in %s: still running after 20 s:\n%s", server, ns, out)
	}
	if m := stunPrimary.FindStringSubmatch(r.Output); m != nil {
		r.Primary = strings.TrimSpace(m[1])
	}
	if m := stunValue.FindStringSubmatch(r.Output); m != nil {
		v, _ := strconv.ParseInt(m[1], 16, 64)
		r.Value = int(v)
	} else {
		return r, fmt.Errorf("stun %s in %s: no \"Return value is\" line (exit %d, %v):\n%s", server, ns, r.ExitCode, err, r.Output)
	}
	return r, nil
}

// Type is the NAT type nibble of the return value (StunOpen …).
func (r *StunClientRun) Type() int { return r.Value & 0x0E }

// StartStund runs Debian's classic RFC 3489 STUN server `stund` (package
// stun-server) in ns, verbose, on ip1 and ip2, ports 3478 and 3479 (the
// four sockets a CHANGE-REQUEST needs), and waits until its four sockets
// are bound.
func (l *Lab) StartStund(ns, ip1, ip2 string) (*Proc, error) {
	l.T.Helper()
	p := l.Start(ns, "stund", "stund", "-v", "-h", ip1, "-a", ip2, "-p", "3478", "-o", "3479")
	want := []string{ip1 + ":3478", ip1 + ":3479", ip2 + ":3478", ip2 + ":3479"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := l.Exec(ns, "ss", "-Hnlu")
		if err == nil {
			missing := 0
			for _, w := range want {
				if !strings.Contains(out, w) {
					missing++
				}
			}
			if missing == 0 {
				return p, nil
			}
		}
		if p.Exited() {
			return p, fmt.Errorf("stund exited with code %d:\n%s", p.ExitCode(), tailFile(p.Stdout, 20)+p.Tail(20))
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("stund has not bound %v after 10 s; ss -lnu:\n%s", want, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// STUNCounters returns sipedge's STUN server counters from /metrics
// ("requests", "answered", "error_responses", "ignored", "rate_limited",
// "tcp_connections": the sipedge_stun_<name>_total series).
func (s *Sipedge) STUNCounters() (map[string]uint64, error) {
	m, err := s.Metrics()
	if err != nil {
		return nil, err
	}
	c := map[string]uint64{}
	for name, v := range m {
		if strings.HasPrefix(name, "sipedge_stun_") && strings.HasSuffix(name, "_total") && !strings.Contains(name, "{") {
			c[strings.TrimSuffix(strings.TrimPrefix(name, "sipedge_stun_"), "_total")] = uint64(v)
		}
	}
	if len(c) == 0 {
		return nil, fmt.Errorf("no sipedge_stun_*_total series in /metrics")
	}
	return c, nil
}
