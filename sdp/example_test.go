package sdp_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/sipedge/sipedge/sdp"
)

func ExampleApply() {
	offer := []byte("v=0\r\n" +
		"o=- 3908776812 2264598301 IN IP4 192.168.1.34\r\n" +
		"s=-\r\n" +
		"c=IN IP4 192.168.1.34\r\n" +
		"t=0 0\r\n" +
		"m=audio 10052 RTP/AVP 0 101\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=rtcp:10053 IN IP4 192.168.1.34\r\n")
	d, err := sdp.Parse(offer)
	if err != nil {
		panic(err)
	}
	rw := sdp.Rewrite{Addr: netip.MustParseAddr("203.0.113.5")}
	for _, m := range d.Media {
		fmt.Printf("%s %d %s/%d hold=%v\n", m.Type, m.Port, m.Encoding, m.ClockRate, m.Hold())
		// The relay would allocate a port pair per stream here.
		rw.Media = append(rw.Media, sdp.MediaRewrite{Port: 30000, RTCPPort: 30001})
	}
	out, err := sdp.Apply(offer, rw)
	if err != nil {
		panic(err)
	}
	fmt.Print(strings.ReplaceAll(string(out), "\r\n", "\n")) // CRLF kept; shown as newlines
	// Output:
	// audio 10052 PCMU/8000 hold=false
	// v=0
	// o=- 3908776812 2264598301 IN IP4 192.168.1.34
	// s=-
	// c=IN IP4 203.0.113.5
	// t=0 0
	// m=audio 30000 RTP/AVP 0 101
	// a=rtpmap:101 telephone-event/8000
	// a=rtcp:30001 IN IP4 203.0.113.5
}
