//go:build lab

package lab

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// stub starts a SIPp stand-in for sipedge in se-edge on EdgeIP:5060 and waits
// until it listens.
func stub(t *testing.T, l *Lab, scenario string, keys map[string]string, args ...string) *SIPpRun {
	t.Helper()
	r := l.StartSIPp(SIPpSpec{NS: NSEdge, Scenario: scenario, Local: EdgeIP, Port: 5060, Keys: keys, Args: args})
	if err := r.WaitListening(5 * time.Second); err != nil {
		t.Fatalf("%s: %v", scenario, err)
	}
	return r
}

// mustOK fails t unless every result is a clean SIPp exit.
func mustOK(t *testing.T, results ...*SIPpResult) {
	t.Helper()
	for _, r := range results {
		if !r.OK() {
			t.Errorf("%s", r.Summary())
		}
	}
}

// TestLabSIPpAcrossNAT validates the phone scenarios (scenarios/*.xml) and
// the NAT paths before sipedge exists: SIPp stand-ins for sipedge
// (scenarios/stub_*.xml) run in se-edge, the phones run behind each NAT.
// Each stand-in checks what the phone sent (digest, Contact, route set,
// BYE construction), so a scenario bug fails here, not in the sipedge tests.
func TestLabSIPpAcrossNAT(t *testing.T) {
	l := New(t, Options{Capture: true})
	edge := EdgeIP + ":5060"
	const domain = "lab.example"
	phones := []Phone{PhoneA, PhoneB, PhonePub}
	nat := map[string]string{NSA: NSNATCone, NSB: NSNATSym}
	wan := map[string]string{NSA: ConeWANIP, NSB: SymWANIP}
	priv := netip.MustParseAddrPort(PhoneIP + ":5060")
	edgeAP := netip.MustParseAddrPort(edge)

	// publicAddr is where se-edge reaches phone p: its NAT mapping towards
	// EdgeIP:5060, or its own address.
	publicAddr := func(t *testing.T, p Phone) netip.AddrPort {
		t.Helper()
		router, ok := nat[p.NS]
		if !ok {
			return netip.AddrPortFrom(netip.MustParseAddr(p.IP), uint16(p.Port))
		}
		m, err := l.Mapping(router, priv, edgeAP)
		if err != nil {
			t.Fatal(err)
		}
		if m.Addr().String() != wan[p.NS] {
			t.Fatalf("%s mapped to %v, want address %s", router, m, wan[p.NS])
		}
		return m
	}

	t.Run("register", func(t *testing.T) {
		for _, p := range phones {
			t.Run(p.Name, func(t *testing.T) {
				p := p.As("alice", "alicepw", domain)
				st := stub(t, l, "stub_registrar.xml", map[string]string{"domain": domain, "user": "alice", "password": "alicepw"}, "-m", "1")
				ph := l.Register(p, edge)
				sr := st.Wait()
				mustOK(t, ph, sr)
				// The registrar got the phone's own (private) Contact.
				want := "Contact: <sip:alice@" + p.IP + ":5060>"
				if !strings.Contains(sr.Messages(), want) {
					t.Errorf("registrar never saw %q", want)
				}
				t.Logf("%s reached as %v", p.Name, publicAddr(t, p))
			})
		}
	})

	t.Run("register-wrong-password", func(t *testing.T) {
		st := stub(t, l, "stub_registrar.xml", map[string]string{"domain": domain, "user": "alice", "password": "alicepw"}, "-m", "1")
		ph := l.Register(PhoneA.As("alice", "guess", domain), edge)
		st.Wait()
		if ph.OK() {
			t.Fatalf("a wrong password registered: %s", ph.Summary())
		}
		if rx := strings.Join(ph.Received(), "|"); !strings.Contains(rx, "SIP/2.0 403") {
			t.Errorf("phone did not get the 403: %s", ph.Summary())
		}
	})

	t.Run("caller", func(t *testing.T) {
		for _, p := range phones[:2] {
			t.Run(p.Name, func(t *testing.T) {
				p := p.As("alice", "alicepw", domain)
				st := stub(t, l, "stub_answer.xml", map[string]string{"domain": domain, "user": "alice", "password": "alicepw"}, "-m", "1", "-d", "2000")
				ph := l.StartCaller(p, edge, "bob", 2*time.Second).Wait()
				mustOK(t, ph, st.Wait())
				if n := ph.Count("BYE", "Recv"); n != 1 {
					t.Errorf("caller received %d BYE, want 1: %s", n, ph.Summary())
				}
				if n := ph.Count("407", "Recv"); n != 1 {
					t.Errorf("caller received %d 407, want 1", n)
				}
			})
		}
	})

	t.Run("callee", func(t *testing.T) {
		for _, p := range phones[:2] {
			t.Run(p.Name, func(t *testing.T) {
				p := p.As("bob", "bobpw", domain)
				st := stub(t, l, "stub_registrar.xml", map[string]string{"domain": domain, "user": "bob", "password": "bobpw"}, "-m", "1")
				mustOK(t, l.Register(p, edge), st.Wait())
				if t.Failed() {
					return
				}
				pub := publicAddr(t, p)
				callee := l.StartCallee(p, 2*time.Second)
				if err := callee.WaitListening(5 * time.Second); err != nil {
					t.Fatal(err)
				}
				contact := "sip:bob@" + p.IP + ":5060"
				// A keepalive first: the callee must answer it and keep waiting.
				opt := l.RunSIPp(SIPpSpec{NS: NSEdge, Scenario: "stub_options.xml", Local: EdgeIP, Port: 5060,
					Remote: pub.String(), Keys: map[string]string{"contact": contact}, Args: []string{"-m", "1"}})
				inv := l.RunSIPp(SIPpSpec{NS: NSEdge, Scenario: "stub_invite.xml", Local: EdgeIP, Port: 5060,
					Remote: pub.String(), Keys: map[string]string{"contact": contact, "caller": "alice", "callee": "bob", "domain": domain},
					Args: []string{"-m", "1"}})
				if !inv.OK() {
					callee.Proc.Stop() // it would wait for its own timeout
				}
				ce := callee.Wait()
				mustOK(t, opt, inv, ce)
				if n := ce.Count("ACK", "Recv"); n != 1 {
					t.Errorf("callee received %d ACK, want 1", n)
				}
				if n := ce.Count("200", "Retrans"); n > 2 {
					t.Errorf("callee retransmitted its 200s %d times: the ACK was late", n)
				}
				if n := ce.Count("OPTIONS", "Recv"); n != 1 {
					t.Errorf("callee answered %d OPTIONS, want 1", n)
				}
			})
		}
	})

	t.Run("reject", func(t *testing.T) {
		st := stub(t, l, "stub_reject.xml", nil, "-m", "1")
		p := PhonePub.As("mallory", "", "attacker.example")
		s := p.spec("uac_invite_noauth.xml", edge)
		s.Keys["target_user"] = "someone"
		s.Keys["target_domain"] = "elsewhere.example"
		s.Args = []string{"-m", "1"}
		mustOK(t, l.RunSIPp(s), st.Wait())
	})

	t.Run("ban", func(t *testing.T) {
		st := stub(t, l, "stub_ban.xml", map[string]string{"domain": domain, "user": "alice", "password": "alicepw"}, "-set", "failures", "0")
		res := l.RunBadPassword(PhoneB.As("alice", "wrong", domain), edge, 8)
		st.Stop()
		mustOK(t, res)
		out := BanOutcomeOf(res)
		t.Logf("ban stand-in: %+v", out)
		if out.Refused != 5 || out.SilentFirst != 3 || out.SilentAfterAuth != 0 {
			t.Errorf("want 5 refused attempts then 3 unanswered, got %+v", out)
		}
	})

	t.Run("no-alg", func(t *testing.T) {
		for _, r := range []string{NSNATCone, NSNATSym} {
			if ct := l.Conntrack(r); strings.Contains(ct, "helper=") {
				t.Errorf("%s: a conntrack helper is attached:\n%s", r, ct)
			}
		}
	})
}
