package relay

import (
	"net/netip"
	"time"
)

// maxLearnWindow bounds the learning window after a SetPeer, however late
// the first packet arrives.
const maxLearnWindow = 30 * time.Second

// latchPolicy is the part of Config the latch state machine needs.
type latchPolicy struct {
	learning   time.Duration // window length, counted from the first eligible packet
	maxWindow  time.Duration // hard end of the window, counted from SetPeer
	probation  int           // consecutive packets to latch a new source
	learnAnyIP bool          // learn from any IP, not only announced/SIP source
}

// verdict is what the latch says about one packet.
type verdict uint8

const (
	verdictForward  verdict = iota // accepted: forward it
	verdictLearning                // candidate on probation: held back, not forwarded
	verdictForeign                 // not from this side: drop and count
)

func (v verdict) String() string {
	switch v {
	case verdictForward:
		return "forward"
	case verdictLearning:
		return "learning"
	default:
		return "foreign"
	}
}

// latch is the per-leg latching state machine. It is pure: no I/O, the time
// is passed in, and it never allocates.
type latch struct {
	hasPeer   bool
	announced netip.AddrPort // announced RTP address (unmapped); zero or 0.0.0.0 on hold
	lastReal  netip.AddrPort // last announced RTP address that was not a hold address
	annRTCP   netip.AddrPort // announced RTCP address (a=rtcp, or RTP port+1, or RTP when mux)
	mux       bool
	sipSrc    netip.Addr // the side's SIP signalling source IP
	nat       bool

	setAt   time.Time // last SetPeer
	firstAt time.Time // first eligible packet after setAt; zero until then

	latched bool
	src     netip.AddrPort // latched RTP source
	target  netip.AddrPort // where this side's RTP goes; zero = nowhere

	rtcpLatched bool
	rtcpSrc     netip.AddrPort

	cand     netip.AddrPort // learning candidate
	candSSRC uint32
	candSeq  uint16
	candN    int
}

// validAP reports whether ap is a usable unicast destination/source.
func validAP(ap netip.AddrPort) bool {
	a := ap.Addr()
	return a.IsValid() && !a.IsUnspecified() && ap.Port() != 0
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	if !ap.Addr().Is4In6() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// setPeer records a side's announcement and opens the learning window.
func (l *latch) setPeer(now time.Time, p Peer) {
	ann := unmapAP(p.RTP)
	hold := !validAP(ann)
	changed := !hold && ann != l.lastReal
	if !hold {
		l.lastReal = ann
	}
	var rtcp netip.AddrPort
	switch {
	case p.Mux:
		rtcp = ann
	case validAP(unmapAP(p.RTCP)):
		rtcp = unmapAP(p.RTCP)
	case !hold && ann.Port() < 65535:
		rtcp = netip.AddrPortFrom(ann.Addr(), ann.Port()+1)
	}
	if changed || rtcp != l.annRTCP || p.Mux != l.mux {
		l.rtcpLatched = false
		l.rtcpSrc = netip.AddrPort{}
	}
	l.hasPeer = true
	l.announced = ann
	l.annRTCP = rtcp
	l.mux = p.Mux
	l.sipSrc = p.Source.Unmap()
	l.nat = p.NAT
	l.setAt = now
	l.firstAt = time.Time{}
	l.resetCandidate()
	switch {
	case hold:
		l.target = netip.AddrPort{}
	case l.latched && !changed:
		l.target = l.src
	default:
		l.target = l.expected(ann)
	}
}

// expected is where to send before a packet told us better: the announced
// address, or for a NATed side the announced port on its SIP source IP.
// It never returns a NATed side's announced (private) IP.
func (l *latch) expected(ann netip.AddrPort) netip.AddrPort {
	if !validAP(ann) {
		return netip.AddrPort{}
	}
	if !l.nat {
		return ann
	}
	if !l.sipSrc.IsValid() || l.sipSrc.IsUnspecified() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(l.sipSrc, ann.Port())
}

func (l *latch) resetCandidate() {
	l.cand = netip.AddrPort{}
	l.candSSRC = 0
	l.candSeq = 0
	l.candN = 0
}

// windowOpen reports whether new sources may still be learned.
func (l *latch) windowOpen(now time.Time, pol *latchPolicy) bool {
	if !l.hasPeer || !now.Before(l.setAt.Add(pol.maxWindow)) {
		return false
	}
	return l.firstAt.IsZero() || now.Before(l.firstAt.Add(pol.learning))
}

func (l *latch) touch(now time.Time) {
	if l.firstAt.IsZero() {
		l.firstAt = now
	}
}

// eligible reports whether src's IP may be learned at all.
func (l *latch) eligible(src netip.Addr, pol *latchPolicy) bool {
	if pol.learnAnyIP {
		return true
	}
	return src == l.announced.Addr() || src == l.lastReal.Addr() ||
		(l.sipSrc.IsValid() && src == l.sipSrc)
}

// latchTo makes src the latched source and the target. It reports whether
// that changed anything.
func (l *latch) latchTo(src netip.AddrPort) bool {
	changed := !l.latched || l.src != src || l.target != src
	l.latched = true
	l.src = src
	l.target = src
	l.resetCandidate()
	return changed
}

// rtp decides about one RTP packet from src. moved reports that the latch
// (or the target) changed because of this packet.
func (l *latch) rtp(now time.Time, pol *latchPolicy, src netip.AddrPort, ssrc uint32, seq uint16) (v verdict, moved bool) {
	if !l.hasPeer {
		return verdictForeign, false
	}
	if validAP(l.announced) && src == l.announced {
		l.touch(now)
		return verdictForward, l.latchTo(src)
	}
	if l.latched && src == l.src {
		l.touch(now)
		moved = l.target != src
		l.target = src
		return verdictForward, moved
	}
	if !l.windowOpen(now, pol) || !l.eligible(src.Addr(), pol) {
		return verdictForeign, false
	}
	l.touch(now)
	if l.candN > 0 && src == l.cand && ssrc == l.candSSRC && seq == l.candSeq+1 {
		l.candN++
	} else {
		l.cand = src
		l.candSSRC = ssrc
		l.candN = 1
	}
	l.candSeq = seq
	if l.candN >= pol.probation {
		return verdictForward, l.latchTo(src)
	}
	return verdictLearning, false
}

// known reports whether src is this side's announced or latched address
// (without changing any state).
func (l *latch) known(src netip.AddrPort) bool {
	return l.hasPeer && (src == l.announced || (l.latched && src == l.src))
}

// rtcp decides about one RTCP packet from src.
func (l *latch) rtcp(src netip.AddrPort) verdict {
	if !l.hasPeer {
		return verdictForeign
	}
	if (validAP(l.annRTCP) && src == l.annRTCP) || (l.latched && src.Addr() == l.src.Addr()) {
		l.rtcpLatched = true
		l.rtcpSrc = src
		return verdictForward
	}
	return verdictForeign
}

// rtcpTarget is where this side's RTCP goes.
func (l *latch) rtcpTarget() netip.AddrPort {
	if l.mux {
		return l.target
	}
	if l.rtcpLatched {
		return l.rtcpSrc
	}
	if !validAP(l.target) {
		return netip.AddrPort{}
	}
	if l.latched && l.target == l.src {
		switch {
		case l.src == l.announced:
			if validAP(l.annRTCP) {
				return l.annRTCP
			}
		case l.src.Port() == l.announced.Port() && validAP(l.annRTCP):
			// Port-preserving NAT: assume it preserves the RTCP port too.
			return netip.AddrPortFrom(l.src.Addr(), l.annRTCP.Port())
		}
		if l.src.Port() < 65535 {
			return netip.AddrPortFrom(l.src.Addr(), l.src.Port()+1)
		}
		return netip.AddrPort{}
	}
	return l.expected(l.annRTCP)
}

// locked reports that the learning window has closed.
func (l *latch) locked(now time.Time, pol *latchPolicy) bool {
	return l.hasPeer && !l.windowOpen(now, pol)
}
