package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// derived are the headline figures computed across runs.
type derived struct {
	n int
	// Memory per binding, bytes.
	regRSS, regAnon, regHeap float64 // keepalive off: registrations only
	totRSS, totAnon, totHeap float64 // keepalive on: everything
	kaRSS, kaAnon, kaHeap    float64 // keepalive on minus off (growth over each run's baseline)
	haveOff, haveKA          bool
	idlePerS                 float64 // sipedge CPU s per s with N registrations, keepalive off
}

func derive(rs []*Result) derived {
	var d derived
	var off, ka *Result
	for _, r := range rs {
		if r.IntervalS == 0 && off == nil && r.MemAfter.RSS > 0 {
			off = r
		}
		if r.IntervalS > 0 && ka == nil && r.MemAfter.RSS > 0 {
			ka = r
		}
	}
	per := func(a, b uint64, n int) float64 { return (float64(a) - float64(b)) / float64(max(n, 1)) }
	if off != nil {
		d.haveOff, d.n = true, off.Phones
		d.regRSS = per(off.MemAfter.RSS, off.Baseline.RSS, off.Phones)
		d.regAnon = per(off.MemAfter.RSSAnon, off.Baseline.RSSAnon, off.Phones)
		d.regHeap = per(off.MemAfter.HeapAfterGC, off.Baseline.HeapAfterGC, off.Phones)
		if off.Idle != nil && off.Idle.WallS > 0 {
			d.idlePerS = off.Idle.SipedgeS / off.Idle.WallS
		}
	}
	if ka != nil {
		d.haveKA, d.n = true, ka.Phones
		d.totRSS = per(ka.MemAfter.RSS, ka.Baseline.RSS, ka.Phones)
		d.totAnon = per(ka.MemAfter.RSSAnon, ka.Baseline.RSSAnon, ka.Phones)
		d.totHeap = per(ka.MemAfter.HeapAfterGC, ka.Baseline.HeapAfterGC, ka.Phones)
		if d.haveOff {
			d.kaRSS, d.kaAnon, d.kaHeap = d.totRSS-d.regRSS, d.totAnon-d.regAnon, d.totHeap-d.regHeap
		}
	}
	return d
}

// netUsPerPing is sipedge's CPU per ping minus what it burns idle with
// the same registrations (keepalive off run).
func netUsPerPing(w *Window, d derived) (float64, bool) {
	if w == nil || w.Pings == 0 || !d.haveOff {
		return 0, false
	}
	return (w.CPU.SipedgeS - d.idlePerS*w.CPU.WallS) / float64(w.Pings) * 1e6, true
}

func render(rs []*Result, note, dir string) string {
	var b strings.Builder
	w := func(format string, a ...any) {
		if len(a) == 0 { // a literal line: no verbs
			b.WriteString(format + "\n")
			return
		}
		fmt.Fprintf(&b, format+"\n", a...)
	}
	d := derive(rs)
	w("# sipedge keepalive benchmark")
	w("")
	if len(rs) > 0 {
		r := rs[0]
		w("%d NATed phones on loopback (one UDP socket and source address each), digest-registered, answering every OPTIONS; %s; sipedge built from %s; first run at %s.",
			r.Phones, r.Machine, r.Source, r.Time)
	}
	if note != "" {
		w("%s.", note)
	}
	w("")

	if d.haveKA || d.haveOff {
		w("## Headline")
		w("")
		w("| figure | value |")
		w("|---|--:|")
		for _, r := range rs {
			if r.Window == nil {
				continue
			}
			x := r.Window
			net := ""
			if v, ok := netUsPerPing(x, d); ok {
				net = fmt.Sprintf(" (%.1f net of idle)", v)
			}
			w("| keepalive %gs: sipedge CPU, %% of one core | %.2f %% |", r.IntervalS, x.CPU.SipedgePct)
			w("| keepalive %gs: sipedge CPU per ping | %.1f µs%s |", r.IntervalS, x.UsPerPing, net)
			w("| keepalive %gs: pings/s seen by the phones (expected) | %.0f (%.0f) |", r.IntervalS, x.PingsPerS, x.ExpectedPerS)
			if t := r.Totals; t != nil && t.Pings > 0 {
				w("| keepalive %gs: whole run: pings sent / answered / missed | %.0f / %.0f (%.3f %%) / %.0f |", r.IntervalS, t.Pings, t.Answers, 100*t.Answers/t.Pings, t.Missed)
			} else {
				w("| keepalive %gs: answered / missed (window) | %.3f %% / %.0f |", r.IntervalS, x.AnsweredPct, x.SEMissed)
			}
			w("| keepalive %gs: busiest 100 ms / mean (uniformly random phases would give) | %.2f (%.2f) |", r.IntervalS, x.Spread.Ratio100ms, x.Spread.RandomRatio100)
		}
		if d.haveOff {
			w("| memory per registration, keepalive off: RSS / Go heap after GC | %s / %s |", bytesStr(d.regRSS), bytesStr(d.regHeap))
		}
		if d.haveKA {
			w("| memory per binding, keepalive on: RSS / Go heap after GC | %s / %s |", bytesStr(d.totRSS), bytesStr(d.totHeap))
		}
		if d.haveKA && d.haveOff {
			w("| of which the keepalive's own share: RSS / Go heap after GC | %s / %s |", bytesStr(d.kaRSS), bytesStr(d.kaHeap))
		}
		if d.haveOff {
			w("| sipedge idle with N registrations, keepalive off | %.2f %% of one core |", 100*d.idlePerS)
		}
		w("")
	}

	w("## Runs")
	w("")
	w("| run | keepalive | loadavg before | other cores before | registered (failed, retries) | reg. time s | UDP errors while registering | status: registrations / NATed | sipedge log lines | errors |")
	w("|---|---|---|--:|---|--:|---|---|--:|---|")
	for _, r := range rs {
		ka := "off"
		if r.IntervalS > 0 {
			ka = fmt.Sprintf("%gs", r.IntervalS)
		}
		w("| %s | %s | %s | %.2f | %d (%d, %d) | %.1f | %s | %d / %d | %d | %s |", r.Label, ka, r.LoadAvg, r.OtherBefore,
			r.Reg.Registered, r.Reg.Failed, r.Reg.Retries, r.Reg.CompleteS, intMapStr(r.RegUDP), r.Registrations, r.NATed, r.LogWarnings, strings.Join(r.Errors, "; "))
	}
	w("")

	w("## CPU")
	w("")
	w("sipedge's utime+stime from /proc/PID/stat over the window; *other* = machine busy time minus sipedge and the generator (other agents' work; a high value means a disturbed run).")
	w("")
	w("| run | window s (intervals) | pings/s (expected) | sipedge % of one core | user / sys s | µs per ping | µs per ping net of idle | sipedge alloc B (objects) per ping | GC cycles | generator % | generator µs per ping | other % | softirq s |")
	w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rs {
		if r.Idle != nil {
			c := r.Idle
			w("| %s (idle, %d registrations) | %.1f | 0 | %.2f | %.2f / %.2f | | | | | %.2f | | %.2f | %.2f |",
				r.Label, r.Phones, c.WallS, c.SipedgePct, c.SipedgeUserS, c.SipedgeSysS, c.GenPct, c.OtherPct, c.SoftirqS)
		}
		if x := r.Window; x != nil {
			net := ""
			if v, ok := netUsPerPing(x, d); ok {
				net = fmt.Sprintf("%.1f", v)
			}
			w("| %s | %.1f (%.1f) | %.0f (%.0f) | %.2f | %.2f / %.2f | %.1f | %s | %.0f (%.1f) | %d | %.2f | %.1f | %.2f | %.2f |",
				r.Label, x.Seconds, x.Intervals, x.PingsPerS, x.ExpectedPerS, x.CPU.SipedgePct, x.CPU.SipedgeUserS, x.CPU.SipedgeSysS,
				x.UsPerPing, net, x.AllocPerPing, x.MallocsPerPing, x.GCs, x.CPU.GenPct, x.GenUsPerPing, x.CPU.OtherPct, x.CPU.SoftirqS)
		}
		for _, x := range r.Discarded {
			w("| %s (discarded: disturbed) | %.1f (%.1f) | %.0f (%.0f) | %.2f | %.2f / %.2f | %.1f | | %.0f (%.1f) | %d | %.2f | %.1f | %.2f | %.2f |",
				r.Label, x.Seconds, x.Intervals, x.PingsPerS, x.ExpectedPerS, x.CPU.SipedgePct, x.CPU.SipedgeUserS, x.CPU.SipedgeSysS,
				x.UsPerPing, x.AllocPerPing, x.MallocsPerPing, x.GCs, x.CPU.GenPct, x.GenUsPerPing, x.CPU.OtherPct, x.CPU.SoftirqS)
		}
	}
	w("")

	w("## Pings: delivery and schedule")
	w("")
	w("*answered* and *missed* are sipedge's own counters (/metrics deltas over the window; pings in flight when the counters are read make the ratio differ from 100 % by a few pings either way — the whole-run totals in the headline are read after every ping was answered or timed out). *busiest/mean*: OPTIONS arrivals at the phones in 100 ms and 10 ms bins; *random* is the same ratio for uniformly random ping times (Monte Carlo), the reference for a hash-spread schedule. *gap*: time between two pings of one phone minus the interval. Arrival times are the kernel's receive stamps (SO_TIMESTAMPNS), i.e. when sipedge sent; *read lag* is how much later the generator read them.")
	w("")
	w("| run | pings (phones) | sipedge sent / answered / missed | answered % | busiest/mean 100 ms (random) | busiest/mean 10 ms (random) | pings/s min–max (1 s bins) | longest silence ms | pings per phone | gap |dev| mean / min / max ms | RTT mean ms | flows by status | read lag mean / max ms | UDP errors |")
	w("|---|--:|---|--:|--:|--:|---|--:|---|---|--:|---|---|---|")
	for _, r := range rs {
		x := r.Window
		if x == nil {
			continue
		}
		w("| %s | %d | %.0f / %.0f / %.0f | %.3f | %.2f (%.2f) | %.2f (%.2f) | %d–%d | %.0f | %s | %.2f / %.2f / %.2f | %.3f | %s | %.2f / %.1f | %s |",
			r.Label, x.Pings, x.SEPings, x.SEAnswers, x.SEMissed, x.AnsweredPct, x.Spread.Ratio100ms, x.Spread.RandomRatio100,
			x.Spread.Ratio10ms, x.Spread.RandomRatio10, x.Spread.MinPerSec, x.Spread.MaxPerSec, x.Spread.LongestGapMs,
			histStr(x.PerPhone), x.Gap.MeanAbsDevMs, x.Gap.MinDevMs, x.Gap.MaxDevMs, x.RTTMeanMs, mapStr(x.Flows),
			x.GenLagMeanMs, x.GenLagMaxMs, intMapStr(x.UDP))
	}
	w("")

	w("## Memory")
	w("")
	w("VmRSS / RssAnon from /proc/PID/status; *heap after GC* is HeapAlloc right after a forced GC (`/debug/pprof/heap?gc=1&debug=1`); *status heap* is `heap_bytes` of /api/v1/status (includes uncollected garbage).")
	w("")
	w("| run | reading | VmRSS MB | RssAnon MB | RssFile MB | heap after GC MB | status heap MB |")
	w("|---|---|--:|--:|--:|--:|--:|")
	for _, r := range rs {
		for _, m := range []struct {
			name string
			m    Mem
		}{{"baseline (users loaded, no registrations)", r.Baseline}, {afterName(r), r.MemAfter}} {
			w("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f |", r.Label, m.name, mbf(m.m.RSS), mbf(m.m.RSSAnon), mbf(m.m.RSSFile),
				mbf(m.m.HeapAfterGC), mbf(m.m.StatusHeap))
		}
	}
	w("")
	if d.haveOff || d.haveKA {
		w("| per binding | VmRSS | RssAnon | Go heap after GC |")
		w("|---|--:|--:|--:|")
		if d.haveOff {
			w("| registration, keepalive off (off run: after − baseline) | %s | %s | %s |", bytesStr(d.regRSS), bytesStr(d.regAnon), bytesStr(d.regHeap))
		}
		if d.haveKA {
			w("| total, keepalive on (first keepalive run: after − baseline) | %s | %s | %s |", bytesStr(d.totRSS), bytesStr(d.totAnon), bytesStr(d.totHeap))
		}
		if d.haveKA && d.haveOff {
			w("| keepalive's own share (difference of the two) | %s | %s | %s |", bytesStr(d.kaRSS), bytesStr(d.kaAnon), bytesStr(d.kaHeap))
		}
		w("")
	}

	for _, r := range rs {
		e := r.Endpoints
		if e == nil {
			continue
		}
		w("## Admin API at %d bindings (run %s)", r.Phones, r.Label)
		w("")
		w("*ping silence*: longest run of empty 10 ms bins in the OPTIONS arrivals while the call ran (the measurement window's: %.0f ms).", e.WindowSilence)
		w("")
		w("| endpoint | time ms | bytes | sipedge CPU ms | ping silence ms | notes |")
		w("|---|--:|--:|--:|--:|---|")
		w("| GET /api/v1/status | %.0f | | %.0f | | |", e.StatusMs, e.StatusCPUms)
		w("| GET /metrics | %.0f | %d | %.0f | %.0f | |", e.MetricsMs, e.MetricsBytes, e.MetricsCPUms, e.MetricsSilence)
		w("| GET /api/v1/peers | %.0f | %d | %.0f | %.0f | RSS %.0f → %.0f MB%s |", e.PeersMs, e.PeersBytes, e.PeersCPUms, e.PeersSilence,
			mbf(e.PeersRSSBefore), mbf(e.PeersRSSAfter), errSuffix(e.PeersErr))
		w("")
	}

	for _, r := range rs {
		if len(r.Profiles) == 0 {
			continue
		}
		w("## Profiles (run %s)", r.Label)
		w("")
		w("Files: %s.", strings.Join(r.Profiles, ", "))
		if dir != "" {
			for _, f := range []string{"cpu-" + r.Label + "-top.txt", "alloc-" + r.Label + "-window-top.txt"} {
				if top := head(filepath.Join(dir, f), 24); top != "" {
					w("")
					w("%s:", f)
					w("")
					w("```")
					w("%s", top)
					w("```")
				}
			}
		}
		w("")
	}
	return b.String()
}

func afterName(r *Result) string {
	if r.IntervalS == 0 {
		return fmt.Sprintf("%d registrations, keepalive off", r.Phones)
	}
	return fmt.Sprintf("%d registrations, keepalive %gs, after the window", r.Phones, r.IntervalS)
}

func head(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func mbf(n uint64) float64 { return float64(n) / 1e6 }

func bytesStr(v float64) string { return fmt.Sprintf("%.0f B", v) }

func histStr(h map[string]int) string {
	keys := make([]int, 0, len(h))
	for k := range h {
		n, _ := strconv.Atoi(k)
		keys = append(keys, n)
	}
	sort.Ints(keys)
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%d: %d", k, h[strconv.Itoa(k)]))
	}
	return strings.Join(s, ", ")
}

func intMapStr(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(s, ", ")
}

func mapStr(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var s []string
	for _, k := range keys {
		s = append(s, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	return strings.Join(s, ", ")
}
