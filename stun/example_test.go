package stun_test

import (
	"fmt"
	"net/netip"

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
