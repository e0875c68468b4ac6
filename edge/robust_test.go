package edge_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// junkUDP are datagrams a SIP port sees in the wild: scanners, broken
// phones, truncated fragments, attacks on the parser.
func junkUDP(srv *edgetest.Server) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 1200)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	hdr := func(extra string) string {
		return "INVITE sip:nobody@test.example SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKjunk" + fmt.Sprint(rng.Uint32()) + "\r\n" +
			"From: <sip:x@evil.example>;tag=1\r\nTo: <sip:nobody@test.example>\r\n" +
			"Call-ID: junk" + fmt.Sprint(rng.Uint32()) + "\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" + extra
	}
	out := [][]byte{
		{},
		{0},
		random,
		// A STUN Binding indication: the SIP port answers requests (the
		// phone here could not parse the answer), indications get nothing.
		append([]byte{0x00, 0x11, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, random[:12]...),
		[]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), // a TLS ClientHello
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		[]byte("INVITE sip:bob@test.example SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4"), // truncated
		[]byte(hdr("Content-Length: 5000\r\n\r\nv=0\r\n")),                        // body shorter than announced
		[]byte(hdr("Content-Length: -1\r\n\r\n")),
		[]byte(hdr("Content-Length: 18446744073709551616\r\n\r\n")),
		[]byte(hdr("Content-Length: abc\r\n\r\n")),
		[]byte(hdr("X-Huge: " + strings.Repeat("A", 60000) + "\r\nContent-Length: 0\r\n\r\n")),
		[]byte(hdr(strings.Repeat("X-Many: 1\r\n", 3000) + "Content-Length: 0\r\n\r\n")),
		[]byte(hdr("Contact: <sip:bob@[::1\r\nContent-Length: 0\r\n\r\n")),
		[]byte(hdr("Contact: <<<>>>;;;==\r\nRoute: <sip:" + srv.UDP.String() + ";lr;fa=garbage;fb=t.1.2.3.4.x>\r\nContent-Length: 0\r\n\r\n")),
		[]byte("INVITE sip:bob@test.example SIP/2.0\r\nVia: garbage\r\nFrom: <<\r\nTo: >>\r\nCall-ID: x\r\nCSeq: x INVITE\r\nMax-Forwards: many\r\nContent-Length: 0\r\n\r\n"),
		[]byte("INVITE  SIP/2.0\r\n\r\n"),
		[]byte("INVITE sip:bob@test.example SIP/2.0\r\n\r\n"), // no headers at all
		[]byte("SIP/2.0 200 OK\r\n\r\n"),                      // stray response without Via
		[]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + srv.UDP.String() + ";branch=z9hG4bK-sexxxx;se-up=u.1.2.3.4.5.6.7.8.9.10\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
		[]byte("REGISTER sip:test.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n\x00\x00\x00\r\n\r\n"),
		[]byte(hdr("Authorization: Digest username=\"alice\", realm=\"test.example\", nonce=\"" + strings.Repeat("n", 5000) + "\", uri=\"x\", response=\"y\"\r\nContent-Length: 0\r\n\r\n")),
		bytes.Repeat([]byte("A"), 65000),
	}
	return out
}

// Junk over UDP and TCP does not stop the server nor lose registrations.
func TestMalformedInput(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := tcpNATPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)

	junk := srv.Phone(t, uatest.Config{Name: "junk-udp", User: "junk"})
	for _, b := range junkUDP(srv) {
		if err := junk.SendRaw(b); err != nil {
			t.Logf("send %d junk bytes: %v", len(b), err)
		}
	}
	// A REGISTER whose CSeq method does not match gets 400 (RFC 3261 §8.2).
	bad := junk.NewRequest("REGISTER", "sip:test.example")
	bad.Set("CSeq", "1 INVITE")
	tx, err := junk.Send(bad)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := tx.WaitFinal(wait); err != nil || res.Code != 400 {
		t.Errorf("REGISTER with CSeq method INVITE: %v %v, want 400", res, err)
	}

	tcpJunk := []string{
		"INVITE sip:bob@test.example SIP/2.0\r\nContent-Length: abc\r\n\r\n",
		"INVITE sip:bob@test.example SIP/2.0\r\nContent-Length: -5\r\n\r\n",
		"INVITE sip:bob@test.example SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
		"INVITE sip:bob@test.example SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1\r\n\r\n", // no Content-Length on a stream
		"INVITE sip:bob@test.example SIP/2.0\r\nX: " + strings.Repeat("B", 70000) + "\r\n\r\n",
		strings.Repeat("OPTIONS sip:x SIP/2.0\r\nX-Long: ", 1) + strings.Repeat("C", 9000),
		"\x16\x03\x01\x02\x00garbage garbage\r\n\r\n",
	}
	for i, s := range tcpJunk {
		p := srv.Phone(t, uatest.Config{Name: fmt.Sprintf("junk-tcp-%d", i), User: "junk", Transport: "tcp"})
		if err := p.SendRaw([]byte(s)); err != nil {
			t.Logf("tcp junk %d: %v", i, err)
			continue
		}
		if i < 5 { // framing is hopeless: the server must drop the connection
			if err := p.WaitConnClosed(2 * time.Second); err != nil {
				t.Errorf("TCP junk %d (%.40q...): %v", i, s, err)
			}
		}
	}
	// A message cut short, then the connection closed.
	p := srv.Phone(t, uatest.Config{Name: "junk-tcp-cut", User: "junk", Transport: "tcp"})
	_ = p.SendRaw([]byte("REGISTER sip:test.example SIP/2.0\r\nContent-Length: 100\r\n\r\nshort"))
	p.Close()

	// The server still works and remembers its registrations.
	for _, u := range []string{"alice", "bob"} {
		if ps := srv.PeersOf(t, u); len(ps) != 1 {
			t.Errorf("after the junk, %s has %d bindings, want 1:\n%s", u, len(ps), peerSummary(srv.Peers(t)))
		}
	}
	carol := srv.Phone(t, uatest.Config{User: "carol"})
	mustRegister(t, carol)
	carolTCP := srv.Phone(t, uatest.Config{Name: "carol/tcp", User: "carol", Transport: "tcp"})
	mustRegister(t, carolTCP)
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		t.Fatalf("after the junk, a call to bob's TCP phone failed: %v", err)
	}
	_ = in.Answer("")
	if r, err := call.WaitFinal(wait); err != nil || r.Code != 200 {
		t.Errorf("after the junk, alice's call got %v %v", r, err)
	}
	_ = call.Ack()
	st := srv.Status(t)
	if st.Counters["sip_parse_errors"] == 0 {
		t.Errorf("status counters show no parse errors after the junk: %v", st.Counters)
	}
}

// A Record-Route flow token is a capability: whoever presents it makes the
// proxy send to the address it names. A stranger must not be able to
// forge one to relay through us to any address (RFC 5626 §5.2: flow tokens
// are protected by an HMAC).
func TestForgedFlowTokenIsNotRelayed(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	victim := uatest.New(t, uatest.Config{Name: "victim", User: "victim", Domain: "victim.example"})
	mallory := srv.Phone(t, uatest.Config{Name: "mallory", User: "mallory", Domain: "evil.example"})
	forged := "u." + strings.Replace(victim.Addr().String(), ":", ".", 1) + "." + strings.Replace(srv.UDP.String(), ":", ".", 1)
	for _, method := range []string{"INVITE", "MESSAGE", "ACK"} {
		req := mallory.NewRequest(method, "sip:premium@victim.example")
		req.Set("From", "<sip:mallory@evil.example>;tag=ftag1")
		req.Set("To", "<sip:premium@victim.example>;tag=anything") // looks in-dialog
		req.Add("Route", "<sip:"+srv.UDP.String()+";lr;ftag=ftag1;fb="+forged+">")
		if method == "ACK" {
			_ = mallory.SendRaw(req.Bytes())
			continue
		}
		tx, err := mallory.Send(req)
		if err != nil {
			t.Fatal(err)
		}
		res, _ := tx.WaitFinal(time.Second)
		t.Logf("%s with forged flow token: answered %v", method, func() string {
			if res == nil {
				return "nothing"
			}
			return res.Summary()
		}())
	}
	time.Sleep(300 * time.Millisecond)
	if got := victim.Received(); len(got) > 0 {
		var s []string
		for _, m := range got {
			s = append(s, m.Summary())
		}
		t.Errorf("an unauthenticated stranger relayed %d request(s) through sipedge to an arbitrary address %s with a forged Record-Route flow token fb=%s: %s\n"+
			"proxy/proxy.go dialogTarget trusts any fa/fb token (sipx.ParseToken only parses); sign tokens with an HMAC and reject unsigned ones",
			len(got), victim.Addr(), forged, strings.Join(s, ", "))
	}
}

// A genuine Record-Route seen in a real call, with its flow token changed
// to another address, must not steer the proxy either (the signature
// covers the tokens).
func TestTamperedRouteIsNotRelayed(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	victim := uatest.New(t, uatest.Config{Name: "victim", User: "victim", Domain: "victim.example"})
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
	rr := in.Invite().Values("Record-Route")[0]
	_ = in.Reject(486, "Busy Here")
	if _, err := call.WaitFinal(wait); err != nil {
		t.Fatal(err)
	}
	na, _ := uatest.ParseNameAddr(rr)
	if !na.URI.Params.Has("fb") {
		t.Fatalf("no fb token in %s", rr)
	}
	victimTok := "u." + strings.Replace(victim.Addr().String(), ":", ".", 1) + "." + strings.Replace(srv.UDP.String(), ":", ".", 1)
	for i := range na.URI.Params {
		if na.URI.Params[i].Name == "fb" {
			na.URI.Params[i].Value = victimTok
		}
	}
	ftag, _ := na.URI.Params.Get("ftag")
	mallory := srv.Phone(t, uatest.Config{Name: "mallory", User: "mallory", Domain: "evil.example"})
	req := mallory.NewRequest("MESSAGE", "sip:premium@victim.example")
	req.Set("From", "<sip:mallory@evil.example>;tag="+ftag)
	req.Set("To", "<sip:premium@victim.example>;tag=x")
	req.Add("Route", na.String())
	tx, err := mallory.Send(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tx.WaitFinal(time.Second)
	time.Sleep(200 * time.Millisecond)
	if got := victim.Received(); len(got) > 0 {
		t.Errorf("a genuine Record-Route with its fb token rewritten to %s relayed %s to that address", victim.Addr(), got[0].Summary())
	}
}

// A forged response with our Via on top and a flow token in it must not be
// relayed to the address the token names (stray 2xx forwarding).
func TestForgedStrayResponseIsNotRelayed(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	victim := uatest.New(t, uatest.Config{Name: "victim", User: "victim", Domain: "victim.example"})
	mallory := srv.Phone(t, uatest.Config{Name: "mallory", User: "mallory", Domain: "evil.example"})
	tok := "u." + strings.Replace(victim.Addr().String(), ":", ".", 1) + "." + strings.Replace(srv.UDP.String(), ":", ".", 1)
	for _, up := range []string{tok, tok + "~AAAAAAAAAAAAAAAA"} {
		res := &uatest.Msg{Code: 200, Reason: "OK"}
		res.Add("Via", "SIP/2.0/UDP "+srv.UDP.String()+";branch=z9hG4bK-se0000forged;rport;se-up="+up)
		res.Add("Via", "SIP/2.0/UDP "+victim.Addr().String()+";branch=z9hG4bKvictim")
		res.Add("From", "<sip:a@evil.example>;tag=1")
		res.Add("To", "<sip:b@evil.example>;tag=2")
		res.Add("Call-ID", "forged")
		res.Add("CSeq", "1 INVITE")
		if err := mallory.SendRaw(res.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if got := victim.Received(); len(got) > 0 {
		t.Errorf("a forged stray response was relayed to %s: %s", victim.Addr(), got[0].Summary())
	}
}
