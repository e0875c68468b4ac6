// Package sipnat decides whether a SIP peer is behind a NAT. It works on
// plain values taken from a request (top Via sent-by, Contact hosts and
// ports) and on what the transport observed (source address, transport),
// in the spirit of Kamailio's nat_uac_test, but returning data: a verdict
// plus the reasons behind it, which the admin view shows per binding.
//
// The package performs no I/O, keeps no state and imports no SIP stack.
package sipnat

import (
	"net/netip"
	"strings"
)

// Modes for Input.Mode, as in the config's nat.mode and per-user overrides.
const (
	ModeAuto  = "auto"  // detect (the default; also used for "" and unknown values)
	ModeForce = "force" // always treat the peer as NATed
	ModeNever = "never" // never treat the peer as NATed
)

// Default SIP ports used when a Via or Contact carries no port
// (RFC 3261 §18.1.1, §19.1.2).
const (
	DefaultPort    = 5060 // udp, tcp, sctp
	DefaultTLSPort = 5061 // tls
)

// Reason says why Detect considers a peer to be behind a NAT. The values
// are short, lower-case, plain ASCII strings, stable for the admin API,
// the CLI and metric labels.
type Reason string

const (
	// ReasonForced: the policy for this peer is "force".
	ReasonForced Reason = "forced"
	// ReasonViaAddr: the top Via sent-by is an IP address that differs
	// from the packet's source address (RFC 3261 §18.2.1 "received" case).
	ReasonViaAddr Reason = "via-address!=source"
	// ReasonViaPort: the top Via sent-by port (5060/5061 when absent)
	// differs from the source port. UDP only; see Detect.
	ReasonViaPort Reason = "via-port!=source"
	// ReasonPrivateVia: the top Via sent-by is a private, shared (CGNAT),
	// loopback, link-local or unspecified address (see IsPrivate) that is
	// not the source address.
	ReasonPrivateVia Reason = "private-via"
	// ReasonContactAddr: a Contact URI host is an IP address that differs
	// from the source address.
	ReasonContactAddr Reason = "contact-address!=source"
	// ReasonContactPort: a Contact URI port (5060/5061 when absent)
	// differs from the source port. UDP only; see Detect.
	ReasonContactPort Reason = "contact-port!=source"
	// ReasonPrivateContact: a Contact URI host is a private address (see
	// IsPrivate) that is not the source address.
	ReasonPrivateContact Reason = "private-contact"
	// ReasonInvalidHost: the Via or a Contact host is a name under the
	// reserved ".invalid" TLD, as WebRTC/WebSocket clients use (RFC 7118
	// §5.2): the peer does not know an address it can be reached at.
	ReasonInvalidHost Reason = ".invalid-host"
)

// reasonOrder is the order in which Result.Reasons lists reasons.
var reasonOrder = [...]Reason{
	ReasonForced,
	ReasonViaAddr,
	ReasonViaPort,
	ReasonPrivateVia,
	ReasonContactAddr,
	ReasonContactPort,
	ReasonPrivateContact,
	ReasonInvalidHost,
}

// HostPort is a host and port as written in a URI or Via. Host may be a
// name, an IPv4 address or an IPv6 address with or without brackets.
// Port 0 means the port was absent.
type HostPort struct {
	Host string
	Port int
}

// Input is what Detect looks at, taken from one request.
type Input struct {
	// Transport the request arrived on: "udp", "tcp", "tls", "ws", "wss",
	// "sctp" (any case). Empty means "udp".
	Transport string
	// Source is the observed remote address and port of the request.
	// If it is invalid, only the checks that need no source run (.invalid
	// hosts, private addresses).
	Source netip.AddrPort
	// ViaHost and ViaPort are the top Via sent-by as sent (ViaPort 0 when
	// absent). Empty ViaHost skips the Via checks.
	ViaHost string
	ViaPort int
	// ViaRport reports whether the top Via carried an rport parameter
	// (RFC 3581). It is not NAT evidence: RFC 3581 clients add it whether or
	// not they are behind NAT, and NAT-unaware clients omit it. Detect
	// ignores it; it is part of Input so callers hand over the whole Via
	// and the edge can decide on response routing from the same value.
	ViaRport bool
	// Contacts are the Contact URI hosts and ports as sent. Entries with an
	// empty host or host "*" are ignored.
	Contacts []HostPort
	// LocalNets are networks whose peers are never considered NATed.
	LocalNets []netip.Prefix
	// Mode is ModeAuto, ModeForce or ModeNever (any case); anything else,
	// including "", means ModeAuto. The config package validates it.
	Mode string
}

// Result is Detect's verdict.
type Result struct {
	// NAT reports whether the peer should be treated as NATed: send to the
	// observed flow, keep the binding alive, anchor media per policy.
	NAT bool
	// Reasons lists why, in a fixed order, without duplicates. Empty when
	// NAT is false.
	Reasons []Reason
	// Exempt reports that no detection was done: the mode is "never" or the
	// source is in LocalNets.
	Exempt bool
}

// IsPrivate reports whether a is an address that cannot be reached from
// the public Internet, so a peer advertising it is on some private network:
// RFC 1918 (10/8, 172.16/12, 192.168/16), RFC 6598 shared address space
// (100.64/10, carrier-grade NAT), RFC 7335 IPv4 service continuity prefix
// (192.0.0.0/29, DS-Lite), loopback (127/8, ::1), link-local (169.254/16,
// fe80::/10), IPv6 unique local (fc00::/7) and unspecified (0.0.0.0, ::).
// IPv4-mapped IPv6 addresses are judged by their IPv4 address. The zero
// Addr is not private.
func IsPrivate(a netip.Addr) bool {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return false
	case a.IsUnspecified(), a.IsLoopback(), a.IsLinkLocalUnicast(), a.IsPrivate():
		return true
	case a.Is4():
		b := a.As4()
		if b[0] == 100 && b[1]&0xc0 == 64 { // 100.64.0.0/10
			return true
		}
		if b[0] == 192 && b[1] == 0 && b[2] == 0 && b[3] < 8 { // 192.0.0.0/29
			return true
		}
	}
	return false
}

// ClassifyHost parses a URI or Via host. It returns the address and true
// when host is an IP literal: IPv4, or IPv6 with or without brackets. The
// address is returned unmapped (::ffff:a.b.c.d becomes a.b.c.d) and without
// zone, ready to compare with an observed source. Host names, including
// names under ".invalid", return false; use IsInvalidHost for those.
func ClassifyHost(host string) (netip.Addr, bool) {
	h := host
	bracketed := false
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
		bracketed = true
	}
	if h == "" {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(h)
	if err != nil {
		return netip.Addr{}, false
	}
	if bracketed && !a.Is6() {
		return netip.Addr{}, false // "[1.2.3.4]" is not a valid host
	}
	return a.WithZone("").Unmap(), true
}

// IsInvalidHost reports whether host is a name under the reserved
// ".invalid" TLD (RFC 6761 §6.4), e.g. "df7jal23ls0d.invalid" as sent by
// WebRTC clients (RFC 7118). A trailing dot and any case are accepted.
func IsInvalidHost(host string) bool {
	h := strings.TrimSuffix(host, ".")
	const suffix = ".invalid"
	return len(h) > len(suffix) && strings.EqualFold(h[len(h)-len(suffix):], suffix)
}

// PortOrDefault returns port, or the default port for transport when port
// is 0: 5061 for "tls", 5060 otherwise (RFC 3261 §19.1.2).
func PortOrDefault(transport string, port int) int {
	if port != 0 {
		return port
	}
	if normTransport(transport) == "tls" {
		return DefaultTLSPort
	}
	return DefaultPort
}

// Detect applies the NAT tests to in, in this order:
//
//  1. Mode "never": NAT=false, Exempt=true.
//  2. Source inside one of LocalNets: NAT=false, Exempt=true, even if the
//     request looks odd (a local net is the admin's statement that no NAT
//     sits between us and that peer). This applies in mode "force" too.
//  3. The tests below run and each one that fires adds its Reason. In mode
//     "force" NAT is true and ReasonForced comes first; in mode "auto" NAT
//     is true when any reason fired.
//
// Address tests (any transport). A Via or Contact host that is an IP
// address different from the source address fires ReasonViaAddr or
// ReasonContactAddr; if that address is also private (IsPrivate),
// ReasonPrivateVia or ReasonPrivateContact fires as well. A private address
// equal to the source does not fire: the peer is reached directly (a LAN
// phone on a network missing from LocalNets is not a NAT case). A host that
// is a name is never compared by address (we would have to resolve it, and
// a name says nothing about NAT), except that a name under ".invalid" fires
// ReasonInvalidHost.
//
// Port tests (UDP only). The Via sent-by port and each Contact port, with
// 5060 (5061 on TLS) when absent, are compared with the source port and fire
// ReasonViaPort or ReasonContactPort when they differ. This also applies to
// host names, whose port is the only thing compared. On connection-oriented
// transports (tcp, tls, ws, wss, sctp) the source port is the ephemeral port
// the client's connection came from, not its listening port, so a mismatch
// is normal and not NAT evidence; only the address tests apply there.
//
// Without a valid Source, only the tests that need no source run:
// ReasonInvalidHost, and ReasonPrivateVia/ReasonPrivateContact for any
// private address. Source and hosts are compared unmapped, so an IPv4 peer
// seen on a dual-stack socket as ::ffff:a.b.c.d matches a.b.c.d.
func Detect(in Input) Result {
	mode := strings.ToLower(in.Mode)
	if mode == ModeNever {
		return Result{Exempt: true}
	}
	src := netip.AddrPortFrom(in.Source.Addr().Unmap().WithZone(""), in.Source.Port())
	if src.IsValid() && inNets(src.Addr(), in.LocalNets) {
		return Result{Exempt: true}
	}

	transport := normTransport(in.Transport)
	comparePorts := src.IsValid() && transport == "udp"

	var found reasonSet
	if in.ViaHost != "" {
		found |= checkHost(src, in.ViaHost, PortOrDefault(transport, in.ViaPort), comparePorts,
			ReasonViaAddr, ReasonViaPort, ReasonPrivateVia)
	}
	for _, c := range in.Contacts {
		if c.Host == "" || c.Host == "*" {
			continue
		}
		found |= checkHost(src, c.Host, PortOrDefault(transport, c.Port), comparePorts,
			ReasonContactAddr, ReasonContactPort, ReasonPrivateContact)
	}
	if mode == ModeForce {
		found = found.add(ReasonForced)
	}
	if found == 0 {
		return Result{}
	}
	return Result{NAT: true, Reasons: found.list()}
}

// checkHost runs the address and port tests on one Via or Contact host.
func checkHost(src netip.AddrPort, host string, port int, comparePorts bool,
	addrReason, portReason, privReason Reason) reasonSet {
	var found reasonSet
	if a, ok := ClassifyHost(host); ok {
		differs := !src.IsValid() || a != src.Addr()
		if differs && src.IsValid() {
			found = found.add(addrReason)
		}
		if differs && IsPrivate(a) {
			found = found.add(privReason)
		}
	} else if IsInvalidHost(host) {
		found = found.add(ReasonInvalidHost)
	}
	if comparePorts && port != int(src.Port()) {
		found = found.add(portReason)
	}
	return found
}

func inNets(a netip.Addr, nets []netip.Prefix) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// normTransport lower-cases t and maps "" to "udp".
func normTransport(t string) string {
	if t == "" {
		return "udp"
	}
	switch t {
	case "udp", "tcp", "tls", "ws", "wss", "sctp":
		return t
	}
	return strings.ToLower(t)
}

// reasonSet is a bit set over reasonOrder.
type reasonSet uint16

func (s reasonSet) add(r Reason) reasonSet {
	for i, o := range reasonOrder {
		if o == r {
			return s | 1<<i
		}
	}
	return s
}

func (s reasonSet) list() []Reason {
	out := make([]Reason, 0, 4)
	for i, r := range reasonOrder {
		if s&(1<<i) != 0 {
			out = append(out, r)
		}
	}
	return out
}
