package edge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// tcpNATPhone is a TCP phone behind NAT: it claims 192.168.1.x:5060 in
// Via and Contact and can only be reached down its own connection (it
// does not listen anywhere).
func tcpNATPhone(t *testing.T, srv *edgetest.Server, user, lan string) *uatest.Phone {
	t.Helper()
	return srv.Phone(t, uatest.Config{Name: user + "@" + lan + "/tcp", User: user, Transport: "tcp", ViaHost: lan, ViaPort: 5060})
}

// A phone registered over TCP is reached down its existing connection, from
// a caller on UDP; the whole dialog works across the two transports.
func TestCallUDPToTCPPhone(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := tcpNATPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	ps := srv.PeersOf(t, "bob")
	if len(ps) != 1 || ps[0].Transport != "tcp" || ps[0].Remote != bob.Addr().String() {
		t.Fatalf("bob's TCP binding, want tcp from %s:\n%s", bob.Addr(), peerSummary(ps))
	}
	if !ps[0].NAT {
		t.Errorf("bob over TCP with Via/Contact %s: nat=false", bobLAN)
	}

	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		r, _ := call.WaitFinal(100 * time.Millisecond)
		t.Fatalf("bob's TCP phone got no INVITE on its connection (alice got %v): %v", r, err)
	}
	inv := in.Invite()
	if inv.Transport != "tcp" || inv.Src != srv.TCP {
		t.Errorf("INVITE came over %s from %s, want tcp from %s", inv.Transport, inv.Src, srv.TCP)
	}
	if inv.URI != bob.ContactURI("") {
		t.Errorf("Request-URI = %s, want bob's Contact %s", inv.URI, bob.ContactURI(""))
	}
	if v, _ := inv.TopVia(); v.Transport != "TCP" {
		t.Errorf("our Via on a TCP hop says %q: %s", v.Transport, inv.Values("Via")[0])
	}
	rrs := inv.Values("Record-Route")
	if len(rrs) == 0 {
		t.Fatalf("INVITE has no Record-Route")
	}
	_ = in.Ring()
	if err := in.Answer(""); err != nil {
		t.Fatal(err)
	}
	ok, err := call.WaitFinal(wait)
	if err != nil || ok.Code != 200 {
		t.Fatalf("alice: %v %v", ok, err)
	}
	// The caller is on UDP: the route set it gets must lead it back to our
	// UDP listener, not to the TCP side of the call (RFC 3261 §16.6 step 4;
	// a proxy that changes transport records two routes, RFC 5658).
	routes := call.RouteSet()
	if len(routes) == 0 {
		t.Fatal("200 to alice has no Record-Route")
	}
	first, _ := uatest.ParseNameAddr(routes[0])
	if a, _ := first.URI.AddrPort(); a != srv.UDP || first.URI.Params.Has("transport") {
		t.Errorf("alice (UDP) would send in-dialog requests to %s (first route), want our UDP listener %s.\n"+
			"Record-Route set seen by the caller: %q\n"+
			"proxy/proxy.go recordRoute: one Record-Route built for the outgoing (TCP) side only; on a transport change the proxy must record-route twice",
			first.URI, srv.UDP, ok.Values("Record-Route"))
	}
	if err := call.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.WaitAck(wait); err != nil {
		t.Errorf("bob (TCP) got no ACK from alice (UDP) who followed the route set: %v", err)
	}
	bye := hangup(t, in, call, "bob", "alice")
	if bye != nil && bye.Transport != "udp" {
		t.Errorf("BYE reached alice over %s", bye.Transport)
	}
}

// And the other way: a TCP phone calls a UDP phone.
func TestCallTCPToUDPPhone(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := tcpNATPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		t.Fatalf("bob (UDP) got no INVITE from alice (TCP): %v", err)
	}
	if err := in.Answer(""); err != nil {
		t.Fatal(err)
	}
	ok, err := call.WaitFinal(wait)
	if err != nil || ok.Code != 200 {
		t.Fatalf("alice: %v %v", ok, err)
	}
	if ok.Transport != "tcp" {
		t.Errorf("200 reached alice over %s", ok.Transport)
	}
	// alice (TCP) follows her route set: its first entry must be our TCP
	// listener, marked transport=tcp (with both listeners on 5060 in
	// production a UDP route only works by coincidence of port numbers).
	if rs := call.RouteSet(); len(rs) > 0 {
		na, _ := uatest.ParseNameAddr(rs[0])
		tr, _ := na.URI.Params.Get("transport")
		if a, _ := na.URI.AddrPort(); a != srv.TCP || !strings.EqualFold(tr, "tcp") {
			t.Errorf("alice (TCP) would send in-dialog requests to %s, want our TCP listener %s;transport=tcp; Record-Route %q\n"+
				"proxy/proxy.go recordRoute: on a transport change the proxy must record-route twice (RFC 5658)", na.URI, srv.TCP, ok.Values("Record-Route"))
		}
	}
	// bob (UDP) follows his route set: its first entry must be our UDP
	// listener.
	routes := in.RouteSet()
	if len(routes) == 0 {
		t.Fatal("no Record-Route in bob's INVITE")
	}
	first, _ := uatest.ParseNameAddr(routes[0])
	if a, _ := first.URI.AddrPort(); a != srv.UDP || first.URI.Params.Has("transport") {
		t.Errorf("bob (UDP) would send in-dialog requests to %s, want %s; Record-Route %q", first.URI, srv.UDP, routes)
	}
	_ = call.Ack()
	if _, err := in.WaitAck(wait); err != nil {
		t.Errorf("bob got no ACK: %v", err)
	}
	hangup(t, in, call, "bob", "alice")
}

// A CRLF keepalive on a TCP connection is answered with CRLF (RFC 5626
// §3.5.1) and the connection keeps working.
func TestCRLFKeepaliveTCP(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	p := tcpNATPhone(t, srv, "alice", aliceLAN)
	mustRegister(t, p)
	for i := 0; i < 3; i++ {
		if err := p.Ping(); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitPong(time.Second); err != nil {
			t.Fatalf("keepalive %d: %v", i+1, err)
		}
	}
	// A ping split over two TCP segments is still a ping.
	if err := p.SendRaw([]byte("\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := p.SendRaw([]byte("\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitPong(time.Second); err != nil {
		t.Errorf("CRLFCRLF sent in two segments: %v", err)
	}
	// A keepalive glued to the next message must not break framing.
	req := p.NewRequest("OPTIONS", "sip:"+srv.TCP.String())
	req.Set("From", "<sip:monitor@monitoring.example>;tag=x1")
	if err := p.SendRaw(append([]byte("\r\n\r\n"), req.Bytes()...)); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitPong(time.Second); err != nil {
		t.Error(err)
	}
	res := mustRegister(t, p)
	if res.Transport != "tcp" {
		t.Errorf("REGISTER answered over %s", res.Transport)
	}
	found := false
	for _, m := range p.Received() {
		if m.Code == 200 && strings.HasSuffix(m.Get("CSeq"), "OPTIONS") {
			found = true
		}
	}
	if !found {
		t.Errorf("the OPTIONS sent right after a CRLF keepalive was not answered")
	}
}
