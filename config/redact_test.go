package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestRedacted(t *testing.T) {
	c := mustParse(t, lines(
		`[auth]`, `secret = "nonce-key"`,
		`[admin]`, `token = "bearer-token"`,
		`[[users]]`, `name = "alice"`, `password = "alice-pw"`,
		`[[users]]`, `name = "bob"`, `ha1_md5 = "059b14b6554fd4b5b06935dd6adf689a"`,
		`ha1_sha256 = "c3b0eaa8119bad5ca6fe4f68f8d016f86d3ce2202ecb4b2d0c8fe5659748a0fc"`,
	))
	before := c.Clone()
	r := c.Redacted()

	tests := []struct {
		key       string
		got, want string
	}{
		{"auth.secret", r.Auth.Secret, "***"},
		{"admin.token", r.Admin.Token, "***"},
		{"users[0].password", r.Users[0].Password, "***"},
		{"users[0].ha1_md5", r.Users[0].HA1MD5, ""}, // unset stays unset
		{"users[1].password", r.Users[1].Password, ""},
		{"users[1].ha1_md5", r.Users[1].HA1MD5, "***"},
		{"users[1].ha1_sha256", r.Users[1].HA1SHA256, "***"},
		{"users[1].name", r.Users[1].Name, "bob"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("Redacted %s = %q, want %q", tt.key, tt.got, tt.want)
		}
	}
	if !reflect.DeepEqual(c, before) {
		t.Errorf("Redacted changed the original")
	}

	// What `config check` would print holds no secret.
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(r); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"nonce-key", "bearer-token", "alice-pw", "059b14b6", "c3b0eaa8"} {
		if strings.Contains(b.String(), secret) {
			t.Errorf("encoded redacted config contains %q", secret)
		}
	}
}

func TestRedactedDefaultsUnchanged(t *testing.T) {
	if got := withoutSource(Default().Redacted()); !reflect.DeepEqual(got, Default()) {
		t.Errorf("Redacted of defaults (no secrets) = %+v", got)
	}
}

func TestClone(t *testing.T) {
	c := mustParse(t, lines(
		`local_nets = ["10.0.0.0/8"]`, `[security]`, `trusted = ["198.51.100.0/24"]`,
		`[[users]]`, `name = "a"`, `password = "pw"`,
		`[[routes]]`, `to = "sip:198.51.100.20"`,
	))
	before := withoutSource(c)
	n := c.Clone()
	n.Domains[0] = "x"
	n.LocalNets[0] = Prefix{}
	n.Listen[0].Address = "x"
	n.Auth.Algorithms[0] = "x"
	n.Security.ScannerUserAgents[0] = "x"
	n.Security.Trusted[0] = Prefix{}
	n.Users[0].Password = "x"
	n.Routes[0].To = "x"
	n.STUN.Listen[0] = "x"
	if !reflect.DeepEqual(withoutSource(c), before) {
		t.Errorf("changing the clone changed the original: %+v", c)
	}
}
