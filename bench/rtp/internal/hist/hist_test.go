package hist

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestIndexBoundsRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 1 << 20, 123456789, math.MaxInt64} {
		lo, hi := bounds(index(v))
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d with bounds [%d,%d]", v, index(v), lo, hi)
		}
		if v >= sub && float64(hi-lo+1)/float64(lo) > 1.0/sub+1e-12 {
			t.Fatalf("bucket of %d too wide: [%d,%d]", v, lo, hi)
		}
	}
	// Buckets must be contiguous and increasing.
	for i := 1; i < 40*sub; i++ {
		_, phi := bounds(i - 1)
		lo, _ := bounds(i)
		if lo != phi+1 {
			t.Fatalf("gap between bucket %d (hi %d) and %d (lo %d)", i-1, phi, i, lo)
		}
	}
}

func TestQuantileExactSmall(t *testing.T) {
	h := New()
	for v := int64(1); v <= 100; v++ {
		h.Add(v)
	}
	cases := map[float64]int64{0.01: 1, 0.5: 50, 0.99: 99, 0.999: 100, 1: 100}
	for q, want := range cases {
		if got := h.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %d, want %d", q, got, want)
		}
	}
	if h.Count() != 100 || h.Min() != 1 || h.Max() != 100 || h.Mean() != 50.5 {
		t.Errorf("count/min/max/mean = %d/%d/%d/%v", h.Count(), h.Min(), h.Max(), h.Mean())
	}
}

func TestQuantileAgainstSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	a, b := New(), New()
	var all []int64
	for i := 0; i < 200000; i++ {
		// log-normal-ish latencies from ~1 µs to ~10 ms
		v := int64(math.Exp(r.NormFloat64()*1.5 + 10))
		all = append(all, v)
		if i%2 == 0 {
			a.Add(v)
		} else {
			b.Add(v)
		}
	}
	a.Merge(b)
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := all[int(math.Ceil(q*float64(len(all))))-1]
		got := a.Quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 1.0/sub {
			t.Errorf("q=%v: got %d, exact %d (%.2f%% off)", q, got, want, rel*100)
		}
	}
	if a.Max() != all[len(all)-1] || a.Min() != all[0] {
		t.Errorf("min/max %d/%d, want %d/%d", a.Min(), a.Max(), all[0], all[len(all)-1])
	}
}

func TestEmptyAndNegative(t *testing.T) {
	h := New()
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Min() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	h.Add(-5)
	if h.Quantile(1) != 0 {
		t.Fatal("negative sample must count as 0")
	}
}
