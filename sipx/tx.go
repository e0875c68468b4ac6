package sipx

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ErrTxDone is returned when responding on a transaction that already sent
// its final response.
var ErrTxDone = errors.New("sipx: transaction already has a final response")

const txShards = 64

// txTable is a sharded map of transactions by key.
type txTable[T interface{ stop() }] struct {
	shards [txShards]struct {
		mu sync.Mutex
		m  map[string]T
	}
}

func (t *txTable[T]) init() {
	for i := range t.shards {
		t.shards[i].m = map[string]T{}
	}
}

func (t *txTable[T]) shard(key string) *struct {
	mu sync.Mutex
	m  map[string]T
} {
	return &t.shards[hashKey(key)%txShards]
}

func (t *txTable[T]) get(key string) (T, bool) {
	s := t.shard(key)
	s.mu.Lock()
	v, ok := s.m[key]
	s.mu.Unlock()
	return v, ok
}

// putIfAbsent stores v unless key exists; it returns the stored value and
// whether v was stored.
func (t *txTable[T]) putIfAbsent(key string, v T) (T, bool) {
	s := t.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[key]; ok {
		return old, false
	}
	s.m[key] = v
	return v, true
}

func (t *txTable[T]) del(key string, v T, same func(a, b T) bool) {
	s := t.shard(key)
	s.mu.Lock()
	if cur, ok := s.m[key]; ok && same(cur, v) {
		delete(s.m, key)
	}
	s.mu.Unlock()
}

func (t *txTable[T]) len() int {
	n := 0
	for i := range t.shards {
		t.shards[i].mu.Lock()
		n += len(t.shards[i].m)
		t.shards[i].mu.Unlock()
	}
	return n
}

func (t *txTable[T]) stopAll() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		vs := make([]T, 0, len(s.m))
		for _, v := range s.m {
			vs = append(vs, v)
		}
		s.m = map[string]T{}
		s.mu.Unlock()
		for _, v := range vs {
			v.stop()
		}
	}
}

// Transactions returns the number of live server and client transactions.
func (s *Stack) Transactions() (server, client int) { return s.servers.len(), s.clients.len() }

// serverKey identifies a server transaction (RFC 3261 §17.2.3). ACK maps to
// its INVITE; CANCEL is its own transaction.
func serverKey(r *Request) string {
	method := string(r.Method)
	if r.Method == ACK {
		method = string(INVITE)
	}
	v := r.Via()
	branch, _ := v.Params.Get("branch")
	if strings.HasPrefix(branch, MagicCookie) {
		return branch + "|" + v.Host + ":" + strconv.Itoa(v.Port) + "|" + method
	}
	// RFC 2543 peers: Request-URI, tags, Call-ID, CSeq number, top Via.
	ft, _ := r.From().Params.Get("tag")
	return "2543|" + r.CallID().Value() + "|" + ft + "|" + strconv.FormatUint(uint64(r.CSeq().SeqNo), 10) + "|" + v.Host + ":" + strconv.Itoa(v.Port) + "|" + method
}

func clientKey(branch string, method RequestMethod) string {
	return branch + "|" + string(method)
}

// handleRequest matches a request to a server transaction.
func (s *Stack) handleRequest(r *Request, f Flow) {
	key := serverKey(r)
	switch r.Method {
	case ACK:
		if tx, ok := s.servers.get(key); ok && tx.ack() {
			return
		}
		s.handler.Request(r, f) // ACK for 2xx: forwarded statelessly
		return
	case CANCEL:
		ikey := key[:len(key)-len(CANCEL)] + string(INVITE)
		if tx, ok := s.servers.get(ikey); ok {
			_ = s.Send(NewResponse(r, 200, "OK"), f)
			if tx.markCancelled() {
				s.handler.Cancel(tx, r)
			}
			return
		}
	}
	if tx, ok := s.servers.get(key); ok {
		s.Stats.Retransmissions.Add(1)
		tx.retransmitted()
		return
	}
	s.handler.Request(r, f)
}

// Server transaction states.
const (
	stProceeding = iota
	stCompleted
	stConfirmed
	stAccepted
	stTerminated
)

// ServerTx is a server transaction (RFC 3261 §17.2, RFC 6026).
type ServerTx struct {
	s      *Stack
	key    string
	Req    *Request
	Flow   Flow
	invite bool

	mu        sync.Mutex
	state     int
	last      []byte
	lastCode  int
	cancelled bool
	localTag  string
	gInt      time.Duration
	timerG    *time.Timer
	timerEnd  *time.Timer
}

// NewServerTx creates the server transaction for r, which arrived on f. If
// one exists already (a race), that one is returned with ok=false.
func (s *Stack) NewServerTx(r *Request, f Flow) (tx *ServerTx, ok bool) {
	tx = &ServerTx{s: s, key: serverKey(r), Req: r, Flow: f, invite: r.Method == INVITE}
	got, stored := s.servers.putIfAbsent(tx.key, tx)
	return got, stored
}

// Cancelled reports whether a CANCEL matched this transaction.
func (tx *ServerTx) Cancelled() bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.cancelled
}

func (tx *ServerTx) markCancelled() bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.cancelled || tx.state != stProceeding {
		return false
	}
	tx.cancelled = true
	return true
}

// Final reports whether a final response was sent.
func (tx *ServerTx) Final() bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.state != stProceeding
}

// Respond sends res on the transaction's flow and advances the state.
func (tx *ServerTx) Respond(res *Response) error {
	raw := Marshal(res)
	code := res.StatusCode
	tx.mu.Lock()
	if tx.state != stProceeding {
		tx.mu.Unlock()
		return ErrTxDone
	}
	if code >= 200 {
		tx.s.Stats.Server.add(string(tx.Req.Method), code)
	}
	tx.last, tx.lastCode = raw, code
	t1 := tx.s.cfg.T1
	udp := tx.Flow.Transport == UDP
	switch {
	case code < 200:
	case tx.invite && code < 300:
		// RFC 6026 Accepted: absorb INVITE retransmissions for a while
		// (Timer L); 2xx retransmissions come from the UAS through the
		// proxy, so the response bytes need not be kept.
		tx.state = stAccepted
		tx.last = nil
		tx.timerEnd = time.AfterFunc(tx.s.cfg.AcceptedLinger, tx.terminate)
	case tx.invite:
		tx.state = stCompleted
		if udp {
			tx.gInt = t1
			tx.timerG = time.AfterFunc(t1, tx.fireG)
		}
		tx.timerEnd = time.AfterFunc(64*t1, tx.terminate) // Timer H
	default:
		tx.state = stCompleted
		if udp {
			tx.timerEnd = time.AfterFunc(64*t1, tx.terminate) // Timer J
		} else {
			tx.state = stTerminated
		}
	}
	term := tx.state == stTerminated
	tx.mu.Unlock()
	err := tx.s.SendRaw(raw, tx.Flow)
	if term {
		tx.terminate()
	}
	return err
}

// RespondCode builds and sends a response with the given code and reason;
// every locally generated response of one transaction has the same To tag.
func (tx *ServerTx) RespondCode(code int, reason string) error {
	res := NewResponse(tx.Req, code, reason)
	if to := res.To(); to != nil && code > 100 {
		if _, had := tx.Req.To().Params.Get("tag"); !had {
			to.Params.Add("tag", tx.tag())
		}
	}
	return tx.Respond(res)
}

// tag returns the transaction's own To tag.
func (tx *ServerTx) tag() string {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.localTag == "" {
		tx.localTag = NewTag()
	}
	return tx.localTag
}

func (tx *ServerTx) retransmitted() {
	tx.mu.Lock()
	last := tx.last
	st := tx.state
	tx.mu.Unlock()
	if last != nil && st != stAccepted && st != stConfirmed {
		_ = tx.s.SendRaw(last, tx.Flow)
	}
}

func (tx *ServerTx) fireG() {
	tx.mu.Lock()
	if tx.state != stCompleted {
		tx.mu.Unlock()
		return
	}
	last := tx.last
	tx.gInt *= 2
	if tx.gInt > tx.s.cfg.T2 {
		tx.gInt = tx.s.cfg.T2
	}
	tx.timerG = time.AfterFunc(tx.gInt, tx.fireG)
	tx.mu.Unlock()
	tx.s.Stats.Retransmissions.Add(1)
	_ = tx.s.SendRaw(last, tx.Flow)
}

// ack absorbs the ACK for a non-2xx final response; it returns false for
// an ACK that must go to the TU (an ACK for a 2xx that reuses the INVITE's
// branch, RFC 6026 Accepted state).
func (tx *ServerTx) ack() bool {
	tx.mu.Lock()
	switch tx.state {
	case stCompleted:
	case stConfirmed:
		tx.mu.Unlock()
		return true // retransmitted ACK
	default:
		tx.mu.Unlock()
		return false
	}
	tx.state = stConfirmed
	if tx.timerG != nil {
		tx.timerG.Stop()
	}
	if tx.timerEnd != nil {
		tx.timerEnd.Stop()
	}
	d := tx.s.cfg.T4
	if tx.Flow.Transport != UDP {
		d = 0
	}
	tx.timerEnd = time.AfterFunc(d, tx.terminate) // Timer I
	tx.mu.Unlock()
	return true
}

func (tx *ServerTx) terminate() {
	tx.stop()
	tx.s.servers.del(tx.key, tx, func(a, b *ServerTx) bool { return a == b })
}

func (tx *ServerTx) stop() {
	tx.mu.Lock()
	tx.state = stTerminated
	if tx.timerG != nil {
		tx.timerG.Stop()
	}
	if tx.timerEnd != nil {
		tx.timerEnd.Stop()
	}
	tx.mu.Unlock()
}

// Client transaction states.
const (
	ctCalling = iota
	ctProceeding
	ctCompleted
	ctAccepted
	ctTerminated
)

// ClientTx is a client transaction (RFC 3261 §17.1, RFC 6026).
type ClientTx struct {
	s      *Stack
	key    string
	Req    *Request
	Flow   Flow
	invite bool
	raw    []byte
	onResp func(*ClientTx, *Response)

	mu            sync.Mutex
	state         int
	aInt          time.Duration
	timerA        *time.Timer
	timerB        *time.Timer
	timerEnd      *time.Timer
	ackRaw        []byte
	cancelPending bool
	cancelSent    bool
	gotFinal      bool
}

// NewClientTx sends req on flow f and returns its client transaction;
// responses (and a synthetic 408 on timeout or 503 on transport error) are
// delivered to onResp. The request must carry our Via on top with a unique
// branch. onResp may be called from the reading goroutine or a timer.
func (s *Stack) NewClientTx(req *Request, f Flow, onResp func(*ClientTx, *Response)) (*ClientTx, error) {
	tx := &ClientTx{s: s, Req: req, Flow: f, invite: req.Method == INVITE, onResp: onResp}
	tx.key = clientKey(Branch(req), req.Method)
	raw := Marshal(req)
	tx.raw = raw
	if _, stored := s.clients.putIfAbsent(tx.key, tx); !stored {
		return nil, errors.New("sipx: duplicate client transaction branch")
	}
	t1 := s.cfg.T1
	tx.mu.Lock()
	if f.Transport == UDP {
		tx.aInt = t1
		tx.timerA = time.AfterFunc(t1, tx.fireA)
	}
	tx.timerB = time.AfterFunc(64*t1, tx.fireB)
	tx.mu.Unlock()
	if err := s.SendRaw(raw, f); err != nil {
		tx.fail(503, "Service Unavailable")
		return tx, err
	}
	return tx, nil
}

func (tx *ClientTx) fireA() {
	tx.mu.Lock()
	if !(tx.state == ctCalling || (!tx.invite && tx.state == ctProceeding)) {
		tx.mu.Unlock()
		return
	}
	tx.aInt *= 2
	if !tx.invite && (tx.aInt > tx.s.cfg.T2 || tx.state == ctProceeding) {
		tx.aInt = tx.s.cfg.T2
	}
	tx.timerA = time.AfterFunc(tx.aInt, tx.fireA)
	raw := tx.raw
	tx.mu.Unlock()
	if raw == nil {
		return
	}
	tx.s.Stats.Retransmissions.Add(1)
	_ = tx.s.SendRaw(raw, tx.Flow)
}

func (tx *ClientTx) fireB() {
	tx.mu.Lock()
	// INVITE: Timer B only matters in Calling; after a provisional the TU's
	// own timer (proxy Timer C) ends the branch. Non-INVITE: Timer F.
	if tx.state == ctCalling || (!tx.invite && tx.state == ctProceeding) {
		tx.mu.Unlock()
		tx.s.Stats.TxTimeouts.Add(1)
		tx.fail(408, "Request Timeout")
		return
	}
	tx.mu.Unlock()
}

// fail delivers a synthetic final response and terminates.
func (tx *ClientTx) fail(code int, reason string) {
	tx.mu.Lock()
	if tx.gotFinal {
		tx.mu.Unlock()
		return
	}
	// Terminated under the same lock, so a response racing the timeout
	// cannot be delivered as a second final.
	tx.gotFinal = true
	tx.state = ctTerminated
	tx.stopTimers()
	tx.mu.Unlock()
	res := NewResponse(tx.Req, code, reason)
	res.SetSource("")
	tx.terminate()
	tx.onResp(tx, res)
}

// IsSynthetic reports whether a response was generated locally (timeout,
// transport error) rather than received.
func IsSynthetic(res *Response) bool { return res.Source() == "" }

func (s *Stack) handleResponse(res *Response, f Flow) {
	v := res.Via()
	branch, _ := v.Params.Get("branch")
	tx, ok := s.clients.get(clientKey(branch, res.CSeq().MethodName))
	if !ok {
		s.handler.Response(res, f)
		return
	}
	tx.receive(res)
}

func (tx *ClientTx) receive(res *Response) {
	code := res.StatusCode
	var deliver bool
	var sendCancel bool
	var resendAck []byte
	tx.mu.Lock()
	hadFinal := tx.gotFinal
	switch {
	case code < 200:
		if tx.state == ctCalling || tx.state == ctProceeding {
			if tx.state == ctCalling && tx.invite && tx.timerA != nil {
				tx.timerA.Stop()
			}
			tx.state = ctProceeding
			deliver = true
			if tx.cancelPending && !tx.cancelSent {
				tx.cancelSent = true
				sendCancel = true
			}
		}
	case tx.invite && code < 300:
		switch tx.state {
		case ctCalling, ctProceeding:
			tx.stopTimers()
			tx.state = ctAccepted
			tx.gotFinal = true
			tx.timerEnd = time.AfterFunc(tx.s.cfg.AcceptedLinger, tx.terminate) // Timer M
			tx.raw = nil                                                        // never retransmitted again
			deliver = true
		case ctAccepted:
			deliver = true // 2xx retransmission: the proxy forwards it
		}
	case tx.invite:
		switch tx.state {
		case ctCalling, ctProceeding:
			tx.stopTimers()
			tx.state = ctCompleted
			tx.gotFinal = true
			tx.ackRaw = Marshal(tx.ackFor(res))
			resendAck = tx.ackRaw
			tx.raw = nil // only the ACK is resent from now on
			d := 32 * time.Second
			if tx.Flow.Transport != UDP {
				d = 0
			}
			tx.timerEnd = time.AfterFunc(d, tx.terminate) // Timer D
			deliver = true
		case ctCompleted:
			resendAck = tx.ackRaw
		}
	default:
		if tx.state == ctCalling || tx.state == ctProceeding {
			tx.stopTimers()
			tx.state = ctCompleted
			tx.gotFinal = true
			d := tx.s.cfg.T4
			if tx.Flow.Transport != UDP {
				d = 0
			}
			tx.timerEnd = time.AfterFunc(d, tx.terminate) // Timer K
			tx.raw = nil
			deliver = true
		}
	}
	first := !hadFinal && tx.gotFinal
	tx.mu.Unlock()
	if first {
		tx.s.Stats.Client.add(string(tx.Req.Method), code)
	}
	if resendAck != nil {
		_ = tx.s.SendRaw(resendAck, tx.Flow)
	}
	if sendCancel {
		tx.sendCancel()
	}
	if deliver {
		tx.onResp(tx, res)
	}
}

func (tx *ClientTx) stopTimers() {
	if tx.timerA != nil {
		tx.timerA.Stop()
	}
	if tx.timerB != nil {
		tx.timerB.Stop()
	}
}

// ackFor builds the hop-by-hop ACK for a non-2xx final response (RFC 3261
// §17.1.1.3): To (with its tag) comes from the response.
func (tx *ClientTx) ackFor(res *Response) *Request {
	to := sip.Header(tx.Req.To())
	if res.To() != nil {
		to = res.To()
	}
	return tx.hopRequest(ACK, to)
}

// hopRequest builds a request that belongs to this transaction's hop (ACK
// for a non-2xx, CANCEL, RFC 3261 §9.1): same Request-URI, top Via, Route
// set, From, Call-ID and CSeq number as the request, with the given To.
func (tx *ClientTx) hopRequest(method RequestMethod, to sip.Header) *Request {
	r := tx.Req
	m := sip.NewRequest(method, *r.Recipient.Clone())
	m.SipVersion = r.SipVersion
	if v := r.Via(); v != nil {
		m.AppendHeader(v.Clone())
	}
	for _, h := range r.GetHeaders("Route") {
		m.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	m.AppendHeader(&mf)
	m.AppendHeader(sip.HeaderClone(r.From()))
	m.AppendHeader(sip.HeaderClone(to))
	m.AppendHeader(sip.HeaderClone(r.CallID()))
	m.AppendHeader(&sip.CSeqHeader{SeqNo: r.CSeq().SeqNo, MethodName: method})
	m.SetBody(nil)
	return m
}

// Cancel cancels a pending INVITE (RFC 3261 §9.1): at once if a provisional
// arrived, else when one arrives; nothing after a final response.
func (tx *ClientTx) Cancel() {
	if !tx.invite {
		return
	}
	tx.mu.Lock()
	var send bool
	switch tx.state {
	case ctCalling:
		tx.cancelPending = true
	case ctProceeding:
		if !tx.cancelSent {
			tx.cancelSent = true
			send = true
		}
	}
	tx.mu.Unlock()
	if send {
		tx.sendCancel()
	}
}

func (tx *ClientTx) sendCancel() {
	c := tx.hopRequest(CANCEL, tx.Req.To())
	_, _ = tx.s.NewClientTx(c, tx.Flow, func(*ClientTx, *Response) {})
}

// Terminate ends the transaction without a response (e.g. the branch was
// abandoned).
func (tx *ClientTx) Terminate() { tx.terminate() }

func (tx *ClientTx) terminate() {
	tx.stop()
	tx.s.clients.del(tx.key, tx, func(a, b *ClientTx) bool { return a == b })
}

func (tx *ClientTx) stop() {
	tx.mu.Lock()
	tx.state = ctTerminated
	tx.stopTimers()
	if tx.timerEnd != nil {
		tx.timerEnd.Stop()
	}
	tx.mu.Unlock()
}
