package edge_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/stun"
	"github.com/sipedge/sipedge/uatest"
)

// fastKeepalive pings every second and calls a peer unreachable after two
// pings unanswered for 300 ms each.
const fastKeepalive = `
[keepalive]
interval = "1s"
timeout = "300ms"
misses = 2
`

// waitPeer polls the peers view until user's first peer satisfies ok.
func waitPeer(t *testing.T, srv *edgetest.Server, user string, d time.Duration, what string, ok func(admin.Peer) bool) admin.Peer {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ps := srv.PeersOf(t, user)
		if len(ps) > 0 && ok(ps[0]) {
			return ps[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; peers of %s:\n%s", what, d, user, peerSummary(ps))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// optionsFrom returns the OPTIONS pings p received and checks each came
// from the socket p registered to.
func optionsFrom(t *testing.T, p *uatest.Phone, srv *edgetest.Server) int {
	t.Helper()
	n := 0
	for _, ev := range p.Events() {
		if ev.In && ev.Msg != nil && ev.Msg.Method == "OPTIONS" {
			if ev.Peer != srv.UDP && ev.Peer != srv.TCP {
				t.Errorf("%s got an OPTIONS from %v, not from the SIP socket it registered to", p.Name(), ev.Peer)
			}
			n++
		}
	}
	return n
}

// A NATed phone is pinged from the socket it registered to, its answers
// give status and RTT; when it goes away it becomes UNREACHABLE after the
// configured misses, and /metrics tell.
func TestKeepaliveQualify(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+fastKeepalive)
	alice := natPhone(t, srv, "alice", aliceLAN)
	mustRegister(t, alice)
	bob := srv.Phone(t, uatest.Config{User: "bob"}) // not behind NAT
	mustRegister(t, bob)

	p := waitPeer(t, srv, "alice", 7*time.Second, "alice OK", func(p admin.Peer) bool { return strings.HasPrefix(p.Status, "OK (") })
	ka := p.Keepalive
	if ka == nil || ka.Answered < 1 || ka.RTTms <= 0 || ka.IntervalS != 1 || ka.Method != "options" || len(ka.HistoryMS) < 1 {
		t.Fatalf("alice's keepalive state: %+v", ka)
	}
	if n := optionsFrom(t, alice, srv); n < 1 {
		t.Fatal("alice got no OPTIONS")
	}
	time.Sleep(1500 * time.Millisecond)
	if n := optionsFrom(t, bob, srv); n != 0 {
		t.Errorf("bob is not behind NAT but got %d keepalive OPTIONS", n)
	}
	if b := srv.PeersOf(t, "bob"); len(b) != 1 || b[0].Status != "" || b[0].Keepalive != nil {
		t.Errorf("bob (no NAT) shows a keepalive state:\n%s", peerSummary(b))
	}

	alice.Close() // the phone is gone: pings go unanswered
	p = waitPeer(t, srv, "alice", 6*time.Second, "alice UNREACHABLE", func(p admin.Peer) bool { return p.Status == "UNREACHABLE" })
	if p.Keepalive.Misses < 2 || p.Keepalive.HistoryMS[len(p.Keepalive.HistoryMS)-1] != -1 {
		t.Errorf("unreachable alice: %+v", p.Keepalive)
	}
	m := metricsText(t, srv)
	for _, want := range []string{`sipedge_keepalive_flows{status="unreachable"} 1`, "sipedge_keepalive_rtt_seconds_count "} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(m, "sipedge_keepalive_answers_total 0\n") || strings.Contains(m, "sipedge_keepalive_missed_total 0\n") {
		t.Errorf("keepalive counters did not move:\n%s", grepLines(m, "sipedge_keepalive"))
	}
}

// With remove_unreachable, a phone that stops answering loses its
// registration, so calls fail at once instead of ringing nothing.
func TestKeepaliveRemoveUnreachable(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+fastKeepalive+"remove_unreachable = true\n")
	alice := srv.Phone(t, uatest.Config{Name: "alice@lan", User: "alice", ViaHost: aliceLAN, ViaPort: 5060, NoAutoOptions: true})
	mustRegister(t, alice)
	if _, err := alice.WaitRequest("OPTIONS", 7*time.Second); err != nil {
		t.Fatalf("no keepalive reached alice: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.PeersOf(t, "alice")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("alice never answers pings but is still registered:\n%s", peerSummary(srv.PeersOf(t, "alice")))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keepalive = "0s" on a user turns pings off for that user only.
func TestKeepalivePerUser(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, strings.Replace(edgetest.Base, `password = "carol-secret"`, `password = "carol-secret"
keepalive = "0s"`, 1)+fastKeepalive)
	alice := natPhone(t, srv, "alice", aliceLAN)
	carol := natPhone(t, srv, "carol", "192.168.7.7")
	mustRegister(t, alice)
	mustRegister(t, carol)
	waitPeer(t, srv, "alice", 7*time.Second, "alice OK", func(p admin.Peer) bool { return strings.HasPrefix(p.Status, "OK") })
	time.Sleep(2 * time.Second)
	if n := optionsFrom(t, carol, srv); n != 0 {
		t.Errorf("carol has keepalive = \"0s\" but got %d OPTIONS", n)
	}
	if c := srv.PeersOf(t, "carol"); len(c) != 1 || c[0].Keepalive != nil {
		t.Errorf("carol:\n%s", peerSummary(c))
	}
}

// A call keeps its NATed flows pinged even when the phone's registration
// is gone (a phone that re-registers rarely must not lose its binding
// mid-call); after the BYE the pings stop.
func TestKeepaliveHeldByDialog(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+fastKeepalive)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	waitPeer(t, srv, "alice", 7*time.Second, "alice OK", func(p admin.Peer) bool { return strings.HasPrefix(p.Status, "OK") })
	call, in := answeredCall(t, alice, bob)
	if res, err := alice.Unregister("", "", ""); err != nil || res.Code != 200 {
		t.Fatalf("unregister: %v %v", res, err)
	}
	before := optionsFrom(t, alice, srv)
	time.Sleep(2500 * time.Millisecond)
	if n := optionsFrom(t, alice, srv) - before; n < 2 {
		t.Fatalf("alice is in a call but got %d pings in 2.5 s after unregistering", n)
	}
	hangup(t, call, in, "alice", "bob")
	time.Sleep(1200 * time.Millisecond) // a ping already on its way may land
	before = optionsFrom(t, alice, srv)
	time.Sleep(2500 * time.Millisecond)
	if n := optionsFrom(t, alice, srv) - before; n != 0 {
		t.Errorf("alice is neither registered nor in a call but got %d pings", n)
	}
}

// Over TCP the pings go through the phone's own connection.
func TestKeepaliveTCP(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+fastKeepalive)
	alice := srv.Phone(t, uatest.Config{Name: "alice@lan", User: "alice", Transport: "tcp", ViaHost: aliceLAN, ViaPort: 5060})
	mustRegister(t, alice)
	p := waitPeer(t, srv, "alice", 7*time.Second, "alice OK over TCP", func(p admin.Peer) bool { return strings.HasPrefix(p.Status, "OK") })
	if p.Transport != "tcp" || optionsFrom(t, alice, srv) < 1 {
		t.Fatalf("TCP peer %+v", p)
	}
}

// method = "crlf" sends 4-byte pings and shows no status it cannot know.
func TestKeepaliveCRLF(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+fastKeepalive+`method = "crlf"`+"\n")
	alice := natPhone(t, srv, "alice", aliceLAN)
	mustRegister(t, alice)
	deadline := time.Now().Add(7 * time.Second)
	for {
		n := 0
		for _, ev := range alice.Events() {
			if ev.In && string(ev.Data) == "\r\n\r\n" && ev.Peer == srv.UDP {
				n++
			}
		}
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d CRLF pings in 7 s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p := srv.PeersOf(t, "alice"); len(p) != 1 || p[0].Status != "UNMONITORED" || optionsFrom(t, alice, srv) != 0 {
		t.Errorf("CRLF-pinged alice:\n%s", peerSummary(p))
	}
}

// A route with a keepalive is pinged and listed with the peers.
func TestKeepaliveTrunk(t *testing.T) {
	t.Parallel()
	trunk := uatest.New(t, uatest.Config{Name: "trunk", User: "trunk"})
	srv := edgetest.Start(t, edgetest.Base+fastKeepalive+fmt.Sprintf(`
[[routes]]
name = "carrier"
to = "sip:%s"
keepalive = "1s"
`, trunk.Addr()))
	deadline := time.Now().Add(7 * time.Second)
	for {
		var tp *admin.Peer
		for _, p := range srv.Peers(t) {
			if p.Kind == "trunk" {
				tp = &p
			}
		}
		if tp != nil && strings.HasPrefix(tp.Status, "OK") && tp.AOR == "carrier" && tp.Remote == trunk.Addr().String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trunk not OK in the peers view: %+v", tp)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answeredCall calls callee from caller, answers and ACKs.
func answeredCall(t *testing.T, caller, callee *uatest.Phone) (out, in *uatest.Call) {
	t.Helper()
	out, err := caller.Invite(callee.Config().User+"@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if in, err = callee.WaitInvite(wait); err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(""); err != nil {
		t.Fatal(err)
	}
	if _, err := out.WaitCode(200, wait); err != nil {
		t.Fatal(err)
	}
	if err := out.Ack(); err != nil {
		t.Fatal(err)
	}
	return out, in
}

// metricsText GETs /metrics.
func metricsText(t *testing.T, srv *edgetest.Server) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+srv.Admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+srv.Token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// Phones' STUN keepalives (RFC 5626 §8) on the SIP UDP port are answered
// from that port with the address they came from.
func TestKeepaliveSTUNOnSIPPort(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := stun.Binding(ctx, c, srv.UDP)
	if err != nil {
		t.Fatalf("STUN Binding to the SIP port: %v", err)
	}
	if res.XORMapped != c.LocalAddr().(*net.UDPAddr).AddrPort() || res.From != srv.UDP || res.Software != "sipedge" {
		t.Fatalf("STUN answer %+v; want our address %v from %v", res, c.LocalAddr(), srv.UDP)
	}
	// A Binding indication (a keepalive with no answer) and junk get none.
	var ind stun.Builder
	ind.Reset(nil, stun.MethodBinding, stun.ClassIndication, stun.NewTransactionID())
	overrun := append([]byte{0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 16)...) // length 8, 4 bytes follow
	for _, b := range [][]byte{ind.Bytes(), overrun} {
		if _, err := c.WriteToUDPAddrPort(b, srv.UDP); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 1500)
	if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("answer to an indication or junk: % x", buf[:n])
	}
	if m := metricsText(t, srv); !strings.Contains(m, "sipedge_sip_stun_answered_total 1\n") {
		t.Errorf("/metrics: %s", grepLines(m, "stun"))
	}
}
