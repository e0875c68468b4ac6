package location

import (
	"encoding/json"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

func TestCodecRoundTrip(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := [][]Binding{
		nil,
		{{}}, // zero binding: zero times, no flow
		{fullBinding(now)},
		{fullBinding(now), binding("sip:b@10.0.0.2", udpFlow("203.0.113.5:1024"), now.Add(time.Minute))},
		{{Flow: sipx.Flow{Transport: "udp", Remote: netip.MustParseAddrPort("[fe80::1%eth0]:5060")}, Q: 0.001, RegID: -1}},
		{{Q: float32(math.NaN())}}, // found by FuzzDecode: NaN must compare equal to itself
	}
	for i, bs := range cases {
		data := encodeBindings(nil, bs)
		got, err := decodeBindings("a@x", data)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		want := make([]Binding, len(bs))
		for j := range bs {
			want[j] = bs[j]
			want[j].AOR = "a@x"
		}
		if !equalBindings(got, want) {
			t.Errorf("case %d:\n got %+v\nwant %+v", i, got, want)
		}
		for j := range got {
			if got[j].Flow != want[j].Flow {
				t.Errorf("case %d: flow %v, want %v", i, got[j].Flow, want[j].Flow)
			}
		}
		// Every truncation fails cleanly.
		for n := range len(data) {
			if _, err := decodeBindings("a@x", data[:n]); err == nil {
				t.Errorf("case %d: truncated to %d bytes decoded", i, n)
			}
		}
		if _, err := decodeBindings("a@x", append(data, 0)); err == nil {
			t.Errorf("case %d: trailing byte accepted", i)
		}
	}
}

func FuzzDecode(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Add(encodeBindings(nil, []Binding{fullBinding(now)}))
	f.Add(encodeBindings(nil, []Binding{{}, binding("sip:x", udpFlow("1.2.3.4:5"), now)}))
	f.Add([]byte{recordV1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := decodeBindings("a@x", data)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes (modulo time location).
		again, err := decodeBindings("a@x", encodeBindings(nil, bs))
		if err != nil || !equalBindings(again, bs) {
			t.Fatalf("re-decode mismatch: %v", err)
		}
	})
}

// BenchmarkCodec compares the record format with encoding/json for one
// typical NATed binding (the usual one-binding AOR).
func BenchmarkCodec(b *testing.B) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	bs := []Binding{typicalBinding(0, now)}
	b.Run("binary/encode", func(b *testing.B) {
		var buf []byte
		b.ReportAllocs()
		for b.Loop() {
			buf = encodeBindings(buf[:0], bs)
		}
		b.ReportMetric(float64(len(buf)), "bytes/record")
	})
	b.Run("binary/decode", func(b *testing.B) {
		data := encodeBindings(nil, bs)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeBindings("a@x", data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json/encode", func(b *testing.B) {
		var data []byte
		b.ReportAllocs()
		for b.Loop() {
			data, _ = json.Marshal(bs)
		}
		b.ReportMetric(float64(len(data)), "bytes/record")
	})
	b.Run("json/decode", func(b *testing.B) {
		data, _ := json.Marshal(bs)
		b.ReportAllocs()
		for b.Loop() {
			var out []Binding
			if err := json.Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
