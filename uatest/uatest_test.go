package uatest

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseRequest(t *testing.T) {
	raw := "INVITE sip:bob@test.example SIP/2.0\r\n" +
		"v: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKabc;rport\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKdef, SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKghi\r\n" +
		"Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr;x=\"a,b\">\r\n" +
		"From: \"Alice, A.\" <sip:alice@test.example>;tag=123\r\n" +
		"t: sip:bob@test.example\r\n" +
		"Subject: folded\r\n line\r\n" +
		"i: abc@host\r\n" +
		"CSeq: 7 INVITE\r\n" +
		"l: 4\r\n\r\n" +
		"body-and-junk"
	m, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Method != "INVITE" || m.URI != "sip:bob@test.example" {
		t.Errorf("request line: %q %q", m.Method, m.URI)
	}
	vias := m.Values("Via")
	if len(vias) != 3 {
		t.Fatalf("Via values = %q, want 3", vias)
	}
	v, err := ParseVia(vias[2])
	if err != nil || v.Host != "[2001:db8::1]" || v.Port != 5070 || v.Transport != "TCP" {
		t.Errorf("third Via = %+v, %v", v, err)
	}
	if got := m.Branch(); got != "z9hG4bKabc" {
		t.Errorf("branch = %q", got)
	}
	top, _ := m.TopVia()
	if !top.Params.Has("rport") {
		t.Errorf("rport flag lost: %+v", top)
	}
	if rr := m.Values("Record-Route"); len(rr) != 2 || !strings.Contains(rr[1], `"a,b"`) {
		t.Errorf("Record-Route = %q", rr)
	}
	if m.Tag("From") != "123" || m.Tag("To") != "" {
		t.Errorf("tags from=%q to=%q", m.Tag("From"), m.Tag("To"))
	}
	if m.CallID() != "abc@host" {
		t.Errorf("Call-ID %q", m.CallID())
	}
	if n, meth := m.CSeq(); n != 7 || meth != "INVITE" {
		t.Errorf("CSeq %d %s", n, meth)
	}
	if m.Get("Subject") != "folded line" {
		t.Errorf("folded header = %q", m.Get("Subject"))
	}
	if string(m.Body) != "body" {
		t.Errorf("body = %q", m.Body)
	}
	// Round trip.
	m2, err := Parse(m.Bytes())
	if err != nil || len(m2.Headers) != len(m.Headers) || string(m2.Body) != "body" {
		t.Errorf("round trip: %v\n%s", err, m.Bytes())
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"garbage",
		"INVITE sip:x SIP/2.0\r\nVia: x\r\n", // no end of headers
		"SIP/2.0 99 Low\r\n\r\n",             // bad code
		"INVITE sip:x SIP/3.0\r\n\r\n",       // bad version
		"INVITE sip:x SIP/2.0\r\nContent-Length: 10\r\n\r\nshort", // truncated
		"INVITE sip:x SIP/2.0\r\nno colon here\r\n\r\n",
	} {
		if _, err := Parse([]byte(s)); err == nil {
			t.Errorf("Parse(%q) succeeded", s)
		}
	}
}

func TestNameAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		user string
		host string
		port int
		tag  string
	}{
		{`"Bob" <sip:bob@192.168.1.20:5060;transport=udp>;tag=x;expires=60`, "bob", "192.168.1.20", 5060, "x"},
		{`sip:bob@test.example;tag=y`, "bob", "test.example", 0, "y"},
		{`<sip:[2001:db8::2]:5062;lr>`, "", "[2001:db8::2]", 5062, ""},
	} {
		na, err := ParseNameAddr(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		tag, _ := na.Params.Get("tag")
		if na.URI.User != tc.user || na.URI.Host != tc.host || na.URI.Port != tc.port || tag != tc.tag {
			t.Errorf("%q parsed as %+v", tc.in, na)
		}
	}
	u, _ := ParseURI("sip:127.0.0.1:5080;lr;ftag=abc;fa=u.127.0.0.1.4000.127.0.0.1.5060")
	if v, _ := u.Params.Get("fa"); v != "u.127.0.0.1.4000.127.0.0.1.5060" {
		t.Errorf("fa = %q", v)
	}
	if a, ok := u.AddrPort(); !ok || a != netip.MustParseAddrPort("127.0.0.1:5080") {
		t.Errorf("AddrPort = %v %v", a, ok)
	}
}

// RFC 2617 §3.5 and RFC 7616 §3.9.1 examples.
func TestDigestVectors(t *testing.T) {
	got := DigestResponse(MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
		"dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "auth")
	if got != "6629fae49393a05397450978507c4ef1" {
		t.Errorf("RFC 2617 MD5 response = %s", got)
	}
	const nonce, cnonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
	got = DigestResponse(SHA256, "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html", nonce, "00000001", cnonce, "auth")
	if got != "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1" {
		t.Errorf("RFC 7616 SHA-256 response = %s", got)
	}
	got = DigestResponse(MD5, "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html", nonce, "00000001", cnonce, "auth")
	if got != "8ca523f5e9506fed4657c9700eebdbec" {
		t.Errorf("RFC 7616 MD5 response = %s", got)
	}
}

func TestPickChallenge(t *testing.T) {
	vals := []string{
		`Digest realm="r", nonce="n1", algorithm=SHA-256, qop="auth"`,
		`Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"`,
	}
	for _, tc := range []struct{ prefer, want string }{{"", SHA256}, {MD5, MD5}, {SHA256, SHA256}, {"SHA-512-256", SHA256}} {
		c, err := PickChallenge(vals, tc.prefer)
		if err != nil || c.Algorithm != tc.want {
			t.Errorf("prefer %q: got %q, %v", tc.prefer, c.Algorithm, err)
		}
	}
	if _, err := PickChallenge([]string{`Digest realm="r", nonce="n", algorithm=SHA-512-256`}, ""); err == nil {
		t.Error("unsupported algorithm accepted")
	}
	c, _ := PickChallenge([]string{`Digest realm="a, b", nonce="n", qop="auth,auth-int", stale=TRUE`}, "")
	if c.Realm != "a, b" || !c.Stale || len(c.Qop) != 2 {
		t.Errorf("challenge = %+v", c)
	}
}

// fakeRegistrar answers REGISTERs on phone r with a 401 and then checks
// the digest response, as a server would.
func fakeRegistrar(t *testing.T, r *Phone, password string, algs ...string) {
	t.Helper()
	req, err := r.WaitRequest("REGISTER", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var hs []Header
	for _, a := range algs {
		hs = append(hs, Header{"WWW-Authenticate", `Digest realm="test.example", nonce="abc123", algorithm=` + a + `, qop="auth"`})
	}
	if err := r.Respond(req, 401, "Unauthorized", hs...); err != nil {
		t.Fatal(err)
	}
	req, err = r.WaitRequest("REGISTER", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := authParams(strings.TrimPrefix(req.Get("Authorization"), "Digest "))
	alg := p["algorithm"]
	want := DigestResponse(alg, p["username"], p["realm"], password, "REGISTER", p["uri"], p["nonce"], p["nc"], p["cnonce"], p["qop"])
	code, reason := 200, "OK"
	if p["response"] != want {
		code, reason = 403, "Bad digest"
	}
	if err := r.Respond(req, code, reason, Header{"X-Alg", alg}); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterDigestAgainstFake(t *testing.T) {
	for _, tc := range []struct {
		prefer string
		offer  []string
		want   string
	}{
		{"", []string{SHA256, MD5}, SHA256},
		{MD5, []string{SHA256, MD5}, MD5},
		{SHA256, []string{MD5}, MD5},
	} {
		reg := New(t, Config{Name: "registrar"})
		ph := New(t, Config{User: "alice", Password: "pw", Domain: "test.example", Server: reg.Addr(), Algorithm: tc.prefer,
			ViaHost: "192.168.1.10", ViaPort: 5060})
		done := make(chan struct{})
		go func() {
			defer close(done)
			fakeRegistrar(t, reg, "pw", tc.offer...)
		}()
		res, err := ph.Register("", "", "")
		<-done
		if err != nil {
			t.Fatal(err)
		}
		if res.Code != 200 || res.Get("X-Alg") != tc.want {
			t.Errorf("prefer %q offer %v: got %s with algorithm %q, want 200 with %q", tc.prefer, tc.offer, res.Summary(), res.Get("X-Alg"), tc.want)
		}
	}
}

// Two phones call each other directly: checks the UA logic (dialog, ACK,
// BYE, CSeq, route set) without any server.
func TestDirectCall(t *testing.T) {
	bob := New(t, Config{User: "bob", Domain: "test.example"})
	alice := New(t, Config{User: "alice", Domain: "test.example", Server: bob.Addr()})
	call, err := alice.Invite("bob@test.example", InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Ring(); err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitCode(180, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(""); err != nil {
		t.Fatal(err)
	}
	ok, err := call.WaitFinal(2 * time.Second)
	if err != nil || ok.Code != 200 {
		t.Fatalf("final = %v, %v", ok, err)
	}
	if err := call.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.WaitAck(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan *Msg, 1)
	go func() {
		res, err := in.Bye()
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	bye, err := call.WaitRequest("BYE", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := bye.CSeq(); n != 1 {
		t.Errorf("callee's first BYE CSeq = %d, want 1", n)
	}
	if err := call.Respond(bye, 200, "OK"); err != nil {
		t.Fatal(err)
	}
	if res := <-done; res == nil || res.Code != 200 {
		t.Fatalf("BYE answered with %v", res)
	}
}

func TestDirectCancel(t *testing.T) {
	bob := New(t, Config{User: "bob", Domain: "test.example"})
	alice := New(t, Config{User: "alice", Domain: "test.example", Server: bob.Addr()})
	call, err := alice.Invite("bob@test.example", InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = in.Ring()
	if _, err := call.WaitCode(180, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := call.Cancel()
	if err != nil || res.Code != 200 {
		t.Fatalf("CANCEL: %v %v", res, err)
	}
	if _, err := in.WaitCancel(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitCode(487, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := in.WaitRequest("ACK", 2*time.Second); err != nil {
		t.Fatalf("no ACK for 487: %v", err)
	}
}

func TestLargeSDP(t *testing.T) {
	s := LargeSDP("192.168.1.10", 4000, 2000)
	if len(s) < 2000 || !strings.HasPrefix(s, "v=0\r\n") || !strings.HasSuffix(s, "\r\n") {
		t.Errorf("LargeSDP: %d bytes", len(s))
	}
}
