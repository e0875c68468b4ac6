package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestParseEmptyIsDefault(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n", "\n\n"} {
		c := mustParse(t, text)
		if got := withoutSource(c); !reflect.DeepEqual(got, Default()) {
			t.Errorf("Parse(%q) = %+v, want Default()", text, got)
		}
	}
}

func TestParseOverDefaults(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		check func(c *Config) (got, want any)
	}{
		{
			name: "one [[listen]] replaces both default listeners",
			text: lines(`[[listen]]`, `transport = "tcp"`, `address = "198.51.100.1:5070"`),
			check: func(c *Config) (any, any) {
				return c.Listen, []Listen{{Transport: "tcp", Address: "198.51.100.1:5070"}}
			},
		},
		{
			name: "an element inherits nothing from the default element",
			text: lines(`[[listen]]`, `address = "198.51.100.1:5070"`),
			check: func(c *Config) (any, any) {
				return c.Listen, []Listen{{Address: "198.51.100.1:5070"}}
			},
		},
		{
			name: "inline array of tables",
			text: lines(`listen = [{transport = "udp", address = "[::]:5060"}]`),
			check: func(c *Config) (any, any) {
				return c.Listen, []Listen{{Transport: "udp", Address: "[::]:5060"}}
			},
		},
		{
			name: "three listeners",
			text: lines(
				`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`,
				`[[listen]]`, `transport = "tcp"`, `address = "0.0.0.0:5060"`,
				`[[listen]]`, `transport = "udp"`, `address = "127.0.0.1:5070"`, `advertise = "203.0.113.1"`,
			),
			check: func(c *Config) (any, any) {
				return c.Listen, []Listen{
					{Transport: "udp", Address: "0.0.0.0:5060"},
					{Transport: "tcp", Address: "0.0.0.0:5060"},
					{Transport: "udp", Address: "127.0.0.1:5070", Advertise: "203.0.113.1"},
				}
			},
		},
		{
			name: "domains replaced",
			text: lines(`domains = ["example.com"]`),
			check: func(c *Config) (any, any) {
				return c.Domains, []string{"example.com"}
			},
		},
		{
			name: "empty scanner list disables it",
			text: lines(`[security]`, `scanner_user_agents = []`),
			check: func(c *Config) (any, any) {
				return c.Security.ScannerUserAgents, []string{}
			},
		},
		{
			name: "algorithms replaced, order kept",
			text: lines(`auth.algorithms = ["MD5"]`),
			check: func(c *Config) (any, any) {
				return c.Auth.Algorithms, []string{"MD5"}
			},
		},
		{
			name: "unset keys in a set table keep defaults",
			text: lines(`[registrar]`, `min_expires = "30s"`),
			check: func(c *Config) (any, any) {
				r := Default().Registrar
				r.MinExpires = Duration{30 * time.Second}
				return c.Registrar, r
			},
		},
		{
			name: "integer durations are seconds",
			text: lines(`[registrar]`, `max_expires = 7200`, `[proxy]`, `invite_timeout = 90`),
			check: func(c *Config) (any, any) {
				return []time.Duration{c.Registrar.MaxExpires.Duration, c.Proxy.InviteTimeout.Duration},
					[]time.Duration{2 * time.Hour, 90 * time.Second}
			},
		},
		{
			name:  "integer for a float key",
			text:  lines(`security.rate_limit = 50`),
			check: func(c *Config) (any, any) { return c.Security.RateLimit, 50.0 },
		},
		{
			name: "prefixes",
			text: lines(`local_nets = ["10.0.0.0/8", "203.0.113.9"]`),
			check: func(c *Config) (any, any) {
				var got []string
				for _, p := range c.LocalNets {
					got = append(got, p.String())
				}
				return got, []string{"10.0.0.0/8", "203.0.113.9/32"}
			},
		},
		{
			name:  "admin.listen empty keeps the default",
			text:  lines(`[admin]`, `listen = ""`),
			check: func(c *Config) (any, any) { return c.Admin.Listen, "127.0.0.1:5080" },
		},
		{
			name: "users and routes",
			text: lines(
				`[[users]]`, `name = "alice"`, `password = "pw"`,
				`[[routes]]`, `to = "sip:198.51.100.20"`, `tcp = true`,
			),
			check: func(c *Config) (any, any) {
				return []any{c.Users, c.Routes}, []any{
					[]User{{Name: "alice", Password: "pw"}},
					[]Route{{To: "sip:198.51.100.20", TCP: true}},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.text)
			if got, want := tt.check(c); !reflect.DeepEqual(got, want) {
				t.Errorf("got %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestParseUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{
			name: "top level",
			text: lines(`# comment`, `data_dir = "x"`, `datadir = "y"`),
			want: []string{`t.toml:3: unknown key "datadir"`},
		},
		{
			name: "in a table",
			text: lines(`[log]`, `level = "info"`, `lvl = "debug"`),
			want: []string{`t.toml:3: unknown key "log.lvl"`},
		},
		{
			name: "in the second [[listen]]",
			text: lines(
				`[[listen]]`, `transport = "udp"`, `address = "0.0.0.0:5060"`, ``,
				`[[listen]]`, `transport = "tcp"`, `typo = 1`, `address = "0.0.0.0:5060"`,
			),
			want: []string{`t.toml:7: unknown key "listen[1].typo"`},
		},
		{
			name: "same typo in two elements",
			text: lines(`[[users]]`, `nme = "a"`, `[[users]]`, `nme = "b"`),
			want: []string{`t.toml:2: unknown key "users[0].nme"`, `t.toml:4: unknown key "users[1].nme"`},
		},
		{
			name: "inline table on a continuation line",
			text: lines(
				`listen = [`,
				`  {transport = "udp", address = "0.0.0.0:5060"},`,
				`  {transport = "tcp", adress = "0.0.0.0:5060"},`,
				`]`,
			),
			want: []string{`t.toml:3: unknown key "listen[1].adress"`},
		},
		{
			name: "dotted key",
			text: lines(`data_dir = "x"`, `log.levle = "debug"`),
			want: []string{`t.toml:2: unknown key "log.levle"`},
		},
		{
			name: "keys are case-sensitive",
			text: lines(`[log]`, `Level = "debug"`),
			want: []string{`t.toml:2: unknown key "log.Level"`},
		},
		{
			name: "unknown table",
			text: lines(`[log]`, `level = "info"`, `[rtpproxy]`, `ports = "30000-40000"`),
			want: []string{`t.toml:3: unknown key "rtpproxy"`},
		},
		{
			name: "unknown sub-table",
			text: lines(`[registrar]`, `[registrar.extra]`, `x = 1`),
			want: []string{`t.toml:2: unknown key "registrar.extra"`},
		},
		{
			name: "quoted key",
			text: lines(`"data dir" = "x"`),
			want: []string{`t.toml:1: unknown key "\"data dir\""`},
		},
		{
			name: "after a multi-line string",
			text: lines(`[admin]`, `token = """`, `fake = 1`, `"""`, `tokn = "x"`),
			want: []string{`t.toml:5: unknown key "admin.tokn"`},
		},
		{
			name: "several, in file order",
			text: lines(`zzz = 1`, `[proxy]`, `aaa = 2`, `[nat]`, `mod = "auto"`),
			want: []string{
				`t.toml:1: unknown key "zzz"`,
				`t.toml:3: unknown key "proxy.aaa"`,
				`t.toml:5: unknown key "nat.mod"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tt.text))
			if c != nil {
				t.Errorf("Parse returned a config with the error")
			}
			if got := errStrings(err); !equalStrings(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if !errors.Is(err, ErrUnknownKey) {
				t.Errorf("errors.Is(err, ErrUnknownKey) = false")
			}
		})
	}
}

func TestParseTypeErrors(t *testing.T) {
	text := lines(
		`data_dir = 5`,                       // 1
		`domains = "example.com"`,            // 2
		`[registrar]`,                        // 3
		`min_expires = 1.5`,                  // 4
		`max_expires = "5x"`,                 // 5
		`max_contacts = "ten"`,               // 6
		`[security]`,                         // 7
		`rate_limit = "fast"`,                // 8
		`trusted = ["10.0.0.0/8", "nope"]`,   // 9
		`[[listen]]`,                         // 10
		`transport = "udp"`,                  // 11
		`address = "0.0.0.0:5060"`,           // 12
		`[[listen]]`,                         // 13
		`transport = "tcp"`,                  // 14
		`address = 5060`,                     // 15
		`[[routes]]`,                         // 16
		`to = "sip:198.51.100.20"`,           // 17
		`tcp = "yes"`,                        // 18
		`[log]`,                              // 19
		`level = ["info"]`,                   // 20
		`[proxy]`,                            // 21
		`max_forwards = 9999999999999999999`, // 22: too big even for TOML: syntax error
	)
	// Line 22 is a TOML syntax error, which stops everything: check it
	// alone, then the rest.
	_, err := Parse("t.toml", []byte(text))
	if got := errStrings(err); len(got) != 1 || !strings.HasPrefix(got[0], "t.toml:22: ") {
		t.Errorf("out-of-range integer: %q, want one error at t.toml:22", got)
	}

	text = strings.Replace(text, "9999999999999999999", "70", 1)
	want := []string{
		`t.toml:1: data_dir: expected a string, found integer`,
		`t.toml:2: domains: expected an array, found string`,
		`t.toml:4: registrar.min_expires: expected a duration such as "30s" or integer seconds, found float`,
		`t.toml:5: registrar.max_expires: invalid duration "5x" (want e.g. "30s", "5m", "1h30m")`,
		`t.toml:6: registrar.max_contacts: expected an integer, found string`,
		`t.toml:8: security.rate_limit: expected a number, found string`,
		`t.toml:9: security.trusted[1]: invalid network "nope" (want e.g. "10.0.0.0/8", "fd00::/8" or an IP address)`,
		`t.toml:15: listen[1].address: expected a string, found integer`,
		`t.toml:18: routes[0].tcp: expected true or false, found string`,
		`t.toml:20: log.level: expected a string, found array`,
	}
	_, err = Parse("t.toml", []byte(text))
	if got := errStrings(err); !equalStrings(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range leafErrors(err) {
		ce := asConfigError(t, e)
		if ce.File != "t.toml" || ce.Line == 0 || ce.Key == "" {
			t.Errorf("%v: File=%q Line=%d Key=%q", e, ce.File, ce.Line, ce.Key)
		}
	}
}

func TestParseTableWhereArrayExpected(t *testing.T) {
	_, err := Parse("t.toml", []byte(lines(`data_dir = "x"`, `[listen]`, `transport = "udp"`)))
	want := `t.toml:2: listen: expected an array of tables ([[listen]]), found table`
	if got := errStrings(err); len(got) != 1 || got[0] != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseSyntaxError(t *testing.T) {
	tests := []struct {
		text string
		line int
	}{
		{lines(`data_dir = "x"`, `domains = [`, `"a",`, `"b"`, `log = {`), 5},
		{lines(`[log]`, `level = "info`), 2},
		{lines(`a = 1`, `a = 2`), 2},
		{lines(`[log]`, `[log]`), 2},
	}
	for _, tt := range tests {
		_, err := Parse("t.toml", []byte(tt.text))
		e := asConfigError(t, err)
		if e.File != "t.toml" || e.Line != tt.line {
			t.Errorf("Parse(%q) = %v: at %s:%d, want t.toml:%d", tt.text, err, e.File, e.Line, tt.line)
		}
		var pe toml.ParseError
		if !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v: does not wrap a toml.ParseError", tt.text, err)
		}
		if prefix := "t.toml:" + strconv.Itoa(tt.line) + ": "; !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("Parse(%q) = %q, want prefix %q", tt.text, err, prefix)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := write("good.toml", lines(`domains = ["example.com"]`))
	c, err := Load(good)
	if err != nil {
		t.Fatalf("Load(good) = %v", err)
	}
	if c.Domains[0] != "example.com" {
		t.Errorf("Domains = %q", c.Domains)
	}

	// Load validates, and reports decoding and validation errors together.
	bad := write("bad.toml", lines(
		`[nat]`,
		`mode = "sometimes"`,
		`[log]`,
		`levle = "debug"`,
	))
	_, err = Load(bad)
	want := []string{
		bad + `:4: unknown key "log.levle"`,
		bad + `:2: nat.mode: must be "auto", "force" or "never", not "sometimes"`,
	}
	if got := errStrings(err); !equalStrings(got, want) {
		t.Errorf("Load(bad):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
}

// TestEncodeRoundTrip checks that a Config written by the toml encoder
// (as `config check` may print it) parses back to the same Config.
func TestEncodeRoundTrip(t *testing.T) {
	c := mustParse(t, lines(
		`local_nets = ["10.0.0.0/8"]`,
		`[[users]]`, `name = "alice"`, `password = "pw"`, `nat = "force"`,
		`[[routes]]`, `name = "carrier"`, `user = '^\+?[0-9]+$'`, `to = "sip:198.51.100.20;transport=tcp"`,
		`[security]`, `trusted = ["198.51.100.0/24"]`,
	))
	for _, in := range []*Config{Default(), c} {
		var b strings.Builder
		if err := toml.NewEncoder(&b).Encode(in); err != nil {
			t.Fatal(err)
		}
		back, err := Parse("encoded.toml", []byte(b.String()))
		if err != nil {
			t.Fatalf("Parse(encoded): %v\n%s", err, b.String())
		}
		if !reflect.DeepEqual(withoutSource(back), withoutSource(in)) {
			t.Errorf("round trip changed the config:\n%+v\n%+v\n%s", back, in, b.String())
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{File: "f.toml", Line: 3, Key: "a.b", Msg: "bad"}, "f.toml:3: a.b: bad"},
		{&Error{File: "f.toml", Key: "a.b", Msg: "bad"}, "f.toml: a.b: bad"},
		{&Error{Line: 3, Key: "a.b", Msg: "bad"}, "line 3: a.b: bad"},
		{&Error{Key: "a.b", Msg: "bad"}, "a.b: bad"},
		{&Error{File: "f.toml", Line: 1, Msg: "syntax"}, "f.toml:1: syntax"},
		{&Error{File: "f.toml", Line: 2, Key: "x.y", Err: ErrUnknownKey}, `f.toml:2: unknown key "x.y"`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
