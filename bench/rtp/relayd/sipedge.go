package main

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/sipedge/sipedge/relay"
	"github.com/sipedge/sipedge/relay/kernfwd"
)

// sipedgeRelay drives the edge's own relay package exactly as the SIP side
// does for a call: one session, one RTP stream (index 0), a leg per side, the
// phones' SDP addresses as peers (not behind NAT), then Established.
type sipedgeRelay struct {
	r     *relay.Relay
	ip    netip.Addr
	kf    *kernfwd.Forwarder
	stats io.Closer // BPF run-time accounting, for the program's cost per packet
}

func newSipedge(cfg config) (relayImpl, error) {
	r, err := relay.New(relay.Config{PortMin: cfg.portMin, PortMax: cfg.portMax})
	if err != nil {
		return nil, err
	}
	return &sipedgeRelay{r: r, ip: cfg.ip}, nil
}

// newSipedgeKernel is sipedge with the in-kernel fast path on lo
// (media.kernel): legs lock 300 ms after their first packet and go to the
// kernel at the next housekeeping sweep (once a second), so rtpload's
// warm-up must be longer than that (it uses 3 s for this relay).
func newSipedgeKernel(cfg config) (relayImpl, error) {
	kf, err := kernfwd.Open([]string{"lo"})
	if err != nil {
		return nil, err
	}
	r, err := relay.New(relay.Config{PortMin: cfg.portMin, PortMax: cfg.portMax, Kernel: kf, Learning: 300 * time.Millisecond})
	if err != nil {
		kf.Close()
		return nil, err
	}
	s := &sipedgeRelay{r: r, ip: cfg.ip, kf: kf}
	s.stats, _ = kernfwd.EnableRunStats() // without it Stats says bpf_runs=0
	return s, nil
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
	return fmt.Sprintf("sessions=%d fwd_a_b=%d fwd_b_a=%d dropped_foreign=%d dropped_learning=%d dropped_no_target=%d dropped_malformed=%d send_errors=%d latches=%d wakeups=%d recvmmsg=%d sendmmsg=%d kernel_legs=%d kernel_packets=%d",
		t.Sessions, t.PacketsAtoB, t.PacketsBtoA, t.DroppedForeign, t.DroppedLearning, t.DroppedNoTarget,
		t.DroppedMalformed, t.SendErrors, t.Latches, t.Wakeups, t.RecvCalls, t.SendCalls, t.KernelLegs, t.KernelPackets) + s.bpfStats()
}

// bpfStats is the in-kernel program's run count and mean run time per
// packet since the relay started (all packets entering lo, forwarded or not).
func (s *sipedgeRelay) bpfStats() string {
	if s.kf == nil {
		return ""
	}
	runs, total, err := s.kf.RunStats()
	if err != nil || runs == 0 {
		return " bpf_runs=0"
	}
	return fmt.Sprintf(" bpf_runs=%d bpf_ns_per_run=%.0f", runs, float64(total.Nanoseconds())/float64(runs))
}

func (s *sipedgeRelay) Close() error {
	err := s.r.Close()
	if s.kf != nil {
		s.kf.Close()
	}
	if s.stats != nil {
		s.stats.Close()
	}
	return err
}
