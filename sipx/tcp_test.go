package sipx

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// respondOK makes the handler answer every non-ACK request 200 statelessly.
func respondOK(h *recHandler) {
	h.onRequest = func(st *Stack, r *Request, f Flow) {
		if r.Method != ACK {
			_ = st.Respond(NewResponse(r, 200, "OK"), f)
		}
	}
}

// RFC 5626 §3.5.1: a CRLFCRLF ping on a stream is answered with a CRLF pong
// (the client gives up after 10 s). readTCP peeks one byte past the ping,
// which blocks until more data arrives or the idle deadline (15 min) hits,
// so the pong is never sent in time.
func TestTCPKeepalivePong(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
	}{
		{"one write", []string{"\r\n\r\n"}},
		{"split write", []string{"\r\n", "\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startStack(t, Config{}, nil, true)
			c := dialTCP(t, ts.tcp)
			for _, ch := range tc.chunks {
				c.write(ch)
				time.Sleep(20 * time.Millisecond)
			}
			_ = c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 2)
			if _, err := io.ReadFull(c.c, buf); err != nil || string(buf) != "\r\n" {
				t.Fatalf("no CRLF pong to a CRLFCRLF ping within 2s: %q, %v", buf, err)
			}
			if n := ts.Stats.Keepalives.Load(); n != 1 {
				t.Errorf("Keepalives = %d", n)
			}
		})
	}
}

// A ping followed at once by a request in the same write is answered and
// the request still gets through (pins current behaviour that works).
func TestTCPKeepaliveThenRequest(t *testing.T) {
	h := newRecHandler()
	respondOK(h)
	ts := startStack(t, Config{}, h, true)
	c := dialTCP(t, ts.tcp)
	spec := newSpec("OPTIONS", "10.0.0.5:5060")
	spec.Transport = "TCP"
	c.write("\r\n\r\n" + spec.String())
	_ = c.c.SetReadDeadline(time.Now().Add(wait))
	b, err := c.r.Peek(2)
	if err != nil || string(b) != "\r\n" {
		t.Fatalf("pong %q, %v", b, err)
	}
	m, err := c.readMsg(wait)
	if err != nil {
		t.Fatal(err)
	}
	if res, ok := m.(*Response); !ok || res.StatusCode != 200 {
		t.Fatalf("got %v", firstLine(m))
	}
}

// A request over TCP is stamped, and the response goes back on the same
// connection; the flow names the connection and ConnAlive follows it. Once
// the peer closes, Send on the flow fails with ErrFlowGone and a client
// transaction on it gets a synthetic 503.
func TestTCPRequestResponseSameConn(t *testing.T) {
	h := newRecHandler()
	respondOK(h)
	ts := startStack(t, Config{}, h, true)
	c := dialTCP(t, ts.tcp)
	spec := newSpec("OPTIONS", "10.0.0.5:5060")
	spec.Transport = "TCP"
	c.write(spec.String())
	g := h.waitReq(t, wait)
	if g.Flow.Transport != TCP || g.Flow.ConnID == 0 || g.Flow.Remote != c.addr() || g.Flow.Local != ts.tcp {
		t.Fatalf("flow %+v", g.Flow)
	}
	v := g.Req.Via()
	if rp, _ := v.Params.Get("rport"); rp != strconv.Itoa(int(c.addr().Port())) {
		t.Errorf("rport %q", rp)
	}
	if rc, _ := v.Params.Get("received"); rc != "127.0.0.1" {
		t.Errorf("received %q", rc)
	}
	m, err := c.readMsg(wait)
	if err != nil {
		t.Fatal(err)
	}
	if res, ok := m.(*Response); !ok || res.StatusCode != 200 || Branch(res) != spec.Branch {
		t.Fatalf("got %s", firstLine(m))
	}
	if !ts.ConnAlive(g.Flow) {
		t.Error("ConnAlive false on an open connection")
	}
	if !ts.ConnAlive(Flow{Transport: UDP}) {
		t.Error("ConnAlive false for UDP")
	}
	// Token of a TCP flow round-trips with its ConnID.
	if f2, err := ParseToken(g.Flow.Token()); err != nil || f2 != g.Flow {
		t.Errorf("token round trip %+v %v", f2, err)
	}

	_ = c.c.Close()
	waitFor(t, wait, "ConnAlive false", func() bool { return !ts.ConnAlive(g.Flow) })
	if err := ts.Send(NewResponse(g.Req, 200, "OK"), g.Flow); !errors.Is(err, ErrFlowGone) {
		t.Errorf("Send on closed flow: %v, want ErrFlowGone", err)
	}
	rec := newRespRec()
	req := mustParseReq(t, newSpec("OPTIONS", ts.tcp.String()).String())
	tx, err := ts.NewClientTx(req, g.Flow, rec.fn)
	if !errors.Is(err, ErrFlowGone) || tx == nil {
		t.Errorf("NewClientTx on closed flow: %v", err)
	}
	res, _ := rec.next(t, wait)
	if res.StatusCode != 503 || !IsSynthetic(res) {
		t.Errorf("got %d synthetic=%v, want synthetic 503", res.StatusCode, IsSynthetic(res))
	}
	if _, n := ts.Transactions(); n != 0 {
		t.Errorf("client transactions = %d", n)
	}
}

// Back-to-back and fragmented messages on one connection are framed and
// delivered in order.
func TestTCPFraming(t *testing.T) {
	h := newRecHandler()
	ts := startStack(t, Config{}, h, true)
	c := dialTCP(t, ts.tcp)
	var specs []reqSpec
	all := ""
	for i := 0; i < 3; i++ {
		s := newSpec("MESSAGE", "10.0.0.5:5060")
		s.Transport = "TCP"
		s.Body = "body " + strconv.Itoa(i)
		s.Extra = []string{"Content-Type: text/plain"}
		specs = append(specs, s)
		all += s.String()
	}
	c.write(all)
	for i := range specs {
		g := h.waitReq(t, wait)
		if Branch(g.Req) != specs[i].Branch || string(g.Req.Body()) != specs[i].Body {
			t.Fatalf("message %d: branch %s body %q", i, Branch(g.Req), g.Req.Body())
		}
	}
	// One message dribbled in small pieces.
	s := newSpec("MESSAGE", "10.0.0.5:5060")
	s.Transport = "TCP"
	s.Body = "fragmented body"
	raw := s.String()
	for i := 0; i < len(raw); i += 17 {
		c.write(raw[i:min(i+17, len(raw))])
		time.Sleep(time.Millisecond)
	}
	g := h.waitReq(t, wait)
	if Branch(g.Req) != s.Branch || string(g.Req.Body()) != s.Body {
		t.Fatalf("fragmented: %s %q", Branch(g.Req), g.Req.Body())
	}
	h.noReq(t, 50*time.Millisecond)
}

// A stream message without Content-Length loses framing: parse error, the
// connection is closed.
func TestTCPFramingErrorClosesConn(t *testing.T) {
	ts := startStack(t, Config{}, nil, true)
	for _, bad := range []string{
		"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.5\r\n\r\n",
		"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
		"NOT SIP AT ALL\r\nContent-Length: 0\r\n\r\n",
	} {
		c := dialTCP(t, ts.tcp)
		before := ts.Stats.ParseErrors.Load()
		c.write(bad)
		_ = c.c.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.c.Read(make([]byte, 10)); err == nil {
			t.Errorf("%q: connection not closed", bad)
		}
		waitFor(t, wait, "parse error", func() bool { return ts.Stats.ParseErrors.Load() == before+1 })
	}
}

// TCPIdle closes a silent connection.
func TestTCPIdleClose(t *testing.T) {
	ts := startStack(t, Config{TCPIdle: 150 * time.Millisecond}, nil, true)
	c := dialTCP(t, ts.tcp)
	start := time.Now()
	_ = c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err := c.c.Read(make([]byte, 1))
	if err == nil {
		t.Fatal("read data from an idle connection")
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 2*time.Second {
		t.Errorf("closed after %v, TCPIdle 150ms", el)
	}
}

// Send on a TCP flow without ConnID dials the peer once and reuses the
// connection; what the peer sends back on it is read by the stack.
func TestTCPDialAndReuse(t *testing.T) {
	h := newRecHandler()
	ts := startStack(t, Config{}, h, true)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	remote := l.Addr().(*net.TCPAddr).AddrPort()
	f := Flow{Transport: TCP, Remote: remote}

	rec := newRespRec()
	spec := newSpec("OPTIONS", ts.tcp.String())
	spec.Transport = "TCP"
	tx, err := ts.NewClientTx(mustParseReq(t, spec.String()), f, rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	_ = tx
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	raw, err := readStreamMessage(r)
	if err != nil {
		t.Fatal(err)
	}
	got := mustParseReq(t, string(raw))
	if _, err := conn.Write(respBytes(got, 200, "OK", "x")); err != nil {
		t.Fatal(err)
	}
	if res, _ := rec.next(t, wait); res.StatusCode != 200 || IsSynthetic(res) {
		t.Fatalf("got %d", res.StatusCode)
	}
	// Over TCP Timer K is 0: the transaction is gone at once.
	waitFor(t, wait, "Timer K=0", func() bool { _, c := ts.Transactions(); return c == 0 })

	// Second send reuses the connection (no new Accept).
	spec2 := newSpec("OPTIONS", ts.tcp.String())
	if err := ts.SendRaw(spec2.bytes(), f); err != nil {
		t.Fatal(err)
	}
	raw, err = readStreamMessage(r)
	if err != nil || Branch(mustParseReq(t, string(raw))) != spec2.Branch {
		t.Fatalf("second message: %v", err)
	}
	l.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if c2, err := l.Accept(); err == nil {
		c2.Close()
		t.Error("stack dialled a second connection instead of reusing")
	}
}

// INVITE server transaction over TCP: no Timer G, and the ACK ends it at
// once (Timer I = 0).
func TestTCPServerTxInvite(t *testing.T) {
	h := newRecHandler()
	inviteServer(h, 486)
	ts := startStack(t, Config{T1: 20 * time.Millisecond}, h, true)
	c := dialTCP(t, ts.tcp)
	inv := newSpec("INVITE", "10.0.0.5:5060")
	inv.Transport = "TCP"
	c.write(inv.String())
	m, err := c.readMsg(wait)
	if err != nil {
		t.Fatal(err)
	}
	if res, ok := m.(*Response); !ok || res.StatusCode != 486 {
		t.Fatalf("got %s", firstLine(m))
	}
	if m2, err := c.readMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("retransmission over TCP: %s", firstLine(m2))
	}
	c.write(inv.derive("ACK", inv.Branch, toTag(m)).String())
	waitFor(t, wait, "Timer I=0", func() bool { s, _ := ts.Transactions(); return s == 0 })
	if n := h.nReq.Load(); n != 1 {
		t.Errorf("handler saw %d requests (ACK not absorbed?)", n)
	}
}

func firstLine(m Message) string {
	s := m.String()
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// Concurrent sends to a TCP peer with no connection yet must share one
// dialled connection. tcpConnFor checks byAddr, drops the lock and dials,
// so a burst (e.g. forking, or an INVITE and its CANCEL) opens one
// connection per message: a connection storm toward the peer, and messages
// of one dialog spread over connections with no ordering between them.
func TestTCPConcurrentSendsDialOnce(t *testing.T) {
	ts := startStack(t, Config{}, nil, true)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conns := make(chan net.Conn, 64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	f := Flow{Transport: TCP, Remote: l.Addr().(*net.TCPAddr).AddrPort()}
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := ts.SendRaw(newSpec("OPTIONS", ts.tcp.String()).bytes(), f); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	_ = l.Close()
	var got []net.Conn
	for c := range conns {
		got = append(got, c)
		defer c.Close()
	}
	if len(got) != 1 {
		t.Fatalf("%d concurrent sends opened %d connections, want 1", n, len(got))
	}
	r := bufio.NewReader(got[0])
	for i := 0; i < n; i++ {
		_ = got[0].SetReadDeadline(time.Now().Add(wait))
		if _, err := readStreamMessage(r); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}
