// Command rtpload is a load generator and meter for RTP relays.
//
// It opens N streams; each stream is two UDP "phones" on loopback exchanging
// RTP packets (12-byte header + 160-byte payload, 50 packets/s per direction by
// default) through the relay under test. Every packet carries its flow, a
// sequence number and its send time; the receiving phone counts loss,
// duplicates, reordering and wrong sources, and the one-way latency from the
// send stamp to the kernel's receive timestamp (SO_TIMESTAMPNS), i.e. the
// time the relay hop added plus loopback delivery. A "direct" run (phone to
// phone) measures the generator and loopback alone: subtract it (--baseline)
// to get the latency the relay adds.
//
// The relay runs in its own process: relayd (reference, reference-epoll,
// sipedge) or rtpengine, which rtpload starts, sets up, measures from
// /proc/<pid>/stat and stops by PID. Each run is bounded by
// --warmup + --duration + --drain and ends by itself.
//
//	rtpload --relay direct --streams 1000
//	rtpload --relay reference --streams 1000 --baseline out/direct.json --json
//	rtpload --relay rtpengine --streams 1000 --total-pps 300000
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sipedge/sipedge/bench/internal/procstat"
)

type options struct {
	relay        string
	streams      int
	ppsPerStream float64
	totalPPS     float64
	duration     time.Duration
	warmup       time.Duration
	drain        time.Duration
	payload      int
	socks        int
	senders      int
	rxWorkers    int
	batch        int
	tick         time.Duration
	rxTick       time.Duration
	maxLag       time.Duration
	maxP99       time.Duration
	rcvbuf       int
	rxTS         string
	ipA, ipB     netip.Addr
	relayIP      netip.Addr
	relaydBin    string
	relaydArgs   string
	rtpeBin      string
	rtpeThreads  int
	rtpeNG       int
	rtpePorts    string
	rtpeFlags    string
	rtpeLog      int
	rtpeArgs     string
	logDir       string
	jsonOut      bool
	outFile      string
	label        string
	baseline     string
	maxLoss      float64
}

func parseFlags() *options {
	o := &options{}
	var ipA, ipB, relayIP string
	flag.StringVar(&o.relay, "relay", "direct", "relay under test: direct, reference, reference-epoll, sipedge, sipedge-kernel or rtpengine")
	flag.IntVar(&o.streams, "streams", 100, "concurrent streams (calls); each has two phones and two directions")
	flag.Float64Var(&o.ppsPerStream, "pps-per-stream", 50, "packets/s per stream and direction (50 = 20 ms ptime)")
	flag.Float64Var(&o.totalPPS, "total-pps", 0, "total packets/s offered, both directions (overrides --pps-per-stream)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "sending time before the measurement (latching, caches), not counted")
	flag.DurationVar(&o.drain, "drain", 500*time.Millisecond, "time to wait for packets in flight after the last send")
	flag.IntVar(&o.payload, "payload", 160, "RTP payload bytes (>= 21)")
	flag.IntVar(&o.socks, "socks", 0, "phone sockets per side; 0 = one per phone (realistic); fewer are shared round-robin by streams and allow batched sends")
	flag.IntVar(&o.senders, "senders", 2, "sender threads")
	flag.IntVar(&o.rxWorkers, "rx-workers", 2, "receiver threads")
	flag.IntVar(&o.batch, "batch", 64, "largest sendmmsg batch per socket")
	flag.DurationVar(&o.tick, "tick", time.Millisecond, "senders wake once per tick; packets due within a tick go out together")
	flag.DurationVar(&o.rxTick, "rx-tick", 2*time.Millisecond, "with kernel timestamps, receivers poll once per rx-tick (0: block in epoll_wait)")
	flag.DurationVar(&o.maxLag, "max-lag", 20*time.Millisecond, "sender lag p99 above which the run does not pass (the generator was starved)")
	flag.DurationVar(&o.maxP99, "max-p99", 20*time.Millisecond, "latency p99 above which the run does not pass (0: no limit)")
	flag.IntVar(&o.rcvbuf, "rcvbuf", 0, "phone socket buffer bytes (0: kernel default, 8 MiB for shared sockets)")
	flag.StringVar(&o.rxTS, "rx-ts", "kernel", "receive time: kernel (SO_TIMESTAMPNS) or user (after recvmmsg)")
	flag.StringVar(&ipA, "ip-a", "127.0.0.2", "phone A address (loopback)")
	flag.StringVar(&ipB, "ip-b", "127.0.0.3", "phone B address (loopback)")
	flag.StringVar(&relayIP, "relay-ip", "127.0.0.1", "relay address (loopback)")
	flag.StringVar(&o.relaydBin, "relayd", "", "relayd binary (default: next to rtpload, else $PATH)")
	flag.StringVar(&o.relaydArgs, "relayd-args", "", "extra relayd flags, space separated")
	flag.StringVar(&o.rtpeBin, "rtpengine", "/usr/bin/rtpengine", "rtpengine binary")
	flag.IntVar(&o.rtpeThreads, "rtpengine-threads", 2, "rtpengine --num-threads")
	flag.IntVar(&o.rtpeNG, "rtpengine-ng-port", 22230, "rtpengine ng control port on --relay-ip")
	flag.StringVar(&o.rtpePorts, "rtpengine-ports", "40000-59999", "rtpengine media port range")
	flag.StringVar(&o.rtpeFlags, "rtpengine-flags", "", "ng flags for offer/answer, comma separated (e.g. asymmetric)")
	flag.IntVar(&o.rtpeLog, "rtpengine-log-level", 4, "rtpengine --log-level (4: warnings)")
	flag.StringVar(&o.rtpeArgs, "rtpengine-args", "", "extra rtpengine flags, space separated")
	flag.StringVar(&o.logDir, "log-dir", "", "where relay logs go (default: temp dir)")
	flag.BoolVar(&o.jsonOut, "json", false, "print the result as JSON instead of the summary")
	flag.StringVar(&o.outFile, "out", "", "also write the JSON result to this file")
	flag.StringVar(&o.label, "label", "", "free text stored in the result")
	flag.StringVar(&o.baseline, "baseline", "", "JSON result of a direct run: report latency added over it")
	flag.Float64Var(&o.maxLoss, "max-loss", 0.1, "loss in percent above which the run does not pass")
	flag.Parse()

	var err error
	if o.ipA, err = netip.ParseAddr(ipA); err != nil || !o.ipA.IsLoopback() || !o.ipA.Is4() {
		fatal("--ip-a must be an IPv4 loopback address")
	}
	if o.ipB, err = netip.ParseAddr(ipB); err != nil || !o.ipB.IsLoopback() || !o.ipB.Is4() {
		fatal("--ip-b must be an IPv4 loopback address")
	}
	if o.relayIP, err = netip.ParseAddr(relayIP); err != nil || !o.relayIP.IsLoopback() || !o.relayIP.Is4() {
		fatal("--relay-ip must be an IPv4 loopback address")
	}
	if o.streams < 1 {
		fatal("--streams must be >= 1")
	}
	if o.totalPPS > 0 {
		o.ppsPerStream = o.totalPPS / float64(2*o.streams)
	}
	if o.ppsPerStream <= 0 || o.ppsPerStream > 1e6 {
		fatal("packets per stream must be in (0, 1e6]")
	}
	if o.payload < minPayload || o.payload > 1400 {
		fatal("--payload must be in [%d, 1400]", minPayload)
	}
	if o.duration <= 0 || o.duration > 10*time.Minute || o.warmup < 0 || o.drain < 0 {
		fatal("--duration must be in (0, 10m], --warmup and --drain >= 0")
	}
	if o.rxTS != "kernel" && o.rxTS != "user" {
		fatal("--rx-ts is kernel or user")
	}
	o.batch = max(o.batch, 1)
	if o.tick < 50*time.Microsecond || o.tick > 20*time.Millisecond || o.rxTick < 0 || o.rxTick > 20*time.Millisecond {
		fatal("--tick must be in [50µs, 20ms], --rx-tick in [0, 20ms]")
	}
	switch o.relay {
	case "direct", "reference", "reference-epoll", "sipedge", "sipedge-kernel", "rtpengine":
	default:
		fatal("unknown --relay %q", o.relay)
	}
	// The kernel fast path takes over a leg only after it locks (300 ms)
	// and the next sweep (1 s): measure after that.
	if o.relay == "sipedge-kernel" && o.warmup < 3*time.Second {
		o.warmup = 3 * time.Second
	}
	return o
}

// Latency is a set of percentiles in microseconds.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

// Result is what one run measured; --json prints it.
type Result struct {
	Relay        string  `json:"relay"`
	Label        string  `json:"label,omitempty"`
	Time         string  `json:"time"`
	Streams      int     `json:"streams"`
	PPSPerStream float64 `json:"pps_per_stream_dir"`
	OfferedPPS   float64 `json:"offered_pps"`
	DurationS    float64 `json:"duration_s"`
	PhoneSockets int     `json:"phone_sockets"`
	PacketBytes  int     `json:"packet_bytes"`

	Sent       uint64  `json:"sent"`
	Received   uint64  `json:"received"`
	Lost       int64   `json:"lost"`
	LossPct    float64 `json:"loss_pct"`
	Duplicates uint64  `json:"duplicates"`
	Reordered  uint64  `json:"reordered"`
	Misrouted  uint64  `json:"misrouted"`
	BadSource  uint64  `json:"bad_source"`
	Malformed  uint64  `json:"malformed"`
	SendErrors uint64  `json:"send_errors"`
	WorstFlow  float64 `json:"worst_flow_loss_pct"`
	SentPPS    float64 `json:"sent_pps"`
	RelayedPPS float64 `json:"relayed_pps"`

	RxTimestamps string   `json:"rx_timestamps"`
	Latency      Latency  `json:"latency"`
	Added        *Latency `json:"added_latency,omitempty"`
	SendLag      Latency  `json:"sender_lag"`

	RelayPID      int     `json:"relay_pid,omitempty"`
	RelayCPUS     float64 `json:"relay_cpu_s"`
	RelayCores    float64 `json:"relay_cores"`
	RelayUserPct  float64 `json:"relay_user_pct"`
	PPSPerCore    float64 `json:"pps_per_relay_core"`
	GenCores      float64 `json:"generator_cores"`
	MachineBusy   float64 `json:"machine_busy_cores"`
	MachineSoftir float64 `json:"machine_softirq_cores"`
	MachineSteal  float64 `json:"machine_steal_cores"`
	MachineOther  float64 `json:"machine_other_cores"`
	NumCPU        int     `json:"num_cpu"`
	GOMAXPROCS    int     `json:"gomaxprocs"`
	LoadAvg       string  `json:"loadavg_before"`
	RelayStats    string  `json:"relay_stats,omitempty"`
	MaxLossPct    float64 `json:"max_loss_pct"`
	Pass          bool    `json:"pass"`
	Why           string  `json:"why,omitempty"`
}

func main() {
	o := parseFlags()
	if o.logDir == "" {
		d, err := os.MkdirTemp("", "rtpload-")
		if err != nil {
			fatal("%v", err)
		}
		o.logDir = d
	} else if err := os.MkdirAll(o.logDir, 0o755); err != nil {
		fatal("%v", err)
	}
	loadavg, _ := os.ReadFile("/proc/loadavg")

	g, err := newGen(o)
	if err != nil {
		fatal("phones: %v", err)
	}
	defer g.close()

	d, err := startDriver(o)
	if err != nil {
		fatal("%v", err)
	}
	var stopOnce sync.Once
	var stopErr error
	stopRelay := func() { stopOnce.Do(func() { stopErr = d.Stop() }) }
	// Whatever happens, the relay we started is stopped, and the run ends.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		stopRelay()
		fatal("stopped by %v", s)
	}()
	limit := o.warmup + o.duration + o.drain + 2*time.Minute
	watchdog := time.AfterFunc(limit, func() {
		stopRelay()
		fatal("run exceeded %v; gave up", limit)
	})
	defer watchdog.Stop()

	ports, err := d.Setup(g.phones())
	if err != nil {
		stopRelay()
		fatal("%s setup: %v", o.relay, err)
	}
	if err := g.wire(ports); err != nil {
		stopRelay()
		fatal("%v", err)
	}

	pid := d.PID()
	var cpu0, cpu1, usr0, usr1, self0, self1 float64
	var sys0, sys1 procstat.SysCPU
	var t0, t1 time.Time
	g.run(func(open bool) {
		now := time.Now()
		rc, ru, self, sc := 0.0, 0.0, 0.0, procstat.SysCPU{}
		if pid > 0 {
			u, s, _ := procstat.ProcTimes(pid)
			rc, ru = u+s, u
		}
		self, _ = procstat.ProcCPU(os.Getpid())
		sc, _ = procstat.ReadSys()
		if open {
			t0, cpu0, usr0, self0, sys0 = now, rc, ru, self, sc
		} else {
			t1, cpu1, usr1, self1, sys1 = now, rc, ru, self, sc
		}
	})
	stats := d.Stats()
	stopRelay()

	res := g.result(o)
	if stopErr != nil {
		// The relay died during the run (crash, or killed by someone else):
		// whatever was measured is not a result.
		res.Pass = false
		res.Why = strings.TrimPrefix(res.Why+"; "+stopErr.Error(), "; ")
	}
	wall := t1.Sub(t0).Seconds()
	res.Time = t0.UTC().Format(time.RFC3339)
	res.LoadAvg = strings.TrimSpace(string(loadavg))
	res.RelayStats = stats
	if pid > 0 {
		res.RelayPID = pid
		res.RelayCPUS = cpu1 - cpu0
		res.RelayCores = res.RelayCPUS / wall
		if res.RelayCPUS > 0 {
			res.RelayUserPct = 100 * (usr1 - usr0) / res.RelayCPUS
		}
		if res.RelayCores > 0 {
			res.PPSPerCore = res.RelayedPPS / res.RelayCores
		}
	}
	res.GenCores = (self1 - self0) / wall
	ds := sys1.Sub(sys0)
	// Busy from idle time, which the kernel keeps exactly; the tick-sampled
	// user/system counters miss short bursts on a tickless VM.
	res.MachineBusy = float64(runtime.NumCPU()) - ds.Idle/wall
	res.MachineSoftir = ds.Softirq / wall
	res.MachineSteal = ds.Steal / wall
	// Whatever ran besides the generator and the relay: other work on the
	// machine that disturbed the run. Packet delivery in softirq is not
	// subtracted: on loopback it runs in the sending process's context and is
	// already part of that process's system time (measured: without this,
	// "other" came out as minus the softirq time on a quiet machine).
	res.MachineOther = res.MachineBusy - res.GenCores - res.RelayCores
	if o.baseline != "" {
		if err := res.addBaseline(o.baseline); err != nil {
			fmt.Fprintf(os.Stderr, "rtpload: baseline: %v\n", err)
		}
	}

	js, _ := json.MarshalIndent(res, "", "  ")
	if o.outFile != "" {
		if err := os.MkdirAll(filepath.Dir(o.outFile), 0o755); err == nil {
			err = os.WriteFile(o.outFile, append(js, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "rtpload: %v\n", err)
		}
	}
	if o.jsonOut {
		fmt.Println(string(js))
	} else {
		res.print(os.Stdout)
	}
}

func startDriver(o *options) (driver, error) {
	switch o.relay {
	case "direct":
		return direct{}, nil
	case "rtpengine":
		var pmin, pmax int
		if _, err := fmt.Sscanf(o.rtpePorts, "%d-%d", &pmin, &pmax); err != nil {
			return nil, fmt.Errorf("bad --rtpengine-ports %q", o.rtpePorts)
		}
		var flags []string
		for _, f := range strings.Split(o.rtpeFlags, ",") {
			if f = strings.TrimSpace(f); f != "" {
				flags = append(flags, f)
			}
		}
		return startRtpengine(rtpengineConfig{
			bin: o.rtpeBin, ip: o.relayIP, ngPort: o.rtpeNG, portMin: pmin, portMax: pmax,
			threads: o.rtpeThreads, logLevel: o.rtpeLog, extraArgs: strings.Fields(o.rtpeArgs),
			flags: flags, logPath: filepath.Join(o.logDir, "rtpengine.log"),
		})
	default:
		bin := o.relaydBin
		if bin == "" {
			bin = "relayd"
			if exe, err := os.Executable(); err == nil {
				if p := filepath.Join(filepath.Dir(exe), "relayd"); fileExists(p) {
					bin = p
				}
			}
		}
		return startRelayd(bin, o.relay, o.relayIP, strings.Fields(o.relaydArgs),
			filepath.Join(o.logDir, "relayd-"+o.relay+".log"))
	}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// result adds up the per-flow counters.
func (g *gen) result(o *options) *Result {
	r := &Result{
		Relay:        o.relay,
		Label:        o.label,
		Streams:      o.streams,
		PPSPerStream: o.ppsPerStream,
		OfferedPPS:   o.ppsPerStream * float64(2*o.streams),
		DurationS:    o.duration.Seconds(),
		PhoneSockets: len(g.socksA) + len(g.socksB),
		PacketBytes:  g.pktLen,
		Misrouted:    g.misroute,
		Malformed:    g.bad,
		SendErrors:   g.sendErrs,
		RxTimestamps: o.rxTS,
		NumCPU:       runtime.NumCPU(),
		GOMAXPROCS:   runtime.GOMAXPROCS(0),
		MaxLossPct:   o.maxLoss,
	}
	if g.kernelTS && g.rxNoTS > 0 {
		r.RxTimestamps = fmt.Sprintf("kernel (%d packets without, user time used)", g.rxNoTS)
	}
	for k := range g.tx {
		t, x := &g.tx[k], &g.rx[k]
		r.Sent += t.sentMeas
		r.Received += x.meas
		r.Duplicates += x.dup
		r.Reordered += x.reord
		r.BadSource += x.badSrc
		if t.sentMeas > 0 {
			if l := 100 * (float64(t.sentMeas) - float64(x.meas)) / float64(t.sentMeas); l > r.WorstFlow {
				r.WorstFlow = l
			}
		}
	}
	r.Lost = int64(r.Sent) - int64(r.Received)
	if r.Sent > 0 {
		r.LossPct = 100 * float64(r.Lost) / float64(r.Sent)
	}
	r.SentPPS = float64(r.Sent) / o.duration.Seconds()
	r.RelayedPPS = float64(r.Received) / o.duration.Seconds()
	r.Latency = latencyOf(g.lat.Quantile, g.lat.Max(), g.lat.Mean())
	r.SendLag = latencyOf(g.lag.Quantile, g.lag.Max(), g.lag.Mean())
	var why []string
	if r.Sent == 0 {
		why = append(why, "nothing sent")
	}
	if r.LossPct > o.maxLoss {
		why = append(why, fmt.Sprintf("loss %.3f%% > %.2f%%", r.LossPct, o.maxLoss))
	}
	if r.Misrouted > 0 {
		why = append(why, "packets delivered to the wrong phone")
	}
	if lag := time.Duration(g.lag.Quantile(0.99)); lag > o.maxLag {
		why = append(why, fmt.Sprintf("generator fell behind (sender lag p99 %v > %v): the offered rate was not offered", lag.Round(time.Millisecond), o.maxLag))
	}
	if p99 := time.Duration(g.lat.Quantile(0.99)); o.maxP99 > 0 && p99 > o.maxP99 {
		why = append(why, fmt.Sprintf("latency p99 %v > %v", p99.Round(100*time.Microsecond), o.maxP99))
	}
	r.Pass = len(why) == 0
	r.Why = strings.Join(why, "; ")
	return r
}

func latencyOf(q func(float64) int64, maxNs int64, mean float64) Latency {
	us := func(ns int64) float64 { return float64(ns) / 1000 }
	return Latency{P50: us(q(0.5)), P99: us(q(0.99)), P999: us(q(0.999)), Max: us(maxNs), Mean: mean / 1000}
}

func (r *Result) addBaseline(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var base Result
	if err := json.Unmarshal(b, &base); err != nil {
		return err
	}
	r.Added = &Latency{
		P50:  r.Latency.P50 - base.Latency.P50,
		P99:  r.Latency.P99 - base.Latency.P99,
		P999: r.Latency.P999 - base.Latency.P999,
		Max:  r.Latency.Max - base.Latency.Max,
		Mean: r.Latency.Mean - base.Latency.Mean,
	}
	return nil
}

func (r *Result) print(w *os.File) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("relay %s: %d streams × %.1f pps × 2 directions = %.0f pps offered, %d phone sockets, %d-byte packets, %.0f s measured",
		r.Relay, r.Streams, r.PPSPerStream, r.OfferedPPS, r.PhoneSockets, r.PacketBytes, r.DurationS)
	p("  packets   sent %d, received %d, lost %d (%.4f%%, worst flow %.2f%%), dup %d, reordered %d, misrouted %d, wrong source %d, malformed %d, send errors %d",
		r.Sent, r.Received, r.Lost, r.LossPct, r.WorstFlow, r.Duplicates, r.Reordered, r.Misrouted, r.BadSource, r.Malformed, r.SendErrors)
	p("  rate      sent %.0f pps, relayed %.0f pps", r.SentPPS, r.RelayedPPS)
	p("  latency   p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs, max %.1f µs (send stamp → %s receive time)",
		r.Latency.P50, r.Latency.P99, r.Latency.P999, r.Latency.Max, r.RxTimestamps)
	if r.Added != nil {
		p("  added     p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs over the baseline", r.Added.P50, r.Added.P99, r.Added.P999)
	}
	p("  pacing    sender lag p50 %.1f µs, p99 %.1f µs, max %.1f µs", r.SendLag.P50, r.SendLag.P99, r.SendLag.Max)
	if r.RelayPID > 0 {
		p("  relay cpu %.2f s = %.2f cores (%.0f%% user, %.0f%% kernel) → %.0f pps per relay core",
			r.RelayCPUS, r.RelayCores, r.RelayUserPct, 100-r.RelayUserPct, r.PPSPerCore)
	}
	p("  machine   %d CPUs, busy %.2f cores = generator %.2f + relay %.2f + other %.2f (softirq %.2f of it); steal %.2f; GOMAXPROCS %d; loadavg before %s",
		r.NumCPU, r.MachineBusy, r.GenCores, r.RelayCores, r.MachineOther, r.MachineSoftir, r.MachineSteal, r.GOMAXPROCS, r.LoadAvg)
	if r.RelayStats != "" {
		p("  relay     %s", r.RelayStats)
	}
	if r.Pass {
		p("  PASS")
	} else {
		p("  FAIL: %s", r.Why)
	}
}

func fatal(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "rtpload: "+format+"\n", a...)
	os.Exit(2)
}
