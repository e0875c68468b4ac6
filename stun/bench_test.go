package stun

import (
	"net/netip"
	"testing"
)

func BenchmarkRespond(b *testing.B) {
	src := netip.MustParseAddrPort("198.51.100.7:40512")
	for _, bc := range []struct {
		name string
		req  []byte
		o    *ResponderOptions
	}{
		{"keepalive", request(b, false, nil), nil},
		{"fingerprint+software", request(b, true, nil), &ResponderOptions{Software: "sipedge"}},
		{"rfc5769", unhex(b, rfc5769Request), &ResponderOptions{Software: "sipedge"}},
		{"420", request(b, true, func(bl *Builder) { bl.AddRaw(0x0777, nil) }), nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 1500)
			b.ReportAllocs()
			for b.Loop() {
				out, ok := Respond(buf[:0], bc.req, src, bc.o)
				if !ok || len(out) == 0 {
					b.Fatal("no response")
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	req := unhex(b, rfc5769Request)
	b.Run("Parse", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Parse(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		var m Message
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Unmarshal(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRespondAllocs pins the zero-allocation property outside benchmarks.
func TestRespondAllocs(t *testing.T) {
	src := netip.MustParseAddrPort("[2001:db8::7]:5060")
	req := unhex(t, rfc5769Request)
	bad := request(t, true, func(bl *Builder) { bl.AddRaw(0x0777, nil) })
	o := &ResponderOptions{Software: "sipedge", OtherAddress: netip.MustParseAddrPort("[2001:db8::1]:3479")}
	garbage := []byte("garbage that is not STUN")
	o5780 := &ResponderOptions{Software: "sipedge", ResponsePort: true,
		ResponseOrigin: netip.MustParseAddrPort("[2001:db8::1]:3478"), OtherAddress: netip.MustParseAddrPort("[2001:db8::2]:3479")}
	change := request(t, true, func(bl *Builder) {
		bl.AddChangeRequest(true, true)
		bl.AddRaw(AttrResponsePort, []byte{0x13, 0x88, 0, 0})
	})
	buf := make([]byte, 0, 1500)
	if n := testing.AllocsPerRun(100, func() {
		Respond(buf[:0], req, src, o)
		Respond(buf[:0], bad, src, o)
		Respond(buf[:0], garbage, src, o)
		RespondTo(buf[:0], change, src, o5780)
	}); n != 0 {
		t.Errorf("Respond allocates %v times", n)
	}
}
