//go:build linux

package relay

import (
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestMmsghdrLayout(t *testing.T) {
	if got := unsafe.Sizeof(mmsghdr{}); got != unix.SizeofMmsghdr {
		t.Fatalf("sizeof(mmsghdr) = %d, kernel wants %d", got, unix.SizeofMmsghdr)
	}
	if got := unsafe.Offsetof(mmsghdr{}.n); got != unix.SizeofMsghdr {
		t.Fatalf("offsetof(msg_len) = %d, want %d", got, unix.SizeofMsghdr)
	}
}

func TestSockaddrRoundTrip(t *testing.T) {
	for _, s := range []string{"127.0.0.1:5004", "[::1]:40000", "[2001:db8::1]:1", "203.0.113.5:65535"} {
		var b [sockaddrSize]byte
		want := netip.MustParseAddrPort(s)
		n := putSockaddr(&b, want)
		if got := parseSockaddr(&b, n); got != want {
			t.Errorf("%s: round trip gave %s", s, got)
		}
	}
	var b [sockaddrSize]byte
	if got := parseSockaddr(&b, 0); got.IsValid() {
		t.Errorf("empty sockaddr parsed as %s", got)
	}
}
