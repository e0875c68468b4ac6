//go:build lab

package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipedge/sipedge/internal/tone"
)

// sipedge itself behind a NAT router (issue 6): sipedge runs in se-srv
// (10.77.0.10) on the LAN of se-gw, a home router whose WAN address
// 198.51.100.50 is on the lab's internet; the phones are carol on se-pub
// (public) and bob behind the symmetric NAT. They send SIP to the router's
// WAN address, which must reach sipedge and whose media ports must reach
// its relay.

// Where the router-case relay's media is seen: the router's WAN side, the
// external ports (mapped 1:1 to the relay's ports).
const (
	gwRelayPorts               = "30000-30019" // small: mapped as a whole
	gwRelayMin, gwRelayMax     = 30000, 30019
	gwCheckInterval            = "5s" // [portmap] check_interval
	mappingsGoneWithin         = 5 * time.Second
	unreachableRegisterTimeout = 8 * time.Second
)

var gwRelay = relaySpot{NSGW, IfWAN, GWWANIP, gwRelayMin, gwRelayMax}

// gwEdgeConfig is sipedge in se-srv with the small RTP range, plus extra.
func gwEdgeConfig(name, external, extra string) EdgeConfig {
	return EdgeConfig{
		Name:            name,
		NS:              NSSrv,
		ListenIP:        SrvIP,
		MediaPorts:      gwRelayPorts,
		ExternalAddress: external,
		Extra:           extra,
	}
}

// wantMappings are the DNAT rules sipedge needs on the router: SIP on UDP
// and TCP and every port of the relay's range, to the same port of SrvIP.
func wantMappings() []string {
	want := []string{"udp 5060", "tcp 5060"}
	for p := gwRelayMin; p <= gwRelayMax; p++ {
		want = append(want, fmt.Sprintf("udp %d", p))
	}
	return want
}

// missingMappings returns the wanted mappings absent from rules (or
// pointing elsewhere than the same port of SrvIP).
func missingMappings(rules []GWRule) []string {
	have := map[string]bool{}
	for _, r := range rules {
		if r.ToIP == SrvIP && r.ToPort == r.ExtPort {
			have[fmt.Sprintf("%s %d", r.Proto, r.ExtPort)] = true
		}
	}
	var missing []string
	for _, w := range wantMappings() {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	return missing
}

// chainEntries counts the rules (-A lines) of table/chain in se-gw.
func (l *Lab) chainEntries(table, chain string) (int, string) {
	out, err := l.Exec(NSGW, legacyIPTables, "-w", "-t", table, "-S", chain)
	if err != nil {
		return -1, err.Error()
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "-A ") {
			n++
		}
	}
	return n, out
}

// miniupnpdState counts and lists every rule miniupnpd holds: the DNAT
// rules, the filter accepts, the POSTROUTING and mangle ones. If a chain
// cannot be listed, total is -1 (never "empty").
func (l *Lab) miniupnpdState() (total int, text string) {
	var b strings.Builder
	failed := false
	defer func() {
		if failed {
			total = -1
		}
	}()
	for _, tc := range [][2]string{{"nat", upnpChain}, {"nat", upnpChain + "-POSTROUTING"}, {"filter", upnpChain}, {"mangle", upnpChain}} {
		n, out := l.chainEntries(tc[0], tc[1])
		if n < 0 {
			failed = true
			fmt.Fprintf(&b, "  %s/%s: %s\n", tc[0], tc[1], out)
			continue
		}
		total += n
		fmt.Fprintf(&b, "  %s/%s: %d rule(s)\n", tc[0], tc[1], n)
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "-A ") {
				fmt.Fprintf(&b, "    %s\n", line)
			}
		}
	}
	return total, b.String()
}

// waitStatus polls `sipedge status --json` until ok accepts it.
func waitStatus(s *Sipedge, timeout time.Duration, ok func(EdgeStatus) bool) (EdgeStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.StatusCLI()
		if err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("not as wanted after %v", timeout)
			}
			return st, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// gwDiagnostics logs, when t has failed, sipedge's log tail, its status,
// the router's tables, conntrack and miniupnpd's log.
func gwDiagnostics(t *testing.T, l *Lab, s *Sipedge, m *Miniupnpd) {
	t.Helper()
	if !t.Failed() {
		return
	}
	var b strings.Builder
	if s != nil {
		fmt.Fprintf(&b, "--- %s log tail (%s)\n%s\n", s.Proc.Name, s.Proc.Stderr, s.Proc.Tail(40))
		if !s.Proc.Exited() {
			st, err := s.StatusCLI()
			fmt.Fprintf(&b, "--- sipedge status --json (err %v)\n%s\n", err, st.Raw)
		}
	}
	_, mu := l.miniupnpdState()
	fmt.Fprintf(&b, "--- miniupnpd's chains\n%s", mu)
	b.WriteString(l.GWDiagnostics(m))
	fmt.Fprintf(&b, "--- %s: conntrack -L\n%s", NSNATSym, l.Conntrack(NSNATSym))
	t.Logf("diagnostics:\n%s", b.String())
}

// TestLabEdgeBehindRouter: sipedge behind a home router, in one lab (about
// a minute):
//
//  1. The router runs miniupnpd (UPnP IGD, NAT-PMP and PCP on its LAN
//     side). (a) sipedge with external_address = "auto" learns the WAN
//     address by PCP (preferred), maps SIP (UDP and TCP 5060) and its whole
//     RTP range itself (iptables-legacy -t nat -S MINIUPNPD, and sipedge's
//     status agree), the phones register at the router's WAN address, carol
//     calls bob and both hear the other's tone, relayed through the mapped
//     ports; on SIGTERM every miniupnpd rule is gone. (b) The same with
//     "natpmp", bob calling, (c) with "upnp".
//  2. No miniupnpd, a manual port forward on the router (SIP and the RTP
//     range). (a) external_address = the WAN address: the same call works.
//     (b) No external address: the phones register through the forward,
//     but the call must not work (sipedge does not know the WAN address the
//     phones route through as its own, and would advertise 10.77.0.10).
//  3. (a) No external address, no miniupnpd, no forward: the phones'
//     REGISTERs die at the router and never reach sipedge. (b) "auto" with
//     no gateway: sipedge starts at once, gives up discovery within about
//     3 s, and its retry picks miniupnpd up when it is started afterwards.
//
// 2b and 3a are the failures that prove the test can fail.
func TestLabEdgeBehindRouter(t *testing.T) {
	SkipNoBaresip(t)
	SkipNoMiniupnpd(t)
	begin := time.Now()
	l := New(t, Options{})
	if err := l.AddGateway(); errors.Is(err, ErrNoLegacyIPTables) {
		t.Skip(err)
	} else if err != nil {
		t.Fatal(err)
	}
	if err := l.AddSTUNHost(); err != nil {
		t.Fatal(err)
	}
	if c := l.Capture(NSGW, IfWAN, ""); c != nil {
		defer c.Stop()
	}
	if c := l.Capture(NSSrv, IfPublic, ""); c != nil {
		defer c.Stop()
	}
	t.Logf("lab with router %s (WAN %s, LAN %s) and sipedge's host %s (%s) built in %v",
		NSGW, GWWANIP, SrvNet, NSSrv, SrvIP, time.Since(begin).Round(time.Millisecond))

	// 1. The router maps: miniupnpd, and sipedge asking it itself, with
	// "auto" (PCP wins) and then with each of the other two protocols
	// alone.
	phase := time.Now()
	if _, err := l.StartStund(NSSTUN, STUNHostIP, STUNHostIP2); err != nil {
		t.Fatal(err)
	}
	mini, err := l.StartMiniupnpd(STUNHostIP)
	if err != nil {
		t.Fatalf("%v\n%s", err, l.GWDiagnostics(mini))
	}
	t.Logf("miniupnpd up %v after the lab (its STUN check passed)", time.Since(phase).Round(time.Millisecond))
	for i, c := range []struct {
		external string
		sources  []string
		from, to Phone
	}{
		{"auto", []string{"pcp"}, carol, bob}, // PCP > NAT-PMP > UPnP
		{"natpmp", []string{"natpmp"}, bob, carol},
		{"upnp", []string{"upnp"}, carol, bob},
	} {
		p := time.Now()
		t.Logf("=== 1%c. external_address = %q, miniupnpd on %s", 'a'+i, c.external, NSGW)
		routerMapped(t, l, mini, c.external, c.sources, c.from, c.to)
		resetNAT(t, l)
		t.Logf("=== 1%c. done in %v", 'a'+i, time.Since(p).Round(time.Millisecond))
	}
	mini.Proc.Stop()
	t.Logf("=== 1. done in %v", time.Since(phase).Round(time.Millisecond))

	// 2. static external address, manual port forward, no miniupnpd.
	phase = time.Now()
	t.Logf("=== 2a. external_address = %q, manual port forward on %s", GWWANIP, NSGW)
	for _, f := range []struct {
		proto    string
		from, to int
	}{{"udp", 5060, 5060}, {"tcp", 5060, 5060}, {"udp", gwRelayMin, gwRelayMax}} {
		if err := l.AddPortForward(f.proto, f.from, f.to); err != nil {
			t.Fatal(err)
		}
	}
	_, fwd, _ := l.GWRules(fwdChain)
	t.Logf("manual forwards:\n%s", fwd)
	s := l.StartSipedge(gwEdgeConfig("sipedge-static", GWWANIP, ""))
	func() {
		defer gwDiagnostics(t, l, s, nil)
		st, err := s.StatusCLI()
		if err != nil {
			t.Fatal(err)
		}
		if st.External == nil || st.External.Address != GWWANIP || st.External.Source != "static" {
			t.Errorf("status external = %+v, want %s from static", st.External, GWWANIP)
		}
		if n, text := l.miniupnpdState(); n != 0 {
			t.Errorf("miniupnpd rules with a static address and no miniupnpd:\n%s", text)
		}
		r := audioCall(t, l, s, bob, carol, audioOpts{Proxy: GWSIP, Relay: &gwRelay})
		wantTwoWay(t, r)
		wantRelayed(t, r)
		checkSIPForwarded(t, l)
		s.Stop()
	}()
	resetNAT(t, l)
	t.Logf("=== 2a. done in %v", time.Since(phase).Round(time.Millisecond))

	// 2b. The same forward, no external address: reachable, but no call.
	phase = time.Now()
	t.Logf("=== 2b. manual port forward, but no external address")
	s = l.StartSipedge(gwEdgeConfig("sipedge-forward-only", "", ""))
	func() {
		defer gwDiagnostics(t, l, s, nil)
		forwardOnly(t, l, s)
		s.Stop()
	}()
	if err := l.ClearPortForwards(); err != nil {
		t.Fatal(err)
	}
	resetNAT(t, l)
	t.Logf("=== 2b. done in %v", time.Since(phase).Round(time.Millisecond))

	// 3a. nothing: no external address, no miniupnpd, no forward.
	phase = time.Now()
	t.Logf("=== 3a. no external address, no miniupnpd, no forward")
	s = l.StartSipedge(gwEdgeConfig("sipedge-none", "", ""))
	func() {
		defer gwDiagnostics(t, l, s, nil)
		st, err := s.StatusCLI()
		if err != nil {
			t.Fatal(err)
		}
		if st.External != nil {
			t.Errorf("status external = %+v without external_address", st.External)
		}
		unreachable(t, l, s)
		s.Stop()
	}()
	t.Logf("=== 3a. done in %v", time.Since(phase).Round(time.Millisecond))

	// 3b. "auto" with no gateway yet: sipedge starts anyway, has no
	// external address, and picks the router up when miniupnpd comes.
	phase = time.Now()
	t.Logf("=== 3b. external_address = \"auto\", no miniupnpd until sipedge runs")
	lateGateway(t, l)
	t.Logf("=== 3b. done in %v", time.Since(phase).Round(time.Millisecond))
	t.Logf("whole test %v", time.Since(begin).Round(time.Millisecond))
}

// noGatewayLog is what sipedge logs when its first discovery finds no
// gateway.
const noGatewayLog = "no port mapping on the router yet"

// lateGatewayWait bounds how long sipedge may take to find a gateway that
// appeared after it started: its retries come 5 s, then 10 s apart.
const lateGatewayWait = 20 * time.Second

// lateGateway is case 3b: sipedge with "auto" starts while the router runs
// no miniupnpd; start-up must not wait for the router, the first discovery
// gives up within about 3 s and the status has no external address; then
// miniupnpd starts, and sipedge's background retry must find it, learn the
// WAN address and create the mappings; SIGTERM removes them.
func lateGateway(t *testing.T, l *Lab) {
	t0 := time.Now()
	s := l.StartSipedge(gwEdgeConfig("sipedge-auto-late", "auto", "[portmap]\ncheck_interval = \""+gwCheckInterval+"\"\n"))
	ready := time.Since(t0)
	var mini *Miniupnpd
	defer func() { gwDiagnostics(t, l, s, mini) }()
	st, err := s.StatusCLI()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sipedge ready %v after start without a gateway; external %+v, %d mappings", ready.Round(time.Millisecond), st.External, len(st.PortMappings))
	if ready > 5*time.Second {
		t.Errorf("sipedge took %v to start without a gateway, want at most the 3 s discovery bound (plus start-up)", ready)
	}
	if st.External != nil || len(st.PortMappings) != 0 {
		t.Errorf("external address %+v and %d mappings without any gateway", st.External, len(st.PortMappings))
	}
	// The first discovery gives up after 3 s; only then does the router
	// get miniupnpd, so that the background retry must find it.
	if err := s.Proc.WaitOutput(noGatewayLog, 10*time.Second); err != nil {
		t.Fatalf("sipedge did not report the missing gateway: %v", err)
	}
	gaveUp := time.Since(t0)
	t.Logf("sipedge logged %q %v after start", noGatewayLog, gaveUp.Round(time.Millisecond))
	if gaveUp > 5*time.Second {
		t.Errorf("the first discovery took %v, want about 3 s", gaveUp)
	}
	if st, err := s.StatusCLI(); err != nil || st.External != nil || len(st.PortMappings) != 0 {
		t.Errorf("after discovery failed: status external %+v, %d mappings (err %v), want none", st.External, len(st.PortMappings), err)
	}
	t1 := time.Now()
	if mini, err = l.StartMiniupnpd(STUNHostIP); err != nil {
		t.Fatalf("%v\n%s", err, l.GWDiagnostics(mini))
	}
	var rules []GWRule
	for {
		rules, _, err = l.UPnPRules()
		if err == nil && len(missingMappings(rules)) == 0 {
			break
		}
		if time.Since(t1) > lateGatewayWait {
			t.Fatalf("miniupnpd started %v after sipedge; %v later its mappings still lack %v (err %v)",
				t1.Sub(t0).Round(time.Millisecond), lateGatewayWait, missingMappings(rules), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	found := time.Since(t1)
	st, err = waitStatus(s, 5*time.Second, func(st EdgeStatus) bool {
		return st.External != nil && st.External.Address == GWWANIP
	})
	if err != nil {
		t.Errorf("mappings made but no external address in the status: %v\n%s", err, st.Raw)
	} else {
		t.Logf("miniupnpd started %v after sipedge; %v later sipedge's retry had mapped all %d ports, external address %s from %s",
			t1.Sub(t0).Round(time.Millisecond), found.Round(time.Millisecond), len(rules), st.External.Address, st.External.Source)
	}
	t2 := time.Now()
	s.Stop()
	for {
		n, text := l.miniupnpdState()
		if n == 0 {
			t.Logf("stopped: miniupnpd's chains empty %v after SIGTERM", time.Since(t2).Round(time.Millisecond))
			break
		}
		if time.Since(t2) > 5*time.Second+mappingsGoneWithin {
			t.Errorf("%d miniupnpd rule(s) left after sipedge stopped:\n%s", n, text)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mini.Proc.Stop()
}

// routerMapped is one run of case 1: miniupnpd runs on the router and holds
// no mapping; sipedge starts with external_address = external, must learn
// the WAN address from one of sources and map SIP and the RTP range;
// from calls to through it with two-way audio through the mapped relay
// ports; on SIGTERM every mapping must go.
func routerMapped(t *testing.T, l *Lab, mini *Miniupnpd, external string, sources []string, from, to Phone) {
	if n, text := l.miniupnpdState(); n != 0 {
		t.Fatalf("miniupnpd holds rules before sipedge started:\n%s", text)
	}
	if rules, _, _ := l.GWRules(fwdChain); len(rules) != 0 {
		t.Fatalf("manual forwards on the router: %v", rules)
	}
	logAt := fileSize(mini.Proc.Stderr)
	t0 := time.Now()
	s := l.StartSipedge(gwEdgeConfig("sipedge-"+external, external, "[portmap]\ncheck_interval = \""+gwCheckInterval+"\"\n"))
	ready := time.Since(t0)
	func() {
		defer gwDiagnostics(t, l, s, mini)
		st, err := waitStatus(s, 10*time.Second, func(st EdgeStatus) bool {
			return st.External != nil && st.External.Address == GWWANIP
		})
		learned := time.Since(t0)
		if err != nil {
			t.Fatalf("sipedge did not learn the router's WAN address %s: %v\n%s", GWWANIP, err, st.Raw)
		}
		if !slices.Contains(sources, st.External.Source) {
			t.Errorf("external address source %q, want one of %v", st.External.Source, sources)
		}
		t.Logf("sipedge ready %v after start; external address %s from %s (%s) %v after start",
			ready.Round(time.Millisecond), st.External.Address, st.External.Source, st.External.Detail, learned.Round(time.Millisecond))

		var rules []GWRule
		deadline := time.Now().Add(10 * time.Second)
		for {
			rules, _, err = l.UPnPRules()
			if err == nil && len(missingMappings(rules)) == 0 {
				break
			}
			if time.Now().After(deadline) {
				_, text := l.miniupnpdState()
				t.Fatalf("miniupnpd's mappings after 10 s lack %v (err %v):\n%s\nminiupnpd log:\n%s",
					missingMappings(rules), err, text, mini.Log(40))
			}
			time.Sleep(200 * time.Millisecond)
		}
		var list []string
		for _, r := range rules {
			list = append(list, r.String())
		}
		t.Logf("miniupnpd's DNAT rules %v after start (%d): %s", time.Since(t0).Round(time.Millisecond), len(rules), strings.Join(list, ", "))
		if extra := len(rules) - len(wantMappings()); extra != 0 {
			t.Logf("NOTE: %d DNAT rule(s) more than SIP and the RTP range", extra)
		}
		// sipedge's own view of its mappings must agree.
		if st, err := s.StatusCLI(); err != nil {
			t.Error(err)
		} else {
			got := map[string]bool{}
			for _, m := range st.PortMappings {
				in, ext := netip.MustParseAddrPort(m.Internal), netip.MustParseAddrPort(m.External)
				if in.Addr().String() == SrvIP && ext.Addr().String() == GWWANIP && in.Port() == ext.Port() {
					got[fmt.Sprintf("%s %d", m.Transport, ext.Port())] = true
				}
			}
			var missing []string
			for _, w := range wantMappings() {
				if !got[w] {
					missing = append(missing, w)
				}
			}
			if len(missing) != 0 {
				t.Errorf("sipedge status lacks the mappings %v (want internal %s:P, external %s:P):\n%s", missing, SrvIP, GWWANIP, st.Raw)
			} else {
				t.Logf("sipedge status lists %d port mappings (%s), all %s:P -> %s:P", len(st.PortMappings), st.PortMappings[0].Protocol, GWWANIP, SrvIP)
			}
		}

		r := audioCall(t, l, s, from, to, audioOpts{Proxy: GWSIP, Relay: &gwRelay})
		wantTwoWay(t, r)
		wantRelayed(t, r)
		checkSIPForwarded(t, l)

		// Shutdown: the mappings must go with sipedge.
		t1 := time.Now()
		if err := s.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, err := s.Proc.Wait(10 * time.Second)
		exited := time.Since(t1)
		if err != nil {
			t.Errorf("sipedge still running 10 s after SIGTERM")
			s.Stop()
		} else if code != 0 {
			t.Errorf("sipedge exited with code %d after SIGTERM", code)
		}
		var n int
		var text string
		for {
			n, text = l.miniupnpdState()
			if n == 0 || time.Since(t1) > exited+mappingsGoneWithin {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n != 0 {
			t.Errorf("%d miniupnpd rule(s) left %v after SIGTERM (sipedge exited after %v):\n%s",
				n, time.Since(t1).Round(time.Millisecond), exited.Round(time.Millisecond), text)
		} else {
			t.Logf("SIGTERM: sipedge exited after %v; miniupnpd's chains empty %v after the signal",
				exited.Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
		}
		t.Logf("miniupnpd's log since sipedge started: %s", miniupnpdSummary(mini, logAt))
	}()
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// forwardOnlyWait is how long the caller waits for an answer in case 2b.
const forwardOnlyWait = 10 * time.Second

// forwardOnly is case 2b: the router forwards SIP and the RTP range to
// sipedge, which has no external address. The phones reach it and
// register (so the forward works), but a call between them must not give
// two-way audio: sipedge advertises 10.77.0.10 (Record-Route, SDP) and does
// not know the router's WAN address, to which the phones send everything,
// as its own. What happens instead is logged.
func forwardOnly(t *testing.T, l *Lab, s *Sipedge) {
	var mu sync.Mutex
	toWAN := 0 // packets sipedge sent to the router's WAN SIP address
	gw := netip.MustParseAddrPort(GWSIP)
	sn := sniffUDP(t, NSSrv, IfPublic, func(p sniffed) {
		if p.outgoing && p.dst == gw {
			mu.Lock()
			toWAN++
			mu.Unlock()
		}
	})
	defer sn.Stop()
	callee := l.StartSoftphone(SoftphoneSpec{Phone: bob, ToneHz: calleeTone, AutoAnswer: true, Proxy: GWSIP})
	caller := l.StartSoftphone(SoftphoneSpec{Phone: carol, ToneHz: callerTone, Proxy: GWSIP})
	defer callee.Stop()
	defer caller.Stop()
	for _, sp := range []*Softphone{callee, caller} {
		if err := sp.WaitRegistered(10 * time.Second); err != nil {
			t.Fatalf("with the forward in place the phones must register: %v", err)
		}
	}
	t.Logf("both phones registered through the forward")
	if err := caller.Dial("sip:" + bob.User + "@" + Domain); err != nil {
		t.Fatal(err)
	}
	_, err := caller.WaitEstablished(forwardOnlyWait)
	reached := false
	for _, e := range callee.Events() {
		reached = reached || strings.HasPrefix(e.Type, "CALL_")
	}
	mu.Lock()
	sent := toWAN
	mu.Unlock()
	if err != nil {
		t.Logf("as expected without an external address, no call: %v; the INVITE reached bob: %v; sipedge sent %d packet(s) to the router's WAN address %s (its own public address, which it does not know)",
			err, reached, sent, GWSIP)
		return
	}
	// Established after all: then the audio must fail.
	time.Sleep(talkTime)
	caller.Hangup()
	caller.WaitClosed(5 * time.Second)
	callee.WaitClosed(5 * time.Second)
	caller.Stop()
	callee.Stop()
	got := map[string]float64{}
	for _, c := range []struct {
		sp    *Softphone
		other float64
	}{{caller, calleeTone}, {callee, callerTone}} {
		heard, _, err := c.sp.Heard()
		if err != nil {
			heard = nil
		}
		if heard != nil {
			got[c.sp.Spec.Phone.User] = tone.Seconds(heard, c.other)
		}
	}
	t.Logf("the call was established; tones heard: %v; sipedge sent %d packet(s) to %s", got, sent, GWSIP)
	if got[carol.User] >= minToneSeconds && got[bob.User] >= minToneSeconds {
		t.Errorf("two-way audio through a plain forward without an external address (%v): sipedge advertised a public address it was not given, or the test cannot fail", got)
	}
}

// resetNAT empties the conntrack tables of the router and of the phones'
// NAT, so that no flow of one case carries over to the next (a flow NATed
// by a rule outlives the rule).
func resetNAT(t *testing.T, l *Lab) {
	t.Helper()
	for _, ns := range []string{NSGW, NSNATSym, NSNATCone} {
		if err := l.FlushConntrack(ns); err != nil {
			t.Error(err)
		}
	}
}

// checkSIPForwarded checks, in the router's conntrack table, that each
// phone's SIP flow to the router's WAN address was forwarded to sipedge
// (its reply tuple comes from SrvSIP), and logs the flows.
func checkSIPForwarded(t *testing.T, l *Lab) {
	t.Helper()
	out, err := l.Exec(NSGW, "conntrack", "-L", "-p", "udp", "--orig-dst", GWWANIP, "--orig-port-dst", "5060")
	if err != nil {
		t.Errorf("conntrack in %s: %v", NSGW, err)
		return
	}
	t.Logf("%s conntrack, SIP flows to %s (the reply tuple's src is where the router sent them):\n%s", NSGW, GWSIP, strings.TrimSpace(out))
	to := map[string]string{} // phone's public IP -> reply source
	for _, line := range strings.Split(out, "\n") {
		var srcs, sports []string
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "src="); ok {
				srcs = append(srcs, v)
			} else if v, ok := strings.CutPrefix(f, "sport="); ok {
				sports = append(sports, v)
			}
		}
		if len(srcs) == 2 && len(sports) == 2 {
			to[srcs[0]] = srcs[1] + ":" + sports[1]
		}
	}
	for _, ip := range []string{PubIP, SymWANIP} {
		if to[ip] != SrvSIP {
			t.Errorf("%s's SIP flow to %s went to %q, want sipedge %s", ip, GWSIP, to[ip], SrvSIP)
		}
	}
}

// miniupnpdSummary counts what miniupnpd's log (from offset from on) says
// it was asked, added and removed.
func miniupnpdSummary(m *Miniupnpd, from int64) string {
	b, err := os.ReadFile(m.Proc.Stderr)
	if err != nil {
		return err.Error()
	}
	log := string(b[min(from, int64(len(b))):])
	var errs []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(strings.ToLower(line), "error") || strings.Contains(strings.ToLower(line), "fail") {
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	// Every protocol's new mapping passes the permission rules ("port
	// mapping accepted"), and every removal deletes its nat rule.
	return fmt.Sprintf("%d mappings accepted, %d nat rules deleted; requests: %d PCP, %d NAT-PMP, %d SSDP M-SEARCH, %d SOAP; error lines: %q",
		strings.Count(log, "port mapping accepted"), strings.Count(log, "Trying to delete nat rule"),
		strings.Count(log, "PCP request received"), strings.Count(log, "NAT-PMP request received"),
		strings.Count(log, "SSDP M-SEARCH from"), strings.Count(log, "SOAPAction:"), errs)
}

// unreachable: both phones try to register at the router's WAN address;
// neither may succeed, their REGISTERs must be seen arriving at the router,
// and nothing from them may reach sipedge's host.
func unreachable(t *testing.T, l *Lab, s *Sipedge) {
	t.Helper()
	var mu sync.Mutex
	atGW := map[string]int{}  // packets to GWSIP, by source IP
	atSrv := map[string]int{} // packets to sipedge's SIP port from outside its LAN
	gw := netip.MustParseAddrPort(GWSIP)
	srvNet := netip.MustParsePrefix(SrvNet)
	snGW := sniffUDP(t, NSGW, IfWAN, func(p sniffed) {
		if !p.outgoing && p.dst == gw {
			mu.Lock()
			atGW[p.src.Addr().String()]++
			mu.Unlock()
		}
	})
	snSrv := sniffUDP(t, NSSrv, IfPublic, func(p sniffed) {
		if !p.outgoing && p.dst.Port() == 5060 && !srvNet.Contains(p.src.Addr()) {
			mu.Lock()
			atSrv[p.src.String()]++
			mu.Unlock()
		}
	})
	start := time.Now()
	phones := []*Softphone{
		l.StartSoftphone(SoftphoneSpec{Phone: carol, Proxy: GWSIP}),
		l.StartSoftphone(SoftphoneSpec{Phone: bob, Proxy: GWSIP, AutoAnswer: true}),
	}
	time.Sleep(unreachableRegisterTimeout)
	for _, sp := range phones {
		evs := sp.Events()
		if hasEvent(sp, "REGISTER_OK") {
			t.Errorf("%s registered through a router with no forward and no mapping: events %s", where(sp.Spec.Phone), eventList(evs))
		} else {
			t.Logf("%s: no registration %v after starting (as expected); events: %s",
				where(sp.Spec.Phone), time.Since(start).Round(time.Millisecond), eventList(evs))
		}
	}
	// baresip's quit waits for its unanswered REGISTER (de-registration)
	// to time out, and so does SIGTERM: kill them, nothing of theirs is
	// needed any more.
	for _, sp := range phones {
		sp.Proc.cmd.Process.Kill()
		sp.Proc.Wait(5 * time.Second)
		sp.Stop()
	}
	snGW.Stop()
	snSrv.Stop()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("SIP packets arriving at the router's %s, by source: %v; at sipedge's host from outside its LAN: %v", GWSIP, atGW, atSrv)
	for _, ip := range []string{PubIP, SymWANIP} {
		if atGW[ip] == 0 {
			t.Errorf("no SIP packet from %s arrived at %s: the phones did not even try, so the failure proves nothing", ip, GWSIP)
		}
	}
	if len(atSrv) != 0 {
		t.Errorf("SIP from outside reached sipedge's host without any forward: %v", atSrv)
	}
	if peers, err := s.Peers(); err != nil {
		t.Error(err)
	} else if len(peers) != 0 {
		t.Errorf("sipedge has %d registration(s) although no phone could reach it: %+v", len(peers), peers)
	}
	if st, err := s.StatusCLI(); err == nil {
		t.Logf("sipedge counters: sip_rx_packets %d, requests_REGISTER %d", st.Counters["sip_rx_packets"], st.Counters["requests_REGISTER"])
	}
}
