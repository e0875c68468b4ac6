package main

import (
	"fmt"
	"net/netip"

	"github.com/sipedge/sipedge/relay"
)

// sipedgeRelay drives the edge's own relay package exactly as the SIP side
// does for a call: one session, one RTP stream (index 0), a leg per side, the
// phones' SDP addresses as peers (not behind NAT), then Established.
type sipedgeRelay struct {
	r  *relay.Relay
	ip netip.Addr
}

func newSipedge(cfg config) (relayImpl, error) {
	r, err := relay.New(relay.Config{PortMin: cfg.portMin, PortMax: cfg.portMax})
	if err != nil {
		return nil, err
	}
	return &sipedgeRelay{r: r, ip: cfg.ip}, nil
}

func (s *sipedgeRelay) Create(id string, a, b netip.AddrPort) (uint16, uint16, error) {
	sess := s.r.Create(id)
	pa, err := sess.Leg(0, relay.A, s.ip)
	if err != nil {
		return 0, 0, fmt.Errorf("leg A: %w", err)
	}
	pb, err := sess.Leg(0, relay.B, s.ip)
	if err != nil {
		return 0, 0, fmt.Errorf("leg B: %w", err)
	}
	sess.SetPeer(0, relay.A, relay.Peer{RTP: a, Source: a.Addr(), NAT: false})
	sess.SetPeer(0, relay.B, relay.Peer{RTP: b, Source: b.Addr(), NAT: false})
	sess.Established()
	return uint16(pa), uint16(pb), nil
}

func (s *sipedgeRelay) Stats() string {
	t := s.r.Totals()
	return fmt.Sprintf("sessions=%d fwd_a_b=%d fwd_b_a=%d dropped_foreign=%d dropped_learning=%d dropped_no_target=%d dropped_malformed=%d send_errors=%d latches=%d wakeups=%d recvmmsg=%d sendmmsg=%d",
		t.Sessions, t.PacketsAtoB, t.PacketsBtoA, t.DroppedForeign, t.DroppedLearning, t.DroppedNoTarget,
		t.DroppedMalformed, t.SendErrors, t.Latches, t.Wakeups, t.RecvCalls, t.SendCalls)
}

func (s *sipedgeRelay) Close() error { return s.r.Close() }
