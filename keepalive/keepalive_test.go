package keepalive

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

func flow(port uint16) sipx.Flow {
	return sipx.Flow{Transport: sipx.UDP, Local: netip.MustParseAddrPort("198.51.100.10:5060"),
		Remote: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.21"), port)}
}

// TestNextBeatsNATTimeout: every flow's interval is below the 30 s Linux
// conntrack timeout for unassured UDP, at most 20 % early, and keys spread.
func TestNextBeatsNATTimeout(t *testing.T) {
	t0 := time.Unix(1000, 0)
	seen := map[time.Duration]bool{}
	for i := 0; i < 200; i++ {
		d := Next("call-"+string(rune('a'+i%26))+string(rune('a'+i/26)), t0, DefaultInterval).Sub(t0)
		if d >= 30*time.Second || d > DefaultInterval || d < DefaultInterval*8/10 {
			t.Fatalf("interval %v outside [16s, 20s] (NAT timeout 30s)", d)
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Fatalf("jitter does not spread flows: only %d distinct intervals for 200 keys", len(seen))
	}
}

// TestPingerSchedule drives the pinger with an injected clock: nothing
// before the interval, one ping per NATed flow when due, none after
// DialogDown, and a forgotten dialog stops at MaxAge.
func TestPingerSchedule(t *testing.T) {
	now := time.Unix(5000, 0)
	var sent []sipx.Flow
	p := New(Config{
		Interval: 20 * time.Second, MaxAge: time.Hour,
		Now:   func() time.Time { return now },
		Send:  func(f sipx.Flow, b []byte) error { sent = append(sent, f); return nil },
		Build: func(f sipx.Flow) []byte { return []byte("x") },
	})
	p.DialogUp("c1", flow(4000), flow(4001))
	p.DialogUp("c2", flow(4002))
	if n := p.Tick(); n != 0 {
		t.Fatalf("pinged %d flows at once; want none before the interval", n)
	}
	for i := 0; i < 20; i++ { // 20 s in 1 s ticks
		now = now.Add(time.Second)
		p.Tick()
	}
	if len(sent) != 3 {
		t.Fatalf("after 20 s: %d pings, want one per flow (3): %v", len(sent), sent)
	}
	p.DialogDown("c1")
	sent = nil
	for i := 0; i < 20; i++ {
		now = now.Add(time.Second)
		p.Tick()
	}
	if len(sent) != 1 || sent[0] != flow(4002) {
		t.Fatalf("after DialogDown(c1): pings %v, want only c2's flow", sent)
	}
	now = now.Add(2 * time.Hour)
	p.Tick()
	if p.Len() != 0 {
		t.Fatalf("a dialog older than MaxAge is still pinged")
	}
}

// TestOptionsPingParses: the ping is a valid SIP request that a phone can
// answer.
func TestOptionsPingParses(t *testing.T) {
	b := OptionsPing(flow(4000), "198.51.100.10", 5060, "lab.example")
	m, err := sipx.ParseMessage(b)
	if err != nil {
		t.Fatalf("ping does not parse: %v\n%s", err, b)
	}
	r, ok := m.(*sipx.Request)
	if !ok || r.Method != sipx.OPTIONS || r.Recipient.Host != "198.51.100.21" || r.Recipient.Port != 4000 {
		t.Fatalf("bad ping: %s", b)
	}
	if !strings.Contains(string(b), "Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK") {
		t.Fatalf("ping Via: %s", b)
	}
}
