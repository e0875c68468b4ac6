package keepalive

import (
	"hash/maphash"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// Defaults.
const (
	// DefaultInterval is under the shortest common NAT UDP timeout (30 s:
	// Linux conntrack's default for a flow without replies) with room for
	// one late packet. RFC 5626 §4.4.1 suggests 25 s too.
	DefaultInterval = 25 * time.Second
	// DefaultTimeout is how long a ping may go unanswered before it counts
	// as missed.
	DefaultTimeout = 5 * time.Second
	// DefaultLagged is the RTT above which a peer is shown LAGGED.
	DefaultLagged = time.Second
	// DefaultMisses is how many pings in a row may go unanswered before a
	// peer is UNREACHABLE (OpenSIPS's max_pings_lost is 3 too).
	DefaultMisses = 3

	// firstMin and firstSpread place the first ping of a new flow: soon
	// after it appears, spread over firstSpread, never earlier. A NAT
	// binding that has seen only a REGISTER and its answer is
	// "unassured": Linux forgets it after nf_conntrack_udp_timeout (30 s
	// by default, often 20 s or less on routers) even if the stream
	// timeout is longer, and only a packet more than 2 s after the flow
	// began makes it assured. A ping inside those 2 s merely restarts the
	// short timeout, which the next ping, an interval later, may not beat
	// (the lab saw one phone in eight lost that way before this rule). So
	// the first ping comes 2.5–5 s in: it assures the flow and puts the
	// peer's status and RTT on the admin view at once, instead of one
	// interval later.
	firstMin    = 2500 * time.Millisecond
	firstSpread = 2500 * time.Millisecond
)

// Phase returns the offset of a flow's pings on the time grid: a
// pseudo-random value in [0, interval) from the flow and seed. Flows
// therefore ping at evenly spread instants however they arrived (100,000
// phones re-registering together after a router reboot still ping at
// interval/100,000 apart), and each flow keeps its own steady rhythm.
func Phase(seed maphash.Seed, f sipx.Flow, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	var h maphash.Hash
	h.SetSeed(seed)
	b := f.Remote.Addr().As16()
	h.Write(b[:])
	p := f.Remote.Port()
	h.WriteByte(byte(p >> 8))
	h.WriteByte(byte(p))
	b = f.Local.Addr().As16()
	h.Write(b[:])
	p = f.Local.Port()
	h.WriteByte(byte(p >> 8))
	h.WriteByte(byte(p))
	h.WriteString(f.Transport)
	var c [8]byte
	for i := range c {
		c[i] = byte(f.ConnID >> (8 * i))
	}
	h.Write(c[:])
	return time.Duration(h.Sum64() % uint64(interval))
}

// Next returns the first instant strictly after after that lies on the
// flow's grid: t = phase + k*interval (k an integer, t in Unix time). The
// gap between two pings is therefore never more than interval.
func Next(phase, interval time.Duration, after time.Time) time.Time {
	if interval <= 0 {
		return time.Time{}
	}
	ns := after.UnixNano()
	iv := int64(interval)
	k := floorDiv(ns-int64(phase), iv) + 1
	return time.Unix(0, k*iv+int64(phase))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// First returns when a flow that appeared at added gets its first ping:
// at its first grid instant if that falls 2.5–5 s later, else at a point
// in that window chosen by the phase. Never sooner (see firstMin).
func First(phase, interval time.Duration, added time.Time) time.Time {
	if interval <= 0 {
		return time.Time{}
	}
	earliest := added.Add(firstMin)
	if grid := Next(phase, interval, earliest.Add(-1)); grid.Before(earliest.Add(firstSpread)) {
		return grid
	}
	return earliest.Add(phase % firstSpread)
}
