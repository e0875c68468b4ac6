package uatest

import (
	"fmt"
	"strings"
)

// SDP returns a minimal audio session description for host:port (RFC 4566),
// with extra appended (lines ending in CRLF).
func SDP(host string, port int, extra string) string {
	ipv := "IP4"
	if strings.Contains(host, ":") {
		ipv = "IP6"
		host = strings.Trim(host, "[]")
	}
	return fmt.Sprintf("v=0\r\no=uatest 1 1 IN %s %s\r\ns=uatest\r\nc=IN %s %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"+
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n%s",
		ipv, host, ipv, host, port, extra)
}

// LargeSDP returns an SDP of at least size bytes: SDP(host, port) padded
// with distinct attribute lines (a=x-pad:NNNN ...), so that truncation or
// reordering is visible.
func LargeSDP(host string, port, size int) string {
	s := SDP(host, port, "")
	var b strings.Builder
	b.WriteString(s)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "a=x-pad:%04d %s\r\n", i, strings.Repeat("abcdefghij", 6))
	}
	return b.String()
}
