package stun

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// server runs handle for every datagram received on a loopback socket
// until the test ends. handle gets its own copy of the packet.
func server(t *testing.T, handle func(c *net.UDPConn, b []byte, from netip.AddrPort)) *net.UDPConn {
	t.Helper()
	c := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			handle(c, slices.Clone(buf[:n]), from)
		}
	}()
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return c
}

// responder answers with Respond, except for the first drop requests.
func responder(t *testing.T, drop int, o *ResponderOptions) (*net.UDPConn, *atomic.Int32) {
	var seen atomic.Int32
	c := server(t, func(c *net.UDPConn, b []byte, from netip.AddrPort) {
		if int(seen.Add(1)) <= drop {
			return
		}
		if out, ok := Respond(nil, b, from, o); ok {
			c.WriteToUDPAddrPort(out, from)
		}
	})
	return c, &seen
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestBindingLoopback(t *testing.T) {
	srv, seen := responder(t, 0, &ResponderOptions{Software: "test server"})
	cl := listen(t)
	res, err := Binding(ctxTimeout(t, 5*time.Second), cl, addrOf(srv))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mapped != addrOf(cl) || res.XORMapped != addrOf(cl) || res.PlainMapped != addrOf(cl) {
		t.Errorf("mapped %v / %v / %v, want %v", res.Mapped, res.XORMapped, res.PlainMapped, addrOf(cl))
	}
	if res.From != addrOf(srv) || res.Sent != 1 || res.RTT <= 0 || res.Software != "test server" {
		t.Errorf("result %+v", res)
	}
	if n := seen.Load(); n != 1 {
		t.Errorf("server saw %d requests", n)
	}

	// A connected socket works too (Write instead of WriteTo).
	dialed, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addrOf(srv)))
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	res, err = Binding(ctxTimeout(t, 5*time.Second), dialed, addrOf(srv))
	if err != nil || res.Mapped != dialed.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("connected socket: %+v %v", res, err)
	}

	// The socket is handed back usable: no read deadline left behind.
	peer := listen(t)
	peer.WriteToUDPAddrPort([]byte("after"), addrOf(cl))
	buf := make([]byte, 16)
	cl.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, _, err := cl.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "after" {
		t.Errorf("read after Binding: %q %v", buf[:n], err)
	}
}

func TestBindingRetransmits(t *testing.T) {
	// The server loses the first request: the retransmission, due one RTO
	// later, with the same transaction id, gets the answer.
	var mu sync.Mutex
	var tids [][12]byte
	srv := server(t, func(c *net.UDPConn, b []byte, from netip.AddrPort) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		mu.Lock()
		tids = append(tids, m.TID)
		first := len(tids) == 1
		mu.Unlock()
		if first {
			return
		}
		if out, ok := Respond(nil, b, from, nil); ok {
			c.WriteToUDPAddrPort(out, from)
		}
	})
	cl := listen(t)
	start := time.Now()
	res, err := Binding(ctxTimeout(t, 5*time.Second), cl, addrOf(srv))
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < DefaultRTO {
		t.Errorf("answered after %v, before the first retransmission was due", el)
	}
	if res.Sent != 2 || res.Mapped != addrOf(cl) || res.RTT < DefaultRTO {
		t.Errorf("result %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tids) != 2 || tids[0] != tids[1] {
		t.Errorf("server saw %d requests with ids %x; want 2, the same", len(tids), tids)
	}
}

func TestBindingContextDeadline(t *testing.T) {
	silent := server(t, func(*net.UDPConn, []byte, netip.AddrPort) {})
	cl := listen(t)
	start := time.Now()
	_, err := Binding(ctxTimeout(t, 300*time.Millisecond), cl, addrOf(silent))
	el := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a deadline error", err)
	}
	if el < 300*time.Millisecond || el > 3*time.Second {
		t.Errorf("returned after %v", el)
	}

	// Cancellation works too, and the socket still serves a transaction.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := Binding(ctx, cl, addrOf(silent)); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	srv, _ := responder(t, 0, nil)
	if res, err := Binding(ctxTimeout(t, 5*time.Second), cl, addrOf(srv)); err != nil || res.Mapped != addrOf(cl) {
		t.Errorf("Binding after a cancelled one: %+v %v", res, err)
	}
}

func TestBindingRetransmissionSchedule(t *testing.T) {
	var times []time.Time
	var mu sync.Mutex
	silent := server(t, func(*net.UDPConn, []byte, netip.AddrPort) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
	})
	cl := listen(t)
	const rto = 40 * time.Millisecond
	start := time.Now()
	_, err := Binding(ctxTimeout(t, 10*time.Second), cl, addrOf(silent), WithRetransmission(rto, 4, 3))
	el := time.Since(start)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
	// Sends at 0, 40, 120, 280 ms; gives up 3 RTOs later, at 400 ms.
	if want := 10 * rto; el < want || el > want+2*time.Second {
		t.Errorf("gave up after %v, want about %v", el, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 4 {
		t.Fatalf("%d transmissions, want 4", len(times))
	}
	for i := 1; i < len(times); i++ {
		if gap, min := times[i].Sub(times[i-1]), rto<<(i-1); gap < min-5*time.Millisecond {
			t.Errorf("gap %d is %v, want at least %v", i, gap, min)
		}
	}
}

func TestBindingIgnoresMismatched(t *testing.T) {
	bogus := netip.MustParseAddrPort("203.0.113.66:6666")
	impostor := listen(t)
	srv := server(t, func(c *net.UDPConn, b []byte, from netip.AddrPort) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		reply := func(conn *net.UDPConn, tid [12]byte, class Class, ap netip.AddrPort) {
			var bl Builder
			bl.Reset(nil, MethodBinding, class, tid)
			if class == ClassError {
				bl.AddErrorCode(500, "bogus")
			} else {
				bl.AddXORMappedAddress(ap)
			}
			conn.WriteToUDPAddrPort(bl.Bytes(), from)
		}
		other := m.TID
		other[0] ^= 1
		reply(c, other, ClassSuccess, bogus)        // wrong transaction id
		reply(c, other, ClassError, bogus)          // wrong id, error
		reply(impostor, m.TID, ClassSuccess, bogus) // right id, wrong source
		c.WriteToUDPAddrPort([]byte("SIP/2.0 200 OK\r\n\r\n"), from)
		bad := unhex(t, rfc5769IPv4Response) // a valid message, other id
		c.WriteToUDPAddrPort(bad, from)
		time.Sleep(20 * time.Millisecond) // let the decoys arrive first
		reply(c, m.TID, ClassSuccess, from)
	})
	cl := listen(t)
	res, err := Binding(ctxTimeout(t, 5*time.Second), cl, addrOf(srv))
	if err != nil {
		t.Fatal(err)
	}
	if res.Mapped != addrOf(cl) || res.From != addrOf(srv) || res.Sent != 1 {
		t.Errorf("result %+v, want mapped %v from %v", res, addrOf(cl), addrOf(srv))
	}
}

func TestBindingChangeRequest(t *testing.T) {
	// An RFC 5780-style server: answers a change request from its other
	// socket.
	alt := listen(t)
	o := &ResponderOptions{OtherAddress: addrOf(alt)}
	srv := server(t, func(c *net.UDPConn, b []byte, from netip.AddrPort) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		o := *o
		out := c
		if ip, port, _ := m.ChangeRequest(); ip || port {
			out = alt
		}
		o.ResponseOrigin = addrOf(out)
		if resp, ok := Respond(nil, b, from, &o); ok {
			out.WriteToUDPAddrPort(resp, from)
		}
	})
	cl := listen(t)
	res, err := Binding(ctxTimeout(t, 5*time.Second), cl, addrOf(srv), WithChangeRequest(false, true))
	if err != nil {
		t.Fatal(err)
	}
	if res.From != addrOf(alt) || res.ResponseOrigin != addrOf(alt) || res.OtherAddress != addrOf(alt) || res.Mapped != addrOf(cl) {
		t.Errorf("result %+v", res)
	}

	// Without the change, the answer from the alternate socket would be
	// ignored; a plain request is answered by the main socket.
	res, err = Binding(ctxTimeout(t, 5*time.Second), cl, addrOf(srv))
	if err != nil || res.From != addrOf(srv) {
		t.Errorf("plain request: %+v %v", res, err)
	}
}

func TestBindingErrorResponse(t *testing.T) {
	srv, _ := responder(t, 0, nil) // no other address: CHANGE-REQUEST is refused
	cl := listen(t)
	_, err := Binding(ctxTimeout(t, 5*time.Second), cl, addrOf(srv), WithChangeRequest(true, true))
	var er *ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("error %v, want an *ErrorResponse", err)
	}
	if er.Code != 420 || !slices.Equal(er.Unknown, []uint16{AttrChangeRequest}) {
		t.Errorf("error response %+v", er)
	}
}

func TestTransactionDemultiplexed(t *testing.T) {
	// A socket read by someone else (as the SIP stack reads its port):
	// the reader hands STUN to Handle and keeps everything else.
	srv, _ := responder(t, 0, nil)
	cl := listen(t)
	tr := NewTransaction(addrOf(srv), WithSoftware("probe"))
	if m, err := Parse(tr.Request()); err != nil || m.TID != tr.TID() || m.Software() != "probe" || CheckFingerprint(tr.Request()) != nil {
		t.Fatalf("request %x: %v", tr.Request(), err)
	}
	other := make(chan string, 4)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := cl.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if IsMessage(buf[:n]) && tr.Handle(buf[:n], from) {
				continue
			}
			other <- string(buf[:n])
		}
	}()
	peer := listen(t)
	peer.WriteToUDPAddrPort([]byte("OPTIONS sip:x SIP/2.0\r\n\r\n"), addrOf(cl))
	res, err := tr.Run(ctxTimeout(t, 5*time.Second), func(b []byte) error {
		_, err := cl.WriteToUDPAddrPort(b, addrOf(srv))
		return err
	})
	if err != nil || res.Mapped != addrOf(cl) {
		t.Fatalf("%+v %v", res, err)
	}
	select {
	case s := <-other:
		if s != "OPTIONS sip:x SIP/2.0\r\n\r\n" {
			t.Errorf("reader got %q", s)
		}
	case <-time.After(2 * time.Second):
		t.Error("non-STUN packet lost")
	}
	// A late duplicate is still recognised (and not passed on), a
	// stranger's response is not.
	dup, _ := Respond(nil, tr.Request(), addrOf(cl), nil)
	if !tr.Handle(dup, addrOf(srv)) {
		t.Error("late duplicate not recognised")
	}
	if tr.Handle(dup, addrOf(peer)) {
		t.Error("response from another source accepted")
	}
	if tr.Handle(tr.Request(), addrOf(srv)) {
		t.Error("a request taken for a response")
	}
}

func TestTransactionSendError(t *testing.T) {
	tr := NewTransaction(netip.MustParseAddrPort("127.0.0.1:9"))
	boom := errors.New("boom")
	if _, err := tr.Run(context.Background(), func([]byte) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("error %v, want boom", err)
	}
}

func TestTransactionBadResponses(t *testing.T) {
	server := netip.MustParseAddrPort("127.0.0.1:3478")
	for _, tc := range []struct {
		name string
		add  func(b *Builder)
		want error
	}{
		{"no mapped address", func(b *Builder) { b.AddSoftware("x") }, ErrNoMappedAddress},
		{"unknown comprehension-required", func(b *Builder) {
			b.AddXORMappedAddress(server)
			b.AddRaw(0x0777, nil)
		}, ErrUnknownRequired},
		{"malformed address", func(b *Builder) { b.AddRaw(AttrXORMappedAddress, []byte{0, 9, 0, 0}) }, ErrBadAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTransaction(server, WithoutFingerprint())
			if m, err := Parse(tr.Request()); err != nil || len(m.Attrs) != 0 {
				t.Errorf("WithoutFingerprint request: %v %+v", err, m)
			}
			res, err := tr.Run(context.Background(), func([]byte) error {
				var b Builder
				b.Reset(nil, MethodBinding, ClassSuccess, tr.TID())
				tc.add(&b)
				b.AddFingerprint()
				go tr.Handle(b.Bytes(), server)
				return nil
			})
			if !errors.Is(err, tc.want) {
				t.Errorf("result %+v, error %v; want %v", res, err, tc.want)
			}
		})
	}
}
