package edge_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// With two UDP listeners, requests to a phone leave from the socket the
// phone registered to (its NAT only lets that address:port in).
func TestCallLeavesFromRegisteredSocket(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) {
		c.Listen = append(c.Listen, config.Listen{Transport: "udp", Address: "127.0.0.1:0"})
	})
	second := netip.AddrPort{}
	for _, l := range srv.Listeners() {
		if ap, err := netip.ParseAddrPort(l[len("udp "):]); err == nil && l[:3] == "udp" && ap != srv.UDP {
			second = ap
		}
	}
	if !second.IsValid() {
		t.Fatalf("no second UDP listener in %q", srv.Listeners())
	}
	alice := natPhone(t, srv, "alice", aliceLAN) // on the first listener
	bob := srv.Phone(t, uatest.Config{Name: "bob@second", User: "bob", ViaHost: bobLAN, ViaPort: 5060, Server: second})
	mustRegister(t, alice)
	mustRegister(t, bob)
	if ps := srv.PeersOf(t, "bob"); len(ps) != 1 || ps[0].Local != second.String() {
		t.Fatalf("bob registered to %s:\n%s", second, peerSummary(ps))
	}
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		t.Fatal(err)
	}
	if in.Invite().Src != second {
		t.Errorf("INVITE to bob left from %s, want the socket he registered to (%s)", in.Invite().Src, second)
	}
	v, _ := in.Invite().TopVia()
	if a, ok := (uatest.URI{Host: v.Host, Port: v.Port}).AddrPort(); !ok || a != second {
		t.Errorf("our Via %q names %s, not the sending socket %s", in.Invite().Values("Via")[0], a, second)
	}
	_ = in.Answer("")
	if r, err := call.WaitFinal(wait); err != nil || r.Code != 200 {
		t.Fatalf("alice: %v %v", r, err)
	}
	_ = call.Ack()
	if _, err := in.WaitAck(wait); err != nil {
		t.Errorf("bob got no ACK: %v", err)
	}
	bye := hangup(t, in, call, "bob", "alice")
	if bye != nil && bye.Src != srv.UDP {
		t.Errorf("BYE to alice left from %s, want her socket %s", bye.Src, srv.UDP)
	}
}

// The same NAT call over IPv6 loopback, with ULA addresses as the "private"
// side: IPv6 literals in Via, Contact, Record-Route and flow tokens.
func TestCallOverIPv6(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) {
		c.Listen = []config.Listen{{Transport: "udp", Address: "[::1]:0"}, {Transport: "tcp", Address: "[::1]:0"}}
	})
	alice := srv.Phone(t, uatest.Config{Name: "alice@fd00::10", User: "alice", Bind: "[::1]:0", ViaHost: "fd00::10", ViaPort: 5060})
	bob := srv.Phone(t, uatest.Config{Name: "bob@fd00::20/tcp", User: "bob", Bind: "[::1]:0", Transport: "tcp", ViaHost: "fd00::20", ViaPort: 5060})
	mustRegister(t, alice)
	mustRegister(t, bob)
	for _, u := range []string{"alice", "bob"} {
		ps := srv.PeersOf(t, u)
		if len(ps) != 1 || !ps[0].NAT {
			t.Errorf("%s over IPv6 with a ULA Contact:\n%s", u, peerSummary(ps))
		}
	}
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		r, _ := call.WaitFinal(100 * time.Millisecond)
		t.Fatalf("bob (IPv6, TCP) got no INVITE (alice got %v): %v", r, err)
	}
	if in.Invite().URI != bob.ContactURI("") {
		t.Errorf("Request-URI %s, want %s", in.Invite().URI, bob.ContactURI(""))
	}
	_ = in.Answer("")
	if r, err := call.WaitFinal(wait); err != nil || r.Code != 200 {
		t.Fatalf("alice: %v %v", r, err)
	}
	_ = call.Ack()
	if _, err := in.WaitAck(wait); err != nil {
		t.Errorf("bob got no ACK over IPv6: %v", err)
	}
	hangup(t, in, call, "bob", "alice")
}
