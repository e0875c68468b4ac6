package edge_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// ourRecordRoute checks that rr is one of our Record-Route entries for the
// listener at srv.UDP and returns its URI.
func ourRecordRoute(t *testing.T, srv *edgetest.Server, rr string) uatest.URI {
	t.Helper()
	na, err := uatest.ParseNameAddr(rr)
	if err != nil {
		t.Fatalf("Record-Route %q: %v", rr, err)
	}
	u := na.URI
	if a, ok := u.AddrPort(); !ok || a != srv.UDP {
		t.Errorf("Record-Route %q does not point at our UDP listener %s", rr, srv.UDP)
	}
	if !u.Params.Has("lr") {
		t.Errorf("Record-Route %q lacks ;lr (loose routing)", rr)
	}
	return u
}

// flowToken is the flow token sipedge writes for a UDP peer seen at
// remote on our socket local (sipx.Flow.Token).
func flowToken(remote, local fmt.Stringer) string {
	r := strings.Replace(remote.String(), ":", ".", 1)
	l := strings.Replace(local.String(), ":", ".", 1)
	return "u." + r + "." + l
}

// hangup sends BYE from one side of a call, has the other side answer it
// with 200 and checks that the 200 comes back.
func hangup(t *testing.T, from, to *uatest.Call, fromName, toName string) *uatest.Msg {
	t.Helper()
	done := make(chan *uatest.Msg, 1)
	go func() {
		r, err := from.Bye()
		if err != nil {
			t.Errorf("%s's BYE: %v", fromName, err)
		}
		done <- r
	}()
	bye, err := to.WaitRequest("BYE", wait)
	if err != nil {
		t.Errorf("%s's BYE did not reach %s: %v", fromName, toName, err)
		<-done
		return nil
	}
	_ = to.Respond(bye, 200, "OK")
	if r := <-done; r == nil || r.Code != 200 {
		t.Errorf("%s's BYE was answered with %v, want %s's 200", fromName, r, toName)
	}
	return bye
}

// The basic call between two phones behind NAT, as in the field: both
// register from private addresses; alice calls bob; the proxy challenges
// alice, routes the INVITE to bob's real address with his Contact as
// Request-URI and a Record-Route carrying both flows; the 200 and the ACK
// (which used to get lost, dropping calls after 32 s) and the BYE in both
// directions reach the phones' real addresses.
func TestCallBetweenNATedPhones(t *testing.T) {
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
		r, _ := call.WaitFinal(100 * time.Millisecond)
		t.Fatalf("bob's phone got no INVITE at its real address %s (alice got %v): %v", bob.Addr(), r, err)
	}
	ch := call.Challenge()
	if ch == nil || ch.Code != 407 {
		t.Errorf("alice's first INVITE was not challenged with 407 (got %v); a caller from our domain must authenticate", ch)
	} else if n := len(ch.Values("Proxy-Authenticate")); n != 2 {
		t.Errorf("407 carries %d Proxy-Authenticate challenges, want 2 (SHA-256, MD5)", n)
	}
	inv := in.Invite()
	if inv.Src != srv.UDP {
		t.Errorf("INVITE came from %s, want our socket %s (the one bob registered to)", inv.Src, srv.UDP)
	}
	if want := bob.ContactURI(""); inv.URI != want {
		t.Errorf("INVITE Request-URI = %s, want bob's registered Contact %s", inv.URI, want)
	}
	if mf := inv.Get("Max-Forwards"); mf != "69" {
		t.Errorf("Max-Forwards = %q, want 69", mf)
	}
	vias := inv.Values("Via")
	if len(vias) != 2 {
		t.Fatalf("INVITE has %d Vias, want 2 (ours + alice's):\n%s", len(vias), inv)
	}
	top, _ := uatest.ParseVia(vias[0])
	if a, ok := (uatest.URI{Scheme: "sip", Host: top.Host, Port: top.Port}).AddrPort(); !ok || a != srv.UDP || top.Transport != "UDP" {
		t.Errorf("our Via %q does not name our UDP listener %s", vias[0], srv.UDP)
	}
	av, _ := uatest.ParseVia(vias[1])
	if r, _ := av.Params.Get("received"); r != "127.0.0.1" {
		t.Errorf("alice's Via lacks received=127.0.0.1: %q", vias[1])
	}
	if r, _ := av.Params.Get("rport"); r != strconv.Itoa(int(alice.Addr().Port())) {
		t.Errorf("alice's Via rport = %q, want %d: %q", r, alice.Addr().Port(), vias[1])
	}
	rrs := inv.Values("Record-Route")
	if len(rrs) != 1 {
		t.Fatalf("INVITE has Record-Route %q, want exactly one of ours", rrs)
	}
	rr := ourRecordRoute(t, srv, rrs[0])
	if ftag, _ := rr.Params.Get("ftag"); ftag != call.LocalTag {
		t.Errorf("Record-Route ftag = %q, want alice's From tag %q", ftag, call.LocalTag)
	}
	if fa, _ := rr.Params.Get("fa"); fa != flowToken(alice.Addr(), srv.UDP) {
		t.Errorf("Record-Route fa = %q, want alice's flow %q", fa, flowToken(alice.Addr(), srv.UDP))
	}
	if fb, _ := rr.Params.Get("fb"); fb != flowToken(bob.Addr(), srv.UDP) {
		t.Errorf("Record-Route fb = %q, want bob's flow %q", fb, flowToken(bob.Addr(), srv.UDP))
	}
	// The relay anchors the media (both phones are behind NAT): only c=
	// and the m= port may change.
	if a, b := sdpLinesExcept(alice.SDP()), sdpLinesExcept(string(inv.Body)); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("SDP changed beyond c=/m= on the way:\nsent %q\ngot  %q", alice.SDP(), inv.Body)
	}

	if err := in.Ring(); err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitCode(180, wait); err != nil {
		t.Fatalf("alice got no 180: %v", err)
	}
	if err := in.Answer(""); err != nil {
		t.Fatal(err)
	}
	ok, err := call.WaitFinal(wait)
	if err != nil || ok.Code != 200 {
		t.Fatalf("alice's final response: %v %v, want 200", ok, err)
	}
	if ok.Src != srv.UDP {
		t.Errorf("200 came from %s, want %s", ok.Src, srv.UDP)
	}
	if got := ok.Values("Record-Route"); len(got) != 1 || got[0] != rrs[0] {
		t.Errorf("200 Record-Route = %q, want %q (as bob copied it)", got, rrs)
	}
	if vs := ok.Values("Via"); len(vs) != 1 {
		t.Errorf("200 reached alice with %d Vias, want only hers: %q", len(vs), vs)
	}
	if err := call.Ack(); err != nil {
		t.Fatal(err)
	}
	if d := call.Dest(); d != srv.UDP {
		t.Errorf("alice sends in-dialog requests to %s, want %s (from the Record-Route)", d, srv.UDP)
	}
	ack, err := in.WaitAck(wait)
	if err != nil {
		t.Fatalf("the ACK for the 200 did not reach bob (a call without ACK is torn down after 32 s): %v", err)
	}
	if ack.URI != bob.ContactURI("") {
		t.Errorf("ACK Request-URI = %s, want bob's Contact %s", ack.URI, bob.ContactURI(""))
	}
	if rs := ack.Values("Route"); len(rs) != 0 {
		t.Errorf("ACK reached bob with Route %q; the proxy must pop its own route", rs)
	}

	// bob hangs up: the BYE must reach alice's real address.
	byeDone := make(chan *uatest.Msg, 1)
	go func() {
		res, err := in.Bye()
		if err != nil {
			t.Errorf("bob's BYE: %v", err)
		}
		byeDone <- res
	}()
	bye, err := call.WaitRequest("BYE", wait)
	if err != nil {
		t.Fatalf("bob's BYE did not reach alice's real address %s: %v", alice.Addr(), err)
	}
	if bye.URI != alice.ContactURI("") {
		t.Errorf("BYE Request-URI = %s, want alice's Contact %s", bye.URI, alice.ContactURI(""))
	}
	if bye.Src != srv.UDP {
		t.Errorf("BYE came from %s, want %s (the socket alice registered to)", bye.Src, srv.UDP)
	}
	if err := call.Respond(bye, 200, "OK"); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-byeDone:
		if res == nil || res.Code != 200 {
			t.Errorf("bob's BYE was answered with %v, want alice's 200", res)
		}
	case <-time.After(2 * wait):
		t.Fatal("bob's BYE got no final response")
	}
}

// The same call with alice hanging up, and the 200 retransmitted by bob
// until the ACK arrives: no 200 may be left unacknowledged.
func TestCallCallerHangsUp(t *testing.T) {
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
	if r, err := call.WaitFinal(wait); err != nil || r.Code != 200 {
		t.Fatalf("alice: %v %v", r, err)
	}
	if err := call.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.WaitAck(wait); err != nil {
		t.Fatal(err)
	}
	if bye := hangup(t, call, in, "alice", "bob"); bye != nil {
		if n, _ := bye.CSeq(); n != 3 {
			t.Errorf("alice's BYE CSeq = %d, want 3 (after INVITE 1 and authenticated INVITE 2)", n)
		}
	}
}

// A user with two phones: both ring, the first to answer gets the call and
// the other is cancelled (RFC 3261 §16.7 step 10 via CANCEL).
func TestForking(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob1 := natPhone(t, srv, "bob", bobLAN)
	bob2 := natPhone(t, srv, "bob", bob2LAN)
	mustRegister(t, alice)
	mustRegister(t, bob1)
	mustRegister(t, bob2)
	if ps := srv.PeersOf(t, "bob"); len(ps) != 2 {
		t.Fatalf("bob's two phones:\n%s", peerSummary(ps))
	}
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in1, err := bob1.WaitInvite(wait)
	if err != nil {
		t.Fatalf("bob's first phone did not ring: %v", err)
	}
	in2, err := bob2.WaitInvite(wait)
	if err != nil {
		t.Fatalf("bob's second phone did not ring: %v", err)
	}
	if in1.Invite().URI != bob1.ContactURI("") || in2.Invite().URI != bob2.ContactURI("") {
		t.Errorf("Request-URIs %s and %s, want each phone's Contact", in1.Invite().URI, in2.Invite().URI)
	}
	_ = in1.Ring()
	_ = in2.Ring()
	if _, err := call.WaitCode(180, wait); err != nil {
		t.Fatal(err)
	}
	if err := in1.Answer(""); err != nil {
		t.Fatal(err)
	}
	ok, err := call.WaitFinal(wait)
	if err != nil || ok.Code != 200 {
		t.Fatalf("alice: %v %v, want 200", ok, err)
	}
	if c := ok.Get("Contact"); !strings.Contains(c, bobLAN) {
		t.Errorf("200 Contact %q is not the answering phone's", c)
	}
	if _, err := in2.WaitCancel(wait); err != nil {
		t.Fatalf("the phone that did not answer was not cancelled: %v", err)
	}
	if _, err := in2.WaitRequest("ACK", wait); err != nil {
		t.Errorf("the proxy did not ACK the cancelled phone's 487: %v", err)
	}
	if err := call.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := in1.WaitAck(wait); err != nil {
		t.Fatalf("the answering phone got no ACK: %v", err)
	}
	if in1.Cancelled() {
		t.Error("the answering phone was cancelled")
	}
	time.Sleep(200 * time.Millisecond)
	for _, r := range call.Responses() {
		if r.Code >= 300 && r.Code != 407 {
			t.Errorf("alice got %s after the call was answered", r.Summary())
		}
	}
}

// The caller gives up before the answer: the callee gets CANCEL, the
// caller 487.
func TestCancelBeforeAnswer(t *testing.T) {
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
	_ = in.Ring()
	if _, err := call.WaitCode(180, wait); err != nil {
		t.Fatal(err)
	}
	res, err := call.Cancel()
	if err != nil || res.Code != 200 {
		t.Fatalf("CANCEL: %v %v, want 200", res, err)
	}
	cancel, err := in.WaitCancel(wait)
	if err != nil {
		t.Fatalf("bob got no CANCEL: %v", err)
	}
	if cancel.URI != in.Invite().URI || cancel.Branch() != in.Invite().Branch() {
		t.Errorf("CANCEL does not match the INVITE bob got (R-URI %s vs %s, branch %s vs %s)", cancel.URI, in.Invite().URI, cancel.Branch(), in.Invite().Branch())
	}
	final, err := call.WaitFinal(wait)
	if err != nil || final.Code != 487 {
		t.Fatalf("alice's INVITE ended with %v %v, want 487", final, err)
	}
	if _, err := in.WaitRequest("ACK", wait); err != nil {
		t.Errorf("the proxy did not ACK bob's 487: %v", err)
	}
}

// Routing outcomes: 404, 480, no open relay, routes to a trunk.
func TestRouting(t *testing.T) {
	t.Parallel()
	trunk := uatest.New(t, uatest.Config{Name: "trunk", User: "trunk", Domain: "carrier.example"})
	srv := edgetest.Start(t, edgetest.Base+fmt.Sprintf(`
[[routes]]
name = "carrier"
user = "^9"
to = "sip:%s"
`, trunk.Addr()))
	alice := natPhone(t, srv, "alice", aliceLAN)
	mustRegister(t, alice)

	finalOf := func(t *testing.T, p *uatest.Phone, to string, o uatest.InviteOpts) *uatest.Msg {
		t.Helper()
		c, err := p.Invite(to, o)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.WaitFinal(wait)
		if err != nil {
			t.Fatalf("INVITE %s: %v", to, err)
		}
		return r
	}
	t.Run("unknown user 404", func(t *testing.T) {
		if r := finalOf(t, alice, "nobody@test.example", uatest.InviteOpts{}); r.Code != 404 {
			t.Errorf("INVITE to an unknown user: %s, want 404", r.Summary())
		}
	})
	t.Run("unregistered user 480", func(t *testing.T) {
		if r := finalOf(t, alice, "carol@test.example", uatest.InviteOpts{}); r.Code != 480 {
			t.Errorf("INVITE to carol (provisioned, not registered): %s, want 480", r.Summary())
		}
	})
	t.Run("stranger to outside 403", func(t *testing.T) {
		mallory := srv.Phone(t, uatest.Config{Name: "mallory", User: "mallory", Domain: "evil.example"})
		r := finalOf(t, mallory, "sip:+4930123456@other.example", uatest.InviteOpts{})
		if r.Code != 403 {
			t.Errorf("INVITE from sip:mallory@evil.example to another domain without credentials: %s, want 403 (no open relay)", r.Summary())
		}
		r = finalOf(t, mallory, "sip:9123@other.example", uatest.InviteOpts{})
		if r.Code != 403 {
			t.Errorf("stranger to a number matching the trunk route: %s, want 403 (toll fraud)", r.Summary())
		}
		if c := trunk.NoInvite(200 * time.Millisecond); c != nil {
			t.Errorf("the trunk received a stranger's INVITE:\n%s", c.Invite())
		}
	})
	t.Run("local user without credentials is challenged", func(t *testing.T) {
		r := finalOf(t, alice, "sip:9123@other.example", uatest.InviteOpts{NoAuth: true})
		if r.Code != 407 {
			t.Errorf("alice to the trunk without credentials: %s, want 407", r.Summary())
		}
		if c := trunk.NoInvite(200 * time.Millisecond); c != nil {
			t.Errorf("the trunk received an unauthenticated INVITE:\n%s", c.Invite())
		}
	})
	t.Run("local user to trunk", func(t *testing.T) {
		call, err := alice.Invite("sip:9123@other.example", uatest.InviteOpts{})
		if err != nil {
			t.Fatal(err)
		}
		in, err := trunk.WaitInvite(wait)
		if err != nil {
			r, _ := call.WaitFinal(100 * time.Millisecond)
			t.Fatalf("alice's authenticated call to 9123 did not reach the trunk (alice got %v): %v", r, err)
		}
		if want := "sip:9123@" + trunk.Addr().String(); in.Invite().URI != want {
			t.Errorf("trunk Request-URI = %s, want %s", in.Invite().URI, want)
		}
		if in.Invite().Has("Proxy-Authorization") {
			// Our nonces are stateless: whoever holds these credentials can
			// replay them to us until the nonce goes stale.
			t.Errorf("alice's Proxy-Authorization for our realm was forwarded to the trunk: %s", in.Invite().Get("Proxy-Authorization"))
		}
		_ = in.Answer("")
		ok, err := call.WaitFinal(wait)
		if err != nil || ok.Code != 200 {
			t.Fatalf("alice: %v %v", ok, err)
		}
		if err := call.Ack(); err != nil {
			t.Fatal(err)
		}
		if _, err := in.WaitAck(wait); err != nil {
			t.Fatalf("trunk got no ACK: %v", err)
		}
		// The trunk hangs up: its BYE follows the Record-Route back to
		// alice's flow.
		hangup(t, in, call, "trunk", "alice")
	})
}
