// Package natsim is a STUN server for tests that also plays the NAT in
// front of its clients. It listens on two loopback IPs and two ports
// (127.0.0.1 and 127.0.0.2 by default; Linux routes all of 127.0.0.0/8 to
// lo without setup) and answers Binding requests the way an RFC 5780
// server behind which sits a simulated NAT would be seen by the client:
//
//   - Mapping: the address reported to a client is a "public" address on
//     a third loopback IP (127.0.0.3), one real socket per simulated
//     binding, chosen per client, per client and destination IP, or per
//     client and destination address (Options.Mapping). Without NAT the
//     client's own address is reported.
//   - Filtering: an answer (or hairpinned packet) reaches the client only
//     if its binding has sent to that source address, that source IP, or
//     anywhere (Options.Filtering). This applies without NAT too, as a
//     stateful firewall would.
//   - Hairpinning: packets sent to a public address arrive at the public
//     socket and are passed to the binding's client, from the sender's own
//     public address, subject to filtering (Options.Hairpin).
//   - ALG: MAPPED-ADDRESS in answers is rewritten to the client's private
//     address, XOR-MAPPED-ADDRESS is left alone (Options.ALG).
//   - Lifetime: a binding idle for longer than Options.Lifetime is gone;
//     answers for it are dropped and the next packet gets a new one.
//
// The server part honours CHANGE-REQUEST (answering from the other IP
// and/or port) and RESPONSE-PORT (answering to that port at the request's
// public IP), or behaves like a plain RFC 8489 server, an RFC 3489 server,
// a broken server, or no server at all (Options.Kind).
//
// Everything stays on loopback; Close stops every goroutine.
package natsim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/stun"
)

// Behaviour is a simulated RFC 4787 mapping or filtering behaviour.
type Behaviour int

// Behaviours.
const (
	EndpointIndependent Behaviour = iota
	AddressDependent
	AddressAndPortDependent
)

// Kind is how the STUN server part behaves.
type Kind int

// Server kinds.
const (
	// RFC5780: RESPONSE-ORIGIN and OTHER-ADDRESS in answers,
	// CHANGE-REQUEST and RESPONSE-PORT honoured.
	RFC5780 Kind = iota
	// Basic: plain RFC 8489 answers (like sipedge's SIP port): no
	// OTHER-ADDRESS, 420 to CHANGE-REQUEST and RESPONSE-PORT.
	Basic
	// Classic: RFC 3489 answers (MAPPED-ADDRESS, SOURCE-ADDRESS,
	// CHANGED-ADDRESS, no XOR-MAPPED-ADDRESS); CHANGE-REQUEST honoured,
	// 420 to RESPONSE-PORT.
	Classic
	// IgnoresChange: like RFC5780 but answers CHANGE-REQUEST from the
	// socket the request arrived on.
	IgnoresChange
	// IgnoresResponsePort: like RFC5780 but answers RESPONSE-PORT
	// requests to their source.
	IgnoresResponsePort
	// Silent never answers.
	Silent
)

// Options configure the simulation. The zero value is an RFC 5780 server
// with no NAT and no firewall in front of the client.
type Options struct {
	Kind Kind
	// NAT puts a NAT between the clients and the server with Mapping.
	NAT     bool
	Mapping Behaviour
	// Filtering applies to everything arriving at a binding (NAT or not).
	Filtering Behaviour
	Hairpin   bool
	ALG       bool
	// Lifetime after which an idle binding is gone; 0 for never.
	Lifetime time.Duration
	// The server's two IPs and the NAT's public IP; defaults 127.0.0.1,
	// 127.0.0.2, 127.0.0.3.
	PrimaryIP, AlternateIP, PublicIP netip.Addr
}

type key struct{ client, dst netip.AddrPort }

// binding is one simulated NAT binding (or, without NAT, a firewall's
// state for one client address).
type binding struct {
	key     key
	client  netip.AddrPort // real (private) address
	public  netip.AddrPort
	conn    *net.UDPConn // the public socket, NAT only
	remotes map[netip.AddrPort]bool
	last    time.Time
	dead    bool
}

// Server is a running simulation.
type Server struct {
	o     Options
	socks [2][2]*net.UDPConn // [IP][port]: primary IP and port are index 0
	addrs [2][2]netip.AddrPort

	mu       sync.Mutex
	byKey    map[key]*binding
	byPublic map[netip.AddrPort]*binding
	conns    []*net.UDPConn
	closed   bool

	wg       sync.WaitGroup
	requests atomic.Int64
}

// Start starts a simulation.
func Start(o Options) (*Server, error) {
	if !o.PrimaryIP.IsValid() {
		o.PrimaryIP = netip.MustParseAddr("127.0.0.1")
	}
	if !o.AlternateIP.IsValid() {
		o.AlternateIP = netip.MustParseAddr("127.0.0.2")
	}
	if !o.PublicIP.IsValid() {
		o.PublicIP = netip.MustParseAddr("127.0.0.3")
	}
	s := &Server{o: o, byKey: map[key]*binding{}, byPublic: map[netip.AddrPort]*binding{}}
	for j := 0; j < 2; j++ {
		c1, c2, err := listenPair(o.PrimaryIP, o.AlternateIP)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.socks[0][j], s.socks[1][j] = c1, c2
		s.conns = append(s.conns, c1, c2)
	}
	for i := 0; i < 2; i++ {
		for j := 0; j < 2; j++ {
			s.addrs[i][j] = s.socks[i][j].LocalAddr().(*net.UDPAddr).AddrPort()
		}
	}
	for i := 0; i < 2; i++ {
		for j := 0; j < 2; j++ {
			s.wg.Add(1)
			go s.serve(i, j)
		}
	}
	return s, nil
}

// listenPair opens ip1:P and ip2:P for some free port P.
func listenPair(ip1, ip2 netip.Addr) (*net.UDPConn, *net.UDPConn, error) {
	var last error
	for try := 0; try < 50; try++ {
		c1, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip1, 0)))
		if err != nil {
			return nil, nil, err
		}
		port := c1.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		c2, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip2, port)))
		if err == nil {
			return c1, c2, nil
		}
		c1.Close()
		last = err
	}
	return nil, nil, fmt.Errorf("natsim: no port free on both %v and %v: %w", ip1, ip2, last)
}

// Addr is the primary address: give it to the client.
func (s *Server) Addr() netip.AddrPort { return s.addrs[0][0] }

// OtherAddr is the alternate address (other IP, other port).
func (s *Server) OtherAddr() netip.AddrPort { return s.addrs[1][1] }

// PublicIP is the simulated NAT's public IP.
func (s *Server) PublicIP() netip.Addr { return s.o.PublicIP }

// Requests counts the datagrams the server part received.
func (s *Server) Requests() int { return int(s.requests.Load()) }

// Close stops the simulation and waits for its goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	s.wg.Wait()
	return nil
}

func (s *Server) serve(i, j int) {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, src, err := s.socks[i][j].ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.requests.Add(1)
		s.handle(i, j, slices.Clone(buf[:n]), unmap(src))
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// handle answers one request that arrived on socket [i][j] from src.
func (s *Server) handle(i, j int, pkt []byte, src netip.AddrPort) {
	if s.o.Kind == Silent {
		return
	}
	m, err := stun.Parse(pkt)
	if err != nil || m.Method != stun.MethodBinding || m.Class != stun.ClassRequest {
		return
	}
	s.mu.Lock()
	b := s.outbound(src, s.addrs[i][j])
	s.mu.Unlock()
	if b == nil {
		return
	}
	pub, client := b.public, b.client

	ti, tj := i, j // the socket that answers
	dst := pub     // where the answer goes, as a public address
	var rport uint16
	if v, ok := m.Get(stun.AttrResponsePort); ok && len(v) == 4 {
		rport = binary.BigEndian.Uint16(v)
	}
	changeIP, changePort, _ := m.ChangeRequest()
	var resp []byte
	ok := true
	switch s.o.Kind {
	case Basic:
		resp, ok = stun.Respond(nil, pkt, pub, &stun.ResponderOptions{Software: "natsim"})
	case Classic:
		resp = s.classic(m, pub, i, j, rport != 0, changeIP, changePort)
		if rport == 0 {
			ti, tj = flip(i, changeIP), flip(j, changePort)
		}
	default: // RFC5780, IgnoresChange, IgnoresResponsePort
		req := pkt
		if rport != 0 {
			// Respond does not act on RESPONSE-PORT (it would answer 420):
			// drop it, and FINGERPRINT with it, before asking for the
			// answer.
			req = strip(m, stun.AttrResponsePort, stun.AttrFingerprint)
			if s.o.Kind != IgnoresResponsePort {
				dst = netip.AddrPortFrom(pub.Addr(), rport)
			}
		}
		if s.o.Kind != IgnoresChange {
			ti, tj = flip(i, changeIP), flip(j, changePort)
		}
		resp, ok = stun.Respond(nil, req, pub, &stun.ResponderOptions{
			Software:       "natsim",
			ResponseOrigin: s.addrs[ti][tj],
			OtherAddress:   s.addrs[1-i][1-j],
		})
	}
	if !ok || resp == nil {
		return
	}
	if s.o.ALG {
		rewriteMapped(resp, client)
	}
	from := s.addrs[ti][tj]
	s.mu.Lock()
	to, pass := s.inbound(from, dst)
	s.mu.Unlock()
	if pass {
		_, _ = s.socks[ti][tj].WriteToUDPAddrPort(resp, to)
	}
}

func flip(i int, change bool) int {
	if change {
		return 1 - i
	}
	return i
}

// classic builds an RFC 3489 answer.
func (s *Server) classic(m *stun.Message, pub netip.AddrPort, i, j int, responsePort, changeIP, changePort bool) []byte {
	var b stun.Builder
	if responsePort {
		b.ResetClassic(nil, stun.MethodBinding, stun.ClassError, m.Cookie, m.TID)
		b.AddErrorCode(420, "Unknown Attribute")
		b.AddUnknownAttributes([]uint16{stun.AttrResponsePort})
		return b.Bytes()
	}
	b.ResetClassic(nil, stun.MethodBinding, stun.ClassSuccess, m.Cookie, m.TID)
	b.AddAddress(stun.AttrMappedAddress, pub)
	b.AddAddress(stun.AttrSourceAddress, s.addrs[flip(i, changeIP)][flip(j, changePort)])
	b.AddAddress(stun.AttrChangedAddress, s.addrs[1-i][1-j])
	return b.Bytes()
}

// strip re-encodes m without the attributes of the given types.
func strip(m *stun.Message, types ...uint16) []byte {
	c := *m
	c.Attrs = nil
	for _, a := range m.Attrs {
		if !slices.Contains(types, a.Type) {
			c.Attrs = append(c.Attrs, a)
		}
	}
	out, _ := c.Append(nil)
	return out
}

// rewriteMapped overwrites the MAPPED-ADDRESS value in msg with ap, as a
// payload-rewriting ALG does (it breaks any FINGERPRINT).
func rewriteMapped(msg []byte, ap netip.AddrPort) {
	for off := stun.HeaderSize; off+4 <= len(msg); {
		t := binary.BigEndian.Uint16(msg[off:])
		n := int(binary.BigEndian.Uint16(msg[off+2:]))
		if off+4+n > len(msg) {
			return
		}
		if t == stun.AttrMappedAddress && n == 8 && ap.Addr().Is4() {
			v := msg[off+4 : off+12]
			binary.BigEndian.PutUint16(v[2:], ap.Port())
			a := ap.Addr().As4()
			copy(v[4:], a[:])
		}
		off += 4 + (n+3)&^3
	}
}

// outbound finds or makes the binding for a packet from client to dst
// and records dst as a remote it sent to. s.mu must be held.
func (s *Server) outbound(client, dst netip.AddrPort) *binding {
	if s.closed {
		return nil
	}
	k := key{client: client}
	if s.o.NAT {
		switch s.o.Mapping {
		case AddressDependent:
			k.dst = netip.AddrPortFrom(dst.Addr(), 0)
		case AddressAndPortDependent:
			k.dst = dst
		}
	}
	b := s.byKey[k]
	if b != nil && s.expired(b) {
		s.kill(b)
		b = nil
	}
	if b == nil {
		b = &binding{key: k, client: client, remotes: map[netip.AddrPort]bool{}}
		if s.o.NAT {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.o.PublicIP, 0)))
			if err != nil {
				return nil
			}
			b.conn = c
			b.public = c.LocalAddr().(*net.UDPAddr).AddrPort()
			s.conns = append(s.conns, c)
			s.wg.Add(1)
			go s.readPublic(b)
		} else {
			b.public = client
		}
		s.byKey[k] = b
		s.byPublic[b.public] = b
	}
	b.remotes[dst] = true
	b.last = time.Now()
	return b
}

func (s *Server) expired(b *binding) bool {
	return b.dead || s.o.Lifetime > 0 && time.Since(b.last) > s.o.Lifetime
}

// kill ends a binding. Its public socket stays open until Close, so the
// port is not handed out again.
func (s *Server) kill(b *binding) {
	b.dead = true
	if s.byKey[b.key] == b {
		delete(s.byKey, b.key)
	}
	if s.byPublic[b.public] == b {
		delete(s.byPublic, b.public)
	}
}

// inbound decides whether a packet from "from" to the public address "to"
// gets in, and returns the client it goes to. s.mu must be held.
func (s *Server) inbound(from, to netip.AddrPort) (netip.AddrPort, bool) {
	b := s.byPublic[to]
	if b == nil || s.closed {
		return netip.AddrPort{}, false
	}
	if s.expired(b) {
		s.kill(b)
		return netip.AddrPort{}, false
	}
	pass := false
	switch s.o.Filtering {
	case EndpointIndependent:
		pass = true
	case AddressDependent:
		for r := range b.remotes {
			if r.Addr() == from.Addr() {
				pass = true
				break
			}
		}
	case AddressAndPortDependent:
		pass = b.remotes[from]
	}
	if !pass {
		return netip.AddrPort{}, false
	}
	b.last = time.Now()
	return b.client, true
}

// readPublic handles packets sent to a binding's public address by a
// client behind the same NAT: hairpinning.
func (s *Server) readPublic(b *binding) {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, src, err := b.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !s.o.Hairpin {
			continue
		}
		s.mu.Lock()
		sb := s.outbound(unmap(src), b.public)
		var to netip.AddrPort
		pass := false
		if sb != nil && sb.conn != nil {
			to, pass = s.inbound(sb.public, b.public)
		}
		s.mu.Unlock()
		if pass {
			_, _ = sb.conn.WriteToUDPAddrPort(buf[:n], to)
		}
	}
}
