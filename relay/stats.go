package relay

import (
	"fmt"
	"net/netip"
	"time"
)

// RFC 3550 A.1 constants.
const (
	maxDropout  = 3000
	maxMisorder = 100
)

// rxStats tracks loss and interarrival jitter of the RTP received from one
// side, per RFC 3550 A.1, A.3 and A.8. Counts survive SSRC changes: the
// figures of the previous source are folded into acc*.
type rxStats struct {
	init     bool
	ssrc     uint32
	baseSeq  uint16
	maxSeq   uint16
	cycles   uint32 // count of seq wraps << 16
	badSeq   uint32 // RTP_SEQ_MOD+1 = none
	received int64

	accExpected int64
	accReceived int64

	haveTransit bool
	transit     int32
	jitter      uint32 // RFC 3550 J, scaled by 16
}

func (s *rxStats) restart(seq uint16) {
	s.accExpected += s.expectedCur()
	s.accReceived += s.received
	s.baseSeq = seq
	s.maxSeq = seq
	s.cycles = 0
	s.badSeq = 1 << 16 // none
	s.received = 0
	s.haveTransit = false
}

func (s *rxStats) expectedCur() int64 {
	if !s.init {
		return 0
	}
	return int64(s.cycles) + int64(s.maxSeq) - int64(s.baseSeq) + 1
}

// update accounts one RTP packet; arrival is in RTP timestamp units.
func (s *rxStats) update(h *rtpHeader, arrival uint32) {
	if !s.init || h.SSRC != s.ssrc {
		if s.init {
			s.restart(h.Seq)
		} else {
			s.baseSeq, s.maxSeq, s.badSeq = h.Seq, h.Seq, 1<<16
			s.init = true
		}
		s.ssrc = h.SSRC
		s.received = 1
		s.jitterUpdate(h.Timestamp, arrival)
		return
	}
	udelta := h.Seq - s.maxSeq
	switch {
	case udelta < maxDropout:
		if h.Seq < s.maxSeq {
			s.cycles += 1 << 16
		}
		s.maxSeq = h.Seq
	case udelta <= 1<<16-maxMisorder:
		// A very large jump: the source restarted, or a stray packet.
		if uint32(h.Seq) == s.badSeq {
			s.restart(h.Seq)
		} else {
			s.badSeq = uint32(h.Seq+1) & 0xffff
			return
		}
	default:
		// duplicate or reordered packet
	}
	s.received++
	s.jitterUpdate(h.Timestamp, arrival)
}

func (s *rxStats) jitterUpdate(ts, arrival uint32) {
	transit := int32(arrival - ts)
	if s.haveTransit {
		d := transit - s.transit
		if d < 0 {
			d = -d
		}
		s.jitter += uint32(d) - ((s.jitter + 8) >> 4)
	}
	s.transit = transit
	s.haveTransit = true
}

// expected and lost over the whole leg life (all SSRCs).
func (s *rxStats) totals() (expected, lost int64) {
	expected = s.accExpected + s.expectedCur()
	return expected, expected - (s.accReceived + s.received)
}

// jitterMS converts the jitter estimate to milliseconds.
func (s *rxStats) jitterMS(clockRate int) float64 {
	if clockRate <= 0 {
		clockRate = 8000
	}
	return float64(s.jitter) / 16 / float64(clockRate) * 1000
}

// rtpUnits converts a duration since an epoch to RTP timestamp units,
// modulo 2^32, without overflowing for long durations.
func rtpUnits(d time.Duration, clockRate int) uint32 {
	if clockRate <= 0 {
		clockRate = 8000
	}
	sec := uint64(d / time.Second)
	ns := uint64(d % time.Second)
	return uint32(sec*uint64(clockRate) + ns*uint64(clockRate)/uint64(time.Second))
}

// legStats are the counters of what was received from one side.
type legStats struct {
	packets, bytes         uint64 // accepted RTP
	rtcpPackets, rtcpBytes uint64 // accepted RTCP
	droppedForeign         uint64 // not from this side (injected, unknown)
	droppedLearning        uint64 // candidate packets held back during probation
	droppedMalformed       uint64 // not RTP/RTCP, truncated
	droppedNoTarget        uint64 // accepted, but the other side has no target yet
	sendErrors             uint64

	lastForeign   netip.AddrPort
	lastForeignAt time.Time

	firstRTP, lastRTP time.Time
	lastSeen          time.Time // any accepted packet, RTP or RTCP

	rx rxStats

	report   reportBlock
	reportAt time.Time
	latches  uint64 // times the latch moved
}

// alarmInput is what the one-way alarm needs to know about one side.
type alarmInput struct {
	stats   *legStats
	latched bool
	locked  bool
	src     netip.AddrPort // latched source
}

// oneWayAlarm returns the one-way alarm text for a stream, or "". It is
// called only for established streams where neither side is on hold.
func oneWayAlarm(now, established time.Time, after time.Duration, media string, in [2]alarmInput) string {
	if established.IsZero() || after <= 0 {
		return ""
	}
	if media == "" {
		media = "media"
	}
	for x := A; x <= B; x++ {
		y := x.Other()
		sx, sy := in[x].stats, in[y].stats
		if sx.lastRTP.IsZero() || now.Sub(sx.lastRTP) >= after {
			continue // x is not sending now
		}
		silentSince := established
		if sy.lastRTP.After(silentSince) {
			silentSince = sy.lastRTP
		}
		flowing := silentSince
		if sx.firstRTP.After(flowing) {
			flowing = sx.firstRTP
		}
		if now.Sub(flowing) <= after {
			continue
		}
		silent := now.Sub(silentSince).Truncate(time.Second)
		msg := fmt.Sprintf("one-way %s: no RTP from %s for %s while %s sends; ", media, y, silent, x)
		switch {
		case sy.droppedForeign > 0 && !sy.lastForeignAt.Before(silentSince):
			if in[y].latched {
				msg += fmt.Sprintf("%d packets from %s were dropped because they came from %s, not the locked source %s — %s's NAT may have changed its port",
					sy.droppedForeign, y, sy.lastForeign, in[y].src, y)
			} else {
				msg += fmt.Sprintf("%d packets from %s were dropped because they came from %s, which is neither the announced address nor %s's SIP source IP — a NAT or SBC in between may rewrite addresses (LearnAnyIP) or it is an attack",
					sy.droppedForeign, y, sy.lastForeign, y)
			}
		case sy.droppedLearning > 0 && !in[y].latched:
			msg += fmt.Sprintf("%d packets from %s were held back on probation while learning its address, but it never latched — their source keeps changing or their sequence numbers are not consecutive", sy.droppedLearning, y)
		case sy.packets == 0 && sy.rtcpPackets == 0:
			msg += fmt.Sprintf("%s has sent nothing at all — its phone may be sending to a wrong (private?) address, or a firewall drops it", y)
		case sy.packets == 0:
			msg += fmt.Sprintf("%s sends RTCP but no RTP — it may be muted or on hold without saying so in its SDP", y)
		default:
			msg += fmt.Sprintf("%s stopped sending %s ago", y, now.Sub(sy.lastRTP).Truncate(time.Second))
		}
		return msg
	}
	return ""
}
