package edge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// Max-Forwards: 0 is answered 483 (RFC 3261 §16.3 step 3), for INVITE and
// for other methods; nothing is forwarded.
func TestMaxForwardsZero(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	for _, method := range []string{"OPTIONS", "INVITE", "MESSAGE"} {
		req := alice.NewRequest(method, "sip:bob@test.example")
		req.Set("Max-Forwards", "0")
		tx, err := alice.Send(req)
		if err != nil {
			t.Fatal(err)
		}
		res, err := tx.WaitFinal(wait)
		if err != nil || res.Code != 483 {
			t.Errorf("%s with Max-Forwards: 0: got %v %v, want 483 Too Many Hops", method, res, err)
		}
	}
	if c := bob.NoInvite(200 * time.Millisecond); c != nil {
		t.Errorf("an INVITE with Max-Forwards: 0 was forwarded to bob:\n%s", c.Invite())
	}
	if m, err := bob.WaitRequest("", 50*time.Millisecond); err == nil {
		t.Errorf("a request with Max-Forwards: 0 was forwarded to bob:\n%s", m)
	}
}

// A request that already passed through us (our Via below the top one) is
// a loop: 482 (RFC 3261 §16.3 step 4).
func TestLoopDetected(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	req := alice.NewRequest("INVITE", "sip:bob@test.example")
	req.Body = []byte(alice.SDP())
	req.Set("Content-Type", "application/sdp")
	// Insert our own Via (as sipedge writes it) below alice's.
	ours := "SIP/2.0/UDP " + srv.UDP.String() + ";branch=z9hG4bK-se0123456789ab1;rport"
	var hs []uatest.Header
	for _, h := range req.Headers {
		hs = append(hs, h)
		if h.Name == "Via" {
			hs = append(hs, uatest.Header{Name: "Via", Value: ours})
		}
	}
	req.Headers = hs
	tx, err := alice.Send(req)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tx.WaitFinal(wait)
	if err != nil || res.Code != 482 {
		t.Errorf("INVITE carrying our Via below the top: got %v %v, want 482 Loop Detected", res, err)
	}
	if c := bob.NoInvite(200 * time.Millisecond); c != nil {
		t.Errorf("a looping INVITE was forwarded to bob:\n%s", c.Invite())
	}
}

// An INVITE larger than the MTU (SDP > 1300 bytes) is delivered over UDP
// to a NATed phone intact, and so is a large 200.
func TestLargeInviteOverUDP(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	offer := uatest.LargeSDP(aliceLAN, 4000, 3000)
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{SDP: offer})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		r, _ := call.WaitFinal(100 * time.Millisecond)
		t.Fatalf("a %d-byte SDP INVITE did not reach bob (alice got %v): %v", len(offer), r, err)
	}
	inv := in.Invite()
	if inv.Transport != "udp" {
		t.Errorf("INVITE to a NATed UDP phone came over %s", inv.Transport)
	}
	if a, b := sdpLinesExcept(offer), sdpLinesExcept(string(inv.Body)); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("SDP damaged beyond the relay's c=/m= rewrite: sent %d bytes, got %d bytes", len(offer), len(inv.Body))
	}
	if len(inv.Raw) <= 1300 {
		t.Errorf("test bug: the INVITE is only %d bytes", len(inv.Raw))
	}
	answer := uatest.LargeSDP(bobLAN, 5000, 4000)
	if err := in.Answer(answer); err != nil {
		t.Fatal(err)
	}
	ok, err := call.WaitFinal(wait)
	if err != nil || ok.Code != 200 {
		t.Fatalf("alice: %v %v", ok, err)
	}
	if a, b := sdpLinesExcept(answer), sdpLinesExcept(string(ok.Body)); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("SDP answer damaged beyond the relay's c=/m= rewrite: sent %d bytes, got %d", len(answer), len(ok.Body))
	}
	_ = call.Ack()
	if _, err := in.WaitAck(wait); err != nil {
		t.Error(err)
	}
}

// OPTIONS to the server itself is answered 200 with Allow (a keepalive /
// monitoring probe), OPTIONS to a user is proxied and answered by the
// phone.
func TestOptions(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	// A monitoring probe from outside (From not in our domain).
	probe := srv.Phone(t, uatest.Config{Name: "monitor", User: "monitor", Domain: "monitoring.example"})
	res, err := probe.Do(probe.NewRequest("OPTIONS", "sip:"+srv.UDP.String()), wait)
	if err != nil || res.Code != 200 || !strings.Contains(res.Get("Allow"), "INVITE") {
		t.Errorf("OPTIONS sip:%s from a monitor: %v %v, want 200 with Allow", srv.UDP, res, err)
	}
	// A phone's OPTIONS to the server (its keepalive) is answered 200
	// directly, without a challenge, even though From is a local user.
	before := len(alice.Received())
	res, err = alice.Do(alice.NewRequest("OPTIONS", "sip:test.example"), wait)
	if err != nil || res.Code != 200 {
		t.Errorf("OPTIONS sip:test.example from alice: %v %v, want 200", res, err)
	}
	for _, m := range alice.Received()[before:] {
		if m.Code == 407 || m.Code == 401 {
			t.Errorf("alice's keepalive OPTIONS to the server was challenged (%d); phones treat that as failure", m.Code)
		}
	}
	res, err = alice.Do(alice.NewRequest("OPTIONS", "sip:bob@test.example"), wait)
	if err != nil || res.Code != 200 || !strings.Contains(res.Get("Accept"), "application/sdp") {
		t.Errorf("OPTIONS to bob: %v %v, want bob's 200", res, err)
	}
	if m, err := bob.WaitRequest("OPTIONS", wait); err != nil {
		t.Errorf("bob got no OPTIONS: %v", err)
	} else if m.URI != bob.ContactURI("") {
		t.Errorf("OPTIONS Request-URI = %s, want bob's Contact", m.URI)
	}
}
