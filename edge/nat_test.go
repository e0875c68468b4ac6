package edge_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// The NAT in front of a phone drops its mapping and the next REGISTER
// arrives from a new source port: the binding must follow the new flow
// (same Contact, same Call-ID), and calls must go to the new port.
func TestNATRebinding(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	old := bob.Addr()
	if err := bob.Rebind(); err != nil {
		t.Fatal(err)
	}
	mustRegister(t, bob)
	ps := srv.PeersOf(t, "bob")
	if len(ps) != 1 {
		t.Fatalf("after re-registering from a new port bob has %d bindings, want 1 (refreshed, not added):\n%s", len(ps), peerSummary(ps))
	}
	if ps[0].Remote != bob.Addr().String() {
		t.Errorf("bob's binding flow = %s, want the new source %s (old %s)", ps[0].Remote, bob.Addr(), old)
	}
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		t.Fatalf("the call did not reach bob's new port %s: %v", bob.Addr(), err)
	}
	_ = in.Reject(486, "Busy Here")
	if r, err := call.WaitFinal(wait); err != nil || r.Code != 486 {
		t.Errorf("alice: %v %v, want 486", r, err)
	}
}

// The callee retransmits its 200 until the ACK comes (RFC 3261 §13.3.1.4);
// every retransmission must reach the caller, statelessly forwarded after
// the transaction (RFC 6026), or a caller that missed the first one never
// answers and the call dies at 32 s.
func TestOKRetransmissionsReachCaller(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(""); err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitFinal(wait); err != nil {
		t.Fatal(err)
	}
	// alice "misses" the 200: bob retransmits at 0.5 s and 1.5 s.
	time.Sleep(1800 * time.Millisecond)
	n := 0
	for _, m := range alice.Received() {
		if m.Code == 200 && m.Get("CSeq") == call.Invite().Get("CSeq") {
			n++
		}
	}
	if n < 3 {
		t.Errorf("alice received %d copies of the 200 in 1.8 s, want 3 (bob sent the original and 2 retransmissions)", n)
	}
	if err := call.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.WaitAck(wait); err != nil {
		t.Fatalf("bob got no ACK: %v", err)
	}
}

// Forking where nobody answers: the best final response wins (6xx over
// 4xx, RFC 3261 §16.7 step 6).
func TestForkingAllReject(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob1 := natPhone(t, srv, "bob", bobLAN)
	bob2 := natPhone(t, srv, "bob", bob2LAN)
	mustRegister(t, alice)
	mustRegister(t, bob1)
	mustRegister(t, bob2)
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in1, err := bob1.WaitInvite(wait)
	if err != nil {
		t.Fatal(err)
	}
	in2, err := bob2.WaitInvite(wait)
	if err != nil {
		t.Fatal(err)
	}
	_ = in1.Reject(486, "Busy Here")
	time.Sleep(50 * time.Millisecond)
	_ = in2.Reject(603, "Decline")
	r, err := call.WaitFinal(wait)
	if err != nil || r.Code != 603 {
		t.Errorf("forked INVITE answered 486 and 603: alice got %v %v, want 603", r, err)
	}
	for _, in := range []*uatest.Call{in1, in2} {
		if _, err := in.WaitRequest("ACK", wait); err != nil {
			t.Errorf("the proxy did not ACK a branch's error response: %v", err)
		}
	}
}

// An INVITE nobody answers is ended by the proxy after invite_timeout:
// the callee gets CANCEL, the caller a final error (Timer C).
func TestInviteTimeout(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) { c.Proxy.InviteTimeout.Duration = time.Second })
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		t.Fatal(err)
	}
	_ = in.Ring()
	if _, err := in.WaitCancel(wait); err != nil {
		t.Errorf("ringing phone not cancelled after invite_timeout 1s: %v", err)
	}
	r, err := call.WaitFinal(wait)
	if err != nil || r.Code < 400 || r.Code >= 500 {
		t.Errorf("caller after invite_timeout: %v %v, want 408 or 480", r, err)
	}
}

// A TCP phone whose connection is gone cannot be reached (we never dial a
// NATed TCP peer): a call gets 480 at once, not a timeout.
func TestCallToClosedTCPFlow(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := tcpNATPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	bob.Close()
	time.Sleep(100 * time.Millisecond)
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := call.WaitFinal(wait)
	if err != nil {
		t.Fatalf("call to bob after his TCP connection closed: %v", err)
	}
	if r.Code != 480 && r.Code != 404 && r.Code != 408 {
		t.Errorf("call to bob after his TCP connection closed: %s, want 480", r.Summary())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the answer took %s", d)
	}
}

// The admin API refuses requests without the bearer token.
func TestAdminNeedsToken(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	for _, tok := range []string{"", "wrong"} {
		req, _ := http.NewRequest("GET", "http://"+srv.Admin+"/api/v1/peers", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 401 {
			t.Errorf("GET /api/v1/peers with token %q: HTTP %d, want 401", tok, res.StatusCode)
		}
	}
}

// Known scanners get no answer at all.
func TestScannerDropped(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	p := srv.Phone(t, uatest.Config{User: "alice", UserAgent: "friendly-scanner", T1: -1, Timeout: 500 * time.Millisecond})
	if res, err := p.RegisterWith(uatest.RegisterOpts{NoAuth: true}); err == nil {
		t.Errorf("REGISTER from User-Agent friendly-scanner was answered: %s", res.Summary())
	}
	tx, _ := p.Send(p.NewRequest("OPTIONS", "sip:100@test.example"))
	if res, err := tx.WaitFinal(500 * time.Millisecond); err == nil {
		t.Errorf("OPTIONS from a scanner was answered: %s", res.Summary())
	}
	// The same source with a normal User-Agent is served.
	q := srv.Phone(t, uatest.Config{User: "alice"})
	mustRegister(t, q)
}
