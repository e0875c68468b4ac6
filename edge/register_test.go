package edge_test

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// A REGISTER without credentials gets a 401 with one challenge per
// algorithm (RFC 8760: SHA-256 first, then MD5); either algorithm then
// registers; a wrong password is challenged again.
func TestRegisterDigest(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	p := srv.Phone(t, uatest.Config{User: "alice"})

	res, err := p.RegisterWith(uatest.RegisterOpts{NoAuth: true})
	if err != nil {
		t.Fatalf("REGISTER without credentials: %v", err)
	}
	if res.Code != 401 {
		t.Fatalf("REGISTER without credentials: got %s, want 401\n%s", res.Summary(), res)
	}
	chs := res.Values("WWW-Authenticate")
	var algs []string
	var nonce string
	for _, v := range chs {
		c, err := uatest.ParseChallenge(v)
		if err != nil {
			t.Errorf("unparsable challenge %q: %v", v, err)
			continue
		}
		algs = append(algs, c.Algorithm)
		if c.Realm != "test.example" {
			t.Errorf("challenge realm = %q, want test.example (the first domain)", c.Realm)
		}
		if !slices.Contains(c.Qop, "auth") {
			t.Errorf("challenge %q does not offer qop=auth", v)
		}
		if nonce != "" && c.Nonce != nonce {
			t.Errorf("challenges carry different nonces %q and %q", nonce, c.Nonce)
		}
		nonce = c.Nonce
	}
	if !slices.Equal(algs, []string{"SHA-256", "MD5"}) {
		t.Errorf("challenge algorithms = %q, want [SHA-256 MD5] in that order (RFC 8760)", algs)
	}

	for _, alg := range []string{uatest.MD5, uatest.SHA256} {
		ph := srv.Phone(t, uatest.Config{Name: "alice-" + alg, User: "alice", Algorithm: alg})
		res := mustRegister(t, ph)
		if a := sentHeader(ph, "Authorization"); !strings.Contains(a, "algorithm="+alg) {
			t.Errorf("phone preferring %s sent %q", alg, a)
		}
		cs := res.Values("Contact")
		if len(cs) != 1 {
			t.Fatalf("%s: 200 lists %d contacts, want 1 (only this phone's): %q", alg, len(cs), cs)
		}
		na, err := uatest.ParseNameAddr(cs[0])
		if err != nil {
			t.Fatalf("%s: 200 Contact %q: %v", alg, cs[0], err)
		}
		if na.URI.String() != ph.ContactURI("") {
			t.Errorf("%s: 200 Contact URI = %s, want the registered %s", alg, na.URI, ph.ContactURI(""))
		}
		exp, ok := na.Params.Get("expires")
		if n, err := strconv.Atoi(exp); !ok || err != nil || n < 3590 || n > 3600 {
			t.Errorf("%s: 200 Contact expires = %q, want about 3600 (default_expires)", alg, exp)
		}
		ph.Unregister("", "", "")
	}

	bad, err := p.Register("alice", "wrong-password", "")
	if err != nil {
		t.Fatalf("REGISTER with a wrong password: %v", err)
	}
	if bad.Code != 401 || !bad.Has("WWW-Authenticate") {
		t.Errorf("wrong password: got %s, want 401 with a new challenge", bad.Summary())
	}
	if n := len(srv.PeersOf(t, "alice")); n != 0 {
		t.Errorf("alice has %d bindings after a failed REGISTER, want 0", n)
	}
	// Credentials of another user for alice's AOR.
	res, err = p.RegisterWith(uatest.RegisterOpts{User: "alice", Password: edgetest.Passwords["bob"]})
	if err != nil || res.Code == 200 {
		t.Errorf("alice's AOR with bob's password: got %v, %v; want a refusal", res, err)
	}
}

// After ban_failures failed authentications a source gets no answer at all
// (not even to correct credentials), the ban is listed by the admin API,
// and another source still registers.
func TestBanAfterAuthFailures(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) { c.Security.BanFailures = 3 })
	// No retransmissions: each attempt must count once.
	p := srv.Phone(t, uatest.Config{User: "alice", T1: -1, Timeout: time.Second})
	for i := 1; i <= 3; i++ {
		res, err := p.Register("alice", "wrong", "")
		if err != nil {
			t.Fatalf("failed attempt %d: no answer (%v); the ban must start after 3 failures, not before", i, err)
		}
		if res.Code != 401 {
			t.Fatalf("failed attempt %d: got %s, want 401", i, res.Summary())
		}
	}
	res, err := p.Register("alice", "wrong", "")
	if err == nil {
		t.Fatalf("4th attempt from a banned source was answered: %s", res.Summary())
	}
	if !isTimeout(err) {
		t.Fatalf("4th attempt: %v", err)
	}
	if res, err := p.Register("alice", edgetest.Passwords["alice"], ""); err == nil {
		t.Errorf("banned source with the right password was answered: %s", res.Summary())
	}
	bans := srv.Bans(t)
	found := false
	for _, b := range bans {
		if b.IP == "127.0.0.1" {
			found = true
			if b.Failures < 3 || !b.Until.After(time.Now()) {
				t.Errorf("ban of 127.0.0.1 = %+v, want failures >= 3 and an end in the future", b)
			}
		}
	}
	if !found {
		t.Fatalf("GET /api/v1/bans = %+v, want 127.0.0.1 listed", bans)
	}
	other := srv.Phone(t, uatest.Config{Name: "bob@127.0.0.2", User: "bob", Bind: "127.0.0.2:0"})
	mustRegister(t, other)
	if ps := srv.PeersOf(t, "bob"); len(ps) != 1 || !strings.HasPrefix(ps[0].Remote, "127.0.0.2:") {
		t.Errorf("bob's binding from 127.0.0.2: %s", peerSummary(ps))
	}
}

// A phone behind NAT that claims 192.168.1.10:5060 in Via and does not ask
// for rport still gets its responses at its real address and port, with
// received and rport filled in (RFC 3261 §18.2.1, RFC 3581 forced).
func TestResponseToRealSource(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	for _, noRport := range []bool{true, false} {
		p := srv.Phone(t, uatest.Config{Name: "alice-norport=" + boolStr(noRport), User: "alice", ViaHost: aliceLAN, ViaPort: 5060, NoRport: noRport})
		res, err := p.RegisterWith(uatest.RegisterOpts{NoAuth: true})
		if err != nil {
			t.Fatalf("norport=%v: no response at the real address %s: %v", noRport, p.Addr(), err)
		}
		if res.Src != srv.UDP {
			t.Errorf("norport=%v: response came from %s, want the socket we sent to (%s)", noRport, res.Src, srv.UDP)
		}
		v, err := res.TopVia()
		if err != nil {
			t.Fatal(err)
		}
		if v.Host != aliceLAN || v.Port != 5060 {
			t.Errorf("norport=%v: response Via sent-by = %s:%d, want the phone's own %s:5060 unchanged", noRport, v.Host, v.Port, aliceLAN)
		}
		if got, _ := v.Params.Get("received"); got != "127.0.0.1" {
			t.Errorf("norport=%v: received = %q, want 127.0.0.1 in %s", noRport, got, res.Values("Via")[0])
		}
		if got, _ := v.Params.Get("rport"); got != strconv.Itoa(int(p.Addr().Port())) {
			t.Errorf("norport=%v: rport = %q, want the real source port %d in %s", noRport, got, p.Addr().Port(), res.Values("Via")[0])
		}
		mustRegister(t, p)
	}
}

// NAT detection is visible in GET /api/v1/peers.
func TestNATDetectionInPeers(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := srv.Phone(t, uatest.Config{User: "bob"}) // Via/Contact = real source
	mustRegister(t, alice)
	mustRegister(t, bob)

	ps := srv.PeersOf(t, "alice")
	if len(ps) != 1 {
		t.Fatalf("alice peers:\n%s", peerSummary(srv.Peers(t)))
	}
	a := ps[0]
	if !a.NAT {
		t.Errorf("alice (Via/Contact %s:5060, source %s) has nat=false", aliceLAN, alice.Addr())
	}
	for _, want := range []string{"private-via", "private-contact", "via-address!=source", "contact-address!=source"} {
		if !slices.Contains(a.NATReasons, want) {
			t.Errorf("alice nat_reasons = %q, missing %q", a.NATReasons, want)
		}
	}
	if a.Remote != alice.Addr().String() || a.Transport != "udp" {
		t.Errorf("alice flow = %s:%s, want udp:%s (observed source)", a.Transport, a.Remote, alice.Addr())
	}
	if a.Local != srv.UDP.String() {
		t.Errorf("alice local socket = %s, want %s", a.Local, srv.UDP)
	}
	if !strings.Contains(a.Contact, aliceLAN) {
		t.Errorf("alice contact = %q, want the Contact as sent (%s)", a.Contact, alice.Contact())
	}
	if a.UserAgent != "uatest" {
		t.Errorf("alice user_agent = %q", a.UserAgent)
	}

	ps = srv.PeersOf(t, "bob")
	if len(ps) != 1 {
		t.Fatalf("bob peers:\n%s", peerSummary(srv.Peers(t)))
	}
	if ps[0].NAT || len(ps[0].NATReasons) != 0 {
		t.Errorf("bob (Via/Contact = real source %s) has nat=%v reasons %q, want nat=false and no reasons", bob.Addr(), ps[0].NAT, ps[0].NATReasons)
	}
	var st struct {
		NATed int `json:"nated"`
	}
	srv.GetJSON(t, "/api/v1/status", &st)
	if st.NATed != 1 {
		t.Errorf("status nated = %d, want 1", st.NATed)
	}
}

// Phones inside local_nets are exempt from NAT detection.
func TestLocalNetsExempt(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) {
		c.LocalNets = []config.Prefix{{Prefix: netip.MustParsePrefix("127.0.0.0/8")}}
	})
	alice := natPhone(t, srv, "alice", aliceLAN)
	mustRegister(t, alice)
	ps := srv.PeersOf(t, "alice")
	if len(ps) != 1 {
		t.Fatalf("alice peers:\n%s", peerSummary(srv.Peers(t)))
	}
	// The exemption is shown, so an admin can see why a phone with a
	// private Contact is not NAT-handled.
	if ps[0].NAT || len(ps[0].NATReasons) != 1 || ps[0].NATReasons[0] != "exempt: local network" {
		t.Errorf("alice from %s with local_nets 127.0.0.0/8: nat=%v reasons %q, want exempt (nat=false, reason \"exempt: local network\")", alice.Addr(), ps[0].NAT, ps[0].NATReasons)
	}
}

// Expires handling: Min-Expires, caps, several contacts per AOR, removal of
// one contact and of all with Contact: *.
func TestRegisterExpires(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	p := natPhone(t, srv, "alice", aliceLAN)

	res, err := p.RegisterWith(uatest.RegisterOpts{Expires: "30"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 423 || strings.TrimSpace(res.Get("Min-Expires")) != "60" {
		t.Errorf("Expires: 30 with min_expires 60s: got %s Min-Expires %q, want 423 with Min-Expires: 60", res.Summary(), res.Get("Min-Expires"))
	}
	res, err = p.RegisterWith(uatest.RegisterOpts{Contacts: []string{p.Contact() + ";expires=10"}})
	if err != nil || res.Code != 423 {
		t.Errorf("Contact expires=10: got %v %v, want 423", res, err)
	}
	if n := len(srv.PeersOf(t, "alice")); n != 0 {
		t.Fatalf("refused registrations left %d bindings", n)
	}

	// Caps: Expires: 7200 is granted max_expires; a Contact expires
	// parameter wins over the Expires header.
	c1 := "<sip:alice@" + aliceLAN + ":5060>"
	res, err = p.RegisterWith(uatest.RegisterOpts{Contacts: []string{c1}, Expires: "7200"})
	if err != nil || res.Code != 200 {
		t.Fatalf("Expires: 7200: %v %v", res, err)
	}
	if e := grantedExpires(res)["sip:alice@"+aliceLAN+":5060"]; e < 3590 || e > 3600 {
		t.Errorf("Expires: 7200 granted %d s, want 3600 (max_expires)\n%s", e, res)
	}
	p2 := natPhone(t, srv, "alice", "192.168.1.11")
	res, err = p2.RegisterWith(uatest.RegisterOpts{Contacts: []string{p2.Contact() + ";expires=120"}, Expires: "7200"})
	if err != nil || res.Code != 200 {
		t.Fatalf("Contact expires=120: %v %v", res, err)
	}
	if e := grantedExpires(res)[p2.ContactURI("")]; e < 110 || e > 120 {
		t.Errorf("Contact ;expires=120 with Expires: 7200 granted %d s, want 120 (the parameter wins)\n%s", e, res)
	}
	// A third phone of the same user: three bindings, all listed in the 200.
	p3 := natPhone(t, srv, "alice", "192.168.1.12")
	res = mustRegister(t, p3)
	if n := len(res.Values("Contact")); n != 3 {
		t.Errorf("200 to the third phone lists %d contacts, want all 3 bindings of the AOR:\n%s", n, res)
	}
	if ps := srv.PeersOf(t, "alice"); len(ps) != 3 {
		t.Fatalf("three phones of alice registered:\n%s", peerSummary(ps))
	}

	res, err = p.Unregister("", "", c1)
	if err != nil || res.Code != 200 {
		t.Fatalf("Expires: 0 for one contact: %v %v", res, err)
	}
	if _, ok := grantedExpires(res)["sip:alice@"+aliceLAN+":5060"]; ok {
		t.Errorf("the removed contact is still listed in the 200:\n%s", res)
	}
	if n := len(res.Values("Contact")); n != 2 {
		t.Errorf("after removing one contact the 200 lists %d, want 2:\n%s", n, res)
	}
	if ps := srv.PeersOf(t, "alice"); len(ps) != 2 {
		t.Errorf("after removing one contact:\n%s", peerSummary(ps))
	}

	res, err = p.RegisterWith(uatest.RegisterOpts{Contacts: []string{"*"}})
	if err != nil || res.Code != 400 {
		t.Errorf("Contact: * without Expires: 0: got %v %v, want 400", res, err)
	}
	res, err = p.RegisterWith(uatest.RegisterOpts{Contacts: []string{"*"}, Expires: "0"})
	if err != nil || res.Code != 200 {
		t.Fatalf("Contact: * with Expires: 0: %v %v", res, err)
	}
	if n := len(res.Values("Contact")); n != 0 {
		t.Errorf("200 to Contact: * lists %d contacts, want none:\n%s", n, res)
	}
	if ps := srv.PeersOf(t, "alice"); len(ps) != 0 {
		t.Errorf("after Contact: *, Expires: 0:\n%s", peerSummary(ps))
	}
	res, err = p.RegisterWith(uatest.RegisterOpts{Expires: "soon"})
	if err != nil || res.Code != 400 {
		t.Errorf("Expires: soon: got %v %v, want 400", res, err)
	}
}

// grantedExpires maps each Contact URI of a 200 to REGISTER to its expires
// parameter.
func grantedExpires(res *uatest.Msg) map[string]int {
	got := map[string]int{}
	for _, c := range res.Values("Contact") {
		na, _ := uatest.ParseNameAddr(c)
		e, _ := na.Params.Get("expires")
		got[na.URI.String()], _ = strconv.Atoi(e)
	}
	return got
}

// One REGISTER may carry several Contacts (RFC 3261 §10.2.1.2); each
// becomes a binding, for a phone behind NAT as for any other.
func TestRegisterTwoContactsOneRequest(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	for _, tc := range []struct {
		name string
		p    *uatest.Phone
		host string
	}{
		// Over TCP the source port says nothing (sipnat): no NAT.
		{"no NAT (TCP)", srv.Phone(t, uatest.Config{User: "bob", Transport: "tcp"}), "127.0.0.1"},
		{"behind NAT", natPhone(t, srv, "alice", aliceLAN), aliceLAN},
	} {
		c1 := "<sip:" + tc.p.Config().User + "@" + tc.host + ":5070>"
		c2 := "<sip:" + tc.p.Config().User + "@" + tc.host + ":5072>"
		res, err := tc.p.RegisterWith(uatest.RegisterOpts{Contacts: []string{c1, c2}})
		if err != nil || res.Code != 200 {
			t.Fatalf("%s: REGISTER with two Contacts: %v %v", tc.name, res, err)
		}
		got := grantedExpires(res)
		ps := srv.PeersOf(t, tc.p.Config().User)
		if len(got) != 2 || len(ps) != 2 {
			t.Errorf("%s: REGISTER with Contacts %s and %s: the 200 lists %d contacts and the AOR has %d bindings, want 2 and 2\n"+
				"(registrar/registrar.go: the NAT churn rule matches the binding the same request just added)\n%s",
				tc.name, c1, c2, len(got), len(ps), peerSummary(ps))
		}
	}
}

// A binding lapses when its expiry passes: it leaves the admin view, the
// store, and calls get 480.
func TestBindingExpiry(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) {
		c.Registrar.MinExpires.Duration = time.Second
	})
	alice := natPhone(t, srv, "alice", aliceLAN)
	res, err := alice.RegisterWith(uatest.RegisterOpts{Expires: "1"})
	if err != nil || res.Code != 200 {
		t.Fatalf("REGISTER Expires: 1: %v %v", res, err)
	}
	if n := len(srv.Location().Lookup("alice@test.example")); n != 1 {
		t.Fatalf("store has %d bindings for alice right after REGISTER", n)
	}
	if !waitFor(4*time.Second, func() bool { return len(srv.PeersOf(t, "alice")) == 0 }) {
		t.Fatalf("binding with Expires: 1 still listed after 4s:\n%s", peerSummary(srv.Peers(t)))
	}
	if n := len(srv.Location().Lookup("alice@test.example")); n != 0 {
		t.Errorf("store still returns %d bindings for alice", n)
	}
	bob := natPhone(t, srv, "bob", bobLAN)
	call, err := bob.Invite("alice@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := call.WaitFinal(wait); err != nil || r.Code != 480 {
		t.Errorf("call to alice after her binding expired: %v %v, want 480", r, err)
	}
	if alice.NoInvite(200*time.Millisecond) != nil {
		t.Error("alice was called through an expired binding")
	}
}

// A call established before a restart can still be ended after it: the
// Record-Route flow tokens and their signatures stay valid (the signing key
// lives in the data dir) and the flows are restored from the store.
func TestDialogSurvivesRestart(t *testing.T) {
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
	_ = in.Answer("")
	if r, err := call.WaitFinal(wait); err != nil || r.Code != 200 {
		t.Fatalf("alice: %v %v", r, err)
	}
	_ = call.Ack()
	if _, err := in.WaitAck(wait); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	hangup(t, in, call, "bob", "alice")
}

// Registrations survive a restart on the same data dir, with their
// observed flow, and the phone can still be called.
func TestPersistence(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	mustRegister(t, alice)
	before := srv.PeersOf(t, "alice")
	if len(before) != 1 {
		t.Fatalf("before restart:\n%s", peerSummary(before))
	}

	srv2 := srv.Restart(t)
	after := srv2.PeersOf(t, "alice")
	if len(after) != 1 {
		t.Fatalf("after restart alice has %d bindings, want 1:\n%s", len(after), peerSummary(srv2.Peers(t)))
	}
	a, b := before[0], after[0]
	if a.Remote != b.Remote || a.Local != b.Local || a.Transport != b.Transport || a.Contact != b.Contact || a.NAT != b.NAT {
		t.Errorf("binding changed across restart:\nbefore %+v\nafter  %+v", a, b)
	}
	if !a.Expires.Equal(b.Expires) {
		t.Errorf("expiry changed across restart: %v -> %v", a.Expires, b.Expires)
	}

	bob := natPhone(t, srv2, "bob", bobLAN)
	call, err := bob.Invite("alice@test.example", uatest.InviteOpts{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := alice.WaitInvite(wait)
	if err != nil {
		r, _ := call.WaitFinal(time.Second)
		t.Fatalf("after restart the call to alice did not reach her real address %s: %v (caller got %v)", alice.Addr(), err, r)
	}
	if err := in.Reject(486, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	if r, err := call.WaitFinal(wait); err != nil || r.Code != 486 {
		t.Errorf("caller got %v %v, want 486", r, err)
	}
}
