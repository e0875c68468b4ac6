package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestDurationUnmarshalText(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"30s", 30 * time.Second, false},
		{"5m", 5 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"100ms", 100 * time.Millisecond, false},
		{"0", 0, false},
		{"-5s", -5 * time.Second, false}, // decodes; Validate rejects where it matters
		{"30", 0, true},                  // a string needs a unit
		{"5x", 0, true},
		{"", 0, true},
		{"1 h", 0, true},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("UnmarshalText(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && d.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, want %v", tt.in, d.Duration, tt.want)
		}
	}
}

func TestDurationUnmarshalTOML(t *testing.T) {
	tests := []struct {
		in      any
		want    time.Duration
		wantErr string
	}{
		{"90s", 90 * time.Second, ""},
		{int64(300), 300 * time.Second, ""},
		{int64(0), 0, ""},
		{int64(maxSeconds), time.Duration(maxSeconds) * time.Second, ""},
		{int64(maxSeconds + 1), 0, "out of range"},
		{int64(-maxSeconds - 1), 0, "out of range"},
		{1.5, 0, "found float"},
		{true, 0, "found boolean"},
		{"nope", 0, "invalid duration"},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalTOML(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("UnmarshalTOML(%#v) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || d.Duration != tt.want {
			t.Errorf("UnmarshalTOML(%#v) = %v, %v; want %v", tt.in, d.Duration, err, tt.want)
		}
	}
}

// TestDurationWithBurntSushi checks that Duration also decodes through the
// toml package's own decoder (strings and integer seconds) and encodes as a
// string, for packages that decode their own structs.
func TestDurationWithBurntSushi(t *testing.T) {
	var v struct {
		A Duration `toml:"a"`
		B Duration `toml:"b"`
	}
	if _, err := toml.Decode("a = \"1h30m\"\nb = 45\n", &v); err != nil {
		t.Fatal(err)
	}
	if v.A.Duration != 90*time.Minute || v.B.Duration != 45*time.Second {
		t.Errorf("decoded a=%v b=%v, want 1h30m0s 45s", v.A, v.B)
	}
	if _, err := toml.Decode("a = 1.5\n", &v); err == nil {
		t.Error("float duration: no error")
	}
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(v); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.Contains(got, `a = "1h30m0s"`) || !strings.Contains(got, `b = "45s"`) {
		t.Errorf("encoded %q", got)
	}
}

func TestDurationMarshalTextRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{0, 100 * time.Millisecond, 90 * time.Minute, 36 * time.Hour} {
		text, err := Duration{d}.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back.Duration != d {
			t.Errorf("%v → %q → %v, %v", d, text, back.Duration, err)
		}
	}
}

func TestPrefixUnmarshalText(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"10.0.0.0/8", "10.0.0.0/8", false},
		{"fd00::/8", "fd00::/8", false},
		{"203.0.113.7", "203.0.113.7/32", false},
		{"2001:db8::1", "2001:db8::1/128", false},
		{"10.1.2.3/8", "10.0.0.0/8", false}, // host bits cleared
		{"198.51.100.0/24", "198.51.100.0/24", false},
		{"0.0.0.0/0", "0.0.0.0/0", false},
		{"10.0.0.0/33", "", true},
		{"fe80::1%eth0", "", true},
		{"fe80::/10%eth0", "", true},
		{"10.0.0", "", true},
		{"example.com", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		var p Prefix
		err := p.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("UnmarshalText(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if tt.wantErr {
			continue
		}
		if got := p.String(); got != tt.want {
			t.Errorf("UnmarshalText(%q) = %s, want %s", tt.in, got, tt.want)
		}
		text, _ := p.MarshalText()
		if string(text) != tt.want {
			t.Errorf("MarshalText(%s) = %q", p, text)
		}
	}
}

func TestPrefixContains(t *testing.T) {
	var p Prefix
	if err := p.UnmarshalText([]byte("203.0.113.7")); err != nil {
		t.Fatal(err)
	}
	if !p.Contains(netip.MustParseAddr("203.0.113.7")) || p.Contains(netip.MustParseAddr("203.0.113.8")) {
		t.Errorf("%s: a bare IP must mean exactly that host", p)
	}
}
