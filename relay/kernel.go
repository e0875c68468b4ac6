package relay

import (
	"errors"
	"net/netip"
	"time"

	"github.com/sipedge/sipedge/relay/kernfwd"
)

// The in-kernel fast path (Config.Kernel, package relay/kernfwd).
//
// A leg is offloaded once it is locked: latched, its learning window
// closed, its SSRC known, and the other side has a target. From then on the
// kernel forwards the leg's RTP from the locked source; user space still
// sees everything else on the leg's ports (foreign sources, which it drops
// and counts; RTCP; a new SSRC or a sequence jump, which make it take the
// leg back). Anything that can change where the leg's media goes (a
// SetPeer on either side, the other side's latch moving, the session
// ending) removes the entry first; the housekeeping sweep installs it again
// once the leg is locked again. The sweep also folds the kernel's counters
// into the leg's statistics, so timeouts, the one-way alarm, loss and
// jitter work as before.

// offload is a leg's in-kernel state. It is guarded by the session mutex.
type offload struct {
	on     bool
	key    kernfwd.Key
	last   kernfwd.Stats // the counters already folded into the leg's stats
	failed string        // why the last install failed, logged once
}

// kernSync folds the kernel's counters for l into its statistics.
func (s *Session) kernSync(now time.Time, l *leg) {
	if !l.k.on {
		return
	}
	st, err := s.r.cfg.Kernel.Read(l.k.key)
	if err != nil {
		l.k.on = false
		s.r.kernLegs.Add(-1)
		return
	}
	s.kernFold(now, l, st)
}

func (s *Session) kernFold(now time.Time, l *leg, st kernfwd.Stats) {
	dp := st.Packets - l.k.last.Packets
	db := st.Bytes - l.k.last.Bytes
	l.k.last = st
	if dp == 0 {
		return
	}
	ls := &l.stats
	ls.packets += dp
	ls.bytes += db
	ls.rx.received += int64(dp)
	ls.rx.maxSeq = uint16(st.ExtMax)
	ls.rx.cycles = st.ExtMax &^ 0xffff
	ls.rx.jitter = st.Jitter
	if st.Last > 0 {
		at := now.Add(-(kernfwd.MonoNow() - st.Last))
		if at.After(now) {
			at = now
		}
		if at.After(ls.lastRTP) {
			ls.lastRTP = at
		}
		if at.After(ls.lastSeen) {
			ls.lastSeen = at
		}
	}
	if ls.firstRTP.IsZero() {
		ls.firstRTP = ls.lastRTP
	}
	s.r.kernPackets[l.side].Add(dp)
	s.r.kernBytes[l.side].Add(db)
}

// kernRemove takes l back into user space.
func (s *Session) kernRemove(now time.Time, l *leg) {
	if !l.k.on {
		return
	}
	l.k.on = false
	s.r.kernLegs.Add(-1)
	st, err := s.r.cfg.Kernel.Remove(l.k.key)
	if err == nil {
		s.kernFold(now, l, st)
	}
	// The kernel measured transit times on another clock.
	l.stats.rx.haveTransit = false
}

// kernRemoveStream takes both legs of a stream back into user space.
func (s *Session) kernRemoveStream(now time.Time, st *stream) {
	for k := range st.legs {
		s.kernRemove(now, &st.legs[k])
	}
}

// kernTry offloads l if it is ready for it.
func (s *Session) kernTry(now time.Time, l *leg) {
	kf := s.r.cfg.Kernel
	if kf == nil || l.k.on || s.deleted || s.established.IsZero() {
		return
	}
	o := &l.st.legs[l.side.Other()]
	src, tgt := l.latch.src, o.latch.target
	if l.port == 0 || o.port == 0 || o.socks[0].closed || !l.bind.Is4() || !o.bind.Is4() ||
		!l.latch.latched || !l.latch.locked(now, &s.r.pol) || !l.stats.rx.init ||
		!src.Addr().Is4() || !validAP(tgt) || !tgt.Addr().Is4() {
		return
	}
	e, err := s.kernEntry(l, o, src, tgt)
	if err == nil {
		key := kernfwd.Key{Peer: src, Port: uint16(l.port)}
		if err = kf.Install(key, e); err == nil {
			l.k = offload{on: true, key: key}
			s.r.kernLegs.Add(1)
			return
		}
	}
	if msg := err.Error(); msg != l.k.failed {
		l.k.failed = msg
		s.r.log.Warn("relay: leg stays in user space", "session", s.id, "stream", l.st.index, "side", l.side.String(), "error", err)
	}
}

var errNotLocal = errors.New("the other side is on this host but this side is not")

// kernEntry works out where the kernel is to send l's packets.
func (s *Session) kernEntry(l, o *leg, src, tgt netip.AddrPort) (kernfwd.Entry, error) {
	rt, err := kernfwd.LookupRoute(tgt.Addr(), o.bind)
	if err != nil {
		return kernfwd.Entry{}, err
	}
	ifindex := rt.Ifindex
	if rt.Local {
		// Delivered up the stack from the ingress hook: only right when the
		// packet arrives on loopback too, i.e. this side is local as well.
		back, err := kernfwd.LookupRoute(src.Addr(), l.bind)
		if err != nil {
			return kernfwd.Entry{}, err
		}
		if !back.Local {
			return kernfwd.Entry{}, errNotLocal
		}
		ifindex = 0
	}
	from := o.bind
	if from.IsUnspecified() {
		from = rt.Src
	}
	return kernfwd.Entry{
		Local:     l.bind,
		From:      netip.AddrPortFrom(from, uint16(o.port)),
		To:        tgt,
		Ifindex:   ifindex,
		SSRC:      l.stats.rx.ssrc,
		ClockRate: uint32(max(l.peer.ClockRate, 0)),
		ExtMax:    l.stats.rx.cycles | uint32(l.stats.rx.maxSeq),
		Jitter:    l.stats.rx.jitter,
	}, nil
}

// kernPunted reports whether an RTP packet from l's locked source that
// reached user space while l is offloaded was left there by the kernel (a
// new SSRC, a sequence jump): then user space must take the leg back. A
// packet that was only queued on the socket before the entry was
// installed is older than what the kernel has seen and does not count.
func (s *Session) kernPunted(l *leg, h *rtpHeader) bool {
	if h.SSRC != l.stats.rx.ssrc {
		return true
	}
	st, err := s.r.cfg.Kernel.Read(l.k.key)
	if err != nil {
		return true
	}
	d := h.Seq - uint16(st.ExtMax)
	return d >= maxDropout && d <= 1<<16-maxMisorder
}
