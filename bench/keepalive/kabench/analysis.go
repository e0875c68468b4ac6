package main

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Spread describes how evenly the OPTIONS arrived over a window: the
// busiest 100 ms (and 10 ms) against the mean. A schedule without bursts
// has a ratio close to what uniformly random ping times give (the
// "random" figures: sipedge places each flow by a hash, so that is the
// reference, not 1.0).
type Spread struct {
	Bins10ms       int     `json:"bins_10ms"`
	Mean10ms       float64 `json:"mean_per_10ms"`
	Max10ms        uint32  `json:"max_per_10ms"`
	Ratio10ms      float64 `json:"max_over_mean_10ms"`
	Mean100ms      float64 `json:"mean_per_100ms"`
	Max100ms       uint32  `json:"max_per_100ms"`
	Min100ms       uint32  `json:"min_per_100ms"`
	Ratio100ms     float64 `json:"max_over_mean_100ms"`
	MaxPerSec      uint32  `json:"max_per_s"`
	MinPerSec      uint32  `json:"min_per_s"`
	LongestGapMs   float64 `json:"longest_silence_ms"` // longest run of empty 10 ms bins
	RandomRatio100 float64 `json:"random_max_over_mean_100ms"`
	RandomRatio10  float64 `json:"random_max_over_mean_10ms"`
}

// spread analyses 10 ms arrival counts.
func spread(bins []uint32) Spread {
	s := Spread{Bins10ms: len(bins)}
	if len(bins) == 0 {
		return s
	}
	var total uint64
	run, longest := 0, 0
	for _, c := range bins {
		total += uint64(c)
		s.Max10ms = max(s.Max10ms, c)
		if c == 0 {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	s.LongestGapMs = float64(longest) * float64(binNS) / 1e6
	s.Mean10ms = float64(total) / float64(len(bins))
	if s.Mean10ms > 0 {
		s.Ratio10ms = float64(s.Max10ms) / s.Mean10ms
	}
	agg := func(k int) (mx, mn uint32, mean float64) {
		n := len(bins) / k
		if n == 0 {
			return
		}
		var sum uint64
		mn = ^uint32(0)
		for i := 0; i < n; i++ {
			var c uint32
			for _, x := range bins[i*k : (i+1)*k] {
				c += x
			}
			sum += uint64(c)
			mx, mn = max(mx, c), min(mn, c)
		}
		return mx, mn, float64(sum) / float64(n)
	}
	s.Max100ms, s.Min100ms, s.Mean100ms = agg(10)
	if s.Mean100ms > 0 {
		s.Ratio100ms = float64(s.Max100ms) / s.Mean100ms
	}
	s.MaxPerSec, s.MinPerSec, _ = agg(100)
	return s
}

// randomMaxOverMean is the expected busiest-bin/mean ratio when n flows
// ping once per interval at uniformly random offsets, for bins of width
// bin (Monte Carlo, trials draws). The pattern repeats every interval, so
// one interval's bins are enough.
func randomMaxOverMean(n int, interval, bin time.Duration, trials int, seed uint64) float64 {
	nb := int(interval / bin)
	if n == 0 || nb == 0 {
		return 0
	}
	rng := rand.New(rand.NewPCG(seed, 0x6b61))
	counts := make([]uint32, nb)
	var sum float64
	for t := 0; t < trials; t++ {
		clear(counts)
		for i := 0; i < n; i++ {
			counts[rng.IntN(nb)]++
		}
		sum += float64(slices.Max(counts)) / (float64(n) / float64(nb))
	}
	return sum / float64(trials)
}

// histRange is the smallest and largest k of a "k → phones" histogram.
func histRange(h map[string]int) (lo, hi uint32) {
	first := true
	for k := range h {
		n, err := strconv.Atoi(k)
		if err != nil {
			continue
		}
		if first || uint32(n) < lo {
			lo = uint32(n)
		}
		if first || uint32(n) > hi {
			hi = uint32(n)
		}
		first = false
	}
	return lo, hi
}
