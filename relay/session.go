package relay

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Side is one end of a call.
type Side uint8

// The two sides of a session.
const (
	A Side = 0 // caller side
	B Side = 1 // callee side
)

// Other returns the opposite side.
func (s Side) Other() Side { return s ^ 1 }

func (s Side) String() string {
	if s == A {
		return "A"
	}
	return "B"
}

// Peer is what one side announced in its SDP for one stream, plus what the
// SIP layer knows about where that side really is.
type Peer struct {
	RTP       netip.AddrPort // announced c=/m= (may be private, or 0.0.0.0 on hold)
	RTCP      netip.AddrPort // announced a=rtcp; zero = RTP port+1 on the same IP (or RTP itself when Mux)
	Mux       bool           // rtcp-mux negotiated
	Source    netip.Addr     // the side's SIP signalling source IP (its NAT's public address)
	NAT       bool           // side is behind NAT
	Hold      bool           // sendonly/inactive/0.0.0.0: HoldTimeout applies, no one-way alarm
	ClockRate int            // for jitter in ms; default 8000
	Media     string         // "audio"/"video", for display
}

// maxStreams bounds the m= line index.
const maxStreams = 64

// Session is one call's media: streams (m= lines) with one leg per side.
type Session struct {
	r       *Relay
	id      string
	w       *worker
	created time.Time

	mu          sync.Mutex
	deleted     bool
	timedOut    bool
	established time.Time
	streams     []*stream
}

type stream struct {
	index int
	media string
	legs  [2]leg
	alarm string // last alarm logged
}

// leg is the relay's port pair facing one side, and what is known about
// that side.
type leg struct {
	st            *stream
	side          Side
	bind          netip.Addr
	port          int     // local RTP port; 0 = not allocated
	socks         [2]sock // RTP, RTCP
	peer          Peer
	latch         latch
	stats         legStats
	warnedForeign bool
	k             offload // the in-kernel fast path
}

// sock is one relay socket. fd and closed are guarded by the session mutex.
type sock struct {
	sess   *Session
	leg    *leg
	rtcp   bool
	fd     int
	closed bool
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

func (s *Session) stream(i int) *stream {
	for len(s.streams) <= i {
		st := &stream{index: len(s.streams)}
		for k := range st.legs {
			l := &st.legs[k]
			l.st = st
			l.side = Side(k)
			for j := range l.socks {
				l.socks[j] = sock{sess: s, leg: l, rtcp: j == 1, fd: -1, closed: true}
			}
		}
		s.streams = append(s.streams, st)
	}
	return s.streams[i]
}

// Leg returns the relay's local RTP port facing side for m= line stream,
// allocating the even/odd pair on first use, bound to bind (an unspecified
// address is the wildcard of its family; IPv4 and IPv6 both work). Later
// calls return the same port.
func (s *Session) Leg(stream int, side Side, bind netip.Addr) (rtpPort int, err error) {
	if side > B {
		return 0, fmt.Errorf("relay: bad side %d", side)
	}
	if stream < 0 || stream >= maxStreams {
		return 0, fmt.Errorf("relay: bad stream index %d", stream)
	}
	bind = bind.Unmap()
	if !bind.IsValid() {
		return 0, fmt.Errorf("relay: invalid bind address")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return 0, ErrClosed
	}
	l := &s.stream(stream).legs[side]
	if l.port != 0 {
		if l.bind.Is4() != bind.Is4() {
			return 0, fmt.Errorf("relay: stream %d side %s is already bound to %s", stream, side, l.bind)
		}
		return l.port, nil
	}
	port, fds, err := s.r.ports.open(bind)
	if err != nil {
		return 0, err
	}
	l.port, l.bind = port, bind
	for j := range l.socks {
		k := &l.socks[j]
		k.fd, k.closed = fds[j], false
	}
	for j := range l.socks {
		if err := s.w.add(&l.socks[j]); err != nil {
			s.closeLeg(l) // closes both fds and frees the pair
			l.bind = netip.Addr{}
			return 0, err
		}
	}
	if h := s.r.cfg.OnPorts; h != nil {
		h(bind, port, true)
	}
	return port, nil
}

// closeLeg closes a leg's sockets and frees its port pair. s.mu is held.
func (s *Session) closeLeg(l *leg) {
	for j := range l.socks {
		k := &l.socks[j]
		if k.closed {
			continue
		}
		s.w.remove(k)
		closeFD(k.fd)
		k.fd, k.closed = -1, true
	}
	if l.port != 0 {
		s.r.ports.release(l.port)
		if h := s.r.cfg.OnPorts; h != nil {
			h(l.bind, l.port, false)
		}
		l.port = 0
	}
}

func (s *Session) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return
	}
	s.deleted = true
	now := s.r.now()
	for _, st := range s.streams {
		s.kernRemoveStream(now, st)
		for k := range st.legs {
			s.closeLeg(&st.legs[k])
		}
	}
}

// SetPeer records what side announced in its SDP for stream and opens a
// learning window on that side.
func (s *Session) SetPeer(stream int, side Side, p Peer) {
	if side > B || stream < 0 || stream >= maxStreams {
		return
	}
	if p.ClockRate <= 0 {
		p.ClockRate = 8000
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted {
		return
	}
	st := s.stream(stream)
	if p.Media != "" {
		st.media = p.Media
	}
	now := s.r.now()
	// Where either direction goes may change: both go back to user space
	// until the legs are locked again.
	s.kernRemoveStream(now, st)
	l := &st.legs[side]
	l.peer = p
	l.latch.setPeer(now, p)
}

// Established marks that the answer was seen: media timeouts apply from now.
// Later calls do nothing.
func (s *Session) Established() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.established.IsZero() {
		s.established = s.r.now()
	}
}

// SessionInfo is a snapshot of a session, for the admin API and
// `sipedge call list`.
type SessionInfo struct {
	ID          string       `json:"id"`
	Created     time.Time    `json:"created"`
	Established time.Time    `json:"established,omitzero"`
	Worker      int          `json:"worker"`
	Streams     []StreamInfo `json:"streams"`
}

// StreamInfo is one m= line.
type StreamInfo struct {
	Index int     `json:"index"`
	Media string  `json:"media,omitempty"`
	A     LegInfo `json:"a"`
	B     LegInfo `json:"b"`
	// Alarm is set when media flows in one direction only; see Config.OneWayAfter.
	Alarm string `json:"alarm,omitempty"`
}

// LegInfo describes the relay's port pair facing one side and the media
// received from that side.
type LegInfo struct {
	Side      string     `json:"side"`
	Bind      netip.Addr `json:"bind,omitzero"`
	LocalRTP  int        `json:"local_rtp,omitempty"`
	LocalRTCP int        `json:"local_rtcp,omitempty"`

	Announced     netip.AddrPort `json:"announced,omitzero"`
	AnnouncedRTCP netip.AddrPort `json:"announced_rtcp,omitzero"`
	SIPSource     netip.Addr     `json:"sip_source,omitzero"`
	NAT           bool           `json:"nat"`
	Hold          bool           `json:"hold"`
	RTCPMux       bool           `json:"rtcp_mux"`

	Target     netip.AddrPort `json:"target,omitzero"`      // where RTP for this side goes
	RTCPTarget netip.AddrPort `json:"rtcp_target,omitzero"` // where RTCP for this side goes
	Latched    bool           `json:"latched"`
	Source     netip.AddrPort `json:"source,omitzero"` // latched source
	Learning   bool           `json:"learning"`        // learning window open
	Locked     bool           `json:"locked"`          // learning window closed

	// Kernel: this side's RTP is forwarded by the in-kernel fast path now
	// (the counters below include what it forwarded).
	Kernel bool `json:"kernel"`

	// Received from this side.
	Packets          uint64         `json:"packets"`
	Bytes            uint64         `json:"bytes"`
	RTCPPackets      uint64         `json:"rtcp_packets"`
	RTCPBytes        uint64         `json:"rtcp_bytes"`
	DroppedForeign   uint64         `json:"dropped_foreign"`
	LastForeign      netip.AddrPort `json:"last_foreign,omitzero"`
	DroppedLearning  uint64         `json:"dropped_learning"`
	DroppedMalformed uint64         `json:"dropped_malformed"`
	DroppedNoTarget  uint64         `json:"dropped_no_target"` // could not go on: the other side had no address
	SendErrors       uint64         `json:"send_errors"`
	Latches          uint64         `json:"latches"`
	LastSeen         time.Time      `json:"last_seen,omitzero"`

	// Computed by the relay from the RTP received (RFC 3550 A.1, A.3, A.8),
	// over all SSRCs the side used. Arrival times are taken once per
	// received batch, so bursts queued at the relay count as jitter.
	SSRC        uint32  `json:"ssrc"`
	Expected    int64   `json:"expected"`
	Lost        int64   `json:"lost"`
	LossPercent float64 `json:"loss_percent"`
	JitterMS    float64 `json:"jitter_ms"`

	// What this side's phone reported in RTCP about the media it receives.
	Report *RTCPReport `json:"rtcp_report,omitempty"`
}

// RTCPReport is the last SR/RR report block received from a side.
type RTCPReport struct {
	At             time.Time `json:"at"`
	SSRC           uint32    `json:"ssrc"`          // the source reported on
	FractionLost   float64   `json:"fraction_lost"` // 0..1, since the previous report
	CumulativeLost int32     `json:"cumulative_lost"`
	JitterMS       float64   `json:"jitter_ms"`
}

// Info returns a snapshot of the session.
func (s *Session) Info() SessionInfo { return s.info(s.r.now()) }

func (s *Session) info(now time.Time) SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	si := SessionInfo{
		ID:          s.id,
		Created:     s.created,
		Established: s.established,
		Streams:     make([]StreamInfo, 0, len(s.streams)),
	}
	if s.w != nil {
		si.Worker = s.w.id
	}
	for _, st := range s.streams {
		for k := range st.legs {
			s.kernSync(now, &st.legs[k])
		}
		si.Streams = append(si.Streams, StreamInfo{
			Index: st.index,
			Media: st.media,
			A:     s.legInfo(now, &st.legs[A]),
			B:     s.legInfo(now, &st.legs[B]),
			Alarm: s.alarm(now, st),
		})
	}
	return si
}

func (s *Session) legInfo(now time.Time, l *leg) LegInfo {
	pol := &s.r.pol
	li := LegInfo{
		Side:          l.side.String(),
		Bind:          l.bind,
		LocalRTP:      l.port,
		Announced:     l.latch.announced,
		AnnouncedRTCP: l.latch.annRTCP,
		SIPSource:     l.latch.sipSrc,
		NAT:           l.peer.NAT,
		Hold:          l.peer.Hold,
		RTCPMux:       l.peer.Mux,
		Target:        l.latch.target,
		RTCPTarget:    l.latch.rtcpTarget(),
		Latched:       l.latch.latched,
		Learning:      l.latch.windowOpen(now, pol),
		Locked:        l.latch.locked(now, pol),
		Kernel:        l.k.on,

		Packets:          l.stats.packets,
		Bytes:            l.stats.bytes,
		RTCPPackets:      l.stats.rtcpPackets,
		RTCPBytes:        l.stats.rtcpBytes,
		DroppedForeign:   l.stats.droppedForeign,
		LastForeign:      l.stats.lastForeign,
		DroppedLearning:  l.stats.droppedLearning,
		DroppedMalformed: l.stats.droppedMalformed,
		DroppedNoTarget:  l.stats.droppedNoTarget,
		SendErrors:       l.stats.sendErrors,
		Latches:          l.stats.latches,
		LastSeen:         l.stats.lastSeen,
		SSRC:             l.stats.rx.ssrc,
		JitterMS:         l.stats.rx.jitterMS(l.peer.ClockRate),
	}
	if l.port != 0 {
		li.LocalRTCP = l.port + 1
	}
	if l.latch.latched {
		li.Source = l.latch.src
	}
	li.Expected, li.Lost = l.stats.rx.totals()
	if li.Expected > 0 && li.Lost > 0 {
		li.LossPercent = float64(li.Lost) * 100 / float64(li.Expected)
	}
	if !l.stats.reportAt.IsZero() {
		rb := l.stats.report
		rate := l.peer.ClockRate
		if rate <= 0 {
			rate = 8000
		}
		li.Report = &RTCPReport{
			At:             l.stats.reportAt,
			SSRC:           rb.SSRC,
			FractionLost:   float64(rb.FractionLost) / 256,
			CumulativeLost: rb.CumLost,
			JitterMS:       float64(rb.Jitter) / float64(rate) * 1000,
		}
	}
	return li
}

// alarm computes a stream's one-way alarm. s.mu is held.
func (s *Session) alarm(now time.Time, st *stream) string {
	if s.established.IsZero() {
		return ""
	}
	var in [2]alarmInput
	for k := range st.legs {
		l := &st.legs[k]
		if !l.latch.hasPeer || l.peer.Hold || l.port == 0 {
			return ""
		}
		in[k] = alarmInput{stats: &l.stats, latched: l.latch.latched, locked: l.latch.locked(now, &s.r.pol), src: l.latch.src}
	}
	return oneWayAlarm(now, s.established, s.r.cfg.OneWayAfter, st.media, in)
}

// check runs the timeouts for the housekeeping goroutine and logs alarm
// changes. It returns a reason if the session timed out (only once).
func (s *Session) check(now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deleted || s.timedOut {
		return ""
	}
	cfg := &s.r.cfg
	if s.established.IsZero() {
		if now.Sub(s.created) > cfg.OfferTimeout {
			s.timedOut = true
			return fmt.Sprintf("not established within %s", cfg.OfferTimeout)
		}
		return ""
	}
	last := s.established
	hold := false
	for _, st := range s.streams {
		for k := range st.legs {
			l := &st.legs[k]
			s.kernSync(now, l)
			if l.stats.lastSeen.After(last) {
				last = l.stats.lastSeen
			}
			hold = hold || l.peer.Hold
		}
		if a := s.alarm(now, st); a != st.alarm {
			if a != "" {
				s.r.log.Warn("relay: one-way media", "session", s.id, "stream", st.index, "alarm", a)
			}
			st.alarm = a
		}
	}
	limit := cfg.Timeout
	if hold {
		limit = cfg.HoldTimeout
	}
	if idle := now.Sub(last); idle > limit {
		s.timedOut = true
		if hold {
			return fmt.Sprintf("no media for %s while on hold", idle.Truncate(time.Second))
		}
		return fmt.Sprintf("no media for %s", idle.Truncate(time.Second))
	}
	if s.r.cfg.Kernel != nil {
		for _, st := range s.streams {
			for k := range st.legs {
				s.kernTry(now, &st.legs[k])
			}
		}
	}
	return ""
}

// out is a packet the worker is to send.
type out struct {
	fd   int
	dst  netip.AddrPort
	from Side // the side the packet came from
	rtcp bool
	leg  *leg // the receiving leg, for send error accounting
}

// handle runs one received packet through parsing, latching and accounting
// and says where it goes. It is called by the worker with s.mu held, and
// must not allocate on the forwarding path.
func (s *Session) handle(k *sock, src netip.AddrPort, b []byte, now time.Time, c *batchCounters) (o out, ok bool) {
	l := k.leg
	src = unmapAP(src)
	other := &l.st.legs[l.side.Other()]
	st := &l.stats
	if k.rtcp || isRTCPMux(b) {
		// The source first: whatever a stranger sends (RTP sprayed at
		// RTCP ports, garbage) counts as foreign, not as malformed.
		if l.latch.rtcp(src) != verdictForward {
			s.foreign(l, src, now, c)
			return o, false
		}
		if !rtcpHeaderOK(b) {
			st.droppedMalformed++
			c.malformed++
			return o, false
		}
		st.rtcpPackets++
		st.rtcpBytes += uint64(len(b))
		st.lastSeen = now
		if sum, ok := parseRTCP(b, other.stats.rx.ssrc); ok && sum.HasBlock {
			st.report = sum.Block
			st.reportAt = now
		}
		o = out{dst: other.latch.rtcpTarget(), from: l.side, rtcp: true, leg: l}
		o.fd = other.socks[1].fd
		if other.peer.Mux {
			o.fd = other.socks[0].fd
		}
		if other.socks[1].closed {
			o.fd = -1
		}
	} else {
		h, ok := parseRTP(b)
		if !ok && !l.latch.known(src) {
			s.foreign(l, src, now, c)
			return o, false
		}
		if !ok {
			st.droppedMalformed++
			c.malformed++
			return o, false
		}
		if l.k.on && src == l.latch.src && s.kernPunted(l, &h) {
			s.kernRemove(now, l)
		}
		v, moved := l.latch.rtp(now, &s.r.pol, src, h.SSRC, h.Seq)
		switch v {
		case verdictForeign:
			s.foreign(l, src, now, c)
			return o, false
		case verdictLearning:
			st.droppedLearning++
			c.learning++
			return o, false
		}
		if moved {
			// This side's entry matches its old source, the other's sends
			// to it: both go back to user space.
			s.kernRemove(now, l)
			s.kernRemove(now, other)
			st.latches++
			c.latches++
			s.r.log.Info("relay: latched", "session", s.id, "stream", l.st.index, "side", l.side.String(), "source", src)
		}
		st.packets++
		st.bytes += uint64(len(b))
		if st.firstRTP.IsZero() {
			st.firstRTP = now
		}
		st.lastRTP = now
		st.lastSeen = now
		st.rx.update(&h, rtpUnits(now.Sub(s.r.epoch), l.peer.ClockRate))
		o = out{fd: other.socks[0].fd, dst: other.latch.target, from: l.side, leg: l}
		if other.socks[0].closed {
			o.fd = -1
		}
	}
	if o.fd < 0 || !validAP(o.dst) || o.dst.Addr().Is4() != other.bind.Is4() {
		st.droppedNoTarget++
		c.noTarget++
		return o, false
	}
	return o, true
}

func (s *Session) foreign(l *leg, src netip.AddrPort, now time.Time, c *batchCounters) {
	l.stats.droppedForeign++
	l.stats.lastForeign = src
	l.stats.lastForeignAt = now
	c.foreign++
	if !l.warnedForeign {
		l.warnedForeign = true
		s.r.log.Warn("relay: dropping packets from a foreign source", "session", s.id, "stream", l.st.index, "side", l.side.String(), "source", src)
	}
}
