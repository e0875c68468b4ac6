package portmap

import (
	"net/netip"
)

// nonGlobal are the blocks of RFC 6890 (and its updates) that are never
// reachable from the internet, besides what netip's own predicates say.
// The documentation blocks (192.0.2.0/24, 198.51.100.0/24,
// 203.0.113.0/24, 2001:db8::/32) are deliberately NOT here: labs and tests
// use them as "the internet".
var nonGlobal = []struct {
	p    netip.Prefix
	what string
}{
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (RFC 6598): carrier-grade NAT"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments (RFC 6890; DS-Lite 192.0.0.0/29): carrier-grade NAT"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking range (RFC 2544)"},
	{netip.MustParsePrefix("0.0.0.0/8"), "'this network' (RFC 1122)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (RFC 1112)"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 prefix (RFC 8215)"},
	{netip.MustParsePrefix("100::/64"), "discard-only (RFC 6666)"},
}

// ClassifyExternal says whether a gateway's reported external address is
// reachable from the internet. private is true for RFC 1918 / ULA,
// shared (100.64.0.0/10, CGNAT), loopback, link-local and the other
// non-global blocks; why then says which, for the report ("double NAT"
// or "carrier-grade NAT"). An invalid or unspecified address is
// private too ("no external address").
func ClassifyExternal(a netip.Addr) (private bool, why string) {
	a = a.Unmap()
	switch {
	case !a.IsValid() || a.IsUnspecified():
		return true, "no external address (the gateway's WAN side is not connected)"
	case a.IsPrivate():
		if a.Is4() {
			return true, "private address (RFC 1918): double NAT, another router is between the gateway and the internet"
		}
		return true, "unique local address (RFC 4193): the gateway's WAN side is not the internet"
	case a.IsLoopback():
		return true, "loopback address"
	case a.IsLinkLocalUnicast():
		return true, "link-local address: the gateway's WAN side has no routable address"
	case a.IsMulticast() || a.IsInterfaceLocalMulticast() || a.IsLinkLocalMulticast():
		return true, "multicast address (a broken gateway)"
	}
	for _, b := range nonGlobal {
		if b.p.Contains(a) {
			return true, b.what
		}
	}
	return false, ""
}
