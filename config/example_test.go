package config

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

const examplePath = "../examples/sipedge.toml"

// TestExample loads the example an admin copies and checks what it says,
// so that it cannot rot.
func TestExample(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatalf("Load(%s): %v", examplePath, err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	var prefixes []string
	for _, p := range append(c.LocalNets, c.Security.Trusted...) {
		prefixes = append(prefixes, p.String())
	}
	tests := []struct {
		key       string
		got, want any
	}{
		{"data_dir", c.DataDir, "/var/lib/sipedge"},
		{"domains", c.Domains, []string{"example.com"}},
		{"local_nets+trusted", prefixes, []string{"10.20.0.0/16", "198.51.100.0/24"}},
		{"log", c.Log, Default().Log},
		{"listen", c.Listen, []Listen{
			{Transport: "udp", Address: "0.0.0.0:5060", Advertise: "203.0.113.10"},
			{Transport: "tcp", Address: "0.0.0.0:5060", Advertise: "203.0.113.10"},
		}},
		{"nat", c.NAT, Default().NAT},
		{"registrar", c.Registrar, Default().Registrar},
		{"auth.realm", c.Auth.Realm, "example.com"},
		{"auth.algorithms", c.Auth.Algorithms, Default().Auth.Algorithms},
		{"auth.nonce_ttl", c.Auth.NonceTTL, Default().Auth.NonceTTL},
		{"auth.secret", c.Auth.Secret, ""},
		{"security.scanner_user_agents", c.Security.ScannerUserAgents, Default().Security.ScannerUserAgents},
		{"security.rate_limit", c.Security.RateLimit, Default().Security.RateLimit},
		{"security.ban_time", c.Security.BanTime.Duration, 15 * time.Minute},
		{"proxy", c.Proxy, Default().Proxy},
		{"admin", c.Admin, Default().Admin},
		{"users[0]", c.Users[0], User{Name: "alice", Password: "change-me-to-a-long-secret"}},
		{"users[1].name", c.Users[1].Name, "bob"},
		{"users[1] has both HA1", c.Users[1].HA1MD5 != "" && c.Users[1].HA1SHA256 != "", true},
		{"UserNAT(users[0])", c.UserNAT(c.Users[0]), "auto"},
		{"UserNAT(users[1])", c.UserNAT(c.Users[1]), "force"},
		{"routes", c.Routes, []Route{{
			Name: "carrier", User: `^\+?[0-9]{6,}$`, Domain: "example.com",
			To: "sip:198.51.100.20:5060;transport=udp", NAT: "never", Media: "nat", TCP: true, Trusted: true,
			Keepalive: Duration{time.Minute},
		}}},
		{"keepalive", c.Keepalive, Default().Keepalive},
		{"stun", c.STUN, Default().STUN},
		{"STUNAlternatePort", c.STUNAlternatePort(), 3479},
		{"UserKeepalive(users[0])", c.UserKeepalive(c.Users[0]), 25 * time.Second},
		{"UserKeepalive(users[1])", c.UserKeepalive(c.Users[1]), 20 * time.Second},
		{"media", c.Media, func() Media {
			m := Default().Media
			m.Address, m.Advertise, m.KernelInterfaces = "0.0.0.0", "203.0.113.10", []string{}
			return m
		}()},
		{"UserMedia(users[0])", c.UserMedia(c.Users[0]), "nat"},
		{"UserMedia(users[1])", c.UserMedia(c.Users[1]), "always"},
		{"Realm", c.Realm(), "example.com"},
		{"AdminDisabled", c.AdminDisabled(), false},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %#v, want %#v", tt.key, tt.got, tt.want)
		}
	}
	re, err := c.Routes[0].UserRegexp()
	if err != nil || !re.MatchString("+4930123456") || re.MatchString("1001") {
		t.Errorf("route user %q: %v", c.Routes[0].User, err)
	}
}

// TestExampleDocumentsEveryKey checks that the example shows every key of
// Config, set or commented out, with a comment before it, so that a key
// added to Config is also added to the example.
func TestExampleDocumentsEveryKey(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	set := make(map[string]bool)
	for k := range c.src.lines {
		set[regexp.MustCompile(`\[\d+\]`).ReplaceAllString(k, "")] = true
	}
	// Secrets are better generated than written down, so the example only
	// shows them in comments.
	commented := map[string]bool{
		"auth.secret":                  true,
		"admin.token":                  true,
		"security.scanner_user_agents": true,
	}
	text := c.src.text
	for _, key := range allKeys(reflect.TypeFor[Config](), "") {
		leaf := key[strings.LastIndexByte(key, '.')+1:]
		switch {
		case commented[key]:
			if !regexp.MustCompile(`(?m)^# ` + regexp.QuoteMeta(leaf) + ` = `).MatchString(text) {
				t.Errorf("%s: want a commented-out example line %q", key, "# "+leaf+" = ...")
			}
		case !set[key]:
			t.Errorf("%s is not set in %s", key, examplePath)
		default:
			// A comment directly precedes the key's first occurrence.
			line := c.src.lines[firstIndexed(c.src.lines, key)]
			if !commentAbove(strings.Split(text, "\n"), line) {
				t.Errorf("%s (line %d) has no comment above it", key, line)
			}
		}
	}
}

// allKeys lists the TOML keys of struct type t, without array indices.
func allKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for name, i := range tomlFields(t) {
		key := joinKey(prefix, name)
		ft := t.Field(i).Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]() && ft != reflect.TypeFor[Prefix]() {
			keys = append(keys, allKeys(ft, key)...)
			continue
		}
		keys = append(keys, key)
	}
	return keys
}

// firstIndexed returns the path in lines of key's first occurrence:
// "listen.address" → "listen[0].address".
func firstIndexed(lines map[string]int, key string) string {
	best, bestLine := key, 0
	strip := regexp.MustCompile(`\[\d+\]`)
	for k, l := range lines {
		if strip.ReplaceAllString(k, "") == key && (bestLine == 0 || l < bestLine) {
			best, bestLine = k, l
		}
	}
	return best
}

// commentAbove reports whether line (1-based) directly follows a comment.
func commentAbove(ls []string, line int) bool {
	return line >= 2 && strings.HasPrefix(strings.TrimSpace(ls[line-2]), "#")
}
