package sipx

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Transport names, lower case as in Via and URIs.
const (
	UDP = "udp"
	TCP = "tcp"
)

// Flow is where a message came from or must go: the transport, our local
// socket and the remote address as observed (RFC 5626 "flow"). For TCP,
// ConnID names the connection; a flow whose connection is gone cannot be
// used to reach the peer (we never dial a NATed TCP peer).
type Flow struct {
	Transport string         // UDP or TCP
	Local     netip.AddrPort // our socket
	Remote    netip.AddrPort // the peer as observed
	ConnID    uint64         // TCP connection id; 0 for UDP
}

// IsZero reports whether f is unset.
func (f Flow) IsZero() bool { return !f.Remote.IsValid() }

// String renders f as "udp:198.51.100.7:40512->198.51.100.10:5060".
func (f Flow) String() string {
	return f.Transport + ":" + f.Remote.String() + "->" + f.Local.String()
}

// Token encodes f compactly for a Record-Route or Path URI user part, so
// in-dialog requests can be sent back on the same flow (RFC 5626 §5.2 style).
// Format: t.remoteaddr.remoteport.localaddr.localport[.connid] with ':' in
// IPv6 replaced by '-'. It is not secret; ParseToken validates it.
func (f Flow) Token() string {
	// IPv4-mapped forms are written as IPv4. A zone (needed to reach a
	// link-local peer) is written as "_" + hex, since '%' and arbitrary
	// zone names are not safe in a URI parameter.
	var b strings.Builder
	if f.Transport == TCP {
		b.WriteByte('t')
	} else {
		b.WriteByte('u')
	}
	b.WriteByte('.')
	b.WriteString(tokenAddr(f.Remote.Addr()))
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(int(f.Remote.Port())))
	b.WriteByte('.')
	b.WriteString(tokenAddr(f.Local.Addr()))
	b.WriteByte('.')
	b.WriteString(strconv.Itoa(int(f.Local.Port())))
	if f.ConnID != 0 {
		b.WriteByte('.')
		b.WriteString(strconv.FormatUint(f.ConnID, 10))
	}
	return b.String()
}

// ParseToken is the inverse of Token.
func ParseToken(s string) (Flow, error) {
	var f Flow
	// IPv4 addresses contain dots, so split from known positions: the
	// token is t.A.P.L.P[.C] where A and L may contain dots (IPv4) or
	// dashes (IPv6). Parse right to left for ports, left to right for t.
	if len(s) < 3 || s[1] != '.' {
		return f, fmt.Errorf("sipx: bad flow token %q", s)
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == '-' || c == '_') {
			return f, fmt.Errorf("sipx: bad character in flow token %q", s)
		}
	}
	switch s[0] {
	case 'u':
		f.Transport = UDP
	case 't':
		f.Transport = TCP
	default:
		return f, fmt.Errorf("sipx: bad flow token transport %q", s)
	}
	parts := strings.Split(s[2:], ".")
	// IPv4: 4+1+4+1 (+1) parts; IPv6: 1+1+1+1 (+1); mixed possible.
	var addrs []netip.AddrPort
	i := 0
	for len(addrs) < 2 {
		// try IPv6 single part first
		if i >= len(parts) {
			return f, fmt.Errorf("sipx: short flow token %q", s)
		}
		var hostParts int
		if strings.Contains(parts[i], "-") {
			hostParts = 1
		} else {
			hostParts = 4
		}
		if i+hostParts >= len(parts) {
			return f, fmt.Errorf("sipx: short flow token %q", s)
		}
		host := strings.Join(parts[i:i+hostParts], ".")
		zone := ""
		if z := strings.IndexByte(host, '_'); z >= 0 {
			zb, err := hex.DecodeString(host[z+1:])
			if err != nil || len(zb) == 0 {
				return f, fmt.Errorf("sipx: bad flow token zone %q", s)
			}
			host, zone = host[:z], string(zb)
		}
		ip, err := netip.ParseAddr(strings.ReplaceAll(host, "-", ":"))
		if err != nil {
			return f, fmt.Errorf("sipx: bad flow token address: %w", err)
		}
		if zone != "" {
			if !ip.Is6() || ip.Is4In6() {
				return f, fmt.Errorf("sipx: zone on a non-IPv6 flow token address %q", s)
			}
			ip = ip.WithZone(zone)
		}
		ip = ip.Unmap() // flows are unmapped everywhere in the stack
		port, err := strconv.ParseUint(parts[i+hostParts], 10, 16)
		if err != nil {
			return f, fmt.Errorf("sipx: bad flow token port: %w", err)
		}
		addrs = append(addrs, netip.AddrPortFrom(ip, uint16(port)))
		i += hostParts + 1
	}
	f.Remote, f.Local = addrs[0], addrs[1]
	if i < len(parts) {
		id, err := strconv.ParseUint(parts[i], 10, 64)
		if err != nil || i+1 != len(parts) {
			return f, fmt.Errorf("sipx: bad flow token conn id %q", s)
		}
		f.ConnID = id
	}
	return f, nil
}

// tokenAddr writes an address for a flow token: IPv6 ':' become '-', a
// zone becomes "_" + hex(zone), IPv4-mapped IPv6 becomes plain IPv4.
func tokenAddr(a netip.Addr) string {
	zone := a.Zone()
	a = a.WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
		zone = ""
	}
	s := strings.ReplaceAll(a.String(), ":", "-")
	if zone != "" {
		s += "_" + hex.EncodeToString([]byte(zone))
	}
	return s
}

// ErrNoDNS: a URI's host name did not resolve.
var ErrNoDNS = errors.New("sipx: cannot resolve next hop")

// ResolveURI turns a SIP URI's host (or maddr), port and transport into a
// flow to send on from local. Host names are resolved with the system
// resolver (A/AAAA; no SRV yet) within ctx.
func ResolveURI(ctx context.Context, u *Uri, local netip.AddrPort) (Flow, error) {
	tr := UDP
	if t, ok := u.UriParams.Get("transport"); ok && strings.EqualFold(t, "tcp") {
		tr = TCP
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	host := strings.Trim(u.Host, "[]")
	if m, ok := u.UriParams.Get("maddr"); ok && m != "" {
		host = m
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return Flow{}, ErrNoDNS
		}
		ip = ips[0]
	}
	return Flow{Transport: tr, Local: local, Remote: netip.AddrPortFrom(ip.Unmap(), uint16(port))}, nil
}
