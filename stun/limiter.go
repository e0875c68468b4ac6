package stun

import (
	"crypto/rand"
	"encoding/binary"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// limiter is the Server's per-source rate limit, applied before a message
// is parsed. Each source has a token bucket kept as one timestamp (GCRA):
// the "theoretical arrival time" tat advances by 1/rate per accepted
// message, and a message is refused while tat runs more than burst-1
// intervals ahead of now. A source whose tat is past has a full bucket,
// so forgetting it loses nothing: that is the expiry.
//
// A source is an IPv4 address or an IPv6 /64 (one site): the limit
// protects the address a spoofed request names, and a victim's /64 is
// all one victim.
//
// The table is bounded, so a flood from spoofed sources cannot exhaust
// memory: 16 shards keyed by a seeded hash, each a map of at most
// maxSources/16 entries. A shard forgets expired sources at most once a
// second, and when full first tries that (at most every 100 ms), then
// evicts an arbitrary source. An evicted source that comes back starts
// with a full bucket: under a flood of spoofed sources big enough to fill
// the table, a victim may get a burst more, never a sustained stream.
type limiter struct {
	interval  int64 // ns per message; 0 disables the limit
	tolerance int64 // (burst-1) * interval
	perShard  int
	seed      uint64
	evicted   atomic.Uint64
	shards    [limiterShards]limiterShard
}

const (
	limiterBits    = 4
	limiterShards  = 1 << limiterBits
	limiterSweep   = int64(time.Second)
	limiterRefill  = int64(100 * time.Millisecond)
	defaultSources = 1 << 16
)

type limiterShard struct {
	mu        sync.Mutex
	tat       map[srcKey]int64
	lastSweep int64
	_         [40]byte // keep neighbouring shards' locks off one cache line
}

// srcKey is a source: 16 bytes, IPv4 as IPv4-mapped IPv6, IPv6 cut to
// its /64.
type srcKey struct{ hi, lo uint64 }

// newLimiter returns a limiter allowing rate messages per second per
// source with bursts of burst (rate when burst < 1), or nil when rate is
// not positive (no limit). maxSources <= 0 means 65536.
func newLimiter(rate float64, burst, maxSources int) *limiter {
	if !(rate > 0) || math.IsInf(rate, 1) {
		return nil
	}
	l := &limiter{}
	l.interval = max(1, int64(min(float64(time.Second)/rate, math.MaxInt64/4)))
	if burst < 1 {
		burst = max(1, int(min(math.Ceil(rate), math.MaxInt32)))
	}
	l.tolerance = int64(burst-1) * l.interval
	if l.tolerance < 0 || l.tolerance/l.interval != int64(burst-1) {
		l.tolerance = math.MaxInt64 / 4
	}
	if maxSources <= 0 {
		maxSources = defaultSources
	}
	l.perShard = max(1, (maxSources+limiterShards-1)/limiterShards)
	var seed [8]byte
	rand.Read(seed[:])
	l.seed = binary.LittleEndian.Uint64(seed[:])
	for i := range l.shards {
		l.shards[i].tat = make(map[srcKey]int64)
	}
	return l
}

func keyOf(ip netip.Addr) srcKey {
	ip = ip.Unmap()
	a := ip.As16()
	k := srcKey{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
	if ip.Is6() {
		k.lo = 0 // the /64
	}
	return k
}

// allow reports whether a message from ip at now (Unix ns) may be
// processed, and takes a token if so. A nil limiter allows everything.
func (l *limiter) allow(ip netip.Addr, now int64) bool {
	if l == nil {
		return true
	}
	k := keyOf(ip)
	h := (k.hi ^ l.seed) * 0x9e3779b97f4a7c15
	h = (h ^ k.lo) * 0xc2b2ae3d27d4eb4f
	s := &l.shards[h>>(64-limiterBits)]
	s.mu.Lock()
	if now-s.lastSweep >= limiterSweep {
		s.sweep(now)
	}
	tat, ok := s.tat[k]
	if !ok && len(s.tat) >= l.perShard {
		if now-s.lastSweep >= limiterRefill {
			s.sweep(now)
		}
		if len(s.tat) >= l.perShard {
			for victim := range s.tat {
				delete(s.tat, victim)
				l.evicted.Add(1)
				break
			}
		}
	}
	tat = max(tat, now)
	if tat-now > l.tolerance {
		s.mu.Unlock()
		return false
	}
	s.tat[k] = tat + l.interval
	s.mu.Unlock()
	return true
}

// sweep forgets the sources whose bucket is full again. s.mu is held.
func (s *limiterShard) sweep(now int64) {
	s.lastSweep = now
	for k, tat := range s.tat {
		if tat <= now {
			delete(s.tat, k)
		}
	}
}

// sources returns the number of sources tracked.
func (l *limiter) sources() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.tat)
		s.mu.Unlock()
	}
	return n
}
