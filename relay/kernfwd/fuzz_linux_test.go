//go:build linux

package kernfwd

import (
	"net/netip"
	"testing"
)

// FuzzRouteReply: whatever comes back on the netlink socket gives a route
// or an error, never a panic, and a route always has an interface and a
// source address.
func FuzzRouteReply(f *testing.F) {
	// A real reply: RTM_NEWROUTE, unicast, RTA_OIF 2, RTA_PREFSRC 10.0.0.1.
	f.Add([]byte{
		52, 0, 0, 0, 24, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr
		2, 32, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0, // rtmsg: AF_INET, /32, main, unicast
		8, 0, 1, 0, 198, 51, 100, 7, // RTA_DST
		8, 0, 4, 0, 2, 0, 0, 0, // RTA_OIF
		8, 0, 7, 0, 10, 0, 0, 1, // RTA_PREFSRC
	})
	f.Add([]byte{20, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x9b, 0xff, 0xff, 0xff}) // NLMSG_ERROR -101
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRouteReply(b, netip.Addr{})
		if err == nil && (r.Ifindex == 0 || !r.Src.Is4()) {
			t.Fatalf("route without interface or source: %+v", r)
		}
	})
}
