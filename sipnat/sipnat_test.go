package sipnat

import (
	"net/netip"
	"slices"
	"testing"
)

func TestIsPrivate(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		// RFC 1918
		{"10.0.0.1", true},
		{"10.255.255.255", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.15.255.255", false},
		{"172.32.0.0", false},
		{"192.168.1.10", true},
		{"192.169.0.1", false},
		// RFC 6598 CGNAT 100.64.0.0/10
		{"100.64.0.0", true},
		{"100.127.255.255", true},
		{"100.63.255.255", false},
		{"100.128.0.0", false},
		// RFC 7335 192.0.0.0/29
		{"192.0.0.1", true},
		{"192.0.0.7", true},
		{"192.0.0.8", false},
		{"192.0.1.1", false},
		// loopback, link-local, unspecified
		{"127.0.0.1", true},
		{"127.8.9.10", true},
		{"169.254.1.1", true},
		{"0.0.0.0", true},
		{"::1", true},
		{"::", true},
		{"fe80::1", true},
		{"febf::1", true},
		{"fec0::1", false},
		// IPv6 ULA fc00::/7
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fe00::1", false},
		// IPv4-mapped
		{"::ffff:192.168.0.1", true},
		{"::ffff:198.51.100.1", false},
		// public
		{"198.51.100.7", false},
		{"8.8.8.8", false},
		{"2001:db8::1", false},
		{"2606:4700::1111", false},
	}
	for _, tt := range tests {
		if got := IsPrivate(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("IsPrivate(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if IsPrivate(netip.Addr{}) {
		t.Errorf("IsPrivate(zero Addr) = true, want false")
	}
}

func TestClassifyHost(t *testing.T) {
	tests := []struct {
		host    string
		want    string // "" = not an IP
		invalid bool   // IsInvalidHost
	}{
		{"198.51.100.7", "198.51.100.7", false},
		{"192.168.1.2", "192.168.1.2", false},
		{"[2001:db8::1]", "2001:db8::1", false},
		{"2001:db8::1", "2001:db8::1", false},
		{"[::ffff:10.1.2.3]", "10.1.2.3", false},
		{"[fe80::1%25eth0]", "fe80::1", false}, // RFC 6874 zone, dropped
		{"fe80::1%eth0", "fe80::1", false},
		{"[1.2.3.4]", "", false},
		{"[2001:db8::1", "", false},
		{"2001:db8::1]", "", false},
		{"[]", "", false},
		{"", "", false},
		{"example.com", "", false},
		{"sip.example.com.", "", false},
		{"01.2.3.4", "", false},
		{"1.2.3", "", false},
		{"1.2.3.4.example.com", "", false},
		{"df7jal23ls0d.invalid", "", true},
		{"DF7JAL23LS0D.INVALID", "", true},
		{"abc.invalid.", "", true},
		{".invalid", "", false},
		{"invalid", "", false},
		{"invalid.example.com", "", false},
	}
	for _, tt := range tests {
		a, ok := ClassifyHost(tt.host)
		if tt.want == "" {
			if ok {
				t.Errorf("ClassifyHost(%q) = %v, true; want not an IP", tt.host, a)
			}
		} else if !ok || a != netip.MustParseAddr(tt.want) {
			t.Errorf("ClassifyHost(%q) = %v, %v; want %s, true", tt.host, a, ok, tt.want)
		}
		if got := IsInvalidHost(tt.host); got != tt.invalid {
			t.Errorf("IsInvalidHost(%q) = %v, want %v", tt.host, got, tt.invalid)
		}
	}
}

func TestPortOrDefault(t *testing.T) {
	tests := []struct {
		transport string
		port      int
		want      int
	}{
		{"udp", 0, 5060},
		{"", 0, 5060},
		{"tcp", 0, 5060},
		{"TCP", 0, 5060},
		{"tls", 0, 5061},
		{"TLS", 0, 5061},
		{"udp", 5080, 5080},
		{"tls", 5060, 5060},
	}
	for _, tt := range tests {
		if got := PortOrDefault(tt.transport, tt.port); got != tt.want {
			t.Errorf("PortOrDefault(%q, %d) = %d, want %d", tt.transport, tt.port, got, tt.want)
		}
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestDetect(t *testing.T) {
	lan := []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fd00:1::/64")}
	tests := []struct {
		name   string
		in     Input
		nat    bool
		exempt bool
		why    []Reason
	}{
		{
			name: "public phone on 5060 sending from 5060",
			in: Input{Transport: "udp", Source: ap("198.51.100.7:5060"), ViaHost: "198.51.100.7", ViaPort: 5060,
				Contacts: []HostPort{{"198.51.100.7", 5060}}},
		},
		{
			name: "public phone, ports absent mean 5060",
			in: Input{Source: ap("198.51.100.7:5060"), ViaHost: "198.51.100.7",
				Contacts: []HostPort{{"198.51.100.7", 0}}},
		},
		{
			name: "classic home NAT: private Via and Contact, mapped port",
			in: Input{Transport: "udp", Source: ap("203.0.113.9:40512"), ViaHost: "192.168.1.20", ViaPort: 5060, ViaRport: true,
				Contacts: []HostPort{{"192.168.1.20", 5060}}},
			nat: true,
			why: []Reason{ReasonViaAddr, ReasonViaPort, ReasonPrivateVia, ReasonContactAddr, ReasonContactPort, ReasonPrivateContact},
		},
		{
			name: "port-preserving NAT with STUN-aware phone: only ports differ",
			in: Input{Source: ap("203.0.113.9:40512"), ViaHost: "203.0.113.9", ViaPort: 5060,
				Contacts: []HostPort{{"203.0.113.9", 5060}}},
			nat: true,
			why: []Reason{ReasonViaPort, ReasonContactPort},
		},
		{
			name: "via address differs (public), port equal",
			in:   Input{Source: ap("203.0.113.9:5060"), ViaHost: "198.51.100.7", ViaPort: 5060},
			nat:  true,
			why:  []Reason{ReasonViaAddr},
		},
		{
			name: "via port differs only",
			in:   Input{Source: ap("198.51.100.7:5062"), ViaHost: "198.51.100.7", ViaPort: 5060},
			nat:  true,
			why:  []Reason{ReasonViaPort},
		},
		{
			name: "ALG fixed the Via but not the Contact",
			in: Input{Source: ap("203.0.113.9:5060"), ViaHost: "203.0.113.9", ViaPort: 5060,
				Contacts: []HostPort{{"10.0.0.5", 5060}}},
			nat: true,
			why: []Reason{ReasonContactAddr, ReasonPrivateContact},
		},
		{
			name: "CGNAT contact",
			in: Input{Source: ap("203.0.113.9:5060"), ViaHost: "203.0.113.9",
				Contacts: []HostPort{{"100.72.1.2", 0}}},
			nat: true,
			why: []Reason{ReasonContactAddr, ReasonPrivateContact},
		},
		{
			name: "DS-Lite 192.0.0.2 via",
			in:   Input{Source: ap("203.0.113.9:5060"), ViaHost: "192.0.0.2"},
			nat:  true,
			why:  []Reason{ReasonViaAddr, ReasonPrivateVia},
		},
		{
			name: "contact public but different address",
			in: Input{Source: ap("203.0.113.9:5060"), ViaHost: "203.0.113.9",
				Contacts: []HostPort{{"198.51.100.1", 5060}}},
			nat: true,
			why: []Reason{ReasonContactAddr},
		},
		{
			name: "contact port differs only",
			in: Input{Source: ap("203.0.113.9:5060"), ViaHost: "203.0.113.9",
				Contacts: []HostPort{{"203.0.113.9", 5070}}},
			nat: true,
			why: []Reason{ReasonContactPort},
		},
		{
			name: "second contact differs",
			in: Input{Source: ap("203.0.113.9:5060"), ViaHost: "203.0.113.9",
				Contacts: []HostPort{{"203.0.113.9", 5060}, {"172.20.0.3", 5060}}},
			nat: true,
			why: []Reason{ReasonContactAddr, ReasonPrivateContact},
		},
		{
			name: "wildcard and empty contacts ignored",
			in: Input{Source: ap("203.0.113.9:5060"), ViaHost: "203.0.113.9",
				Contacts: []HostPort{{"*", 0}, {"", 0}}},
		},
		{
			name: "WebRTC .invalid via and contact over wss",
			in: Input{Transport: "wss", Source: ap("203.0.113.9:51234"), ViaHost: "df7jal23ls0d.invalid",
				Contacts: []HostPort{{"r9a1bc.invalid", 0}}},
			nat: true,
			why: []Reason{ReasonInvalidHost},
		},
		{
			name: ".invalid via over udp also compares port",
			in:   Input{Source: ap("203.0.113.9:51234"), ViaHost: "x.invalid", ViaPort: 5060},
			nat:  true,
			why:  []Reason{ReasonViaPort, ReasonInvalidHost},
		},
		{
			name: "hostname via on matching port: no address comparison",
			in: Input{Source: ap("198.51.100.7:5060"), ViaHost: "pbx.example.com", ViaPort: 5060,
				Contacts: []HostPort{{"pbx.example.com", 0}}},
		},
		{
			name: "hostname via on other port: port only",
			in: Input{Source: ap("198.51.100.7:33000"), ViaHost: "pbx.example.com",
				Contacts: []HostPort{{"pbx.example.com", 33000}}},
			nat: true,
			why: []Reason{ReasonViaPort},
		},
		{
			name: "LAN phone without local_nets: private but equal to source",
			in: Input{Source: ap("192.168.1.20:5060"), ViaHost: "192.168.1.20", ViaPort: 5060,
				Contacts: []HostPort{{"192.168.1.20", 5060}}},
		},
		{
			name: "LAN phone on local net is exempt",
			in: Input{Source: ap("192.168.1.20:5060"), ViaHost: "192.168.1.20", ViaPort: 5060,
				Contacts: []HostPort{{"192.168.1.20", 5060}}, LocalNets: lan},
			exempt: true,
		},
		{
			name: "local peer that looks odd is still exempt",
			in: Input{Source: ap("192.168.7.1:40000"), ViaHost: "10.0.0.1", ViaPort: 5060,
				Contacts: []HostPort{{"x.invalid", 0}}, LocalNets: lan},
			exempt: true,
		},
		{
			name:   "local net exempts even in force mode",
			in:     Input{Source: ap("192.168.7.1:5060"), ViaHost: "192.168.7.1", LocalNets: lan, Mode: "force"},
			exempt: true,
		},
		{
			name: "local nets do not cover a public source",
			in: Input{Source: ap("203.0.113.9:40512"), ViaHost: "192.168.1.20", ViaPort: 5060,
				LocalNets: lan},
			nat: true,
			why: []Reason{ReasonViaAddr, ReasonViaPort, ReasonPrivateVia},
		},
		{
			name:   "IPv4-mapped source in local net",
			in:     Input{Source: ap("[::ffff:192.168.3.3]:5060"), ViaHost: "10.9.9.9", LocalNets: lan},
			exempt: true,
		},
		{
			name:   "mode never",
			in:     Input{Source: ap("203.0.113.9:40512"), ViaHost: "192.168.1.20", Mode: "never"},
			exempt: true,
		},
		{
			name:   "mode NEVER any case",
			in:     Input{Source: ap("203.0.113.9:40512"), ViaHost: "192.168.1.20", Mode: "NEVER"},
			exempt: true,
		},
		{
			name: "mode force, nothing else",
			in:   Input{Source: ap("198.51.100.7:5060"), ViaHost: "198.51.100.7", Mode: "force"},
			nat:  true,
			why:  []Reason{ReasonForced},
		},
		{
			name: "mode force keeps other reasons",
			in:   Input{Source: ap("198.51.100.7:5060"), ViaHost: "10.1.1.1", Mode: "force"},
			nat:  true,
			why:  []Reason{ReasonForced, ReasonViaAddr, ReasonPrivateVia},
		},
		{
			name: "unknown mode is auto",
			in:   Input{Source: ap("198.51.100.7:5060"), ViaHost: "198.51.100.7", Mode: "sometimes"},
		},
		{
			name: "TCP: ephemeral source port is not NAT evidence",
			in: Input{Transport: "tcp", Source: ap("198.51.100.7:49152"), ViaHost: "198.51.100.7", ViaPort: 5060,
				Contacts: []HostPort{{"198.51.100.7", 5060}}},
		},
		{
			name: "TCP uppercase, port absent",
			in: Input{Transport: "TCP", Source: ap("198.51.100.7:49152"), ViaHost: "198.51.100.7",
				Contacts: []HostPort{{"198.51.100.7", 0}}},
		},
		{
			name: "TCP behind NAT: address evidence still counts",
			in: Input{Transport: "tcp", Source: ap("203.0.113.9:49152"), ViaHost: "192.168.1.20", ViaPort: 5060,
				Contacts: []HostPort{{"192.168.1.20", 5060}}},
			nat: true,
			why: []Reason{ReasonViaAddr, ReasonPrivateVia, ReasonContactAddr, ReasonPrivateContact},
		},
		{
			name: "TLS: default 5061, ports not compared",
			in: Input{Transport: "tls", Source: ap("198.51.100.7:50000"), ViaHost: "198.51.100.7",
				Contacts: []HostPort{{"198.51.100.7", 0}}},
		},
		{
			name: "UDP default port for TLS-less via compared to 5061 source",
			in:   Input{Transport: "udp", Source: ap("198.51.100.7:5061"), ViaHost: "198.51.100.7"},
			nat:  true,
			why:  []Reason{ReasonViaPort},
		},
		{
			name: "IPv6 public phone, bracketed hosts",
			in: Input{Source: ap("[2001:db8::7]:5060"), ViaHost: "[2001:db8::7]", ViaPort: 5060,
				Contacts: []HostPort{{"[2001:db8::7]", 5060}}},
		},
		{
			name: "IPv6 different representation still equal",
			in: Input{Source: ap("[2001:db8::7]:5060"), ViaHost: "[2001:0db8:0:0::7]",
				Contacts: []HostPort{{"2001:db8:0::7", 0}}},
		},
		{
			name: "IPv6 ULA via behind NPTv6/NAT66",
			in: Input{Source: ap("[2001:db8::7]:5060"), ViaHost: "[fd12:3456::7]", ViaPort: 5060,
				Contacts: []HostPort{{"[fd12:3456::7]", 5060}}},
			nat: true,
			why: []Reason{ReasonViaAddr, ReasonPrivateVia, ReasonContactAddr, ReasonPrivateContact},
		},
		{
			name:   "IPv6 local net exempt",
			in:     Input{Source: ap("[fd00:1::9]:5060"), ViaHost: "[fd00:1::9]", LocalNets: lan},
			exempt: true,
		},
		{
			name: "IPv4-mapped source equals IPv4 via",
			in:   Input{Source: ap("[::ffff:198.51.100.7]:5060"), ViaHost: "198.51.100.7"},
		},
		{
			name: "no source: private via still fires, no comparisons",
			in: Input{ViaHost: "10.0.0.1", ViaPort: 5070,
				Contacts: []HostPort{{"198.51.100.1", 9999}}},
			nat: true,
			why: []Reason{ReasonPrivateVia},
		},
		{
			name: "no source: public hosts give nothing",
			in:   Input{ViaHost: "198.51.100.1", ViaPort: 5070},
		},
		{
			name: "no via at all, contact only",
			in:   Input{Source: ap("203.0.113.9:40000"), Contacts: []HostPort{{"203.0.113.9", 40000}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Detect(tt.in)
			if got.NAT != tt.nat || got.Exempt != tt.exempt || !slices.Equal(got.Reasons, tt.why) {
				t.Errorf("Detect() = %+v; want NAT=%v Exempt=%v Reasons=%v", got, tt.nat, tt.exempt, tt.why)
			}
			if !got.NAT && len(got.Reasons) != 0 {
				t.Errorf("reasons without NAT: %v", got.Reasons)
			}
		})
	}
}

// TestEveryReasonCovered makes sure each Reason is produced by some input,
// so a new constant cannot be added without a test exercising it.
func TestEveryReasonCovered(t *testing.T) {
	inputs := []Input{
		{Mode: "force"},
		{Source: ap("203.0.113.9:40512"), ViaHost: "192.168.1.20", Contacts: []HostPort{{"10.0.0.1", 0}}},
		{Source: ap("203.0.113.9:40512"), ViaHost: "a.invalid"},
	}
	seen := map[Reason]bool{}
	for _, in := range inputs {
		for _, r := range Detect(in).Reasons {
			seen[r] = true
		}
	}
	for _, r := range reasonOrder {
		if !seen[r] {
			t.Errorf("reason %q never produced", r)
		}
	}
}

func TestReasonStringsAreASCII(t *testing.T) {
	seen := map[Reason]bool{}
	for _, r := range reasonOrder {
		if seen[r] {
			t.Errorf("duplicate reason %q", r)
		}
		seen[r] = true
		for _, c := range []byte(r) {
			if c < 0x21 || c > 0x7e || (c >= 'A' && c <= 'Z') {
				t.Errorf("reason %q: want lower-case printable ASCII without spaces", r)
				break
			}
		}
	}
}

func BenchmarkDetect(b *testing.B) {
	in := Input{Transport: "udp", Source: ap("203.0.113.9:40512"), ViaHost: "192.168.1.20", ViaPort: 5060, ViaRport: true,
		Contacts: []HostPort{{"192.168.1.20", 5060}}, LocalNets: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	b.ReportAllocs()
	for b.Loop() {
		Detect(in)
	}
}
