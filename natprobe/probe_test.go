package natprobe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/natprobe/natsim"
	"github.com/sipedge/sipedge/stun"
)

// fast is the retransmission schedule of the tests: a missing answer
// costs 0.1 + 0.2 + 0.4 s.
func fast(c *Config) { c.RTO, c.Tries = 100*time.Millisecond, 3 }

func startSim(t *testing.T, o natsim.Options) *natsim.Server {
	t.Helper()
	s, err := natsim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func runProbe(t *testing.T, srv *natsim.Server, mod func(*Config)) (*Report, error) {
	t.Helper()
	cfg := Config{Server: srv.Addr().String(), Progress: func(s string) { t.Log("progress:", s) }}
	fast(&cfg)
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return Probe(ctx, cfg)
}

func hasAdvice(r *Report, sub string) bool {
	for _, a := range r.Advice {
		if strings.Contains(a, sub) {
			return true
		}
	}
	return false
}

func findTest(r *Report, name string) *Test {
	for i := range r.Tests {
		if r.Tests[i].Name == name {
			return &r.Tests[i]
		}
	}
	return nil
}

// Every simulated NAT type must come out as itself.
func TestProbeScenarios(t *testing.T) {
	t.Parallel()
	ei, ad, apd := natsim.EndpointIndependent, natsim.AddressDependent, natsim.AddressAndPortDependent
	cases := []struct {
		name      string
		o         natsim.Options
		nat       bool
		mapping   Behaviour
		filtering Behaviour
		rfc3489   string
		rewriting Tri
		hairpin   Tri
		advice    []string // substrings that must appear
		noAdvice  []string // substrings that must not
	}{
		{
			name: "no NAT", o: natsim.Options{Filtering: ei},
			mapping: EndpointIndependent, filtering: EndpointIndependent, rfc3489: NameOpenInternet,
			rewriting: TriNo, hairpin: TriUnknown,
			advice: []string{"no NAT: this host's address is public"}, noAdvice: []string{"relay", "ALG"},
		},
		{
			name: "no NAT behind a stateful firewall", o: natsim.Options{Filtering: apd},
			mapping: EndpointIndependent, filtering: AddressAndPortDependent, rfc3489: NameSymmetricFirewall,
			rewriting: TriNo, hairpin: TriUnknown,
			advice: []string{"stateful firewall", `nat = "force"`},
		},
		{
			name: "full cone", o: natsim.Options{NAT: true, Mapping: ei, Filtering: ei, Hairpin: true},
			nat: true, mapping: EndpointIndependent, filtering: EndpointIndependent, rfc3489: NameFullCone,
			rewriting: TriNo, hairpin: TriYes,
			advice: []string{"endpoint-independent filtering", "hairpinning works"}, noAdvice: []string{"STUN alone"},
		},
		{
			name: "restricted cone", o: natsim.Options{NAT: true, Mapping: ei, Filtering: ad},
			nat: true, mapping: EndpointIndependent, filtering: AddressDependent, rfc3489: NameRestrictedCone,
			rewriting: TriNo, hairpin: TriNo,
			advice: []string{"address-dependent filtering", "cannot reach each other"},
		},
		{
			name: "port-restricted cone", o: natsim.Options{NAT: true, Mapping: ei, Filtering: apd},
			nat: true, mapping: EndpointIndependent, filtering: AddressAndPortDependent, rfc3489: NamePortRestricted,
			rewriting: TriNo, hairpin: TriNo,
			advice: []string{"unsolicited packets are dropped", "relay needed for calls between them"},
		},
		{
			// The opening packet from the first socket is what lets the
			// hairpinned packet through a filtering NAT.
			name: "port-restricted cone with hairpinning", o: natsim.Options{NAT: true, Mapping: ei, Filtering: apd, Hairpin: true},
			nat: true, mapping: EndpointIndependent, filtering: AddressAndPortDependent, rfc3489: NamePortRestricted,
			rewriting: TriNo, hairpin: TriYes,
		},
		{
			name: "symmetric", o: natsim.Options{NAT: true, Mapping: apd, Filtering: apd, Hairpin: true},
			nat: true, mapping: AddressAndPortDependent, filtering: AddressAndPortDependent, rfc3489: NameSymmetric,
			// Hairpinning is on, but the opening packet leaves through
			// another binding than the one probed: no way in.
			rewriting: TriNo, hairpin: TriNo,
			advice: []string{"symmetric NAT (address-and-port-dependent mapping): phones need the relay", "STUN alone will not give them a usable address"},
		},
		{
			name: "address-dependent mapping", o: natsim.Options{NAT: true, Mapping: ad, Filtering: ad},
			nat: true, mapping: AddressDependent, filtering: AddressDependent, rfc3489: NameSymmetric,
			rewriting: TriNo, hairpin: TriNo,
			advice: []string{"symmetric NAT (address-dependent mapping)"},
		},
		{
			name: "symmetric mapping, open filtering", o: natsim.Options{NAT: true, Mapping: apd, Filtering: ei},
			nat: true, mapping: AddressAndPortDependent, filtering: EndpointIndependent, rfc3489: NameSymmetric,
			rewriting: TriNo, hairpin: TriNo,
		},
		{
			name: "ALG", o: natsim.Options{NAT: true, Mapping: ei, Filtering: ei, ALG: true},
			nat: true, mapping: EndpointIndependent, filtering: EndpointIndependent, rfc3489: NameFullCone,
			rewriting: TriYes, hairpin: TriNo,
			advice: []string{"disable the router's SIP ALG (SIP helper / nf_conntrack_sip)"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startSim(t, tc.o)
			start := time.Now()
			r, err := runProbe(t, srv, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("probe took %v", d)
			}
			t.Log(r)
			if r.NATPresent != tc.nat {
				t.Errorf("nat_present %v, want %v", r.NATPresent, tc.nat)
			}
			pub := netip.MustParseAddrPort(r.PublicAddress)
			if tc.nat && pub.Addr() != srv.PublicIP() {
				t.Errorf("public address %v, want one on %v", pub, srv.PublicIP())
			}
			if !tc.nat && r.PublicAddress != r.LocalAddress {
				t.Errorf("public address %v != local %v without NAT", r.PublicAddress, r.LocalAddress)
			}
			if r.Mapping != tc.mapping || r.Filtering != tc.filtering {
				t.Errorf("mapping %s filtering %s, want %s %s", r.Mapping, r.Filtering, tc.mapping, tc.filtering)
			}
			if r.RFC3489Name != tc.rfc3489 {
				t.Errorf("rfc3489 %q, want %q", r.RFC3489Name, tc.rfc3489)
			}
			if r.Rewriting.Detected != tc.rewriting {
				t.Errorf("rewriting %v (%s), want %v", r.Rewriting.Detected, r.Rewriting.Evidence, tc.rewriting)
			}
			if r.Hairpinning != tc.hairpin {
				t.Errorf("hairpinning %v, want %v", r.Hairpinning, tc.hairpin)
			}
			if !r.Server.RFC5780 || r.Server.OtherAddress != srv.OtherAddr().String() {
				t.Errorf("server %+v", r.Server)
			}
			// Whether CHANGE-REQUEST works is only seen when an answer gets in.
			if wantCR := TriOf(tc.filtering != AddressAndPortDependent); wantCR == TriYes && r.Server.ChangeRequest != TriYes ||
				wantCR == TriNo && r.Server.ChangeRequest != TriUnknown {
				t.Errorf("change_request %v", r.Server.ChangeRequest)
			}
			if r.BindingLifetime != nil {
				t.Errorf("lifetime measured without asking")
			}
			for _, a := range tc.advice {
				if !hasAdvice(r, a) {
					t.Errorf("advice lacks %q: %q", a, r.Advice)
				}
			}
			for _, a := range tc.noAdvice {
				if hasAdvice(r, a) {
					t.Errorf("advice has %q: %q", a, r.Advice)
				}
			}
			for _, name := range []string{"binding", "mapping-2", "mapping-3", "filtering-2", "filtering-3", "hairpin"} {
				if findTest(r, name) == nil {
					t.Errorf("no test %q", name)
				}
			}
		})
	}
}

func TestProbeALGEvidence(t *testing.T) {
	t.Parallel()
	srv := startSim(t, natsim.Options{NAT: true, ALG: true})
	r, err := runProbe(t, srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rewriting.MappedAddress != r.LocalAddress {
		t.Errorf("MAPPED-ADDRESS %s, want the rewritten local %s", r.Rewriting.MappedAddress, r.LocalAddress)
	}
	if r.Rewriting.XORMappedAddress != r.PublicAddress {
		t.Errorf("XOR-MAPPED-ADDRESS %s, public %s", r.Rewriting.XORMappedAddress, r.PublicAddress)
	}
	if !strings.Contains(r.Rewriting.Evidence, "rewritten to this host's own address") {
		t.Errorf("evidence %q", r.Rewriting.Evidence)
	}
	// The public address comes from XOR-MAPPED-ADDRESS, not the rewritten one.
	if !r.NATPresent {
		t.Error("NAT not seen through the rewriting")
	}
}

func TestProbeBasicServer(t *testing.T) {
	t.Parallel()
	srv := startSim(t, natsim.Options{Kind: natsim.Basic, NAT: true, Filtering: natsim.AddressAndPortDependent})
	r, err := runProbe(t, srv, func(c *Config) { c.Lifetime, c.LifetimeMax = true, 2*time.Second })
	if err != nil {
		t.Fatal(err)
	}
	if r.Server.RFC5780 || r.Mapping != Unknown || r.Filtering != Unknown || r.RFC3489Name != NameUnknown {
		t.Errorf("server %+v mapping %s filtering %s name %s", r.Server, r.Mapping, r.Filtering, r.RFC3489Name)
	}
	if !r.NATPresent || r.Rewriting.Detected != TriNo {
		t.Errorf("nat %v rewriting %v", r.NATPresent, r.Rewriting.Detected)
	}
	if !hasAdvice(r, "does not support RFC 5780") {
		t.Errorf("advice %q", r.Advice)
	}
	if l := r.BindingLifetime; l == nil || l.Status != LifetimeUnsupported || r.Server.ResponsePort != TriNo {
		t.Errorf("lifetime %+v response_port %v", l, r.Server.ResponsePort)
	}
	if findTest(r, "mapping-2") != nil || findTest(r, "filtering-2") != nil {
		t.Error("RFC 5780 tests ran against a server without OTHER-ADDRESS")
	}
}

func TestProbeClassicServer(t *testing.T) {
	t.Parallel()
	srv := startSim(t, natsim.Options{Kind: natsim.Classic, NAT: true, Mapping: natsim.AddressDependent, Filtering: natsim.AddressDependent})
	r, err := runProbe(t, srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Server.RFC5780 || !r.Server.ClassicRFC3489 || r.Server.OtherAddress != srv.OtherAddr().String() {
		t.Errorf("server %+v", r.Server)
	}
	if r.Mapping != AddressDependent || r.Filtering != AddressDependent || r.RFC3489Name != NameSymmetric {
		t.Errorf("mapping %s filtering %s name %s", r.Mapping, r.Filtering, r.RFC3489Name)
	}
	if r.Rewriting.Detected != TriUnknown || !strings.Contains(r.Rewriting.Evidence, "RFC 3489") {
		t.Errorf("rewriting %+v", r.Rewriting)
	}
}

func TestProbeServerIgnoresChangeRequest(t *testing.T) {
	t.Parallel()
	srv := startSim(t, natsim.Options{Kind: natsim.IgnoresChange, NAT: true, Filtering: natsim.AddressAndPortDependent})
	r, err := runProbe(t, srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Answers from the primary address pass any filter: they must not be
	// taken for endpoint-independent filtering.
	if r.Filtering != Unknown || r.Server.ChangeRequest != TriNo {
		t.Errorf("filtering %s change_request %v", r.Filtering, r.Server.ChangeRequest)
	}
	if r.Mapping != EndpointIndependent || r.RFC3489Name != NameUnknown {
		t.Errorf("mapping %s name %s", r.Mapping, r.RFC3489Name)
	}
	if ft := findTest(r, "filtering-2"); ft == nil || !strings.Contains(ft.Note, "did not change") {
		t.Errorf("filtering-2 %+v", ft)
	}
}

func TestProbeNoAnswer(t *testing.T) {
	t.Parallel()
	srv := startSim(t, natsim.Options{Kind: natsim.Silent})
	start := time.Now()
	r, err := runProbe(t, srv, nil)
	d := time.Since(start)
	var nae *NoAnswerError
	if !errors.As(err, &nae) || !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("err %v", err)
	}
	want := "no STUN answer from " + srv.Addr().String() + " within 0.7 s: UDP blocked or wrong server"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	if r == nil || r.RFC3489Name != NameUDPBlocked || r.Error != want || len(r.Advice) != 1 {
		t.Errorf("report %v", r)
	}
	if srv.Requests() != 3 {
		t.Errorf("%d requests, want 3", srv.Requests())
	}
}

func TestProbeLifetime(t *testing.T) {
	t.Parallel()
	// Bindings live 2.5 s: 1 and 2 s of idleness survive, 3 s does not,
	// and 4 s is not waited for.
	srv := startSim(t, natsim.Options{NAT: true, Filtering: natsim.AddressAndPortDependent, Lifetime: 2500 * time.Millisecond})
	start := time.Now()
	r, err := runProbe(t, srv, func(c *Config) {
		c.Lifetime, c.LifetimeMax = true, 4*time.Second
		c.LifetimeSteps = []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second}
	})
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	l := r.BindingLifetime
	if l == nil || l.Status != LifetimeMeasured || l.LowerS != 2 || l.UpperS != 3 || l.Seconds != 2 || l.MaxS != 4 {
		t.Fatalf("lifetime %+v", l)
	}
	if len(l.Steps) != 4 {
		t.Fatalf("steps %+v (5 s is over the max)", l.Steps)
	}
	want := []Tri{TriYes, TriYes, TriNo, TriUnknown}
	for i, s := range l.Steps {
		if s.Survived != want[i] {
			t.Errorf("step %v: survived %v, want %v", s.IdleS, s.Survived, want[i])
		}
	}
	if !strings.Contains(l.Steps[3].Note, "skipped") {
		t.Errorf("4 s step note %q", l.Steps[3].Note)
	}
	if d > 4500*time.Millisecond {
		t.Errorf("took %v: the 4 s step should have been skipped", d)
	}
	if r.Server.ResponsePort != TriYes {
		t.Errorf("response_port %v", r.Server.ResponsePort)
	}
	if !hasAdvice(r, "binding lifetime between 2 and 3 s: keepalive interval must be under 2 s (suggest 1 s") {
		t.Errorf("advice %q", r.Advice)
	}
	for _, name := range []string{"lifetime-binding-check", "lifetime-check", "lifetime-1s", "lifetime-2s", "lifetime-3s"} {
		if findTest(r, name) == nil {
			t.Errorf("no test %q", name)
		}
	}
	if findTest(r, "lifetime-4s") != nil {
		t.Error("4 s step was tested")
	}
}

func TestProbeLifetimeLongerThanMax(t *testing.T) {
	t.Parallel()
	srv := startSim(t, natsim.Options{NAT: true, Mapping: natsim.AddressAndPortDependent, Filtering: natsim.AddressAndPortDependent})
	r, err := runProbe(t, srv, func(c *Config) {
		c.Lifetime, c.LifetimeMax = true, 1500*time.Millisecond
	})
	if err != nil {
		t.Fatal(err)
	}
	l := r.BindingLifetime
	// Default steps are 5 s and up: only the max itself is tested.
	if l == nil || l.Status != LifetimeLongerThan || l.LowerS != 1.5 || l.UpperS != 0 || len(l.Steps) != 1 {
		t.Fatalf("lifetime %+v", l)
	}
	if !hasAdvice(r, "idle bindings survive at least 1.5 s") {
		t.Errorf("advice %q", r.Advice)
	}
}

func TestProbeLifetimeIgnoredResponsePort(t *testing.T) {
	t.Parallel()
	srv := startSim(t, natsim.Options{Kind: natsim.IgnoresResponsePort, NAT: true})
	r, err := runProbe(t, srv, func(c *Config) { c.Lifetime, c.LifetimeMax = true, time.Second })
	if err != nil {
		t.Fatal(err)
	}
	l := r.BindingLifetime
	if l == nil || l.Status != LifetimeUnknown || !strings.Contains(l.Note, "ignored RESPONSE-PORT") || r.Server.ResponsePort != TriNo {
		t.Fatalf("lifetime %+v response_port %v", l, r.Server.ResponsePort)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{},
		{Server: "127.0.0.1:0"},
		{Server: "127.0.0.1:99999"},
		{Server: "127.0.0.1", Bind: "nonsense"},
		{Server: "127.0.0.1", Tries: 11},
	} {
		if _, err := Probe(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestParseServer(t *testing.T) {
	for _, tc := range []struct{ in, name, addr string }{
		{"127.0.0.1", "127.0.0.1:3478", "127.0.0.1:3478"},
		{"127.0.0.1:5060", "127.0.0.1:5060", "127.0.0.1:5060"},
		{"::1", "[::1]:3478", "[::1]:3478"},
		{"[::1]", "[::1]:3478", "[::1]:3478"},
		{"[::1]:19302", "[::1]:19302", "[::1]:19302"},
		{"localhost:3479", "localhost:3479", "127.0.0.1:3479"},
	} {
		name, ap, err := resolveServer(context.Background(), tc.in, netip.Addr{})
		if err != nil || name != tc.name || ap.String() != tc.addr {
			t.Errorf("%q: %q %v %v, want %q %q", tc.in, name, ap, err, tc.name, tc.addr)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "invalid AddrPort"},
		{"127.0.0.1", "127.0.0.1:0"},
		{"127.0.0.1:5062", "127.0.0.1:5062"},
		{":5062", "0.0.0.0:5062"},
		{"[::1]:5062", "[::1]:5062"},
	} {
		ap, err := parseBind(tc.in)
		if err != nil || ap.String() != tc.want {
			t.Errorf("bind %q: %v %v, want %s", tc.in, ap, err, tc.want)
		}
	}
}

// A --bind on the wildcard reports the routed IP as the local address.
func TestProbeWildcardBind(t *testing.T) {
	t.Parallel()
	srv := startSim(t, natsim.Options{})
	r, err := runProbe(t, srv, func(c *Config) { c.Bind = "0.0.0.0:0" })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.LocalAddress, "127.0.0.1:") || r.NATPresent {
		t.Errorf("local %s nat %v", r.LocalAddress, r.NATPresent)
	}
}

// IPv6 against a plain RFC 8489 server (like sipedge's SIP port): no NAT,
// and MAPPED-ADDRESS still fits in the answer for the rewriting check.
func TestProbeIPv6PlainServer(t *testing.T) {
	t.Parallel()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if out, ok := stun.Respond(nil, buf[:n], from, &stun.ResponderOptions{Software: "sipedge"}); ok {
				c.WriteToUDPAddrPort(out, from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	cfg := Config{Server: addr.String()}
	fast(&cfg)
	r, err := Probe(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.LocalAddress, "[::1]:") || r.PublicAddress != r.LocalAddress || r.NATPresent {
		t.Errorf("local %s public %s nat %v", r.LocalAddress, r.PublicAddress, r.NATPresent)
	}
	if r.Rewriting.Detected != TriNo || r.Server.RFC5780 || r.Server.Software != "sipedge" || r.Hairpinning != TriUnknown {
		t.Errorf("report %v", r)
	}
	if r.RFC3489Name != NameUnknown || !hasAdvice(r, "no NAT") || !hasAdvice(r, "does not support RFC 5780") {
		t.Errorf("name %q advice %q", r.RFC3489Name, r.Advice)
	}
}
