// Package keepalive holds NAT bindings open and tells how each peer is
// doing ("qualify"). A NAT forgets an idle UDP binding in 30 s to a few
// minutes, after which an INVITE or BYE to the phone is dropped. For every
// flow a registration or a dialog uses, the Manager sends a ping from the
// socket the flow uses — a SIP OPTIONS by default, whose answer also gives
// the round-trip time, or a 4-byte CRLF ping that only refreshes the NAT —
// and keeps the peer's status: OK, LAGGED (answered late), UNREACHABLE
// (several pings in a row unanswered).
//
// When to ping is a pure function of the flow and the time (Phase, Next,
// First): each flow pings on its own fixed grid offset, so any number of
// flows spread evenly over the interval, never in bursts. The Manager only
// applies it, from one goroutine, with a heap of due times.
//
// A flow lives while something holds it: a dialog (DialogUp/DialogDown)
// or a registration. Registrations are not tracked here one by one: Track
// starts pinging a flow, and at each ping the Manager asks Config.Policy
// whether a live registration still uses the flow and with which interval;
// when none does and no dialog holds it, the flow is forgotten.
package keepalive

import (
	"container/heap"
	"hash/maphash"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// Methods of pinging.
const (
	// MethodOptions sends SIP OPTIONS: refreshes the NAT in both
	// directions (the answer comes back through it) and measures RTT.
	MethodOptions = "options"
	// MethodCRLF sends "\r\n\r\n": 4 bytes that every SIP stack ignores.
	// It refreshes the NAT outbound only and tells nothing about the peer.
	MethodCRLF = "crlf"
)

// Status of a peer.
type Status uint8

// Statuses.
const (
	// Unknown: no ping answered or missed yet.
	Unknown Status = iota
	// OK: the last ping was answered within Config.Lagged.
	OK
	// Lagged: the last ping was answered, but later than Config.Lagged.
	Lagged
	// Unreachable: Config.Misses pings in a row went unanswered.
	Unreachable
	// Unmonitored: pinged with CRLF, which has no answer.
	Unmonitored
)

var statusNames = [...]string{"unknown", "ok", "lagged", "unreachable", "unmonitored"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Policy is how one flow is kept alive.
type Policy struct {
	// Interval between pings; 0 turns keepalives off for the flow.
	Interval time.Duration
	// Method is MethodOptions or MethodCRLF.
	Method string
}

// Sender sends a ping on a flow.
type Sender func(f sipx.Flow, ping []byte) error

// Config configures a Manager. Zero values use the defaults.
type Config struct {
	// Default is the policy of a flow Policy says nothing about.
	// Default interval DefaultInterval, method MethodOptions.
	Default Policy
	// Timeout: a ping unanswered this long is missed. Default 5s; never
	// more than the flow's interval.
	Timeout time.Duration
	// Lagged: an answer later than this makes the peer LAGGED. Default 1s.
	Lagged time.Duration
	// Misses in a row make the peer UNREACHABLE. Default 3.
	Misses int
	// Send sends a ping from the flow's socket.
	Send Sender
	// Build returns an OPTIONS for the flow with this Via branch (see
	// OptionsPing).
	Build func(f sipx.Flow, branch string) []byte
	// Policy returns the policy of a flow held by a registration, and
	// whether any live registration still uses the flow. Nil: no flow is
	// held by a registration.
	Policy func(f sipx.Flow) (Policy, bool)
	// OnStatus is told of every status change, outside the Manager's lock.
	OnStatus func(f sipx.Flow, old, new Status, st State)
	// Logger receives status changes. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// State is what is known about a flow, for the admin view.
type State struct {
	Flow       sipx.Flow
	Status     Status
	Method     string
	Interval   time.Duration
	Registered bool // a registration holds the flow
	Dialogs    int  // dialogs holding it
	// RTT of the last answer, the smallest and the mean of all answers.
	RTT, MinRTT, AvgRTT time.Duration
	// Misses in a row (reset by an answer).
	Misses int
	// Sent and Answered count pings.
	Sent, Answered uint64
	// LastAnswer is when the last answer arrived; NextPing when the next
	// ping is due.
	LastAnswer, NextPing time.Time
	// History holds the RTTs of the most recent answers, oldest first; a
	// missed ping is -1.
	History []time.Duration
}

// historyLen RTTs are kept per flow for the admin view's sparkline.
const historyLen = 20

// entry is one flow being kept alive. Guarded by Manager.mu.
type entry struct {
	f     sipx.Flow
	id    uint64
	phase time.Duration
	pol   Policy

	reg     bool // a registration may hold it (checked at each ping)
	pinned  bool // held for good (a trunk)
	dialogs int

	due  time.Time // heap key: min(next ping, answer deadline)
	next time.Time // next ping
	hidx int       // index in the heap, -1 when not in it

	seq      uint32    // of the outstanding ping
	sentAt   time.Time // zero when no ping is outstanding
	deadline time.Time

	status   Status
	misses   int
	sent     uint64
	answered uint64
	lastAns  time.Time
	rttLast  time.Duration
	rttMin   time.Duration
	rttSum   time.Duration
	hist     [historyLen]int32 // ms; -1 missed
	histN    int               // samples written in total
}

// Manager keeps flows alive. All methods are safe for concurrent use.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	seed maphash.Seed

	mu      sync.Mutex
	flows   map[sipx.Flow]*entry
	byID    map[uint64]*entry
	dialogs map[string][]sipx.Flow // by Call-ID
	due     dueHeap
	nextID  uint64
	wake    chan struct{}

	// Counters.
	Pings, Answers, Missed, Changes, SendErrors atomic.Uint64
	rtt                                         Histogram
}

// New returns a Manager; run it with Run, or drive it with Step.
func New(cfg Config) *Manager {
	if cfg.Default.Method == "" {
		cfg.Default.Method = MethodOptions
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Lagged <= 0 {
		cfg.Lagged = DefaultLagged
	}
	if cfg.Misses <= 0 {
		cfg.Misses = DefaultMisses
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{
		cfg: cfg, log: cfg.Logger.With("component", "keepalive"), seed: maphash.MakeSeed(),
		flows: map[sipx.Flow]*entry{}, byID: map[uint64]*entry{}, dialogs: map[string][]sipx.Flow{},
		wake: make(chan struct{}, 1),
	}
}

// Track starts keeping flow f alive for a registration, with the flow's
// policy (a refresh of a flow kept already only updates the policy). The
// first ping comes within seconds (see First) unless restored is set:
// flows reloaded at start-up ping on their grid only, so a restart does
// not ping every phone at once.
func (m *Manager) Track(f sipx.Flow, pol Policy, restored bool) {
	if pol.Method == "" {
		pol.Method = m.cfg.Default.Method
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.flows[f]; e != nil {
		e.reg = true
		if pol.Interval > 0 {
			m.setPolicy(e, pol)
		}
		return
	}
	if pol.Interval <= 0 {
		return
	}
	m.add(f, pol, restored).reg = true
}

// Pin keeps flow f alive with policy pol for good, whatever holds it:
// for trunks, pinged to know their status.
func (m *Manager) Pin(f sipx.Flow, pol Policy) {
	if pol.Method == "" {
		pol.Method = m.cfg.Default.Method
	}
	if pol.Interval <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.flows[f]
	if e == nil {
		e = m.add(f, pol, false)
	} else {
		m.setPolicy(e, pol)
	}
	e.pinned = true
}

// held reports whether a dialog or a pin holds e (registrations are
// checked separately, at each ping).
func (e *entry) held() bool { return e.pinned || e.dialogs > 0 }

// DialogUp keeps the flows of dialog callID (its NATed sides) alive until
// DialogDown.
func (m *Manager) DialogUp(callID string, flows ...sipx.Flow) {
	var keep []sipx.Flow
	for _, f := range flows {
		pol, _ := m.policy(f)
		if pol.Interval > 0 && !slices.Contains(keep, f) {
			keep = append(keep, f)
		}
	}
	if len(keep) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.dialogs[callID]; dup {
		return // a retransmitted 2xx
	}
	m.dialogs[callID] = keep
	for _, f := range keep {
		e := m.flows[f]
		if e == nil {
			pol, _ := m.policy(f)
			e = m.add(f, pol, false)
		}
		e.dialogs++
	}
}

// DialogDown releases the flows of dialog callID.
func (m *Manager) DialogDown(callID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.dialogs[callID] {
		if e := m.flows[f]; e != nil {
			e.dialogs--
			if !e.held() && !e.reg {
				m.drop(e)
			}
		}
	}
	delete(m.dialogs, callID)
}

// policy is the flow's policy from Config.Policy, or the default.
func (m *Manager) policy(f sipx.Flow) (Policy, bool) {
	if m.cfg.Policy != nil {
		if p, ok := m.cfg.Policy(f); ok {
			if p.Method == "" {
				p.Method = m.cfg.Default.Method
			}
			return p, true
		}
	}
	return m.cfg.Default, false
}

// add creates the entry for f and schedules it. m.mu is held.
func (m *Manager) add(f sipx.Flow, pol Policy, restored bool) *entry {
	m.nextID++
	e := &entry{f: f, id: m.nextID, pol: pol, hidx: -1}
	if pol.Method == MethodCRLF {
		e.status = Unmonitored
	}
	e.phase = Phase(m.seed, f, pol.Interval)
	now := m.cfg.Now()
	if restored {
		e.next = Next(e.phase, pol.Interval, now)
	} else {
		e.next = First(e.phase, pol.Interval, now)
	}
	m.flows[f] = e
	m.byID[e.id] = e
	m.schedule(e)
	return e
}

// setPolicy changes e's policy; the next ping keeps its time. m.mu is held.
func (m *Manager) setPolicy(e *entry, pol Policy) {
	if pol == e.pol {
		return
	}
	e.pol = pol
	e.phase = Phase(m.seed, e.f, pol.Interval)
	if pol.Method == MethodCRLF {
		e.status = Unmonitored
	} else if e.status == Unmonitored {
		e.status = Unknown
	}
	if n := Next(e.phase, pol.Interval, m.cfg.Now()); n.Before(e.next) {
		e.next = n
		m.schedule(e)
	}
}

func (m *Manager) drop(e *entry) {
	if e.hidx >= 0 {
		heap.Remove(&m.due, e.hidx)
	}
	delete(m.flows, e.f)
	delete(m.byID, e.id)
}

// schedule (re)places e in the heap at its next event. m.mu is held.
func (m *Manager) schedule(e *entry) {
	e.due = e.next
	if !e.sentAt.IsZero() && e.deadline.Before(e.due) {
		e.due = e.deadline
	}
	if e.hidx >= 0 {
		heap.Fix(&m.due, e.hidx)
	} else {
		heap.Push(&m.due, e)
	}
	if e.hidx == 0 {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// ping is one ping to send, collected under the lock and sent after.
type ping struct {
	f      sipx.Flow
	method string
	branch string
}

// change is one status change to report after the lock is released.
type change struct {
	f        sipx.Flow
	old, new Status
	st       State
}

// Step sends every ping that is due, counts the misses whose time has
// come, and returns when it next has something to do (zero if nothing is
// scheduled). Run calls it; tests call it with an injected clock.
func (m *Manager) Step() time.Time {
	now := m.cfg.Now()
	var (
		out     []ping
		changes []change
		recheck []*entry
	)
	m.mu.Lock()
	for m.due.Len() > 0 && !m.due[0].due.After(now) {
		e := m.due[0]
		if !e.sentAt.IsZero() && !e.deadline.After(now) {
			if c, ok := m.miss(e, now); ok {
				changes = append(changes, c)
			}
		}
		if e.next.After(now) {
			m.schedule(e)
			continue
		}
		if e.reg {
			// Is a registration still using the flow, with which policy?
			// Asked outside the lock: Policy reads the location store.
			heap.Remove(&m.due, e.hidx)
			recheck = append(recheck, e)
			continue
		}
		out = append(out, m.send(e, now, &changes))
	}
	m.mu.Unlock()

	for _, e := range recheck {
		pol, ok := m.policy(e.f)
		m.mu.Lock()
		if m.flows[e.f] != e { // dropped meanwhile
			m.mu.Unlock()
			continue
		}
		if ok && pol.Interval > 0 {
			m.setPolicy(e, pol)
		}
		e.reg = ok
		switch {
		case !e.held() && (!ok || pol.Interval <= 0):
			m.drop(e)
		default:
			out = append(out, m.send(e, now, &changes))
		}
		m.mu.Unlock()
	}

	for _, p := range out {
		var b []byte
		if p.method == MethodCRLF {
			b = crlfPing
		} else {
			b = m.cfg.Build(p.f, p.branch)
		}
		m.Pings.Add(1)
		if err := m.cfg.Send(p.f, b); err != nil {
			m.SendErrors.Add(1)
		}
	}
	m.report(changes)

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.due.Len() == 0 {
		return time.Time{}
	}
	return m.due[0].due
}

var crlfPing = []byte("\r\n\r\n")

// send marks a ping sent on e and schedules the next. A ping still
// unanswered (a step ran late, or the timeout is as long as the interval)
// is counted missed first, not forgotten; its status change, if any, is
// appended to changes. m.mu is held.
func (m *Manager) send(e *entry, now time.Time, changes *[]change) ping {
	if !e.sentAt.IsZero() {
		if c, ok := m.miss(e, now); ok {
			*changes = append(*changes, c)
		}
	}
	e.sent++
	e.next = Next(e.phase, e.pol.Interval, now)
	p := ping{f: e.f, method: e.pol.Method}
	if e.pol.Method == MethodOptions {
		e.seq++
		e.sentAt = now
		to := m.cfg.Timeout
		if to > e.pol.Interval {
			to = e.pol.Interval
		}
		e.deadline = now.Add(to)
		p.branch = branchPrefix + strconv.FormatUint(e.id, 36) + "." + strconv.FormatUint(uint64(e.seq), 36)
	}
	m.schedule(e)
	return p
}

// miss records an unanswered ping. m.mu is held.
func (m *Manager) miss(e *entry, now time.Time) (change, bool) {
	e.sentAt = time.Time{}
	e.misses++
	e.record(-1)
	m.Missed.Add(1)
	if e.misses >= m.cfg.Misses && e.status != Unreachable {
		old := e.status
		e.status = Unreachable
		return change{e.f, old, Unreachable, m.state(e)}, true
	}
	return change{}, false
}

func (e *entry) record(ms int32) {
	e.hist[e.histN%historyLen] = ms
	e.histN++
}

// branchPrefix marks our pings' Via branches: the magic cookie, then "ka".
const branchPrefix = "z9hG4bKka."

// IsPing reports whether a Via branch is one of our pings'.
func IsPing(branch string) bool { return strings.HasPrefix(branch, branchPrefix) }

// Response takes the answer to a ping. It reports whether res was one (so
// nothing else should handle it). An answer counts only when it comes
// back over the flow the ping left on, for the outstanding ping.
func (m *Manager) Response(res *sipx.Response, from sipx.Flow) bool {
	v := res.Via()
	if v == nil {
		return false
	}
	branch, _ := v.Params.Get("branch")
	if !IsPing(branch) {
		return false
	}
	if res.StatusCode < 200 {
		return true
	}
	idStr, seqStr, ok := strings.Cut(branch[len(branchPrefix):], ".")
	if !ok {
		return true
	}
	id, err1 := strconv.ParseUint(idStr, 36, 64)
	seq, err2 := strconv.ParseUint(seqStr, 36, 32)
	if err1 != nil || err2 != nil {
		return true
	}
	now := m.cfg.Now()
	m.mu.Lock()
	e := m.byID[id]
	if e == nil || e.sentAt.IsZero() || uint32(seq) != e.seq || e.f.Remote != from.Remote || e.f.Transport != from.Transport {
		m.mu.Unlock()
		return true
	}
	rtt := now.Sub(e.sentAt)
	e.sentAt = time.Time{}
	e.answered++
	e.lastAns = now
	e.misses = 0
	e.rttLast = rtt
	if e.rttMin == 0 || rtt < e.rttMin {
		e.rttMin = rtt
	}
	e.rttSum += rtt
	e.record(int32(min(rtt.Milliseconds(), 1<<30)))
	old := e.status
	e.status = OK
	if rtt > m.cfg.Lagged {
		e.status = Lagged
	}
	var ch []change
	if old != e.status {
		ch = append(ch, change{e.f, old, e.status, m.state(e)})
	}
	m.schedule(e)
	m.mu.Unlock()
	m.Answers.Add(1)
	m.rtt.Observe(rtt)
	m.report(ch)
	return true
}

// report logs status changes and passes them on.
func (m *Manager) report(cs []change) {
	for _, c := range cs {
		m.Changes.Add(1)
		switch {
		case c.new == Unreachable:
			m.log.Warn("peer unreachable", "flow", c.f, "was", c.old, "missed", c.st.Misses)
		case c.old == Unreachable:
			m.log.Info("peer reachable again", "flow", c.f, "status", c.new, "rtt", c.st.RTT)
		case c.old == Unknown:
			m.log.Debug("peer status", "flow", c.f, "status", c.new, "rtt", c.st.RTT)
		default:
			m.log.Info("peer status changed", "flow", c.f, "status", c.new, "was", c.old, "rtt", c.st.RTT)
		}
		if m.cfg.OnStatus != nil {
			m.cfg.OnStatus(c.f, c.old, c.new, c.st)
		}
	}
}

// State returns what is known about flow f.
func (m *Manager) State(f sipx.Flow) (State, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.flows[f]
	if e == nil {
		return State{}, false
	}
	return m.state(e), true
}

func (m *Manager) state(e *entry) State {
	st := State{
		Flow: e.f, Status: e.status, Method: e.pol.Method, Interval: e.pol.Interval,
		Registered: e.reg, Dialogs: e.dialogs, RTT: e.rttLast, MinRTT: e.rttMin,
		Misses: e.misses, Sent: e.sent, Answered: e.answered, LastAnswer: e.lastAns, NextPing: e.next,
	}
	if e.answered > 0 {
		st.AvgRTT = e.rttSum / time.Duration(e.answered)
	}
	n := min(e.histN, historyLen)
	st.History = make([]time.Duration, 0, n)
	for i := e.histN - n; i < e.histN; i++ {
		ms := e.hist[i%historyLen]
		d := time.Duration(ms) * time.Millisecond
		if ms < 0 {
			d = -1
		}
		st.History = append(st.History, d)
	}
	return st
}

// Len returns the number of flows kept alive.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.flows)
}

// Counts returns the number of flows per status.
func (m *Manager) Counts() map[Status]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[Status]int{}
	for _, e := range m.flows {
		out[e.status]++
	}
	return out
}

// RTT returns the histogram of answered pings' round-trip times.
func (m *Manager) RTT() *Histogram { return &m.rtt }

// Run calls Step whenever something is due, until stop is closed.
func (m *Manager) Run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := m.Step()
		d := time.Second
		if !next.IsZero() {
			d = min(max(time.Until(next), 0), time.Second)
		}
		t.Reset(d)
		select {
		case <-stop:
			return
		case <-m.wake:
			if !t.Stop() {
				<-t.C
			}
		case <-t.C:
		}
	}
}

// OptionsPing builds an out-of-dialog OPTIONS for flow f with Via
// branch, our Via (host, port) and domain in From.
func OptionsPing(f sipx.Flow, branch, host string, port int, domain string) []byte {
	tag := sipx.NewTag()
	ruri := "sip:" + sipx.HostPort(f.Remote.Addr().String(), int(f.Remote.Port()))
	tr := "UDP"
	if f.Transport == sipx.TCP {
		tr = "TCP"
	}
	return []byte("OPTIONS " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + tr + " " + sipx.HostPort(host, port) + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:keepalive@" + domain + ">;tag=" + tag + "\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: ka-" + tag + "@" + domain + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// dueHeap orders entries by due time.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.hidx = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.hidx = -1
	return e
}
