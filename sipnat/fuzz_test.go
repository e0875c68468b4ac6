package sipnat

import (
	"net/netip"
	"testing"
)

func FuzzClassifyHost(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "[2001:db8::1]", "::ffff:10.0.0.1", "fe80::1%eth0",
		"example.com", "x.invalid", "[", "]", "[]", "", "[1.2.3.4]", "abc.INVALID."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		a, ok := ClassifyHost(host)
		if ok {
			if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("ClassifyHost(%q) = %v: want valid, unmapped, zoneless", host, a)
			}
			if IsInvalidHost(host) {
				t.Fatalf("%q is both an IP and an .invalid name", host)
			}
			// An address classifies to itself when printed back.
			if b, ok2 := ClassifyHost(a.String()); !ok2 || b != a {
				t.Fatalf("ClassifyHost(%q) = %v; reparse of %q = %v, %v", host, a, a.String(), b, ok2)
			}
		}
		IsPrivate(a)
	})
}

func FuzzDetect(f *testing.F) {
	f.Add("udp", "203.0.113.9:40512", "192.168.1.20", 5060, true, "192.168.1.20", 0, "10.0.0.0/8", "auto")
	f.Add("tcp", "[2001:db8::7]:5060", "[fd00::1]", 0, false, "x.invalid", 5061, "fd00::/8", "force")
	f.Add("", "", "", -1, false, "*", 70000, "", "never")
	f.Add("TLS", "[::ffff:1.2.3.4]:1", "pbx.example.com.", 65535, true, "[::1]", 1, "1.2.3.4/32", "FORCE")
	f.Fuzz(func(t *testing.T, transport, source, viaHost string, viaPort int, rport bool,
		contactHost string, contactPort int, localNet, mode string) {
		src, _ := netip.ParseAddrPort(source)
		var nets []netip.Prefix
		if p, err := netip.ParsePrefix(localNet); err == nil {
			nets = append(nets, p)
		}
		in := Input{Transport: transport, Source: src, ViaHost: viaHost, ViaPort: viaPort, ViaRport: rport,
			Contacts: []HostPort{{contactHost, contactPort}, {viaHost, viaPort}}, LocalNets: nets, Mode: mode}
		res := Detect(in)
		if res.Exempt && (res.NAT || len(res.Reasons) != 0) {
			t.Fatalf("exempt result with NAT: %+v", res)
		}
		if res.NAT != (len(res.Reasons) > 0) {
			t.Fatalf("NAT=%v but reasons %v", res.NAT, res.Reasons)
		}
		seen := map[Reason]bool{}
		for _, r := range res.Reasons {
			if seen[r] {
				t.Fatalf("duplicate reason in %v", res.Reasons)
			}
			seen[r] = true
		}
		// Port reasons never fire on connection-oriented transports.
		if nt := normTransport(transport); nt != "udp" && (seen[ReasonViaPort] || seen[ReasonContactPort]) {
			t.Fatalf("port reason on %q: %v", transport, res.Reasons)
		}
		ClassifyHost(viaHost)
		ClassifyHost(contactHost)
	})
}
