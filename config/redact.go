package config

import "slices"

// redactedValue replaces secrets in Redacted.
const redactedValue = "***"

// Clone returns a deep copy of c: changing the copy, its slices included,
// leaves c alone.
func (c *Config) Clone() *Config {
	n := *c
	n.Domains = slices.Clone(c.Domains)
	n.LocalNets = slices.Clone(c.LocalNets)
	n.Listen = slices.Clone(c.Listen)
	n.Auth.Algorithms = slices.Clone(c.Auth.Algorithms)
	n.Security.ScannerUserAgents = slices.Clone(c.Security.ScannerUserAgents)
	n.Security.Trusted = slices.Clone(c.Security.Trusted)
	n.Users = slices.Clone(c.Users)
	n.Routes = slices.Clone(c.Routes)
	n.STUN.Listen = slices.Clone(c.STUN.Listen)
	return &n
}

// Redacted returns a copy of c that is safe to log or print (`sipedge
// config check`): user passwords and HA1 values, auth.secret and
// admin.token are replaced by "***". Empty values stay empty, so the copy
// still shows which secrets are unset (and so generated). The copy is for
// display: it does not pass Validate (HA1s are no longer hex).
func (c *Config) Redacted() *Config {
	n := c.Clone()
	redact(&n.Auth.Secret)
	redact(&n.Admin.Token)
	for i := range n.Users {
		u := &n.Users[i]
		redact(&u.Password)
		redact(&u.HA1MD5)
		redact(&u.HA1SHA256)
	}
	return n
}

func redact(s *string) {
	if *s != "" {
		*s = redactedValue
	}
}
