package sdp

import "testing"

func benchApply(b *testing.B, file string, removeICE bool) {
	in := readFile(b, "testdata/"+file+".sdp")
	d, err := Parse(in)
	if err != nil {
		b.Fatal(err)
	}
	rw := Rewrite{Addr: relay4, Media: relayPorts(len(d.Media), removeICE), Version: d.Origin.Version + 1}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		out, err := Apply(in, rw)
		if err != nil || len(out) == 0 {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply is the common case: a linphone offer (session c=, a=rtcp
// with address, session and media ICE lines removed).
func BenchmarkApply(b *testing.B)       { benchApply(b, "linphone", true) }
func BenchmarkApplyWebRTC(b *testing.B) { benchApply(b, "webrtc", true) }

// BenchmarkApplyInsert rewrites one of two streams sharing the session
// c=, so a c= line is inserted.
func BenchmarkApplyInsert(b *testing.B) {
	in := readFile(b, "testdata/bria_video.sdp")
	rw := Rewrite{Addr: relay4, Media: relayPorts(1, true)}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Apply(in, rw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	in := readFile(b, "testdata/linphone.sdp")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

// Apply allocates only its output buffer for bodies with up to 16 m=
// lines; it runs on every SDP the proxy forwards.
func TestApplyAllocs(t *testing.T) {
	for _, c := range goldenCases(t) {
		in := readFile(t, "testdata/"+c.input+".sdp")
		if n := testing.AllocsPerRun(50, func() {
			if _, err := Apply(in, c.rw); err != nil {
				t.Fatal(err)
			}
		}); n != 1 {
			t.Errorf("%s: Apply made %v allocations, want 1", c.name, n)
		}
	}
}
