// Command rtpbench runs the RTP relay benchmark plan: a direct baseline and
// every relay under test at a series of fixed loads, then a saturation
// search per relay, each step one rtpload run (one fresh relay process). It
// stores every step's JSON and prints and writes a Markdown summary.
//
//	rtpbench -mode full  -out bench/out/rtp     # ~10 minutes
//	rtpbench -mode quick -out bench/out/rtp     # ~2 minutes
//	rtpbench -summary bench/out/rtp/runs/RUN    # rebuild the summary
//
// bench/rtp/run.sh builds the tools and calls this.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sipedge/sipedge/bench/internal/procstat"
	"github.com/sipedge/sipedge/relay/kernfwd"
)

// result is the part of rtpload's JSON the summary uses.
type result struct {
	Relay        string   `json:"relay"`
	Label        string   `json:"label"`
	Time         string   `json:"time"`
	Streams      int      `json:"streams"`
	PPSPerStream float64  `json:"pps_per_stream_dir"`
	OfferedPPS   float64  `json:"offered_pps"`
	DurationS    float64  `json:"duration_s"`
	PhoneSockets int      `json:"phone_sockets"`
	PacketBytes  int      `json:"packet_bytes"`
	Sent         uint64   `json:"sent"`
	Received     uint64   `json:"received"`
	LossPct      float64  `json:"loss_pct"`
	RelayedPPS   float64  `json:"relayed_pps"`
	Latency      latency  `json:"latency"`
	Added        *latency `json:"added_latency"`
	SendLag      latency  `json:"sender_lag"`
	RelayCores   float64  `json:"relay_cores"`
	RelayUserPct float64  `json:"relay_user_pct"`
	PPSPerCore   float64  `json:"pps_per_relay_core"`
	GenCores     float64  `json:"generator_cores"`
	MachineBusy  float64  `json:"machine_busy_cores"`
	Softirq      float64  `json:"machine_softirq_cores"`
	Other        float64  `json:"machine_other_cores"`
	Pass         bool     `json:"pass"`
	Why          string   `json:"why"`
	RelayStats   string   `json:"relay_stats"`

	file string
}

type latency struct {
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
}

type plan struct {
	relays      []string
	loads       []int
	duration    time.Duration
	searchDur   time.Duration
	searchStart int // streams for relays
	directStart int // streams for the direct (generator only) search
	searchMax   int
	searchOrder []string
	refine      int
	retries     int
	budget      time.Duration // no new search step starts after this
	quietWait   time.Duration
}

type bench struct {
	p       plan
	rtpload string
	relayd  string
	dir     string
	extra   []string
	log     *os.File
	steps   int
	start   time.Time
}

func main() {
	mode := flag.String("mode", "full", "full (~10 min) or quick (~2 min)")
	out := flag.String("out", "bench/out/rtp", "output directory; each run goes to OUT/runs/<time>")
	relays := flag.String("relays", "", "relays to measure, comma separated (default: reference,reference-epoll,sipedge,rtpengine; rtpengine only if installed)")
	loads := flag.String("loads", "", "fixed loads in streams (default full: 100,500,1000,2000; quick: 100,1000)")
	bin := flag.String("bin", "", "directory holding rtpload and relayd (default: next to rtpbench)")
	rtpengine := flag.String("rtpengine", "/usr/bin/rtpengine", "rtpengine binary")
	socks := flag.Int("socks", 64, "phone sockets per side (rtpload --socks; 0: one per phone)")
	summary := flag.String("summary", "", "only rebuild the summary of this run directory")
	noSearch := flag.Bool("no-search", false, "skip the saturation search")
	flag.Parse()

	if *summary != "" {
		rs, err := load(*summary)
		if err != nil {
			fatal("%v", err)
		}
		md := render(rs, "")
		fmt.Print(md)
		if err := os.WriteFile(filepath.Join(*summary, "summary.md"), []byte(md), 0o644); err != nil {
			fatal("%v", err)
		}
		return
	}

	var p plan
	switch *mode {
	case "full":
		p = plan{loads: []int{100, 500, 1000, 2000}, duration: 10 * time.Second, searchDur: 5 * time.Second,
			searchStart: 600, directStart: 2000, searchMax: 4000, refine: 1, retries: 1,
			searchOrder: []string{"sipedge", "rtpengine", "reference", "reference-epoll", "direct"},
			budget:      9*time.Minute + 30*time.Second, quietWait: 20 * time.Second}
	case "quick":
		p = plan{loads: []int{100, 1000}, duration: 3 * time.Second, searchDur: 2 * time.Second,
			searchStart: 600, directStart: 2000, searchMax: 4000, refine: 0, retries: 0,
			searchOrder: []string{"sipedge", "rtpengine"},
			budget:      110 * time.Second, quietWait: 3 * time.Second}
	default:
		fatal("-mode is full or quick")
	}
	if *loads != "" {
		p.loads = nil
		for _, s := range strings.Split(*loads, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				fatal("bad -loads %q", *loads)
			}
			p.loads = append(p.loads, n)
		}
	}
	if *noSearch {
		p.searchStart = 0
	}
	if *relays == "" {
		p.relays = []string{"reference", "reference-epoll", "sipedge"}
		if kf, err := kernfwd.Open([]string{"lo"}); err == nil {
			kf.Close()
			p.relays = append(p.relays, "sipedge-kernel")
		} else {
			fmt.Fprintf(os.Stderr, "rtpbench: no in-kernel fast path here (%v): sipedge-kernel left out\n", err)
		}
		if _, err := os.Stat(*rtpengine); err == nil {
			p.relays = append(p.relays, "rtpengine")
		} else {
			fmt.Fprintf(os.Stderr, "rtpbench: %s not installed: no rtpengine comparison\n", *rtpengine)
		}
	} else {
		for _, r := range strings.Split(*relays, ",") {
			if r = strings.TrimSpace(r); r != "" && r != "direct" {
				p.relays = append(p.relays, r)
			}
		}
	}

	b := &bench{p: p}
	dirOfBins := *bin
	if dirOfBins == "" {
		exe, err := os.Executable()
		if err != nil {
			fatal("%v", err)
		}
		dirOfBins = filepath.Dir(exe)
	}
	b.rtpload = filepath.Join(dirOfBins, "rtpload")
	b.relayd = filepath.Join(dirOfBins, "relayd")
	b.dir = filepath.Join(*out, "runs", time.Now().UTC().Format("20060102-150405"))
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		fatal("%v", err)
	}
	b.extra = []string{"--socks", strconv.Itoa(*socks), "--rtpengine", *rtpengine,
		"--relayd", b.relayd, "--relayd-args", "-ports 20000-39999", "--rtpengine-ports", "40000-59999"}
	lf, err := os.Create(filepath.Join(b.dir, "run.log"))
	if err != nil {
		fatal("%v", err)
	}
	b.log = lf
	defer lf.Close()
	start := time.Now()
	b.start = start
	b.logf("rtpbench %s: relays %v, loads %v streams × 50 pps × 2, %v per step; results in %s",
		*mode, p.relays, p.loads, p.duration, b.dir)

	// 1. Fixed loads: direct first (the baseline), then every relay.
	for _, n := range p.loads {
		base := b.step("load", "direct", n, p.duration, "")
		for _, r := range p.relays {
			bf := ""
			if base != nil {
				bf = base.file
			}
			b.step("load", r, n, p.duration, bf)
		}
	}
	// 2. Saturation: more streams at 50 pps until a step fails, then bisect;
	// the comparison first, the generator's own limit last.
	if p.searchStart > 0 {
		for _, r := range p.searchOrder {
			if r == "direct" || slices.Contains(p.relays, r) {
				b.search(r)
			}
		}
	}

	rs, err := load(b.dir)
	if err != nil {
		fatal("%v", err)
	}
	md := render(rs, fmt.Sprintf("%s mode, %d steps, %s", *mode, b.steps, time.Since(start).Round(time.Second)))
	if err := os.WriteFile(filepath.Join(b.dir, "summary.md"), []byte(md), 0o644); err != nil {
		fatal("%v", err)
	}
	_ = os.Remove(filepath.Join(*out, "latest"))
	_ = os.Symlink(filepath.Join("runs", filepath.Base(b.dir)), filepath.Join(*out, "latest"))
	fmt.Print("\n" + md)
	b.logf("done in %v; summary: %s", time.Since(start).Round(time.Second), filepath.Join(b.dir, "summary.md"))
}

func (b *bench) logf(format string, a ...any) {
	line := fmt.Sprintf("[%s] ", time.Now().Format("15:04:05")) + fmt.Sprintf(format, a...)
	fmt.Fprintln(os.Stderr, line)
	fmt.Fprintln(b.log, line)
}

// search raises the number of streams by 1.3× from its start until a step
// fails, then bisects between the last pass and the first failure.
func (b *bench) search(relay string) {
	p := b.p
	lo, hi := 0, 0
	start := p.searchStart
	if relay == "direct" {
		start = p.directStart
	}
	for n := start; ; n = roundTo(n*13/10, 50) {
		if b.overBudget(relay) {
			return
		}
		if n > p.searchMax {
			b.logf("search %s: reached %d streams without failing (limit)", relay, p.searchMax)
			return
		}
		r := b.step("search", relay, n, p.searchDur, "")
		if r != nil && r.Pass {
			lo = n
			continue
		}
		hi = n
		break
	}
	for i := 0; i < p.refine && hi-lo > 50; i++ {
		if b.overBudget(relay) {
			return
		}
		n := roundTo((lo+hi)/2, 50)
		if n <= lo || n >= hi {
			break
		}
		if r := b.step("search", relay, n, p.searchDur, ""); r != nil && r.Pass {
			lo = n
		} else {
			hi = n
		}
	}
	b.logf("search %s: passes at %d streams, fails at %d", relay, lo, hi)
}

func (b *bench) overBudget(relay string) bool {
	if time.Since(b.start) < b.p.budget {
		return false
	}
	b.logf("search %s: time budget of %v used up, search cut short", relay, b.p.budget)
	return true
}

func roundTo(n, m int) int { return max(m, (n+m/2)/m*m) }

// step runs rtpload once (again, up to retries, if it failed while other work
// was using the machine) and returns its result.
func (b *bench) step(phase, relay string, streams int, dur time.Duration, baseline string) *result {
	var last *result
	for try := 0; try <= b.p.retries; try++ {
		other := waitQuiet(0.25, b.p.quietWait)
		b.steps++
		name := fmt.Sprintf("%s-%s-%05d-t%d", phase, relay, streams, try)
		file := filepath.Join(b.dir, name+".json")
		args := []string{"--relay", relay, "--streams", strconv.Itoa(streams), "--duration", dur.String(),
			"--json", "--out", file, "--label", phase, "--log-dir", filepath.Join(b.dir, "logs", name)}
		if baseline != "" {
			args = append(args, "--baseline", baseline)
		}
		args = append(args, b.extra...)
		cmd := exec.Command(b.rtpload, args...)
		// rtpload stops its relay on SIGTERM; send it if we die first.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		stderr, _ := os.Create(filepath.Join(b.dir, name+".stderr"))
		cmd.Stderr = stderr
		err := cmd.Run()
		stderr.Close()
		if err != nil {
			msg, _ := os.ReadFile(filepath.Join(b.dir, name+".stderr"))
			b.logf("%-7s %-16s %5d streams: rtpload failed: %v: %s", phase, relay, streams, err, strings.TrimSpace(string(msg)))
			return nil
		}
		r, err := readResult(file)
		if err != nil {
			b.logf("%s: %v", file, err)
			return nil
		}
		last = r
		verdict := "pass"
		if !r.Pass {
			verdict = "FAIL " + r.Why
		}
		added := ""
		if r.Added != nil {
			added = fmt.Sprintf(" (+%.0f/+%.0f)", r.Added.P50, r.Added.P99)
		}
		b.logf("%-6s %-15s %5d streams %7.0f pps: relayed %7.0f, loss %.3f%%, p50/p99 %.0f/%.0f µs%s, relay %.2f cores = %.0f pps/core, gen %.2f, other %.2f (before %.2f): %s",
			phase, relay, streams, r.OfferedPPS, r.RelayedPPS, r.LossPct, r.Latency.P50, r.Latency.P99, added,
			r.RelayCores, r.PPSPerCore, r.GenCores, r.Other, other, verdict)
		if r.Pass || r.Other < 0.2 || try == b.p.retries {
			break
		}
		b.logf("  other work used %.2f cores during that step: trying again", r.Other)
	}
	return last
}

// waitQuiet waits (up to limit) until the machine's other load is below
// cores, and returns the last busy figure it saw.
func waitQuiet(cores float64, limit time.Duration) float64 {
	deadline := time.Now().Add(limit)
	for {
		a, err1 := procstat.ReadSys()
		time.Sleep(500 * time.Millisecond)
		c, err2 := procstat.ReadSys()
		if err1 != nil || err2 != nil {
			return math.NaN()
		}
		d := c.Sub(a)
		busy := float64(runtime.NumCPU()) - d.Idle/0.5
		if busy < cores || time.Now().After(deadline) {
			return busy
		}
	}
}

func readResult(file string) (*result, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	r.file = file
	return &r, nil
}

// load reads a run directory's results; of retried steps the last try wins.
func load(dir string) ([]*result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	byStep := map[string]*result{}
	var order []string
	for _, f := range files {
		r, err := readResult(f)
		if err != nil {
			return nil, err
		}
		base := filepath.Base(f)
		key := base[:strings.LastIndex(base, "-t")]
		if _, ok := byStep[key]; !ok {
			order = append(order, key)
		}
		byStep[key] = r
	}
	out := make([]*result, 0, len(order))
	for _, k := range order {
		out = append(out, byStep[k])
	}
	return out, nil
}

func fatal(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "rtpbench: "+format+"\n", a...)
	os.Exit(1)
}
