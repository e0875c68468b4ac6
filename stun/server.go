package stun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Server defaults, used for zero ServerConfig fields.
const (
	DefaultMaxTCPConns      = 1024
	DefaultMaxTCPConnsPerIP = 16
	DefaultTCPIdleTimeout   = 30 * time.Second
	tcpWriteTimeout         = 5 * time.Second
	udpBufferSize           = 2048 // larger datagrams are truncated, hence not answered
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Listen are the addresses to serve, each over UDP and TCP on the
	// same port. In plain mode an address may be a wildcard (0.0.0.0,
	// [::]) and its port 0, in which case the kernel picks a port free
	// for both transports. At least one is required.
	Listen []netip.AddrPort

	// AlternateIP, when valid, turns on RFC 5780 mode (NAT behaviour
	// discovery): Listen must then hold exactly one address, with a
	// concrete IP (not a wildcard) and a port, and AlternateIP must be
	// another IP of the same family, also assigned to this host. The
	// server binds the four combinations of the two IPs and the two
	// ports, over UDP and TCP, answers with RESPONSE-ORIGIN and
	// OTHER-ADDRESS, and acts on CHANGE-REQUEST over UDP.
	AlternateIP netip.Addr
	// AlternatePort is the second port of RFC 5780 mode; 0 means the
	// primary port + 1.
	AlternatePort uint16

	// Software is sent as SOFTWARE when it fits under MaxResponseGrowth;
	// "" sends none.
	Software string

	// RateLimit is the sustained number of messages per second accepted
	// from one source (an IPv4 address or an IPv6 /64), checked before
	// parsing; excess messages are dropped (a TCP connection is closed).
	// 0 disables the limit. RateBurst is the bucket size (RateLimit
	// rounded up when < 1).
	RateLimit float64
	RateBurst int
	// MaxSources bounds the rate limiter's table. Default 65536.
	MaxSources int

	// MaxTCPConns bounds the open TCP connections, MaxTCPConnsPerIP those
	// from one source; connections over either are closed at once.
	// Defaults DefaultMaxTCPConns and DefaultMaxTCPConnsPerIP.
	MaxTCPConns      int
	MaxTCPConnsPerIP int
	// TCPIdleTimeout closes a connection that sends no whole message for
	// this long. Default DefaultTCPIdleTimeout.
	TCPIdleTimeout time.Duration

	// Logger gets debug messages about unexpected socket errors. Default
	// slog.Default().
	Logger *slog.Logger
}

// Listener is one bound socket of a Server.
type Listener struct {
	Transport string // "udp" or "tcp"
	Addr      netip.AddrPort
}

func (l Listener) String() string { return l.Transport + " " + l.Addr.String() }

// ServerStats are a Server's counters since it started. All but Sources
// and TCPOpen only grow.
type ServerStats struct {
	Requests       uint64 // messages received: UDP datagrams and TCP-framed messages
	Answered       uint64 // responses sent, error responses included
	ErrorResponses uint64 // of which error responses (420: unknown attribute)
	Ignored        uint64 // not answered: not a Binding request, malformed, bad FINGERPRINT
	RateLimited    uint64 // dropped by the per-source rate limit
	Evicted        uint64 // sources the rate limiter forgot because its table was full
	Sources        int    // sources the rate limiter tracks now

	TCPAccepted uint64 // TCP connections accepted
	TCPOpen     int    // TCP connections open now

	// Errors by kind.
	ReadErrors   uint64 // socket read errors other than a closed or idle connection
	WriteErrors  uint64 // failed sends
	AcceptErrors uint64 // failed TCP accepts
	TCPRefused   uint64 // connections refused: over MaxTCPConns or MaxTCPConnsPerIP
	TCPNotSTUN   uint64 // connections closed for sending something that is not STUN
	TCPTooLarge  uint64 // connections closed for a message over MaxStreamMessage
	TCPIdle      uint64 // connections closed after TCPIdleTimeout without a message
}

// Server is a stand-alone STUN server: Binding over UDP and TCP (RFC 8489),
// optionally with RFC 5780 behaviour discovery (see ServerConfig). Each
// socket has one goroutine reading it (and each TCP connection one, up to
// MaxTCPConns); responses are built by RespondTo into per-goroutine
// buffers, so a datagram costs no allocation and no goroutine, and no
// response exceeds its request by more than MaxResponseGrowth bytes.
// RESPONSE-PORT is honoured over UDP in both modes.
type Server struct {
	log       *slog.Logger
	lim       *limiter
	udp       []*udpSocket // RFC 5780 mode: indexed by ipIndex<<1 | portIndex
	tcp       []*tcpSocket
	listeners []Listener
	maxConns  int
	maxPerIP  int
	idle      time.Duration

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	perIP  map[srcKey]int
	wg     sync.WaitGroup

	c struct {
		requests, answered, errorResponses, ignored, rateLimited atomic.Uint64
		tcpAccepted, readErrors, writeErrors, acceptErrors       atomic.Uint64
		tcpRefused, tcpNotSTUN, tcpTooLarge, tcpIdle             atomic.Uint64
	}
}

type udpSocket struct {
	conn *net.UDPConn
	idx  int // RFC 5780: ipIndex<<1 | portIndex; 0 in plain mode
	opts ResponderOptions
}

type tcpSocket struct {
	ln   *net.TCPListener
	opts ResponderOptions
}

// NewServer binds every socket of cfg and starts serving. Close stops it.
func NewServer(cfg ServerConfig) (_ *Server, err error) {
	if len(cfg.Listen) == 0 {
		return nil, errors.New("stun: server: no listen address")
	}
	s := &Server{
		log:      cfg.Logger,
		lim:      newLimiter(cfg.RateLimit, cfg.RateBurst, cfg.MaxSources),
		maxConns: cfg.MaxTCPConns,
		maxPerIP: cfg.MaxTCPConnsPerIP,
		idle:     cfg.TCPIdleTimeout,
		conns:    make(map[net.Conn]struct{}),
		perIP:    make(map[srcKey]int),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxConns <= 0 {
		s.maxConns = DefaultMaxTCPConns
	}
	if s.maxPerIP <= 0 {
		s.maxPerIP = DefaultMaxTCPConnsPerIP
	}
	if s.idle <= 0 {
		s.idle = DefaultTCPIdleTimeout
	}
	defer func() {
		if err != nil {
			s.closeSockets()
		}
	}()
	if cfg.AlternateIP.IsValid() {
		err = s.bind5780(cfg)
	} else {
		err = s.bindPlain(cfg)
	}
	if err != nil {
		return nil, err
	}
	for _, u := range s.udp {
		s.wg.Add(1)
		go s.serveUDP(u)
	}
	for _, t := range s.tcp {
		s.wg.Add(1)
		go s.serveTCP(t)
	}
	return s, nil
}

func unmapAddr(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// bindPlain binds UDP and TCP on each address, on the same port.
func (s *Server) bindPlain(cfg ServerConfig) error {
	for _, ap := range cfg.Listen {
		ap = unmapAddr(ap)
		if !ap.Addr().IsValid() {
			return fmt.Errorf("stun: server: invalid listen address %v", ap)
		}
		u, t, err := bindPair(ap)
		if err != nil {
			return err
		}
		local := unmapAddr(u.LocalAddr().(*net.UDPAddr).AddrPort())
		o := ResponderOptions{Software: cfg.Software, ResponsePort: true}
		if !local.Addr().IsUnspecified() {
			o.ResponseOrigin = local
		}
		s.udp = append(s.udp, &udpSocket{conn: u, opts: o})
		s.tcp = append(s.tcp, &tcpSocket{ln: t, opts: ResponderOptions{Software: cfg.Software, NoChange: true}})
		s.listeners = append(s.listeners,
			Listener{"udp", local},
			Listener{"tcp", unmapAddr(t.Addr().(*net.TCPAddr).AddrPort())})
	}
	return nil
}

// bindPair binds UDP on ap, then TCP on the port UDP got. With port 0 it
// retries a few times if that port is taken for TCP.
func bindPair(ap netip.AddrPort) (*net.UDPConn, *net.TCPListener, error) {
	for attempt := 0; ; attempt++ {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, nil, fmt.Errorf("stun: server: listen udp %v: %w", ap, err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr(), uint16(port))))
		if err == nil {
			return u, t, nil
		}
		_ = u.Close()
		if ap.Port() != 0 || attempt == 15 {
			return nil, nil, fmt.Errorf("stun: server: listen tcp %v: %w", netip.AddrPortFrom(ap.Addr(), uint16(port)), err)
		}
	}
}

// bind5780 binds the four addresses of RFC 5780 mode over UDP and TCP.
func (s *Server) bind5780(cfg ServerConfig) error {
	if len(cfg.Listen) != 1 {
		return fmt.Errorf("stun: server: RFC 5780 mode takes exactly one listen address (the primary), not %d", len(cfg.Listen))
	}
	primary := unmapAddr(cfg.Listen[0])
	alt := cfg.AlternateIP.Unmap()
	switch {
	case !primary.Addr().IsValid() || primary.Addr().IsUnspecified():
		return fmt.Errorf("stun: server: RFC 5780 mode needs a concrete primary IP, not %v", primary.Addr())
	case primary.Port() == 0:
		return errors.New("stun: server: RFC 5780 mode needs a fixed primary port, not 0")
	case alt.IsUnspecified() || alt.Is4() != primary.Addr().Is4():
		return fmt.Errorf("stun: server: alternate IP %v must be a concrete address of the primary's family (%v)", alt, primary.Addr())
	case alt == primary.Addr():
		return fmt.Errorf("stun: server: alternate IP %v is the primary IP", alt)
	}
	altPort := cfg.AlternatePort
	if altPort == 0 {
		if primary.Port() == 65535 {
			return errors.New("stun: server: primary port 65535 leaves no room for the default alternate port")
		}
		altPort = primary.Port() + 1
	}
	if altPort == primary.Port() {
		return fmt.Errorf("stun: server: alternate port %d is the primary port", altPort)
	}
	ips := [2]netip.Addr{primary.Addr(), alt}
	ports := [2]uint16{primary.Port(), altPort}
	addr := func(idx int) netip.AddrPort { return netip.AddrPortFrom(ips[idx>>1], ports[idx&1]) }
	for idx := range 4 {
		local, other := addr(idx), addr(idx^3) // Da:Dp and Ca:Cp
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
		if err != nil {
			return fmt.Errorf("stun: server: listen udp %v: %w", local, err)
		}
		s.udp = append(s.udp, &udpSocket{conn: u, idx: idx, opts: ResponderOptions{
			Software: cfg.Software, ResponseOrigin: local, OtherAddress: other, ResponsePort: true,
		}})
		s.listeners = append(s.listeners, Listener{"udp", local})
	}
	for idx := range 4 {
		local, other := addr(idx), addr(idx^3)
		t, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(local))
		if err != nil {
			return fmt.Errorf("stun: server: listen tcp %v: %w", local, err)
		}
		s.tcp = append(s.tcp, &tcpSocket{ln: t, opts: ResponderOptions{
			Software: cfg.Software, ResponseOrigin: local, OtherAddress: other, NoChange: true,
		}})
		s.listeners = append(s.listeners, Listener{"tcp", local})
	}
	return nil
}

// Listeners returns the bound sockets: UDP and TCP for each address, in
// configuration order (RFC 5780 mode: primary IP and port, primary IP and
// alternate port, alternate IP and primary port, alternate IP and port,
// for UDP then TCP).
func (s *Server) Listeners() []Listener { return append([]Listener(nil), s.listeners...) }

// Stats returns the counters.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		Requests: s.c.requests.Load(), Answered: s.c.answered.Load(), ErrorResponses: s.c.errorResponses.Load(),
		Ignored: s.c.ignored.Load(), RateLimited: s.c.rateLimited.Load(),
		TCPAccepted: s.c.tcpAccepted.Load(), ReadErrors: s.c.readErrors.Load(), WriteErrors: s.c.writeErrors.Load(),
		AcceptErrors: s.c.acceptErrors.Load(), TCPRefused: s.c.tcpRefused.Load(), TCPNotSTUN: s.c.tcpNotSTUN.Load(),
		TCPTooLarge: s.c.tcpTooLarge.Load(), TCPIdle: s.c.tcpIdle.Load(),
	}
	if s.lim != nil {
		st.Evicted = s.lim.evicted.Load()
		st.Sources = s.lim.sources()
	}
	s.mu.Lock()
	st.TCPOpen = len(s.conns)
	s.mu.Unlock()
	return st
}

// Close stops the server: it closes every socket and connection and
// returns once all its goroutines have ended. It may be called more than
// once.
func (s *Server) Close() error {
	s.closeSockets()
	s.wg.Wait()
	return nil
}

func (s *Server) closeSockets() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	for _, u := range s.udp {
		_ = u.conn.Close()
	}
	for _, t := range s.tcp {
		_ = t.ln.Close()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serveUDP reads one UDP socket until it is closed.
func (s *Server) serveUDP(u *udpSocket) {
	defer s.wg.Done()
	buf := make([]byte, udpBufferSize)
	out := make([]byte, 0, udpBufferSize+MaxResponseGrowth)
	for {
		n, src, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			s.c.readErrors.Add(1)
			s.log.Debug("stun: udp read", "local", u.opts.ResponseOrigin, "error", err)
			time.Sleep(time.Millisecond) // no busy loop on a persistent error
			continue
		}
		s.handleUDP(u, buf[:n], src, out)
	}
}

// handleUDP answers one datagram. out is the reader's response buffer.
func (s *Server) handleUDP(u *udpSocket, b []byte, src netip.AddrPort, out []byte) {
	s.c.requests.Add(1)
	src = unmapAddr(src)
	if src.Port() == 0 {
		s.c.ignored.Add(1) // cannot be answered
		return
	}
	if !s.lim.allow(src.Addr(), time.Now().UnixNano()) {
		s.c.rateLimited.Add(1)
		return
	}
	resp, d, ok := RespondTo(out[:0], b, src, &u.opts)
	if !ok {
		s.c.ignored.Add(1)
		return
	}
	from := u
	if flip := changeIndex(d); flip != 0 {
		// Only an RFC 5780 socket (OtherAddress set) lets a change
		// through, and then there are four sockets.
		from = s.udp[u.idx^flip]
	}
	if _, err := from.conn.WriteToUDPAddrPort(resp, d.To); err != nil {
		s.c.writeErrors.Add(1)
		s.log.Debug("stun: udp send", "to", d.To, "error", err)
		return
	}
	s.count(resp)
}

// changeIndex maps a delivery's change flags to the bits of a socket
// index: change IP flips the IP bit, change port the port bit.
func changeIndex(d Delivery) int {
	i := 0
	if d.ChangeIP {
		i |= 2
	}
	if d.ChangePort {
		i |= 1
	}
	return i
}

// count records a response sent.
func (s *Server) count(resp []byte) {
	s.c.answered.Add(1)
	if _, class := splitType(binary.BigEndian.Uint16(resp)); class == ClassError {
		s.c.errorResponses.Add(1)
	}
}

// serveTCP accepts connections until the listener is closed.
func (s *Server) serveTCP(t *tcpSocket) {
	defer s.wg.Done()
	for {
		c, err := t.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			s.c.acceptErrors.Add(1)
			s.log.Debug("stun: tcp accept", "error", err)
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		remote := unmapAddr(c.RemoteAddr().(*net.TCPAddr).AddrPort())
		if !s.track(c, remote.Addr()) {
			s.c.tcpRefused.Add(1)
			_ = c.SetLinger(0)
			_ = c.Close()
			continue
		}
		s.c.tcpAccepted.Add(1)
		go s.serveConn(t, c, remote)
	}
}

// track registers a new connection, within the limits; it adds to s.wg
// under s.mu so that Close cannot miss it.
func (s *Server) track(c net.Conn, ip netip.Addr) bool {
	k := keyOf(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.maxConns || s.perIP[k] >= s.maxPerIP {
		return false
	}
	s.conns[c] = struct{}{}
	s.perIP[k]++
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn, ip netip.Addr) {
	k := keyOf(ip)
	s.mu.Lock()
	delete(s.conns, c)
	if s.perIP[k]--; s.perIP[k] <= 0 {
		delete(s.perIP, k)
	}
	s.mu.Unlock()
}

// serveConn answers the messages of one TCP connection, back to back
// (RFC 8489 §6.2.2), until the peer closes it, sends something that is
// not STUN, exceeds the rate limit, or stays idle for too long.
func (s *Server) serveConn(t *tcpSocket, c *net.TCPConn, remote netip.AddrPort) {
	defer s.wg.Done()
	defer s.untrack(c, remote.Addr())
	defer c.Close()
	o := t.opts
	if local := unmapAddr(c.LocalAddr().(*net.TCPAddr).AddrPort()); !local.Addr().IsUnspecified() {
		o.ResponseOrigin = local // concrete even on a wildcard listener
	}
	fr := newFrameReader(c, MaxStreamMessage)
	out := make([]byte, 0, MaxStreamMessage+MaxResponseGrowth)
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.idle))
		m, err := fr.next()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, ErrStreamNotSTUN):
				s.c.tcpNotSTUN.Add(1)
			case errors.Is(err, ErrStreamTooLarge):
				s.c.tcpTooLarge.Add(1)
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
			case errors.As(err, &ne) && ne.Timeout():
				s.c.tcpIdle.Add(1)
			default:
				if !s.isClosed() {
					s.c.readErrors.Add(1)
					s.log.Debug("stun: tcp read", "remote", remote, "error", err)
				}
			}
			return
		}
		s.c.requests.Add(1)
		if !s.lim.allow(remote.Addr(), time.Now().UnixNano()) {
			// Close rather than leave the client waiting: it does not
			// retransmit over TCP.
			s.c.rateLimited.Add(1)
			return
		}
		resp, _, ok := RespondTo(out[:0], m, remote, &o)
		if !ok {
			s.c.ignored.Add(1)
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
		if _, err := c.Write(resp); err != nil {
			if !s.isClosed() {
				s.c.writeErrors.Add(1)
			}
			return
		}
		s.count(resp)
	}
}
