// Package uatest is a fake SIP phone (and trunk) for testing sipedge from
// the outside: it speaks plain-text SIP over a real UDP socket or TCP
// connection, formats and parses messages itself (it imports no SIP stack,
// so it is an independent peer that catches mistakes in the server's use of
// its parser), and records every message it sends and receives.
//
// A phone can claim a fake private address in Via, Contact and SDP (say
// 192.168.1.10:5060) while it really sends from 127.0.0.1:<ephemeral>: that
// is how NAT is simulated on loopback. The server must then answer to the
// real source and route calls to it.
//
// It behaves like a real user agent where the server depends on it:
// digest authentication (MD5 and SHA-256, RFC 8760 choice), UDP request
// retransmission (Timers A/E), ACK for non-2xx final responses, 2xx
// retransmission until ACK, ACK for 2xx built from the route set (Record-Route
// reversed, Request-URI = remote Contact), CANCEL, in-dialog BYE with
// increasing CSeq, automatic 200 to OPTIONS and 200/487 to CANCEL. Every wait
// has a timeout; no call blocks forever.
package uatest

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ErrTimeout is returned (wrapped) when a wait times out.
var ErrTimeout = errors.New("uatest: timeout")

// ErrClosed is returned when the phone or its connection is closed.
var ErrClosed = errors.New("uatest: phone closed")

// Config describes a phone. Only Server is required.
type Config struct {
	// Name labels the phone in transcripts. Default User.
	Name string
	// User, Password and Domain are the phone's identity: sip:User@Domain,
	// digest user User.
	User, Password, Domain string
	// Server is the SIP server (outbound proxy): out-of-dialog requests go
	// there.
	Server netip.AddrPort
	// Transport is "udp" (default) or "tcp".
	Transport string
	// Bind is the local address. Default "127.0.0.1:0".
	Bind string

	// ViaHost/ViaPort are written in Via sent-by. Default: the real local
	// address. Set a private address to simulate NAT.
	ViaHost string
	ViaPort int
	// ContactHost/ContactPort are written in Contact. Default: Via's.
	ContactHost string
	ContactPort int
	// MediaHost/MediaPort go into the SDP. Default: Contact host, port 4000.
	MediaHost string
	MediaPort int
	// NoRport leaves rport out of Via (RFC 3581 unaware phone).
	NoRport bool

	// Algorithm is the preferred digest algorithm (MD5 or SHA-256) when the
	// server offers several; "" takes the server's first supported one.
	Algorithm string
	// Timeout bounds every wait that has no explicit timeout. Default 5s.
	Timeout time.Duration
	// T1 is the retransmission base for UDP requests. Default 500ms;
	// negative disables retransmissions.
	T1 time.Duration
	// UserAgent header. Default "uatest".
	UserAgent string
	// NoAutoOptions turns off the automatic 200 to OPTIONS.
	NoAutoOptions bool
	// NoRecord keeps no transcript (for benchmarks).
	NoRecord bool
}

// Event is one recorded message or packet.
type Event struct {
	In   bool // received (else sent)
	At   time.Time
	Peer netip.AddrPort // source when In, destination otherwise
	Data []byte
	Msg  *Msg  // nil if Data did not parse (or for keepalives)
	Err  error // parse error of a received packet
}

// Phone is a fake SIP user agent on one socket.
type Phone struct {
	cfg   Config
	name  string
	local netip.AddrPort
	udp   *net.UDPConn
	tcp   net.Conn
	wmu   sync.Mutex // TCP writes

	closed    chan struct{}
	closeOnce sync.Once
	connGone  chan struct{} // TCP: the server closed the connection
	goneOnce  sync.Once
	wg        sync.WaitGroup

	mu       sync.Mutex
	events   []Event
	bad      []Event
	clients  map[string]*Transaction // branch|method
	servers  map[string]*serverTx    // branch|method
	dialogs  map[string]*Call        // call-id|local tag
	regs     map[string]*regState    // per AOR
	timers   map[*time.Timer]struct{}
	lastRecv time.Time

	requests queue[*Msg]  // out-of-dialog requests for the test
	invites  queue[*Call] // incoming INVITEs
	pongs    queue[time.Time]
	received atomic.Int64
}

// New opens a phone and ties it to tb: it is closed at the end of the test,
// and if the test failed its transcript is logged. A server message the
// phone cannot parse fails the test.
func New(tb testing.TB, cfg Config) *Phone {
	tb.Helper()
	p, err := Open(cfg)
	if err != nil {
		tb.Fatalf("uatest: open phone %q: %v", cfg.Name, err)
	}
	tb.Cleanup(func() {
		p.Close()
		for _, e := range p.BadMessages() {
			tb.Errorf("phone %s received a message it cannot parse from %s: %v\n%s", p.name, e.Peer, e.Err, clip(e.Data, 1500))
		}
		if tb.Failed() && !cfg.NoRecord {
			tb.Logf("transcript of phone %s (%s, real address %s):\n%s", p.name, p.cfg.Transport, p.Addr(), p.Transcript())
		}
	})
	return p
}

// Open opens a phone without a testing.TB; call Close.
func Open(cfg Config) (*Phone, error) {
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	cfg.Transport = strings.ToLower(cfg.Transport)
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1:0"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.T1 == 0 {
		cfg.T1 = 500 * time.Millisecond
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "uatest"
	}
	if cfg.Domain == "" {
		cfg.Domain = cfg.Server.Addr().String()
	}
	p := &Phone{
		cfg: cfg, name: cfg.Name,
		closed: make(chan struct{}), connGone: make(chan struct{}),
		clients: map[string]*Transaction{}, servers: map[string]*serverTx{},
		dialogs: map[string]*Call{}, regs: map[string]*regState{}, timers: map[*time.Timer]struct{}{},
	}
	if p.name == "" {
		p.name = cfg.User
	}
	switch cfg.Transport {
	case "udp":
		la, err := net.ResolveUDPAddr("udp", cfg.Bind)
		if err != nil {
			return nil, err
		}
		c, err := net.ListenUDP("udp", la)
		if err != nil {
			return nil, err
		}
		_ = c.SetReadBuffer(4 << 20)
		p.udp = c
		p.local = c.LocalAddr().(*net.UDPAddr).AddrPort()
		p.wg.Add(1)
		go p.readUDP(c)
	case "tcp":
		la, err := net.ResolveTCPAddr("tcp", cfg.Bind)
		if err != nil {
			return nil, err
		}
		d := net.Dialer{LocalAddr: la, Timeout: cfg.Timeout}
		c, err := d.Dial("tcp", cfg.Server.String())
		if err != nil {
			return nil, err
		}
		p.tcp = c
		p.local = c.LocalAddr().(*net.TCPAddr).AddrPort()
		p.wg.Add(1)
		go p.readTCP()
	default:
		return nil, fmt.Errorf("uatest: transport %q not supported", cfg.Transport)
	}
	p.local = netip.AddrPortFrom(p.local.Addr().Unmap(), p.local.Port())
	if p.name == "" {
		p.name = p.local.String()
	}
	return p, nil
}

// Close closes the socket and stops every timer. It is idempotent.
func (p *Phone) Close() {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.wmu.Lock()
		u := p.udp
		p.wmu.Unlock()
		if u != nil {
			_ = u.Close()
		}
		if p.tcp != nil {
			_ = p.tcp.Close()
		}
		p.mu.Lock()
		for t := range p.timers {
			t.Stop()
		}
		p.timers = map[*time.Timer]struct{}{}
		p.mu.Unlock()
	})
	p.wg.Wait()
}

// Rebind moves a UDP phone to a new socket (a new source port), keeping
// its identity, registrations and calls: what a phone sees when its NAT
// drops the mapping and creates a new one.
func (p *Phone) Rebind() error {
	if p.udp == nil {
		return errors.New("uatest: Rebind needs a UDP phone")
	}
	la, err := net.ResolveUDPAddr("udp", p.cfg.Bind)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		return err
	}
	_ = c.SetReadBuffer(4 << 20)
	old := p.udp
	p.wmu.Lock()
	p.udp = c
	p.local = c.LocalAddr().(*net.UDPAddr).AddrPort()
	p.local = netip.AddrPortFrom(p.local.Addr().Unmap(), p.local.Port())
	p.wmu.Unlock()
	_ = old.Close()
	p.wg.Add(1)
	go p.readUDP(c)
	return nil
}

// Name returns the phone's label.
func (p *Phone) Name() string { return p.name }

// Addr is the phone's real address (what the server observes).
func (p *Phone) Addr() netip.AddrPort {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.local
}

// Config returns the phone's configuration with defaults filled in.
func (p *Phone) Config() Config { return p.cfg }

// viaHostPort is what the phone claims in Via.
func (p *Phone) viaHostPort() (string, int) {
	h, port := p.cfg.ViaHost, p.cfg.ViaPort
	if h == "" {
		h = p.Addr().Addr().String()
		if port == 0 {
			port = int(p.Addr().Port())
		}
	}
	if port == 0 {
		port = 5060
	}
	return h, port
}

func (p *Phone) contactHostPort() (string, int) {
	h, port := p.cfg.ContactHost, p.cfg.ContactPort
	if h == "" {
		vh, vp := p.viaHostPort()
		h = vh
		if port == 0 {
			port = vp
		}
	}
	if port == 0 {
		port = 5060
	}
	return h, port
}

// ContactURI is the phone's default Contact URI for user.
func (p *Phone) ContactURI(user string) string {
	h, port := p.contactHostPort()
	if user == "" {
		user = p.cfg.User
	}
	u := URI{Scheme: "sip", User: user, Host: hostLiteral(h), Port: port}
	if p.cfg.Transport == "tcp" {
		u.Params = Params{{"transport", "tcp"}}
	}
	return u.String()
}

// Contact is the phone's default Contact header value.
func (p *Phone) Contact() string { return "<" + p.ContactURI("") + ">" }

// SDP returns a minimal audio offer/answer for the phone's media address.
func (p *Phone) SDP() string {
	h := p.cfg.MediaHost
	if h == "" {
		h, _ = p.contactHostPort()
	}
	port := p.cfg.MediaPort
	if port == 0 {
		port = 4000
	}
	return SDP(h, port, "")
}

func hostLiteral(h string) string {
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "[" + h + "]"
	}
	return h
}

// newVia returns a top Via with a fresh branch.
func (p *Phone) newVia() (string, string) {
	branch := "z9hG4bK" + randHex(8)
	h, port := p.viaHostPort()
	v := Via{Transport: strings.ToUpper(p.cfg.Transport), Host: hostLiteral(h), Port: port, Params: Params{{"branch", branch}}}
	if !p.cfg.NoRport {
		v.Params = append(v.Params, Param{"rport", ""})
	}
	return v.String(), branch
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewTag returns a random tag.
func NewTag() string { return randHex(6) }

// NewCallID returns a random Call-ID.
func NewCallID() string { return randHex(12) + "@uatest" }

// NewRequest returns an out-of-dialog request from the phone's identity to
// ruri: Via with a fresh branch (and rport unless NoRport), Max-Forwards,
// From with a tag, To, Call-ID, CSeq 1, Contact, User-Agent. Change it as
// needed and send it with Send.
func (p *Phone) NewRequest(method, ruri string) *Msg {
	via, _ := p.newVia()
	to := ruri
	if u, err := ParseURI(ruri); err == nil {
		u.Params, u.Headers = nil, ""
		to = u.String()
	}
	m := &Msg{Method: method, URI: ruri}
	m.Add("Via", via)
	m.Add("Max-Forwards", "70")
	m.Add("From", "<sip:"+p.cfg.User+"@"+p.cfg.Domain+">;tag="+NewTag())
	m.Add("To", "<"+to+">")
	m.Add("Call-ID", NewCallID())
	m.Add("CSeq", "1 "+method)
	if method == "INVITE" || method == "REGISTER" || method == "SUBSCRIBE" {
		m.Add("Contact", p.Contact())
	}
	m.Add("User-Agent", p.cfg.UserAgent)
	return m
}

// Send sends request m to the server in a new client transaction.
func (p *Phone) Send(m *Msg) (*Transaction, error) { return p.SendTo(m, p.cfg.Server) }

// SendTo sends request m to dst in a new client transaction.
func (p *Phone) SendTo(m *Msg, dst netip.AddrPort) (*Transaction, error) {
	return p.startTx(m, dst, nil)
}

// SendRaw writes b to the server as is (one datagram, or bytes on the TCP
// connection), outside any transaction.
func (p *Phone) SendRaw(b []byte) error { return p.write(b, p.cfg.Server) }

// SendRawTo writes b to dst (UDP only; on TCP the connection is used).
func (p *Phone) SendRawTo(b []byte, dst netip.AddrPort) error { return p.write(b, dst) }

// Ping sends a CRLF keepalive ("\r\n\r\n", RFC 5626 §3.5.1).
func (p *Phone) Ping() error { return p.write([]byte("\r\n\r\n"), p.cfg.Server) }

// WaitPong waits for a CRLF answer to Ping (TCP).
func (p *Phone) WaitPong(timeout time.Duration) error {
	if _, ok := p.pongs.wait(p.closed, p.timeout(timeout), nil); !ok {
		return fmt.Errorf("%w waiting for CRLF pong on %s", ErrTimeout, p.name)
	}
	return nil
}

// WaitConnClosed waits until the server closes the TCP connection.
func (p *Phone) WaitConnClosed(timeout time.Duration) error {
	select {
	case <-p.connGone:
		return nil
	case <-time.After(p.timeout(timeout)):
		return fmt.Errorf("%w: TCP connection of %s still open", ErrTimeout, p.name)
	}
}

func (p *Phone) timeout(d time.Duration) time.Duration {
	if d <= 0 {
		return p.cfg.Timeout
	}
	return d
}

func (p *Phone) write(b []byte, dst netip.AddrPort) error {
	select {
	case <-p.closed:
		return ErrClosed
	default:
	}
	var err error
	if p.tcp == nil {
		p.wmu.Lock()
		c := p.udp
		p.wmu.Unlock()
		_, err = c.WriteToUDPAddrPort(b, dst)
	} else {
		p.wmu.Lock()
		_ = p.tcp.SetWriteDeadline(time.Now().Add(p.cfg.Timeout))
		_, err = p.tcp.Write(b)
		p.wmu.Unlock()
		dst = p.cfg.Server
	}
	if !p.cfg.NoRecord {
		ev := Event{At: time.Now(), Peer: dst, Data: bytes.Clone(b)}
		ev.Msg, _ = Parse(ev.Data)
		p.mu.Lock()
		p.events = append(p.events, ev)
		p.mu.Unlock()
	}
	return err
}

// afterFunc runs f after d unless the phone closes first.
func (p *Phone) afterFunc(d time.Duration, f func()) *time.Timer {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.closed:
		return time.NewTimer(time.Hour) // never used: stopped at once
	default:
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		p.mu.Lock()
		delete(p.timers, t)
		p.mu.Unlock()
		select {
		case <-p.closed:
			return
		default:
		}
		f()
	})
	p.timers[t] = struct{}{}
	return t
}

func (p *Phone) stopTimer(t *time.Timer) {
	if t == nil {
		return
	}
	t.Stop()
	p.mu.Lock()
	delete(p.timers, t)
	p.mu.Unlock()
}

func (p *Phone) readUDP(c *net.UDPConn) {
	defer p.wg.Done()
	buf := make([]byte, 1<<16+1)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		p.receive(bytes.Clone(buf[:n]), src, "udp")
	}
}

func (p *Phone) readTCP() {
	defer p.wg.Done()
	defer p.goneOnce.Do(func() { close(p.connGone) })
	src := netip.MustParseAddrPort(p.tcp.RemoteAddr().String())
	r := bufio.NewReaderSize(p.tcp, 1<<16)
	for {
		b, err := r.Peek(1)
		if err != nil {
			return
		}
		if b[0] == '\r' || b[0] == '\n' {
			// Only look at what is buffered: Peek beyond it would block
			// until more data arrives (a pong is just "\r\n").
			n := 0
			q, _ := r.Peek(r.Buffered())
			for n < len(q) && (q[n] == '\r' || q[n] == '\n') {
				n++
			}
			_, _ = r.Discard(n)
			p.record(Event{In: true, At: time.Now(), Peer: src, Data: []byte(strings.Repeat("\r\n", n/2))})
			p.pongs.push(time.Now())
			continue
		}
		raw, err := readFramed(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.record(Event{In: true, At: time.Now(), Peer: src, Err: err})
			}
			return
		}
		p.receive(raw, src, "tcp")
	}
}

// readFramed reads one message from a stream: headers, then Content-Length
// bytes (RFC 3261 §18.3).
func readFramed(r *bufio.Reader) ([]byte, error) {
	var msg []byte
	clen := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		msg = append(msg, line...)
		t := strings.TrimRight(line, "\r\n")
		if t == "" {
			break
		}
		if name, v, ok := strings.Cut(t, ":"); ok {
			n := strings.TrimSpace(name)
			if strings.EqualFold(n, "Content-Length") || n == "l" {
				clen, err = strconv.Atoi(strings.TrimSpace(v))
				if err != nil || clen < 0 {
					return nil, fmt.Errorf("uatest: bad Content-Length %q in stream", v)
				}
			}
		}
	}
	if clen < 0 {
		return nil, errors.New("uatest: stream message without Content-Length")
	}
	body := make([]byte, clen)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(msg, body...), nil
}

func (p *Phone) record(ev Event) {
	p.mu.Lock()
	if ev.Err != nil {
		p.bad = append(p.bad, ev)
	}
	if !p.cfg.NoRecord || ev.Err != nil {
		p.events = append(p.events, ev)
	}
	p.lastRecv = ev.At
	p.mu.Unlock()
}

// receive parses and dispatches one message.
func (p *Phone) receive(b []byte, src netip.AddrPort, transport string) {
	p.received.Add(1)
	if len(strings.Trim(string(b), "\r\n")) == 0 {
		// A CRLF keepalive (RFC 5626 §3.5.1 on streams; a server's
		// 4-byte NAT ping on UDP): recorded, not a bad message.
		p.record(Event{In: true, At: time.Now(), Peer: src, Data: b})
		return
	}
	m, err := Parse(b)
	if err != nil {
		p.record(Event{In: true, At: time.Now(), Peer: src, Data: b, Err: err})
		return
	}
	m.Src, m.Transport, m.At = src, transport, time.Now()
	p.record(Event{In: true, At: m.At, Peer: src, Data: b, Msg: m})
	if m.IsRequest() {
		p.handleRequest(m)
	} else {
		p.handleResponse(m)
	}
}

// Received returns every message received so far, in order.
func (p *Phone) Received() []*Msg {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Msg
	for _, e := range p.events {
		if e.In && e.Msg != nil {
			out = append(out, e.Msg)
		}
	}
	return out
}

// ReceivedCount is the number of packets/messages received (also with
// NoRecord).
func (p *Phone) ReceivedCount() int64 { return p.received.Load() }

// Events returns the transcript as data.
func (p *Phone) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// BadMessages returns received packets that did not parse as SIP.
func (p *Phone) BadMessages() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.bad...)
}

// Transcript renders every message sent and received, with times and
// addresses.
func (p *Phone) Transcript() string {
	evs := p.Events()
	var b strings.Builder
	var t0 time.Time
	if len(evs) > 0 {
		t0 = evs[0].At
	}
	for _, e := range evs {
		dir := "-->"
		if e.In {
			dir = "<--"
		}
		fmt.Fprintf(&b, "---- %s %s %s %s (+%s)\n", p.name, p.Addr(), dir, e.Peer, e.At.Sub(t0).Round(time.Millisecond))
		if e.Err != nil {
			fmt.Fprintf(&b, "[unparsable: %v]\n", e.Err)
		}
		if len(bytes.Trim(e.Data, "\r\n")) == 0 && len(e.Data) > 0 {
			b.WriteString("[CRLF keepalive]\n")
			continue
		}
		b.WriteString(clip(e.Data, 3000))
		b.WriteString("\n")
	}
	return b.String()
}

func clip(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + fmt.Sprintf("\n[... %d more bytes]", len(b)-n)
}

// WaitRequest waits for an out-of-dialog request (other than INVITE, which
// WaitInvite returns, and OPTIONS, answered automatically unless
// NoAutoOptions) or an in-dialog request for an unknown dialog. method ""
// matches any.
func (p *Phone) WaitRequest(method string, timeout time.Duration) (*Msg, error) {
	m, ok := p.requests.wait(p.closed, p.timeout(timeout), func(m *Msg) bool { return method == "" || m.Method == method })
	if !ok {
		return nil, fmt.Errorf("%w: phone %s got no %s request in %s", ErrTimeout, p.name, orAny(method), p.timeout(timeout))
	}
	return m, nil
}

func orAny(s string) string {
	if s == "" {
		return "(any)"
	}
	return s
}

// Respond answers a received request (its transaction remembers the
// response for retransmissions).
func (p *Phone) Respond(req *Msg, code int, reason string, extra ...Header) error {
	res := NewResponse(req, code, reason, "")
	res.Headers = append(res.Headers, extra...)
	return p.respond(req, res)
}

// NewResponse builds a response to req: Vias, From, To (with toTag added if
// To has none and toTag is set), Call-ID, CSeq; Record-Route for 18x/2xx to
// INVITE.
func NewResponse(req *Msg, code int, reason, toTag string) *Msg {
	res := &Msg{Code: code, Reason: reason}
	for _, h := range req.Headers {
		if sameName(h.Name, "Via") {
			res.Add("Via", h.Value)
		}
	}
	res.Add("From", req.Get("From"))
	to := req.Get("To")
	if toTag != "" && req.Tag("To") == "" {
		to += ";tag=" + toTag
	}
	res.Add("To", to)
	res.Add("Call-ID", req.Get("Call-ID"))
	res.Add("CSeq", req.Get("CSeq"))
	if req.Method == "INVITE" && code > 100 && code < 300 {
		for _, rr := range req.Values("Record-Route") {
			res.Add("Record-Route", rr)
		}
	}
	return res
}

// serverTx remembers the response to an incoming request, to answer its
// retransmissions.
type serverTx struct {
	key  string
	req  *Msg
	call *Call

	mu       sync.Mutex
	last     []byte
	lastCode int
	dst      netip.AddrPort
}

// responseDest is where responses to req go (RFC 3261 §18.2.2, RFC 3581):
// the source when rport is present or on TCP, else received/sent-by.
func responseDest(req *Msg) netip.AddrPort {
	v, err := req.TopVia()
	if err != nil || req.Transport == "tcp" || v.Params.Has("rport") {
		return req.Src
	}
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return req.Src
	}
	port := v.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(a, uint16(port))
}

func (p *Phone) respond(req *Msg, res *Msg) error {
	key := req.Branch() + "|" + req.Method
	p.mu.Lock()
	st := p.servers[key]
	if st == nil {
		st = &serverTx{key: key, req: req, dst: responseDest(req)}
		p.servers[key] = st
	}
	p.mu.Unlock()
	raw := res.Bytes()
	st.mu.Lock()
	st.last, st.lastCode = raw, res.Code
	dst := st.dst
	st.mu.Unlock()
	return p.write(raw, dst)
}

func (p *Phone) handleRequest(m *Msg) {
	key := m.Branch() + "|" + m.Method
	switch m.Method {
	case "ACK":
		p.mu.Lock()
		st := p.servers[m.Branch()+"|INVITE"]
		call := p.dialogs[m.CallID()+"|"+m.Tag("To")]
		p.mu.Unlock()
		nonSuccess := false
		if st != nil {
			st.mu.Lock()
			nonSuccess = st.lastCode >= 300
			st.mu.Unlock()
		}
		if nonSuccess { // ACK for a non-2xx: hop by hop
			if st.call != nil {
				st.call.reqs.push(m)
			}
			return
		}
		if call != nil {
			call.gotAck(m)
			return
		}
		p.requests.push(m)
		return
	case "CANCEL":
		p.mu.Lock()
		st := p.servers[m.Branch()+"|INVITE"]
		p.mu.Unlock()
		if st == nil {
			_ = p.Respond(m, 481, "Call/Transaction Does Not Exist")
			p.requests.push(m)
			return
		}
		_ = p.Respond(m, 200, "OK")
		st.mu.Lock()
		final := st.lastCode >= 200
		st.mu.Unlock()
		if !final && st.call != nil {
			_ = st.call.respond(487, "Request Terminated", "")
		}
		if st.call != nil {
			st.call.cancelled.Store(true)
			st.call.reqs.push(m)
		}
		return
	}
	p.mu.Lock()
	st := p.servers[key]
	if st == nil {
		p.servers[key] = &serverTx{key: key, req: m, dst: responseDest(m)}
	}
	p.mu.Unlock()
	if st != nil { // retransmission
		st.mu.Lock()
		last, dst := st.last, st.dst
		st.mu.Unlock()
		if last != nil {
			_ = p.write(last, dst)
		}
		return
	}
	if tag := m.Tag("To"); tag != "" {
		p.mu.Lock()
		call := p.dialogs[m.CallID()+"|"+tag]
		p.mu.Unlock()
		if call == nil {
			_ = p.Respond(m, 481, "Call/Transaction Does Not Exist")
			p.requests.push(m)
			return
		}
		call.gotRequest(m)
		return
	}
	switch m.Method {
	case "INVITE":
		c := p.newIncoming(m)
		p.invites.push(c)
	case "OPTIONS":
		if !p.cfg.NoAutoOptions {
			_ = p.Respond(m, 200, "OK", Header{"Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"}, Header{"Accept", "application/sdp"})
		}
		p.requests.push(m)
	default:
		p.requests.push(m)
	}
}

// Transaction is a client transaction: a request the phone sent and the
// responses it got.
type Transaction struct {
	p      *Phone
	Req    *Msg
	key    string
	raw    []byte
	dst    netip.AddrPort
	invite bool
	call   *Call
	q      queue[*Msg]
	start  time.Time

	mu        sync.Mutex
	gotProv   bool
	gotFinal  bool
	finalTag  string
	finalCode int
	interval  time.Duration
	timer     *time.Timer
	ackRaw    []byte
}

func (p *Phone) startTx(m *Msg, dst netip.AddrPort, call *Call) (*Transaction, error) {
	_, method := m.CSeq()
	if method == "" {
		method = m.Method
	}
	tx := &Transaction{p: p, Req: m, key: m.Branch() + "|" + method, dst: dst, invite: m.Method == "INVITE", call: call, start: time.Now()}
	tx.raw = m.Bytes()
	p.mu.Lock()
	p.clients[tx.key] = tx
	p.mu.Unlock()
	if err := p.write(tx.raw, dst); err != nil {
		return tx, err
	}
	if p.udp != nil && p.cfg.T1 > 0 {
		tx.mu.Lock()
		tx.interval = p.cfg.T1
		tx.timer = p.afterFunc(tx.interval, tx.retransmit)
		tx.mu.Unlock()
	}
	return tx, nil
}

// retransmit is Timer A (INVITE) / Timer E (others), until a response (a
// provisional for INVITE, a final for others) or 64*T1.
func (tx *Transaction) retransmit() {
	p := tx.p
	tx.mu.Lock()
	if tx.gotFinal || (tx.invite && tx.gotProv) || time.Since(tx.start) > 64*p.cfg.T1 {
		tx.mu.Unlock()
		return
	}
	tx.interval *= 2
	if !tx.invite && (tx.interval > 4*time.Second || tx.gotProv) {
		tx.interval = 4 * time.Second
	}
	tx.timer = p.afterFunc(tx.interval, tx.retransmit)
	tx.mu.Unlock()
	_ = p.write(tx.raw, tx.dst)
}

func (p *Phone) handleResponse(m *Msg) {
	_, method := m.CSeq()
	key := m.Branch() + "|" + method
	p.mu.Lock()
	tx := p.clients[key]
	p.mu.Unlock()
	if tx == nil {
		return // stray: recorded only
	}
	tx.mu.Lock()
	var ack []byte
	deliver := true
	switch {
	case m.Code < 200:
		if tx.gotFinal {
			deliver = false
		}
		tx.gotProv = true
	default:
		if tx.gotFinal {
			// A retransmitted final (or a further 2xx of a fork).
			deliver = m.Code < 300 && tx.invite && m.Tag("To") != tx.finalTag
			if tx.invite && m.Code >= 300 {
				ack = tx.ackRaw
			}
		} else {
			tx.gotFinal, tx.finalTag, tx.finalCode = true, m.Tag("To"), m.Code
			if tx.invite && m.Code >= 300 {
				tx.ackRaw = nonSuccessACK(tx.Req, m).Bytes()
				ack = tx.ackRaw
			}
		}
	}
	var stop *time.Timer
	if tx.gotFinal || (tx.invite && tx.gotProv) {
		stop, tx.timer = tx.timer, nil
	}
	tx.mu.Unlock()
	p.stopTimer(stop)
	if ack != nil {
		_ = p.write(ack, tx.dst)
	}
	if tx.call != nil && m.Code >= 200 && m.Code < 300 && tx.invite {
		tx.call.got2xx(tx, m) // also for retransmissions: re-ACK
	}
	if !deliver {
		return
	}
	if !tx.invite && m.Code >= 200 {
		p.mu.Lock()
		delete(p.clients, key)
		p.mu.Unlock()
	}
	tx.q.push(m)
	if tx.call != nil {
		tx.call.gotResponse(tx, m)
	}
}

// nonSuccessACK is the ACK for a non-2xx final response: same branch and
// Request-URI as the INVITE, To from the response (RFC 3261 §17.1.1.3).
func nonSuccessACK(inv, res *Msg) *Msg {
	ack := &Msg{Method: "ACK", URI: inv.URI}
	vs := inv.Values("Via")
	ack.Add("Via", vs[0])
	for _, r := range inv.Values("Route") {
		ack.Add("Route", r)
	}
	ack.Add("Max-Forwards", "70")
	ack.Add("From", inv.Get("From"))
	ack.Add("To", res.Get("To"))
	ack.Add("Call-ID", inv.Get("Call-ID"))
	n, _ := inv.CSeq()
	ack.Add("CSeq", strconv.Itoa(n)+" ACK")
	return ack
}

// Wait returns the next response of the transaction for which match is
// true (nil: any).
func (tx *Transaction) Wait(timeout time.Duration, match func(*Msg) bool) (*Msg, error) {
	m, ok := tx.q.wait(tx.p.closed, tx.p.timeout(timeout), match)
	if !ok {
		return nil, fmt.Errorf("%w: %s on %s got no matching response in %s (got %s)", ErrTimeout, tx.Req.Summary(), tx.p.name, tx.p.timeout(timeout), summaries(tx.q.all()))
	}
	return m, nil
}

// WaitFinal returns the final response.
func (tx *Transaction) WaitFinal(timeout time.Duration) (*Msg, error) {
	return tx.Wait(timeout, func(m *Msg) bool { return m.Code >= 200 })
}

// Responses returns every response received so far.
func (tx *Transaction) Responses() []*Msg { return tx.q.all() }

func summaries(ms []*Msg) string {
	if len(ms) == 0 {
		return "nothing"
	}
	var s []string
	for _, m := range ms {
		s = append(s, m.Summary())
	}
	return strings.Join(s, ", ")
}
