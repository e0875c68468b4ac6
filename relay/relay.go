package relay

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/relay/kernfwd"
)

// Config configures a Relay. Zero values mean the documented defaults.
type Config struct {
	// PortMin and PortMax are the inclusive local port range. RTP uses even
	// ports, RTCP the next odd one. Default 30000..39999.
	PortMin, PortMax int
	// Workers is the fixed number of I/O goroutines; default GOMAXPROCS.
	Workers int
	// Learning is the learning window after each SetPeer, counted from the
	// first packet from an eligible source; default 3s. The window ends 30 s
	// after SetPeer at the latest (or after Learning, if that is longer).
	Learning time.Duration
	// Probation is the number of consecutive, sequence-consistent packets
	// from one new source needed to latch to it; default 4.
	Probation int
	// LearnAnyIP lets a side learn from any IP, not only from its announced
	// IP or its SIP source IP. Off by default: it weakens the protection
	// against RTP Bleed/Inject.
	LearnAnyIP bool
	// Timeout ends an established session without any media in any
	// direction for this long; default 60s.
	Timeout time.Duration
	// HoldTimeout replaces Timeout while a side is on hold; default 1h.
	HoldTimeout time.Duration
	// OfferTimeout drops a session never Established after this; default 10m.
	OfferTimeout time.Duration
	// OneWayAfter is the one-way alarm threshold; default 5s.
	OneWayAfter time.Duration
	// SocketBuffer is SO_RCVBUF/SO_SNDBUF per socket; default 256 KiB.
	SocketBuffer int
	// OnPorts, if set, is told when a leg's port pair (rtp, rtp+1) on
	// bind is opened and when it is closed (e.g. to map it on a NAT
	// router). It is called with the session locked and must not block.
	OnPorts func(bind netip.Addr, rtp int, open bool)
	// OnTimeout is called once per timed-out session, from the housekeeping
	// goroutine, without locks held; the relay deletes the session right after.
	// It may call any method except Close (which waits for housekeeping).
	OnTimeout func(id, reason string)
	// Logger receives latch changes, first foreign packets per leg,
	// one-way alarms and timeouts; default slog.Default().
	Logger *slog.Logger
	// Now is the clock, for tests; default time.Now.
	Now func() time.Time
	// Kernel, if set, is the in-kernel fast path (package relay/kernfwd):
	// the RTP of locked legs is forwarded by the kernel, see kernel.go. The
	// caller owns it and closes it after the relay.
	Kernel *kernfwd.Forwarder
}

func (c *Config) setDefaults() error {
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = 30000, 39999
	}
	if c.PortMin%2 == 1 {
		c.PortMin++
	}
	if c.PortMin < 1024 || c.PortMax > 65535 || c.PortMax < c.PortMin+1 {
		return fmt.Errorf("relay: bad port range %d-%d: need an even and an odd port within 1024-65535", c.PortMin, c.PortMax)
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Learning <= 0 {
		c.Learning = 3 * time.Second
	}
	if c.Probation <= 0 {
		c.Probation = 4
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.HoldTimeout <= 0 {
		c.HoldTimeout = time.Hour
	}
	if c.OfferTimeout <= 0 {
		c.OfferTimeout = 10 * time.Minute
	}
	if c.OneWayAfter <= 0 {
		c.OneWayAfter = 5 * time.Second
	}
	if c.SocketBuffer <= 0 {
		c.SocketBuffer = 256 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Errors returned by the relay.
var (
	ErrNoPorts = errors.New("relay: port range exhausted")
	ErrClosed  = errors.New("relay: session deleted or relay closed")
)

// Relay is an RTP/RTCP relay. All methods are safe for concurrent use.
type Relay struct {
	cfg   Config
	pol   latchPolicy
	log   *slog.Logger
	epoch time.Time // base for RTP arrival times (jitter)
	ports *portAlloc

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool

	workers []*worker
	hkStop  chan struct{}
	hkDone  chan struct{}

	timeouts atomic.Uint64

	kernLegs    atomic.Int64     // legs forwarded in the kernel now
	kernPackets [2]atomic.Uint64 // forwarded in the kernel, by the side they came from
	kernBytes   [2]atomic.Uint64
}

// New starts a relay: its workers and housekeeping goroutine.
func New(cfg Config) (*Relay, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &Relay{
		cfg: cfg,
		pol: latchPolicy{
			learning:   cfg.Learning,
			maxWindow:  max(maxLearnWindow, cfg.Learning),
			probation:  cfg.Probation,
			learnAnyIP: cfg.LearnAnyIP,
		},
		log:      cfg.Logger,
		epoch:    cfg.Now(),
		ports:    newPortAlloc(cfg.PortMin, cfg.PortMax, cfg.SocketBuffer),
		sessions: make(map[string]*Session),
		hkStop:   make(chan struct{}),
		hkDone:   make(chan struct{}),
	}
	for i := 0; i < cfg.Workers; i++ {
		w, err := newWorker(r, i)
		if err != nil {
			for _, w := range r.workers {
				w.stop()
			}
			return nil, err
		}
		r.workers = append(r.workers, w)
	}
	for _, w := range r.workers {
		w.start()
	}
	go r.housekeeping()
	return r, nil
}

func (r *Relay) now() time.Time { return r.cfg.Now() }

// Close deletes all sessions (freeing their ports) and stops all goroutines.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	all := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	clear(r.sessions)
	r.mu.Unlock()
	for _, s := range all {
		s.close()
	}
	close(r.hkStop)
	<-r.hkDone
	for _, w := range r.workers {
		w.stop()
	}
	return nil
}

// workerFor picks a session's worker by an FNV-1a hash of its id.
func (r *Relay) workerFor(id string) *worker {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return r.workers[h%uint32(len(r.workers))]
}

// Create returns the session with this id (the SIP Call-ID), creating it if
// needed. After Close it returns a dead session whose Leg fails.
func (r *Relay) Create(id string) *Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.sessions[id]; ok {
		return s
	}
	s := &Session{r: r, id: id, w: r.workerFor(id), created: r.now()}
	if r.closed {
		s.deleted = true
		return s
	}
	r.sessions[id] = s
	return s
}

// Get returns the session with this id.
func (r *Relay) Get(id string) (*Session, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[id]
	return s, ok
}

// Delete ends a session and frees all its ports. It is idempotent.
func (r *Relay) Delete(id string) {
	r.mu.Lock()
	s, ok := r.sessions[id]
	if ok {
		delete(r.sessions, id)
	}
	r.mu.Unlock()
	if ok {
		s.close()
	}
}

// deleteSession deletes s only if it is still the session under its id.
func (r *Relay) deleteSession(s *Session) {
	r.mu.Lock()
	if r.sessions[s.id] == s {
		delete(r.sessions, s.id)
	}
	r.mu.Unlock()
	s.close()
}

func (r *Relay) list() []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	return all
}

// Sessions returns a snapshot of all sessions, sorted by creation time.
func (r *Relay) Sessions() []SessionInfo {
	all := r.list()
	now := r.now()
	out := make([]SessionInfo, 0, len(all))
	for _, s := range all {
		out = append(out, s.info(now))
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// Totals are global counters, for /metrics. Packet and byte counters count
// since New; Sessions, Established, Streams and PortsInUse are gauges.
type Totals struct {
	Sessions    int `json:"sessions"`
	Established int `json:"established"`
	Streams     int `json:"streams"`
	PortsInUse  int `json:"ports_in_use"`
	PortsTotal  int `json:"ports_total"`

	// Forwarded packets and bytes (RTP and RTCP) per direction.
	PacketsAtoB uint64 `json:"packets_a_to_b"`
	BytesAtoB   uint64 `json:"bytes_a_to_b"`
	PacketsBtoA uint64 `json:"packets_b_to_a"`
	BytesBtoA   uint64 `json:"bytes_b_to_a"`
	RTCPPackets uint64 `json:"rtcp_packets"` // forwarded RTCP packets, both directions

	DroppedForeign   uint64 `json:"dropped_foreign"`   // from a source that is not the side's (injected/unknown)
	DroppedLearning  uint64 `json:"dropped_learning"`  // held back during probation of a new source
	DroppedNoTarget  uint64 `json:"dropped_no_target"` // the other side has no address yet
	DroppedMalformed uint64 `json:"dropped_malformed"` // not RTP/RTCP, or too large
	SendErrors       uint64 `json:"send_errors"`       // sendmmsg failed or the socket buffer was full
	Latches          uint64 `json:"latches"`           // times a leg latched to a (new) source
	Timeouts         uint64 `json:"timeouts"`          // sessions ended by a timeout
	Wakeups          uint64 `json:"worker_wakeups"`    // epoll_wait returns
	RecvCalls        uint64 `json:"recvmmsg_calls"`    // recvmmsg calls that returned packets
	SendCalls        uint64 `json:"sendmmsg_calls"`    // sendmmsg calls

	// The in-kernel fast path (Config.Kernel): legs forwarded there now,
	// and the RTP packets and bytes it forwarded (also counted in
	// Packets*/Bytes* above).
	KernelLegs    int    `json:"kernel_legs"`
	KernelPackets uint64 `json:"kernel_packets"`
	KernelBytes   uint64 `json:"kernel_bytes"`
}

// Totals returns the global counters.
func (r *Relay) Totals() Totals {
	var t Totals
	for _, s := range r.list() {
		s.mu.Lock()
		if !s.deleted {
			t.Sessions++
			if !s.established.IsZero() {
				t.Established++
			}
			t.Streams += len(s.streams)
		}
		s.mu.Unlock()
	}
	used, total := r.ports.usage()
	t.PortsInUse, t.PortsTotal = 2*used, 2*total
	for _, w := range r.workers {
		c := &w.ctr
		t.PacketsAtoB += c.packets[A].Load()
		t.PacketsBtoA += c.packets[B].Load()
		t.BytesAtoB += c.bytes[A].Load()
		t.BytesBtoA += c.bytes[B].Load()
		t.RTCPPackets += c.rtcp.Load()
		t.DroppedForeign += c.foreign.Load()
		t.DroppedLearning += c.learning.Load()
		t.DroppedNoTarget += c.noTarget.Load()
		t.DroppedMalformed += c.malformed.Load()
		t.SendErrors += c.sendErrors.Load()
		t.Latches += c.latches.Load()
		t.Wakeups += c.wakeups.Load()
		t.RecvCalls += c.recvCalls.Load()
		t.SendCalls += c.sendCalls.Load()
	}
	t.Timeouts = r.timeouts.Load()
	for x := range 2 {
		p, b := r.kernPackets[x].Load(), r.kernBytes[x].Load()
		t.KernelPackets += p
		t.KernelBytes += b
		if Side(x) == A {
			t.PacketsAtoB += p
			t.BytesAtoB += b
		} else {
			t.PacketsBtoA += p
			t.BytesBtoA += b
		}
	}
	t.KernelLegs = int(r.kernLegs.Load())
	return t
}

// counters are a worker's global counters. Only the worker adds to them
// (once per batch); anyone may read them.
type counters struct {
	packets    [2]atomic.Uint64 // forwarded, by the side they came from
	bytes      [2]atomic.Uint64
	rtcp       atomic.Uint64
	foreign    atomic.Uint64
	learning   atomic.Uint64
	noTarget   atomic.Uint64
	malformed  atomic.Uint64
	sendErrors atomic.Uint64
	latches    atomic.Uint64
	wakeups    atomic.Uint64
	recvCalls  atomic.Uint64
	sendCalls  atomic.Uint64
	_          [64]byte // keep workers' counters on separate cache lines
}

// batchCounters accumulate one batch before it is added to counters.
type batchCounters struct {
	packets   [2]uint64
	bytes     [2]uint64
	rtcp      uint64
	foreign   uint64
	learning  uint64
	noTarget  uint64
	malformed uint64
	sendErrs  uint64
	latches   uint64
}

func (c *counters) add(b *batchCounters) {
	for i := range 2 {
		if b.packets[i] != 0 {
			c.packets[i].Add(b.packets[i])
			c.bytes[i].Add(b.bytes[i])
		}
	}
	addNZ(&c.rtcp, b.rtcp)
	addNZ(&c.foreign, b.foreign)
	addNZ(&c.learning, b.learning)
	addNZ(&c.noTarget, b.noTarget)
	addNZ(&c.malformed, b.malformed)
	addNZ(&c.sendErrors, b.sendErrs)
	addNZ(&c.latches, b.latches)
	*b = batchCounters{}
}

func addNZ(a *atomic.Uint64, v uint64) {
	if v != 0 {
		a.Add(v)
	}
}

// housekeeping runs timeouts and alarms once a second.
func (r *Relay) housekeeping() {
	defer close(r.hkDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.hkStop:
			return
		case <-t.C:
			r.sweep(r.now())
		}
	}
}

// sweep checks every session for timeouts and one-way alarms at now.
func (r *Relay) sweep(now time.Time) {
	for _, s := range r.list() {
		reason := s.check(now)
		if reason == "" {
			continue
		}
		r.timeouts.Add(1)
		r.log.Info("relay: session timed out", "session", s.id, "reason", reason)
		if f := r.cfg.OnTimeout; f != nil {
			f(s.id, reason)
		}
		r.deleteSession(s)
	}
}
