package edge

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/location"
	"github.com/sipedge/sipedge/sipx"
)

// BenchmarkPeersAPI measures GET /api/v1/peers with 100,000 NATed
// registrations: one dashboard page (limit=100), a search, and the whole
// list as `sipedge peer list --json` fetches it.
//
//	go test -run '^$' -bench PeersAPI -benchtime 5x -count 2 -benchmem ./edge/
func BenchmarkPeersAPI(b *testing.B) {
	const n = 100000
	cfg, err := config.Parse("bench.toml", []byte(`
domains = ["test.example"]
[[listen]]
transport = "udp"
address = "127.0.0.1:0"
[stun]
listen = []
[admin]
listen = "off"
`))
	if err != nil {
		b.Fatal(err)
	}
	cfg.DataDir = b.TempDir()
	e, err := Start(cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Shutdown(b.Context())
	local := netip.MustParseAddrPort("127.0.0.1:5060")
	for i := range n {
		aor := fmt.Sprintf("u%06d@test.example", i)
		f := sipx.Flow{Transport: "udp", Local: local,
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 16), byte(i >> 8)}), uint16(10000+i%50000))}
		_, err := e.loc.Update(aor, func([]location.Binding) ([]location.Binding, error) {
			return []location.Binding{{User: fmt.Sprintf("u%06d", i), Contact: fmt.Sprintf("<sip:u%06d@192.168.1.%d:5060>", i, i%250),
				UserAgent: "Yealink SIP-T46U 108.86.0.45", Flow: f, Expires: time.Now().Add(time.Hour), NAT: true,
				NATReasons: []string{"via-address!=source", "private-via"}}}, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	h := admin.Handler(e, "t", slog.New(slog.DiscardHandler))
	for _, q := range []string{"?limit=100&offset=50000", "?q=u0999&limit=100", ""} {
		b.Run("query="+q, func(b *testing.B) {
			var bytes int64
			for b.Loop() {
				req := httptest.NewRequest("GET", "/api/v1/peers"+q, nil)
				req.Header.Set("Authorization", "Bearer t")
				w := &countingWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				if w.code != 200 {
					b.Fatalf("status %d", w.code)
				}
				bytes = w.n
			}
			b.ReportMetric(float64(bytes), "body-bytes")
		})
	}
}

type countingWriter struct {
	h    http.Header
	code int
	n    int64
}

func (w *countingWriter) Header() http.Header { return w.h }
func (w *countingWriter) WriteHeader(c int)   { w.code = c }
func (w *countingWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = 200
	}
	w.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)
