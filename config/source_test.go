package config

import (
	"maps"
	"slices"
	"testing"
)

func TestScanKeys(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		want   map[string]int
		absent []string
	}{
		{
			name: "tables and keys",
			text: lines(`a = 1`, ``, `[log]`, `level = "info" # comment = 3`, `[proxy]`, `max_forwards = 70`),
			want: map[string]int{"a": 1, "log": 3, "log.level": 4, "proxy": 5, "proxy.max_forwards": 6},
		},
		{
			name: "arrays of tables get indices",
			text: lines(`[[listen]]`, `transport = "udp"`, `[[listen]]`, `transport = "tcp"`, `advertise = "x"`),
			want: map[string]int{
				"listen": 1, "listen[0]": 1, "listen[0].transport": 2,
				"listen[1]": 3, "listen[1].transport": 4, "listen[1].advertise": 5,
			},
		},
		{
			name: "nested arrays of tables",
			text: lines(`[[a]]`, `[[a.b]]`, `x = 1`, `[[a]]`, `[[a.b]]`, `[[a.b]]`, `x = 2`, `[a.c]`, `y = 3`),
			want: map[string]int{
				"a[0]": 1, "a[0].b[0]": 2, "a[0].b[0].x": 3,
				"a[1]": 4, "a[1].b[0]": 5, "a[1].b[1]": 6, "a[1].b[1].x": 7,
				"a[1].c": 8, "a[1].c.y": 9,
			},
		},
		{
			name: "dotted and quoted keys",
			text: lines(`log.level = "x"`, `"data dir" = 1`, `'lit.key' = 2`, `a . "b.c" . d = 3`),
			want: map[string]int{"log": 1, "log.level": 1, `"data dir"`: 2, `"lit.key"`: 3, `a."b.c".d`: 4},
		},
		{
			name: "multi-line arrays and inline tables",
			text: lines(
				`domains = [`,
				`  "a", # one`,
				`  "b",`,
				`]`,
				`listen = [ { transport = "udp",`,
				`             address = "x" },`,
				`  {transport = "tcp", address = "y"} ]`,
			),
			want: map[string]int{
				"domains": 1, "domains[0]": 2, "domains[1]": 3,
				"listen": 5, "listen[0]": 5, "listen[0].transport": 5, "listen[0].address": 6,
				"listen[1]": 7, "listen[1].transport": 7, "listen[1].address": 7,
			},
		},
		{
			name: "strings hide keys",
			text: lines(
				`a = """`, `fake1 = 1`, `"""`,
				`b = '''`, `fake2 = 2 '''`,
				`c = "x = 1 # [t]"`,
				`d = 'e = [ {'`,
				`e = """a\"""b"""`,
				`f = """x""""`,
				`g = 7`,
			),
			want:   map[string]int{"a": 1, "b": 4, "c": 6, "d": 7, "e": 8, "f": 9, "g": 10},
			absent: []string{"fake1", "fake2", "t", "e[0]"},
		},
		{
			name: "datetimes with a space",
			text: lines(`d = [1979-05-27 07:32:00Z, 1979-05-28]`, `x = 1`),
			want: map[string]int{"d[0]": 1, "d[1]": 1, "x": 2},
		},
		{
			name: "CRLF line endings",
			text: "a = 1\r\n[log]\r\nlevel = \"x\"\r\n",
			want: map[string]int{"a": 1, "log": 2, "log.level": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scanKeys(tt.text)
			for k, want := range tt.want {
				if got[k] != want {
					t.Errorf("line of %s = %d, want %d (all: %v)", k, got[k], want, got)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s recorded at line %d; it is not a key", k, got[k])
				}
			}
		})
	}
}

// TestScanKeysRecovers checks that the scanner, which normally sees only
// valid TOML, terminates and stays sane on garbage.
func TestScanKeysRecovers(t *testing.T) {
	for _, text := range []string{
		"[", "[[", "a =", "= 1", `a = "unclosed`, "a = [1, 2", "a = {b = ", `"""`,
		"a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		"a = {{{{", "a = 1 2 3\nb = 2", "\x00\xff = 1",
	} {
		got := scanKeys(text)
		if n := got["b"]; text == "a = 1 2 3\nb = 2" && n != 2 {
			t.Errorf("after a bad line: b at %d, want 2", n)
		}
	}
}

func TestKeyPaths(t *testing.T) {
	tests := []struct {
		key, parent, last string
	}{
		{"listen[1].transport", "listen[1]", "transport"},
		{"listen[1]", "listen", "listen"},
		{"listen", "", "listen"},
		{`a."b.c".d`, `a."b.c"`, "d"},
		{`a."b.c"`, "a", "b.c"},
		{"domains[0]", "domains", "domains"},
		{"a[0].b[1]", "a[0].b", "b"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := parentKey(tt.key); got != tt.parent {
			t.Errorf("parentKey(%q) = %q, want %q", tt.key, got, tt.parent)
		}
		if got := lastSegment(tt.key); got != tt.last {
			t.Errorf("lastSegment(%q) = %q, want %q", tt.key, got, tt.last)
		}
	}
	if got := joinKey(indexKey("users", 2), "ha1_md5"); got != "users[2].ha1_md5" {
		t.Errorf("joinKey = %q", got)
	}
	if got := joinKey("", "a b"); got != `"a b"` {
		t.Errorf("joinKey quoting = %q", got)
	}
}

func TestSourceLine(t *testing.T) {
	text := lines(`[[listen]]`, `transport = "udp"`, `[registrar]`, `  # min_expires = 1`, `  min_expires = 5`)
	s := &source{file: "t.toml", text: text, lines: scanKeys(text)}
	tests := []struct {
		key  string
		line int
	}{
		{"listen[0].transport", 2},
		{"listen[0].address", 1}, // not in the file: its element
		{"registrar.max_expires", 3},
		{"nat.mode", 0},
	}
	for _, tt := range tests {
		if got := s.line(tt.key); got != tt.line {
			t.Errorf("line(%q) = %d, want %d", tt.key, got, tt.line)
		}
	}
	// keyLine's text search is the fallback for keys the scanner missed.
	delete(s.lines, "registrar.min_expires")
	if got := s.keyLine("registrar.min_expires"); got != 5 {
		t.Errorf("keyLine by search = %d, want 5 (not the comment on line 4)", got)
	}
	if got := s.search("nope"); got != 0 {
		t.Errorf("search(nope) = %d", got)
	}
	var nilSource *source
	if nilSource.line("x") != 0 || nilSource.keyLine("x") != 0 || nilSource.has("x") {
		t.Error("nil source must know no lines")
	}
	keys := slices.Sorted(maps.Keys(scanKeys(text)))
	if !slices.Contains(keys, "registrar") {
		t.Errorf("keys %q lack the table", keys)
	}
}
