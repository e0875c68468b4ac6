// Command kabench measures sipedge's keepalives at scale: N phones (default
// 100,000), each a UDP socket on its own loopback address, register with
// digest auth from behind a pretend NAT (private Via/Contact), then answer
// every OPTIONS sipedge sends them. Per sipedge run it records sipedge's
// CPU over whole keepalive intervals, the pings the phones saw (rate,
// spread over time, per-phone rhythm), sipedge's own counters (answers,
// misses, RTT), and sipedge's memory at baseline, with N registrations and
// keepalives off, and with keepalives on; then the admin endpoints' cost at
// that size and CPU/heap profiles.
//
//	kabench -mode full  -sipedge bench/out/keepalive/bin/sipedge   # ~5 min
//	kabench -mode quick -sipedge …                                  # ~2 min
//	kabench -summary bench/out/keepalive/runs/RUN                   # rebuild summary.md
//
// bench/keepalive/run.sh builds sipedge and kabench and calls this.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runSpec is one sipedge process of the plan.
type runSpec struct {
	Label    string
	Interval time.Duration // 0: keepalives off
	Window   time.Duration // measurement window (keepalives on) or idle window (off)
	Extras   bool          // admin endpoints and profiles after the window
}

type plan struct {
	mode      string
	n         int
	rate      float64
	runs      []runSpec
	profileS  int
	quietWait time.Duration
	// budget: a disturbed window is measured again only if the whole plan
	// still ends within it.
	budget time.Duration
}

// Result is one sipedge run (one JSON file).
type Result struct {
	Label       string  `json:"label"`
	Mode        string  `json:"mode"`
	Time        string  `json:"time"`
	Machine     string  `json:"machine"`
	Source      string  `json:"source"` // git revision of the tree sipedge was built from
	Phones      int     `json:"phones"`
	Workers     int     `json:"generator_workers"`
	IntervalS   float64 `json:"keepalive_interval_s"` // 0: off
	LoadAvg     string  `json:"loadavg_before"`
	OtherBefore float64 `json:"other_cores_before"`
	SipedgePID  int     `json:"sipedge_pid"`

	Baseline Mem       `json:"mem_baseline"`
	Reg      RegResult `json:"registration"`
	// Registrations and NATed are sipedge's own counts after registering.
	RegUDP        map[string]int64 `json:"registration_udp_errors"`
	Registrations int              `json:"status_registrations"`
	NATed         int              `json:"status_nated"`
	MemAfter      Mem              `json:"mem_after"`
	Idle          *CPU             `json:"idle_cpu,omitempty"`
	Window        *Window          `json:"window,omitempty"`
	// Discarded are windows measured again because other work disturbed
	// them (other > 0.25 cores).
	Discarded []*Window `json:"discarded_windows,omitempty"`
	Endpoints *Endpts   `json:"endpoints,omitempty"`
	// Totals: sipedge's keepalive counters at the end of the run.
	Totals      *Totals  `json:"keepalive_totals,omitempty"`
	Profiles    []string `json:"profiles,omitempty"`
	LogWarnings int      `json:"sipedge_log_lines"`
	Errors      []string `json:"errors,omitempty"`
	WallS       float64  `json:"wall_s"`
}

// Window is the keepalive measurement.
type Window struct {
	Seconds   float64 `json:"seconds"`
	Intervals float64 `json:"intervals"`
	CPU       CPU     `json:"cpu"`
	// The phones' view.
	Pings        uint64  `json:"pings_received"`
	PingsPerS    float64 `json:"pings_per_s"`
	ExpectedPerS float64 `json:"expected_per_s"`
	Answered     uint64  `json:"answers_sent_by_phones"`
	SendErrors   uint64  `json:"phone_send_errors"`
	UsPerPing    float64 `json:"sipedge_us_per_ping"`
	GenUsPerPing float64 `json:"generator_us_per_ping"`
	Spread       Spread  `json:"spread"`
	// PerPhone: how many phones received k pings in the window.
	PerPhone    map[string]int `json:"per_phone_pings"`
	PerPhoneMin uint32         `json:"per_phone_min"`
	PerPhoneMax uint32         `json:"per_phone_max"`
	Gap         GapSummary     `json:"gap"`
	// sipedge's view (/metrics deltas over the window, or values at its end).
	SEPings       float64            `json:"sipedge_pings"`
	SEAnswers     float64            `json:"sipedge_answers"`
	SEMissed      float64            `json:"sipedge_missed"`
	SESendErrors  float64            `json:"sipedge_send_errors"`
	SEChanges     float64            `json:"sipedge_status_changes"`
	AnsweredPct   float64            `json:"answered_pct"`
	RTTMeanMs     float64            `json:"rtt_mean_ms"`
	RTTBuckets    map[string]float64 `json:"rtt_buckets_delta"`
	Flows         map[string]float64 `json:"flows_by_status"`
	GuardDrops    float64            `json:"sipedge_dropped"`
	MetricsBefore float64            `json:"metrics_ms_before"`
	// GenLag: how long a ping waited in a phone's socket before the
	// generator read it (kernel stamp to read), mean and max.
	GenLagMeanMs float64 `json:"generator_read_lag_mean_ms"`
	GenLagMaxMs  float64 `json:"generator_read_lag_max_ms"`
	// sipedge's Go runtime over the window (runtime.MemStats deltas):
	// bytes and objects allocated per ping, GC cycles.
	AllocPerPing   float64 `json:"sipedge_alloc_bytes_per_ping"`
	MallocsPerPing float64 `json:"sipedge_mallocs_per_ping"`
	GCs            uint64  `json:"sipedge_gc_cycles"`
	// UDP is the machine's UDP error counters (/proc/net/snmp) over the
	// window: receive buffer overflows anywhere on the machine.
	UDP map[string]int64 `json:"udp_errors"`

	end int64 // fleet clock
}

// GapSummary is the time between two pings of one phone against the
// interval, over the pairs inside the window.
type GapSummary struct {
	Pairs        uint64            `json:"pairs"`
	MeanAbsDevMs float64           `json:"mean_abs_dev_ms"`
	MinDevMs     float64           `json:"min_dev_ms"`
	MaxDevMs     float64           `json:"max_dev_ms"`
	Within       map[string]uint64 `json:"abs_dev_within"`
}

// Endpts is what the admin endpoints cost at N bindings.
type Endpts struct {
	StatusMs       float64 `json:"status_ms"`
	StatusCPUms    float64 `json:"status_sipedge_cpu_ms"`
	MetricsMs      float64 `json:"metrics_ms"`
	MetricsBytes   int     `json:"metrics_bytes"`
	MetricsCPUms   float64 `json:"metrics_sipedge_cpu_ms"`
	MetricsSilence float64 `json:"metrics_longest_ping_silence_ms"`
	PeersMs        float64 `json:"peers_ms"`
	PeersBytes     int64   `json:"peers_bytes"`
	PeersCPUms     float64 `json:"peers_sipedge_cpu_ms"`
	PeersRSSBefore uint64  `json:"peers_rss_before"`
	PeersRSSAfter  uint64  `json:"peers_rss_after"`
	PeersSilence   float64 `json:"peers_longest_ping_silence_ms"`
	PeersErr       string  `json:"peers_error,omitempty"`
	// WindowSilence is the longest silence in the measurement window, for
	// comparison.
	WindowSilence float64 `json:"window_longest_ping_silence_ms"`
}

var (
	logMu   sync.Mutex
	logFile *os.File
)

func logf(format string, a ...any) {
	line := fmt.Sprintf("[%s] ", time.Now().Format("15:04:05")) + fmt.Sprintf(format, a...)
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintln(os.Stderr, line)
	if logFile != nil {
		fmt.Fprintln(logFile, line)
	}
}

func fatal(format string, a ...any) {
	logf("kabench: "+format, a...)
	os.Exit(1)
}

func main() {
	mode := flag.String("mode", "full", "full (100,000 phones, ~5 min) or quick (10,000 phones, ~2 min)")
	n := flag.Int("n", 0, "phones (default: full 100000, quick 10000)")
	rate := flag.Float64("rate", 5000, "registrations started per second")
	workers := flag.Int("workers", 2, "generator workers (epoll sets)")
	intervals := flag.String("intervals", "", "keepalive intervals to measure after the keepalive-off run, comma separated (default 25s,5s)")
	bin := flag.String("sipedge", "bench/out/keepalive/bin/sipedge", "sipedge binary")
	out := flag.String("out", "bench/out/keepalive", "output directory; each run goes to OUT/runs/<UTC time>")
	summary := flag.String("summary", "", "only rebuild the summary of this run directory")
	profile := flag.Int("profile", -1, "seconds of CPU profile after the first keepalive window (default full 10, quick 5; 0 none)")
	noOff := flag.Bool("no-off", false, "skip the keepalive-off run")
	var env envFlag
	flag.Var(&env, "sipedge-env", "K=V added to sipedge's environment (repeatable), e.g. GODEBUG=gctrace=1")
	perShard := flag.Int("per-shard", 0, "phones per shard process (default: the RLIMIT_NOFILE hard limit minus 256)")
	shard := flag.Bool("shard", false, "internal: run as a phone shard driven over stdin/stdout")
	shardFirst := flag.Int("shard-first", 0, "internal: first phone of the shard")
	shardN := flag.Int("shard-n", 0, "internal: phones in the shard")
	shardPort := flag.Int("shard-srv-port", 0, "internal: sipedge's UDP port")
	shardBase := flag.Int64("shard-base", 0, "internal: CLOCK_MONOTONIC base of the fleet clock")
	shardMaxRun := flag.Duration("shard-max-run", 30*time.Minute, "internal: longest run (arrival histogram size)")
	flag.Parse()

	if *shard {
		shardMain(*shardFirst, *shardN, *workers, *shardPort, *shardBase, *shardMaxRun)
		return
	}

	if *summary != "" {
		rs, err := loadResults(*summary)
		if err != nil {
			fatal("%v", err)
		}
		md := render(rs, "", *summary)
		fmt.Print(md)
		if err := os.WriteFile(filepath.Join(*summary, "summary.md"), []byte(md), 0o644); err != nil {
			fatal("%v", err)
		}
		return
	}

	p := plan{mode: *mode, rate: *rate}
	switch *mode {
	case "full":
		p.n, p.profileS, p.quietWait, p.budget = 100000, 10, 20*time.Second, 6*time.Minute
		p.runs = []runSpec{{Label: "off", Window: 20 * time.Second}}
	case "quick":
		p.n, p.profileS, p.quietWait, p.budget = 10000, 5, 5*time.Second, 2*time.Minute
		p.runs = []runSpec{{Label: "off", Window: 5 * time.Second}}
	default:
		fatal("-mode is full or quick")
	}
	if *noOff {
		p.runs = nil
	}
	if *n > 0 {
		p.n = *n
	}
	if *profile >= 0 {
		p.profileS = *profile
	}
	ivs := "25s,5s"
	if *intervals != "" {
		ivs = *intervals
	}
	for k, s := range strings.Split(ivs, ",") {
		iv, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || iv < time.Second {
			fatal("bad -intervals %q", ivs)
		}
		// At least two whole intervals, and at least 10 s (15 s in full
		// mode) so short intervals still give many pings per phone.
		minW := 10 * time.Second
		if *mode == "full" {
			minW = 15 * time.Second
		}
		k2 := max(2, int((minW+iv-1)/iv))
		p.runs = append(p.runs, runSpec{Label: durString(iv), Interval: iv, Window: time.Duration(k2) * iv, Extras: k == 0})
	}

	dir := filepath.Join(*out, "runs", time.Now().UTC().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatal("%v", err)
	}
	lf, err := os.Create(filepath.Join(dir, "run.log"))
	if err != nil {
		fatal("%v", err)
	}
	logFile = lf
	start := time.Now()
	logf("kabench %s: %d phones, %v, registration %g/s, %d generator workers; %s; results in %s",
		p.mode, p.n, specs(p.runs), p.rate, *workers, machine(), dir)
	logf("loadavg before: %s", loadavg())

	sipedgeBin, err := filepath.Abs(*bin)
	if err != nil {
		fatal("%v", err)
	}
	tpl, err := ensureUsers(sipedgeBin, *out, "ka", domain, p.n)
	if err != nil {
		fatal("users: %v", err)
	}
	sipPort, adminPort, err := freePorts()
	if err != nil {
		fatal("%v", err)
	}
	t0 := time.Now()
	per := *perShard
	if per <= 0 {
		per = max(1000, fdHardLimit()-256)
	}
	ph, err := startPhones(p.n, per, *workers, sipPort, 30*time.Minute)
	if err != nil {
		fatal("phones: %v", err)
	}
	defer ph.close()
	logf("%d phone sockets open on 127.64.0.1… in %v, in %d shard process(es) (RLIMIT_NOFILE hard limit %d) with %d epoll worker(s) each; sipedge will listen on 127.0.0.1:%d, admin 127.0.0.1:%d",
		p.n, time.Since(t0).Round(time.Millisecond), len(ph.shards), fdHardLimit(), max(1, *workers/len(ph.shards)), sipPort, adminPort)

	b := &bench{p: p, ph: ph, start: start, env: env, source: sourceRev(), dir: dir, out: *out, bin: sipedgeBin, tpl: tpl, sipPort: sipPort, adminPort: adminPort, workers: *workers}
	var results []*Result
	for i, rs := range p.runs {
		r := b.run(i, rs)
		results = append(results, r)
		js, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("run-%d-%s.json", i, rs.Label)), js, 0o644); err != nil {
			fatal("%v", err)
		}
	}
	md := render(results, fmt.Sprintf("%s mode, %s", p.mode, time.Since(start).Round(time.Second)), dir)
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(md), 0o644); err != nil {
		fatal("%v", err)
	}
	_ = os.Remove(filepath.Join(*out, "latest"))
	_ = os.Symlink(filepath.Join("runs", filepath.Base(dir)), filepath.Join(*out, "latest"))
	fmt.Print("\n" + md)
	logf("done in %v; summary: %s", time.Since(start).Round(time.Second), filepath.Join(dir, "summary.md"))
}

const (
	domain = "bench.example"
	token  = "kabench-token"
)

func specs(rs []runSpec) string {
	var s []string
	for _, r := range rs {
		if r.Interval == 0 {
			s = append(s, "keepalive off ("+r.Window.String()+" idle)")
		} else {
			s = append(s, "interval "+r.Interval.String()+" ("+r.Window.String()+" window)")
		}
	}
	return strings.Join(s, ", ")
}

type bench struct {
	p                  plan
	ph                 *phones
	start              time.Time
	env                []string
	source             string
	dir, out, bin, tpl string
	sipPort, adminPort int
	workers            int
}

// run is one sipedge process: start, baseline, register, measure, stop.
func (b *bench) run(idx int, rs runSpec) *Result {
	t0 := time.Now()
	r := &Result{Label: rs.Label, Mode: b.p.mode, Time: time.Now().UTC().Format(time.RFC3339), Machine: machine(), Source: b.source,
		Phones: b.p.n, Workers: b.workers, IntervalS: rs.Interval.Seconds()}
	fail := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		r.Errors = append(r.Errors, msg)
		logf("  %s: %s", rs.Label, msg)
	}
	r.OtherBefore = waitQuiet(b.ph.pids(), 0.25, b.p.quietWait)
	r.LoadAvg = loadavg()
	logf("run %s: loadavg %s, other work %.2f cores", rs.Label, r.LoadAvg, r.OtherBefore)

	data, err := filepath.Abs(filepath.Join(b.out, "data-"+rs.Label))
	if err != nil {
		fail("%v", err)
		return r
	}
	if err := freshDataDir(b.tpl, data); err != nil {
		fail("data dir: %v", err)
		return r
	}
	cfg := filepath.Join(b.dir, "sipedge-"+rs.Label+".toml")
	if err := os.WriteFile(cfg, []byte(serverConfig(data, domain, b.sipPort, b.adminPort, token, rs.Interval)), 0o644); err != nil {
		fail("%v", err)
		return r
	}
	if err := b.ph.reset(fmt.Sprintf("%d%s", idx, strings.ReplaceAll(rs.Label, ".", "")), rs.Interval); err != nil {
		fail("phones: %v", err)
		return r
	}
	logPath := filepath.Join(b.dir, "sipedge-"+rs.Label+".log")
	srv, err := startServer(b.bin, cfg, logPath, fmt.Sprintf("127.0.0.1:%d", b.adminPort), token, b.env)
	if err != nil {
		fail("%v", err)
		return r
	}
	r.SipedgePID = srv.pid
	defer func() {
		if srv.alive() {
			b.saveStatus(srv, rs.Label+"-end")
		}
		srv.stop()
		r.LogWarnings = countLines(logPath)
		r.WallS = time.Since(t0).Seconds()
		logf("run %s done in %.0f s", rs.Label, r.WallS)
	}()

	time.Sleep(time.Second)
	if r.Baseline, err = srv.mem(); err != nil {
		fail("baseline memory: %v", err)
	}
	logf("  baseline: RSS %s, heap after GC %s", mb(r.Baseline.RSS), mb(r.Baseline.HeapAfterGC))

	limit := time.Duration(float64(b.p.n)/b.p.rate*float64(time.Second)) + 30*time.Second
	u0 := udpErrors()
	if r.Reg, err = b.ph.register(b.p.rate, limit); err != nil {
		fail("phones: %v", err)
	}
	r.RegUDP = udpDelta(u0, udpErrors())
	logf("  registered %d of %d in %.1f s (sent over %.1f s), %d failed %v, %d retries",
		r.Reg.Registered, b.p.n, r.Reg.CompleteS, r.Reg.SendS, r.Reg.Failed, r.Reg.Codes, r.Reg.Retries)
	st, err := srv.status()
	if err != nil {
		fail("status: %v", err)
		return r
	}
	r.Registrations, r.NATed = st.Registrations, st.NATed
	b.saveStatus(srv, rs.Label+"-registered")
	b.saveProfile(srv, "metrics-"+rs.Label+"-registered.txt", "/metrics")
	logf("  sipedge: %d registrations, %d NATed (status took %.0f ms)", st.Registrations, st.NATed, ms(st.took))
	if st.Registrations != b.p.n || st.NATed != b.p.n {
		fail("sipedge holds %d registrations (%d NATed), want %d", st.Registrations, st.NATed, b.p.n)
	}

	if rs.Interval == 0 {
		time.Sleep(2 * time.Second)
		a := takeCPU(srv.pid, b.ph.pids())
		time.Sleep(rs.Window)
		c := cpuBetween(a, takeCPU(srv.pid, b.ph.pids()))
		r.Idle = &c
		st, _, _ := b.ph.stats()
		logf("  idle with %d registrations: sipedge %.2f%% of a core, other %.1f%%; pings seen %d",
			b.p.n, c.SipedgePct, c.OtherPct, st.Options)
		if r.MemAfter, err = srv.mem(); err != nil {
			fail("memory: %v", err)
		}
		logf("  memory: RSS %s, heap after GC %s", mb(r.MemAfter.RSS), mb(r.MemAfter.HeapAfterGC))
		return r
	}

	// Every phone's first ping comes 1–5 s after it registered; then
	// each is on its grid. Start the window after the last first ping.
	warm := time.Duration(r.Reg.LastSentAt + int64(6*time.Second) - b.ph.now())
	if warm > 0 {
		time.Sleep(warm)
	}
	r.Window = b.window(srv, rs, r)
	// Measured again, once, if other work disturbed it and time allows
	// (the later runs' time is estimated at 1.5× their windows + 40 s).
	rest := time.Duration(0)
	for _, later := range b.p.runs[idx+1:] {
		rest += later.Window*3/2 + 40*time.Second
	}
	if o := r.Window.CPU.OtherS / max(r.Window.CPU.WallS, 1e-9); o > 0.25 && srv.alive() {
		if time.Since(b.start)+rs.Window+rest+30*time.Second < b.p.budget {
			logf("  other work used %.2f cores during the window: measuring again", o)
			waitQuiet(append(b.ph.pids(), srv.pid), 0.25, b.p.quietWait)
			w2 := b.window(srv, rs, r)
			if w2.CPU.OtherS < r.Window.CPU.OtherS {
				r.Discarded = append(r.Discarded, r.Window)
				r.Window = w2
			} else {
				r.Discarded = append(r.Discarded, w2)
			}
		} else {
			fail("other work used %.2f cores during the window (no time left to measure again)", o)
		}
	}
	if !srv.alive() {
		fail("sipedge died")
		return r
	}
	if r.MemAfter, err = srv.mem(); err != nil {
		fail("memory: %v", err)
	}
	logf("  memory: RSS %s, heap after GC %s", mb(r.MemAfter.RSS), mb(r.MemAfter.HeapAfterGC))
	if rs.Extras {
		r.Endpoints = b.endpoints(srv, r)
		r.Profiles = b.profiles(srv, rs)
	}
	// Whole-run keepalive totals, read after every ping of the window has
	// been answered or timed out (keepalive.timeout is 5 s).
	if w := r.Window; w != nil {
		sleepUntil(b.ph, w.end+int64(6*time.Second))
	}
	b.saveProfile(srv, "metrics-"+rs.Label+"-end.txt", "/metrics")
	if m, _, _, err := srv.metrics(); err == nil {
		r.Totals = &Totals{Pings: m["sipedge_keepalive_pings_total"], Answers: m["sipedge_keepalive_answers_total"],
			Missed: m["sipedge_keepalive_missed_total"], SendErrors: m["sipedge_keepalive_send_errors_total"]}
		logf("  whole run: sipedge sent %.0f pings, %.0f answered, %.0f missed, %.0f send errors",
			r.Totals.Pings, r.Totals.Answers, r.Totals.Missed, r.Totals.SendErrors)
	}
	return r
}

// Totals are sipedge's keepalive counters over a whole run.
type Totals struct {
	Pings      float64 `json:"pings"`
	Answers    float64 `json:"answers"`
	Missed     float64 `json:"missed"`
	SendErrors float64 `json:"send_errors"`
}

// window measures keepalives over rs.Window.
func (b *bench) window(srv *server, rs runSpec, r *Result) *Window {
	ph := b.ph
	w := &Window{}
	m0, d0, _, err := srv.metrics()
	if err != nil {
		r.Errors = append(r.Errors, "metrics: "+err.Error())
	}
	w.MetricsBefore = ms(d0)
	if rs.Extras {
		b.saveProfile(srv, "heap-"+rs.Label+"-winstart.pprof", "/debug/pprof/heap")
	}
	rt0, err := srv.runtimeStats(false)
	if err != nil {
		r.Errors = append(r.Errors, "runtime stats: "+err.Error())
	}
	// The shards count from ws on; the CPU readings are taken at ws and we.
	ws := ph.now() + int64(300*time.Millisecond)
	we := ws + int64(rs.Window)
	if err := ph.window(ws, we); err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	sleepUntil(ph, ws)
	u0 := udpErrors()
	c0 := takeCPU(srv.pid, ph.pids())
	sleepUntil(ph, we)
	c1 := takeCPU(srv.pid, ph.pids())
	w.UDP = udpDelta(u0, udpErrors())
	time.Sleep(300 * time.Millisecond) // pings stamped before we, not read yet
	st, per, err := ph.stats()
	if err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	rt1, err := srv.runtimeStats(false)
	if err != nil {
		r.Errors = append(r.Errors, "runtime stats: "+err.Error())
	}
	if rs.Extras {
		b.saveProfile(srv, "heap-"+rs.Label+"-winend.pprof", "/debug/pprof/heap")
	}
	m1, _, _, err := srv.metrics()
	if err != nil {
		r.Errors = append(r.Errors, "metrics: "+err.Error())
	}

	w.end = we
	w.Seconds = float64(we-ws) / 1e9
	w.Intervals = w.Seconds / rs.Interval.Seconds()
	w.CPU = cpuBetween(c0, c1)
	w.Pings = st.WinPings
	w.PingsPerS = float64(w.Pings) / w.Seconds
	w.ExpectedPerS = float64(b.p.n) / rs.Interval.Seconds()
	w.Answered = st.WinAnswd
	w.SendErrors = st.WinErrs
	if w.Pings > 0 {
		w.UsPerPing = w.CPU.SipedgeS / float64(w.Pings) * 1e6
		w.GenUsPerPing = w.CPU.GenS / float64(w.Pings) * 1e6
	}
	bins := ph.bins(ws, we)
	w.Spread = spread(bins)
	b.saveBins(rs.Label, ws, bins)
	w.Spread.RandomRatio100 = randomMaxOverMean(b.p.n, rs.Interval, 100*time.Millisecond, 5, 1)
	w.Spread.RandomRatio10 = randomMaxOverMean(b.p.n, rs.Interval, 10*time.Millisecond, 5, 2)
	w.PerPhone = per
	w.PerPhoneMin, w.PerPhoneMax = histRange(per)
	g := st.Gap
	w.Gap = GapSummary{Pairs: g.N, MinDevMs: float64(g.MinDev) / 1e6, MaxDevMs: float64(g.MaxDev) / 1e6,
		Within: map[string]uint64{}}
	if g.N > 0 {
		w.Gap.MeanAbsDevMs = float64(g.AbsSum) / float64(g.N) / 1e6
	}
	for i, name := range []string{"1ms", "5ms", "10ms", "50ms", "100ms", "more"} {
		w.Gap.Within[name] = g.Buckets[i]
	}
	if st.LagN > 0 {
		w.GenLagMeanMs = float64(st.LagSum) / float64(st.LagN) / 1e6
		w.GenLagMaxMs = float64(st.LagMax) / 1e6
	}
	d := func(k string) float64 { return m1[k] - m0[k] }
	w.SEPings = d("sipedge_keepalive_pings_total")
	w.SEAnswers = d("sipedge_keepalive_answers_total")
	w.SEMissed = d("sipedge_keepalive_missed_total")
	w.SESendErrors = d("sipedge_keepalive_send_errors_total")
	w.SEChanges = d("sipedge_keepalive_status_changes_total")
	w.GuardDrops = d("sipedge_sip_dropped_total")
	if w.SEPings > 0 {
		w.AnsweredPct = 100 * w.SEAnswers / w.SEPings
		w.AllocPerPing = float64(rt1["TotalAlloc"]-rt0["TotalAlloc"]) / w.SEPings
		w.MallocsPerPing = float64(rt1["Mallocs"]-rt0["Mallocs"]) / w.SEPings
	}
	w.GCs = rt1["NumGC"] - rt0["NumGC"]
	if n := d("sipedge_keepalive_rtt_seconds_count"); n > 0 {
		w.RTTMeanMs = d("sipedge_keepalive_rtt_seconds_sum") / n * 1000
	}
	w.RTTBuckets, w.Flows = map[string]float64{}, map[string]float64{}
	for k, v := range m1 {
		if le, ok := strings.CutPrefix(k, `sipedge_keepalive_rtt_seconds_bucket{le="`); ok {
			w.RTTBuckets[strings.TrimSuffix(le, `"}`)] = v - m0[k]
		}
		if s, ok := strings.CutPrefix(k, `sipedge_keepalive_flows{status="`); ok {
			w.Flows[strings.TrimSuffix(s, `"}`)] = v
		}
	}
	logf("  window %.1f s (%.1f intervals): phones got %d pings = %.0f/s (expected %.0f/s); sipedge sent %.0f, answered %.0f (%.3f%%), missed %.0f",
		w.Seconds, w.Intervals, w.Pings, w.PingsPerS, w.ExpectedPerS, w.SEPings, w.SEAnswers, w.AnsweredPct, w.SEMissed)
	logf("  sipedge CPU %.2f%% of a core (user %.2f s, sys %.2f s) = %.1f µs/ping; generator %.1f%%; other %.1f%% (softirq %.2f s)",
		w.CPU.SipedgePct, w.CPU.SipedgeUserS, w.CPU.SipedgeSysS, w.UsPerPing, w.CPU.GenPct, w.CPU.OtherPct, w.CPU.SoftirqS)
	logf("  spread: max/mean 100 ms %.2f (random %.2f), 10 ms %.2f (random %.2f), per s %d–%d, longest silence %.0f ms; per phone %d–%d pings %v; gap dev %.2f ms mean, %.1f…%.1f ms",
		w.Spread.Ratio100ms, w.Spread.RandomRatio100, w.Spread.Ratio10ms, w.Spread.RandomRatio10, w.Spread.MinPerSec, w.Spread.MaxPerSec,
		w.Spread.LongestGapMs, w.PerPhoneMin, w.PerPhoneMax, w.PerPhone, w.Gap.MeanAbsDevMs, w.Gap.MinDevMs, w.Gap.MaxDevMs)
	logf("  RTT mean %.3f ms; flows %v; generator read lag mean %.2f ms, max %.1f ms; UDP errors %v",
		w.RTTMeanMs, w.Flows, w.GenLagMeanMs, w.GenLagMaxMs, w.UDP)
	logf("  sipedge allocated %.0f B in %.1f objects per ping; %d GC cycles in the window", w.AllocPerPing, w.MallocsPerPing, w.GCs)
	return w
}

// endpoints times the admin API at N bindings, with sipedge's CPU per
// call and the longest pause in the pings while it ran.
func (b *bench) endpoints(srv *server, r *Result) *Endpts {
	e := &Endpts{}
	if r.Window != nil {
		e.WindowSilence = r.Window.Spread.LongestGapMs
	}
	timed := func(f func()) (cpuMs, silence float64) {
		time.Sleep(300 * time.Millisecond)
		a := takeCPU(srv.pid, b.ph.pids())
		t0 := b.ph.now()
		f()
		t1 := b.ph.now()
		c := cpuBetween(a, takeCPU(srv.pid, b.ph.pids()))
		time.Sleep(100 * time.Millisecond) // let the shards' bins fill
		return c.SipedgeS * 1000, spread(b.ph.bins(t0-int64(50*time.Millisecond), t1+int64(50*time.Millisecond))).LongestGapMs
	}
	e.StatusCPUms, _ = timed(func() {
		st, err := srv.status()
		if err == nil {
			e.StatusMs = ms(st.took)
		}
	})
	e.MetricsCPUms, e.MetricsSilence = timed(func() {
		_, d, n, err := srv.metrics()
		if err == nil {
			e.MetricsMs, e.MetricsBytes = ms(d), n
		}
	})
	e.PeersRSSBefore, _, _ = procMem(srv.pid)
	e.PeersCPUms, e.PeersSilence = timed(func() {
		n, d, err := srv.getTo("/api/v1/peers", "")
		e.PeersMs, e.PeersBytes = ms(d), n
		if err != nil {
			e.PeersErr = err.Error()
		}
	})
	e.PeersRSSAfter, _, _ = procMem(srv.pid)
	logf("  endpoints at %d bindings: status %.0f ms (%.0f ms CPU); metrics %.0f ms, %d B (%.0f ms CPU, ping silence %.0f ms); peers %.0f ms, %.1f MB (%.0f ms CPU, ping silence %.0f ms, RSS %s → %s)%s",
		b.p.n, e.StatusMs, e.StatusCPUms, e.MetricsMs, e.MetricsBytes, e.MetricsCPUms, e.MetricsSilence,
		e.PeersMs, float64(e.PeersBytes)/1e6, e.PeersCPUms, e.PeersSilence, mb(e.PeersRSSBefore), mb(e.PeersRSSAfter), errSuffix(e.PeersErr))
	return e
}

// saveBins writes a window's 10 ms arrival counts as bins-LABEL.csv
// (fleet clock ms, pings); a retried window overwrites it.
func (b *bench) saveBins(label string, ws int64, bins []uint32) {
	var sb strings.Builder
	sb.WriteString("t_ms,pings\n")
	first := (ws + binNS - 1) / binNS
	for i, c := range bins {
		fmt.Fprintf(&sb, "%d,%d\n", (first+int64(i))*binNS/1e6, c)
	}
	_ = os.WriteFile(filepath.Join(b.dir, "bins-"+label+".csv"), []byte(sb.String()), 0o644)
}

// saveProfile stores an admin API profile in the run dir.
func (b *bench) saveProfile(srv *server, name, path string) {
	if _, _, err := srv.getTo(path, filepath.Join(b.dir, name)); err != nil {
		logf("  profile %s: %v", name, err)
	}
}

// saveStatus stores /api/v1/status as status-NAME.json in the run dir.
func (b *bench) saveStatus(srv *server, name string) {
	body, _, err := srv.get("/api/v1/status")
	if err == nil {
		_ = os.WriteFile(filepath.Join(b.dir, "status-"+name+".json"), body, 0o644)
	}
}

// sleepUntil sleeps until the fleet clock reads t.
func sleepUntil(ph *phones, t int64) {
	if d := time.Duration(t - ph.now()); d > 0 {
		time.Sleep(d)
	}
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " ERROR " + s
}

// profiles saves a CPU profile (keepalives running) and a heap profile,
// with `go tool pprof -top` extracts when the go tool is at hand.
func (b *bench) profiles(srv *server, rs runSpec) []string {
	var files []string
	save := func(name, path string) string {
		f := filepath.Join(b.dir, name)
		if _, _, err := srv.getTo(path, f); err != nil {
			logf("  profile %s: %v", name, err)
			return ""
		}
		files = append(files, name)
		return f
	}
	var cpu string
	if b.p.profileS > 0 {
		logf("  CPU profile, %d s", b.p.profileS)
		cpu = save("cpu-"+rs.Label+".pprof", "/debug/pprof/profile?seconds="+strconv.Itoa(b.p.profileS))
	}
	heap := save("heap-"+rs.Label+".pprof", "/debug/pprof/heap?gc=1")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	top := func(prof, name string, args ...string) {
		if prof == "" {
			return
		}
		cmd := exec.Command(goBin, append(append([]string{"tool", "pprof", "-top", "-nodecount=40"}, args...), prof)...)
		outb, err := cmd.CombinedOutput()
		if err != nil {
			logf("  pprof %s: %v", name, err)
			return
		}
		if os.WriteFile(filepath.Join(b.dir, name), outb, 0o644) == nil {
			files = append(files, name)
		}
	}
	top(cpu, "cpu-"+rs.Label+"-top.txt")
	if ws, we := filepath.Join(b.dir, "heap-"+rs.Label+"-winstart.pprof"), filepath.Join(b.dir, "heap-"+rs.Label+"-winend.pprof"); fileExists(ws) && fileExists(we) {
		files = append(files, filepath.Base(ws), filepath.Base(we))
		top(we, "alloc-"+rs.Label+"-window-top.txt", "-sample_index=alloc_space", "-base", ws)
	}
	top(cpu, "cpu-"+rs.Label+"-top-cum.txt", "-cum")
	top(heap, "heap-"+rs.Label+"-top.txt", "-sample_index=inuse_space")
	return files
}

// sourceRev describes the tree run.sh built sipedge from: the git HEAD and
// whether tracked files outside bench/ differ from it. Read-only: no
// index refresh (GIT_OPTIONAL_LOCKS=0).
func sourceRev() string {
	git := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	rev := git("rev-parse", "--short", "HEAD")
	if rev == "" {
		return "unknown"
	}
	if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench") != "" {
		rev += " + uncommitted changes"
	}
	return rev
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=") {
			n++
		}
	}
	return n
}

func mb(n uint64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// loadResults reads a run directory's JSON files in order.
func loadResults(dir string) ([]*Result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "run-*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Result
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, &r)
	}
	// run-<i>-label: order by i.
	sortByIndex(files, out)
	return out, nil
}

type envFlag []string

func (e *envFlag) String() string     { return strings.Join(*e, " ") }
func (e *envFlag) Set(v string) error { *e = append(*e, v); return nil }

func sortByIndex(files []string, rs []*Result) {
	idx := func(f string) int {
		s := strings.TrimPrefix(filepath.Base(f), "run-")
		n, _ := strconv.Atoi(s[:max(0, strings.IndexByte(s, '-'))])
		return n
	}
	for i := 1; i < len(files); i++ {
		for j := i; j > 0 && idx(files[j]) < idx(files[j-1]); j-- {
			files[j], files[j-1] = files[j-1], files[j]
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}
