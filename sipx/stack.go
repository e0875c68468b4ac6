package sipx

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Errors.
var (
	ErrNoRoute     = errors.New("sipx: no socket for flow")
	ErrFlowGone    = errors.New("sipx: connection of flow is gone")
	ErrClosed      = errors.New("sipx: stack closed")
	ErrTooLarge    = errors.New("sipx: message too large")
	ErrUnsupported = errors.New("sipx: unsupported transport")
)

// MaxMessageSize bounds a SIP message on any transport.
const MaxMessageSize = 65535

// Handler receives what the transaction layer does not absorb. Calls for
// messages from one socket (or TCP connection) arrive in order, in that
// socket's reading goroutine: a handler must not block on I/O.
type Handler interface {
	// Request is called for a request that matches no server transaction:
	// a new request, an ACK for a 2xx (stateless forwarding), or a CANCEL
	// that matched nothing (the stack has not answered it). The handler
	// either calls Stack.NewServerTx and responds through it, or responds
	// statelessly with Stack.Respond.
	Request(req *Request, f Flow)
	// Response is called for a response that matches no client
	// transaction, e.g. a retransmitted 2xx to an INVITE.
	Response(res *Response, f Flow)
	// Cancel is called after a CANCEL matched INVITE server transaction tx;
	// the stack answered 200 to the CANCEL. The handler cancels its
	// branches and answers the INVITE with 487.
	Cancel(tx *ServerTx, cancel *Request)
}

// Config configures a Stack. Zero values use the defaults.
type Config struct {
	Logger *slog.Logger
	// Allow is called before parsing every datagram or TCP connection with
	// the source address; false drops it (flood guard, bans).
	Allow func(src netip.Addr) bool
	// STUN, if set, is given STUN messages arriving on SIP UDP sockets
	// (RFC 5626 keepalives); reply sends from the same socket.
	STUN func(b []byte, f Flow, reply func([]byte))
	// Timers; defaults T1 500ms, T2 4s, T4 5s (RFC 3261).
	T1, T2, T4 time.Duration
	// AcceptedLinger is how long an INVITE transaction stays in RFC 6026's
	// Accepted state after a 2xx (Timers L and M, 64*T1 = 32 s in the
	// RFC). Default 5 s, like Kamailio's wait_timer: we send 100 Trying at
	// once, which stops INVITE retransmissions, and late 2xx
	// retransmissions are relayed statelessly through our signed Via, so
	// a short linger loses nothing and saves most of the transaction
	// memory at high call rates.
	AcceptedLinger time.Duration
	// TCPIdle closes TCP connections idle for this long. Default 15 min.
	TCPIdle time.Duration
	// Trace, if set, sees every message read and written (debug capture).
	Trace func(in bool, f Flow, b []byte)
	// Workers parse and handle UDP messages, sharded by Call-ID.
	// Default GOMAXPROCS.
	Workers int
}

// Stats are counters exported by the stack.
type Stats struct {
	RxPackets, TxPackets, ParseErrors, Dropped, Keepalives atomic.Uint64
	Retransmissions, TxTimeouts                            atomic.Uint64
	// Server and Client count final responses by method and class.
	Server, Client TxCounts
}

// Stack is the SIP transport and transaction layer.
type Stack struct {
	cfg     Config
	log     *slog.Logger
	handler Handler
	Stats   Stats

	mu      sync.RWMutex
	udp     map[netip.AddrPort][]*net.UDPConn
	udpAny  []*net.UDPConn
	tcpLn   []net.Listener
	conns   map[uint64]*tcpConn
	byAddr  map[netip.AddrPort]*tcpConn // TCP connection reuse by remote
	dialing map[netip.AddrPort]*dialCall
	nextID  atomic.Uint64
	closed  atomic.Bool

	servers  txTable[*ServerTx]
	clients  txTable[*ClientTx]
	wg       sync.WaitGroup
	workers  []chan work
	workerWG sync.WaitGroup
}

// New returns a Stack that delivers to h.
func New(cfg Config, h Handler) *Stack {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.T1 == 0 {
		cfg.T1 = 500 * time.Millisecond
	}
	if cfg.T2 == 0 {
		cfg.T2 = 4 * time.Second
	}
	if cfg.T4 == 0 {
		cfg.T4 = 5 * time.Second
	}
	if cfg.AcceptedLinger == 0 {
		cfg.AcceptedLinger = 5 * time.Second
	}
	if cfg.TCPIdle == 0 {
		cfg.TCPIdle = 15 * time.Minute
	}
	s := &Stack{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "sipx"),
		handler: h,
		udp:     map[netip.AddrPort][]*net.UDPConn{},
		conns:   map[uint64]*tcpConn{},
		byAddr:  map[netip.AddrPort]*tcpConn{},
		dialing: map[netip.AddrPort]*dialCall{},
	}
	s.servers.init()
	s.clients.init()
	n := cfg.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	for i := 0; i < n; i++ {
		ch := make(chan work, 1024)
		s.workers = append(s.workers, ch)
		s.workerWG.Add(1)
		go s.worker(ch)
	}
	return s
}

// ServeUDP reads conn until it is closed. Several conns may share one local
// address (SO_REUSEPORT); sends pick any of them.
func (s *Stack) ServeUDP(conn *net.UDPConn) error {
	local := addrPortOf(conn.LocalAddr())
	// Check closed and join the WaitGroup under the lock Close takes, so a
	// concurrent Close either sees this socket or we see it closed.
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		_ = conn.Close()
		return ErrClosed
	}
	s.udp[local] = append(s.udp[local], conn)
	s.udpAny = append(s.udpAny, conn)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	buf := make([]byte, MaxMessageSize+1)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			s.log.Warn("udp read", "local", local, "error", err)
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		s.Stats.RxPackets.Add(1)
		if s.cfg.Allow != nil && !s.cfg.Allow(src.Addr()) {
			s.Stats.Dropped.Add(1)
			continue
		}
		f := Flow{Transport: UDP, Local: local, Remote: src}
		data := buf[:n]
		switch classify(data) {
		case kindKeepalive:
			s.Stats.Keepalives.Add(1)
			continue
		case kindSTUN:
			if s.cfg.STUN != nil {
				c := conn
				s.cfg.STUN(data, f, func(b []byte) { _, _ = c.WriteToUDPAddrPort(b, src) })
			}
			continue
		case kindJunk:
			s.Stats.ParseErrors.Add(1)
			continue
		}
		if n > MaxMessageSize {
			s.Stats.ParseErrors.Add(1)
			continue
		}
		if s.cfg.Trace != nil {
			s.cfg.Trace(true, f, data)
		}
		// Hand the datagram to the worker of its Call-ID: messages of one
		// call or transaction stay in order, and one busy peer (whose
		// packets the kernel hashes to one socket) still uses every core.
		w := s.workers[callIDHash(data)%uint32(len(s.workers))]
		w <- work{b: bytes.Clone(data), f: f}
	}
}

// work is a datagram for a worker.
type work struct {
	b []byte
	f Flow
}

// worker parses and dispatches the datagrams of its share of Call-IDs.
func (s *Stack) worker(ch chan work) {
	defer s.workerWG.Done()
	for w := range ch {
		msg, err := sip.ParseMessage(w.b)
		if err != nil {
			s.Stats.ParseErrors.Add(1)
			// The parser's error quotes header text, which may be an
			// Authorization header: log only what is safe.
			s.log.Debug("unparsable datagram", "flow", w.f, "bytes", len(w.b), "start", safeStart(w.b))
			continue
		}
		s.dispatch(msg, w.f)
	}
}

// callIDHash hashes the Call-ID header value (or compact "i") of a raw
// message without parsing it; 0 if there is none.
func callIDHash(b []byte) uint32 {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		line := b[i:]
		var k int
		switch {
		case len(line) > 7 && bytes.EqualFold(line[:7], []byte("call-id")):
			k = 7
		case len(line) > 1 && (line[0] == 'i' || line[0] == 'I') && (line[1] == ':' || line[1] == ' ' || line[1] == '\t'):
			k = 1
		default:
			if len(line) > 0 && (line[0] == '\r' || line[0] == '\n') {
				return 0 // end of headers
			}
			continue
		}
		for k < len(line) && (line[k] == ' ' || line[k] == '\t') {
			k++
		}
		if k >= len(line) || line[k] != ':' {
			continue
		}
		k++
		h := uint32(2166136261)
		for ; k < len(line) && line[k] != '\r' && line[k] != '\n'; k++ {
			if c := line[k]; c != ' ' && c != '\t' {
				h ^= uint32(c)
				h *= 16777619
			}
		}
		return h
	}
	return 0
}

type kind int

const (
	kindSIP kind = iota
	kindKeepalive
	kindSTUN
	kindJunk
)

// classify demultiplexes the SIP port by the first bytes (RFC 7983 style):
// CRLF keepalives, STUN (first two bits zero and the magic cookie), SIP
// (starts with a token letter), anything else is junk.
func classify(b []byte) kind {
	if len(b) == 0 {
		return kindJunk
	}
	if len(bytes.Trim(b, "\r\n\x00")) == 0 {
		return kindKeepalive
	}
	if b[0] < 4 {
		if len(b) >= 20 && b[4] == 0x21 && b[5] == 0x12 && b[6] == 0xA4 && b[7] == 0x42 {
			return kindSTUN
		}
		return kindJunk
	}
	c := b[0]
	if (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') {
		return kindSIP
	}
	return kindJunk
}

// ServeTCP accepts connections on l until it is closed.
func (s *Stack) ServeTCP(l net.Listener) error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return ErrClosed
	}
	s.tcpLn = append(s.tcpLn, l)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		remote := addrPortOf(c.RemoteAddr())
		if s.cfg.Allow != nil && !s.cfg.Allow(remote.Addr()) {
			s.Stats.Dropped.Add(1)
			_ = c.Close()
			continue
		}
		tc, err := s.addConn(c)
		if err != nil {
			return nil
		}
		go s.readTCP(tc)
	}
}

type tcpConn struct {
	id   uint64
	c    net.Conn
	flow Flow
	wmu  sync.Mutex
	last atomic.Int64 // unix nanos of last activity
}

func (s *Stack) addConn(c net.Conn) (*tcpConn, error) {
	tc := &tcpConn{id: s.nextID.Add(1), c: c}
	tc.flow = Flow{Transport: TCP, Local: addrPortOf(c.LocalAddr()), Remote: addrPortOf(c.RemoteAddr()), ConnID: tc.id}
	tc.last.Store(time.Now().UnixNano())
	s.mu.Lock()
	if s.closed.Load() { // Close already swept s.conns
		s.mu.Unlock()
		_ = c.Close()
		return nil, ErrClosed
	}
	s.conns[tc.id] = tc
	s.byAddr[tc.flow.Remote] = tc
	s.mu.Unlock()
	return tc, nil
}

func (s *Stack) dropConn(tc *tcpConn) {
	_ = tc.c.Close()
	s.mu.Lock()
	delete(s.conns, tc.id)
	if s.byAddr[tc.flow.Remote] == tc {
		delete(s.byAddr, tc.flow.Remote)
	}
	s.mu.Unlock()
}

// ConnAlive reports whether the TCP connection of f is still open.
func (s *Stack) ConnAlive(f Flow) bool {
	if f.Transport != TCP {
		return true
	}
	s.mu.RLock()
	_, ok := s.conns[f.ConnID]
	s.mu.RUnlock()
	return ok
}

// readTCP frames SIP messages on a stream by Content-Length (RFC 3261
// §18.3). CRLF keepalives are answered with CRLF (RFC 5626 §3.5.1).
func (s *Stack) readTCP(tc *tcpConn) {
	defer s.dropConn(tc)
	r := bufio.NewReaderSize(tc.c, 8192)
	crlf := 0 // CR/LF bytes seen since the last message, across reads
	for {
		_ = tc.c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdle))
		b, err := r.Peek(1)
		if err != nil {
			return
		}
		if b[0] == '\r' || b[0] == '\n' {
			// Consume only what is buffered: Peek beyond it would block
			// and the keepalive would never be answered.
			n := 0
			for n < r.Buffered() {
				p, _ := r.Peek(n + 1)
				if p[n] != '\r' && p[n] != '\n' {
					break
				}
				n++
			}
			_, _ = r.Discard(n)
			crlf += n
			if crlf >= 4 { // CRLFCRLF ping → CRLF pong (RFC 5626 §3.5.1)
				crlf = 0
				s.Stats.Keepalives.Add(1)
				tc.wmu.Lock()
				_, _ = tc.c.Write([]byte("\r\n"))
				tc.wmu.Unlock()
			}
			continue
		}
		crlf = 0
		raw, err := readStreamMessage(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.Stats.ParseErrors.Add(1)
				s.log.Debug("tcp framing", "flow", tc.flow, "error", err)
			}
			return
		}
		tc.last.Store(time.Now().UnixNano())
		s.Stats.RxPackets.Add(1)
		if s.cfg.Trace != nil {
			s.cfg.Trace(true, tc.flow, raw)
		}
		msg, err := sip.ParseMessage(raw)
		if err != nil {
			s.Stats.ParseErrors.Add(1)
			s.log.Debug("unparsable tcp message", "flow", tc.flow, "bytes", len(raw), "start", safeStart(raw))
			return // framing is lost
		}
		s.dispatch(msg, tc.flow)
	}
}

// readStreamMessage reads one message: headers up to an empty line, then
// Content-Length bytes of body.
func readStreamMessage(r *bufio.Reader) ([]byte, error) {
	var msg []byte
	clen := -1
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, ErrTooLarge
			}
			return nil, err
		}
		msg = append(msg, line...)
		if len(msg) > MaxMessageSize {
			return nil, ErrTooLarge
		}
		t := bytes.TrimRight(line, "\r\n")
		if len(t) == 0 {
			break
		}
		if t[0] == ' ' || t[0] == '\t' {
			continue // folded continuation of the previous header
		}
		if i := bytes.IndexByte(t, ':'); i > 0 {
			name := bytes.TrimSpace(t[:i])
			if bytes.EqualFold(name, []byte("Content-Length")) || bytes.EqualFold(name, []byte("l")) {
				v, err := strconv.Atoi(string(bytes.TrimSpace(t[i+1:])))
				if err != nil || v < 0 || v > MaxMessageSize {
					return nil, fmt.Errorf("sipx: bad Content-Length")
				}
				clen = v
			}
		}
	}
	if clen < 0 {
		return nil, fmt.Errorf("sipx: stream message without Content-Length")
	}
	if len(msg)+clen > MaxMessageSize {
		return nil, ErrTooLarge
	}
	body := make([]byte, clen)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(msg, body...), nil
}

// dispatch stamps the request with the observed source and passes it to
// the transaction layer.
func (s *Stack) dispatch(msg Message, f Flow) {
	msg.SetTransport(f.Transport)
	msg.SetSource(f.Remote.String())
	switch m := msg.(type) {
	case *Request:
		if !sanityOK(m) {
			s.Stats.ParseErrors.Add(1)
			s.respondBad(m, f)
			return
		}
		StampReceived(m, f)
		s.handleRequest(m, f)
	case *Response:
		if m.Via() == nil || m.CSeq() == nil {
			s.Stats.ParseErrors.Add(1)
			return
		}
		s.handleResponse(m, f)
	}
}

// sanityOK checks the headers every request needs (RFC 3261 §8.1.1).
func sanityOK(r *Request) bool {
	return r.Via() != nil && r.CSeq() != nil && r.CallID() != nil && r.From() != nil && r.To() != nil &&
		r.CSeq().MethodName == r.Method
}

func (s *Stack) respondBad(r *Request, f Flow) {
	if r.Method == ACK || r.Via() == nil || r.CallID() == nil {
		return
	}
	res := NewResponse(r, 400, "Bad Request")
	_ = s.Send(res, f)
}

// StampReceived adds received and rport to the top Via of a request, always,
// with the observed source (RFC 3261 §18.2.1, RFC 3581 — also when the
// client did not ask for rport: the response goes to the source anyway).
func StampReceived(r *Request, f Flow) {
	v := r.Via()
	if v == nil {
		return
	}
	v.Params.Add("received", f.Remote.Addr().String())
	v.Params.Add("rport", strconv.Itoa(int(f.Remote.Port())))
}

// Respond sends res statelessly on flow f (the request's flow).
func (s *Stack) Respond(res *Response, f Flow) error {
	if res.StatusCode >= 200 && res.CSeq() != nil {
		s.Stats.Server.add(string(res.CSeq().MethodName), res.StatusCode)
	}
	return s.Send(res, f)
}

// Send serialises m and writes it on flow f: for UDP from the socket bound to
// f.Local (any UDP socket if f.Local is unset or unknown), for TCP on the
// connection f.ConnID or, if that is 0, on a connection to f.Remote, dialling
// one if needed.
func (s *Stack) Send(m Message, f Flow) error {
	return s.SendRaw(Marshal(m), f)
}

// SendRaw writes b on flow f.
func (s *Stack) SendRaw(b []byte, f Flow) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if s.cfg.Trace != nil {
		s.cfg.Trace(false, f, b)
	}
	switch f.Transport {
	case UDP:
		c := s.udpConnFor(f.Local)
		if c == nil {
			return ErrNoRoute
		}
		if len(b) > MaxMessageSize {
			return ErrTooLarge
		}
		_, err := c.WriteToUDPAddrPort(b, f.Remote)
		if err == nil {
			s.Stats.TxPackets.Add(1)
		}
		return err
	case TCP:
		tc, err := s.tcpConnFor(f)
		if err != nil {
			return err
		}
		tc.wmu.Lock()
		_ = tc.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err = tc.c.Write(b)
		tc.wmu.Unlock()
		if err != nil {
			s.dropConn(tc)
			return err
		}
		s.Stats.TxPackets.Add(1)
		return nil
	}
	return ErrUnsupported
}

func (s *Stack) udpConnFor(local netip.AddrPort) *net.UDPConn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if cs := s.udp[local]; len(cs) > 0 {
		return cs[0]
	}
	if len(s.udpAny) > 0 {
		return s.udpAny[0]
	}
	return nil
}

func (s *Stack) tcpConnFor(f Flow) (*tcpConn, error) {
	s.mu.RLock()
	if f.ConnID != 0 {
		tc := s.conns[f.ConnID]
		s.mu.RUnlock()
		if tc == nil {
			return nil, ErrFlowGone
		}
		return tc, nil
	}
	tc := s.byAddr[f.Remote]
	s.mu.RUnlock()
	if tc != nil {
		return tc, nil
	}
	// One dial per remote: concurrent senders wait for it, so a burst
	// opens one connection and a dialog's messages keep their order.
	s.mu.Lock()
	if tc := s.byAddr[f.Remote]; tc != nil {
		s.mu.Unlock()
		return tc, nil
	}
	if d := s.dialing[f.Remote]; d != nil {
		s.mu.Unlock()
		<-d.done
		return d.tc, d.err
	}
	d := &dialCall{done: make(chan struct{})}
	s.dialing[f.Remote] = d
	s.mu.Unlock()
	dl := net.Dialer{Timeout: 3 * time.Second}
	c, err := dl.DialContext(context.Background(), "tcp", f.Remote.String())
	if err == nil {
		if d.tc, err = s.addConn(c); err == nil {
			go s.readTCP(d.tc)
		}
	}
	d.err = err
	s.mu.Lock()
	delete(s.dialing, f.Remote)
	s.mu.Unlock()
	close(d.done)
	return d.tc, d.err
}

// dialCall is an outgoing TCP dial others may wait for.
type dialCall struct {
	done chan struct{}
	tc   *tcpConn
	err  error
}

// UDPLocals returns the local addresses of the UDP sockets.
func (s *Stack) UDPLocals() []netip.AddrPort {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]netip.AddrPort, 0, len(s.udp))
	for a := range s.udp {
		out = append(out, a)
	}
	return out
}

// Close closes every socket and connection and stops transaction timers.
func (s *Stack) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	for _, cs := range s.udp {
		for _, c := range cs {
			_ = c.Close()
		}
	}
	for _, l := range s.tcpLn {
		_ = l.Close()
	}
	for _, tc := range s.conns {
		_ = tc.c.Close()
	}
	s.mu.Unlock()
	s.servers.stopAll()
	s.clients.stopAll()
	s.wg.Wait() // readers are gone: nothing sends to the workers any more
	for _, ch := range s.workers {
		close(ch)
	}
	s.workerWG.Wait()
	return nil
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.UDPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.TCPAddr:
		ap := v.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// safeStart returns the first token of a message (method or "SIP/2.0") for
// logs; never header contents, which may carry credentials.
func safeStart(b []byte) string {
	n := 0
	for n < len(b) && n < 16 && b[n] > ' ' && b[n] < 0x7f {
		n++
	}
	return string(b[:n])
}
