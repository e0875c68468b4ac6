package sipx

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const wait = 2 * time.Second

// A request from behind a NAT (private Via sent-by, no rport) is stamped with
// the observed source, and a stateless response goes back to that source.
func TestStackNATStampAndRespond(t *testing.T) {
	for _, viaParams := range []string{"", ";rport"} {
		t.Run("via"+viaParams, func(t *testing.T) {
			ts := startStack(t, Config{}, nil, false)
			peer := newUDPPeer(t)
			spec := newSpec("OPTIONS", "10.0.0.5:5060")
			spec.ViaParams = viaParams
			peer.send(ts.udp, spec.bytes())

			g := ts.h.waitReq(t, wait)
			v := g.Req.Via()
			if got, _ := v.Params.Get("received"); got != "127.0.0.1" {
				t.Errorf("received = %q, want 127.0.0.1 (Via %s)", got, v.Value())
			}
			if got, _ := v.Params.Get("rport"); got != strconv.Itoa(int(peer.addr().Port())) {
				t.Errorf("rport = %q, want %d (Via %s)", got, peer.addr().Port(), v.Value())
			}
			if v.Host != "10.0.0.5" || v.Port != 5060 {
				t.Errorf("sent-by changed: %s", v.Value())
			}
			if g.Flow.Transport != UDP || g.Flow.Remote != peer.addr() || g.Flow.Local != ts.udp || g.Flow.ConnID != 0 {
				t.Errorf("flow = %+v", g.Flow)
			}
			if g.Req.Source() != peer.addr().String() {
				t.Errorf("Source() = %q", g.Req.Source())
			}

			if err := ts.Respond(NewResponse(g.Req, 200, "OK"), g.Flow); err != nil {
				t.Fatal(err)
			}
			m := peer.expect(wait, "200", isRes(200))
			rv := m.Msg.Via()
			if got, _ := rv.Params.Get("received"); got != "127.0.0.1" {
				t.Errorf("response Via lost received: %s", rv.Value())
			}
			if b := Branch(m.Msg); b != spec.Branch {
				t.Errorf("response branch %q, want %q", b, spec.Branch)
			}
		})
	}
}

// A request missing a mandatory header gets a 400 and counts as a parse
// error; it never reaches the handler.
func TestStackBadRequest(t *testing.T) {
	ts := startStack(t, Config{}, nil, false)
	peer := newUDPPeer(t)
	s := newSpec("OPTIONS", "10.0.0.5:5060").String()
	s = strings.Replace(s, "To: <sip:bob@example.com>\r\n", "", 1)
	peer.sendStr(ts.udp, s)
	peer.expect(wait, "400", isRes(400))
	ts.h.noReq(t, 100*time.Millisecond)
	if ts.Stats.ParseErrors.Load() != 1 {
		t.Errorf("ParseErrors = %d", ts.Stats.ParseErrors.Load())
	}
	// CSeq method mismatch.
	s = newSpec("OPTIONS", "10.0.0.5:5060").String()
	s = strings.Replace(s, "CSeq: 1 OPTIONS", "CSeq: 1 INFO", 1)
	peer.sendStr(ts.udp, s)
	peer.expect(wait, "400", isRes(400))
}

// inviteServer makes the handler open a server transaction for every
// INVITE and OPTIONS, answer it with first (0: nothing), and hand the
// transaction to the test.
func inviteServer(h *recHandler, first int) chan *ServerTx {
	txs := make(chan *ServerTx, 16)
	h.onRequest = func(st *Stack, r *Request, f Flow) {
		if r.Method != INVITE && r.Method != OPTIONS {
			return
		}
		tx, ok := st.NewServerTx(r, f)
		if !ok {
			panic("duplicate server tx")
		}
		if first != 0 {
			_ = tx.RespondCode(first, "Resp")
		}
		txs <- tx
	}
	return txs
}

func recvTx(t *testing.T, txs chan *ServerTx) *ServerTx {
	t.Helper()
	select {
	case tx := <-txs:
		return tx
	case <-time.After(wait):
		t.Fatal("no server transaction")
	}
	return nil
}

// INVITE server transaction, non-2xx: provisional resent on INVITE
// retransmission, final resent on Timer G (T1, 2T1, 4T1... capped at T2)
// until the ACK, which is absorbed; then Timer I ends the transaction.
func TestServerTxInviteNon2xx(t *testing.T) {
	const t1 = 50 * time.Millisecond
	h := newRecHandler()
	txs := inviteServer(h, 180)
	ts := startStack(t, Config{T1: t1, T2: 8 * t1, T4: time.Second}, h, false)
	peer := newUDPPeer(t)
	inv := newSpec("INVITE", "10.0.0.5:5060")

	peer.send(ts.udp, inv.bytes())
	tx := recvTx(t, txs)
	h.waitReq(t, wait)
	ringing := peer.expect(wait, "180", isRes(180))
	if tx.Final() || tx.Req.Method != INVITE || tx.Flow.Remote != peer.addr() {
		t.Fatalf("tx state: final=%v req=%s flow=%v", tx.Final(), tx.Req.Method, tx.Flow)
	}

	// Retransmitted INVITE before the final: last provisional resent,
	// handler not called again.
	peer.send(ts.udp, inv.bytes())
	again := peer.expect(wait, "resent 180", isRes(180))
	if !bytes.Equal(again.Raw, ringing.Raw) {
		t.Errorf("resent provisional differs:\n%s\nvs\n%s", again.Raw, ringing.Raw)
	}
	h.noReq(t, 100*time.Millisecond)
	if n := h.nReq.Load(); n != 1 {
		t.Fatalf("handler saw %d requests", n)
	}

	if err := tx.RespondCode(486, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	if err := tx.RespondCode(487, "Late"); err != ErrTxDone {
		t.Errorf("second final: %v, want ErrTxDone", err)
	}
	// 486 at 0, then Timer G at T1, 3T1, 7T1, 15T1 (T2 = 8T1 caps later).
	busy := peer.collect(15*t1+t1/2, isRes(486))
	if len(busy) < 4 {
		t.Fatalf("got %d copies of 486 in %v, want >= 4", len(busy), 15*t1)
	}
	for i := 1; i < len(busy); i++ {
		if !bytes.Equal(busy[i].Raw, busy[0].Raw) {
			t.Fatal("retransmitted 486 differs")
		}
	}
	for i, want := range []time.Duration{t1, 2 * t1, 4 * t1} {
		gap := busy[i+1].At.Sub(busy[i].At)
		if gap < want*8/10 || gap > want+40*time.Millisecond {
			t.Errorf("Timer G interval %d = %v, want ~%v", i+1, gap, want)
		}
	}
	if toTag(busy[0].Msg) == "" {
		t.Error("486 without To tag")
	}

	// A retransmitted INVITE in Completed gets the 486 again.
	peer.send(ts.udp, inv.bytes())
	peer.expect(wait, "486 on INVITE retransmission", isRes(486))

	// ACK (same branch, To tag of the 486) is absorbed and stops Timer G.
	ack := inv.derive("ACK", inv.Branch, toTag(busy[0].Msg))
	peer.send(ts.udp, ack.bytes())
	_ = peer.collect(20*time.Millisecond, isRes(486)) // one may be in flight
	peer.expectNone(10*t1, "486 after ACK", isRes(486))
	h.noReq(t, 50*time.Millisecond)
	if n := h.nReq.Load(); n != 1 {
		t.Fatalf("ACK reached the handler (%d requests)", n)
	}
	// ACK retransmission in Confirmed is absorbed too.
	peer.send(ts.udp, ack.bytes())
	h.noReq(t, 50*time.Millisecond)
	// Timer I (T4) then removes the transaction.
	waitFor(t, 3*time.Second, "server tx removed (Timer I)", func() bool { s, _ := ts.Transactions(); return s == 0 })
}

// Without an ACK, Timer H ends the transaction after 64*T1.
func TestServerTxInviteTimerH(t *testing.T) {
	const t1 = 10 * time.Millisecond
	h := newRecHandler()
	inviteServer(h, 486)
	ts := startStack(t, Config{T1: t1, T2: 4 * t1}, h, false)
	peer := newUDPPeer(t)
	peer.send(ts.udp, newSpec("INVITE", "10.0.0.5:5060").bytes())
	peer.expect(wait, "486", isRes(486))
	start := time.Now()
	waitFor(t, 5*time.Second, "Timer H", func() bool { s, _ := ts.Transactions(); return s == 0 })
	if el := time.Since(start); el < 60*t1 {
		t.Errorf("terminated after %v, Timer H is %v", el, 64*t1)
	}
	_ = peer.collect(5*t1, isRes(486)) // drain those sent before Timer H
	peer.expectNone(10*t1, "486 after Timer H", isRes(486))
}

// INVITE answered 2xx: the transaction is Accepted (RFC 6026) and absorbs
// INVITE retransmissions without resending the 2xx; an ACK for the 2xx
// (a new transaction) goes to the handler.
func TestServerTxInvite2xx(t *testing.T) {
	const t1 = 50 * time.Millisecond
	h := newRecHandler()
	txs := inviteServer(h, 200)
	ts := startStack(t, Config{T1: t1, AcceptedLinger: 64 * t1}, h, false) // Timer L as in RFC 6026
	peer := newUDPPeer(t)
	inv := newSpec("INVITE", "10.0.0.5:5060")
	peer.send(ts.udp, inv.bytes())
	tx := recvTx(t, txs)
	h.waitReq(t, wait)
	ok := peer.expect(wait, "200", isRes(200))
	if !tx.Final() {
		t.Error("not final after 200")
	}

	peer.send(ts.udp, inv.bytes())
	peer.expectNone(4*t1, "response to INVITE retransmission in Accepted", nil)
	h.noReq(t, 10*time.Millisecond)

	ack := inv.derive("ACK", NewBranch(), toTag(ok.Msg))
	peer.send(ts.udp, ack.bytes())
	g := h.waitReq(t, wait)
	if g.Req.Method != ACK || Branch(g.Req) != ack.Branch {
		t.Fatalf("handler got %s %s, want the ACK", g.Req.Method, Branch(g.Req))
	}
	if s, _ := ts.Transactions(); s != 1 {
		t.Errorf("server transactions = %d, want 1 (Accepted until Timer L)", s)
	}
	waitFor(t, 64*t1+time.Second, "Timer L", func() bool { s, _ := ts.Transactions(); return s == 0 })
}

// RFC 6026 §8.7/Fig. 5: an ACK that matches an INVITE server transaction in
// the Accepted state must be passed to the TU. It matches when the UAC
// reuses the INVITE branch for the 2xx ACK, and always for RFC 2543 UAs
// (no magic cookie: matching is by Call-ID, From tag, CSeq and Via). The
// stack swallows it, so a proxy never forwards the ACK and the UAS keeps
// retransmitting its 200 until it tears the call down.
func TestServerTxAckFor2xxMatchingTx(t *testing.T) {
	for _, tc := range []struct {
		name   string
		branch func() string
	}{
		{"same branch", NewBranch},
		{"rfc2543", func() string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newRecHandler()
			inviteServer(h, 200)
			ts := startStack(t, Config{T1: 50 * time.Millisecond}, h, false)
			peer := newUDPPeer(t)
			inv := newSpec("INVITE", "10.0.0.5:5060")
			inv.Branch = tc.branch()
			peer.send(ts.udp, inv.bytes())
			h.waitReq(t, wait)
			ok := peer.expect(wait, "200", isRes(200))
			ack := inv.derive("ACK", inv.Branch, toTag(ok.Msg))
			peer.send(ts.udp, ack.bytes())
			select {
			case g := <-h.reqs:
				if g.Req.Method != ACK {
					t.Fatalf("handler got %s", g.Req.Method)
				}
			case <-time.After(500 * time.Millisecond):
				t.Fatal("ACK for 2xx matching the Accepted INVITE transaction was absorbed; RFC 6026 requires passing it to the TU")
			}
		})
	}
}

// Non-INVITE server transaction: a retransmitted request gets the same final
// response, and the handler is not called again.
func TestServerTxNonInviteRetransmission(t *testing.T) {
	h := newRecHandler()
	txs := inviteServer(h, 200)
	ts := startStack(t, Config{T1: 50 * time.Millisecond}, h, false)
	peer := newUDPPeer(t)
	opt := newSpec("OPTIONS", "10.0.0.5:5060")
	peer.send(ts.udp, opt.bytes())
	tx := recvTx(t, txs)
	first := peer.expect(wait, "200", isRes(200))
	for i := 0; i < 3; i++ {
		peer.send(ts.udp, opt.bytes())
		again := peer.expect(wait, "resent 200", isRes(200))
		if !bytes.Equal(again.Raw, first.Raw) {
			t.Fatalf("resent response differs:\n%s\nvs\n%s", again.Raw, first.Raw)
		}
	}
	h.waitReq(t, wait)
	h.noReq(t, 100*time.Millisecond)
	if n := h.nReq.Load(); n != 1 {
		t.Fatalf("handler called %d times", n)
	}
	if n := ts.Stats.Retransmissions.Load(); n != 3 {
		t.Errorf("Retransmissions = %d, want 3", n)
	}
	if err := tx.RespondCode(500, "again"); err != ErrTxDone {
		t.Errorf("respond after final: %v", err)
	}
	// Timer J (64*T1) then ends it.
	waitFor(t, 64*50*time.Millisecond+time.Second, "Timer J", func() bool { s, _ := ts.Transactions(); return s == 0 })
}

// Non-INVITE provisional responses keep the transaction in Proceeding; a
// retransmission gets the provisional.
func TestServerTxNonInviteProvisional(t *testing.T) {
	h := newRecHandler()
	txs := inviteServer(h, 100)
	ts := startStack(t, Config{}, h, false)
	peer := newUDPPeer(t)
	opt := newSpec("OPTIONS", "10.0.0.5:5060")
	peer.send(ts.udp, opt.bytes())
	tx := recvTx(t, txs)
	peer.expect(wait, "100", isRes(100))
	peer.send(ts.udp, opt.bytes())
	peer.expect(wait, "resent 100", isRes(100))
	if tx.Final() {
		t.Fatal("final after 100")
	}
	_ = tx.RespondCode(200, "OK")
	peer.expect(wait, "200", isRes(200))
}

// The same To tag must be used for all responses to a request, provisional
// and final (RFC 3261 §8.2.6.2). RespondCode mints a new tag for each.
func TestServerTxRespondCodeKeepsToTag(t *testing.T) {
	h := newRecHandler()
	txs := inviteServer(h, 180)
	ts := startStack(t, Config{T1: 50 * time.Millisecond}, h, false)
	peer := newUDPPeer(t)
	peer.send(ts.udp, newSpec("INVITE", "10.0.0.5:5060").bytes())
	tx := recvTx(t, txs)
	r180 := peer.expect(wait, "180", isRes(180))
	_ = tx.RespondCode(486, "Busy Here")
	r486 := peer.expect(wait, "486", isRes(486))
	if a, b := toTag(r180.Msg), toTag(r486.Msg); a == "" || a != b {
		t.Errorf("To tag of 180 %q != To tag of 486 %q from the same server transaction", a, b)
	}
}

// CANCEL matching an INVITE server transaction: the stack answers 200,
// calls Handler.Cancel once (also on CANCEL retransmission), and the handler
// answers the INVITE 487. A CANCEL matching nothing goes to Handler.Request.
func TestServerTxCancel(t *testing.T) {
	h := newRecHandler()
	txs := inviteServer(h, 180)
	h.onCancel = func(tx *ServerTx, c *Request) { _ = tx.RespondCode(487, "Request Terminated") }
	ts := startStack(t, Config{T1: 50 * time.Millisecond}, h, false)
	peer := newUDPPeer(t)
	inv := newSpec("INVITE", "10.0.0.5:5060")
	peer.send(ts.udp, inv.bytes())
	tx := recvTx(t, txs)
	h.waitReq(t, wait)
	peer.expect(wait, "180", isRes(180))

	cancel := inv.derive("CANCEL", inv.Branch, "")
	peer.send(ts.udp, cancel.bytes())
	peer.expect(wait, "200 to CANCEL", isResTo(200, CANCEL))
	g := h.waitCancel(t, wait)
	if g.Tx != tx || g.Cancel.Method != CANCEL {
		t.Errorf("Cancel called with tx %p (want %p), %s", g.Tx, tx, g.Cancel.Method)
	}
	if !tx.Cancelled() {
		t.Error("tx not marked cancelled")
	}
	peer.expect(wait, "487", isResTo(487, INVITE))

	peer.send(ts.udp, cancel.bytes())
	peer.expect(wait, "200 to retransmitted CANCEL", isResTo(200, CANCEL))
	time.Sleep(50 * time.Millisecond)
	if n := h.nCancel.Load(); n != 1 {
		t.Errorf("Handler.Cancel called %d times", n)
	}
	if n := h.nReq.Load(); n != 1 {
		t.Errorf("Handler.Request called %d times, want 1 (the INVITE)", n)
	}

	// CANCEL with an unknown branch: to the handler, unanswered.
	stray := newSpec("CANCEL", "10.0.0.5:5060")
	peer.send(ts.udp, stray.bytes())
	sg := h.waitReq(t, wait)
	if sg.Req.Method != CANCEL || Branch(sg.Req) != stray.Branch {
		t.Fatalf("handler got %s %s", sg.Req.Method, Branch(sg.Req))
	}
	peer.expectNone(200*time.Millisecond, "stack answer to unmatched CANCEL", isResTo(200, CANCEL))
	if n := h.nCancel.Load(); n != 1 {
		t.Errorf("Handler.Cancel called %d times", n)
	}
}

// CANCEL after the final response: 200 to the CANCEL, no Handler.Cancel.
func TestServerTxCancelAfterFinal(t *testing.T) {
	h := newRecHandler()
	inviteServer(h, 486)
	ts := startStack(t, Config{T1: 50 * time.Millisecond}, h, false)
	peer := newUDPPeer(t)
	inv := newSpec("INVITE", "10.0.0.5:5060")
	peer.send(ts.udp, inv.bytes())
	peer.expect(wait, "486", isRes(486))
	peer.send(ts.udp, inv.derive("CANCEL", inv.Branch, "").bytes())
	peer.expect(wait, "200 to CANCEL", isResTo(200, CANCEL))
	time.Sleep(50 * time.Millisecond)
	if n := h.nCancel.Load(); n != 0 {
		t.Errorf("Handler.Cancel called after final response")
	}
}

// Junk, unparsable and oversize datagrams count as parse errors and the read
// loop keeps going.
func TestStackGarbageDatagrams(t *testing.T) {
	ts := startStack(t, Config{}, nil, false)
	peer := newUDPPeer(t)
	junk := [][]byte{
		{0x80, 0x00, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef},                        // RTP
		[]byte("GARBAGE\r\n\r\n"),                                                           // letter, but not SIP
		[]byte("INVITE sip:x SIP/2.0\r\nVia: broken"),                                       // truncated
		append([]byte("OPTIONS sip:x SIP/2.0\r\nX: "), bytes.Repeat([]byte("a"), 65000)...), // near the UDP limit
		{0x16, 0xfe, 0xfd}, // DTLS
		stunBinding(),      // STUN with no handler: dropped, not an error
		[]byte("\r\n\r\n"), // keepalive, not an error
	}
	for _, b := range junk {
		peer.send(ts.udp, b)
	}
	waitFor(t, wait, "parse errors", func() bool { return ts.Stats.ParseErrors.Load() >= 5 })
	time.Sleep(50 * time.Millisecond)
	if n := ts.Stats.ParseErrors.Load(); n != 5 {
		t.Errorf("ParseErrors = %d, want 5", n)
	}
	if n := ts.Stats.Keepalives.Load(); n != 1 {
		t.Errorf("Keepalives = %d, want 1", n)
	}
	// Still serving.
	peer.send(ts.udp, newSpec("OPTIONS", "10.0.0.5:5060").bytes())
	ts.h.waitReq(t, wait)
	if n := ts.Stats.RxPackets.Load(); n != uint64(len(junk)+1) {
		t.Errorf("RxPackets = %d, want %d", n, len(junk)+1)
	}
}

// STUN on the SIP port goes to Config.STUN, whose reply leaves from the
// same socket to the source.
func TestStackSTUN(t *testing.T) {
	got := make(chan Flow, 1)
	ts := startStack(t, Config{STUN: func(b []byte, f Flow, reply func([]byte)) {
		got <- f
		reply([]byte("stun-reply"))
	}}, nil, false)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDPAddrPort(stunBinding(), ts.udp); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-got:
		if f.Remote != c.LocalAddr().(*net.UDPAddr).AddrPort() || f.Local != ts.udp || f.Transport != UDP {
			t.Errorf("STUN flow %+v", f)
		}
	case <-time.After(wait):
		t.Fatal("STUN not delivered")
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 100)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "stun-reply" || from != ts.udp {
		t.Fatalf("STUN reply %q from %v: %v", buf[:n], from, err)
	}
	if ts.Stats.ParseErrors.Load() != 0 {
		t.Error("STUN counted as parse error")
	}
}

// Config.Allow=false drops datagrams before parsing.
func TestStackAllowDrops(t *testing.T) {
	var block atomic.Bool
	ts := startStack(t, Config{Allow: func(netip.Addr) bool { return !block.Load() }}, nil, false)
	peer := newUDPPeer(t)
	block.Store(true)
	peer.send(ts.udp, newSpec("OPTIONS", "10.0.0.5:5060").bytes())
	waitFor(t, wait, "drop", func() bool { return ts.Stats.Dropped.Load() == 1 })
	ts.h.noReq(t, 50*time.Millisecond)
	block.Store(false)
	peer.send(ts.udp, newSpec("OPTIONS", "10.0.0.5:5060").bytes())
	ts.h.waitReq(t, wait)
}
