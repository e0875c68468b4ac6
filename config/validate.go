package config

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validate checks the meaning of the config, beyond what decoding checks,
// and returns every problem found (errors.Join of *Error), or nil. Each error
// names the key, with array indices, and, when the config came from Parse or
// Load, the file and line: `sipedge.toml:12: listen[1].transport: must be
// "udp" or "tcp"`. For a key the file does not set, the line of the closest
// enclosing table or element is given.
//
// Problems that do not stop sipedge from running are not errors; see
// Warnings.
func (c *Config) Validate() error {
	ck := c.check()
	return errors.Join(ck.errs...)
}

// Warnings returns the problems that Validate lets through but an admin
// should hear about (e.g. the admin API on a public address), each located
// like a Validate error.
func (c *Config) Warnings() []string {
	return c.check().warns
}

type checker struct {
	c     *Config
	errs  []error
	warns []string
}

func (ck *checker) issue(key, format string, args ...any) *Error {
	e := &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
	if src := ck.c.src; src != nil {
		e.File = src.file
		e.Line = src.line(key)
	}
	return e
}

func (ck *checker) errorf(key, format string, args ...any) {
	ck.errs = append(ck.errs, ck.issue(key, format, args...))
}

func (ck *checker) warnf(key, format string, args ...any) {
	ck.warns = append(ck.warns, ck.issue(key, format, args...).Error())
}

// pick returns the first of keys the file sets, else the first key. It
// places errors about a relation between keys on the key the admin wrote.
func (ck *checker) pick(keys ...string) string {
	for _, k := range keys {
		if ck.c.src.has(k) {
			return k
		}
	}
	return keys[0]
}

func (c *Config) check() *checker {
	ck := &checker{c: c}
	ck.top()
	ck.listen()
	ck.registrar()
	ck.auth()
	ck.security()
	ck.proxy()
	ck.admin()
	ck.media()
	ck.keepalive()
	ck.stun()
	ck.users()
	ck.routes()
	return ck
}

func (ck *checker) top() {
	c := ck.c
	if c.DataDir == "" {
		ck.errorf("data_dir", "must not be empty")
	}
	if len(c.Domains) == 0 {
		ck.errorf("domains", "must list at least one domain")
	}
	seen := make(map[string]int)
	for i, d := range c.Domains {
		key := indexKey("domains", i)
		if !validDomain(d) {
			ck.errorf(key, "%q is not a valid host name or IP address", d)
			continue
		}
		norm := strings.ToLower(strings.Trim(d, "[]"))
		if j, dup := seen[norm]; dup {
			ck.errorf(key, "%q is a duplicate of domains[%d]", d, j)
			continue
		}
		seen[norm] = i
	}
	ck.prefixes("local_nets", c.LocalNets)
	ck.external()
	ck.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	ck.oneOf("log.format", c.Log.Format, "text", "json")
	ck.oneOf("nat.mode", c.NAT.Mode, NATAuto, NATForce, NATNever)
}

func (ck *checker) prefixes(key string, ps []Prefix) {
	for i, p := range ps {
		if !p.IsValid() {
			ck.errorf(indexKey(key, i), "not a valid network")
		}
	}
}

// oneOf checks that v is one of want; an empty v passes only if "" is listed.
func (ck *checker) oneOf(key, v string, want ...string) {
	for _, w := range want {
		if v == w {
			return
		}
	}
	quoted := make([]string, 0, len(want))
	for _, w := range want {
		if w != "" {
			quoted = append(quoted, strconv.Quote(w))
		}
	}
	var list string
	switch n := len(quoted); n {
	case 1:
		list = quoted[0]
	case 2:
		list = quoted[0] + " or " + quoted[1]
	default:
		list = strings.Join(quoted[:n-1], ", ") + " or " + quoted[n-1]
	}
	if v == "" {
		ck.errorf(key, "must be %s", list)
		return
	}
	ck.errorf(key, "must be %s, not %q", list, v)
}

func (ck *checker) listen() {
	c := ck.c
	if len(c.Listen) == 0 {
		ck.errorf("listen", "must have at least one listener")
	}
	seen := make(map[string]int)
	for i, l := range c.Listen {
		elem := indexKey("listen", i)
		ck.oneOf(elem+".transport", l.Transport, TransportUDP, TransportTCP)
		ap, err := parseAddrPort(l.Address)
		switch {
		case err != nil:
			ck.errorf(elem+".address", "%v", err)
		case ap.Port() == 0:
			ck.warnf(elem+".address", "port 0: the kernel picks a free port at each start, which phones cannot be configured with (fine in tests)")
		default:
			id := l.Transport + " " + ap.String()
			if j, dup := seen[id]; dup {
				ck.errorf(ck.pick(elem+".address", elem), "duplicate of listen[%d] (%s)", j, id)
			} else {
				seen[id] = i
			}
		}
		if l.Advertise != "" {
			if err := checkHostPort(l.Advertise); err != nil {
				ck.errorf(elem+".advertise", "%q: %v", l.Advertise, err)
			}
		}
	}
}

func (ck *checker) registrar() {
	r := ck.c.Registrar
	const (
		kMin = "registrar.min_expires"
		kMax = "registrar.max_expires"
		kDef = "registrar.default_expires"
	)
	ok := true
	for _, e := range []struct {
		key string
		d   Duration
	}{{kMin, r.MinExpires}, {kMax, r.MaxExpires}, {kDef, r.DefaultExpires}} {
		switch {
		case e.d.Duration <= 0:
			ck.errorf(e.key, "must be positive, not %s", e.d)
			ok = false
		case e.d.Duration%time.Second != 0:
			// Expires values are whole seconds on the wire.
			ck.errorf(e.key, "must be a whole number of seconds, not %s", e.d)
			ok = false
		}
	}
	if ok {
		switch {
		case r.MinExpires.Duration > r.MaxExpires.Duration:
			ck.errorf(ck.pick(kMax, kMin), "max_expires (%s) must not be less than min_expires (%s)", r.MaxExpires, r.MinExpires)
		case r.DefaultExpires.Duration < r.MinExpires.Duration || r.DefaultExpires.Duration > r.MaxExpires.Duration:
			ck.errorf(ck.pick(kDef, kMax, kMin), "default_expires (%s) must be between min_expires (%s) and max_expires (%s)",
				r.DefaultExpires, r.MinExpires, r.MaxExpires)
		}
	}
	if r.MaxContacts < 1 {
		ck.errorf("registrar.max_contacts", "must be at least 1, not %d", r.MaxContacts)
	}
	ck.positive("registrar.flush_interval", r.FlushInterval)
}

func (ck *checker) positive(key string, d Duration) {
	if d.Duration <= 0 {
		ck.errorf(key, "must be positive, not %s", d)
	}
}

func (ck *checker) auth() {
	a := ck.c.Auth
	if strings.ContainsAny(a.Realm, "\"\\") || hasControl(a.Realm) {
		ck.errorf("auth.realm", "must not contain quotes, backslashes or control characters")
	}
	if len(a.Algorithms) == 0 {
		ck.errorf("auth.algorithms", "must list at least one of %q, %q", AlgorithmSHA256, AlgorithmMD5)
	}
	seen := make(map[string]int)
	for i, alg := range a.Algorithms {
		key := indexKey("auth.algorithms", i)
		if alg != AlgorithmSHA256 && alg != AlgorithmMD5 {
			ck.oneOf(key, alg, AlgorithmSHA256, AlgorithmMD5)
			continue
		}
		if j, dup := seen[alg]; dup {
			ck.errorf(key, "%q is a duplicate of auth.algorithms[%d]", alg, j)
		}
		seen[alg] = i
	}
	ck.positive("auth.nonce_ttl", a.NonceTTL)
}

func (ck *checker) security() {
	s := ck.c.Security
	switch {
	case !isFinite(s.RateLimit) || s.RateLimit < 0:
		ck.errorf("security.rate_limit", "must be a non-negative number (0 disables), not %v", s.RateLimit)
	case s.RateLimit > 0 && s.RateBurst < 1:
		ck.errorf(ck.pick("security.rate_burst", "security.rate_limit"), "rate_burst must be at least 1 when rate_limit is set, not %d", s.RateBurst)
	}
	if s.RateBurst < 0 {
		ck.errorf("security.rate_burst", "must not be negative, not %d", s.RateBurst)
	}
	if s.BanFailures < 0 {
		ck.errorf("security.ban_failures", "must not be negative (0 disables banning), not %d", s.BanFailures)
	}
	for _, e := range []struct {
		key string
		d   Duration
	}{{"security.ban_window", s.BanWindow}, {"security.ban_time", s.BanTime}} {
		switch {
		case e.d.Duration < 0:
			ck.errorf(e.key, "must not be negative, not %s", e.d)
		case e.d.Duration == 0 && s.BanFailures > 0:
			ck.errorf(e.key, "must be positive when ban_failures is set")
		}
	}
	for i, ua := range s.ScannerUserAgents {
		if strings.TrimSpace(ua) == "" {
			ck.errorf(indexKey("security.scanner_user_agents", i), "must not be empty (it would match every User-Agent)")
		}
	}
	ck.prefixes("security.trusted", s.Trusted)
}

func (ck *checker) proxy() {
	p := ck.c.Proxy
	if p.MaxForwards < 1 || p.MaxForwards > 255 {
		ck.errorf("proxy.max_forwards", "must be between 1 and 255, not %d", p.MaxForwards)
	}
	ck.positive("proxy.invite_timeout", p.InviteTimeout)
	ck.positive("proxy.max_call_duration", p.MaxCallDuration)
	if p.UDPMaxSize < 1 || p.UDPMaxSize > 65507 {
		ck.errorf("proxy.udp_max_size", "must be between 1 and 65507 bytes, not %d", p.UDPMaxSize)
	}
}

// external checks external_address and external_refresh.
func (ck *checker) external() {
	v := ck.c.ExternalAddress
	switch {
	case v == "", v == ExternalAuto, v == ExternalUPnP, v == ExternalNATPMP, v == ExternalPCP:
	case strings.HasPrefix(v, "stun:"):
		if _, _, err := SplitSTUN(v); err != nil {
			ck.errorf("external_address", "%v", err)
		}
	default:
		if ip, err := netip.ParseAddr(v); err == nil {
			if ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() {
				ck.errorf("external_address", "%s cannot be sipedge's public address", ip)
			}
		} else if !validHostname(v) {
			ck.errorf("external_address", "%q is neither an IP address, a host name, \"stun:host[:port]\" nor one of auto, upnp, natpmp, pcp", v)
		}
	}
	if v != "" {
		ck.positive("external_refresh", ck.c.ExternalRefresh)
	}
	if s := ck.c.ExternalSTUN; s != "" {
		if _, _, err := SplitSTUN("stun:" + s); err != nil {
			ck.errorf("external_stun", "%q: want host or host:port", s)
		} else if v != ExternalAuto {
			ck.warnf("external_stun", "ignored: only external_address = \"auto\" asks it")
		}
	}
	ck.positive("portmap.check_interval", ck.c.Portmap.CheckInterval)
	if n := ck.c.Portmap.RTPRangeMax; n < 0 || n > 10000 {
		ck.errorf("portmap.rtp_range_max", "must be between 0 and 10000 ports, not %d", n)
	}
}

func (ck *checker) keepalive() {
	k := ck.c.Keepalive
	ck.oneOf("keepalive.method", k.Method, KeepaliveOptions, KeepaliveCRLF)
	ck.keepaliveInterval("keepalive.interval", k.Interval)
	ck.positive("keepalive.timeout", k.Timeout)
	ck.positive("keepalive.lagged", k.Lagged)
	if k.Misses < 1 || k.Misses > 100 {
		ck.errorf("keepalive.misses", "must be between 1 and 100, not %d", k.Misses)
	}
	if k.Timeout.Duration > 0 && k.Lagged.Duration > k.Timeout.Duration {
		ck.warnf("keepalive.lagged", "%s is longer than keepalive.timeout (%s): no answer can be LAGGED", k.Lagged.Duration, k.Timeout.Duration)
	}
}

// keepaliveInterval checks an interval: 0 (off) or at least a second; over
// 2 minutes outlives most NATs' UDP timeouts.
func (ck *checker) keepaliveInterval(key string, d Duration) {
	switch {
	case d.Duration < 0:
		ck.errorf(key, "must not be negative")
	case d.Duration > 0 && d.Duration < time.Second:
		ck.errorf(key, "%s is too short: at least 1s, or 0s for off", d.Duration)
	case d.Duration > 2*time.Minute:
		ck.warnf(key, "%s is longer than many NATs keep an idle UDP binding (30 s to 2 min): incoming calls may be lost", d.Duration)
	}
}

func (ck *checker) media() {
	m := ck.c.Media
	ck.oneOf("media.mode", m.Mode, MediaAlways, MediaNAT, MediaNever)
	ck.oneOf("media.kernel", m.Kernel, KernelOff, KernelAuto, KernelOn)
	for i, n := range m.KernelInterfaces {
		if n == "" || len(n) > 15 || strings.ContainsAny(n, "/ \t") {
			ck.errorf(fmt.Sprintf("media.kernel_interfaces[%d]", i), "%q is not an interface name", n)
		}
	}
	if len(m.KernelInterfaces) > 0 && m.Kernel == KernelOff {
		ck.warnf("media.kernel_interfaces", "ignored while media.kernel is \"off\"")
	}
	if _, _, err := m.PortRange(); err != nil {
		ck.errorf("media.ports", "%v", err)
	}
	for _, k := range []struct{ key, v string }{{"media.address", m.Address}, {"media.advertise", m.Advertise}} {
		if k.v == "" {
			continue
		}
		if ip, err := netip.ParseAddr(k.v); err != nil || ip.Zone() != "" {
			ck.errorf(k.key, "%q is not an IP address", k.v)
		}
	}
	ck.positive("media.timeout", m.Timeout)
	ck.positive("media.hold_timeout", m.HoldTimeout)
	ck.positive("media.learning", m.Learning)
	if m.Probation < 1 || m.Probation > 50 {
		ck.errorf("media.probation", "must be between 1 and 50 packets, not %d", m.Probation)
	}
	if m.Timeout.Duration > 0 && m.Timeout.Duration < 10*time.Second {
		ck.warnf("media.timeout", "%s is short: a phone that sends no RTP during silence (VAD) may be hung up", m.Timeout.Duration)
	}
}

func (ck *checker) admin() {
	a := ck.c.Admin
	if a.TraceCalls < 0 || a.TraceCalls > 100000 {
		ck.errorf("admin.trace_calls", "must be 0 (off) to 100000, not %d", a.TraceCalls)
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		ck.errorf(ck.pick("admin.tls_cert", "admin.tls_key"), "tls_cert and tls_key go together: set both or neither")
	}
	l := a.Listen
	if l == AdminOff {
		return
	}
	ap, err := parseAddrPort(l)
	if err != nil {
		ck.errorf("admin.listen", "must be %q or ip:port: %v", AdminOff, err)
		return
	}
	if ap.Port() == 0 {
		ck.warnf("admin.listen", "port 0: the kernel picks a free port at each start, which the CLI cannot find (fine in tests)")
	}
	if !ap.Addr().IsLoopback() {
		if a.TLSCert == "" {
			ck.warnf("admin.listen", "the admin API listens on %s, not on a loopback address, without TLS: the token crosses the network in clear; set admin.tls_cert and admin.tls_key, and make sure a firewall protects it", ap)
		} else {
			ck.warnf("admin.listen", "the admin API listens on %s, not on a loopback address; make sure a firewall protects it", ap)
		}
	}
}

// stun checks the stand-alone STUN server: its addresses, none of which
// may be bound by a SIP listener or the admin API, RFC 5780 mode, and
// the rate limit.
func (ck *checker) stun() {
	c := ck.c
	s := c.STUN
	const (
		kListen = "stun.listen"
		kAlt    = "stun.alternate_address"
		kPort   = "stun.alternate_port"
		kRate   = "stun.rate_limit"
		kBurst  = "stun.rate_burst"
	)
	switch {
	case !isFinite(s.RateLimit) || s.RateLimit < 0:
		ck.errorf(kRate, "must be a non-negative number (0 disables), not %v", s.RateLimit)
	case s.RateLimit > 0 && s.RateBurst < 1:
		ck.errorf(ck.pick(kBurst, kRate), "rate_burst must be at least 1 when rate_limit is set, not %d", s.RateBurst)
	case s.RateLimit == 0 && len(s.Listen) > 0:
		ck.warnf(kRate, "0 disables the per-source limit: a STUN server on a public address can then be used to reflect floods at spoofed addresses")
	}
	if s.RateBurst < 0 {
		ck.errorf(kBurst, "must not be negative, not %d", s.RateBurst)
	}

	rfc5780 := s.AlternateAddress != ""
	addrs := make([]netip.AddrPort, len(s.Listen)) // invalid where unparsable
	for i, l := range s.Listen {
		key := indexKey(kListen, i)
		ap, err := parseAddrPort(l)
		if err != nil {
			ck.errorf(key, "%v", err)
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		addrs[i] = ap
		if ap.Port() == 0 {
			if !rfc5780 {
				ck.warnf(key, "port 0: the kernel picks a free port at each start, which clients cannot be configured with (fine in tests)")
			}
			continue
		}
		dup := false
		for j := range i {
			if addrs[j].IsValid() && overlaps(addrs[j], ap) {
				ck.errorf(key, "%s overlaps stun.listen[%d] (%s): both cannot be bound", ap, j, addrs[j])
				dup = true
				break
			}
		}
		if !dup {
			ck.stunConflict(key, ap, false)
		}
		ck.stunMediaPort(key, ap.Port())
	}

	if !rfc5780 {
		if s.AlternatePort != 0 {
			ck.warnf(kPort, "ignored: it is the second port of RFC 5780 mode, which stun.alternate_address turns on")
		}
		return
	}
	alt, err := netip.ParseAddr(s.AlternateAddress)
	switch {
	case err != nil || alt.Zone() != "":
		ck.errorf(kAlt, "%q is not an IP address", s.AlternateAddress)
		alt = netip.Addr{}
	case alt.IsUnspecified():
		ck.errorf(kAlt, "must be a second IP address of this host, not the wildcard %s", alt)
		alt = netip.Addr{}
	}
	alt = alt.Unmap()
	if s.AlternatePort < 0 || s.AlternatePort > 65535 {
		ck.errorf(kPort, "must be between 1 and 65535 (0: the primary port + 1), not %d", s.AlternatePort)
	}
	switch len(s.Listen) {
	case 0:
		ck.warnf(kAlt, "ignored: stun.listen is empty, so the STUN server is off")
		return
	case 1:
	default:
		ck.errorf(ck.pick(kListen, kAlt), "RFC 5780 mode (stun.alternate_address is set) takes exactly one address, the primary, not %d", len(s.Listen))
		return
	}
	primary := addrs[0]
	if !primary.IsValid() {
		return
	}
	key0 := indexKey(kListen, 0)
	if primary.Addr().IsUnspecified() {
		ck.errorf(key0, "RFC 5780 mode (stun.alternate_address is set) needs a concrete IP address, not %s: "+
			"the server must know its own addresses to send RESPONSE-ORIGIN and OTHER-ADDRESS and to answer from the other one when a client asks (CHANGE-REQUEST)", primary.Addr())
		return
	}
	if primary.Port() == 0 {
		ck.errorf(key0, "RFC 5780 mode (stun.alternate_address is set) needs a fixed port, not 0")
		return
	}
	if !alt.IsValid() {
		return
	}
	switch {
	case alt.Is4() != primary.Addr().Is4():
		ck.errorf(kAlt, "%s and the primary address %s (stun.listen[0]) must both be IPv4 or both IPv6", alt, primary.Addr())
		return
	case alt == primary.Addr():
		ck.errorf(kAlt, "%s is the primary address (stun.listen[0]); RFC 5780 mode needs a second IP address of this host", alt)
		return
	}
	altPort := c.STUNAlternatePort()
	switch {
	case s.AlternatePort == 0 && altPort == 0:
		ck.errorf(ck.pick(kPort, key0), "primary port 65535 leaves no room for the default alternate port (primary + 1); set stun.alternate_port")
		return
	case altPort == int(primary.Port()):
		ck.errorf(kPort, "%d is the primary port; RFC 5780 mode needs a second port", altPort)
		return
	case altPort < 1 || altPort > 65535:
		return // reported above
	}
	// The three other addresses of the four RFC 5780 sockets.
	p2 := uint16(altPort)
	kp := ck.pick(kPort, kAlt)
	ck.stunConflict(kp, netip.AddrPortFrom(primary.Addr(), p2), true)
	ck.stunConflict(kAlt, netip.AddrPortFrom(alt, primary.Port()), true)
	ck.stunConflict(kAlt, netip.AddrPortFrom(alt, p2), true)
	ck.stunMediaPort(kp, p2)
}

// stunConflict reports a STUN server address that a SIP listener or the
// admin API binds too. derived is true for the RFC 5780 addresses made of
// the alternate IP or port, which stun.listen does not name.
func (ck *checker) stunConflict(key string, ap netip.AddrPort, derived bool) {
	c := ck.c
	what, fix := "", "give the STUN server a port of its own (3478 is the standard one)"
	if derived {
		what = " (one of the four RFC 5780 addresses)"
		fix = "choose a stun.listen port and a stun.alternate_port that the SIP listeners do not use"
	}
	for j, l := range c.Listen {
		sip, err := parseAddrPort(l.Address)
		if err != nil || !overlaps(sip, ap) {
			continue
		}
		switch l.Transport {
		case TransportUDP:
			if !derived {
				fix = "remove it from stun.listen, or " + fix
			}
			ck.errorf(key, "%s%s is also SIP listener listen[%d] (udp %s), which answers STUN Binding requests already: %s", ap, what, j, l.Address, fix)
			return
		case TransportTCP:
			ck.errorf(key, "%s%s is also SIP listener listen[%d] (tcp %s); the STUN server listens on TCP as well: %s", ap, what, j, l.Address, fix)
			return
		}
	}
	if !c.AdminDisabled() {
		if adm, err := parseAddrPort(c.Admin.Listen); err == nil && overlaps(adm, ap) {
			ck.errorf(key, "%s%s is also the admin API's address (admin.listen %s); the STUN server listens on TCP as well", ap, what, c.Admin.Listen)
		}
	}
}

// stunMediaPort warns when a STUN server port lies in the media range.
func (ck *checker) stunMediaPort(key string, port uint16) {
	m := ck.c.Media
	if lo, hi, err := m.PortRange(); err == nil && int(port) >= lo && int(port) <= hi {
		ck.warnf(key, "port %d lies in media.ports (%s): the relay cannot use it while the STUN server holds it", port, m.Ports)
	}
}

// overlaps reports whether binding a and b (same transport) would clash:
// the same port on the same IP, or on any IP when either is a wildcard
// (Go binds 0.0.0.0 and [::] dual-stack). Port 0 never clashes.
func overlaps(a, b netip.AddrPort) bool {
	if a.Port() == 0 || a.Port() != b.Port() {
		return false
	}
	x, y := a.Addr().Unmap(), b.Addr().Unmap()
	return x == y || x.IsUnspecified() || y.IsUnspecified()
}

var (
	ha1MD5Re    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	ha1SHA256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func (ck *checker) users() {
	c := ck.c
	seen := make(map[string]int)
	for i, u := range c.Users {
		elem := indexKey("users", i)
		switch {
		case u.Name == "":
			ck.errorf(ck.pick(elem+".name", elem), "name must not be empty")
		case !validSIPUser(u.Name):
			ck.errorf(elem+".name", "%q is not a valid SIP user name (letters, digits and -_.!~*'()&=+$,;?/ only)", u.Name)
		default:
			if j, dup := seen[u.Name]; dup {
				ck.errorf(elem+".name", "%q is a duplicate of users[%d]", u.Name, j)
			}
			seen[u.Name] = i
		}

		hasHA1 := u.HA1MD5 != "" || u.HA1SHA256 != ""
		switch {
		case u.Password != "" && hasHA1:
			ck.errorf(ck.pick(elem+".password", elem), "set either password or ha1_md5/ha1_sha256, not both")
		case u.Password == "" && !hasHA1:
			ck.errorf(elem, "needs a password, or ha1_md5 and/or ha1_sha256")
		}
		if u.HA1MD5 != "" && !ha1MD5Re.MatchString(u.HA1MD5) {
			ck.errorf(elem+".ha1_md5", "must be 32 lowercase hex digits (MD5 of \"user:realm:password\")")
		}
		if u.HA1SHA256 != "" && !ha1SHA256Re.MatchString(u.HA1SHA256) {
			ck.errorf(elem+".ha1_sha256", "must be 64 lowercase hex digits (SHA-256 of \"user:realm:password\")")
		}
		if u.Password == "" && hasHA1 {
			usable := false
			for _, alg := range c.Auth.Algorithms {
				usable = usable || alg == AlgorithmMD5 && u.HA1MD5 != "" || alg == AlgorithmSHA256 && u.HA1SHA256 != ""
			}
			if !usable {
				ck.errorf(elem, "has no password and no HA1 for any algorithm in auth.algorithms %q", c.Auth.Algorithms)
			}
			if c.Auth.Realm == "" {
				ck.warnf(elem, "HA1 values depend on the realm; set auth.realm so that changing domains cannot invalidate them (realm now %q)", c.Realm())
			}
		}
		if u.NAT != "" {
			ck.oneOf(elem+".nat", u.NAT, NATAuto, NATForce, NATNever)
		}
		if u.Keepalive != nil {
			ck.keepaliveInterval(elem+".keepalive", *u.Keepalive)
		}
		if u.Media != "" {
			ck.oneOf(elem+".media", u.Media, MediaAlways, MediaNAT, MediaNever)
		}
	}
}

func (ck *checker) routes() {
	seen := make(map[string]int)
	for i, r := range ck.c.Routes {
		elem := indexKey("routes", i)
		if r.Name != "" {
			if j, dup := seen[r.Name]; dup {
				ck.errorf(elem+".name", "%q is a duplicate of routes[%d]", r.Name, j)
			}
			seen[r.Name] = i
		}
		if _, err := r.UserRegexp(); err != nil {
			ck.errorf(elem+".user", "%v", err)
		}
		if r.Domain != "" && !validDomain(r.Domain) {
			ck.errorf(elem+".domain", "%q is not a valid host name or IP address", r.Domain)
		}
		if r.To == "" {
			ck.errorf(ck.pick(elem+".to", elem), "to must be set to a SIP URI, e.g. \"sip:198.51.100.20:5060\"")
		} else if err := checkSIPURI(r.To); err != nil {
			ck.errorf(elem+".to", "%v", err)
		}
		if r.NAT != "" {
			ck.oneOf(elem+".nat", r.NAT, NATAuto, NATForce, NATNever)
		}
		ck.keepaliveInterval(elem+".keepalive", r.Keepalive)
		if r.Media != "" {
			ck.oneOf(elem+".media", r.Media, MediaAlways, MediaNAT, MediaNever)
		}
	}
}

// UserRegexp compiles r.User. The expression is matched against the
// Request-URI user part with regexp.MatchString semantics, so it matches
// anywhere unless anchored: write "^00[1-9]" or "^1[0-9]{3}$". An empty
// r.User compiles to an expression that matches every user. Compile once
// when building the routing table, not per request.
func (r Route) UserRegexp() (*regexp.Regexp, error) {
	re, err := regexp.Compile(r.User)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression %q: %w", r.User, err)
	}
	return re, nil
}

// parseAddrPort parses an IP:port to bind to. The IP may be unspecified
// (0.0.0.0, [::]); IPv6 needs brackets. Port 0 (the kernel picks a free
// port) is accepted for tests, which boot on 127.0.0.1:0; Warnings flags it.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("%q is not ip:port (e.g. \"0.0.0.0:5060\" or \"[::]:5060\")", s)
	}
	return ap, nil
}

// checkHostPort checks a host with an optional port: "203.0.113.5",
// "sip.example.com:5070", "[2001:db8::1]:5060" or "2001:db8::1". Errors do
// not repeat s; callers say where it came from.
func checkHostPort(s string) error {
	host, port, hasPort := s, "", false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return errors.New("missing ']'")
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return fmt.Errorf("unexpected %q after ']'", rest)
			}
			port, hasPort = p, true
		}
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() || ip.Zone() != "" {
			return fmt.Errorf("%q is not an IPv6 address", host)
		}
	case strings.Count(s, ":") > 1:
		if ip, err := netip.ParseAddr(s); err != nil || ip.Zone() != "" {
			return errors.New("not a host, host:port or IPv6 address")
		}
		return nil
	default:
		host, port, hasPort = strings.Cut(s, ":")
		if !validHost(host) {
			return fmt.Errorf("%q is not a valid host name or IP address", host)
		}
	}
	if hasPort && !validPort(port) {
		return errors.New("port must be 1-65535")
	}
	return nil
}

func validPort(s string) bool {
	if s == "" || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// checkSIPURI checks a next-hop URI: sip: or sips:, a host (name, IPv4 or
// [IPv6]), an optional port and optional ;parameters. A user part or
// ?headers are rejected: a next hop names a host, and the Request-URI user
// is forwarded unchanged.
func checkSIPURI(s string) error {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || !strings.EqualFold(scheme, "sip") && !strings.EqualFold(scheme, "sips") {
		return fmt.Errorf("%q is not a SIP URI (want e.g. \"sip:198.51.100.20:5060\")", s)
	}
	if strings.Contains(rest, "@") {
		return fmt.Errorf("%q: a next hop must not have a user part (the Request-URI user is kept)", s)
	}
	if strings.Contains(rest, "?") {
		return fmt.Errorf("%q: a next hop must not have headers", s)
	}
	hostport, params, hasParams := strings.Cut(rest, ";")
	if hostport == "" {
		return fmt.Errorf("%q: missing host", s)
	}
	if strings.Count(hostport, ":") > 1 && !strings.HasPrefix(hostport, "[") {
		return fmt.Errorf("%q: an IPv6 host must be in brackets, e.g. sip:[2001:db8::1]:5060", s)
	}
	if err := checkHostPort(hostport); err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if !hasParams {
		return nil
	}
	for p := range strings.SplitSeq(params, ";") {
		name, value, hasValue := strings.Cut(p, "=")
		if !validParamChars(name) || hasValue && !validParamChars(value) {
			return fmt.Errorf("%q: invalid parameter %q", s, p)
		}
		if strings.EqualFold(name, "transport") && !strings.EqualFold(value, TransportUDP) && !strings.EqualFold(value, TransportTCP) {
			return fmt.Errorf("%q: transport must be udp or tcp", s)
		}
	}
	return nil
}

// validParamChars reports whether s is a non-empty run of URI parameter
// characters (RFC 3261 paramchar, %HH escapes included).
func validParamChars(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isAlnum(c) || strings.IndexByte("-_.!~*'()[]/:&+$", c) >= 0:
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

// validSIPUser reports whether s may be used unescaped as the user part of
// a SIP URI (RFC 3261: unreserved / user-unreserved).
func validSIPUser(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && strings.IndexByte("-_.!~*'()&=+$,;?/", c) < 0 {
			return false
		}
	}
	return true
}

// validDomain reports whether s is a host name, an IP address or a
// bracketed IPv6 address.
func validDomain(s string) bool {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		ip, err := netip.ParseAddr(s[1 : len(s)-1])
		return err == nil && ip.Is6() && ip.Zone() == ""
	}
	return validHost(s)
}

// validHost reports whether s is an IP address (no zone) or a host name as
// RFC 3261 defines it: dot-separated labels of letters, digits and inner
// hyphens, the last one starting with a letter.
func validHost(s string) bool {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Zone() == ""
	}
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if !isAlnum(l[i]) && l[i] != '-' {
				return false
			}
		}
	}
	top := labels[len(labels)-1]
	return top[0] >= 'a' && top[0] <= 'z' || top[0] >= 'A' && top[0] <= 'Z'
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// validHostname reports whether s looks like a DNS host name: labels of
// letters, digits and hyphens, separated by dots.
func validHostname(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
