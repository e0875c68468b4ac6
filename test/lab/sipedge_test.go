//go:build lab

package lab

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of sipedge with SIPp phones behind the lab's NATs. Each
// test builds its own lab (fresh namespaces, so empty conntrack tables) and
// starts its own sipedge with a fresh data directory.

// CallHold is how long the calls in TestLabCallAcrossNATs stay up: longer
// than the 32 s after which a phone that never got its ACK gives up (64*T1),
// so a broken ACK path cannot pass.
const CallHold = 40 * time.Second

// edgeLab builds the lab and starts sipedge in it.
func edgeLab(t *testing.T, cfg EdgeConfig) (*Lab, *Sipedge) {
	t.Helper()
	l := New(t, Options{Capture: true})
	return l, l.StartSipedge(cfg)
}

// routerOf is the NAT router in front of each phone namespace.
var routerOf = map[string]string{NSA: NSNATCone, NSB: NSNATSym}

var (
	alice = PhoneA.As("alice", "alicepw", Domain)
	bob   = PhoneB.As("bob", "bobpw", Domain)
	carol = PhonePub.As("carol", "carolpw", Domain)
	priv  = netip.MustParseAddrPort(PhoneIP + ":5060")
	edge  = netip.MustParseAddrPort(EdgeSIP)
)

// register registers p at sipedge and fails t unless it worked.
func register(t *testing.T, l *Lab, p Phone) {
	t.Helper()
	if res := l.Register(p, EdgeSIP); !res.OK() {
		t.Fatalf("%s could not register as %s: %s", p.Name, p.User, res.Summary())
	}
}

// TestLabRegisterBehindNAT: phones behind the cone and the symmetric NAT and
// one on a public address register with digest auth. sipedge must bind each
// registration to the address it really came from (the NAT's public address
// and port), flag the NATed ones with a reason, and keep the Contact as the
// phone sent it.
func TestLabRegisterBehindNAT(t *testing.T) {
	l, s := edgeLab(t, EdgeConfig{})
	for _, p := range []Phone{alice, bob, carol} {
		register(t, l, p)
	}

	coneMap, err := l.Mapping(NSNATCone, priv, edge)
	if err != nil {
		t.Fatal(err)
	}
	symMap, err := l.Mapping(NSNATSym, priv, edge)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NAT mappings: A %v, B %v", coneMap, symMap)
	if coneMap.String() != ConeWANIP+":5060" {
		t.Errorf("se-nat-cone did not keep the port: %v", coneMap)
	}

	cases := []struct {
		phone  Phone
		remote string
		nat    bool
	}{
		{alice, coneMap.String(), true},
		{bob, symMap.String(), true},
		{carol, PubIP + ":5060", false},
	}
	for _, c := range cases {
		t.Run(c.phone.User, func(t *testing.T) {
			aor := c.phone.User + "@" + Domain
			p, err := s.Peer(aor)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", p)
			if p.Remote != c.remote {
				t.Errorf("remote = %q, want %q (the source address the REGISTER came from)", p.Remote, c.remote)
			}
			if p.NAT != c.nat {
				t.Errorf("nat = %v, want %v (reasons %q)", p.NAT, c.nat, p.NATReasons)
			}
			if c.nat && len(p.NATReasons) == 0 {
				t.Errorf("nat = true without a reason")
			}
			wantContact := "sip:" + c.phone.User + "@" + c.phone.IP + ":5060"
			if !strings.Contains(p.Contact, wantContact) {
				t.Errorf("contact = %q, want the phone's own %q", p.Contact, wantContact)
			}
			if p.User != c.phone.User {
				t.Errorf("user = %q, want %q", p.User, c.phone.User)
			}
			if !strings.EqualFold(p.Transport, "udp") {
				t.Errorf("transport = %q, want udp", p.Transport)
			}
			if !strings.Contains(p.Local, EdgeIP) {
				t.Errorf("local = %q, want sipedge's socket %s", p.Local, EdgeSIP)
			}
			if until := time.Until(p.Expires); until <= 0 || until > time.Hour+time.Minute {
				t.Errorf("expires = %v (in %v), want within the hour", p.Expires, until)
			}
			if p.UserAgent != "sipedge-lab/uac_register" {
				t.Errorf("user_agent = %q", p.UserAgent)
			}
		})
	}

	t.Run("cli", func(t *testing.T) {
		peers, err := s.PeersCLI()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, p := range peers {
			got[p.AOR] = p.Remote
		}
		for _, c := range cases {
			if r := got[c.phone.User+"@"+Domain]; r != c.remote {
				t.Errorf("peer list --json: %s remote %q, want %q (all: %v)", c.phone.User, r, c.remote, got)
			}
		}
	})
	s.Alive(t)
}

// call runs one call from caller to callee through sipedge, held for hold,
// ended by the callee, and checks both phones saw the whole dialog.
func call(t *testing.T, l *Lab, s *Sipedge, from, to Phone, hold time.Duration) {
	t.Helper()
	register(t, l, to)
	callee := l.StartCallee(to, hold)
	if err := callee.WaitListening(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	register(t, l, from)
	// Follow the phones' NAT bindings towards sipedge during the call.
	var watches []*MappingWatch
	for _, p := range []Phone{from, to} {
		if router, ok := routerOf[p.NS]; ok {
			watches = append(watches, l.WatchMapping(router, priv, edge))
		}
	}
	start := time.Now()
	caller := l.StartCaller(from, EdgeSIP, to.User, hold).Wait()
	took := time.Since(start)
	var timeline []string
	for _, w := range watches {
		timeline = append(timeline, w.Stop()...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("NAT bindings during the call (lab UDP timeout %v, stream %v):\n  %s",
				l.Opts.udpTimeout(), l.Opts.udpStreamTimeout(), strings.Join(timeline, "\n  "))
		}
	})
	if !caller.OK() {
		callee.Proc.Stop() // it would wait out its own timeout
	}
	ce := callee.Wait()
	t.Logf("call %s -> %s took %v", from.User, to.User, took.Round(time.Millisecond))

	if !caller.OK() {
		t.Errorf("caller %s: %s", from.Name, caller.Summary())
	}
	if !ce.OK() {
		t.Errorf("callee %s: %s", to.Name, ce.Summary())
	}
	if n := ce.Count("INVITE", "Recv"); n != 1 {
		t.Fatalf("callee got %d INVITEs, want 1 (sipedge did not reach %s behind its NAT?)", n, to.Name)
	}
	if n := ce.Count("ACK", "Recv"); n != 1 {
		t.Errorf("callee got %d ACKs for its 200, want 1: the ACK did not come through (the ~32 s call drop)", n)
	}
	// A 200 the ACK answers at once is sent once; every retransmission
	// means the ACK was late or lost on the way.
	if n := ce.Count("200", "Retrans"); n > 2 {
		t.Errorf("callee retransmitted its 200 %d times: the ACK is late or lost", n)
	}
	if n := caller.Count("200", "Recv"); n != 1 {
		t.Errorf("caller got the 200 %d times, want 1", n)
	}
	if n := caller.Count("200", "Retrans"); n > 2 {
		t.Errorf("caller received %d retransmitted 200s: its ACK did not reach the callee", n)
	}
	if n := caller.Count("BYE", "Recv"); n != 1 {
		t.Errorf("caller got %d BYEs, want 1: the callee's hang-up did not reach it"+
			" (if the timeline below shows the caller's NAT binding gone before the BYE, sipedge did not keep the NATed flow alive during the dialog)", n)
	}
	if n := ce.Count("200", "Recv"); n != 1 {
		t.Errorf("callee got %d answers to its BYE, want 1", n)
	}
	if caller.OK() && took < hold {
		t.Errorf("the call lasted %v, less than the %v hold", took, hold)
	}
	s.Alive(t)
}

// TestLabCallAcrossNATs: B (symmetric NAT) registers and waits, A (cone NAT)
// calls bob@lab.example through sipedge with digest auth. The call is
// answered, stays up 40 s and is ended by B's BYE, which must reach A along
// the Record-Route path: both phones' scenarios must succeed. The phones
// send nothing during the hold, and the routers forget a UDP binding after
// 30 s, so the BYE reaches A only if sipedge keeps A's flow alive.
func TestLabCallAcrossNATs(t *testing.T) {
	l, s := edgeLab(t, EdgeConfig{})
	call(t, l, s, alice, bob, CallHold)
}

// TestLabCallAcrossNATsShort is TestLabCallAcrossNATs with a 10 s hold,
// well inside the routers' 30 s UDP timeout: it checks the dialog's routing
// (INVITE to B's flow, ACK and BYE along the Record-Route, BYE to A's flow)
// apart from keeping NAT bindings alive, which only the 40 s call needs.
func TestLabCallAcrossNATsShort(t *testing.T) {
	l, s := edgeLab(t, EdgeConfig{})
	call(t, l, s, alice, bob, 10*time.Second)
}

// TestLabCallFromPublic: a phone with a public address (no NAT) calls B
// behind the symmetric NAT.
func TestLabCallFromPublic(t *testing.T) {
	l, s := edgeLab(t, EdgeConfig{})
	call(t, l, s, carol, bob, 5*time.Second)
}

// TestLabNoOpenRelay: an unauthenticated INVITE from the internet to a
// domain sipedge does not serve must be refused with 403.
func TestLabNoOpenRelay(t *testing.T) {
	l, s := edgeLab(t, EdgeConfig{})
	p := PhonePub.As("mallory", "", "attacker.example")
	spec := p.spec("uac_invite_noauth.xml", EdgeSIP)
	spec.Keys["target_user"] = "someone"
	spec.Keys["target_domain"] = "elsewhere.example"
	spec.Args = []string{"-m", "1"}
	res := l.RunSIPp(spec)
	if !res.OK() || res.Count("403", "Recv") != 1 {
		t.Errorf("want 403 to an unauthenticated INVITE for sip:someone@elsewhere.example: %s", res.Summary())
	}
	s.Alive(t)
}

// TestLabBanWrongPassword: after 5 wrong passwords from one source (se-pub)
// sipedge stops answering that source at all, even with the right password,
// while a phone elsewhere (A, through its NAT) still registers the same
// account.
func TestLabBanWrongPassword(t *testing.T) {
	l, s := edgeLab(t, EdgeConfig{BanFailures: 5})
	res := l.RunBadPassword(PhonePub.As("alice", "not-the-password", Domain), EdgeSIP, 8)
	out := BanOutcomeOf(res)
	t.Logf("8 attempts with a wrong password: %+v", out)
	if res.Err != nil || out.Attempts != 8 {
		t.Fatalf("the attempts did not run: %s", res.Summary())
	}
	// Attempts 1-5 are challenged and refused: five failures. Whether the
	// fifth refusal is still sent or the ban already silences it is the
	// server's choice. Attempts 6-8 must meet silence from the start.
	if out.Challenged != 5 || out.Refused+out.SilentAfterAuth != 5 || out.Refused < 4 {
		t.Errorf("want 5 attempts challenged and refused before the ban, got %+v: %s", out, res.Summary())
	}
	if out.SilentFirst != 3 {
		t.Errorf("want the 3 attempts after the ban unanswered, got %d answered: %+v", 3-out.SilentFirst, out)
	}

	if r := l.Register(PhonePub.As("alice", "alicepw", Domain), EdgeSIP); r.OK() || len(r.Received()) != 0 {
		t.Errorf("the banned source got answers with the right password: %s", r.Summary())
	}
	if r := l.Register(alice, EdgeSIP); !r.OK() {
		t.Errorf("another source could not register after the ban: %s", r.Summary())
	}
	s.Alive(t)
}
