package calltrace

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// Config bounds what a Recorder keeps. The zero value is useful.
type Config struct {
	// Calls is the number of traces kept. If zero, 100; if negative,
	// recording is off and Record does nothing.
	Calls int
	// MaxCallBytes bounds the message text stored per call. If zero, 64 KiB.
	MaxCallBytes int
	// MaxMessages bounds the messages stored per call. If zero, 200.
	MaxMessages int
	// MaxMessageBytes bounds one stored message; longer ones are truncated.
	// If zero, 8 KiB. It is never more than MaxCallBytes.
	MaxMessageBytes int
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Call states, as in Summary.State.
const (
	StateRinging   = "ringing"   // initial INVITE seen, no final response yet
	StateAnswered  = "answered"  // a 2xx to the INVITE was sent to the caller
	StateEnded     = "ended"     // a BYE after the answer
	StateFailed    = "failed"    // a final response >= 300 other than 487
	StateCancelled = "cancelled" // CANCEL from the caller, or 487
)

// Summary describes one traced call.
type Summary struct {
	CallID       string    `json:"call_id"`
	From         string    `json:"from"` // URI of the initial INVITE's From
	To           string    `json:"to"`   // URI of the initial INVITE's To
	State        string    `json:"state"`
	Status       int       `json:"status"` // final response to the INVITE, 0 if none yet
	Started      time.Time `json:"started"`
	Answered     time.Time `json:"answered,omitzero"`
	Ended        time.Time `json:"ended,omitzero"`
	MessageCount int       `json:"message_count"` // stored
	Dropped      int       `json:"dropped"`       // seen but not stored (bound reached)
	Bytes        int       `json:"bytes"`         // stored text bytes
}

// Message is one stored SIP message.
type Message struct {
	Seq       int       `json:"seq"` // 0-based index in the trace
	Time      time.Time `json:"time"`
	OffsetMS  float64   `json:"offset_ms"` // since the trace started
	In        bool      `json:"in"`        // received by sipedge
	Transport string    `json:"transport"`
	Local     string    `json:"local"`            // sipedge's socket ip:port
	Remote    string    `json:"remote"`           // the peer as observed (a NAT's public side)
	Method    string    `json:"method"`           // request method, or the CSeq method of a response
	Status    int       `json:"status,omitempty"` // response code; 0 for requests
	Summary   string    `json:"summary"`          // "INVITE sip:bob@example.com" or "180 Ringing"
	Size      int       `json:"size"`             // bytes on the wire
	Text      string    `json:"text"`             // the message (redacted; maybe truncated)
	Truncated bool      `json:"truncated,omitempty"`
}

// Trace is one call's summary and stored messages.
type Trace struct {
	Summary
	Messages []Message `json:"messages"`
}

// Recorder keeps the traces of recent calls. It is safe for concurrent use.
type Recorder struct {
	cfg   Config
	bytes atomic.Int64 // stored text bytes of all calls

	mu    sync.RWMutex
	calls map[string]*call
	order []*call // oldest first
}

// call is one trace. Its fields are guarded by mu, except the ones set
// before it is published.
type call struct {
	id, from, to string
	started      time.Time
	inviteCSeq   uint64

	mu       sync.Mutex
	gone     bool // evicted: store nothing more
	full     bool // a bound was reached: store nothing more
	state    string
	status   int
	answered time.Time
	ended    time.Time
	msgs     []entry
	bytes    int
	dropped  int
	attached any
}

// entry is a stored message, kept compact: the rest is derived in Get.
type entry struct {
	at        time.Time
	flow      sipx.Flow
	in        bool
	truncated bool
	size      int
	text      string
}

// New returns a Recorder bounded by cfg.
func New(cfg Config) *Recorder {
	if cfg.Calls == 0 {
		cfg.Calls = 100
	}
	cfg.MaxCallBytes = orDefault(cfg.MaxCallBytes, 64<<10)
	cfg.MaxMessages = orDefault(cfg.MaxMessages, 200)
	cfg.MaxMessageBytes = min(orDefault(cfg.MaxMessageBytes, 8<<10), cfg.MaxCallBytes)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Recorder{cfg: cfg, calls: make(map[string]*call)}
}

// Record adds a message read (in) or written by sipedge on flow f to the
// trace of its call, or starts a trace for an initial INVITE received. It
// does not retain b. It fits sipx.Config.Trace.
func (r *Recorder) Record(in bool, f sipx.Flow, b []byte) {
	if r.cfg.Calls < 0 {
		return
	}
	id := callID(b)
	if len(id) == 0 {
		return
	}
	r.mu.RLock()
	c := r.calls[string(id)]
	r.mu.RUnlock()
	if c == nil && (!in || !bytes.HasPrefix(b, []byte("INVITE "))) {
		return // the common case: not a traced call
	}
	s, now := string(b), r.cfg.Now()
	m := parse(s)
	if c == nil {
		if c = r.start(string(id), m, now); c == nil {
			return
		}
	}
	c.add(r, in, f, s, m, now)
}

// start begins a trace for an initial INVITE (no To tag). It returns nil
// for any other message.
func (r *Recorder) start(id string, m msg, now time.Time) *call {
	if !m.request || m.method != "INVITE" || m.hasTag {
		return nil
	}
	c := &call{id: id, from: m.from, to: m.to, started: now,
		inviteCSeq: m.cseqNum, state: StateRinging}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.calls[id]; old != nil {
		return old // another goroutine started it
	}
	if len(r.order) >= r.cfg.Calls {
		r.evict()
	}
	r.calls[id] = c
	r.order = append(r.order, c)
	return c
}

// evict drops the oldest trace of a call that is over, else the oldest
// trace. r.mu is held.
func (r *Recorder) evict() {
	victim := 0
	for i, c := range r.order {
		c.mu.Lock()
		over := c.state != StateRinging && c.state != StateAnswered
		c.mu.Unlock()
		if over {
			victim = i
			break
		}
	}
	c := r.order[victim]
	r.order = append(r.order[:victim], r.order[victim+1:]...)
	delete(r.calls, c.id)
	c.mu.Lock()
	c.gone = true
	r.bytes.Add(-int64(c.bytes))
	c.mu.Unlock()
}

// add updates the call state with m and stores s if the bounds allow.
func (c *call) add(r *Recorder, in bool, f sipx.Flow, s string, m msg, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		return
	}
	c.track(in, m, now)
	if c.full || len(c.msgs) >= r.cfg.MaxMessages {
		c.full = true
		c.dropped++
		return
	}
	text, truncated := redact(s), false
	if len(text) > r.cfg.MaxMessageBytes {
		text, truncated = strings.Clone(text[:r.cfg.MaxMessageBytes]), true // do not keep the rest
	}
	if c.bytes+len(text) > r.cfg.MaxCallBytes {
		c.full = true
		c.dropped++
		return
	}
	c.msgs = append(c.msgs, entry{at: now, flow: f, in: in, truncated: truncated, size: len(s), text: text})
	c.bytes += len(text)
	r.bytes.Add(int64(len(text)))
}

// track moves the call state on. The final response that counts is the
// one sipedge sends to the caller (the proxy's choice), so responses of
// losing fork branches, like their 487 after our CANCEL, change nothing.
func (c *call) track(in bool, m msg, now time.Time) {
	switch {
	case m.request && m.method == "INVITE" && in && !m.hasTag && m.cseqNum > c.inviteCSeq:
		// The caller tries again on the same Call-ID, as with credentials
		// after a 407: the new INVITE's final response is the one that counts.
		if c.status >= 300 {
			c.inviteCSeq, c.status, c.state = m.cseqNum, 0, StateRinging
		}
	case m.request && m.method == "CANCEL" && in:
		if c.status == 0 {
			c.state = StateCancelled
		}
	case m.request && m.method == "BYE":
		if c.state == StateAnswered {
			c.state, c.ended = StateEnded, now
		}
	case !m.request && !in && m.status >= 200 && m.method == "INVITE" && m.cseqNum == c.inviteCSeq:
		if c.status != 0 {
			return // the first final response decides
		}
		c.status = m.status
		switch {
		case m.status < 300:
			c.state, c.answered = StateAnswered, now
		case m.status == 487:
			c.state = StateCancelled
		default:
			c.state = StateFailed
		}
	}
}

// summary returns c's summary. c.mu is held.
func (c *call) summary() Summary {
	return Summary{CallID: c.id, From: c.from, To: c.to, State: c.state, Status: c.status,
		Started: c.started, Answered: c.answered, Ended: c.ended,
		MessageCount: len(c.msgs), Dropped: c.dropped, Bytes: c.bytes}
}

// List returns the summaries of the traced calls, newest first.
func (r *Recorder) List() []Summary {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Summary, 0, len(r.order))
	for i := len(r.order) - 1; i >= 0; i-- {
		c := r.order[i]
		c.mu.Lock()
		out = append(out, c.summary())
		c.mu.Unlock()
	}
	return out
}

// Get returns a copy of the trace of callID.
func (r *Recorder) Get(callID string) (Trace, bool) {
	c := r.lookup(callID)
	if c == nil {
		return Trace{}, false
	}
	c.mu.Lock()
	t := Trace{Summary: c.summary(), Messages: make([]Message, 0, len(c.msgs))}
	msgs := c.msgs[:len(c.msgs):len(c.msgs)] // entries are never changed once stored
	c.mu.Unlock()
	for i, e := range msgs {
		m := parse(e.text)
		msg := Message{Seq: i, Time: e.at, OffsetMS: float64(e.at.Sub(t.Started)) / float64(time.Millisecond),
			In: e.in, Transport: e.flow.Transport, Local: e.flow.Local.String(), Remote: e.flow.Remote.String(),
			Method: m.method, Status: m.status, Size: e.size, Text: e.text, Truncated: e.truncated}
		if m.request {
			msg.Summary = m.method + " " + m.ruri
		} else if m.status != 0 {
			msg.Summary = strconv.Itoa(m.status) + " " + m.reason
		}
		t.Messages = append(t.Messages, msg)
	}
	return t, true
}

// Summary returns one call's summary without its messages (Get parses
// every message).
func (r *Recorder) Summary(callID string) (Summary, bool) {
	c := r.lookup(callID)
	if c == nil {
		return Summary{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.summary(), true
}

// Bytes returns the message text stored for all calls.
func (r *Recorder) Bytes() int { return int(r.bytes.Load()) }

// Attach stores v with the trace of callID (the server puts the call's
// final media statistics there), to be evicted with it. It does nothing
// if the call is not traced.
func (r *Recorder) Attach(callID string, v any) {
	if c := r.lookup(callID); c != nil {
		c.mu.Lock()
		c.attached = v
		c.mu.Unlock()
	}
}

// Attached returns what was attached to the trace of callID.
func (r *Recorder) Attached(callID string) (any, bool) {
	c := r.lookup(callID)
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attached, c.attached != nil
}

func (r *Recorder) lookup(callID string) *call {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.calls[callID]
}
