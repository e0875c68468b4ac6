package sipx

import (
	"fmt"
	"testing"
	"time"
)

// respRec records what a client transaction delivers to onResp.
type respRec struct {
	ch chan *Response
	at chan time.Time
}

func newRespRec() *respRec {
	return &respRec{ch: make(chan *Response, 256), at: make(chan time.Time, 256)}
}

func (r *respRec) fn(_ *ClientTx, res *Response) {
	r.at <- time.Now()
	r.ch <- res
}

func (r *respRec) next(t *testing.T, d time.Duration) (*Response, time.Time) {
	t.Helper()
	select {
	case res := <-r.ch:
		return res, <-r.at
	case <-time.After(d):
		t.Fatalf("onResp: nothing within %v", d)
	}
	return nil, time.Time{}
}

func (r *respRec) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case res := <-r.ch:
		t.Fatalf("onResp: unexpected %d %s", res.StatusCode, res.Reason)
	case <-time.After(d):
	}
}

// clientReq builds a request as sipedge would send it from the stack's UDP
// socket: our Via on top with a fresh branch.
func clientReq(t *testing.T, ts *testStack, method string) (*Request, reqSpec) {
	t.Helper()
	spec := newSpec(method, ts.udp.String())
	spec.ViaParams = ";rport"
	return mustParseReq(t, spec.String()), spec
}

func checkIntervals(t *testing.T, what string, msgs []rxMsg, want []time.Duration) {
	t.Helper()
	for i, w := range want {
		if i+1 >= len(msgs) {
			t.Errorf("%s: only %d transmissions, want more than %d", what, len(msgs), len(want))
			return
		}
		gap := msgs[i+1].At.Sub(msgs[i].At)
		if gap < w*8/10 || gap > w+50*time.Millisecond {
			t.Errorf("%s: interval %d = %v, want ~%v", what, i+1, gap, w)
		}
	}
}

// INVITE to a peer that never answers: Timer A retransmits at T1, 2T1,
// 4T1... (no T2 cap for INVITE) and Timer B delivers a synthetic 408 after
// 64*T1.
func TestClientTxInviteTimeout(t *testing.T) {
	const t1 = 40 * time.Millisecond
	ts := startStack(t, Config{T1: t1, T2: 2 * t1}, nil, false)
	peer := newUDPPeer(t)
	rec := newRespRec()
	req, spec := clientReq(t, ts, "INVITE")
	start := time.Now()
	tx, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	if _, c := ts.Transactions(); c != 1 {
		t.Errorf("client transactions = %d", c)
	}
	invs := peer.collect(64*t1+300*time.Millisecond, isReq(INVITE))
	res, at := rec.next(t, wait)
	if res.StatusCode != 408 || !IsSynthetic(res) {
		t.Fatalf("got %d synthetic=%v, want synthetic 408", res.StatusCode, IsSynthetic(res))
	}
	if el := at.Sub(start); el < 64*t1*95/100 {
		t.Errorf("408 after %v, want >= %v", el, 64*t1)
	}
	if _, meth, _ := CSeqOf(res); meth != INVITE || Branch(res) != spec.Branch {
		t.Errorf("408 CSeq %s branch %s", meth, Branch(res))
	}
	// Sends at 0, T1, 3T1, 7T1, 15T1, 31T1, 63T1 (the last races Timer B).
	if len(invs) < 6 || len(invs) > 7 {
		t.Errorf("INVITE sent %d times, want 6-7", len(invs))
	}
	for _, m := range invs {
		if Branch(m.Msg) != spec.Branch {
			t.Error("retransmission with another branch")
		}
	}
	checkIntervals(t, "Timer A", invs, []time.Duration{t1, 2 * t1, 4 * t1, 8 * t1, 16 * t1})
	if n := ts.Stats.TxTimeouts.Load(); n != 1 {
		t.Errorf("TxTimeouts = %d", n)
	}
	if n := ts.Stats.Retransmissions.Load(); n < 5 {
		t.Errorf("Retransmissions = %d", n)
	}
	if _, c := ts.Transactions(); c != 0 {
		t.Errorf("client transactions after timeout = %d", c)
	}
	peer.expectNone(4*t1, "INVITE after Timer B", isReq(INVITE))
	rec.none(t, 10*time.Millisecond)
	_ = tx
}

// INVITE answered 180 then 486 (retransmitted): onResp sees each once; the
// stack ACKs the 486 with the INVITE's branch and the 486's To tag, and ACKs
// the retransmission again.
func TestClientTxInviteNon2xx(t *testing.T) {
	const t1 = 100 * time.Millisecond
	ts := startStack(t, Config{T1: t1}, nil, false)
	peer := newUDPPeer(t)
	rec := newRespRec()
	req, spec := clientReq(t, ts, "INVITE")
	if _, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), rec.fn); err != nil {
		t.Fatal(err)
	}
	inv := peer.expect(wait, "INVITE", isReq(INVITE)).req()
	peer.send(ts.udp, respBytes(inv, 180, "Ringing", "tag-a"))
	if res, _ := rec.next(t, wait); res.StatusCode != 180 || IsSynthetic(res) {
		t.Fatalf("got %d", res.StatusCode)
	}
	// Timer A stops on the provisional.
	peer.expectNone(3*t1, "INVITE retransmission after 180", isReq(INVITE))

	busy := respBytes(inv, 486, "Busy Here", "tag-b")
	peer.send(ts.udp, busy)
	if res, _ := rec.next(t, wait); res.StatusCode != 486 {
		t.Fatalf("got %d", res.StatusCode)
	}
	checkAck := func(m rxMsg) {
		t.Helper()
		ack := m.req()
		if Branch(ack) != spec.Branch {
			t.Errorf("ACK branch %q, want the INVITE's %q", Branch(ack), spec.Branch)
		}
		if tag := toTag(ack); tag != "tag-b" {
			t.Errorf("ACK To tag %q, want tag-b", tag)
		}
		if n, meth, _ := CSeqOf(ack); n != 1 || meth != ACK {
			t.Errorf("ACK CSeq %d %s", n, meth)
		}
		if ack.CallID().Value() != spec.CallID || ack.Recipient.String() != inv.Recipient.String() {
			t.Errorf("ACK Call-ID/R-URI %s %s", ack.CallID().Value(), ack.Recipient.String())
		}
		if ft, _ := ack.From().Params.Get("tag"); ft != spec.FromTag {
			t.Errorf("ACK From tag %q", ft)
		}
	}
	checkAck(peer.expect(wait, "ACK", isReq(ACK)))

	peer.send(ts.udp, busy) // retransmitted 486
	checkAck(peer.expect(wait, "ACK for retransmitted 486", isReq(ACK)))
	rec.none(t, 100*time.Millisecond)
	if n := ts.h.nRes.Load(); n != 0 {
		t.Errorf("Handler.Response called %d times", n)
	}
}

// INVITE answered 200, retransmitted: both delivered (Accepted state), no
// ACK from the transaction layer; after Timer M a 200 goes to the handler.
func TestClientTxInvite2xx(t *testing.T) {
	const t1 = 20 * time.Millisecond
	ts := startStack(t, Config{T1: t1, AcceptedLinger: 64 * t1}, nil, false) // Timer M as in RFC 6026
	peer := newUDPPeer(t)
	rec := newRespRec()
	req, _ := clientReq(t, ts, "INVITE")
	if _, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), rec.fn); err != nil {
		t.Fatal(err)
	}
	inv := peer.expect(wait, "INVITE", isReq(INVITE)).req()
	ok := respBytes(inv, 200, "OK", "tag-ok")
	peer.send(ts.udp, ok)
	peer.send(ts.udp, ok)
	for i := 0; i < 2; i++ {
		if res, _ := rec.next(t, wait); res.StatusCode != 200 {
			t.Fatalf("got %d", res.StatusCode)
		}
	}
	peer.expectNone(5*t1, "ACK for 2xx from the transaction layer", isReq(ACK))
	peer.expectNone(5*t1, "INVITE retransmission after 2xx", isReq(INVITE))
	if n := ts.h.nRes.Load(); n != 0 {
		t.Errorf("Handler.Response called %d times while Accepted", n)
	}
	waitFor(t, 64*t1+time.Second, "Timer M", func() bool { _, c := ts.Transactions(); return c == 0 })
	peer.send(ts.udp, ok)
	select {
	case g := <-ts.h.ress:
		if g.Res.StatusCode != 200 || g.Flow.Remote != peer.addr() {
			t.Errorf("handler got %d from %v", g.Res.StatusCode, g.Flow.Remote)
		}
	case <-time.After(wait):
		t.Fatal("stray 200 not passed to Handler.Response")
	}
	rec.none(t, 20*time.Millisecond)
}

// Cancel() before any provisional: the CANCEL waits for the 180 (RFC 3261
// §9.1), then goes out once with the INVITE's branch.
func TestClientTxCancelBeforeProvisional(t *testing.T) {
	const t1 = 50 * time.Millisecond
	ts := startStack(t, Config{T1: t1}, nil, false)
	peer := newUDPPeer(t)
	rec := newRespRec()
	req, spec := clientReq(t, ts, "INVITE")
	tx, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	tx.Cancel()
	inv := peer.expect(wait, "INVITE", isReq(INVITE)).req()
	peer.expectNone(6*t1, "CANCEL before a provisional", isReq(CANCEL))

	peer.send(ts.udp, respBytes(inv, 180, "Ringing", "tag-a"))
	cm := peer.expect(wait, "CANCEL", isReq(CANCEL))
	c := cm.req()
	if Branch(c) != spec.Branch {
		t.Errorf("CANCEL branch %q, want %q", Branch(c), spec.Branch)
	}
	if n, meth, _ := CSeqOf(c); n != 1 || meth != CANCEL {
		t.Errorf("CANCEL CSeq %d %s", n, meth)
	}
	if toTag(c) != "" || c.CallID().Value() != spec.CallID || c.Recipient.String() != inv.Recipient.String() {
		t.Errorf("CANCEL To tag %q Call-ID %s R-URI %s", toTag(c), c.CallID().Value(), c.Recipient.String())
	}
	if res, _ := rec.next(t, wait); res.StatusCode != 180 {
		t.Fatalf("got %d", res.StatusCode)
	}
	peer.send(ts.udp, respBytes(c, 200, "OK", "tag-c"))
	tx.Cancel() // again: nothing more
	_ = peer.collect(20*time.Millisecond, isReq(CANCEL))
	peer.expectNone(4*t1, "second CANCEL", isReq(CANCEL))

	peer.send(ts.udp, respBytes(inv, 487, "Request Terminated", "tag-a"))
	if res, _ := rec.next(t, wait); res.StatusCode != 487 {
		t.Fatalf("got %d", res.StatusCode)
	}
	peer.expect(wait, "ACK for 487", isReq(ACK))
	if n := ts.h.nRes.Load(); n != 0 {
		t.Errorf("200 to CANCEL went to Handler.Response (%d)", n)
	}
}

// Cancel() after a provisional sends at once; after a final, never.
func TestClientTxCancelAfterProvisionalAndFinal(t *testing.T) {
	ts := startStack(t, Config{T1: 50 * time.Millisecond}, nil, false)
	peer := newUDPPeer(t)
	rec := newRespRec()
	req, _ := clientReq(t, ts, "INVITE")
	tx, _ := ts.NewClientTx(req, ts.udpFlow(peer.addr()), rec.fn)
	inv := peer.expect(wait, "INVITE", isReq(INVITE)).req()
	peer.send(ts.udp, respBytes(inv, 183, "Session Progress", "a"))
	rec.next(t, wait)
	tx.Cancel()
	peer.expect(wait, "CANCEL", isReq(CANCEL))

	req2, _ := clientReq(t, ts, "INVITE")
	tx2, _ := ts.NewClientTx(req2, ts.udpFlow(peer.addr()), rec.fn)
	inv2 := peer.expect(wait, "INVITE", func(m rxMsg) bool { return isReq(INVITE)(m) && Branch(m.Msg) == Branch(req2) }).req()
	peer.send(ts.udp, respBytes(inv2, 603, "Decline", "b"))
	rec.next(t, wait)
	tx2.Cancel()
	peer.expectNone(200*time.Millisecond, "CANCEL after final", func(m rxMsg) bool { return isReq(CANCEL)(m) && Branch(m.Msg) == Branch(req2) })

	// Cancel on a non-INVITE is a no-op.
	req3, _ := clientReq(t, ts, "OPTIONS")
	tx3, _ := ts.NewClientTx(req3, ts.udpFlow(peer.addr()), rec.fn)
	tx3.Cancel()
	peer.expectNone(100*time.Millisecond, "CANCEL for OPTIONS", func(m rxMsg) bool { return isReq(CANCEL)(m) && Branch(m.Msg) == Branch(req3) })
}

// Non-INVITE to a silent peer: Timer E at T1, 2T1, 4T1 capped at T2, and a
// synthetic 408 after 64*T1 (Timer F).
func TestClientTxNonInviteTimeout(t *testing.T) {
	const t1 = 40 * time.Millisecond
	ts := startStack(t, Config{T1: t1, T2: 4 * t1}, nil, false)
	peer := newUDPPeer(t)
	rec := newRespRec()
	req, _ := clientReq(t, ts, "OPTIONS")
	start := time.Now()
	if _, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), rec.fn); err != nil {
		t.Fatal(err)
	}
	msgs := peer.collect(64*t1+300*time.Millisecond, isReq(OPTIONS))
	res, at := rec.next(t, wait)
	if res.StatusCode != 408 || !IsSynthetic(res) {
		t.Fatalf("got %d synthetic=%v", res.StatusCode, IsSynthetic(res))
	}
	if el := at.Sub(start); el < 64*t1*95/100 {
		t.Errorf("408 after %v", el)
	}
	checkIntervals(t, "Timer E", msgs, []time.Duration{t1, 2 * t1, 4 * t1, 4 * t1, 4 * t1, 4 * t1})
	if len(msgs) < 15 {
		t.Errorf("%d transmissions in 64*T1, want ~17", len(msgs))
	}
	rec.none(t, 50*time.Millisecond)
}

// Non-INVITE answered 100 then 200 (retransmitted): provisional and final
// delivered once each; Timer E continues at T2 in Proceeding; Timer K ends
// the transaction, after which a stray 200 goes to the handler.
func TestClientTxNonInviteCompletion(t *testing.T) {
	const t1 = 20 * time.Millisecond
	ts := startStack(t, Config{T1: t1, T2: 5 * t1, T4: 200 * time.Millisecond}, nil, false)
	peer := newUDPPeer(t)
	rec := newRespRec()
	req, _ := clientReq(t, ts, "OPTIONS")
	if _, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), rec.fn); err != nil {
		t.Fatal(err)
	}
	opt := peer.expect(wait, "OPTIONS", isReq(OPTIONS))
	peer.send(ts.udp, respBytes(opt.req(), 100, "Trying", ""))
	if res, _ := rec.next(t, wait); res.StatusCode != 100 {
		t.Fatalf("got %d", res.StatusCode)
	}
	// In Proceeding, retransmissions continue every T2.
	re := peer.collect(12*t1, isReq(OPTIONS))
	if len(re) < 1 {
		t.Error("no retransmission in Proceeding")
	}
	ok := respBytes(opt.req(), 200, "OK", "x")
	peer.send(ts.udp, ok)
	peer.send(ts.udp, ok)
	if res, _ := rec.next(t, wait); res.StatusCode != 200 || IsSynthetic(res) {
		t.Fatalf("got %d", res.StatusCode)
	}
	rec.none(t, 50*time.Millisecond)
	_ = peer.collect(10*time.Millisecond, isReq(OPTIONS))
	peer.expectNone(8*t1, "OPTIONS after final", isReq(OPTIONS))
	if n := ts.h.nRes.Load(); n != 0 {
		t.Errorf("retransmitted 200 went to the handler in Completed")
	}
	waitFor(t, wait, "Timer K", func() bool { _, c := ts.Transactions(); return c == 0 })
	peer.send(ts.udp, ok)
	waitFor(t, wait, "stray 200 to handler", func() bool { return ts.h.nRes.Load() == 1 })
}

// A second transaction with the same branch and method is refused.
func TestClientTxDuplicateBranch(t *testing.T) {
	ts := startStack(t, Config{}, nil, false)
	peer := newUDPPeer(t)
	req, _ := clientReq(t, ts, "OPTIONS")
	if _, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), func(*ClientTx, *Response) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), func(*ClientTx, *Response) {}); err == nil {
		t.Fatal("duplicate branch accepted")
	}
}

// A 180 and a 200 written back to back reach onResp in order (sipgo's
// goroutine-per-message transport can swap them).
func TestClientTxResponseOrdering(t *testing.T) {
	ts := startStack(t, Config{}, nil, false)
	peer := newUDPPeer(t)
	for i := 0; i < 50; i++ {
		rec := newRespRec()
		req, _ := clientReq(t, ts, "INVITE")
		if _, err := ts.NewClientTx(req, ts.udpFlow(peer.addr()), rec.fn); err != nil {
			t.Fatal(err)
		}
		inv := peer.expect(wait, "INVITE", func(m rxMsg) bool { return isReq(INVITE)(m) && Branch(m.Msg) == Branch(req) }).req()
		b180 := respBytes(inv, 180, "Ringing", "t")
		b200 := respBytes(inv, 200, "OK", "t")
		peer.send(ts.udp, b180)
		peer.send(ts.udp, b200)
		var got []int
		for j := 0; j < 2; j++ {
			res, _ := rec.next(t, wait)
			got = append(got, res.StatusCode)
		}
		if fmt.Sprint(got) != "[180 200]" {
			t.Fatalf("iteration %d: onResp order %v", i, got)
		}
	}
}
