package sipx

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Timer B (fail → synthetic 408) and a final response received at the same
// moment must deliver exactly one final response to onResp. fail() sets
// gotFinal but leaves the state Calling until terminate(), and receive()
// looks only at the state, so both finals can reach the TU.
func TestClientTxTimeoutRacesFinal(t *testing.T) {
	ts := startStack(t, Config{}, nil, false)
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	to := ts.udpFlow(silent.LocalAddr().(*net.UDPAddr).AddrPort())
	doubles := 0
	const n = 20000
	for i := 0; i < n; i++ {
		method := "INVITE"
		if i%2 == 1 {
			method = "OPTIONS"
		}
		var finals atomic.Int32
		req := mustParseReq(t, newSpec(method, ts.udp.String()).String())
		tx, err := ts.NewClientTx(req, to, func(_ *ClientTx, res *Response) {
			if res.StatusCode >= 200 {
				finals.Add(1)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		res := NewResponse(req, 486, "Busy Here")
		res.SetSource("127.0.0.1:1")
		var start, wg sync.WaitGroup
		start.Add(1)
		wg.Add(2)
		go func() { defer wg.Done(); start.Wait(); tx.fail(408, "Request Timeout") }()
		go func() { defer wg.Done(); start.Wait(); tx.receive(res) }()
		start.Done()
		wg.Wait()
		if finals.Load() != 1 {
			doubles++
		}
		tx.Terminate()
	}
	if doubles > 0 {
		t.Errorf("%d of %d transactions delivered two final responses (408 and 486)", doubles, n)
	}
}
