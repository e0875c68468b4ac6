package sipx

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// settleGoroutines waits until at most n goroutines run, returning the last
// count.
func settleGoroutines(n int, d time.Duration) int {
	end := time.Now().Add(d)
	for {
		g := runtime.NumGoroutine()
		if g <= n || time.Now().After(end) {
			return g
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close stops the read loops, TCP connections (accepted and dialled) and
// transaction timers, and leaves no goroutine behind.
func TestCloseNoGoroutineLeak(t *testing.T) {
	before := settleGoroutines(0, 200*time.Millisecond)

	const t1 = 50 * time.Millisecond
	h := newRecHandler()
	inviteServer(h, 486) // server tx with Timer G running
	ts := startStack(t, Config{T1: t1}, h, true)

	// Raw sockets without reader goroutines.
	ua, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	inv := newSpec("INVITE", "10.0.0.5:5060")
	if _, err := ua.WriteToUDPAddrPort(inv.bytes(), ts.udp); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "server tx", func() bool { s, _ := ts.Transactions(); return s == 1 })

	// Client transactions to a silent peer (Timers A/B) and over TCP.
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	req := mustParseReq(t, newSpec("INVITE", ts.udp.String()).String())
	if _, err := ts.NewClientTx(req, ts.udpFlow(silent.LocalAddr().(*net.UDPAddr).AddrPort()), func(*ClientTx, *Response) {}); err != nil {
		t.Fatal(err)
	}

	// Accepted TCP connections, and one the stack dials.
	c1, err := net.Dial("tcp", ts.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := net.Dial("tcp", ts.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := Flow{Transport: TCP, Remote: l.Addr().(*net.TCPAddr).AddrPort()}
	if err := ts.SendRaw(newSpec("OPTIONS", ts.tcp.String()).bytes(), out); err != nil {
		t.Fatal(err)
	}
	dialled, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer dialled.Close()
	waitFor(t, wait, "accepted", func() bool { return ts.allowed.Load() >= 2 })

	if _, c := ts.Transactions(); c != 1 {
		t.Fatalf("client transactions %d", c)
	}

	done := make(chan struct{})
	go func() { _ = ts.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	if err := ts.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	if s, c := ts.Transactions(); s != 0 || c != 0 {
		t.Errorf("transactions after Close: %d/%d", s, c)
	}
	if err := ts.SendRaw([]byte("x"), ts.udpFlow(ts.udp)); !errors.Is(err, ErrClosed) {
		t.Errorf("SendRaw after Close: %v", err)
	}
	retr := ts.Stats.Retransmissions.Load()
	tx := ts.Stats.TxPackets.Load()
	time.Sleep(8 * t1)
	if ts.Stats.Retransmissions.Load() != retr || ts.Stats.TxPackets.Load() != tx {
		t.Error("timers still firing after Close")
	}
	// Connections are closed from the stack side.
	for _, c := range []net.Conn{c1, c2, dialled} {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if _, err := io.Copy(io.Discard, c); err != nil { // nil = EOF
			t.Errorf("connection %v still open after Close: %v", c.LocalAddr(), err)
		}
	}

	if g := settleGoroutines(before, 3*time.Second); g > before {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("goroutines: %d before, %d after Close\n%s", before, g, buf[:n])
	}
}

// ServeUDP/ServeTCP called after (or racing with) Close register a socket
// that Close never sees, and serve it forever; they should return at once.
func TestServeAfterClose(t *testing.T) {
	s := New(Config{Logger: discardLogger}, newRecHandler())
	_ = s.Close()

	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	udpDone := make(chan error, 1)
	tcpDone := make(chan error, 1)
	go func() { udpDone <- s.ServeUDP(uc) }()
	go func() { tcpDone <- s.ServeTCP(l) }()
	for name, ch := range map[string]chan error{"ServeUDP": udpDone, "ServeTCP": tcpDone} {
		select {
		case <-ch:
		case <-time.After(500 * time.Millisecond):
			t.Errorf("%s on a closed Stack keeps serving", name)
		}
	}
	// Unblock them for the rest of the run.
	_ = uc.Close()
	_ = l.Close()
}

// A connection accepted while Close runs (between Accept and addConn) is
// registered after Close swept s.conns, so it is never closed and its
// readTCP goroutine lives until TCPIdle (15 min by default). Config.Allow
// runs exactly in that window, so it can hold the accept there.
func TestCloseRacingAccept(t *testing.T) {
	inAllow := make(chan struct{})
	release := make(chan struct{})
	var ts *testStack
	armed := make(chan struct{})
	ts = startStack(t, Config{Allow: func(netip.Addr) bool {
		select {
		case <-armed:
			close(inAllow)
			<-release
		default:
		}
		return true
	}}, nil, true)
	close(armed)

	c, err := net.Dial("tcp", ts.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-inAllow:
	case <-time.After(wait):
		t.Fatal("accept not reached")
	}
	closed := make(chan struct{})
	go func() { _ = ts.Close(); close(closed) }()
	// Close has begun (SendRaw sees it) and has swept the connections it
	// knows; only then does the accept proceed.
	waitFor(t, wait, "Close started", func() bool { return errors.Is(ts.SendRaw(nil, Flow{}), ErrClosed) })
	time.Sleep(50 * time.Millisecond)
	close(release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("connection accepted during Close is still served after Close returned: %v", err)
	}
}
