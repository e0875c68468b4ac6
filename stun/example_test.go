package stun_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/sipedge/sipedge/stun"
)

// Answering Binding requests on a SIP UDP port: the SIP stack hands STUN
// datagrams to a hook with the flow they came on and a reply function.
func ExampleRespond() {
	opts := &stun.ResponderOptions{Software: "sipedge"}
	buf := make([]byte, 0, 512) // per reading goroutine: Respond does not allocate
	hook := func(b []byte, remote netip.AddrPort, reply func([]byte)) {
		if out, ok := stun.Respond(buf[:0], b, remote, opts); ok {
			reply(out)
		}
	}

	// A phone's keepalive request (RFC 5626 §8), as it would arrive.
	var req stun.Builder
	req.Reset(nil, stun.MethodBinding, stun.ClassRequest, stun.NewTransactionID())
	req.AddFingerprint()

	hook(req.Bytes(), netip.MustParseAddrPort("198.51.100.7:40512"), func(resp []byte) {
		m, err := stun.Parse(resp)
		if err != nil {
			panic(err)
		}
		mapped, _ := m.XORMappedAddress()
		fmt.Println(m.Class, mapped, m.Software(), stun.CheckFingerprint(resp) == nil)
	})
	// Output: success response 198.51.100.7:40512 sipedge true
}

// A stand-alone STUN server on a loopback port chosen by the kernel,
// queried over UDP and over TCP.
func ExampleNewServer() {
	srv, err := stun.NewServer(stun.ServerConfig{
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Software:  "sipedge",
		RateLimit: 20, RateBurst: 40,
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	addr := srv.Listeners()[0].Addr // UDP and TCP share the port

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		panic(err)
	}
	defer c.Close()
	res, err := stun.Binding(ctx, c, addr)
	fmt.Println(err, res.Mapped == c.LocalAddr().(*net.UDPAddr).AddrPort(), res.ResponseOrigin == addr, res.Software)

	tc, err := net.Dial("tcp", addr.String())
	if err != nil {
		panic(err)
	}
	defer tc.Close()
	res, err = stun.Binding(ctx, stun.StreamConn(tc), addr, stun.WithRetransmission(0, 1, 0))
	fmt.Println(err, res.Mapped.String() == tc.LocalAddr().String())
	// Output:
	// <nil> true true sipedge
	// <nil> true
}
