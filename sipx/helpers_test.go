package sipx

// Shared test helpers: a recording Handler, a stack started on loopback
// sockets, a raw UDP "peer" and builders for raw SIP text.

import (
	"bufio"

	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Recording handler

type gotReq struct {
	Req  *Request
	Flow Flow
}

type gotRes struct {
	Res  *Response
	Flow Flow
}

type gotCancel struct {
	Tx     *ServerTx
	Cancel *Request
}

// recHandler records every Handler call and optionally acts on requests.
// Its callbacks run in the stack's reading goroutine.
type recHandler struct {
	st *Stack // set by startStack

	onRequest func(st *Stack, r *Request, f Flow)
	onCancel  func(tx *ServerTx, c *Request)

	reqs    chan gotReq
	ress    chan gotRes
	cancels chan gotCancel

	nReq, nRes, nCancel atomic.Int64
}

func newRecHandler() *recHandler {
	return &recHandler{
		reqs:    make(chan gotReq, 1024),
		ress:    make(chan gotRes, 1024),
		cancels: make(chan gotCancel, 1024),
	}
}

func (h *recHandler) Request(r *Request, f Flow) {
	h.nReq.Add(1)
	h.reqs <- gotReq{r, f}
	if h.onRequest != nil {
		h.onRequest(h.st, r, f)
	}
}

func (h *recHandler) Response(r *Response, f Flow) {
	h.nRes.Add(1)
	h.ress <- gotRes{r, f}
}

func (h *recHandler) Cancel(tx *ServerTx, c *Request) {
	h.nCancel.Add(1)
	h.cancels <- gotCancel{tx, c}
	if h.onCancel != nil {
		h.onCancel(tx, c)
	}
}

func (h *recHandler) waitReq(t *testing.T, d time.Duration) gotReq {
	t.Helper()
	select {
	case g := <-h.reqs:
		return g
	case <-time.After(d):
		t.Fatalf("handler: no Request within %v", d)
	}
	return gotReq{}
}

func (h *recHandler) waitCancel(t *testing.T, d time.Duration) gotCancel {
	t.Helper()
	select {
	case g := <-h.cancels:
		return g
	case <-time.After(d):
		t.Fatalf("handler: no Cancel within %v", d)
	}
	return gotCancel{}
}

// noReq fails if Handler.Request is called within d.
func (h *recHandler) noReq(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case g := <-h.reqs:
		t.Fatalf("handler: unexpected Request %s %s", g.Req.Method, Branch(g.Req))
	case <-time.After(d):
	}
}

// ---------------------------------------------------------------------------
// Stack on loopback

var discardLogger = slog.New(slog.DiscardHandler)

type testStack struct {
	*Stack
	h       *recHandler
	udp     netip.AddrPort // the stack's UDP socket
	tcp     netip.AddrPort // the stack's TCP listener, if started
	allowed atomic.Int64   // calls of cfg.Allow
}

// startStack starts a Stack with one UDP socket (and a TCP listener if
// withTCP) on 127.0.0.1 and waits until the serving loops run. Close is
// registered as cleanup.
func startStack(t testing.TB, cfg Config, h *recHandler, withTCP bool) *testStack {
	t.Helper()
	if h == nil {
		h = newRecHandler()
	}
	return startStackH(t, cfg, h, withTCP)
}

// stackUser is a Handler that needs the Stack; setStack runs before any
// serving goroutine starts.
type stackUser interface{ setStack(*Stack) }

func (h *recHandler) setStack(s *Stack) { h.st = s }

// startStackH is startStack with any Handler.
func startStackH(t testing.TB, cfg Config, handler Handler, withTCP bool) *testStack {
	t.Helper()
	ts := &testStack{}
	ts.h, _ = handler.(*recHandler)
	if cfg.Logger == nil {
		cfg.Logger = discardLogger
	}
	userAllow := cfg.Allow
	cfg.Allow = func(a netip.Addr) bool {
		ts.allowed.Add(1)
		if userAllow != nil {
			return userAllow(a)
		}
		return true
	}
	ts.Stack = New(cfg, handler)
	if u, ok := handler.(stackUser); ok {
		u.setStack(ts.Stack)
	}

	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ts.udp = uc.LocalAddr().(*net.UDPAddr).AddrPort()
	go func() { _ = ts.ServeUDP(uc) }()
	t.Cleanup(func() { _ = ts.Close(); _ = uc.Close() })

	// A keepalive proves the read loop is running (and past wg.Add).
	p, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ts.udp))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	deadline := time.Now().Add(5 * time.Second)
	for ts.Stats.Keepalives.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("udp read loop did not start")
		}
		_, _ = p.Write([]byte("\r\n\r\n"))
		time.Sleep(2 * time.Millisecond)
	}
	ts.Stats.Keepalives.Store(0)
	ts.Stats.RxPackets.Store(0)
	ts.allowed.Store(0)

	if withTCP {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ts.tcp = l.Addr().(*net.TCPAddr).AddrPort()
		go func() { _ = ts.ServeTCP(l) }()
		t.Cleanup(func() { _ = l.Close() })
		// Allow is called after Accept: the accept loop is running.
		c, err := net.Dial("tcp", ts.tcp.String())
		if err != nil {
			t.Fatal(err)
		}
		for ts.allowed.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("tcp accept loop did not start")
			}
			time.Sleep(time.Millisecond)
		}
		_ = c.Close()
		ts.allowed.Store(0)
	}
	return ts
}

func (ts *testStack) udpFlow(remote netip.AddrPort) Flow {
	return Flow{Transport: UDP, Local: ts.udp, Remote: remote}
}

// ---------------------------------------------------------------------------
// Raw UDP peer

type rxMsg struct {
	Msg Message
	Raw []byte
	At  time.Time
}

func (m rxMsg) req() *Request {
	r, _ := m.Msg.(*Request)
	return r
}

func (m rxMsg) res() *Response {
	r, _ := m.Msg.(*Response)
	return r
}

// udpPeer is a plain UDP socket standing in for a remote UA.
type udpPeer struct {
	t  testing.TB
	c  *net.UDPConn
	in chan rxMsg
}

func newUDPPeer(t testing.TB) *udpPeer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpPeer{t: t, c: c, in: make(chan rxMsg, 1024)}
	go func() {
		buf := make([]byte, 70000)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(p.in)
				return
			}
			raw := append([]byte(nil), buf[:n]...)
			at := time.Now()
			m, err := ParseMessage(append([]byte(nil), raw...))
			if err != nil {
				continue // keepalive replies etc.
			}
			p.in <- rxMsg{Msg: m, Raw: raw, At: at}
		}
	}()
	t.Cleanup(func() { _ = c.Close() })
	return p
}

func (p *udpPeer) addr() netip.AddrPort { return p.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *udpPeer) send(to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := p.c.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

func (p *udpPeer) sendStr(to netip.AddrPort, s string) { p.send(to, []byte(s)) }

// expect returns the next message matching pred, dropping others.
func (p *udpPeer) expect(d time.Duration, what string, pred func(rxMsg) bool) rxMsg {
	p.t.Helper()
	m, ok := p.tryExpect(d, pred)
	if !ok {
		p.t.Fatalf("peer: no %s within %v", what, d)
	}
	return m
}

func (p *udpPeer) tryExpect(d time.Duration, pred func(rxMsg) bool) (rxMsg, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m, ok := <-p.in:
			if !ok {
				return rxMsg{}, false
			}
			if pred == nil || pred(m) {
				return m, true
			}
		case <-timer.C:
			return rxMsg{}, false
		}
	}
}

// expectNone fails if a message matching pred arrives within d.
func (p *udpPeer) expectNone(d time.Duration, what string, pred func(rxMsg) bool) {
	p.t.Helper()
	if m, ok := p.tryExpect(d, pred); ok {
		p.t.Fatalf("peer: unexpected %s:\n%s", what, m.Raw)
	}
}

// collect gathers every message matching pred for d.
func (p *udpPeer) collect(d time.Duration, pred func(rxMsg) bool) []rxMsg {
	var out []rxMsg
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return out
		}
		m, ok := p.tryExpect(left, pred)
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

func isReq(method RequestMethod) func(rxMsg) bool {
	return func(m rxMsg) bool { r := m.req(); return r != nil && r.Method == method }
}

func isRes(code int) func(rxMsg) bool {
	return func(m rxMsg) bool { r := m.res(); return r != nil && r.StatusCode == code }
}

func isResTo(code int, method RequestMethod) func(rxMsg) bool {
	return func(m rxMsg) bool {
		r := m.res()
		if r == nil || r.StatusCode != code {
			return false
		}
		_, meth, _ := CSeqOf(r)
		return meth == method
	}
}

// ---------------------------------------------------------------------------
// Raw SIP text

// reqSpec describes a request written as raw text, the way a remote UA
// would put it on the wire.
type reqSpec struct {
	Method     string
	RURI       string // default sip:bob@127.0.0.1
	Transport  string // Via transport, default UDP
	SentBy     string // Via sent-by, e.g. "10.0.0.5:5060"
	ViaParams  string // extra Via params, e.g. ";rport"
	Branch     string // "" = no branch param
	CallID     string
	FromTag    string
	ToTag      string
	CSeq       int
	CSeqMethod string // default Method
	Extra      []string
	Body       string
}

func (s reqSpec) String() string {
	var b strings.Builder
	ruri := s.RURI
	if ruri == "" {
		ruri = "sip:bob@127.0.0.1"
	}
	tp := s.Transport
	if tp == "" {
		tp = "UDP"
	}
	fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", s.Method, ruri)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s", tp, s.SentBy)
	if s.Branch != "" {
		fmt.Fprintf(&b, ";branch=%s", s.Branch)
	}
	b.WriteString(s.ViaParams + "\r\n")
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:alice@example.com>;tag=%s\r\n", s.FromTag)
	if s.ToTag != "" {
		fmt.Fprintf(&b, "To: <sip:bob@example.com>;tag=%s\r\n", s.ToTag)
	} else {
		b.WriteString("To: <sip:bob@example.com>\r\n")
	}
	fmt.Fprintf(&b, "Call-ID: %s\r\n", s.CallID)
	cm := s.CSeqMethod
	if cm == "" {
		cm = s.Method
	}
	fmt.Fprintf(&b, "CSeq: %d %s\r\n", s.CSeq, cm)
	for _, e := range s.Extra {
		b.WriteString(e + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(s.Body), s.Body)
	return b.String()
}

func (s reqSpec) bytes() []byte { return []byte(s.String()) }

// newSpec returns a spec with fresh branch, Call-ID and From tag.
func newSpec(method, sentBy string) reqSpec {
	return reqSpec{Method: method, SentBy: sentBy, Branch: NewBranch(), CallID: NewTag() + "@test", FromTag: NewTag(), CSeq: 1}
}

// ackFor2xx / ackFor / cancelFor derive related requests from an INVITE spec.
func (s reqSpec) derive(method string, branch string, toTag string) reqSpec {
	d := s
	d.Method, d.CSeqMethod, d.Branch, d.ToTag, d.Body, d.Extra = method, method, branch, toTag, "", nil
	return d
}

// mustParseReq parses raw request text.
func mustParseReq(t testing.TB, s string) *Request {
	t.Helper()
	m, err := ParseMessage([]byte(s))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, s)
	}
	r, ok := m.(*Request)
	if !ok {
		t.Fatalf("not a request: %s", s)
	}
	return r
}

// respBytes answers req (as received by a peer) with code; the To tag is
// fixed so that retransmissions are identical.
func respBytes(req *Request, code int, reason, toTag string) []byte {
	res := NewResponse(req, code, reason)
	if toTag != "" && code > 100 {
		if to := res.To(); to != nil {
			to.Params.Add("tag", toTag)
		}
	}
	return Marshal(res)
}

func toTag(m Message) string {
	to := m.To()
	if to == nil {
		return ""
	}
	tag, _ := to.Params.Get("tag")
	return tag
}

// ---------------------------------------------------------------------------
// TCP client

type tcpPeer struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialTCP(t testing.TB, to netip.AddrPort) *tcpPeer {
	t.Helper()
	c, err := net.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &tcpPeer{t: t, c: c, r: bufio.NewReaderSize(c, 8192)}
}

func (p *tcpPeer) addr() netip.AddrPort { return p.c.LocalAddr().(*net.TCPAddr).AddrPort() }

func (p *tcpPeer) write(s string) {
	p.t.Helper()
	if _, err := p.c.Write([]byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

// readMsg reads one framed SIP message (skipping CRLFs) within d.
func (p *tcpPeer) readMsg(d time.Duration) (Message, error) {
	_ = p.c.SetReadDeadline(time.Now().Add(d))
	defer p.c.SetReadDeadline(time.Time{})
	for {
		b, err := p.r.Peek(1)
		if err != nil {
			return nil, err
		}
		if b[0] != '\r' && b[0] != '\n' {
			break
		}
		_, _ = p.r.Discard(1)
	}
	raw, err := readStreamMessage(p.r)
	if err != nil {
		return nil, err
	}
	return ParseMessage(raw)
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
