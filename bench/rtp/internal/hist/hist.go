// Package hist is a log-linear histogram for latency samples in nanoseconds.
//
// Values below 2^SubBits are counted exactly; above that every power-of-two
// range is cut into 2^SubBits buckets, so a reported percentile is within
// 1/2^SubBits (0.8 %) of the true sample value.
package hist

import (
	"math"
	"math/bits"
)

// SubBits sets the precision: 2^SubBits buckets per power of two.
const SubBits = 7

const sub = 1 << SubBits

// nBuckets covers every non-negative int64.
const nBuckets = (64 - SubBits) * sub

// Hist counts samples. The zero value is not ready; use New.
type Hist struct {
	counts []uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// New returns an empty histogram.
func New() *Hist {
	return &Hist{counts: make([]uint64, nBuckets), min: math.MaxInt64}
}

// index maps a value to its bucket.
func index(v int64) int {
	if v < sub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - SubBits - 1
	return shift*sub + int(uint64(v)>>uint(shift))
}

// bounds is the inclusive value range of bucket i.
func bounds(i int) (lo, hi int64) {
	if i < 2*sub {
		return int64(i), int64(i)
	}
	shift := i/sub - 1
	m := int64(i - shift*sub)
	return m << uint(shift), (m+1)<<uint(shift) - 1
}

// Add records one sample; negative values count as 0.
func (h *Hist) Add(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[index(v)]++
	h.n++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's samples to h.
func (h *Hist) Merge(o *Hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of samples.
func (h *Hist) Count() uint64 { return h.n }

// Min is the smallest sample (0 if empty).
func (h *Hist) Min() int64 {
	if h.n == 0 {
		return 0
	}
	return h.min
}

// Max is the largest sample.
func (h *Hist) Max() int64 { return h.max }

// Mean is the average sample.
func (h *Hist) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the q-quantile (0 < q <= 1) by the nearest-rank method:
// the smallest sample such that at least q·n samples are <= it, reported as
// the middle of its bucket and clamped to the observed min and max.
func (h *Hist) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			lo, hi := bounds(i)
			v := lo + (hi-lo)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
