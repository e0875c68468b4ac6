package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Values with a meaning of their own. Use these rather than string literals.
const (
	// NAT policies, for nat.mode and the nat key of users and routes.
	NATAuto  = "auto"  // detect NAT per request
	NATForce = "force" // treat every peer as NATed
	NATNever = "never" // never apply NAT fixes

	// Listener transports.
	TransportUDP = "udp"
	TransportTCP = "tcp"

	// Digest algorithms (RFC 8760 names).
	AlgorithmSHA256 = "SHA-256"
	AlgorithmMD5    = "MD5"

	// Media policies, for media.mode and the media key of users and routes.
	MediaAlways = "always" // relay every call
	MediaNAT    = "nat"    // relay calls with a NATed leg
	MediaNever  = "never"  // never relay

	KernelOff  = "off"  // media.kernel: user space only
	KernelAuto = "auto" // the in-kernel fast path when available
	KernelOn   = "on"   // the in-kernel fast path, or no start

	// Keepalive methods, for keepalive.method.
	KeepaliveOptions = "options" // SIP OPTIONS: RTT and reachability
	KeepaliveCRLF    = "crlf"    // 4 bytes: keeps the NAT open only

	// AdminOff as admin.listen disables the admin API.
	AdminOff = "off"
)

// Defaults that are needed outside Default as well. Default is still the one
// place to read them all.
const (
	// defaultAdminListen is also what an empty admin.listen in a file means.
	defaultAdminListen = "127.0.0.1:5080"
	// defaultRouteNAT applies to a route whose nat key is empty; see RouteNAT.
	defaultRouteNAT = NATNever
)

// Default returns a new Config holding every default, ready to use: sipedge
// runs on it when started without a config file, and Parse decodes files
// over it. Each call returns a fresh copy that shares nothing with others.
//
// Two defaults cannot be stored here because they depend on other values:
// a user's or route's empty nat key (see UserNAT and RouteNAT) and an empty
// auth.realm (see Realm).
func Default() *Config {
	return &Config{
		DataDir: "./sipedge-data",
		Domains: []string{"sipedge.local"},
		Log: Log{
			Level:  "info",
			Format: "text",
		},
		Listen: []Listen{
			{Transport: TransportUDP, Address: "0.0.0.0:5060"},
			{Transport: TransportTCP, Address: "0.0.0.0:5060"},
		},
		NAT: NAT{Mode: NATAuto},
		Registrar: Registrar{
			MinExpires:     Duration{60 * time.Second},
			MaxExpires:     Duration{3600 * time.Second},
			DefaultExpires: Duration{3600 * time.Second},
			MaxContacts:    10,
			FlushInterval:  Duration{100 * time.Millisecond},
		},
		Auth: Auth{
			Algorithms: []string{AlgorithmSHA256, AlgorithmMD5},
			NonceTTL:   Duration{5 * time.Minute},
		},
		Security: Security{
			RateLimit:   200,
			RateBurst:   400,
			BanFailures: 10,
			BanWindow:   Duration{5 * time.Minute},
			BanTime:     Duration{15 * time.Minute},
			// Substrings of User-Agent values sent by SIP scanners and
			// war-diallers. Only tools that exist to scan or attack belong
			// here: a legitimate client on this list would be silently
			// dropped (so no sipsak, no SDKs that real products use).
			ScannerUserAgents: []string{
				"friendly-scanner", // SIPVicious, older versions
				"sipvicious",       // SIPVicious
				"sipcli",           // SIPCLI
				"sip-scan",
				"VaxSIPUserAgent",
				"iWar", // war dialler
				"sundayddr",
				"SIVuS", // SiVuS scanner
				"smap",  // SIP nmap-alike
			},
		},
		Proxy: Proxy{
			MaxForwards:     70,
			InviteTimeout:   Duration{120 * time.Second},
			MaxCallDuration: Duration{12 * time.Hour},
			UDPMaxSize:      1300,
		},
		Admin:           Admin{Listen: defaultAdminListen, TraceCalls: 100},
		ExternalRefresh: Duration{5 * time.Minute},
		Portmap:         Portmap{CheckInterval: Duration{time.Minute}, RTPRangeMax: 64},
		Keepalive: Keepalive{
			Interval: Duration{25 * time.Second},
			Method:   KeepaliveOptions,
			Timeout:  Duration{5 * time.Second},
			Lagged:   Duration{time.Second},
			Misses:   3,
		},
		STUN: STUN{
			Listen:    []string{"0.0.0.0:3478"},
			RateLimit: 20,
			RateBurst: 40,
			Software:  true,
		},
		Media: Media{
			Mode:        MediaNAT,
			Ports:       "30000-39999",
			Timeout:     Duration{60 * time.Second},
			HoldTimeout: Duration{time.Hour},
			Learning:    Duration{3 * time.Second},
			Probation:   4,
			Kernel:      KernelOff,
		},
	}
}

// UserNAT returns the NAT policy for u: u.NAT, or nat.mode when u.NAT is
// empty.
func (c *Config) UserNAT(u User) string {
	if u.NAT != "" {
		return u.NAT
	}
	return c.NAT.Mode
}

// RouteNAT returns the NAT policy for r: r.NAT, or "never" when r.NAT is
// empty. Routes do not inherit nat.mode: trunks are usually reachable
// directly, and NAT fixes aimed at them do more harm than good.
func (c *Config) RouteNAT(r Route) string {
	if r.NAT != "" {
		return r.NAT
	}
	return defaultRouteNAT
}

// UserMedia returns the media policy for u: u.Media, or media.mode.
func (c *Config) UserMedia(u User) string {
	if u.Media != "" {
		return u.Media
	}
	return c.Media.Mode
}

// SplitSTUN parses external_address "stun:host[:port]" into the host and
// port (default 3478).
func SplitSTUN(v string) (host string, port int, err error) {
	hp, ok := strings.CutPrefix(v, "stun:")
	if !ok || hp == "" {
		return "", 0, fmt.Errorf("%q: want stun:host or stun:host:port", v)
	}
	if h, p, err := net.SplitHostPort(hp); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("%q: bad port %q", v, p)
		}
		return strings.Trim(h, "[]"), n, nil
	}
	if strings.Count(hp, ":") > 1 && !strings.HasPrefix(hp, "[") { // bare IPv6
		if _, err := netip.ParseAddr(hp); err == nil {
			return hp, 3478, nil
		}
	}
	if strings.ContainsAny(hp, ":[]/ ") {
		return "", 0, fmt.Errorf("%q: want stun:host or stun:host:port", v)
	}
	return hp, 3478, nil
}

// External address sources.
const (
	ExternalAuto   = "auto"
	ExternalUPnP   = "upnp"
	ExternalNATPMP = "natpmp"
	ExternalPCP    = "pcp"
)

// UserKeepalive returns the keepalive interval for u's flows:
// u.Keepalive, or keepalive.interval.
func (c *Config) UserKeepalive(u User) time.Duration {
	if u.Keepalive != nil {
		return u.Keepalive.Duration
	}
	return c.Keepalive.Interval.Duration
}

// RouteMedia returns the media policy for r: r.Media, or media.mode.
func (c *Config) RouteMedia(r Route) string {
	if r.Media != "" {
		return r.Media
	}
	return c.Media.Mode
}

// PortRange parses media.ports ("30000-39999") into its bounds.
func (m Media) PortRange() (lo, hi int, err error) {
	a, b, ok := strings.Cut(m.Ports, "-")
	if ok {
		lo, err = strconv.Atoi(strings.TrimSpace(a))
		if err == nil {
			hi, err = strconv.Atoi(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("invalid port range %q (want e.g. \"30000-39999\")", m.Ports)
	}
	if lo < 1024 || hi > 65535 || hi-lo < 3 {
		return 0, 0, fmt.Errorf("port range %q must lie within 1024-65535 and hold at least two port pairs", m.Ports)
	}
	return lo, hi, nil
}

// Realm returns the digest realm: auth.realm, or the first domain when
// auth.realm is empty ("" if there is no domain either).
func (c *Config) Realm() string {
	if c.Auth.Realm != "" {
		return c.Auth.Realm
	}
	if len(c.Domains) > 0 {
		return c.Domains[0]
	}
	return ""
}

// STUNAlternatePort returns the second port of the STUN server's RFC
// 5780 mode: stun.alternate_port, or the primary (first listen) port + 1
// when that is 0. It is 0 when there is no usable primary port.
func (c *Config) STUNAlternatePort() int {
	if c.STUN.AlternatePort != 0 {
		return c.STUN.AlternatePort
	}
	if len(c.STUN.Listen) == 0 {
		return 0
	}
	ap, err := parseAddrPort(c.STUN.Listen[0])
	if err != nil || ap.Port() == 0 || ap.Port() == 65535 {
		return 0
	}
	return int(ap.Port()) + 1
}

// AdminDisabled reports whether the admin API is turned off
// (admin.listen = "off").
func (c *Config) AdminDisabled() bool {
	return c.Admin.Listen == AdminOff
}
