package anchor

import (
	"strings"
	"testing"

	"github.com/sipedge/sipedge/proxy"
	"github.com/sipedge/sipedge/relay"
)

func TestDecide(t *testing.T) {
	nat := proxy.MediaLeg{NAT: true}
	pub := proxy.MediaLeg{}
	with := func(l proxy.MediaLeg, p string) proxy.MediaLeg { l.Policy = p; return l }
	tests := []struct {
		name    string
		def     string
		a, b    proxy.MediaLeg
		relayed bool
		reason  string
	}{
		{"nat: both public", NAT, pub, pub, false, "no side behind NAT"},
		{"nat: caller NATed", NAT, nat, pub, true, "caller behind NAT"},
		{"nat: callee NATed", NAT, pub, nat, true, "callee behind NAT"},
		{"nat: both NATed", NAT, nat, nat, true, "both sides"},
		{"always by default", Always, pub, pub, true, "always"},
		{"never by default", Never, nat, nat, false, "never for the caller"},
		{"callee user always", NAT, pub, with(pub, Always), true, "always"},
		{"never beats always", NAT, with(nat, Always), with(nat, Never), false, "never for the callee"},
		{"trunk never, phone NATed", NAT, nat, with(pub, Never), false, "never for the callee"},
		{"user nat overrides default always", Always, with(pub, NAT), with(pub, NAT), false, "no side behind NAT"},
	}
	for _, tt := range tests {
		relayed, reason := Decide(tt.def, tt.a, tt.b)
		if relayed != tt.relayed || !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: Decide = %v %q, want %v and a reason with %q", tt.name, relayed, reason, tt.relayed, tt.reason)
		}
	}
}

func TestVersioned(t *testing.T) {
	mk := func(v, port string) []byte {
		return []byte("v=0\r\no=- 42 " + v + " IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\nm=audio " + port + " RTP/AVP 0\r\n")
	}
	var c call
	steps := []struct {
		in      []byte
		version uint64
		want    string // o= version expected in the output
	}{
		{mk("1", "30000"), 1, "o=- 42 1 "}, // first: the phone's version
		{mk("1", "30000"), 1, "o=- 42 1 "}, // same SDP again (retransmission, forked branch): unchanged
		{mk("2", "30000"), 2, "o=- 42 2 "}, // the phone bumped: follow it
		{mk("2", "30002"), 2, "o=- 42 3 "}, // our ports changed under the same version: bump
		{mk("3", "30002"), 3, "o=- 42 4 "}, // the offset stays: strictly increasing
		{mk("3", "30002"), 3, "o=- 42 4 "}, // unchanged again
	}
	for i, s := range steps {
		out := c.versioned(relay.B, s.in, s.version)
		if !strings.Contains(string(out), s.want) {
			t.Errorf("step %d: output %q lacks %q", i, out, s.want)
		}
	}
}

func TestStripOrigin(t *testing.T) {
	in := []byte("v=0\r\no=- 1 1 IN IP4 a\r\ns=-\r\n")
	if got := string(stripOrigin(in)); got != "v=0\r\ns=-\r\n" {
		t.Errorf("stripOrigin = %q", got)
	}
	if got := string(stripOrigin([]byte("v=0\r\n"))); got != "v=0\r\n" {
		t.Errorf("stripOrigin without o= = %q", got)
	}
}
