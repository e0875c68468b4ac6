package edge_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// BenchmarkRegisterAuth measures digest-authenticated registrations per
// second through the whole server, in-process on loopback UDP: a pool of
// users spread over a few sockets, each registration the full exchange
// (REGISTER, 401, REGISTER with credentials, 200). It complements the SIPp
// benchmark (bench/), which measures the binary from outside.
//
//	go test -run '^$' -bench RegisterAuth -benchtime 20000x ./edge/
func BenchmarkRegisterAuth(b *testing.B) {
	const users, sockets = 1000, 8
	var extra strings.Builder
	for i := 0; i < users; i++ {
		fmt.Fprintf(&extra, "\n[[users]]\nname = \"bu%04d\"\npassword = \"pw-bu%04d\"\n", i, i)
	}
	srv := edgetest.Start(b, edgetest.Base+extra.String())
	for _, alg := range []string{uatest.SHA256, uatest.MD5} {
		b.Run(alg, func(b *testing.B) {
			phones := make([]*uatest.Phone, sockets)
			for i := range phones {
				phones[i] = uatest.New(b, uatest.Config{Name: fmt.Sprintf("bench-%d", i), Server: srv.UDP, Domain: edgetest.Domain,
					Algorithm: alg, NoRecord: true, Timeout: 5 * time.Second})
			}
			var done atomic.Int64
			var failMu sync.Mutex
			var failed error
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w, p := range phones {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Each socket owns users w, w+sockets, ...: a user always
					// registers from the same flow, as a phone does.
					for k := 0; done.Add(1) <= int64(b.N); k++ {
						u := w + sockets*(k%(users/sockets))
						name := fmt.Sprintf("bu%04d", u)
						res, err := p.Register(name, "pw-"+name, "")
						if err == nil && res.Code != 200 {
							err = fmt.Errorf("%s: %s", name, res.Summary())
						}
						if err != nil {
							failMu.Lock()
							if failed == nil {
								failed = err
							}
							failMu.Unlock()
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if failed != nil {
				b.Fatalf("registration failed: %v", failed)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "registers/s")
		})
	}
}
