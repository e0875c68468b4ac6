package location

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sipedge/sipedge/sipx"
)

var userAgents = []string{
	"Yealink SIP-T46S 66.86.0.15",
	"Grandstream GXP2170 1.0.11.74",
	"Linphone/5.2.5 (belle-sip/5.2.4)",
	"Zoiper rv2.10.20.4",
	"PolycomVVX-VVX_450-UA/6.4.6.2457",
}

// typicalBinding is a NATed UDP phone as a registrar would store it; all
// strings are freshly allocated, as a parser would hand them over.
func typicalBinding(i int, now time.Time) Binding {
	host := fmt.Sprintf("192.168.%d.%d", i/250%250, i%250+2)
	user := fmt.Sprintf("user%06d", i)
	uri := fmt.Sprintf("sip:%s@%s:5060;line=%08x", user, host, i*7919)
	inst := fmt.Sprintf("<urn:uuid:00000000-0000-1000-8000-%012x>", i)
	return Binding{
		AOR:        user + "@example.com",
		User:       user,
		Contact:    fmt.Sprintf("<%s>;reg-id=1;+sip.instance=\"%s\";expires=3600", uri, inst),
		ContactURI: uri,
		Flow: sipx.Flow{Transport: sipx.UDP, Local: netip.MustParseAddrPort("198.51.100.10:5060"),
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 16), byte(i >> 8)}), uint16(1024+i%60000))},
		Expires:    now.Add(time.Hour),
		Registered: now,
		Updated:    now,
		CallID:     fmt.Sprintf("%032x@%s", i*104729, host),
		CSeq:       uint32(i),
		UserAgent:  string([]byte(userAgents[i%len(userAgents)])),
		NAT:        true,
		NATReasons: []string{string([]byte("via-address!=source")), string([]byte("via-port!=source")), string([]byte("private-via")),
			string([]byte("contact-address!=source")), string([]byte("contact-port!=source")), string([]byte("private-contact"))},
		Instance: inst,
		RegID:    1,
	}
}

// heapPerBinding fills a memory-only store with n typical bindings (one per
// AOR) and returns the live heap it holds per binding, after GC.
func heapPerBinding(tb testing.TB, n int) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := Open(nil, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	for i := range n {
		b := typicalBinding(i, now)
		if _, err := s.Update(b.AOR, set(b)); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if _, nb := s.Count(); nb != n {
		tb.Fatalf("stored %d bindings, want %d", nb, n)
	}
	runtime.KeepAlive(s)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkStore100k reports the heap held per registration with 100k
// users (B/binding), table, flow index and intern tables included; ns/op is
// the time to register all 100k.
func BenchmarkStore100k(b *testing.B) {
	var per float64
	for b.Loop() {
		per = heapPerBinding(b, 100_000)
	}
	b.ReportMetric(per, "B/binding")
}

// BenchmarkFlush100k measures persistence with 100k AORs: writing all of
// them in one transaction (a cold start), a steady-state flush of 1,000
// changed AORs into the full file, and loading the file back (Open).
func BenchmarkFlush100k(b *testing.B) {
	now := time.Now()
	var all, some, load time.Duration
	for b.Loop() {
		b.StopTimer()
		db, err := bbolt.Open(filepath.Join(b.TempDir(), "loc.db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		s, err := Open(db, Options{FlushInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		for i := range 100_000 {
			bd := typicalBinding(i, now)
			s.Update(bd.AOR, set(bd))
		}
		b.StartTimer()
		t0 := time.Now()
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
		all = time.Since(t0)
		for i := range 1000 {
			bd := typicalBinding(i*97, now.Add(time.Second))
			s.Update(bd.AOR, set(bd))
		}
		t0 = time.Now()
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
		some = time.Since(t0)
		s.Close()
		t0 = time.Now()
		s2, err := Open(db, Options{FlushInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		load = time.Since(t0)
		b.StopTimer()
		if _, n := s2.Count(); n != 100_000 {
			b.Fatalf("loaded %d", n)
		}
		s2.Close()
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(all.Milliseconds()), "ms/flush-100k")
	b.ReportMetric(float64(some.Microseconds())/1000, "ms/flush-1k")
	b.ReportMetric(float64(load.Milliseconds()), "ms/load-100k")
}

func BenchmarkUpdateParallel(b *testing.B) {
	s, _ := Open(nil, Options{})
	now := time.Now()
	bs := make([]Binding, 10_000)
	for i := range bs {
		bs[i] = typicalBinding(i, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			bd := bs[i%len(bs)]
			s.Update(bd.AOR, set(bd))
			i += 7
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	s, _ := Open(nil, Options{})
	now := time.Now()
	for i := range 10_000 {
		bd := typicalBinding(i, now)
		s.Update(bd.AOR, set(bd))
	}
	aors := make([]string, 1000)
	for i := range aors {
		aors[i] = fmt.Sprintf("user%06d@example.com", i*10)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Lookup(aors[i%len(aors)])
		i++
	}
}
