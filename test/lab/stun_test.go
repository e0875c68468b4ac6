//go:build lab

package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// sipedge's STUN server and `sipedge probe` across the lab's NATs, and
// interop with Debian's classic STUN client and server (Vovida stund 0.97).

const (
	// probeBound is the longest a probe without --lifetime may take: it
	// needs one round trip plus one retransmission schedule (2.75 s) for
	// the filtered answers; generous for a busy 2-core host.
	probeBound = 8 * time.Second
	// blockedBound is how fast a probe must give up when UDP is blocked:
	// one retransmission schedule (2.75 s) plus start-up.
	blockedBound = 6 * time.Second
	// stunLifetimeMax is the probe's --lifetime-max; the routers forget
	// an idle UDP flow after stunUDPTimeout.
	stunLifetimeMax = 30 * time.Second
	stunUDPTimeout  = 20 * time.Second
)

// probeWant is what a probe from one place must report.
type probeWant struct {
	nat         bool
	mapping     string
	filtering   string
	name        string // rfc3489_name
	hairpinning string // "true", "false", "null", or "" for either null or true
	public      string // public IP; its port is checked separately
	samePort    bool   // the public port is the local one
	router      string // NAT router in front, "" for none
}

// The lab's three vantage points as RFC 4787 names them. se-nat-cone keeps
// the source port and filters by address and port (conntrack), se-nat-sym
// picks a random port per destination; neither hairpins (a packet from the
// LAN to the router's own WAN address matches no conntrack reply tuple, so
// it is delivered to the router itself, which has no such socket).
var probeWants = map[string]probeWant{
	NSA:   {true, "endpoint-independent", "address-and-port-dependent", "port-restricted cone", "false", ConeWANIP, true, NSNATCone},
	NSB:   {true, "address-and-port-dependent", "address-and-port-dependent", "symmetric", "false", SymWANIP, false, NSNATSym},
	NSPub: {false, "endpoint-independent", "endpoint-independent", "open internet", "", PubIP, true, ""},
}

func triString(b *bool) string {
	if b == nil {
		return "null"
	}
	return fmt.Sprint(*b)
}

// checkProbe checks one probe report against want, and its public address
// against the router's conntrack.
// With conntrack false the router's conntrack is not consulted (the main
// socket's flow of a lifetime probe has expired by the time it ends).
func checkProbe(t *testing.T, l *Lab, r *ProbeRun, want probeWant, server string, conntrack bool) {
	t.Helper()
	if r.ExitCode != 0 || r.Report == nil {
		t.Fatalf("probe failed (%v):\n%s", r.JSONErr, r.Summary())
	}
	rep := r.Report
	bad := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
	}
	if rep.NATPresent != want.nat {
		bad("nat_present = %v, want %v", rep.NATPresent, want.nat)
	}
	if rep.Mapping != want.mapping {
		bad("mapping = %q, want %q (%s; %s)", rep.Mapping, want.mapping, rep.Test("mapping-2"), rep.Test("mapping-3"))
	}
	if rep.Filtering != want.filtering {
		bad("filtering = %q, want %q (%s; %s)", rep.Filtering, want.filtering, rep.Test("filtering-2"), rep.Test("filtering-3"))
	}
	if rep.RFC3489Name != want.name {
		bad("rfc3489_name = %q, want %q", rep.RFC3489Name, want.name)
	}
	hp := triString(rep.Hairpinning)
	switch {
	case want.hairpinning == "" && hp == "false":
		bad("hairpinning = false without a NAT (%s)", rep.Test("hairpin"))
	case want.hairpinning != "" && hp != want.hairpinning:
		bad("hairpinning = %s, want %s (%s)", hp, want.hairpinning, rep.Test("hairpin"))
	}
	if d := rep.Rewriting.Detected; d == nil || *d {
		bad("rewriting.detected = %s, want false (%s)", triString(d), rep.Rewriting.Evidence)
	}
	pub, err := netip.ParseAddrPort(rep.PublicAddress)
	local, lerr := netip.ParseAddrPort(rep.LocalAddress)
	if err != nil || lerr != nil {
		t.Fatalf("public_address %q / local_address %q: %v %v", rep.PublicAddress, rep.LocalAddress, err, lerr)
	}
	if pub.Addr().String() != want.public {
		bad("public_address = %v, want IP %s", pub, want.public)
	}
	if want.samePort && pub.Port() != local.Port() {
		bad("public port %d, want the local port %d kept (local %v)", pub.Port(), local.Port(), local)
	}
	if want.router == "" {
		if pub != local {
			bad("public_address %v != local_address %v without a NAT", pub, local)
		}
	} else if conntrack {
		// The router's own record of the flow the probe's main socket made.
		m, err := l.Mapping(want.router, local, netip.MustParseAddrPort(server))
		if err != nil {
			bad("conntrack: %v\n%s", err, l.Conntrack(want.router))
		} else if m != pub {
			bad("public_address %v, but %s's conntrack maps %v -> %s to %v", pub, want.router, local, server, m)
		}
		// And of the flow to the alternate IP (mapping test II): the same
		// public address behind the cone NAT, another port behind the
		// symmetric one, as the probe says.
		for _, tt := range rep.Tests {
			if tt.Name != "mapping-2" || tt.Outcome != "answered" {
				continue
			}
			to, err1 := netip.ParseAddrPort(tt.To)
			mapped, err2 := netip.ParseAddrPort(tt.Mapped)
			if err1 != nil || err2 != nil {
				bad("mapping-2: to %q, mapped %q", tt.To, tt.Mapped)
				continue
			}
			if m2, err := l.Mapping(want.router, local, to); err != nil {
				bad("conntrack: %v", err)
			} else if m2 != mapped {
				bad("mapping-2 says %v -> %v is mapped to %v, %s's conntrack says %v", local, to, mapped, want.router, m2)
			}
		}
	}
	if rep.DurationS <= 0 || rep.Error != "" {
		bad("duration_s = %v, error = %q", rep.DurationS, rep.Error)
	}
	if t.Failed() {
		t.Logf("%s", r.Summary())
		if want.router != "" {
			t.Logf("conntrack %s:\n%s", want.router, l.Conntrack(want.router))
		}
	}
}

// probeRow is one line of the results table the tests log and keep as an
// artifact.
func probeRow(where string, r *ProbeRun) string {
	if r.Report == nil {
		return fmt.Sprintf("| %s | exit %d, no report (%v) | %.2f s |", where, r.ExitCode, r.JSONErr, r.Elapsed.Seconds())
	}
	rep := r.Report
	life := "-"
	if bl := rep.BindingLifetime; bl != nil {
		life = fmt.Sprintf("%s %g/%g", bl.Status, bl.LowerS, bl.UpperS)
	}
	return fmt.Sprintf("| %s | %v | %s | %s | %s | %s | %s | %s -> %s | rfc5780=%v classic=%v | %s | %.2f s (exit %d) |",
		where, rep.NATPresent, rep.Mapping, rep.Filtering, rep.RFC3489Name, triString(rep.Hairpinning),
		triString(rep.Rewriting.Detected), rep.LocalAddress, rep.PublicAddress, rep.Server.RFC5780, rep.Server.ClassicRFC3489,
		life, r.Elapsed.Seconds(), r.ExitCode)
}

const probeTableHead = "| where | nat_present | mapping | filtering | rfc3489_name | hairpinning | rewriting.detected | local -> public | server | lifetime | time |\n|---|---|---|---|---|---|---|---|---|---|---|"

// writeTable logs rows and keeps them as results.md in the artifacts.
func writeTable(t *testing.T, l *Lab, head string, rows []string) {
	t.Helper()
	table := head + "\n" + strings.Join(rows, "\n") + "\n"
	t.Logf("results:\n%s", table)
	f, err := os.OpenFile(filepath.Join(l.Dir, "results.md"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintf(f, "%s\n", table)
		f.Close()
	}
}

// stunSockets checks that sipedge bound the four UDP sockets of RFC 5780
// mode (two IPs × 3478/3479).
func stunSockets(t *testing.T, l *Lab) {
	t.Helper()
	out, err := l.Exec(NSEdge, "ss", "-Hnlu")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{EdgeIP + ":3478", EdgeIP + ":3479", EdgeIP2 + ":3478", EdgeIP2 + ":3479"} {
		if !strings.Contains(out, a) {
			t.Fatalf("sipedge's STUN server has no UDP socket on %s; ss -lnu in se-edge:\n%s", a, out)
		}
	}
}

// TestLabProbe: sipedge's STUN server in RFC 5780 mode (198.51.100.10 and
// .11, ports 3478 and 3479) and `sipedge probe --json` run from behind the
// cone NAT (se-a), the symmetric NAT (se-b) and with no NAT (se-pub), all
// at once, must each report the right mapping, filtering, classic name,
// hairpinning and public address (cross-checked with the router's
// conntrack). At the same time a probe with --lifetime --lifetime-max 30s
// from behind the cone NAT, whose router forgets idle UDP flows after 20 s,
// must measure that lifetime (15 s survived, 20 s gone). Then: UDP to the
// server dropped by se-nat-sym: exit 1, "UDP blocked", within 6 s; and a
// probe of sipedge's SIP port (which answers Binding requests but is no
// RFC 5780 server): the public address only.
func TestLabProbe(t *testing.T) {
	l := New(t, Options{UDPTimeout: stunUDPTimeout, UDPStreamTimeout: 30 * time.Second, Capture: true})
	s := l.StartSipedge(EdgeConfig{Extra: STUNConfig})
	stunSockets(t, l)
	start := time.Now()

	// The lifetime probe runs in the background during everything else.
	life := l.StartProbe(NSA, "lifetime", "--lifetime", "--lifetime-max", stunLifetimeMax.String(), EdgeSTUN)

	order := []string{NSA, NSB, NSPub}
	runs := l.probeAll(order, "rfc5780", EdgeSTUN)
	var rows []string
	for _, ns := range order {
		r := runs[ns]
		rows = append(rows, probeRow(ns+" -> "+EdgeSTUN, r))
		t.Run(ns, func(t *testing.T) {
			checkProbe(t, l, r, probeWants[ns], EdgeSTUN, true)
			if r.Report != nil {
				srv := r.Report.Server
				// Behind a NAT that filters by address and port neither
				// changed answer arrives, so the probe cannot tell whether
				// the server honoured CHANGE-REQUEST: null. Without a NAT
				// both arrive from the right addresses: true.
				wantChange := "null"
				if !probeWants[ns].nat {
					wantChange = "true"
				}
				if !srv.RFC5780 || srv.OtherAddress != EdgeIP2+":3479" || srv.ClassicRFC3489 || triString(srv.ChangeRequest) != wantChange {
					t.Errorf("server: rfc5780=%v other_address=%q classic=%v change_request=%s, want true, %s:3479, false, %s",
						srv.RFC5780, srv.OtherAddress, srv.ClassicRFC3489, triString(srv.ChangeRequest), EdgeIP2, wantChange)
				}
				if srv.Software != "sipedge" {
					t.Errorf("server.software = %q, want sipedge", srv.Software)
				}
				if srv.ResponseOrigin != EdgeSTUN {
					t.Errorf("server.response_origin = %q, want %s", srv.ResponseOrigin, EdgeSTUN)
				}
				if r.Report.BindingLifetime != nil {
					t.Errorf("binding_lifetime = %+v without --lifetime, want null", r.Report.BindingLifetime)
				}
			}
			if r.Elapsed > probeBound {
				t.Errorf("probe took %v, want < %v without --lifetime", r.Elapsed, probeBound)
			}
			t.Logf("%s: %s in %.2f s (duration_s %.3f); advice: %q", ns, rowName(r), r.Elapsed.Seconds(), durationS(r), advice(r))
		})
	}

	// UDP blocked: se-nat-sym drops everything to the STUN server.
	t.Run("blocked", func(t *testing.T) {
		rule := []string{"FORWARD", "-p", "udp", "-d", EdgeIP, "--dport", "3478", "-j", "DROP"}
		if err := l.must(NSNATSym, append([]string{"iptables", "-I"}, rule...)...); err != nil {
			t.Fatal(err)
		}
		defer l.must(NSNATSym, append([]string{"iptables", "-D"}, rule...)...)
		r := l.StartProbe(NSB, "blocked", EdgeSTUN)
		r.Wait(30 * time.Second)
		rows = append(rows, probeRow(NSB+" -> "+EdgeSTUN+" (UDP dropped by se-nat-sym)", r))
		counters, _ := l.Exec(NSNATSym, "iptables", "-vnL", "FORWARD", "1")
		t.Logf("blocked: exit %d in %.2f s; stderr %q; drop rule: %s", r.ExitCode, r.Elapsed.Seconds(), strings.TrimSpace(r.Stderr), strings.TrimSpace(counters))
		if r.ExitCode != 1 {
			t.Errorf("exit code %d, want 1\n%s", r.ExitCode, r.Summary())
		}
		if !strings.Contains(r.Stderr, "no STUN answer from "+EdgeSTUN) || !strings.Contains(r.Stderr, "UDP blocked") {
			t.Errorf("stderr does not say \"no STUN answer from %s … UDP blocked\":\n%s", EdgeSTUN, r.Summary())
		}
		if r.Elapsed > blockedBound {
			t.Errorf("took %v to give up, want < %v", r.Elapsed, blockedBound)
		}
		if r.Report == nil {
			t.Errorf("--json printed no report (%v)", r.JSONErr)
		} else if r.Report.RFC3489Name != "UDP blocked" || !strings.Contains(r.Report.Error, "UDP blocked") || r.Report.PublicAddress != "" {
			t.Errorf("report: rfc3489_name %q, error %q, public_address %q; want \"UDP blocked\", an error, none",
				r.Report.RFC3489Name, r.Report.Error, r.Report.PublicAddress)
		}
		if !strings.Contains(counters, "DROP") || strings.HasPrefix(strings.TrimSpace(counters), "0 ") {
			t.Errorf("the drop rule saw no packet: %s", counters)
		}
	})

	// sipedge's SIP port answers Binding requests (RFC 5626 keepalives)
	// but is no RFC 5780 server: the public address only.
	t.Run("sip-port", func(t *testing.T) {
		r := l.StartProbe(NSA, "sip-port", EdgeSIP)
		r.Wait(30 * time.Second)
		rows = append(rows, probeRow(NSA+" -> "+EdgeSIP+" (SIP port)", r))
		if r.ExitCode != 0 || r.Report == nil {
			t.Fatalf("probe of the SIP port failed (%v):\n%s", r.JSONErr, r.Summary())
		}
		rep := r.Report
		local := netip.MustParseAddrPort(rep.LocalAddress)
		if want := netip.AddrPortFrom(netip.MustParseAddr(ConeWANIP), local.Port()); rep.PublicAddress != want.String() {
			t.Errorf("public_address = %q, want %v", rep.PublicAddress, want)
		}
		if !rep.NATPresent || rep.Mapping != "unknown" || rep.Filtering != "unknown" || rep.Server.RFC5780 || rep.Server.OtherAddress != "" {
			t.Errorf("nat_present=%v mapping=%q filtering=%q rfc5780=%v other_address=%q; want true, unknown, unknown, false, none",
				rep.NATPresent, rep.Mapping, rep.Filtering, rep.Server.RFC5780, rep.Server.OtherAddress)
		}
		if r.Elapsed > probeBound {
			t.Errorf("probe took %v, want < %v", r.Elapsed, probeBound)
		}
		if t.Failed() {
			t.Logf("%s", r.Summary())
		}
		t.Logf("SIP port: %s in %.2f s; notes %q; advice %q", rowName(r), r.Elapsed.Seconds(), rep.Server.Notes, rep.Advice)
	})

	// The lifetime probe: the 20 s idle binding must be gone, 15 s alive.
	t.Run("lifetime", func(t *testing.T) {
		life.Wait(stunLifetimeMax + 30*time.Second)
		rows = append(rows, probeRow(NSA+" -> "+EdgeSTUN+" --lifetime --lifetime-max 30s", life))
		if life.ExitCode != 0 || life.Report == nil {
			t.Fatalf("lifetime probe failed (%v):\n%s", life.JSONErr, life.Summary())
		}
		checkProbe(t, l, life, probeWants[NSA], EdgeSTUN, false)
		bl := life.Report.BindingLifetime
		if bl == nil {
			t.Fatalf("binding_lifetime null with --lifetime:\n%s", life.Summary())
		}
		var steps []string
		for _, st := range bl.Steps {
			steps = append(steps, fmt.Sprintf("%gs:%s%s", st.IdleS, triString(st.Survived), noteOf(st.Note)))
		}
		t.Logf("binding_lifetime: status %s, seconds %g, lower %g, upper %g, max %g, steps %s, note %q; took %.1f s",
			bl.Status, bl.Seconds, bl.LowerS, bl.UpperS, bl.MaxS, strings.Join(steps, " "), bl.Note, life.Elapsed.Seconds())
		limit := stunUDPTimeout.Seconds()
		if bl.Status != "measured" || !(bl.LowerS < limit && limit <= bl.UpperS) {
			t.Errorf("binding lifetime %s in (%g, %g], want measured with lower < %g <= upper (the router's nf_conntrack_udp_timeout)",
				bl.Status, bl.LowerS, bl.UpperS, limit)
		}
		if bl.MaxS != stunLifetimeMax.Seconds() || bl.Seconds != bl.LowerS {
			t.Errorf("max_s %g, seconds %g; want %g and lower_s", bl.MaxS, bl.Seconds, stunLifetimeMax.Seconds())
		}
		if triString(life.Report.Server.ResponsePort) != "true" {
			t.Errorf("server.response_port = %s, want true (sipedge honours RESPONSE-PORT)", triString(life.Report.Server.ResponsePort))
		}
		want := fmt.Sprintf("keepalive interval must be under %g s", bl.LowerS)
		if !strings.Contains(strings.Join(life.Report.Advice, "\n"), want) {
			t.Errorf("advice does not say %q: %q", want, life.Report.Advice)
		}
		// Measured at the earliest 20 s after the bindings were made (and
		// it stops at the first expired binding, before 25 s and 30 s).
		if life.Elapsed < stunUDPTimeout || life.Elapsed > stunLifetimeMax+15*time.Second {
			t.Errorf("lifetime probe took %v, want between %v and %v", life.Elapsed, stunUDPTimeout, stunLifetimeMax+15*time.Second)
		}
		t.Logf("lifetime advice: %q", life.Report.Advice)
	})
	s.Alive(t)
	checkSTUNCounters(t, s)
	writeTable(t, l, probeTableHead, rows)
	t.Logf("TestLabProbe: probes done %.1f s after sipedge started", time.Since(start).Seconds())
}

func rowName(r *ProbeRun) string {
	if r.Report == nil {
		return "no report"
	}
	return fmt.Sprintf("%s (mapping %s, filtering %s, hairpinning %s, public %s)", r.Report.RFC3489Name, r.Report.Mapping,
		r.Report.Filtering, triString(r.Report.Hairpinning), r.Report.PublicAddress)
}

func durationS(r *ProbeRun) float64 {
	if r.Report == nil {
		return 0
	}
	return r.Report.DurationS
}

func advice(r *ProbeRun) []string {
	if r.Report == nil {
		return nil
	}
	return r.Report.Advice
}

func noteOf(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// stunWant is what Debian's classic client must report from one place.
type stunWant struct {
	typ       int  // StunOpen, StunPortRestricted, ...
	preserve  int  // 1: port kept, 0: not, -1: either (random port, may collide)
	noHairpin bool // 0x10 set
	words     string
}

var stunWants = map[string]stunWant{
	NSA:   {StunPortRestricted, 1, true, "Independent Mapping, Port Dependent Filter, preserves ports, no hairpin"},
	NSB:   {StunSymmetric, -1, true, "Dependent Mapping"},
	NSPub: {StunOpen, 1, false, "Open"},
}

func checkStunClient(t *testing.T, r *StunClientRun, want stunWant) {
	t.Helper()
	ok := r.Type() == want.typ && strings.HasPrefix(r.Primary, want.words) &&
		(r.Value&StunFlagNoHairpin != 0) == want.noHairpin &&
		(want.preserve < 0 || (r.Value&StunFlagPreservePort != 0) == (want.preserve == 1)) &&
		r.ExitCode == r.Value&0xFF
	if !ok {
		t.Errorf("stun %s from %s: %q, return value 0x%02x, exit %d; want type 0x%02x %q (preserve %d, no hairpin %v), exit = value\n%s",
			r.Server, r.NS, r.Primary, r.Value, r.ExitCode, want.typ, want.words, want.preserve, want.noHairpin, r.Output)
	}
}

func stunRow(where string, r *StunClientRun) string {
	return fmt.Sprintf("| %s | %s | 0x%02x | %d | %.2f s |", where, r.Primary, r.Value, r.ExitCode, r.Elapsed.Seconds())
}

// TestLabSTUNInterop: interop with Debian's classic RFC 3489 STUN programs
// (Vovida 0.97). (a) Its client `stun` from se-a, se-b and se-pub against
// sipedge's STUN server (which must answer classic requests with
// MAPPED-ADDRESS, CHANGED-ADDRESS and honour CHANGE-REQUEST) must name the
// NAT the way TestLabProbe's table does. (b) Its server `stund`, on a new
// host se-stun with two public addresses, probed by `sipedge probe --json`
// from the same three places, must give the same mapping and filtering as
// sipedge's own server; `stun` against `stund` is the reference.
func TestLabSTUNInterop(t *testing.T) {
	for _, tool := range []string{"stun", "stund"} {
		if !lookPath(tool) {
			t.Skipf("lab: %s not found (Debian packages stun-client and stun-server)", tool)
		}
	}
	l := New(t, Options{Capture: true})
	s := l.StartSipedge(EdgeConfig{Extra: STUNConfig})
	stunSockets(t, l)
	if err := l.AddSTUNHost(); err != nil {
		t.Fatal(err)
	}
	l.Capture(NSSTUN, IfPublic, "")
	stund, err := l.StartStund(NSSTUN, STUNHostIP, STUNHostIP2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stund output tail:\n%s\n%s", tailFile(stund.Stdout, 40), stund.Tail(20))
		}
	})
	order := []string{NSA, NSB, NSPub}
	stundAddr := STUNHostIP + ":3478"

	// The classic client, against sipedge and against stund: one
	// namespace at a time per server, the three namespaces at once.
	var stunRows []string
	for _, srv := range []struct{ label, addr string }{{"sipedge", EdgeIP}, {"stund", STUNHostIP}} {
		res := map[string]*StunClientRun{}
		errs := map[string]error{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, ns := range order {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := l.StunClient(ns, srv.label, srv.addr)
				mu.Lock()
				res[ns], errs[ns] = r, err
				mu.Unlock()
			}()
		}
		wg.Wait()
		for _, ns := range order {
			t.Run("stun-client/"+srv.label+"/"+ns, func(t *testing.T) {
				r := res[ns]
				if errs[ns] != nil {
					t.Fatal(errs[ns])
				}
				stunRows = append(stunRows, stunRow("`stun "+srv.addr+"` in "+ns, r))
				t.Logf("stun %s from %s: %q, value 0x%02x, exit %d, %.2f s", srv.addr, ns, r.Primary, r.Value, r.ExitCode, r.Elapsed.Seconds())
				checkStunClient(t, r, stunWants[ns])
				checkParsed(t, r)
			})
		}
	}

	// The classic client's RTP/RTCP socket pair (test -1) checks that the
	// answers parse: unlike the NAT type test it gives up on an answer its
	// parser rejects. From se-pub the mapped ports are the local ones, so
	// a pair (even, even+1) is always found when the answers parse.
	for _, srv := range []struct{ label, addr string }{{"stund", STUNHostIP}, {"sipedge", EdgeIP}} {
		t.Run("stun-client-pair/"+srv.label, func(t *testing.T) {
			r, err := l.StunClient(NSPub, srv.label+"-pair", srv.addr, "-1")
			if err != nil {
				t.Fatal(err)
			}
			got := regexp.MustCompile(`Got port pair at (\d+)`).FindStringSubmatch(r.Output)
			stunRows = append(stunRows, fmt.Sprintf("| `stun %s -1` in %s (socket pair) | %s | - | %d | %.2f s |",
				srv.addr, NSPub, pairVerdict(got, r.Output), r.ExitCode, r.Elapsed.Seconds()))
			switch {
			case got != nil:
				t.Logf("stun %s -1 from se-pub: port pair at %s", srv.addr, got[1])
			default:
				t.Errorf("stun %s -1 from se-pub: no port pair (exit %d):\n%s", srv.addr, r.ExitCode, r.Output)
			}
		})
	}

	// sipedge probe against stund (a classic RFC 3489 server).
	var rows []string
	{
		runs := l.probeAll(order, "stund", stundAddr)
		for _, ns := range order {
			r := runs[ns]
			rows = append(rows, probeRow(ns+" -> stund "+stundAddr+": sipedge probe", r))
			t.Run("probe-stund/"+ns, func(t *testing.T) {
				checkProbe(t, l, r, probeWants[ns], stundAddr, true)
				if r.Report != nil {
					checkStundServer(t, r.Report, probeWants[ns].nat)
				}
				if r.Elapsed > probeBound {
					t.Errorf("probe took %v, want < %v", r.Elapsed, probeBound)
				}
			})
		}
	}
	s.Alive(t)
	checkSTUNCounters(t, s)
	if stund.Exited() {
		t.Errorf("stund exited (code %d)", stund.ExitCode())
	}
	writeTable(t, l, "| client run | verdict (Primary:) | return value | exit code | time |\n|---|---|---|---|---|", stunRows)
	writeTable(t, l, probeTableHead, rows)
}

// probeAll runs `sipedge probe --json server` in every namespace of
// order at once and waits for all of them.
func (l *Lab) probeAll(order []string, label, server string) map[string]*ProbeRun {
	runs := map[string]*ProbeRun{}
	for _, ns := range order {
		runs[ns] = l.StartProbe(ns, label, server)
	}
	var wg sync.WaitGroup
	for _, ns := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[ns].Wait(30 * time.Second)
		}()
	}
	wg.Wait()
	return runs
}

// checkStundServer checks what the probe learnt about stund, an RFC 3489
// server: CHANGED-ADDRESS (the other IP and port) taken as the alternate
// address, so the RFC 5780 tests ran.
func checkStundServer(t *testing.T, rep *ProbeReport, nat bool) {
	t.Helper()
	srv := rep.Server
	t.Logf("server: software %q, other_address %q, response_origin %q, rfc5780 %v, classic_rfc3489 %v, change_request %s, notes %q; rewriting %s (%s)",
		srv.Software, srv.OtherAddress, srv.ResponseOrigin, srv.RFC5780, srv.ClassicRFC3489, triString(srv.ChangeRequest), srv.Notes,
		triString(rep.Rewriting.Detected), rep.Rewriting.Evidence)
	if !srv.RFC5780 || srv.OtherAddress != STUNHostIP2+":3479" {
		t.Errorf("server: rfc5780 %v, other_address %q; want true, %s:3479 (stund's CHANGED-ADDRESS)", srv.RFC5780, srv.OtherAddress, STUNHostIP2)
	}
}

// checkParsed fails t when the classic client's parser rejected
// an attribute in sipedge's answers ("Bad length string"): RFC 3489 wants
// attribute lengths in multiples of 4, and sipedge once sent SOFTWARE
// "sipedge" (7 bytes) to classic clients. The NAT type test would still
// pass (the client ignores the parse result), the socket pair test not.
func checkParsed(t *testing.T, r *StunClientRun) {
	t.Helper()
	if n := strings.Count(r.Output, "Bad length string"); n > 0 {
		t.Errorf("the classic client could not parse sipedge's answers (%d× \"Bad length string\"):\n%s", n, r.Output)
	}
}

func pairVerdict(got []string, out string) string {
	switch {
	case got != nil:
		return "Got port pair at " + got[1]
	case strings.Contains(out, "FAILED"):
		return "Opened a stun socket pair FAILED"
	}
	return "no verdict"
}

// checkSTUNCounters logs sipedge's STUN counters and fails t if the server
// answered nothing or rate-limited anyone (the lab's probes stay far under
// the default 20/s, burst 40 per source IP, so a limited request would
// have distorted a result).
func checkSTUNCounters(t *testing.T, s *Sipedge) {
	t.Helper()
	c, err := s.STUNCounters()
	if err != nil {
		t.Errorf("STUN counters: %v", err)
		return
	}
	t.Logf("sipedge STUN counters: %v", c)
	if c["answered"] == 0 || c["rate_limited"] != 0 {
		t.Errorf("sipedge's STUN server answered %d requests and rate-limited %d; want some, and none", c["answered"], c["rate_limited"])
	}
}
