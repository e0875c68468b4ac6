package config

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	c := Default()
	tests := []struct {
		key       string
		got, want any
	}{
		{"data_dir", c.DataDir, "./sipedge-data"},
		{"domains", c.Domains, []string{"sipedge.local"}},
		{"local_nets", c.LocalNets, []Prefix(nil)},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"listen", c.Listen, []Listen{
			{Transport: "udp", Address: "0.0.0.0:5060"},
			{Transport: "tcp", Address: "0.0.0.0:5060"},
		}},
		{"nat.mode", c.NAT.Mode, "auto"},
		{"registrar.min_expires", c.Registrar.MinExpires.Duration, 60 * time.Second},
		{"registrar.max_expires", c.Registrar.MaxExpires.Duration, 3600 * time.Second},
		{"registrar.default_expires", c.Registrar.DefaultExpires.Duration, 3600 * time.Second},
		{"registrar.max_contacts", c.Registrar.MaxContacts, 10},
		{"registrar.flush_interval", c.Registrar.FlushInterval.Duration, 100 * time.Millisecond},
		{"auth.realm", c.Auth.Realm, ""},
		{"auth.algorithms", c.Auth.Algorithms, []string{"SHA-256", "MD5"}},
		{"auth.nonce_ttl", c.Auth.NonceTTL.Duration, 5 * time.Minute},
		{"auth.secret", c.Auth.Secret, ""},
		{"security.rate_limit", c.Security.RateLimit, 200.0},
		{"security.rate_burst", c.Security.RateBurst, 400},
		{"security.ban_failures", c.Security.BanFailures, 10},
		{"security.ban_window", c.Security.BanWindow.Duration, 5 * time.Minute},
		{"security.ban_time", c.Security.BanTime.Duration, 15 * time.Minute},
		{"security.scanner_user_agents", c.Security.ScannerUserAgents, []string{
			"friendly-scanner", "sipvicious", "sipcli", "sip-scan", "VaxSIPUserAgent",
			"iWar", "sundayddr", "SIVuS", "smap",
		}},
		{"security.trusted", c.Security.Trusted, []Prefix(nil)},
		{"proxy.max_forwards", c.Proxy.MaxForwards, 70},
		{"proxy.invite_timeout", c.Proxy.InviteTimeout.Duration, 120 * time.Second},
		{"proxy.udp_max_size", c.Proxy.UDPMaxSize, 1300},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:5080"},
		{"stun.listen", c.STUN.Listen, []string{"0.0.0.0:3478"}},
		{"stun.alternate_address", c.STUN.AlternateAddress, ""},
		{"stun.alternate_port", c.STUN.AlternatePort, 0},
		{"stun.rate_limit", c.STUN.RateLimit, 20.0},
		{"stun.rate_burst", c.STUN.RateBurst, 40},
		{"stun.software", c.STUN.Software, true},
		{"STUNAlternatePort", c.STUNAlternatePort(), 3479},
		{"admin.token", c.Admin.Token, ""},
		{"admin.trace_calls", c.Admin.TraceCalls, 100},
		{"admin.tls_cert", c.Admin.TLSCert, ""},
		{"users", c.Users, []User(nil)},
		{"routes", c.Routes, []Route(nil)},
		{"RouteNAT", c.RouteNAT(Route{}), "never"},
		{"UserNAT", c.UserNAT(User{}), "auto"},
		{"Realm", c.Realm(), "sipedge.local"},
		{"AdminDisabled", c.AdminDisabled(), false},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.key, tt.got, tt.want)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("Default().Warnings() = %q", w)
	}
}

func TestDefaultScannersExcludeLegitimateTools(t *testing.T) {
	for _, legit := range []string{"sipsak", "PortSIP", "pplsip"} {
		if slices.Contains(Default().Security.ScannerUserAgents, legit) {
			t.Errorf("scanner list contains %q", legit)
		}
	}
}

func TestDefaultReturnsIndependentCopies(t *testing.T) {
	a := Default()
	a.Domains[0] = "changed"
	a.Listen[0].Address = "changed"
	a.Auth.Algorithms[0] = "changed"
	a.Security.ScannerUserAgents[0] = "changed"
	b := Default()
	if b.Domains[0] != "sipedge.local" || b.Listen[0].Address != "0.0.0.0:5060" ||
		b.Auth.Algorithms[0] != "SHA-256" || b.Security.ScannerUserAgents[0] != "friendly-scanner" {
		t.Errorf("Default shares slices between calls: %+v", b)
	}
}

func TestUserNAT(t *testing.T) {
	tests := []struct {
		global, user, want string
	}{
		{"auto", "", "auto"},
		{"force", "", "force"},
		{"never", "", "never"},
		{"auto", "force", "force"},
		{"force", "never", "never"},
	}
	for _, tt := range tests {
		c := Default()
		c.NAT.Mode = tt.global
		if got := c.UserNAT(User{Name: "u", NAT: tt.user}); got != tt.want {
			t.Errorf("nat.mode=%q user nat=%q: UserNAT = %q, want %q", tt.global, tt.user, got, tt.want)
		}
	}
}

func TestRouteNAT(t *testing.T) {
	tests := []struct {
		global, route, want string
	}{
		{"auto", "", "never"}, // routes do not inherit nat.mode
		{"force", "", "never"},
		{"auto", "auto", "auto"},
		{"never", "force", "force"},
	}
	for _, tt := range tests {
		c := Default()
		c.NAT.Mode = tt.global
		if got := c.RouteNAT(Route{NAT: tt.route}); got != tt.want {
			t.Errorf("nat.mode=%q route nat=%q: RouteNAT = %q, want %q", tt.global, tt.route, got, tt.want)
		}
	}
}

func TestRealm(t *testing.T) {
	tests := []struct {
		realm   string
		domains []string
		want    string
	}{
		{"", []string{"a.example.com", "b.example.com"}, "a.example.com"},
		{"corp", []string{"a.example.com"}, "corp"},
		{"", nil, ""},
	}
	for _, tt := range tests {
		c := Default()
		c.Auth.Realm, c.Domains = tt.realm, tt.domains
		if got := c.Realm(); got != tt.want {
			t.Errorf("realm %q domains %q: Realm() = %q, want %q", tt.realm, tt.domains, got, tt.want)
		}
	}
}

func TestAdminDisabled(t *testing.T) {
	for listen, want := range map[string]bool{
		"off":            true,
		"127.0.0.1:5080": false,
		"OFF":            false, // not a valid value; Validate says so
		"":               false,
	} {
		c := Default()
		c.Admin.Listen = listen
		if got := c.AdminDisabled(); got != want {
			t.Errorf("admin.listen %q: AdminDisabled() = %v, want %v", listen, got, want)
		}
	}
}

func TestSplitSTUN(t *testing.T) {
	for _, c := range []struct {
		in, host string
		port     int
		ok       bool
	}{
		{"stun:stun.example.com", "stun.example.com", 3478, true},
		{"stun:stun.example.com:19302", "stun.example.com", 19302, true},
		{"stun:198.51.100.1:3479", "198.51.100.1", 3479, true},
		{"stun:[2001:db8::1]:3479", "2001:db8::1", 3479, true},
		{"stun:2001:db8::1", "2001:db8::1", 3478, true},
		{"stun:", "", 0, false},
		{"stun:host:0", "", 0, false},
		{"stun:a b", "", 0, false},
		{"turn:x", "", 0, false},
	} {
		h, p, err := SplitSTUN(c.in)
		if (err == nil) != c.ok || h != c.host || p != c.port {
			t.Errorf("SplitSTUN(%q) = %q, %d, %v", c.in, h, p, err)
		}
	}
}
