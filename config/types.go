package config

import (
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"
)

// maxSeconds is the largest number of seconds a time.Duration can hold.
const maxSeconds = math.MaxInt64 / int64(time.Second)

// UnmarshalText parses a Go duration string such as "30s", "5m" or "1h30m".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"5m\", \"1h30m\")", text)
	}
	d.Duration = v
	return nil
}

// MarshalText formats d like time.Duration.String, e.g. "1h30m0s", which
// UnmarshalText reads back.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

// UnmarshalTOML implements toml.Unmarshaler: a TOML string is parsed by
// UnmarshalText and a TOML integer counts seconds (nonce_ttl = 300).
// Anything else, floats included, is an error.
func (d *Duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		return d.UnmarshalText([]byte(v))
	case int64:
		if v > maxSeconds || v < -maxSeconds {
			return fmt.Errorf("%d seconds is out of range", v)
		}
		d.Duration = time.Duration(v) * time.Second
		return nil
	default:
		return fmt.Errorf("expected a duration such as \"30s\" or integer seconds, found %s", tomlType(v))
	}
}

// UnmarshalText parses a network in CIDR form ("10.0.0.0/8", "fd00::/8") or
// a single IP address, which means that one host (/32 or /128). Host bits
// are cleared: "10.1.2.3/8" is stored as 10.0.0.0/8. IPv6 zones are
// rejected.
func (p *Prefix) UnmarshalText(text []byte) error {
	s := string(text)
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("invalid network %q (want e.g. \"10.0.0.0/8\", \"fd00::/8\" or an IP address)", s)
		}
		p.Prefix = pfx.Masked()
		return nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("invalid network %q (want e.g. \"10.0.0.0/8\", \"fd00::/8\" or an IP address)", s)
	}
	if ip.Zone() != "" {
		return fmt.Errorf("invalid network %q: IPv6 zones are not allowed", s)
	}
	p.Prefix = netip.PrefixFrom(ip, ip.BitLen())
	return nil
}

// MarshalText formats p in CIDR form, e.g. "10.0.0.0/8" ("" for the zero
// Prefix).
func (p Prefix) MarshalText() ([]byte, error) {
	return p.Prefix.MarshalText()
}

// tomlType names the TOML type of a value produced by the TOML parser.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case []any, []map[string]any:
		return "array"
	case map[string]any:
		return "table"
	case nil:
		return "nothing"
	default:
		return fmt.Sprintf("%T", v)
	}
}
