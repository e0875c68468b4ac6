package stun

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	loop1 = netip.MustParseAddr("127.0.0.1")
	loop2 = netip.MustParseAddr("127.0.0.2") // also on lo, no setup needed
)

func startServer(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addrOfListener returns the server's first listener of transport.
func addrOfListener(t *testing.T, s *Server, transport string) netip.AddrPort {
	t.Helper()
	for _, l := range s.Listeners() {
		if l.Transport == transport {
			return l.Addr
		}
	}
	t.Fatalf("no %s listener in %v", transport, s.Listeners())
	return netip.AddrPort{}
}

// start5780 starts an RFC 5780 server on 127.0.0.1 and 127.0.0.2 with
// ports P and P+1, retrying with other ports if one is taken.
func start5780(t *testing.T, cfg ServerConfig) (*Server, uint16) {
	t.Helper()
	var last error
	for range 20 {
		probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := uint16(probe.LocalAddr().(*net.UDPAddr).Port)
		probe.Close()
		if port == 65535 {
			continue
		}
		c := cfg
		c.Listen = []netip.AddrPort{netip.AddrPortFrom(loop1, port)}
		c.AlternateIP = loop2
		s, err := NewServer(c)
		if err == nil {
			t.Cleanup(func() { s.Close() })
			return s, port
		}
		last = err
	}
	t.Fatalf("no free port pair for RFC 5780 mode: %v", last)
	return nil, 0
}

func udpClient(t *testing.T, ip netip.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fast retransmits quickly, for lossless loopback.
var fast = WithRetransmission(50*time.Millisecond, 4, 8)

func TestServerPlain(t *testing.T) {
	t.Parallel()
	s := startServer(t, ServerConfig{Listen: []netip.AddrPort{netip.AddrPortFrom(loop1, 0)}, Software: "sipedge"})
	ls := s.Listeners()
	if len(ls) != 2 || ls[0].Transport != "udp" || ls[1].Transport != "tcp" || ls[0].Addr != ls[1].Addr || ls[0].Addr.Port() == 0 {
		t.Fatalf("listeners %v: want UDP and TCP on one port", ls)
	}
	srv := ls[0].Addr

	c := udpClient(t, loop1)
	res, err := Binding(ctxTimeout(t, 5*time.Second), c, srv, fast)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mapped != addrOf(c) || res.From != srv || res.ResponseOrigin != srv || res.OtherAddress.IsValid() || res.Software != "sipedge" {
		t.Errorf("UDP result %+v: want mapped %v, from and origin %v, no other address", res, addrOf(c), srv)
	}

	tc, err := net.Dial("tcp", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	res, err = Binding(ctxTimeout(t, 5*time.Second), StreamConn(tc), srv, WithRetransmission(0, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort(tc.LocalAddr().String()); res.Mapped != want || res.ResponseOrigin != srv {
		t.Errorf("TCP result %+v: want mapped %v, origin %v", res, want, srv)
	}
	// A second transaction on the same connection.
	if _, err := Binding(ctxTimeout(t, 5*time.Second), StreamConn(tc), srv, WithRetransmission(0, 1, 0)); err != nil {
		t.Fatal(err)
	}

	// A plain server cannot change its address: 420, which tells a NAT
	// probe that behaviour discovery is not available.
	_, err = Binding(ctxTimeout(t, 5*time.Second), c, srv, fast, WithChangeRequest(true, false))
	var er *ErrorResponse
	if !errors.As(err, &er) || er.Code != 420 {
		t.Errorf("change request to a plain server: %v", err)
	}
	waitStats(t, s, func(st ServerStats) bool {
		return st.Requests == 4 && st.Answered == 4 && st.ErrorResponses == 1 && st.TCPAccepted == 1
	})
}

// waitStats waits for the counters to satisfy ok: a response is counted
// after it is sent, so the client may see it first.
func waitStats(t *testing.T, s *Server, ok func(ServerStats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		if ok(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServerWildcard(t *testing.T) {
	t.Parallel()
	s := startServer(t, ServerConfig{Listen: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:0")}})
	port := addrOfListener(t, s, "udp").Port()
	srv := netip.AddrPortFrom(loop1, port)
	c := udpClient(t, loop1)
	res, err := Binding(ctxTimeout(t, 5*time.Second), c, srv, fast)
	if err != nil {
		t.Fatal(err)
	}
	// A wildcard socket does not know the address it answers from.
	if res.Mapped != addrOf(c) || res.ResponseOrigin.IsValid() {
		t.Errorf("UDP result %+v", res)
	}
	tc, err := net.Dial("tcp", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	res, err = Binding(ctxTimeout(t, 5*time.Second), StreamConn(tc), srv, WithRetransmission(0, 1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if res.ResponseOrigin != srv { // a TCP connection does
		t.Errorf("TCP RESPONSE-ORIGIN %v, want %v", res.ResponseOrigin, srv)
	}
}

// TestServerRFC5780 checks RFC 5780 Table 1 on the wire: for requests to
// each of the four addresses and each CHANGE-REQUEST, the response comes
// from the right socket, which RESPONSE-ORIGIN names, and OTHER-ADDRESS is
// the receiving socket's opposite.
func TestServerRFC5780(t *testing.T) {
	t.Parallel()
	s, p := start5780(t, ServerConfig{Software: "sipedge"})
	ips := [2]netip.Addr{loop1, loop2}
	ports := [2]uint16{p, p + 1}
	addr := func(i int) netip.AddrPort { return netip.AddrPortFrom(ips[i>>1], ports[i&1]) }
	if ls := s.Listeners(); len(ls) != 8 {
		t.Fatalf("listeners %v", ls)
	}
	c := udpClient(t, loop1)
	for dst := range 4 {
		for flags := range 4 {
			changeIP, changePort := flags&2 != 0, flags&1 != 0
			res, err := Binding(ctxTimeout(t, 5*time.Second), c, addr(dst), fast, WithChangeRequest(changeIP, changePort))
			if err != nil {
				t.Fatalf("to %v, change IP %v port %v: %v", addr(dst), changeIP, changePort, err)
			}
			want := addr(dst ^ flags)
			if res.From != want || res.ResponseOrigin != want {
				t.Errorf("to %v, change IP %v port %v: from %v, RESPONSE-ORIGIN %v, want %v",
					addr(dst), changeIP, changePort, res.From, res.ResponseOrigin, want)
			}
			if res.OtherAddress != addr(dst^3) || res.Mapped != addrOf(c) {
				t.Errorf("to %v: OTHER-ADDRESS %v (want %v), mapped %v", addr(dst), res.OtherAddress, addr(dst^3), res.Mapped)
			}
		}
	}

	// TCP: the same addresses, but a connection cannot change its source.
	tc, err := net.Dial("tcp", addr(3).String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	res, err := Binding(ctxTimeout(t, 5*time.Second), StreamConn(tc), addr(3), WithRetransmission(0, 1, 0))
	if err != nil || res.ResponseOrigin != addr(3) || res.OtherAddress != addr(0) {
		t.Errorf("TCP: %+v %v", res, err)
	}
	_, err = Binding(ctxTimeout(t, 5*time.Second), StreamConn(tc), addr(3), WithRetransmission(0, 1, 0), WithChangeRequest(true, true))
	var er *ErrorResponse
	if !errors.As(err, &er) || er.Code != 420 {
		t.Errorf("CHANGE-REQUEST over TCP: %v, want 420", err)
	}
}

// TestServerResponsePort is the RFC 5780 §4.6 binding lifetime test: a
// request from socket Y with RESPONSE-PORT naming X's port is answered to
// X.
func TestServerResponsePort(t *testing.T) {
	t.Parallel()
	plain := startServer(t, ServerConfig{Listen: []netip.AddrPort{netip.AddrPortFrom(loop1, 0)}})
	_, p := start5780(t, ServerConfig{})
	for _, tc := range []struct {
		name string
		srv  netip.AddrPort
	}{
		{"plain", addrOfListener(t, plain, "udp")},
		{"RFC 5780", netip.AddrPortFrom(loop1, p)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, y := udpClient(t, loop1), udpClient(t, loop1)
			tr := NewTransaction(tc.srv, WithResponsePort(addrOf(x).Port()), WithRetransmission(50*time.Millisecond, 4, 8))
			got := make(chan string, 8)
			for _, sock := range []*net.UDPConn{x, y} {
				go func() {
					buf := make([]byte, 1500)
					for {
						n, from, err := sock.ReadFromUDPAddrPort(buf)
						if err != nil {
							return
						}
						if tr.Handle(buf[:n], from) {
							got <- addrOf(sock).String()
						}
					}
				}()
			}
			res, err := tr.Run(ctxTimeout(t, 5*time.Second), func(b []byte) error {
				_, err := y.WriteToUDPAddrPort(b, tc.srv)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if on := <-got; on != addrOf(x).String() {
				t.Errorf("response arrived on %s, want X %v", on, addrOf(x))
			}
			if res.Mapped != addrOf(y) {
				t.Errorf("mapped %v, want Y %v (the request's source)", res.Mapped, addrOf(y))
			}
		})
	}
}

// TestServerClassic: an RFC 3489 client gets MAPPED-ADDRESS, SOURCE-ADDRESS
// and CHANGED-ADDRESS, and its CHANGE-REQUEST is honoured.
func TestServerClassic(t *testing.T) {
	t.Parallel()
	_, p := start5780(t, ServerConfig{})
	c := udpClient(t, loop1)
	srv := netip.AddrPortFrom(loop1, p)
	req := classicRequest(t, func(b *Builder) { b.AddChangeRequest(true, false) })
	if _, err := c.WriteToUDPAddrPort(req, srv); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(buf[:n])
	if err != nil || !m.Classic() || m.Class != ClassSuccess || !bytes.Equal(buf[4:20], req[4:20]) {
		t.Fatalf("response %x: %v", buf[:n], err)
	}
	wantFrom := netip.AddrPortFrom(loop2, p)
	mapped, _ := m.MappedAddress()
	source, _ := m.Address(AttrSourceAddress)
	changed, _ := m.Address(AttrChangedAddress)
	if from != wantFrom || source != wantFrom || changed != netip.AddrPortFrom(loop2, p+1) || mapped != addrOf(c) {
		t.Errorf("from %v, SOURCE-ADDRESS %v, CHANGED-ADDRESS %v, MAPPED-ADDRESS %v", from, source, changed, mapped)
	}
}

// TestServerAmplification: whatever is asked, no response exceeds its
// request by more than MaxResponseGrowth bytes.
func TestServerAmplification(t *testing.T) {
	t.Parallel()
	_, p := start5780(t, ServerConfig{Software: strings.Repeat("long software ", 40)})
	c := udpClient(t, loop1)
	srv := netip.AddrPortFrom(loop1, p)
	reqs := [][]byte{
		request(t, false, nil),
		request(t, true, nil),
		request(t, false, func(b *Builder) { b.AddChangeRequest(false, true) }),
		request(t, false, func(b *Builder) { b.AddRaw(0x0777, nil) }),
		request(t, false, func(b *Builder) { b.AddRaw(0x0100, nil); b.AddRaw(0x0101, nil); b.AddRaw(0x0102, nil) }),
		classicRequest(t, nil),
		unhex(t, rfc5769Request),
	}
	buf := make([]byte, 1500)
	for _, req := range reqs {
		if _, err := c.WriteToUDPAddrPort(req, srv); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n > len(req)+MaxResponseGrowth {
			t.Errorf("%d-byte response to a %d-byte request", n, len(req))
		}
	}
}

// TestServerTCPFraming: messages back to back in one write, one message
// dribbled byte by byte, non-requests ignored, and garbage or an oversized
// message closing the connection.
func TestServerTCPFraming(t *testing.T) {
	t.Parallel()
	s := startServer(t, ServerConfig{Listen: []netip.AddrPort{netip.AddrPortFrom(loop1, 0)}})
	srv := addrOfListener(t, s, "tcp")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", srv.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	readResponse := func(c net.Conn, fr *frameReader, want []byte) {
		t.Helper()
		m, err := fr.next()
		if err != nil {
			t.Fatalf("reading a response: %v", err)
		}
		q, _ := Parse(want)
		r, err := Parse(m)
		if err != nil || r.TID != q.TID || r.Class != ClassSuccess {
			t.Fatalf("response %x to %x: %v", m, want, err)
		}
	}

	c := dial()
	fr := newFrameReader(c, MaxStreamMessage)
	a, b := request(t, true, nil), request(t, false, nil)
	ind := func() []byte {
		var bl Builder
		bl.Reset(nil, MethodBinding, ClassIndication, NewTransactionID())
		return bl.Bytes()
	}()
	// Two requests with an indication between them, in one write.
	if _, err := c.Write(append(append(append([]byte{}, a...), ind...), b...)); err != nil {
		t.Fatal(err)
	}
	readResponse(c, fr, a)
	readResponse(c, fr, b)
	// One request split into single bytes.
	d := request(t, true, func(bl *Builder) { bl.AddSoftware("dribble") })
	for i := range d {
		if _, err := c.Write(d[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	readResponse(c, fr, d)

	closed := func(c net.Conn) {
		t.Helper()
		data, err := io.ReadAll(c)
		if len(data) != 0 || err != nil && !isReset(err) {
			t.Errorf("connection not closed: read %q, %v", data, err)
		}
	}
	// HTTP is not STUN.
	g := dial()
	g.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	closed(g)
	// A header announcing more than MaxStreamMessage.
	big := dial()
	big.Write([]byte{0x00, 0x01, 0xFF, 0xFC, 0x21, 0x12, 0xA4, 0x42})
	closed(big)
	// A classic (cookie-less) message is not allowed over TCP.
	cl := dial()
	cl.Write(classicRequest(t, nil))
	closed(cl)

	waitStats(t, s, func(st ServerStats) bool {
		return st.Requests == 4 && st.Answered == 3 && st.Ignored == 1 && st.TCPNotSTUN == 2 && st.TCPTooLarge == 1
	})
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "reset")
}

func TestServerTCPLimits(t *testing.T) {
	t.Parallel()
	s := startServer(t, ServerConfig{
		Listen:           []netip.AddrPort{netip.AddrPortFrom(loop1, 0)},
		MaxTCPConnsPerIP: 2,
		TCPIdleTimeout:   200 * time.Millisecond,
	})
	srv := addrOfListener(t, s, "tcp")
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", srv.String())
		if i == 2 && isReset(err) {
			break // refused so fast that the reset beat connect's return
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The third is refused (closed at once); the first two idle out.
	start := time.Now()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if err == nil {
			t.Errorf("conn %d: read data", i)
		}
	}
	if el := time.Since(start); el < 150*time.Millisecond || el > 4*time.Second {
		t.Errorf("idle connections closed after %v, want about 200ms", el)
	}
	waitStats(t, s, func(st ServerStats) bool {
		return st.TCPRefused == 1 && st.TCPIdle == 2 && st.TCPAccepted == 2 && st.TCPOpen == 0
	})
}

func TestServerRateLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t, ServerConfig{Listen: []netip.AddrPort{netip.AddrPortFrom(loop1, 0)}, RateLimit: 0.5, RateBurst: 3})
	srv := addrOfListener(t, s, "udp")
	c := udpClient(t, loop1)
	for range 10 {
		if _, err := c.WriteToUDPAddrPort(request(t, false, nil), srv); err != nil {
			t.Fatal(err)
		}
	}
	answers := 0
	buf := make([]byte, 1500)
	for {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		answers++
	}
	if st := s.Stats(); answers != 3 || st.RateLimited != 7 || st.Answered != 3 || st.Requests != 10 {
		t.Errorf("%d answers, stats %+v; want 3 answered, 7 rate-limited", answers, st)
	}
	// Over TCP the budget is spent (same source IP): the connection is
	// closed rather than left waiting.
	tc, err := net.Dial("tcp", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write(request(t, false, nil))
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := tc.Read(buf); err == nil {
		t.Errorf("rate-limited TCP request answered (%d bytes)", n)
	}
	waitStats(t, s, func(st ServerStats) bool { return st.RateLimited == 8 })
}

// TestServerClose: Close ends every goroutine, open connections included,
// and can be called twice.
func TestServerClose(t *testing.T) {
	t.Parallel()
	s, err := NewServer(ServerConfig{Listen: []netip.AddrPort{netip.AddrPortFrom(loop1, 0), netip.AddrPortFrom(loop1, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s.Listeners()); n != 4 {
		t.Fatalf("%d listeners", n)
	}
	srv := addrOfListener(t, s, "tcp")
	c, err := net.Dial("tcp", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Wait until the server holds the connection.
	for deadline := time.Now().Add(5 * time.Second); s.Stats().TCPOpen != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("connection not accepted")
		}
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after Close")
	}
	if _, err := net.Dial("tcp", srv.String()); err == nil {
		t.Error("TCP listener still open after Close")
	}
	s.Close()
}

func TestNewServerErrors(t *testing.T) {
	t.Parallel()
	p := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	for _, tc := range []struct {
		name string
		cfg  ServerConfig
		want string
	}{
		{"no address", ServerConfig{}, "no listen address"},
		{"wildcard", ServerConfig{Listen: []netip.AddrPort{p("0.0.0.0:3478")}, AlternateIP: loop2}, "concrete primary IP"},
		{"two addresses", ServerConfig{Listen: []netip.AddrPort{p("127.0.0.1:3478"), p("127.0.0.3:3478")}, AlternateIP: loop2}, "exactly one"},
		{"port 0", ServerConfig{Listen: []netip.AddrPort{p("127.0.0.1:0")}, AlternateIP: loop2}, "fixed primary port"},
		{"family", ServerConfig{Listen: []netip.AddrPort{p("127.0.0.1:3478")}, AlternateIP: netip.MustParseAddr("::1")}, "family"},
		{"same IP", ServerConfig{Listen: []netip.AddrPort{p("127.0.0.1:3478")}, AlternateIP: loop1}, "is the primary IP"},
		{"port 65535", ServerConfig{Listen: []netip.AddrPort{p("127.0.0.1:65535")}, AlternateIP: loop2}, "no room"},
		{"same port", ServerConfig{Listen: []netip.AddrPort{p("127.0.0.1:3478")}, AlternateIP: loop2, AlternatePort: 3478}, "is the primary port"},
	} {
		if s, err := NewServer(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			if s != nil {
				s.Close()
			}
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	// A port in use: the error says so and nothing stays bound.
	busy := udpClient(t, loop1)
	_, err := NewServer(ServerConfig{Listen: []netip.AddrPort{netip.AddrPortFrom(loop1, 0), addrOf(busy)}})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("port in use: %v", err)
	}
}

func TestLimiter(t *testing.T) {
	t.Parallel()
	l := newLimiter(10, 3, 64)
	a := netip.MustParseAddr("192.0.2.1")
	now := time.Now().UnixNano()
	for i := range 3 {
		if !l.allow(a, now) {
			t.Fatalf("burst message %d refused", i)
		}
	}
	if l.allow(a, now) {
		t.Fatal("4th message of a burst of 3 allowed")
	}
	if !l.allow(netip.MustParseAddr("192.0.2.2"), now) {
		t.Fatal("another source refused")
	}
	now += int64(100 * time.Millisecond) // one token at 10/s
	if !l.allow(a, now) || l.allow(a, now) {
		t.Fatal("refill: want exactly one more message after 100ms")
	}
	// IPv6 sources share their /64.
	v6a, v6b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::2")
	for range 3 {
		l.allow(v6a, now)
	}
	if l.allow(v6b, now) {
		t.Error("same /64 has its own bucket")
	}
	if !l.allow(netip.MustParseAddr("2001:db8:1:3::1"), now) {
		t.Error("another /64 refused")
	}
	// IPv4-mapped is IPv4.
	if l.allow(netip.MustParseAddr("::ffff:192.0.2.1"), now) {
		t.Error("v4-mapped address has its own bucket")
	}
	if newLimiter(0, 10, 0) != nil || newLimiter(-1, 0, 0) != nil {
		t.Error("rate <= 0 must disable the limit")
	}
	var off *limiter
	if !off.allow(a, now) {
		t.Error("nil limiter refused")
	}
}

// TestLimiterBounded: a flood from many (spoofed) sources cannot grow the
// table past its bound; idle sources are forgotten.
func TestLimiterBounded(t *testing.T) {
	t.Parallel()
	l := newLimiter(20, 40, 256)
	now := time.Now().UnixNano()
	for i := range 100000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.allow(a, now+int64(i))
	}
	if n := l.sources(); n > 256 {
		t.Errorf("%d sources tracked, bound 256", n)
	}
	if l.evicted.Load() == 0 {
		t.Error("no eviction counted")
	}
	// Two seconds later every bucket is full again: sources expire.
	later := now + int64(100000) + int64(3*time.Second)
	l.allow(netip.MustParseAddr("192.0.2.1"), later)
	for i := range limiterShards {
		s := &l.shards[i]
		s.mu.Lock()
		s.sweep(later)
		s.mu.Unlock()
	}
	if n := l.sources(); n > 1 {
		t.Errorf("%d sources after expiry", n)
	}
}

func TestStreamConnGarbage(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go b.Write([]byte("SIP/2.0 200 OK\r\n"))
	a.SetDeadline(time.Now().Add(5 * time.Second))
	sc := StreamConn(a)
	_, _, err := sc.ReadFrom(make([]byte, 100))
	if !errors.Is(err, ErrStreamNotSTUN) {
		t.Errorf("ReadFrom on a SIP stream: %v", err)
	}
}
