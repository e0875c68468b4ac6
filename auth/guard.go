package auth

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Guard defaults, used when the GuardConfig field is zero.
const (
	DefaultBanWindow  = 5 * time.Minute
	DefaultBanTime    = 15 * time.Minute
	DefaultMaxSources = 1 << 16
	DefaultMaxBans    = 1 << 14
	// DefaultIPv6PrefixLen groups IPv6 sources by /64: one subscriber
	// usually owns a whole /64, and per-/128 state would let one host
	// dodge limits and fill the table by cycling addresses.
	DefaultIPv6PrefixLen = 64
)

// Ban reasons reported in Ban.Reason.
const (
	BanReasonAuth    = "auth failures"
	BanReasonManual  = "manual"
	BanReasonScanner = "scanner"
)

// guardShards is the number of independently locked parts of the source
// table; a power of two (the shard is the top bits of a hash).
const (
	guardShardBits = 6
	guardShards    = 1 << guardShardBits
)

// GuardConfig configures a Guard. The zero value guards nothing: no rate
// limit, no automatic bans (manual bans still apply).
type GuardConfig struct {
	// Rate is the sustained packets per second accepted per source; 0 (or
	// negative) disables rate limiting.
	Rate float64
	// Burst is how many packets a quiet source may send at once. If <= 0,
	// max(1, ceil(Rate)).
	Burst int
	// BanFailures authentication failures from one source within
	// BanWindow ban it for BanTime; 0 disables automatic bans.
	BanFailures int
	// BanWindow is a fixed window opened by the first failure. If 0,
	// DefaultBanWindow.
	BanWindow time.Duration
	// BanTime is the length of an automatic ban, and of a manual one given
	// no duration. If 0, DefaultBanTime.
	BanTime time.Duration
	// Trusted sources are never rate-limited or banned.
	Trusted []netip.Prefix
	// ScannerUserAgents are User-Agent substrings, matched ASCII
	// case-insensitively by IsScanner. Nil means none; the config layer
	// supplies DefaultScannerUserAgents.
	ScannerUserAgents []string
	// MaxSources bounds the sources tracked for rate and failure state;
	// past it the least recently seen source is forgotten. If 0,
	// DefaultMaxSources.
	MaxSources int
	// MaxBans bounds active bans; past it the ban ending soonest is
	// dropped. If 0, DefaultMaxBans.
	MaxBans int
	// IPv6PrefixLen is the IPv6 prefix length treated as one source (1 to
	// 128). If 0, DefaultIPv6PrefixLen. IPv4 sources are single addresses.
	IPv6PrefixLen int
}

// DefaultScannerUserAgents returns User-Agent substrings of well-known SIP
// scanners and brute-forcers (SIPVicious and its clones, sipcli, and
// others seen in honeypot logs). Legitimate test tools (sipsak, SIPp) are
// not listed.
func DefaultScannerUserAgents() []string {
	return []string{
		"friendly-scanner", "friendly-request", "sipvicious", "sipcli",
		"sip-scan", "vaxsipuseragent", "iwar", "sivus", "smap", "pplsip",
		"sundayddr",
	}
}

// Ban is an active ban, for the admin view.
type Ban struct {
	// IP is the banned source: an IPv4 address, or the first address of
	// the banned IPv6 prefix (see GuardConfig.IPv6PrefixLen).
	IP       netip.Addr
	Until    time.Time
	Reason   string
	Failures int // failed authentications that caused it; 0 if manual
}

// GuardStats are the Guard's counters since it was made. The four drop
// and ban counters only grow; Sources and Bans are current sizes.
type GuardStats struct {
	RateLimited  uint64 // packets refused by the rate limit
	BannedDrops  uint64 // packets refused because the source is banned
	BansIssued   uint64 // automatic bans (AuthFailed reaching BanFailures)
	ScannerDrops uint64 // IsScanner calls that returned true
	Evicted      uint64 // sources forgotten because the table was full
	Sources      int    // sources tracked now
	Bans         int    // bans in force or not yet swept
}

// Guard is the first line of defence, consulted for every packet before
// it is parsed: per-source token buckets, bans after repeated
// authentication failures, and User-Agent based scanner detection.
//
// State lives in 64 shards keyed by a seeded hash of the source, each with
// its own mutex, a bounded LRU table of sources and a map of bans; there is
// no goroutine per source and no lock shared by all packets. Memory is
// bounded by MaxSources and MaxBans; call Sweep every few seconds to drop
// idle sources and expired bans early.
//
// The rate limit is a token bucket kept as one timestamp (GCRA): the
// "theoretical arrival time" tat advances by 1/Rate per accepted packet
// and a packet is refused while tat would run more than Burst-1 intervals
// ahead of now. A source whose tat is in the past has a full bucket, so
// forgetting it loses nothing.
type Guard struct {
	now         func() time.Time
	interval    int64 // ns per token; 0 disables the rate limit
	tolerance   int64 // (burst-1) * interval
	banFailures int32
	banWindow   int64
	banTime     int64
	v6maskHi    uint64 // IPv6 prefix mask applied to source keys
	v6maskLo    uint64
	maxSources  int // per shard
	maxBans     int // per shard
	seed        uint64
	trusted     []netip.Prefix
	// scanners holds the scanner patterns (ASCII lower-case, non-empty)
	// by their first byte, so IsScanner makes one pass over the
	// User-Agent whatever the number of patterns.
	scanners  [256][]string
	nScanners int

	scannerDrops atomic.Uint64
	shards       [guardShards]shard
}

// source is one tracked source, in a shard's slot array. Links are slot
// indexes (slot 0 is the LRU sentinel), which keeps entries free of
// pointers and the table allocation-free once grown.
type source struct {
	key      srcKey
	tat      int64 // GCRA theoretical arrival time, Unix ns
	winEnd   int64 // end of the failure window, Unix ns
	failures int32
	prev     int32
	next     int32
}

type banEntry struct {
	until    int64
	reason   string
	failures int32
}

type shard struct {
	mu    sync.Mutex
	idx   map[srcKey]int32
	slots []source // slots[0]: sentinel; .next most recent, .prev least
	free  int32    // first free slot, linked through next; 0 = none
	bans  map[srcKey]banEntry

	rateDrops  atomic.Uint64
	banDrops   atomic.Uint64
	bansIssued atomic.Uint64
	evicted    atomic.Uint64

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

// NewGuard returns a Guard for cfg. Out-of-range values are clamped to
// the nearest sensible one (the config layer reports them to the user).
// now nil means time.Now.
func NewGuard(cfg GuardConfig, now func() time.Time) *Guard {
	if now == nil {
		now = time.Now
	}
	g := &Guard{now: now}
	if cfg.Rate > 0 && !math.IsInf(cfg.Rate, 0) {
		iv := min(float64(time.Second)/cfg.Rate, math.MaxInt64/4) // ≥ 73 years
		g.interval = max(1, int64(iv))
		burst := cfg.Burst
		if burst <= 0 {
			burst = max(1, int(math.Ceil(min(cfg.Rate, math.MaxInt32))))
		}
		g.tolerance = int64(burst-1) * g.interval
		if g.tolerance < 0 || g.tolerance/g.interval != int64(burst-1) { // overflow
			g.tolerance = math.MaxInt64 / 4
		}
	}
	g.banFailures = int32(min(max(cfg.BanFailures, 0), math.MaxInt32))
	g.banWindow = int64(cmp.Or(max(cfg.BanWindow, 0), DefaultBanWindow))
	g.banTime = int64(cmp.Or(max(cfg.BanTime, 0), DefaultBanTime))
	v6bits := min(max(cmp.Or(cfg.IPv6PrefixLen, DefaultIPv6PrefixLen), 1), 128)
	g.v6maskHi = ^uint64(0) << max(0, 64-v6bits) // shifts ≥ 64 give 0
	g.v6maskLo = ^uint64(0) << (128 - v6bits)
	g.maxSources = max(1, (cmp.Or(max(cfg.MaxSources, 0), DefaultMaxSources)+guardShards-1)/guardShards)
	g.maxBans = max(1, (cmp.Or(max(cfg.MaxBans, 0), DefaultMaxBans)+guardShards-1)/guardShards)
	for _, p := range cfg.Trusted {
		if !p.IsValid() {
			continue
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		g.trusted = append(g.trusted, p.Masked())
	}
	for _, s := range cfg.ScannerUserAgents {
		if s != "" {
			s = asciiLower(s)
			g.scanners[s[0]] = append(g.scanners[s[0]], s)
			g.nScanners++
		}
	}
	var seed [8]byte
	rand.Read(seed[:])
	g.seed = binary.LittleEndian.Uint64(seed[:])
	for i := range g.shards {
		s := &g.shards[i]
		s.idx = make(map[srcKey]int32)
		s.bans = make(map[srcKey]banEntry)
		s.slots = make([]source, 1, 16)
	}
	return g
}

// Allow reports whether a packet from ip may be processed: false while ip
// is banned or over its rate. Trusted sources are always allowed. It
// reads the clock once; where time.Now is slow (20-70 ns on some VMs), a
// coarse clock updated every millisecond is a fine thing to inject.
func (g *Guard) Allow(ip netip.Addr) bool {
	if g.isTrusted(ip) {
		return true
	}
	k := g.key(ip)
	s := g.shard(k)
	now := g.now().UnixNano()
	s.mu.Lock()
	if len(s.bans) != 0 {
		if b, ok := s.bans[k]; ok {
			if now < b.until {
				s.mu.Unlock()
				s.banDrops.Add(1)
				return false
			}
			delete(s.bans, k)
		}
	}
	if g.interval == 0 {
		s.mu.Unlock()
		return true
	}
	src := s.lookup(k, g.maxSources)
	tat := max(src.tat, now)
	if tat-now > g.tolerance {
		s.mu.Unlock()
		s.rateDrops.Add(1)
		return false
	}
	src.tat = tat + g.interval
	s.mu.Unlock()
	return true
}

// AuthFailed records a failed authentication from ip (ErrUnknownUser,
// ErrBadResponse, ErrBadNonce) and reports whether ip is now banned. The
// BanFailures-th failure inside one window bans it for BanTime and resets
// the count. Trusted sources are never banned.
func (g *Guard) AuthFailed(ip netip.Addr) (banned bool) {
	if g.banFailures == 0 || g.isTrusted(ip) {
		return false
	}
	k := g.key(ip)
	s := g.shard(k)
	now := g.now().UnixNano()
	s.mu.Lock()
	if b, ok := s.bans[k]; ok && now < b.until {
		s.mu.Unlock()
		return true // a request that was in flight when the ban began
	}
	src := s.lookup(k, g.maxSources)
	if now >= src.winEnd {
		src.failures = 0
		src.winEnd = now + g.banWindow
	}
	src.failures++
	if src.failures < g.banFailures {
		s.mu.Unlock()
		return false
	}
	n := src.failures
	src.failures, src.winEnd = 0, 0
	s.addBan(k, banEntry{until: now + g.banTime, reason: BanReasonAuth, failures: n}, now, g.maxBans)
	s.mu.Unlock()
	s.bansIssued.Add(1)
	return true
}

// AuthOK records a successful authentication from ip and resets its
// failure count. This is deliberate: many phones often share one public
// address (an office NAT), and without the reset one phone with a stale
// password would get the whole office banned while its neighbours keep
// authenticating. The cost is that someone who owns one valid account at
// an address gets BanFailures-1 guesses per success at other accounts;
// the rate limit still bounds that.
func (g *Guard) AuthOK(ip netip.Addr) {
	k := g.key(ip)
	s := g.shard(k)
	s.mu.Lock()
	if i, ok := s.idx[k]; ok {
		s.slots[i].failures, s.slots[i].winEnd = 0, 0
	}
	s.mu.Unlock()
}

// Ban bans ip for d (BanTime if d <= 0) with reason "manual". A ban on a
// trusted source is recorded but has no effect: Allow lets trusted
// sources through before looking at bans.
func (g *Guard) Ban(ip netip.Addr, d time.Duration) {
	g.BanWithReason(ip, d, BanReasonManual)
}

// BanWithReason is Ban with a reason for the admin view, e.g.
// BanReasonScanner after IsScanner.
func (g *Guard) BanWithReason(ip netip.Addr, d time.Duration, reason string) {
	if d <= 0 {
		d = time.Duration(g.banTime)
	}
	k := g.key(ip)
	s := g.shard(k)
	now := g.now().UnixNano()
	until := now + int64(d)
	if until < now { // overflow: effectively forever
		until = math.MaxInt64
	}
	s.mu.Lock()
	s.addBan(k, banEntry{until: until, reason: reason}, now, g.maxBans)
	s.mu.Unlock()
}

// Unban lifts a ban on ip (and forgets its failures); it reports whether
// a ban was in force.
func (g *Guard) Unban(ip netip.Addr) bool {
	k := g.key(ip)
	s := g.shard(k)
	now := g.now().UnixNano()
	s.mu.Lock()
	b, ok := s.bans[k]
	delete(s.bans, k)
	if i, found := s.idx[k]; found {
		s.slots[i].failures, s.slots[i].winEnd = 0, 0
	}
	s.mu.Unlock()
	return ok && now < b.until
}

// Bans returns the bans in force, soonest to end first.
func (g *Guard) Bans() []Ban {
	now := g.now().UnixNano()
	var out []Ban
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for k, b := range s.bans {
			if now < b.until {
				out = append(out, Ban{IP: k.addr(), Until: time.Unix(0, b.until), Reason: b.reason, Failures: int(b.failures)})
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Ban) int {
		return cmp.Or(a.Until.Compare(b.Until), a.IP.Compare(b.IP))
	})
	return out
}

// Sweep forgets idle sources (full bucket, no failure window open) and
// expired bans. The server calls it every few seconds; it locks one shard
// at a time.
func (g *Guard) Sweep() {
	now := g.now().UnixNano()
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for _, j := range s.idx {
			src := &s.slots[j]
			if src.tat <= now && (src.failures == 0 || now >= src.winEnd) {
				s.remove(j)
			}
		}
		for k, b := range s.bans {
			if now >= b.until {
				delete(s.bans, k)
			}
		}
		s.mu.Unlock()
	}
}

// Stats returns the counters and current table sizes.
func (g *Guard) Stats() GuardStats {
	st := GuardStats{ScannerDrops: g.scannerDrops.Load()}
	for i := range g.shards {
		s := &g.shards[i]
		st.RateLimited += s.rateDrops.Load()
		st.BannedDrops += s.banDrops.Load()
		st.BansIssued += s.bansIssued.Load()
		st.Evicted += s.evicted.Load()
		s.mu.Lock()
		st.Sources += len(s.idx)
		st.Bans += len(s.bans)
		s.mu.Unlock()
	}
	return st
}

// IsScanner reports whether userAgent contains one of the configured
// scanner substrings, ignoring ASCII case. A true result is counted as a
// scanner drop in Stats, so call it once per request. It does not
// allocate.
func (g *Guard) IsScanner(userAgent string) bool {
	if g.nScanners == 0 {
		return false
	}
	for i := 0; i < len(userAgent); i++ {
		for _, p := range g.scanners[lowerASCII(userAgent[i])] {
			if hasPrefixFoldASCII(userAgent[i:], p) {
				g.scannerDrops.Add(1)
				return true
			}
		}
	}
	return false
}

func (g *Guard) isTrusted(ip netip.Addr) bool {
	if len(g.trusted) == 0 {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range g.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// srcKey identifies a source: its 16-byte address form (IPv4 as
// IPv4-mapped IPv6), IPv6 masked to the configured prefix. A 16-byte
// pointer-free key hashes and compares faster than netip.Addr (24 bytes
// with a pointer) and keeps the maps out of the garbage collector's scan.
type srcKey struct{ hi, lo uint64 }

func (k srcKey) addr() netip.Addr {
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], k.hi)
	binary.BigEndian.PutUint64(a[8:], k.lo)
	return netip.AddrFrom16(a).Unmap()
}

// key maps an address to the source it counts for: IPv4-mapped addresses
// as IPv4, zones dropped, IPv6 masked to the configured prefix.
func (g *Guard) key(ip netip.Addr) srcKey {
	ip = ip.Unmap()
	a := ip.As16()
	k := srcKey{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
	if ip.Is6() {
		k.hi &= g.v6maskHi
		k.lo &= g.v6maskLo
	}
	return k
}

// shard picks k's shard from the top bits of a seeded multiplicative
// hash (the seed keeps an attacker from aiming every source at one
// shard).
func (g *Guard) shard(k srcKey) *shard {
	h := (k.hi ^ g.seed) * 0x9e3779b97f4a7c15
	h = (h ^ k.lo) * 0xc2b2ae3d27d4eb4f
	return &g.shards[h>>(64-guardShardBits)]
}

// lookup returns k's source, creating it (evicting the least recently
// seen source if the shard is full) and marking it most recent. The
// pointer is valid until the shard is next modified.
func (s *shard) lookup(k srcKey, maxSources int) *source {
	if i, ok := s.idx[k]; ok {
		if s.slots[0].next != i {
			s.unlink(i)
			s.pushFront(i)
		}
		return &s.slots[i]
	}
	var i int32
	switch {
	case len(s.idx) >= maxSources:
		i = s.slots[0].prev
		s.unlink(i)
		delete(s.idx, s.slots[i].key)
		s.evicted.Add(1)
	case s.free != 0:
		i = s.free
		s.free = s.slots[i].next
	default:
		s.slots = append(s.slots, source{})
		i = int32(len(s.slots) - 1)
	}
	s.slots[i] = source{key: k}
	s.idx[k] = i
	s.pushFront(i)
	return &s.slots[i]
}

func (s *shard) unlink(i int32) {
	p, n := s.slots[i].prev, s.slots[i].next
	s.slots[p].next = n
	s.slots[n].prev = p
}

func (s *shard) pushFront(i int32) {
	h := s.slots[0].next
	s.slots[i].prev, s.slots[i].next = 0, h
	s.slots[h].prev = i
	s.slots[0].next = i
}

func (s *shard) remove(i int32) {
	s.unlink(i)
	delete(s.idx, s.slots[i].key)
	s.slots[i] = source{next: s.free}
	s.free = i
}

// addBan records a ban, making room if the shard is at its cap: expired
// bans go first, then the one ending soonest.
func (s *shard) addBan(k srcKey, b banEntry, now int64, maxBans int) {
	if _, ok := s.bans[k]; !ok && len(s.bans) >= maxBans {
		var victim srcKey
		soonest := int64(math.MaxInt64)
		for bk, bb := range s.bans {
			if now >= bb.until {
				delete(s.bans, bk)
				continue
			}
			if bb.until <= soonest {
				victim, soonest = bk, bb.until
			}
		}
		if len(s.bans) >= maxBans {
			delete(s.bans, victim)
		}
	}
	s.bans[k] = b
}

// asciiLower lower-cases ASCII letters only, matching hasPrefixFoldASCII.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	return string(b)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixFoldASCII reports whether s starts with lowerPat (already ASCII
// lower-case), ignoring ASCII case in s.
func hasPrefixFoldASCII(s, lowerPat string) bool {
	if len(s) < len(lowerPat) {
		return false
	}
	for j := 0; j < len(lowerPat); j++ {
		if lowerASCII(s[j]) != lowerPat[j] {
			return false
		}
	}
	return true
}
