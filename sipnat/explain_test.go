package sipnat

import (
	"net/netip"
	"testing"
)

func TestExplain(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40312")
	tests := []struct {
		name string
		in   Input
		want string
	}{
		{"public phone", Input{Transport: "udp", Source: netip.MustParseAddrPort("198.51.100.7:5060"), ViaHost: "198.51.100.7", ViaPort: 5060,
			Contacts: []HostPort{{"198.51.100.7", 5060}}}, KindNone},
		{"private, port changed", Input{Transport: "udp", Source: src, ViaHost: "192.168.1.20", ViaPort: 5060,
			Contacts: []HostPort{{"192.168.1.20", 5060}}}, KindPortChange},
		{"private, port kept", Input{Transport: "udp", Source: netip.MustParseAddrPort("198.51.100.7:5060"), ViaHost: "192.168.1.20", ViaPort: 5060,
			Contacts: []HostPort{{"192.168.1.20", 5060}}}, KindPortKept},
		{"STUN address, other port", Input{Transport: "udp", Source: src, ViaHost: "198.51.100.7", ViaPort: 5062,
			Contacts: []HostPort{{"198.51.100.7", 5062}}}, KindPortOnly},
		{"ALG rewrote the Via only", Input{Transport: "udp", Source: src, ViaHost: "198.51.100.7", ViaPort: 40312,
			Contacts: []HostPort{{"192.168.1.20", 5060}}}, KindPartial},
		{"websocket style", Input{Transport: "tcp", Source: src, ViaHost: "abc.invalid", ViaPort: 0,
			Contacts: []HostPort{{"abc.invalid", 0}}}, KindWebSocket},
		{"forced", Input{Transport: "udp", Source: netip.MustParseAddrPort("198.51.100.7:5060"), ViaHost: "198.51.100.7", ViaPort: 5060,
			Mode: "force"}, KindForced},
	}
	for _, tt := range tests {
		if tt.in.Mode == "" {
			tt.in.Mode = "auto"
		}
		r := Detect(tt.in)
		kind, text := Explain(r.Reasons)
		if kind != tt.want || text == "" {
			t.Errorf("%s: reasons %v: Explain = %q (%q), want %q", tt.name, r.Reasons, kind, text, tt.want)
		}
	}
}
