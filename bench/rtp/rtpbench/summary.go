package main

import (
	"fmt"
	"sort"
	"strings"
)

// render makes the Markdown summary of a run's results.
func render(rs []*result, note string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# RTP relay benchmark")
	w("")
	if note != "" {
		w("%s.", note)
	}
	if len(rs) > 0 {
		r := rs[0]
		w("%d-byte RTP packets (12-byte header + payload), 50 pps per stream and direction, %d phone sockets per side, first step at %s.",
			r.PacketBytes, r.PhoneSockets/2, r.Time)
	}
	w("")

	var loads, search []*result
	for _, r := range rs {
		if r.Label == "search" {
			search = append(search, r)
		} else {
			loads = append(loads, r)
		}
	}
	sort.SliceStable(loads, func(i, j int) bool {
		if loads[i].Streams != loads[j].Streams {
			return loads[i].Streams < loads[j].Streams
		}
		return rank(loads[i].Relay) < rank(loads[j].Relay)
	})
	sort.SliceStable(search, func(i, j int) bool { return rank(search[i].Relay) < rank(search[j].Relay) })
	if len(loads) > 0 {
		w("## Fixed loads")
		w("")
		w("| relay | streams | offered pps | relayed pps | loss %% | p50 / p99 µs | added p50 / p99 µs | relay cores | relay user %% | pps per relay core | generator cores | softirq cores | other cores | pass |")
		w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
		for _, r := range loads {
			user := ""
			if r.Relay != "direct" {
				user = fmt.Sprintf("%.0f", r.RelayUserPct)
			}
			w("| %s | %d | %.0f | %.0f | %.3f | %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %s |",
				r.Relay, r.Streams, r.OfferedPPS, r.RelayedPPS, r.LossPct, lat(r.Latency), added(r),
				cores(r), user, perCore(r), r.GenCores, r.Softirq, r.Other, verdict(r))
		}
		w("")
		ratioTable(&b, loads)
		addedTable(&b, loads)
	}
	if len(search) > 0 {
		w("## Saturation")
		w("")
		w("Streams are added (×1.3, then bisected) at 50 pps per direction until a step fails.")
		w("")
		w("| relay | most streams passing | relayed pps | p50 / p99 µs | relay cores | pps per relay core | generator cores | first failing step | why it failed |")
		w("|---|--:|--:|--:|--:|--:|--:|--:|---|")
		best := map[string]*result{}
		firstFail := map[string]*result{}
		var relays []string
		for _, r := range search {
			if _, seen := best[r.Relay]; !seen {
				if _, seen2 := firstFail[r.Relay]; !seen2 {
					relays = append(relays, r.Relay)
				}
			}
			if r.Pass {
				if b := best[r.Relay]; b == nil || r.Streams > b.Streams {
					best[r.Relay] = r
				}
			} else if f := firstFail[r.Relay]; f == nil || r.Streams < f.Streams {
				firstFail[r.Relay] = r
			}
		}
		for _, name := range relays {
			p, f := best[name], firstFail[name]
			row := []string{name, "none", "", "", "", "", "", "", ""}
			if p != nil {
				row[1] = fmt.Sprint(p.Streams)
				row[2] = fmt.Sprintf("%.0f", p.RelayedPPS)
				row[3] = lat(p.Latency)
				row[4] = cores(p)
				row[5] = perCore(p)
				row[6] = fmt.Sprintf("%.2f", p.GenCores)
			}
			if f != nil {
				row[7] = fmt.Sprint(f.Streams)
				row[8] = f.Why
			} else {
				row[7] = "none"
			}
			w("| %s |", strings.Join(row, " | "))
		}
		w("")
		if s, e := best["sipedge"], best["rtpengine"]; s != nil && e != nil {
			w("sipedge / rtpengine at saturation: %.2f× the packets/s, %.2f× the packets/s per relay core.",
				s.RelayedPPS/e.RelayedPPS, s.PPSPerCore/e.PPSPerCore)
			w("")
		}
	}
	w("Columns: *offered* = streams × pps × 2 directions; *relayed* = unique packets received per second in the measured window;")
	w("*loss* = packets sent in the window that never arrived; *p50 / p99* = one-way latency from the send stamp to the")
	w("kernel receive timestamp; *added* = that minus the direct (no relay) run at the same load; *relay cores* = the relay")
	w("process's utime+stime per wall second (*user %%*: the share in user space, the rest is the kernel working for it);")
	w("*pps per relay core* = relayed pps / relay cores; *softirq* = machine-wide packet delivery time, which on loopback runs in")
	w("the sending process and is part of its figure already; *other* = busy time of anything else on the machine")
	w("(steps where it exceeds 0.2 cores are marked disturbed).")
	w("A step fails on loss > 0.1 %%, a sender lag p99 > 20 ms (the generator could not offer the load) or a latency p99 > 20 ms.")
	return b.String()
}

// disturbed is the load from other processes (cores) above which a step's
// CPU figures are marked as unreliable.
const disturbed = 0.2

// grouped is a run's fixed-load results by load and relay.
type grouped struct {
	direct  map[int]*result            // the direct run at each load
	by      map[int]map[string]*result // streams -> relay -> result
	streams []int                      // loads with a relay result, in order of appearance
	names   map[string]bool            // relays measured
}

func group(loads []*result) grouped {
	g := grouped{direct: map[int]*result{}, by: map[int]map[string]*result{}, names: map[string]bool{}}
	for _, r := range loads {
		if r.Relay == "direct" {
			g.direct[r.Streams] = r
			continue
		}
		if g.by[r.Streams] == nil {
			g.by[r.Streams] = map[string]*result{}
			g.streams = append(g.streams, r.Streams)
		}
		g.by[r.Streams][r.Relay] = r
		g.names[r.Relay] = true
	}
	return g
}

// ratioTable compares pps per relay core at each load.
func ratioTable(b *strings.Builder, loads []*result) {
	g := group(loads)
	by, streams, names := g.by, g.streams, g.names
	if !names["sipedge"] {
		return
	}
	sort.Ints(streams)
	cols := []string{"sipedge"}
	for _, n := range []string{"rtpengine", "reference", "reference-epoll"} {
		if names[n] {
			cols = append(cols, n)
		}
	}
	fmt.Fprintf(b, "### Packets/s per relay core\n\n| streams |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c)
	}
	if names["rtpengine"] {
		fmt.Fprintf(b, " sipedge / rtpengine |")
	}
	fmt.Fprintf(b, "\n|--:|%s", strings.Repeat("--:|", len(cols)))
	if names["rtpengine"] {
		fmt.Fprintf(b, "--:|")
	}
	fmt.Fprintf(b, "\n")
	for _, n := range streams {
		fmt.Fprintf(b, "| %d |", n)
		for _, c := range cols {
			r := by[n][c]
			if r == nil {
				fmt.Fprintf(b, " |")
				continue
			}
			fmt.Fprintf(b, " %s%s |", perCore(r), marks(r))
		}
		if names["rtpengine"] {
			s, e := by[n]["sipedge"], by[n]["rtpengine"]
			if s != nil && e != nil && e.PPSPerCore > 0 {
				fmt.Fprintf(b, " %.2f× |", s.PPSPerCore/e.PPSPerCore)
			} else {
				fmt.Fprintf(b, " |")
			}
		}
		fmt.Fprintf(b, "\n")
	}
	fmt.Fprintf(b, "\n")
}

// addedTable compares relays by the machine's CPU they add: busy cores with
// the relay minus busy cores of the direct run at the same load. Unlike
// "relay cores" this also counts work done on the relay's behalf outside
// its process, which is where the in-kernel fast path works (in the
// sender's softirq), so it is the fair figure for sipedge-kernel.
func addedTable(b *strings.Builder, loads []*result) {
	g := group(loads)
	direct, by, streams, names := g.direct, g.by, g.streams, g.names
	if len(direct) == 0 || !names["rtpengine"] {
		return
	}
	sort.Ints(streams)
	var cols []string
	for _, n := range []string{"sipedge", "sipedge-kernel", "rtpengine", "reference", "reference-epoll"} {
		if names[n] {
			cols = append(cols, n)
		}
	}
	ours := []string{}
	for _, n := range []string{"sipedge", "sipedge-kernel"} {
		if names[n] {
			ours = append(ours, n)
		}
	}
	fmt.Fprintf(b, "### Packets/s per added machine core\n\nAdded cores = machine busy cores with the relay − with the direct run at the same load.\n\n| streams | direct busy cores |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s: added cores, pps per added core |", c)
	}
	for _, o := range ours {
		fmt.Fprintf(b, " %s / rtpengine |", o)
	}
	fmt.Fprintf(b, "\n|--:|--:|%s%s\n", strings.Repeat("--:|", len(cols)), strings.Repeat("--:|", len(ours)))
	perAdded := func(r, d *result) float64 {
		if r == nil || d == nil || r.MachineBusy-d.MachineBusy <= 0 {
			return 0
		}
		return r.RelayedPPS / (r.MachineBusy - d.MachineBusy)
	}
	for _, n := range streams {
		d := direct[n]
		if d == nil {
			continue
		}
		fmt.Fprintf(b, "| %d | %.2f |", n, d.MachineBusy)
		for _, c := range cols {
			r := by[n][c]
			if r == nil {
				fmt.Fprintf(b, " |")
				continue
			}
			fmt.Fprintf(b, " %.2f, %.0f%s |", r.MachineBusy-d.MachineBusy, perAdded(r, d), marks(r))
		}
		for _, o := range ours {
			s, e := perAdded(by[n][o], d), perAdded(by[n]["rtpengine"], d)
			if s > 0 && e > 0 {
				fmt.Fprintf(b, " %.2f× |", s/e)
			} else {
				fmt.Fprintf(b, " |")
			}
		}
		fmt.Fprintf(b, "\n")
	}
	fmt.Fprintf(b, "\n")
}

// marks flags a table cell whose step failed or was disturbed.
func marks(r *result) string {
	m := ""
	if !r.Pass {
		m = " (failed)"
	}
	if r.Other > disturbed {
		m += " (disturbed)"
	}
	return m
}

// rank orders relays in tables: the baseline, the references, ours, theirs.
func rank(relay string) int {
	for i, r := range []string{"direct", "reference", "reference-epoll", "sipedge", "sipedge-kernel", "rtpengine"} {
		if r == relay {
			return i
		}
	}
	return 99
}

func lat(l latency) string { return fmt.Sprintf("%.0f / %.0f", l.P50, l.P99) }

func added(r *result) string {
	if r.Added == nil {
		return ""
	}
	return fmt.Sprintf("%.0f / %.0f", r.Added.P50, r.Added.P99)
}

func cores(r *result) string {
	if r.Relay == "direct" {
		return ""
	}
	return fmt.Sprintf("%.2f", r.RelayCores)
}

func perCore(r *result) string {
	if r.Relay == "direct" || r.RelayCores <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f", r.PPSPerCore)
}

func verdict(r *result) string {
	if r.Pass {
		return "yes"
	}
	return "**no**: " + r.Why
}
