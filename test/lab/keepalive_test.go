//go:build lab

package lab

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Keepalives keep NATed phones reachable: real softphones (baresip) behind
// the lab's NAT routers, whose conntrack forgets an idle UDP flow after 20 s
// (30 s once it is "assured"), and sipedge pinging the NATed flows with SIP
// OPTIONS (default interval 25 s). Every case runs at once in one lab, so
// the test waits for one ~100 s stretch of idleness instead of several:
//
//   - B (bob, se-b, symmetric NAT, keepalives on) and B2 (bob2, se-b2, same
//     NAT, [[users]] keepalive = "0s") register once (expiry 600 s: no
//     re-REGISTER during the test) and stay idle for 60 s. Then P (pat, a
//     public phone) calls bob: the INVITE must reach B through its NAT, B
//     rings (180) and answers (200). At the same moment P2 (pat2) calls
//     bob2: the INVITE must never reach B2 and P2's call must fail. That
//     half proves the test can fail: without keepalives the same phone is
//     unreachable.
//   - C (cathy, se-a, cone NAT, keepalives on) and C2 (cathy2, se-a2, same
//     NAT, keepalive "0s") are called at the start by D and D2 (dan, dan2,
//     public phones) and answer. RTP flows (through the relay, on other
//     ports and so other conntrack entries); SIP is silent: no re-INVITE,
//     no re-REGISTER. After 90 s D and D2 hang up: C must get D's BYE, C2
//     must not get D2's.
//
// Evidence logged on every run: the peers view (`sipedge peer list --json`)
// for B and B2 before the call, the routers' conntrack entries for the four
// SIP flows (checked before each call/hang-up, and their whole timeline:
// created, refreshed, assured, gone), every SIP message each NATed phone
// sent and received (a sniffer in each phone's namespace) and what sipedge
// sent towards each of their public addresses (a sniffer in se-edge).

const (
	kaUDPTimeout    = 20 * time.Second // routers' nf_conntrack_udp_timeout
	kaStreamTimeout = 30 * time.Second // nf_conntrack_udp_timeout_stream
	kaIdle          = 60 * time.Second // B idles this long before it is called
	kaHold          = 90 * time.Second // C's call: SIP silence before the BYE
	kaRegInt        = 600 * time.Second
	// kaFailWait bounds how long P2's call to the unreachable B2 may take
	// to fail: sipedge's INVITE transaction gives up after 64*T1 = 32 s.
	kaFailWait = 50 * time.Second
	// kaByeWait is how long C2 is watched for a BYE that must not come (a
	// BYE that gets through arrives within milliseconds; sipedge's
	// retransmissions are at 0.5, 1.5, 3.5, 7.5 s).
	kaByeWait = 10 * time.Second
)

// kaPhone is one softphone of the test.
type kaPhone struct {
	role      string // B, B2, C, C2, D, D2, P, P2
	phone     Phone
	router    string // NAT router in front of it; "" for a public phone
	keepalive bool   // sipedge pings its flow (NATed, user without "0s")
	sp        *Softphone
	regAt     time.Time      // REGISTER_OK
	public    netip.AddrPort // its SIP flow's address as sipedge sees it
}

func (p *kaPhone) String() string {
	where := "public " + p.phone.IP
	if p.router != "" {
		ka := "keepalives on"
		if !p.keepalive {
			ka = `keepalive = "0s"`
		}
		where = fmt.Sprintf("%s behind %s, %s", p.phone.IP, p.router, ka)
	}
	return fmt.Sprintf("%s (%s in %s, %s)", p.role, p.phone.User, p.phone.NS, where)
}

// private is the phone's own SIP address, the original source of its flow.
func (p *kaPhone) private() netip.AddrPort {
	return netip.MustParseAddrPort(fmt.Sprintf("%s:%d", p.phone.IP, p.phone.Port))
}

func pubPhone(name string, port int) Phone {
	return Phone{Name: name, NS: NSPub, IP: PubIP, Port: port}
}

// TestLabKeepalive: see the comment at the top of this file. About 2 minutes.
func TestLabKeepalive(t *testing.T) {
	SkipNoBaresip(t)
	l := New(t, Options{UDPTimeout: kaUDPTimeout, UDPStreamTimeout: kaStreamTimeout, Capture: true})
	for _, x := range []struct{ router, ns string }{{NSNATSym, NSB2}, {NSNATCone, NSA2}} {
		if err := l.AddLANPhone(x.router, x.ns, PhoneIP2); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(role string, p Phone, user, router string, ka bool) *kaPhone {
		return &kaPhone{role: role, phone: p.As(user, user+"pw", Domain), router: router, keepalive: ka}
	}
	var (
		B  = mk("B", PhoneB, "bob", NSNATSym, true)
		B2 = mk("B2", PhoneB2, "bob2", NSNATSym, false)
		C  = mk("C", PhoneA, "cathy", NSNATCone, true)
		C2 = mk("C2", PhoneA2, "cathy2", NSNATCone, false)
		// Four public phones on se-pub: baresip listens on UDP and TCP at
		// its port and TLS at the next one, so 10 apart.
		D   = mk("D", pubPhone("d", 5060), "dan", "", false)
		D2  = mk("D2", pubPhone("d2", 5070), "dan2", "", false)
		P   = mk("P", pubPhone("p", 5080), "pat", "", false)
		P2  = mk("P2", pubPhone("p2", 5090), "pat2", "", false)
		all = []*kaPhone{B, B2, C, C2, D, D2, P, P2}
		nat = []*kaPhone{B, B2, C, C2}
	)
	var users []User
	for _, p := range all {
		users = append(users, User{p.phone.User, p.phone.Password})
	}
	// No [keepalive] table: sipedge's defaults (OPTIONS every 25 s,
	// timeout 5 s, 3 misses) are what is tested; the peers view must show
	// them.
	s := l.StartSipedge(EdgeConfig{
		Users:         users,
		UserKeepalive: map[string]time.Duration{B2.phone.User: 0, C2.phone.User: 0},
	})
	start := time.Now()
	since := func(at time.Time) string { return fmt.Sprintf("+%.1fs", at.Sub(start).Seconds()) }

	// Evidence collectors: SIP seen in every phone namespace and on
	// sipedge's interface, and the routers' conntrack entries of the four
	// NATed phones' SIP flows.
	sniffers := map[string]*sipSniffer{}
	for _, ns := range []string{NSB, NSB2, NSA, NSA2, NSPub, NSEdge} {
		sniffers[ns] = sniffSIP(t, ns, start)
	}
	watch := watchSIPFlows(l, start, nat)
	t.Cleanup(func() { watch.stop() })
	var stoppedAt time.Time
	logEvidence := func() {
		for _, p := range []*kaPhone{B, C} {
			if p.public.IsValid() {
				r, _ := pingReport(sniffers[NSEdge], p)
				t.Logf("keepalive pings to %s: %s", p.role, r)
			}
		}
		t.Logf("conntrack timeline of the NATed phones' SIP flows (router UDP timeout %v, stream %v; checked every second):\n%s",
			kaUDPTimeout, kaStreamTimeout, watch.report())
		if !stoppedAt.IsZero() {
			t.Logf("the phones were stopped at %s (baresip unregisters when it quits: REGISTER with expires=0; a phone still in a call sends BYE)", since(stoppedAt))
		}
		for _, p := range nat {
			t.Logf("SIP at %s, as its namespace saw it:\n  %s", p, strings.Join(sniffers[p.phone.NS].timeline(p.phone.Port, netip.AddrPort{}), "\n  "))
			if p.public.IsValid() {
				t.Logf("SIP between sipedge and %s's public address %v, as se-edge saw it:\n  %s", p.role, p.public,
					strings.Join(sniffers[NSEdge].timeline(5060, p.public), "\n  "))
			}
		}
	}
	t.Cleanup(logEvidence) // also after a t.Fatal

	// All eight phones start and register once.
	for _, p := range all {
		spec := SoftphoneSpec{Phone: p.phone, RegInt: kaRegInt, AutoAnswer: p.router != ""}
		switch p {
		case C, C2:
			spec.ToneHz, spec.AudioLength = calleeTone, 3*time.Minute // baresip hangs up when its file ends
		case D, D2:
			spec.ToneHz, spec.AudioLength = callerTone, 3*time.Minute
		}
		p.sp = l.StartSoftphone(spec)
	}
	t.Cleanup(func() { // in parallel, before the lab's own cleanup
		stoppedAt = time.Now()
		stopAll(all)
	})
	// On failure, the state while the phones are still registered (this
	// runs first: cleanups run last-registered first).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		j, err := s.PeersJSON()
		t.Logf("peers at the failure (sipedge peer list --json): %s %v", j, err)
		for _, r := range []string{NSNATSym, NSNATCone} {
			t.Logf("conntrack -L in %s:\n%s", r, l.Conntrack(r))
		}
		t.Logf("sipedge's keepalive log lines:\n%s", grepFile(s.Proc.Stderr, "keepalive|unreachable", 40))
	})
	for _, p := range all {
		ev, err := p.sp.WaitEvent(15*time.Second, "REGISTER_OK", "REGISTER_FAIL")
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		p.regAt = ev.At
	}
	t.Logf("all 8 phones registered by %s", since(time.Now()))

	// The peers view: B and C are pinged (first ping 1-5 s after the
	// REGISTER), B2 and C2 are not, nor are the public phones.
	byUser, err := waitPeers(s, 10*time.Second, func(m map[string]Peer) bool {
		return strings.HasPrefix(m[B.phone.User].Status, "OK (") && strings.HasPrefix(m[C.phone.User].Status, "OK (")
	})
	if err != nil {
		t.Fatalf("B and C not shown OK in the peers view 10 s after registering: %v", err)
	}
	for _, p := range all {
		pr, ok := byUser[p.phone.User]
		if !ok {
			t.Fatalf("no peer %s in the peers view", p.phone.User)
		}
		p.public = netip.MustParseAddrPort(pr.Remote)
		t.Logf("peer %-6s remote %-21s nat=%-5v status %-12q %s", pr.User, pr.Remote, pr.NAT, pr.Status, kaSummary(pr.Keepalive))
		switch {
		case p.keepalive && (pr.Keepalive == nil || pr.Keepalive.Method != "options" || pr.Keepalive.IntervalS != 25):
			t.Errorf("%s: want OPTIONS keepalives every 25 s (sipedge's default), got %s", p, kaSummary(pr.Keepalive))
		case !p.keepalive && (pr.Status != "" || pr.Keepalive != nil):
			t.Errorf("%s: want no keepalive (status \"\", keepalive null), got status %q %s", p, pr.Status, kaSummary(pr.Keepalive))
		}
		if p.router != "" && !pr.NAT {
			t.Errorf("%s: nat = false for a phone behind %s", p, p.router)
		}
	}

	// D calls C and D2 calls C2, at least 3 s after C and C2 registered:
	// C's call is about keeping a dialog's flow open, not about the first
	// seconds of a registration (B's case). Both are answered at once.
	time.Sleep(time.Until(later(C.regAt, C2.regAt).Add(3 * time.Second)))
	for _, c := range [][2]*kaPhone{{D, C}, {D2, C2}} {
		if err := c[0].sp.Dial("sip:" + c[1].phone.User + "@" + Domain); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*kaPhone{D, D2, C, C2} {
		if _, err := p.sp.WaitEstablished(15 * time.Second); err != nil {
			t.Fatalf("%s: call not established: %v", p, err)
		}
	}
	hangAt := time.Now().Add(kaHold)
	t.Logf("%s: D -> C and D2 -> C2 established; both hang up at %s, after %v of SIP silence", since(time.Now()), since(hangAt), kaHold)

	// B and B2 idle for 60 s.
	time.Sleep(time.Until(later(B.regAt, B2.regAt).Add(kaIdle)))
	t.Logf("%s: B registered %v ago, B2 %v ago, neither has sent a request since (B only answers pings)",
		since(time.Now()), time.Since(B.regAt).Round(100*time.Millisecond), time.Since(B2.regAt).Round(100*time.Millisecond))
	checkMappings(t, l, "before the calls to B and B2", B, B2)
	peers, err := s.PeersCLI()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*kaPhone{B, B2} {
		pr := peerOf(peers, p.phone.User)
		t.Logf("peers view before the call: %-4s status %-12q %s", p.phone.User, pr.Status, kaSummary(pr.Keepalive))
	}
	if pr := peerOf(peers, B.phone.User); !strings.HasPrefix(pr.Status, "OK (") || pr.Keepalive == nil || pr.Keepalive.Misses != 0 || pr.Keepalive.Answered < 2 {
		t.Errorf("%s after %v idle: want status \"OK (… ms)\" with >= 2 answered pings and no miss in a row, got %q %s",
			B, kaIdle, pr.Status, kaSummary(pr.Keepalive))
	}
	if pr := peerOf(peers, B2.phone.User); pr.Status != "" || pr.Keepalive != nil {
		t.Errorf("%s: want no keepalive in the peers view, got %q %s", B2, pr.Status, kaSummary(pr.Keepalive))
	}

	// P calls B, P2 calls B2, at the same moment.
	callAt := time.Now()
	for _, c := range [][2]*kaPhone{{P, B}, {P2, B2}} {
		if err := c[0].sp.Dial("sip:" + c[1].phone.User + "@" + Domain); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := P.sp.WaitEstablished(15 * time.Second); err != nil {
		t.Errorf("%s idle for %v with keepalives on is not reachable: %v", B, kaIdle, err)
	} else {
		if !hasEvent(P.sp, "CALL_RINGING") {
			t.Errorf("P got no 180 Ringing from B (events: %s)", eventList(P.sp.Events()))
		}
		if _, err := B.sp.WaitEstablished(5 * time.Second); err != nil {
			t.Errorf("B: %v", err)
		}
		t.Logf("%s: B rang and answered: P -> B established %v after dialling (P's events: %s)",
			since(time.Now()), time.Since(callAt).Round(time.Millisecond), eventList(P.sp.Events()))
		time.Sleep(time.Second)
		if err := P.sp.Hangup(); err != nil {
			t.Errorf("P hangup: %v", err)
		}
		if _, err := B.sp.WaitClosed(5 * time.Second); err != nil {
			t.Errorf("B did not get P's BYE: %v", err)
		}
	}
	if n := sniffers[NSB].count(B.phone.Port, false, "INVITE", callAt); n == 0 {
		t.Errorf("no INVITE reached B's namespace")
	}
	if t.Failed() {
		if _, suspect := pingReport(sniffers[NSEdge], B); suspect {
			t.Logf("NOTE: sipedge's first ping to B came less than 2 s after B's first REGISTER. Linux makes a UDP entry "+
				"assured (stream timeout) only for a packet more than 2 s after the flow began, so the entry stayed unassured "+
				"(%v) and the next ping came later than that: the binding expired between the first two pings. "+
				"keepalive.First must never ping before 2.5 s.", kaUDPTimeout)
		}
	}
	for _, code := range []string{"180/INVITE", "200/INVITE"} {
		if n := sniffers[NSPub].count(P.phone.Port, false, code, callAt); n == 0 {
			t.Errorf("P never received B's %s", code)
		}
	}

	// P2's call must fail without ever reaching B2.
	ev, err := P2.sp.WaitEvent(kaFailWait, "CALL_CLOSED")
	switch {
	case err != nil:
		t.Errorf("P2's call to the unreachable B2 did not end within %v: %v", kaFailWait, err)
	case hasEvent(P2.sp, "CALL_ESTABLISHED") || hasEvent(P2.sp, "CALL_RINGING"):
		t.Errorf("%s was reached after %v idle without keepalives (P2's events: %s): the lab's NAT kept an idle binding open, so this test cannot fail",
			B2, kaIdle, eventList(P2.sp.Events()))
	case !callFailure.MatchString(ev.Param):
		t.Errorf("P2's call to B2 ended with %q, want a failure (408, 480, 503 or a timeout)", ev.Param)
	default:
		t.Logf("%s: as expected without keepalives, P2's call to B2 failed after %v: %q",
			since(ev.At), ev.At.Sub(callAt).Round(time.Millisecond), ev.Param)
	}
	if hasEvent(B2.sp, "CALL_INCOMING") {
		t.Errorf("B2 saw an incoming call (events: %s)", eventList(B2.sp.Events()))
	}
	if n := sniffers[NSB2].count(B2.phone.Port, false, "INVITE", callAt); n != 0 {
		t.Errorf("%d INVITEs reached B2's namespace; want none (its NAT binding should be long gone)", n)
	}
	if n := sniffers[NSEdge].countPeer(B2.public, true, "INVITE", callAt); n == 0 {
		t.Errorf("sipedge sent no INVITE towards B2's registered address %v: the failure proves nothing", B2.public)
	} else {
		t.Logf("sipedge sent the INVITE to B2's registered address %v %d times (retransmissions); none arrived", B2.public, n)
	}

	// D and D2 hang up after 90 s of SIP silence.
	time.Sleep(time.Until(hangAt))
	checkMappings(t, l, "before D and D2 hang up", C, C2)
	if peers, err := s.PeersCLI(); err == nil {
		for _, p := range []*kaPhone{C, C2} {
			pr := peerOf(peers, p.phone.User)
			t.Logf("peers view before the hang-up: %-6s status %-12q %s", p.phone.User, pr.Status, kaSummary(pr.Keepalive))
		}
	}
	byeAt := time.Now()
	for _, p := range []*kaPhone{D, D2} {
		if err := p.sp.Hangup(); err != nil {
			t.Errorf("%s hangup: %v", p.role, err)
		}
	}
	for _, p := range []*kaPhone{C, C2} {
		last, what := sniffers[p.phone.NS].lastNonKeepalive(p.phone.Port, byeAt)
		t.Logf("%s: SIP silence before the BYE: %v (last message other than a keepalive: %s at %s)",
			p.role, byeAt.Sub(last).Round(100*time.Millisecond), what, since(last))
		if byeAt.Sub(last) < kaHold {
			t.Errorf("%s: SIP was silent for only %v before the BYE, want >= %v", p, byeAt.Sub(last).Round(100*time.Millisecond), kaHold)
		}
	}
	if ev, err := C.sp.WaitClosed(kaByeWait); err != nil {
		t.Errorf("%s did not get D's BYE after %v of SIP silence: %v", C, kaHold, err)
	} else {
		t.Logf("%s: C got D's BYE after %v of SIP silence: call closed %v after D hung up (%q)",
			since(ev.At), kaHold, ev.At.Sub(byeAt).Round(time.Millisecond), ev.Param)
	}
	time.Sleep(time.Until(byeAt.Add(kaByeWait)))
	if ev, err := C2.sp.WaitEvent(0, "CALL_CLOSED"); err == nil {
		t.Errorf("%s got a BYE after %v of SIP silence without keepalives (%q at %s): the lab's NAT kept an idle binding open, so this test cannot fail",
			C2, kaHold, ev.Param, since(ev.At))
	} else {
		t.Logf("as expected without keepalives, C2 never got D2's BYE (still in the call %v after D2 hung up)", kaByeWait)
	}
	if n := sniffers[NSA].count(C.phone.Port, false, "BYE", byeAt); n == 0 {
		t.Errorf("no BYE reached C's namespace")
	}
	if n := sniffers[NSA2].count(C2.phone.Port, false, "BYE", byeAt); n != 0 {
		t.Errorf("%d BYEs reached C2's namespace, want none", n)
	}
	if n := sniffers[NSEdge].countPeer(C2.public, true, "BYE", byeAt); n == 0 {
		t.Errorf("sipedge sent no BYE towards C2's address %v: the contrast proves nothing", C2.public)
	} else {
		t.Logf("sipedge sent D2's BYE to C2's address %v %d times; none arrived", C2.public, n)
	}

	// Nobody re-registered: the only REGISTERs are the first two (the
	// challenged one and the answer).
	for _, p := range nat {
		if n := sniffers[p.phone.NS].count(p.phone.Port, true, "REGISTER", p.regAt.Add(time.Second)); n != 0 {
			t.Errorf("%s re-registered %d times during the test: its own REGISTERs may have kept its binding open", p, n)
		}
		in := sniffers[p.phone.NS].count(p.phone.Port, false, "OPTIONS", start)
		ans := sniffers[p.phone.NS].countPrefix(p.phone.Port, true, "/OPTIONS", start)
		t.Logf("%-2s received %d keepalive OPTIONS and answered %d (%s)", p.role, in, ans, strings.Join(sniffers[p.phone.NS].codes(p.phone.Port, "/OPTIONS"), ", "))
		if p.keepalive && in < 3 {
			t.Errorf("%s received only %d OPTIONS in %v", p, in, time.Since(p.regAt).Round(time.Second))
		}
		if !p.keepalive && in != 0 {
			t.Errorf("%s received %d OPTIONS, want none", p, in)
		}
	}
	s.Alive(t)
	t.Logf("test took %v until the phones are stopped", time.Since(start).Round(time.Second))
}

// pingReport says when sipedge pinged p (from se-edge's sniffer: pings
// sent, whether or not they arrived), relative to p's first REGISTER, and
// whether the first ping came within the kernel's 2 s window (so it did not
// make the conntrack entry assured) with the next one later than the
// routers' unassured timeout: the binding then expires between the two.
func pingReport(sn *sipSniffer, p *kaPhone) (string, bool) {
	var reg time.Time
	var pings []time.Time
	for _, m := range sn.sel(5060, p.public) {
		switch {
		case !m.out && m.what == "REGISTER" && reg.IsZero():
			reg = m.at
		case m.out && m.what == "OPTIONS":
			pings = append(pings, m.at)
		}
	}
	if reg.IsZero() || len(pings) == 0 {
		return fmt.Sprintf("%d pings (REGISTER seen: %v)", len(pings), !reg.IsZero()), false
	}
	first := pings[0].Sub(reg)
	var gaps []string
	for i := 1; i < len(pings); i++ {
		gaps = append(gaps, fmt.Sprintf("%.1f", pings[i].Sub(pings[i-1]).Seconds()))
	}
	r := fmt.Sprintf("%d pings: the first %.2f s after its first REGISTER, then after %s s", len(pings), first.Seconds(), strings.Join(gaps, ", "))
	suspect := first <= 2*time.Second && len(pings) > 1 && pings[1].Sub(pings[0]) > kaUDPTimeout
	if first <= 2*time.Second {
		r += " (the first within the kernel's 2 s window: it did not make the entry assured)"
	}
	return r, suspect
}

// callFailure matches the reasons baresip gives for a call that failed:
// a final error response or a transaction timeout.
var callFailure = regexp.MustCompile(`(?i)\b(408|480|503|504)\b|time.?out`)

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func hasEvent(sp *Softphone, typ string) bool {
	for _, e := range sp.Events() {
		if e.Type == typ {
			return true
		}
	}
	return false
}

// stopAll stops the softphones in parallel (each may take a few seconds to
// unregister and quit).
func stopAll(ps []*kaPhone) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p.sp == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.sp.Stop() }()
	}
	wg.Wait()
}

// checkMappings logs, and checks, the routers' NAT mapping of each phone's
// SIP flow to sipedge: present for a phone with keepalives, gone for one
// without.
func checkMappings(t *testing.T, l *Lab, when string, ps ...*kaPhone) {
	t.Helper()
	for _, p := range ps {
		ap, ttl, err := l.mapping(p.router, p.private(), edge)
		switch {
		case err == nil:
			t.Logf("conntrack %s: %s's SIP flow %v -> %v is mapped to %v, %d s left", when, p.role, p.private(), edge, ap, ttl)
		default:
			t.Logf("conntrack %s: %s's SIP flow %v -> %v: no entry", when, p.role, p.private(), edge)
		}
		if p.keepalive && err != nil {
			t.Errorf("%s: the NAT binding of its SIP flow is gone %s although sipedge pings it", p, when)
		}
		if !p.keepalive && err == nil {
			t.Errorf("%s: the NAT binding of its SIP flow is still there %s without keepalives (mapped to %v, %d s left): the lab's conntrack timeouts do not work as configured", p, when, ap, ttl)
		}
	}
}

// waitPeers polls `sipedge peer list --json` until ok accepts it (peers by
// user) or timeout passes.
func waitPeers(s *Sipedge, timeout time.Duration, ok func(map[string]Peer) bool) (map[string]Peer, error) {
	deadline := time.Now().Add(timeout)
	for {
		peers, err := s.PeersCLI()
		m := map[string]Peer{}
		for _, p := range peers {
			m[p.User] = p
		}
		if err == nil && ok(m) {
			return m, nil
		}
		if time.Now().After(deadline) {
			j, _ := s.PeersJSON()
			return m, fmt.Errorf("%v; peers: %s", err, j)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func peerOf(peers []Peer, user string) Peer {
	for _, p := range peers {
		if p.User == user {
			return p
		}
	}
	return Peer{User: user, Status: "(no such peer)"}
}

// kaSummary is a peer's keepalive object in one line.
func kaSummary(k *PeerKeepalive) string {
	if k == nil {
		return "keepalive: null"
	}
	return fmt.Sprintf("keepalive: %s %s/%ds sent %d answered %d misses %d rtt %.2f ms dialogs %d history_ms %v",
		k.Status, k.Method, k.IntervalS, k.Sent, k.Answered, k.Misses, k.RTTms, k.Dialogs, k.HistoryMS)
}

// grepFile returns the last n lines of path matching re.
func grepFile(path, re string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	rx := regexp.MustCompile(re)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if rx.MatchString(line) {
			out = append(out, line)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

// sipMsg is one SIP message a sniffer saw.
type sipMsg struct {
	at            time.Time
	out           bool // sent from the sniffed namespace
	local, remote netip.AddrPort
	what          string // "INVITE", or "200/INVITE" for a response
}

// sipSniffer records the SIP messages (UDP datagrams that start with a SIP
// request or status line) on a namespace's eth0.
type sipSniffer struct {
	start time.Time
	mu    sync.Mutex
	msgs  []sipMsg
}

func sniffSIP(t *testing.T, ns string, start time.Time) *sipSniffer {
	t.Helper()
	s := &sipSniffer{start: start}
	sniffUDP(t, ns, IfPublic, func(p sniffed) {
		what, ok := sipWhat(p.payload)
		if !ok {
			return
		}
		m := sipMsg{at: time.Now(), out: p.outgoing, local: p.dst, remote: p.src, what: what}
		if p.outgoing {
			m.local, m.remote = p.src, p.dst
		}
		s.mu.Lock()
		s.msgs = append(s.msgs, m)
		s.mu.Unlock()
	})
	return s
}

// sipWhat names a SIP message: its method, or "code/method" (CSeq's) for a
// response.
func sipWhat(b []byte) (string, bool) {
	line, rest, _ := strings.Cut(string(b), "\r\n")
	if code, ok := strings.CutPrefix(line, "SIP/2.0 "); ok {
		code, _, _ = strings.Cut(code, " ")
		method := "?"
		for _, h := range strings.Split(rest, "\r\n") {
			if name, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "CSeq") {
				if f := strings.Fields(v); len(f) == 2 {
					method = f[1]
				}
				break
			}
		}
		return code + "/" + method, true
	}
	if f := strings.Fields(line); len(f) == 3 && f[2] == "SIP/2.0" {
		return f[0], true
	}
	return "", false
}

// select returns the messages on local port port (and, if remote is valid,
// with that peer only), in order.
func (s *sipSniffer) sel(port uint16, remote netip.AddrPort) []sipMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sipMsg
	for _, m := range s.msgs {
		if m.local.Port() == port && (!remote.IsValid() || m.remote == remote) {
			out = append(out, m)
		}
	}
	return out
}

func (s *sipSniffer) count(port int, out bool, what string, after time.Time) int {
	n := 0
	for _, m := range s.sel(uint16(port), netip.AddrPort{}) {
		if m.out == out && m.what == what && !m.at.Before(after) {
			n++
		}
	}
	return n
}

func (s *sipSniffer) countPrefix(port int, out bool, suffix string, after time.Time) int {
	n := 0
	for _, m := range s.sel(uint16(port), netip.AddrPort{}) {
		if m.out == out && strings.HasSuffix(m.what, suffix) && !m.at.Before(after) {
			n++
		}
	}
	return n
}

// countPeer counts messages of one kind between local port 5060 and remote.
func (s *sipSniffer) countPeer(remote netip.AddrPort, out bool, what string, after time.Time) int {
	n := 0
	for _, m := range s.sel(5060, remote) {
		if m.out == out && m.what == what && !m.at.Before(after) {
			n++
		}
	}
	return n
}

// codes lists the distinct answers the phone on port sent to requests of a
// kind ("/OPTIONS"), with counts.
func (s *sipSniffer) codes(port int, suffix string) []string {
	c := map[string]int{}
	for _, m := range s.sel(uint16(port), netip.AddrPort{}) {
		if m.out && strings.HasSuffix(m.what, suffix) {
			c[m.what]++
		}
	}
	var out []string
	for k, v := range c {
		out = append(out, fmt.Sprintf("%dx %s", v, k))
	}
	sort.Strings(out)
	return out
}

// lastNonKeepalive is the last SIP message on port before t that is not a
// keepalive OPTIONS or its answer.
func (s *sipSniffer) lastNonKeepalive(port int, t time.Time) (time.Time, string) {
	var at time.Time
	what := "none"
	for _, m := range s.sel(uint16(port), netip.AddrPort{}) {
		if m.at.Before(t) && m.what != "OPTIONS" && !strings.HasSuffix(m.what, "/OPTIONS") {
			at, what = m.at, m.what
			if m.out {
				what = "sent " + what
			} else {
				what = "received " + what
			}
		}
	}
	return at, what
}

// timeline is the messages on port (and remote, if valid) for the log.
func (s *sipSniffer) timeline(port int, remote netip.AddrPort) []string {
	var out []string
	for _, m := range s.sel(uint16(port), remote) {
		dir := "<-"
		if m.out {
			dir = "->"
		}
		out = append(out, fmt.Sprintf("+%6.2fs %v %s %v %s", m.at.Sub(s.start).Seconds(), m.local, dir, m.remote, m.what))
	}
	if len(out) == 0 {
		out = []string{"(nothing)"}
	}
	return out
}

// flowWatch follows the routers' conntrack entries of the phones' SIP flows
// to sipedge, once a second: when each appears, is refreshed (its timer
// jumps back up), becomes assured, and disappears.
type flowWatch struct {
	stopc chan struct{}
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	lines map[string][]string // by role
	roles []string
}

type ctState struct {
	mapped  netip.AddrPort
	ttl     int
	assured bool
}

func watchSIPFlows(l *Lab, start time.Time, ps []*kaPhone) *flowWatch {
	w := &flowWatch{stopc: make(chan struct{}), done: make(chan struct{}), lines: map[string][]string{}}
	for _, p := range ps {
		w.roles = append(w.roles, p.role)
	}
	go func() {
		defer close(w.done)
		last := map[string]*ctState{}
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			byRouter := map[string]map[netip.AddrPort]ctState{}
			for _, p := range ps {
				if _, ok := byRouter[p.router]; !ok {
					byRouter[p.router] = sipEntries(l, p.router)
				}
			}
			now := time.Now()
			for _, p := range ps {
				cur, ok := byRouter[p.router][p.private()]
				prev := last[p.role]
				var ev string
				switch {
				case ok && prev == nil:
					ev = fmt.Sprintf("entry %v -> %v, %d s left%s", p.private(), cur.mapped, cur.ttl, assured(cur.assured))
				case !ok && prev != nil:
					ev = "gone"
				case ok && cur.mapped != prev.mapped:
					ev = fmt.Sprintf("new mapping %v, %d s left%s", cur.mapped, cur.ttl, assured(cur.assured))
				case ok && (cur.ttl > prev.ttl || cur.assured != prev.assured):
					ev = fmt.Sprintf("refreshed: %d s left%s", cur.ttl, assured(cur.assured))
				}
				if ev != "" {
					w.mu.Lock()
					w.lines[p.role] = append(w.lines[p.role], fmt.Sprintf("+%5.1fs %s", now.Sub(start).Seconds(), ev))
					w.mu.Unlock()
				}
				if ok {
					c := cur
					last[p.role] = &c
				} else {
					last[p.role] = nil
				}
			}
			select {
			case <-w.stopc:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func assured(a bool) string {
	if a {
		return " [ASSURED]"
	}
	return " (unassured)"
}

// sipEntries reads router's conntrack entries of UDP flows to sipedge's
// SIP port, by original source.
func sipEntries(l *Lab, router string) map[netip.AddrPort]ctState {
	out, err := l.Exec(router, "conntrack", "-L", "-p", "udp", "--orig-dst", EdgeIP, "--orig-port-dst", "5060")
	m := map[netip.AddrPort]ctState{}
	if err != nil {
		return m
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		var src, sport string
		for _, x := range f {
			if v, ok := strings.CutPrefix(x, "src="); ok && src == "" {
				src = v
			}
			if v, ok := strings.CutPrefix(x, "sport="); ok && sport == "" {
				sport = v
			}
		}
		orig, err := netip.ParseAddrPort(src + ":" + sport)
		mapped, ok := replyDst(line)
		if err != nil || !ok {
			continue
		}
		var ttl int
		fmt.Sscan(f[2], &ttl)
		m[orig] = ctState{mapped: mapped, ttl: ttl, assured: strings.Contains(line, "[ASSURED]")}
	}
	return m
}

func (w *flowWatch) stop() {
	w.once.Do(func() { close(w.stopc) })
	<-w.done
}

// report stops the watch and returns the timelines.
func (w *flowWatch) report() string {
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, r := range w.roles {
		fmt.Fprintf(&b, "  %s:\n", r)
		for _, l := range w.lines[r] {
			fmt.Fprintf(&b, "    %s\n", l)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}
