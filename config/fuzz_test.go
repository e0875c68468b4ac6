package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse checks that Parse, Validate, Warnings and Redacted never panic,
// and that every problem is a located *Error.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile(examplePath); err == nil {
		f.Add(example)
	}
	for _, s := range []string{
		"",
		lines(`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`, `typo = 1`),
		lines(`listen = [{transport = "udp", address = "[::]:5060"}, {transport = 5}]`),
		lines(`domains = ["a", "b_"]`, `local_nets = ["10.0.0.0/8", "x"]`),
		lines(`[registrar]`, `min_expires = 9223372036`, `max_expires = "1h"`, `default_expires = -1`),
		lines(`[security]`, `rate_limit = nan`, `rate_burst = 9223372036854775807`),
		lines(`[[routes]]`, `to = "sips:[::1]:5061;transport=tcp;lr"`, `user = "(("`),
		lines(`[[users]]`, `name = "a"`, `ha1_md5 = "0"`, `[users.x]`, `y = 1`),
		lines(`a = """`, `b = 1`, `"""`, `[a.b]`, `[[a.c]]`),
		lines(`log = {level = "debug", format = {x = 1}}`),
		lines(`"listen" = 1`, `'routes' = [1, [2], {}]`),
		lines(`[stun]`, `listen = ["127.0.0.1:3478", "[::]:5060", "x"]`, `alternate_address = "::1"`, `alternate_port = -1`, `rate_limit = inf`),
		lines(`[stun]`, `listen = ["10.0.0.1:65535"]`, `alternate_address = "10.0.0.2"`, `software = "yes"`),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = scanKeys(string(data)) // the scanner alone, on any input
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config and an error: %v", err)
			}
			for _, e := range leafErrors(err) {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != "fuzz.toml" {
					t.Fatalf("error %v (%T) is not a *Error for fuzz.toml", e, e)
				}
			}
			return
		}
		err = c.Validate()
		for _, e := range leafErrors(err) {
			var ce *Error
			if !errors.As(e, &ce) || ce.Key == "" {
				t.Fatalf("validation error %v (%T) has no key", e, e)
			}
		}
		_ = c.Warnings()
		_ = c.Redacted()
		_ = c.Realm()
		for _, u := range c.Users {
			_ = c.UserNAT(u)
		}
		for _, r := range c.Routes {
			_ = c.RouteNAT(r)
			_, _ = r.UserRegexp()
		}
	})
}
