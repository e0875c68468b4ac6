package portmap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// ManagerConfig configures a Manager. Zero fields get the defaults.
type ManagerConfig struct {
	// Lifetime is the lease asked for (default DefaultLifetime, 2 h).
	// Mappings are renewed at half the lease the gateway granted.
	Lifetime time.Duration
	// CheckInterval is how often the gateway is asked, between renewals,
	// whether it still holds the mappings and what its external address
	// is (Checker; default 60 s).
	CheckInterval time.Duration
	// RetryMin and RetryMax bound the exponential backoff after a failed
	// request (default 1 s and 5 min; with ±20 % jitter).
	RetryMin, RetryMax time.Duration
	// OpTimeout bounds each request (default 10 s).
	OpTimeout time.Duration
	// Parallel is how many requests run at once (default 8).
	Parallel int
	// OnExternalAddr is called when the gateway's external address is
	// first learned (old invalid) and when it changes, one call at a time.
	OnExternalAddr func(old, new netip.Addr)
	// OnEvent is called for every change of a mapping (from the goroutine
	// that made the request). It must not block.
	OnEvent func(Event)
	// Logger gets one line per event (default: none).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// EventKind says what happened to a mapping.
type EventKind string

// Event kinds.
const (
	EventMapped       EventKind = "mapped"        // created (also re-created after a loss)
	EventRenewed      EventKind = "renewed"       // renewed, same external address and port
	EventChanged      EventKind = "changed"       // renewed, but the external address or port differs
	EventFailed       EventKind = "failed"        // a create / renew / remove request failed; retried with backoff
	EventExpired      EventKind = "expired"       // renewals failed until the lease ended
	EventLost         EventKind = "lost"          // the gateway no longer holds it; re-created now
	EventRemoved      EventKind = "removed"       // deleted from the gateway
	EventGatewayReset EventKind = "gateway-reset" // the gateway restarted (epoch): every mapping is re-created
)

// Event reports a change.
type Event struct {
	Kind      EventKind
	Transport string
	Internal  netip.AddrPort
	// Mapping is the mapping after the event (before it, for removed,
	// lost and expired).
	Mapping Mapping
	// Previous is the mapping before a change.
	Previous Mapping
	Err      error
	Failures int // consecutive failures so far
}

// Status is the state of one wanted mapping, for the admin view.
type Status struct {
	Transport    string
	Internal     netip.AddrPort
	WantExternal uint16
	Mapped       bool
	Mapping      Mapping // valid when Mapped
	Failures     int
	LastError    string
	Next         time.Time // next request (renewal or retry)
}

// ErrClosed is returned by a Manager after Close.
var ErrClosed = errors.New("portmap: manager closed")

// ErrRangeTooBig is returned by AddRange for a range larger than its cap:
// map per call instead.
var ErrRangeTooBig = errors.New("portmap: port range too big for the gateway: map per call")

type mkey struct {
	transport string
	internal  netip.AddrPort
}

type entry struct {
	mkey
	op sync.Mutex // held during a request on this entry

	// Guarded by Manager.mu.
	want     uint16
	rewant   bool // want changed while mapped: ask for it at the next request
	wanted   bool // false once removed: unmap, then forget
	mapped   bool
	lost     bool // the gateway lost it: cur is what it was
	cur      Mapping
	due      time.Time
	failures int
	lastErr  error
}

// Manager keeps a set of wanted mappings alive through one Client:
// creates them, renews them at half their lease, retries failures with
// backoff, re-creates them all when the gateway restarted and removes
// them on Close. Its methods are safe for concurrent use.
type Manager struct {
	c   Client
	cfg ManagerConfig

	mu       sync.Mutex
	entries  map[mkey]*entry
	external netip.Addr
	resets   uint64
	running  bool
	closed   bool
	runDone  chan struct{}

	cbMu      sync.Mutex // serialises OnExternalAddr
	wake      chan struct{}
	closing   chan struct{}
	closeOnce sync.Once
	ready     chan struct{}
	readyOnce sync.Once
}

// NewManager returns a Manager for c. Nothing is sent until Run (or Map).
func NewManager(c Client, cfg ManagerConfig) *Manager {
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = time.Minute
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{
		c:       c,
		cfg:     cfg,
		entries: make(map[mkey]*entry),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		ready:   make(chan struct{}),
	}
	if rc, ok := c.(ResetCounter); ok {
		m.resets = rc.Resets()
	}
	return m
}

// Client returns the client the Manager uses.
func (m *Manager) Client() Client { return m.c }

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Add wants a mapping of internal (transport "udp" or "tcp") to
// wantExternal (0: the same port). Run creates it. Adding it again
// changes only the wanted external port.
func (m *Manager) Add(transport string, internal netip.AddrPort, wantExternal uint16) error {
	t, err := normTransport(transport)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.addLocked(mkey{t, internal}, wantExternal)
	m.mu.Unlock()
	m.poke()
	return nil
}

func (m *Manager) addLocked(k mkey, want uint16) *entry {
	e := m.entries[k]
	if e == nil {
		e = &entry{mkey: k}
		m.entries[k] = e
	}
	if !e.wanted || e.want != want {
		e.due = time.Time{}
		e.rewant = e.mapped && e.want != want
	}
	e.wanted, e.want = true, want
	return e
}

// AddRange wants mappings for the internal ports first..last of addr,
// each to the same external port, unless there are more than max of
// them: then it adds none and returns ErrRangeTooBig, and the caller maps
// per call (Map when a call starts, Remove when it ends). Gateways map
// single ports, one request each, and many cap how many a client holds.
func (m *Manager) AddRange(transport string, addr netip.Addr, first, last uint16, max int) error {
	t, err := normTransport(transport)
	if err != nil {
		return err
	}
	if first == 0 || last < first {
		return fmt.Errorf("portmap: bad port range %d-%d", first, last)
	}
	if n := int(last) - int(first) + 1; n > max {
		return fmt.Errorf("%w (%d ports, at most %d)", ErrRangeTooBig, n, max)
	}
	m.mu.Lock()
	for p := int(first); p <= int(last); p++ {
		m.addLocked(mkey{t, netip.AddrPortFrom(addr, uint16(p))}, uint16(p))
	}
	m.mu.Unlock()
	m.poke()
	return nil
}

// Remove stops wanting a mapping: Run deletes it from the gateway.
func (m *Manager) Remove(transport string, internal netip.AddrPort) {
	t, err := normTransport(transport)
	if err != nil {
		return
	}
	m.mu.Lock()
	if e := m.entries[mkey{t, internal}]; e != nil && e.wanted {
		e.wanted, e.due, e.failures = false, time.Time{}, 0
	}
	m.mu.Unlock()
	m.poke()
}

// Map adds a wanted mapping and creates it now, returning it: for
// per-call RTP mappings, whose external port goes into the SDP. Run
// keeps it alive afterwards; Remove ends it.
func (m *Manager) Map(ctx context.Context, transport string, internal netip.AddrPort, wantExternal uint16) (Mapping, error) {
	t, err := normTransport(transport)
	if err != nil {
		return Mapping{}, err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Mapping{}, ErrClosed
	}
	e := m.addLocked(mkey{t, internal}, wantExternal)
	m.mu.Unlock()
	m.work(ctx, e, true)
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.mapped {
		return e.cur, nil
	}
	if e.lastErr != nil {
		return Mapping{}, e.lastErr
	}
	return Mapping{}, fmt.Errorf("portmap: %s %s not mapped", t, internal)
}

// Lookup returns the current mapping of internal.
func (m *Manager) Lookup(transport string, internal netip.AddrPort) (Mapping, bool) {
	t, err := normTransport(transport)
	if err != nil {
		return Mapping{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.entries[mkey{t, internal}]; e != nil && e.mapped && e.wanted {
		return e.cur, true
	}
	return Mapping{}, false
}

// Mappings returns the mappings currently held, sorted by transport and
// internal address.
func (m *Manager) Mappings() []Mapping {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Mapping
	for _, e := range m.entries {
		if e.mapped {
			out = append(out, e.cur)
		}
	}
	slices.SortFunc(out, func(a, b Mapping) int {
		return cmp.Or(cmp.Compare(a.Transport, b.Transport), a.Internal.Compare(b.Internal))
	})
	return out
}

// Status returns every wanted mapping's state, sorted like Mappings.
func (m *Manager) Status() []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Status
	for _, e := range m.entries {
		if !e.wanted {
			continue
		}
		s := Status{Transport: e.transport, Internal: e.internal, WantExternal: e.want, Mapped: e.mapped, Failures: e.failures, Next: e.due}
		if e.mapped {
			s.Mapping = e.cur
		}
		if e.lastErr != nil {
			s.LastError = e.lastErr.Error()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Status) int {
		return cmp.Or(cmp.Compare(a.Transport, b.Transport), a.Internal.Compare(b.Internal))
	})
	return out
}

// ExternalAddr is the gateway's external address as last learned.
func (m *Manager) ExternalAddr() netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.external
}

// Ready is closed once Run has tried every mapping wanted when it
// started (successfully or not): start-up can wait on it, with a bound.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Run keeps the mappings alive until ctx ends or Close is called. It
// returns at once if Run is already running or the Manager is closed.
// Mappings stay on the gateway when Run returns; Close removes them.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	if m.running || m.closed {
		m.mu.Unlock()
		return
	}
	m.running = true
	m.runDone = make(chan struct{})
	done := m.runDone
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	checker, _ := m.c.(Checker)
	nextCheck := m.cfg.Now().Add(m.cfg.CheckInterval)
	first := true
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		m.runDue(ctx)
		if first {
			first = false
			m.readyOnce.Do(func() { close(m.ready) })
		}
		if m.checkResets() {
			continue
		}
		if !m.cfg.Now().Before(nextCheck) {
			if checker != nil {
				m.check(ctx, checker)
			}
			nextCheck = m.cfg.Now().Add(m.cfg.CheckInterval)
			if m.checkResets() {
				continue
			}
		}
		wait := nextCheck.Sub(m.cfg.Now())
		m.mu.Lock()
		for _, e := range m.entries {
			if d := e.due.Sub(m.cfg.Now()); d < wait {
				wait = d
			}
		}
		m.mu.Unlock()
		if wait <= 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-m.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-ctx.Done():
		}
	}
}

// runDue runs the requests that are due, Parallel at a time.
func (m *Manager) runDue(ctx context.Context) {
	now := m.cfg.Now()
	m.mu.Lock()
	var due []*entry
	for _, e := range m.entries {
		if !e.due.After(now) {
			due = append(due, e)
		}
	}
	m.mu.Unlock()
	// Low ports (SIP) before high ones (RTP).
	slices.SortFunc(due, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.internal.Port(), b.internal.Port()), cmp.Compare(a.transport, b.transport))
	})
	sem := make(chan struct{}, m.cfg.Parallel)
	var wg sync.WaitGroup
	for _, e := range due {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m.work(ctx, e, false)
		}()
	}
	wg.Wait()
}

// work makes the request an entry needs: create or renew it, or delete
// it once unwanted. force runs it even if it is not due.
func (m *Manager) work(ctx context.Context, e *entry, force bool) {
	e.op.Lock()
	defer e.op.Unlock()
	m.mu.Lock()
	if m.entries[e.mkey] != e || (!force && e.due.After(m.cfg.Now())) {
		m.mu.Unlock()
		return
	}
	wanted, mapped, cur, want, rewant := e.wanted, e.mapped, e.cur, e.want, e.rewant
	had := mapped || e.lost
	m.mu.Unlock()

	octx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	if !wanted {
		var err error
		if mapped {
			err = m.c.Unmap(octx, cur)
		}
		m.mu.Lock()
		if err != nil && e.failures < 3 && ctx.Err() == nil {
			e.failures++
			e.lastErr = err
			e.due = m.cfg.Now().Add(m.backoff(e.failures))
			n := e.failures
			m.mu.Unlock()
			m.emit(Event{Kind: EventFailed, Transport: e.transport, Internal: e.internal, Mapping: cur, Err: err, Failures: n})
			return
		}
		if !e.wanted { // not re-added meanwhile
			delete(m.entries, e.mkey)
		}
		m.mu.Unlock()
		if mapped && err == nil {
			m.emit(Event{Kind: EventRemoved, Transport: e.transport, Internal: e.internal, Mapping: cur})
		}
		return
	}

	ask := want
	if had && !rewant {
		// Keep (or get back) the port the gateway granted.
		ask = cur.External.Port()
	}
	if mapped && rewant && want != 0 && want != cur.External.Port() {
		m.c.Unmap(octx, cur) // best effort: the old port is no longer wanted
	}
	got, err := m.c.Map(octx, e.transport, e.internal, ask, m.cfg.Lifetime)
	now := m.cfg.Now()
	m.mu.Lock()
	if err != nil {
		if ctx.Err() != nil { // shutting down: not a failure
			m.mu.Unlock()
			return
		}
		e.failures++
		e.lastErr = err
		e.due = now.Add(m.backoff(e.failures))
		expired := e.mapped && !e.cur.Expires.IsZero() && !now.Before(e.cur.Expires)
		if expired {
			e.mapped = false
		}
		n := e.failures
		m.mu.Unlock()
		m.emit(Event{Kind: EventFailed, Transport: e.transport, Internal: e.internal, Mapping: cur, Err: err, Failures: n})
		if expired {
			m.emit(Event{Kind: EventExpired, Transport: e.transport, Internal: e.internal, Mapping: cur, Err: err, Failures: n})
		}
		return
	}
	wasMapped := e.mapped
	e.mapped, e.cur, e.failures, e.lastErr, e.rewant, e.lost = true, got, 0, nil, false, false
	e.due = now.Add(renewAfter(got))
	oldExt := m.external
	extChanged := got.External.Addr().IsValid() && got.External.Addr() != oldExt
	if extChanged {
		m.external = got.External.Addr()
	}
	m.mu.Unlock()
	kind := EventMapped
	if wasMapped {
		kind = EventRenewed
		if got.External != cur.External {
			kind = EventChanged
		}
	}
	m.emit(Event{Kind: kind, Transport: e.transport, Internal: e.internal, Mapping: got, Previous: cur})
	if extChanged {
		m.externalChanged(oldExt, got.External.Addr())
	}
}

// renewAfter is when to renew m: at half its lease (RFC 6886 §3.3,
// RFC 6887 §11.2.1), never sooner than 500 ms; a permanent mapping is
// only checked.
func renewAfter(m Mapping) time.Duration {
	if m.Lifetime <= 0 {
		return 100 * 365 * 24 * time.Hour
	}
	return max(m.Lifetime/2, 500*time.Millisecond)
}

// backoff is the wait after n consecutive failures: RetryMin doubled
// per failure up to RetryMax, ±20 % jitter.
func (m *Manager) backoff(n int) time.Duration {
	d := m.cfg.RetryMin
	for i := 1; i < n && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.cfg.RetryMax)
	j := time.Duration(rand.Int64N(int64(d)/5 + 1))
	return d - d/10 + j
}

// checkResets notices a gateway restart that a reply's epoch showed and
// makes every mapping due; it reports whether there was one.
func (m *Manager) checkResets() bool {
	rc, ok := m.c.(ResetCounter)
	if !ok {
		return false
	}
	n := rc.Resets()
	m.mu.Lock()
	if n == m.resets {
		m.mu.Unlock()
		return false
	}
	m.resets = n
	for _, e := range m.entries {
		e.due = time.Time{}
		e.failures = 0
		if e.mapped {
			e.mapped, e.lost = false, true
		}
	}
	m.mu.Unlock()
	m.emit(Event{Kind: EventGatewayReset})
	return true
}

// check asks the gateway whether it still holds the mappings.
func (m *Manager) check(ctx context.Context, ch Checker) {
	ms := m.Mappings()
	octx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
	defer cancel()
	res, err := ch.Check(octx, ms)
	if err != nil {
		if m.cfg.Logger != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("portmap: gateway check failed", "protocol", m.c.Protocol(), "err", err)
		}
		return
	}
	if m.checkResets() {
		res.Lost = nil // all are being re-created already
	}
	m.mu.Lock()
	oldExt := m.external
	extChanged := res.External.IsValid() && res.External != oldExt
	if extChanged {
		m.external = res.External
	}
	var lost []Mapping
	for _, l := range res.Lost {
		e := m.entries[mkey{l.Transport, l.Internal}]
		if e == nil || !e.mapped {
			continue
		}
		e.due = time.Time{}
		e.mapped, e.lost = false, true
		lost = append(lost, e.cur)
	}
	if extChanged && oldExt.IsValid() {
		// Every mapping's external address is stale: renew them now.
		for _, e := range m.entries {
			e.due = time.Time{}
		}
	}
	m.mu.Unlock()
	for _, l := range lost {
		m.emit(Event{Kind: EventLost, Transport: l.Transport, Internal: l.Internal, Mapping: l})
	}
	if extChanged {
		m.externalChanged(oldExt, res.External)
	}
}

func (m *Manager) externalChanged(old, new netip.Addr) {
	if l := m.cfg.Logger; l != nil {
		l.Info("portmap: external address", "protocol", m.c.Protocol(), "old", old, "new", new)
	}
	if m.cfg.OnExternalAddr != nil {
		m.cbMu.Lock()
		defer m.cbMu.Unlock()
		m.cfg.OnExternalAddr(old, new)
	}
}

func (m *Manager) emit(ev Event) {
	if l := m.cfg.Logger; l != nil {
		attrs := []any{"event", string(ev.Kind), "protocol", m.c.Protocol()}
		if ev.Transport != "" {
			attrs = append(attrs, "transport", ev.Transport, "internal", ev.Internal.String())
		}
		if ev.Mapping.External.IsValid() {
			attrs = append(attrs, "external", ev.Mapping.External.String())
		}
		if ev.Err != nil {
			attrs = append(attrs, "err", ev.Err, "failures", ev.Failures)
			l.Warn("portmap", attrs...)
		} else {
			l.Info("portmap", attrs...)
		}
	}
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(ev)
	}
}

// Close stops Run, waits for it, and removes every mapping from the
// gateway (lifetime 0 / DeletePortMapping), in parallel, within ctx. It
// returns the errors of the removals that failed.
func (m *Manager) Close(ctx context.Context) error {
	m.closeOnce.Do(func() { close(m.closing) })
	m.mu.Lock()
	m.closed = true
	running, done := m.running, m.runDone
	m.mu.Unlock()
	if running {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	var all []*entry
	for _, e := range m.entries {
		all = append(all, e)
	}
	m.mu.Unlock()
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, m.cfg.Parallel)
	var wg sync.WaitGroup
	for _, e := range all {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			e.op.Lock()
			defer e.op.Unlock()
			m.mu.Lock()
			mapped, cur := e.mapped, e.cur
			m.mu.Unlock()
			if !mapped {
				m.mu.Lock()
				delete(m.entries, e.mkey)
				m.mu.Unlock()
				return
			}
			octx, cancel := context.WithTimeout(ctx, m.cfg.OpTimeout)
			err := m.c.Unmap(octx, cur)
			cancel()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("removing %s: %w", cur, err))
				mu.Unlock()
				m.emit(Event{Kind: EventFailed, Transport: e.transport, Internal: e.internal, Mapping: cur, Err: err})
				return
			}
			m.mu.Lock()
			e.mapped = false
			delete(m.entries, e.mkey)
			m.mu.Unlock()
			m.emit(Event{Kind: EventRemoved, Transport: e.transport, Internal: e.internal, Mapping: cur})
		}()
	}
	wg.Wait()
	m.readyOnce.Do(func() { close(m.ready) })
	return errors.Join(errs...)
}
