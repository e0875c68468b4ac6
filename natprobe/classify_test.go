package natprobe

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sipedge/sipedge/stun"
)

var behaviours = []Behaviour{EndpointIndependent, AddressDependent, AddressAndPortDependent, Unknown}

// The RFC 3489 name of every combination of answered, NAT, mapping and
// filtering.
func TestRFC3489NameTable(t *testing.T) {
	ei, ad, apd, un := EndpointIndependent, AddressDependent, AddressAndPortDependent, Unknown
	type row struct {
		nat                bool
		mapping, filtering Behaviour
		want               string
	}
	rows := []row{
		// No NAT: only the filtering matters.
		{false, ei, ei, NameOpenInternet}, {false, ei, ad, NameSymmetricFirewall}, {false, ei, apd, NameSymmetricFirewall}, {false, ei, un, NameUnknown},
		{false, ad, ei, NameOpenInternet}, {false, ad, ad, NameSymmetricFirewall}, {false, ad, apd, NameSymmetricFirewall}, {false, ad, un, NameUnknown},
		{false, apd, ei, NameOpenInternet}, {false, apd, ad, NameSymmetricFirewall}, {false, apd, apd, NameSymmetricFirewall}, {false, apd, un, NameUnknown},
		{false, un, ei, NameOpenInternet}, {false, un, ad, NameSymmetricFirewall}, {false, un, apd, NameSymmetricFirewall}, {false, un, un, NameUnknown},
		// NAT: cones need endpoint-independent mapping.
		{true, ei, ei, NameFullCone}, {true, ei, ad, NameRestrictedCone}, {true, ei, apd, NamePortRestricted}, {true, ei, un, NameUnknown},
		{true, ad, ei, NameSymmetric}, {true, ad, ad, NameSymmetric}, {true, ad, apd, NameSymmetric}, {true, ad, un, NameSymmetric},
		{true, apd, ei, NameSymmetric}, {true, apd, ad, NameSymmetric}, {true, apd, apd, NameSymmetric}, {true, apd, un, NameSymmetric},
		{true, un, ei, NameUnknown}, {true, un, ad, NameUnknown}, {true, un, apd, NameUnknown}, {true, un, un, NameUnknown},
	}
	if len(rows) != 2*4*4 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		o := Outcomes{Answered: true, NAT: r.nat, Mapping: r.mapping, Filtering: r.filtering, RFC5780: true}
		if got := RFC3489Name(o); got != r.want {
			t.Errorf("nat=%v mapping=%s filtering=%s: %q, want %q", r.nat, r.mapping, r.filtering, got, r.want)
		}
		o.Answered = false
		if got := RFC3489Name(o); got != NameUDPBlocked {
			t.Errorf("not answered: %q", got)
		}
	}
}

var lifetimes = []*Lifetime{
	nil,
	{Status: LifetimeMeasured, Seconds: 25, LowerS: 25, UpperS: 30, MaxS: 120},
	{Status: LifetimeMeasured, Seconds: 45, LowerS: 45, UpperS: 60, MaxS: 120},
	{Status: LifetimeMeasured, Seconds: 0, LowerS: 0, UpperS: 5, MaxS: 120},
	{Status: LifetimeLongerThan, Seconds: 120, LowerS: 120, MaxS: 120},
	{Status: LifetimeLongerThan, Seconds: 10, LowerS: 10, MaxS: 10},
	{Status: LifetimeUnsupported, MaxS: 120},
	{Status: LifetimeUnknown, MaxS: 120, Note: "no answer"},
}

// Properties of the advice over every combination of outcomes.
func TestAdviceAllCombinations(t *testing.T) {
	n := 0
	for _, answered := range []bool{false, true} {
		for _, nat := range []bool{false, true} {
			for _, rfc5780 := range []bool{false, true} {
				for _, m := range behaviours {
					for _, f := range behaviours {
						for _, rw := range []Tri{TriUnknown, TriNo, TriYes} {
							for _, hp := range []Tri{TriUnknown, TriNo, TriYes} {
								for _, l := range lifetimes {
									n++
									checkAdvice(t, Outcomes{
										Answered: answered, NAT: nat, RFC5780: rfc5780, Mapping: m, Filtering: f,
										Rewriting: rw, MappedAddress: "192.168.1.2:5060", XORMappedAddress: "203.0.113.9:40000",
										Hairpinning: hp, Lifetime: l,
									})
								}
							}
						}
					}
				}
			}
		}
	}
	if n != 2*2*2*4*4*3*3*len(lifetimes) {
		t.Fatal(n)
	}
}

func checkAdvice(t *testing.T, o Outcomes) {
	t.Helper()
	c := Classify(o)
	fail := func(why string) {
		t.Helper()
		b, _ := json.Marshal(o)
		t.Errorf("%s: %s\n%s\n%q", why, b, c.RFC3489Name, c.Advice)
	}
	if c.RFC3489Name != RFC3489Name(o) || !slices.Equal(c.Advice, Advice(o)) || !slices.Equal(c.Advice, Classify(o).Advice) {
		fail("not a pure function")
	}
	has := func(sub string) bool {
		for _, a := range c.Advice {
			if strings.Contains(a, sub) {
				return true
			}
		}
		return false
	}
	if len(c.Advice) == 0 {
		fail("no advice")
	}
	seen := map[string]bool{}
	for _, a := range c.Advice {
		if strings.TrimSpace(a) == "" || seen[a] || strings.HasSuffix(a, ".") {
			fail("empty, duplicate or full-stopped advice line")
		}
		seen[a] = true
	}
	if !o.Answered {
		if len(c.Advice) != 1 || !has("UDP is blocked") || c.RFC3489Name != NameUDPBlocked {
			fail("no answer must give exactly the UDP advice")
		}
		return
	}
	if (o.Rewriting == TriYes) != has("disable the router's SIP ALG (SIP helper / nf_conntrack_sip)") {
		fail("ALG advice iff rewriting")
	}
	if o.Rewriting == TriYes && (!has(o.MappedAddress) || !has(o.XORMappedAddress)) {
		fail("ALG advice without evidence")
	}
	symmetric := o.NAT && (o.Mapping == AddressDependent || o.Mapping == AddressAndPortDependent)
	if symmetric != has("phones need the relay (media = \"nat\" or \"always\"); STUN alone will not give them a usable address") {
		fail("relay advice iff symmetric NAT")
	}
	if symmetric != (c.RFC3489Name == NameSymmetric) {
		fail("symmetric name iff symmetric mapping behind a NAT")
	}
	if (o.NAT && o.Hairpinning == TriNo) != has("cannot reach each other via the public address: relay needed for calls between them") {
		fail("hairpinning advice iff NAT without hairpinning")
	}
	if (o.NAT && o.Filtering == AddressAndPortDependent) != has("unsolicited packets are dropped") {
		fail("filtering advice iff port-dependent filtering behind a NAT")
	}
	if !o.NAT != has("no NAT") {
		fail("no-NAT advice iff no NAT")
	}
	firewall := !o.NAT && (o.Filtering == AddressDependent || o.Filtering == AddressAndPortDependent)
	if firewall != has("stateful firewall") {
		fail("firewall advice iff filtering without NAT")
	}
	if !o.RFC5780 != has("does not support RFC 5780") {
		fail("RFC 5780 note iff no RFC 5780")
	}
	l := o.Lifetime
	held := o.NAT || firewall
	if (held && l != nil) != (has("lifetime") || has("idle bindings") || has("RESPONSE-PORT")) {
		fail("lifetime advice iff measured and something holds state")
	}
	if held && l != nil && l.Status == LifetimeMeasured && l.LowerS > 0 && !has("keepalive interval must be under "+secs(l.LowerS)+" s") {
		fail("no keepalive bound")
	}
	if held && l != nil && l.Status == LifetimeMeasured && l.LowerS == 0 && !has("SIP over TCP or TLS") {
		fail("no TCP advice for a very short lifetime")
	}
}

// The advice lines quoted in the issue, word for word where it gives them.
func TestAdviceText(t *testing.T) {
	sym := Advice(Outcomes{Answered: true, NAT: true, RFC5780: true, Mapping: AddressAndPortDependent, Filtering: AddressAndPortDependent, Hairpinning: TriNo, Rewriting: TriNo})
	want := []string{
		`symmetric NAT (address-and-port-dependent mapping): phones need the relay (media = "nat" or "always"); STUN alone will not give them a usable address`,
		"address-and-port-dependent filtering: unsolicited packets are dropped, so INVITEs reach a phone only from the address and port it registered to, and only while keepalives hold the binding open",
		`no hairpinning: phones behind this NAT cannot reach each other via the public address: relay needed for calls between them (media = "nat" relays them)`,
	}
	if !slices.Equal(sym, want) {
		t.Errorf("symmetric advice:\n%q\nwant\n%q", sym, want)
	}
	for _, tc := range []struct {
		l    Lifetime
		want string
	}{
		{Lifetime{Status: LifetimeMeasured, LowerS: 25, UpperS: 30}, `binding lifetime between 25 and 30 s: keepalive interval must be under 25 s (suggest 20 s: [keepalive] interval = "20s"; sipedge's default of 25 s is too long)`},
		{Lifetime{Status: LifetimeMeasured, LowerS: 30, UpperS: 45}, `binding lifetime between 30 and 45 s: keepalive interval must be under 30 s; sipedge's default of 25 s is fine`},
		{Lifetime{Status: LifetimeMeasured, LowerS: 0, UpperS: 5}, `binding lifetime under 5 s: too short for UDP keepalives; use SIP over TCP or TLS for phones behind this NAT`},
		{Lifetime{Status: LifetimeMeasured, LowerS: 2.5, UpperS: 3}, `binding lifetime between 2.5 and 3 s: keepalive interval must be under 2.5 s (suggest 2 s: [keepalive] interval = "2s"; sipedge's default of 25 s is too long)`},
		{Lifetime{Status: LifetimeLongerThan, LowerS: 120}, `idle bindings survive more than 120 s (the longest tested): sipedge's default keepalive of 25 s is ample`},
		{Lifetime{Status: LifetimeLongerThan, LowerS: 20}, `idle bindings survive at least 20 s (the longest tested): probe with a longer --lifetime-max to check sipedge's default keepalive of 25 s`},
		{Lifetime{Status: LifetimeUnsupported}, `the server does not support RESPONSE-PORT, so the binding lifetime was not measured; keep sipedge's default keepalive of 25 s (under the 30 s UDP timeout of many NATs)`},
		{Lifetime{Status: LifetimeUnknown, Note: "x"}, `the binding lifetime could not be measured (x)`},
	} {
		if got := lifetimeAdvice(&tc.l); got != tc.want {
			t.Errorf("%+v:\n%s\nwant\n%s", tc.l, got, tc.want)
		}
	}
	alg := Advice(Outcomes{Answered: true, NAT: true, RFC5780: true, Mapping: EndpointIndependent, Filtering: EndpointIndependent,
		Rewriting: TriYes, MappedAddress: "192.168.1.2:5060", XORMappedAddress: "203.0.113.9:5060"})
	if !strings.HasPrefix(alg[0], "a device rewrites addresses inside packets (MAPPED-ADDRESS 192.168.1.2:5060, XOR-MAPPED-ADDRESS 203.0.113.9:5060), most likely a SIP ALG: disable the router's SIP ALG (SIP helper / nf_conntrack_sip)") {
		t.Errorf("ALG advice first: %q", alg)
	}
}

func TestSuggestKeepalive(t *testing.T) {
	for _, tc := range []struct {
		lower float64
		want  int
	}{{0, 1}, {1, 1}, {2, 1}, {5, 4}, {10, 8}, {15, 12}, {20, 16}, {25, 20}, {30, 24}, {120, 96}} {
		if got := SuggestKeepalive(tc.lower); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.lower, got, tc.want)
		}
	}
}

func TestSummarizeLifetime(t *testing.T) {
	step := func(s float64, tr Tri) LifetimeStep { return LifetimeStep{IdleS: s, Survived: tr} }
	for _, tc := range []struct {
		name         string
		steps        []LifetimeStep
		status       string
		lower, upper float64
		note         string
	}{
		{"measured", []LifetimeStep{step(5, TriYes), step(10, TriYes), step(15, TriNo), step(20, TriUnknown)}, LifetimeMeasured, 10, 15, ""},
		{"under the shortest", []LifetimeStep{step(5, TriNo), step(10, TriUnknown)}, LifetimeMeasured, 0, 5, ""},
		{"all survived", []LifetimeStep{step(5, TriYes), step(10, TriYes)}, LifetimeLongerThan, 10, 0, ""},
		{"nothing tested", []LifetimeStep{step(5, TriUnknown)}, LifetimeUnknown, 0, 0, "no idle time could be tested"},
		{"inconsistent", []LifetimeStep{step(5, TriNo), step(10, TriYes), step(15, TriNo)}, LifetimeMeasured, 10, 15, "inconsistent"},
		{"inconsistent, no upper", []LifetimeStep{step(5, TriNo), step(10, TriYes)}, LifetimeLongerThan, 10, 0, "inconsistent"},
	} {
		l := &Lifetime{Steps: tc.steps}
		summarizeLifetime(l)
		if l.Status != tc.status || l.LowerS != tc.lower || l.UpperS != tc.upper || l.Seconds != tc.lower && l.Status != LifetimeUnknown ||
			!strings.Contains(l.Note, tc.note) || (tc.note == "") != (l.Note == "") {
			t.Errorf("%s: %+v", tc.name, l)
		}
	}
}

func TestDecideMapping(t *testing.T) {
	srv := netip.MustParseAddrPort("198.51.100.1:3478")
	other := netip.MustParseAddrPort("198.51.100.2:3479")
	m1 := netip.MustParseAddrPort("203.0.113.5:40000")
	m2 := netip.MustParseAddrPort("203.0.113.5:40001")
	m3 := netip.MustParseAddrPort("203.0.113.5:40002")
	ans := func(m netip.AddrPort) exchange { return exchange{res: resultWith(m)} }
	lost := exchange{err: errTimeoutForTest}
	for _, tc := range []struct {
		name  string
		other netip.AddrPort
		ex    [2]exchange
		want  Behaviour
	}{
		{"same everywhere", other, [2]exchange{ans(m1), ans(m1)}, EndpointIndependent},
		{"same for the alternate IP, III lost", other, [2]exchange{ans(m1), lost}, EndpointIndependent},
		{"new per IP", other, [2]exchange{ans(m2), ans(m2)}, AddressDependent},
		{"new per address", other, [2]exchange{ans(m2), ans(m3)}, AddressAndPortDependent},
		{"II lost", other, [2]exchange{lost, ans(m1)}, Unknown},
		{"III lost after a change", other, [2]exchange{ans(m2), lost}, Unknown},
		{"one IP, same", netip.MustParseAddrPort("198.51.100.1:3479"), [2]exchange{{err: errSkipped}, ans(m1)}, Unknown},
		{"one IP, new", netip.MustParseAddrPort("198.51.100.1:3479"), [2]exchange{{err: errSkipped}, ans(m3)}, AddressAndPortDependent},
		{"one port, same", netip.MustParseAddrPort("198.51.100.2:3478"), [2]exchange{ans(m1), {err: errSkipped}}, EndpointIndependent},
		{"one port, new", netip.MustParseAddrPort("198.51.100.2:3478"), [2]exchange{ans(m2), {err: errSkipped}}, Unknown},
	} {
		if got, _ := decideMapping(srv, tc.other, m1, tc.ex); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestDecideFiltering(t *testing.T) {
	srv := netip.MustParseAddrPort("198.51.100.1:3478")
	other := netip.MustParseAddrPort("198.51.100.2:3479")
	from := func(s string) exchange { return exchange{res: resultFrom(netip.MustParseAddrPort(s))} }
	lost := exchange{err: errTimeoutForTest}
	e420 := exchange{err: errResponse420}
	skipped := exchange{err: errSkipped}
	for _, tc := range []struct {
		name     string
		other    netip.AddrPort
		ex       [2]exchange
		altAlive bool
		want     Behaviour
		change   Tri
	}{
		{"both in", other, [2]exchange{from("198.51.100.2:3479"), from("198.51.100.1:3479")}, true, EndpointIndependent, TriYes},
		{"port change in", other, [2]exchange{lost, from("198.51.100.1:3479")}, true, AddressDependent, TriYes},
		{"nothing in", other, [2]exchange{lost, lost}, true, AddressAndPortDependent, TriUnknown},
		{"nothing in, alternate never answered", other, [2]exchange{lost, lost}, false, Unknown, TriUnknown},
		{"answered from the primary", other, [2]exchange{from("198.51.100.1:3478"), from("198.51.100.1:3478")}, true, Unknown, TriNo},
		{"port-change answer from the wrong IP", other, [2]exchange{lost, from("198.51.100.2:3479")}, true, Unknown, TriNo},
		{"420", other, [2]exchange{e420, e420}, true, Unknown, TriNo},
		{"one IP, port change in", netip.MustParseAddrPort("198.51.100.1:3479"), [2]exchange{skipped, from("198.51.100.1:3479")}, true, Unknown, TriYes},
		{"one IP, nothing in", netip.MustParseAddrPort("198.51.100.1:3479"), [2]exchange{skipped, lost}, true, AddressAndPortDependent, TriUnknown},
		{"one port, IP change in", netip.MustParseAddrPort("198.51.100.2:3478"), [2]exchange{from("198.51.100.2:3478"), skipped}, true, Unknown, TriYes},
		{"one port, nothing in", netip.MustParseAddrPort("198.51.100.2:3478"), [2]exchange{lost, skipped}, true, Unknown, TriUnknown},
	} {
		got, change, _ := decideFiltering(srv, tc.other, tc.ex, tc.altAlive)
		if got != tc.want || change != tc.change {
			t.Errorf("%s: %s %v, want %s %v", tc.name, got, change, tc.want, tc.change)
		}
	}
}

func TestTriJSON(t *testing.T) {
	for _, tr := range []Tri{TriUnknown, TriNo, TriYes} {
		b, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		var back Tri = 42
		if err := json.Unmarshal(b, &back); err != nil || back != tr {
			t.Errorf("%v -> %s -> %v %v", tr, b, back, err)
		}
	}
	if b, _ := json.Marshal(struct{ H Tri }{TriUnknown}); string(b) != `{"H":null}` {
		t.Errorf("%s", b)
	}
	var x Tri
	if json.Unmarshal([]byte(`"yes"`), &x) == nil {
		t.Error("accepted a string")
	}
}

var (
	errTimeoutForTest = fmt.Errorf("%w from 198.51.100.1:3478 after 4 transmissions", stun.ErrTimeout)
	errResponse420    = &stun.ErrorResponse{Code: 420, Reason: "Unknown Attribute"}
)

func resultWith(m netip.AddrPort) stun.Result { return stun.Result{Mapped: m, XORMapped: m} }

func resultFrom(from netip.AddrPort) stun.Result {
	m := netip.MustParseAddrPort("203.0.113.5:40000")
	return stun.Result{Mapped: m, XORMapped: m, From: from}
}
