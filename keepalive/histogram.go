package keepalive

import (
	"sync/atomic"
	"time"
)

// RTTBuckets are the upper bounds of the RTT histogram's buckets.
var RTTBuckets = [...]time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// Histogram counts round-trip times in RTTBuckets (Prometheus style: the
// exporter makes the counts cumulative). Safe for concurrent use.
type Histogram struct {
	counts [len(RTTBuckets) + 1]atomic.Uint64 // last: above every bound
	sum    atomic.Int64                       // nanoseconds
}

// Observe adds one RTT.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(RTTBuckets) && d > RTTBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot returns the per-bucket counts (not cumulative; the last one is
// for RTTs above every bound) and the sum of all RTTs.
func (h *Histogram) Snapshot() (counts []uint64, sum time.Duration) {
	counts = make([]uint64, len(h.counts))
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
	}
	return counts, time.Duration(h.sum.Load())
}
