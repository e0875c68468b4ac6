package relay

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// The latch state machine is table-tested: each case is a script of steps
// against one leg's latch, with a controlled clock.

type latchStep struct {
	name string
	run  func(h *latchHarness) error
}

type latchHarness struct {
	l   latch
	pol latchPolicy
	t0  time.Time
	now time.Time
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
func ip(s string) netip.Addr     { return netip.MustParseAddr(s) }

// at sets the clock to t0+d.
func at(d time.Duration) latchStep {
	return latchStep{fmt.Sprintf("at %s", d), func(h *latchHarness) error { h.now = h.t0.Add(d); return nil }}
}

func setPeer(p Peer) latchStep {
	return latchStep{fmt.Sprintf("SetPeer %s", p.RTP), func(h *latchHarness) error { h.l.setPeer(h.now, p); return nil }}
}

func pkt(src string, ssrc uint32, seq uint16, want verdict) latchStep {
	return latchStep{fmt.Sprintf("rtp from %s ssrc %x seq %d", src, ssrc, seq), func(h *latchHarness) error {
		if got, _ := h.l.rtp(h.now, &h.pol, ap(src), ssrc, seq); got != want {
			return fmt.Errorf("verdict %s, want %s", got, want)
		}
		return nil
	}}
}

// pkts sends n consecutive packets from src starting at seq.
func pkts(src string, ssrc uint32, seq uint16, n int, want ...verdict) latchStep {
	return latchStep{fmt.Sprintf("%d rtp from %s", n, src), func(h *latchHarness) error {
		for i := 0; i < n; i++ {
			w := want[min(i, len(want)-1)]
			if got, _ := h.l.rtp(h.now, &h.pol, ap(src), ssrc, seq+uint16(i)); got != w {
				return fmt.Errorf("packet %d: verdict %s, want %s", i, got, w)
			}
		}
		return nil
	}}
}

func rtcpPkt(src string, want verdict) latchStep {
	return latchStep{fmt.Sprintf("rtcp from %s", src), func(h *latchHarness) error {
		if got := h.l.rtcp(ap(src)); got != want {
			return fmt.Errorf("verdict %s, want %s", got, want)
		}
		return nil
	}}
}

func wantTarget(s string) latchStep {
	return latchStep{"target " + s, func(h *latchHarness) error {
		var want netip.AddrPort
		if s != "" {
			want = ap(s)
		}
		if h.l.target != want {
			return fmt.Errorf("target %s, want %s", h.l.target, want)
		}
		return nil
	}}
}

func wantRTCPTarget(s string) latchStep {
	return latchStep{"rtcp target " + s, func(h *latchHarness) error {
		var want netip.AddrPort
		if s != "" {
			want = ap(s)
		}
		if got := h.l.rtcpTarget(); got != want {
			return fmt.Errorf("rtcp target %s, want %s", got, want)
		}
		return nil
	}}
}

func wantLatched(s string) latchStep {
	return latchStep{"latched " + s, func(h *latchHarness) error {
		if s == "" {
			if h.l.latched {
				return fmt.Errorf("latched to %s, want not latched", h.l.src)
			}
			return nil
		}
		if !h.l.latched || h.l.src != ap(s) {
			return fmt.Errorf("latched=%v to %s, want %s", h.l.latched, h.l.src, s)
		}
		return nil
	}}
}

func wantLocked(want bool) latchStep {
	return latchStep{fmt.Sprintf("locked=%v", want), func(h *latchHarness) error {
		if got := h.l.locked(h.now, &h.pol); got != want {
			return fmt.Errorf("locked=%v, want %v", got, want)
		}
		return nil
	}}
}

const (
	F = verdictForward
	L = verdictLearning
	X = verdictForeign
)

var (
	// A public phone, not NATed.
	pubPeer = Peer{RTP: ap("203.0.113.10:4000"), Source: ip("203.0.113.10")}
	// A NATed phone: private SDP, NAT's public IP as SIP source.
	natPeer = Peer{RTP: ap("192.168.1.10:4000"), Source: ip("198.51.100.7"), NAT: true}
)

func TestLatch(t *testing.T) {
	cases := []struct {
		name  string
		pol   latchPolicy
		steps []latchStep
	}{
		{name: "packet before SetPeer is foreign", steps: []latchStep{
			pkt("203.0.113.10:4000", 1, 1, X),
			rtcpPkt("203.0.113.10:4001", X),
			wantTarget(""),
		}},
		{name: "announced source accepted and latched at once", steps: []latchStep{
			setPeer(pubPeer),
			wantTarget("203.0.113.10:4000"),
			wantRTCPTarget("203.0.113.10:4001"),
			pkt("203.0.113.10:4000", 1, 100, F),
			wantLatched("203.0.113.10:4000"),
			wantTarget("203.0.113.10:4000"),
		}},
		{name: "NATed side: target is SIP source IP with announced port, never the private address", steps: []latchStep{
			setPeer(natPeer),
			wantTarget("198.51.100.7:4000"),
			wantRTCPTarget("198.51.100.7:4001"),
		}},
		{name: "NATed side without a known SIP source has no target", steps: []latchStep{
			setPeer(Peer{RTP: ap("192.168.1.10:4000"), NAT: true}),
			wantTarget(""),
			wantRTCPTarget(""),
		}},
		{name: "NATed side learns from SIP source IP after Probation consecutive packets", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 0xabc, 10, 3, L),
			wantLatched(""),
			wantTarget("198.51.100.7:4000"),
			pkt("198.51.100.7:31000", 0xabc, 13, F),
			wantLatched("198.51.100.7:31000"),
			wantTarget("198.51.100.7:31000"),
			// RTCP: the NAT did not preserve the port: guess port+1 until RTCP is seen.
			wantRTCPTarget("198.51.100.7:31001"),
			rtcpPkt("198.51.100.7:31077", F),
			wantRTCPTarget("198.51.100.7:31077"),
		}},
		{name: "port-preserving NAT: latched port is the announced one, RTCP port assumed preserved", steps: []latchStep{
			setPeer(Peer{RTP: ap("192.168.1.10:4000"), RTCP: ap("192.168.1.10:4009"), Source: ip("198.51.100.7"), NAT: true}),
			wantRTCPTarget("198.51.100.7:4009"),
			pkts("198.51.100.7:4000", 1, 1, 4, L, L, L, F),
			wantRTCPTarget("198.51.100.7:4009"),
		}},
		{name: "probation needs consecutive sequence numbers", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 1, 10, 3, L),
			pkt("198.51.100.7:31000", 1, 14, L), // gap: restarts the count
			pkts("198.51.100.7:31000", 1, 15, 2, L),
			wantLatched(""),
			pkt("198.51.100.7:31000", 1, 17, F),
			wantLatched("198.51.100.7:31000"),
		}},
		{name: "probation needs one SSRC and one source port", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 1, 10, 3, L),
			pkt("198.51.100.7:31000", 2, 13, L), // new SSRC restarts
			pkt("198.51.100.7:31002", 2, 14, L), // new port restarts
			pkt("198.51.100.7:31000", 2, 15, L),
			wantLatched(""),
		}},
		{name: "probation across sequence wrap", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 1, 65534, 4, L, L, L, F),
			wantLatched("198.51.100.7:31000"),
		}},
		{name: "a single stray packet from an old port does not move the latch (rtpengine #817)", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F),
			at(10 * time.Second),
			setPeer(natPeer), // re-INVITE, same SDP: window reopens
			wantTarget("198.51.100.7:31000"),
			pkt("198.51.100.7:29000", 7, 5000, L), // stray from the old port
			wantLatched("198.51.100.7:31000"),
			wantTarget("198.51.100.7:31000"),
			pkt("198.51.100.7:31000", 1, 5, F),
			wantTarget("198.51.100.7:31000"),
		}},
		{name: "the old latch stays valid while a new source is on probation", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F),
			pkt("198.51.100.7:32000", 9, 100, L),
			pkt("198.51.100.7:31000", 1, 5, F),
			pkt("198.51.100.7:32000", 9, 101, L),
			pkt("198.51.100.7:31000", 1, 6, F),
			pkt("198.51.100.7:32000", 9, 102, L),
			wantTarget("198.51.100.7:31000"),
			pkt("198.51.100.7:32000", 9, 103, F),
			wantTarget("198.51.100.7:32000"),
			pkt("198.51.100.7:31000", 1, 7, L), // the old one is now just a candidate
		}},
		{name: "foreign IP is never learned, even inside the window", steps: []latchStep{
			setPeer(natPeer),
			pkts("192.0.2.66:5000", 0xbad, 1, 50, X),
			rtcpPkt("192.0.2.66:5001", X),
			wantLatched(""),
			wantTarget("198.51.100.7:4000"),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F),
			pkts("192.0.2.66:5000", 0xbad, 100, 50, X),
			rtcpPkt("192.0.2.66:5001", X),
			wantTarget("198.51.100.7:31000"),
		}},
		{name: "an attacker from the SIP source IP interleaving breaks no latch", steps: []latchStep{
			setPeer(pubPeer),
			pkt("203.0.113.10:4000", 1, 1, F),
			pkt("203.0.113.10:9999", 0xbad, 1, L),
			pkt("203.0.113.10:4000", 1, 2, F),
			pkt("203.0.113.10:9999", 0xbad, 2, L),
			wantTarget("203.0.113.10:4000"),
		}},
		{name: "after the window a new source is dropped", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F),
			at(2999 * time.Millisecond),
			wantLocked(false),
			at(3 * time.Second),
			wantLocked(true),
			pkts("198.51.100.7:31500", 2, 1, 10, X),
			wantTarget("198.51.100.7:31000"),
			pkt("198.51.100.7:31000", 1, 5, F),
		}},
		{name: "a side that never sends is locked with no latch", steps: []latchStep{
			setPeer(natPeer),
			at(30 * time.Second),
			wantLocked(true),
			pkts("198.51.100.7:31000", 1, 1, 5, X),
			wantLatched(""),
		}},
		{name: "window is counted from the first packet, at most 30 s after SetPeer", steps: []latchStep{
			setPeer(natPeer),
			at(20 * time.Second),
			wantLocked(false),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F), // first packet at 20 s
			at(22 * time.Second),
			pkts("198.51.100.7:31500", 2, 1, 4, L, L, L, F), // still learning
			at(23 * time.Second),
			pkts("198.51.100.7:31900", 3, 1, 4, X),
			wantTarget("198.51.100.7:31500"),
		}},
		{name: "window ends 30 s after SetPeer even if the first packet was late", steps: []latchStep{
			setPeer(natPeer),
			at(29 * time.Second),
			pkt("198.51.100.7:31000", 1, 1, L),
			at(30 * time.Second),
			pkt("198.51.100.7:31000", 1, 2, X),
			wantLatched(""),
		}},
		{name: "a foreign packet does not start the window clock", steps: []latchStep{
			setPeer(natPeer),
			pkt("192.0.2.66:5000", 1, 1, X),
			at(5 * time.Second),
			wantLocked(false),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F),
		}},
		{name: "re-SetPeer reopens the window", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F),
			at(10 * time.Second),
			pkts("198.51.100.7:31500", 2, 1, 4, X),
			setPeer(natPeer),
			wantLocked(false),
			wantTarget("198.51.100.7:31000"), // same SDP: the latch is kept
			at(11 * time.Second),
			pkts("198.51.100.7:31500", 2, 10, 4, L, L, L, F),
			wantTarget("198.51.100.7:31500"),
		}},
		{name: "handover to a new announced address works immediately", steps: []latchStep{
			setPeer(pubPeer),
			pkt("203.0.113.10:4000", 1, 1, F),
			at(60 * time.Second),
			wantLocked(true),
			setPeer(Peer{RTP: ap("203.0.113.20:6000"), Source: ip("203.0.113.10")}),
			wantTarget("203.0.113.20:6000"), // sends to the new address before it sends
			wantRTCPTarget("203.0.113.20:6001"),
			pkt("203.0.113.20:6000", 9, 1, F),
			wantLatched("203.0.113.20:6000"),
			at(120 * time.Second),
			wantLocked(true),
			pkt("203.0.113.10:4000", 1, 2, X), // the old phone is gone for good
		}},
		{name: "handover after the window closed: announced address still latches", steps: []latchStep{
			setPeer(pubPeer),
			at(60 * time.Second),
			setPeer(Peer{RTP: ap("203.0.113.20:6000"), Source: ip("203.0.113.10")}),
			at(100 * time.Second),
			wantLocked(true),
			pkt("203.0.113.20:6000", 9, 1, F),
			wantLatched("203.0.113.20:6000"),
		}},
		{name: "announced address re-latches over a learned one even when locked", steps: []latchStep{
			setPeer(Peer{RTP: ap("203.0.113.10:4000"), Source: ip("203.0.113.10")}),
			pkts("203.0.113.10:5555", 1, 1, 4, L, L, L, F),
			at(10 * time.Second),
			pkt("203.0.113.10:4000", 2, 1, F),
			wantTarget("203.0.113.10:4000"),
		}},
		{name: "hold with 0.0.0.0: nothing is sent until the side sends", steps: []latchStep{
			setPeer(Peer{RTP: ap("0.0.0.0:4000"), Source: ip("203.0.113.10"), Hold: true}),
			wantTarget(""),
			wantRTCPTarget(""),
			pkts("203.0.113.10:4000", 1, 1, 4, L, L, L, F),
			wantTarget("203.0.113.10:4000"),
		}},
		{name: "hold and unhold with the same address keeps the latch", steps: []latchStep{
			setPeer(natPeer),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F),
			at(10 * time.Second),
			setPeer(Peer{RTP: ap("0.0.0.0:4000"), Source: ip("198.51.100.7"), NAT: true, Hold: true}),
			wantTarget(""),
			at(20 * time.Second),
			setPeer(natPeer),
			wantTarget("198.51.100.7:31000"),
		}},
		{name: "LearnAnyIP learns from any IP", pol: latchPolicy{learnAnyIP: true}, steps: []latchStep{
			setPeer(natPeer),
			pkts("192.0.2.99:7000", 1, 1, 4, L, L, L, F),
			wantTarget("192.0.2.99:7000"),
		}},
		{name: "Probation 1 latches on the first eligible packet", pol: latchPolicy{probation: 1}, steps: []latchStep{
			setPeer(natPeer),
			pkt("198.51.100.7:31000", 1, 1, F),
			wantTarget("198.51.100.7:31000"),
		}},
		{name: "RTCP from announced address or latched IP only", steps: []latchStep{
			setPeer(Peer{RTP: ap("203.0.113.10:4000"), RTCP: ap("203.0.113.10:4100"), Source: ip("203.0.113.10")}),
			wantRTCPTarget("203.0.113.10:4100"),
			rtcpPkt("203.0.113.10:4001", X), // not announced, not latched yet
			rtcpPkt("203.0.113.10:4100", F),
			pkt("203.0.113.10:4000", 1, 1, F),
			rtcpPkt("203.0.113.10:4200", F), // latched IP, any port
			wantRTCPTarget("203.0.113.10:4200"),
			rtcpPkt("192.0.2.66:4200", X),
			wantRTCPTarget("203.0.113.10:4200"),
		}},
		{name: "rtcp-mux: RTCP goes to the RTP target", steps: []latchStep{
			setPeer(Peer{RTP: ap("192.168.1.10:4000"), Source: ip("198.51.100.7"), NAT: true, Mux: true}),
			wantRTCPTarget("198.51.100.7:4000"),
			pkts("198.51.100.7:31000", 1, 1, 4, L, L, L, F),
			rtcpPkt("198.51.100.7:31000", F),
			wantRTCPTarget("198.51.100.7:31000"),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := c.pol
			if pol.learning == 0 {
				pol.learning = 3 * time.Second
			}
			if pol.maxWindow == 0 {
				pol.maxWindow = maxLearnWindow
			}
			if pol.probation == 0 {
				pol.probation = 4
			}
			t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			h := &latchHarness{pol: pol, t0: t0, now: t0}
			for i, st := range c.steps {
				if err := st.run(h); err != nil {
					t.Fatalf("step %d (%s): %v", i, st.name, err)
				}
			}
		})
	}
}

func TestLatchDoesNotAllocate(t *testing.T) {
	pol := latchPolicy{learning: 3 * time.Second, maxWindow: maxLearnWindow, probation: 4}
	now := time.Now()
	var l latch
	l.setPeer(now, natPeer)
	src := ap("198.51.100.7:31000")
	seq := uint16(0)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		l.rtp(now, &pol, src, 1, seq)
		l.rtcp(src)
		_ = l.rtcpTarget()
	})
	if allocs != 0 {
		t.Fatalf("latch allocates %.1f per packet", allocs)
	}
}
