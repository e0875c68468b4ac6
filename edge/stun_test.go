package edge_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/stun"
)

// The stand-alone STUN server starts and stops with the edge: plain mode
// on 127.0.0.1:0 answers Binding over UDP and TCP on one port, and shows
// in the status listeners and /metrics.
func TestSTUNServer(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) {
		c.STUN.Listen = []string{"127.0.0.1:0"}
	})
	udp, tcp := srv.STUNAddr("udp"), srv.STUNAddr("tcp")
	if !udp.IsValid() || udp != tcp || udp.Port() == srv.UDP.Port() {
		t.Fatalf("STUN server on udp %v, tcp %v (SIP %v): want one port for both, not SIP's", udp, tcp, srv.UDP)
	}

	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := stun.Binding(ctx, c, udp, stun.WithRetransmission(100*time.Millisecond, 5, 10))
	if err != nil {
		t.Fatalf("Binding over UDP: %v", err)
	}
	if want := c.LocalAddr().(*net.UDPAddr).AddrPort(); res.Mapped != want || res.From != udp || res.ResponseOrigin != udp || res.Software != "sipedge" {
		t.Errorf("UDP answer %+v; want mapped %v from %v", res, want, udp)
	}
	if res.OtherAddress.IsValid() {
		t.Errorf("plain mode sent OTHER-ADDRESS %v", res.OtherAddress)
	}

	tc, err := net.Dial("tcp", tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	res, err = stun.Binding(ctx, stun.StreamConn(tc), tcp, stun.WithRetransmission(0, 1, 0))
	if err != nil {
		t.Fatalf("Binding over TCP: %v", err)
	}
	if want := netip.MustParseAddrPort(tc.LocalAddr().String()); res.Mapped != want {
		t.Errorf("TCP answer %+v; want mapped %v", res, want)
	}

	st := srv.Status(t)
	for _, want := range []string{"stun-udp " + udp.String(), "stun-tcp " + tcp.String(), "udp " + srv.UDP.String()} {
		if !slices.Contains(st.Listeners, want) {
			t.Errorf("status listeners %q lack %q", st.Listeners, want)
		}
	}
	// A response is counted once sent: the client may have it first.
	for deadline := time.Now().Add(5 * time.Second); st.Counters["stun_answered"] != 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		st = srv.Status(t)
	}
	if st.Counters["stun_requests"] != 2 || st.Counters["stun_answered"] != 2 {
		t.Errorf("status counters: requests %d, answered %d", st.Counters["stun_requests"], st.Counters["stun_answered"])
	}
	m := metricsText(t, srv)
	for _, want := range []string{
		"sipedge_stun_requests_total 2\n", "sipedge_stun_answered_total 2\n", "sipedge_stun_rate_limited_total 0\n",
		"sipedge_stun_tcp_connections_total 1\n", `sipedge_stun_errors_total{kind="tcp_not_stun"} 0` + "\n",
		"sipedge_sip_stun_answered_total 0\n", // the SIP port's own STUN counter is separate
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grepLines(m, "stun"))
		}
	}

	// Shutdown closes it.
	srv.Stop()
	if c, err := net.DialTimeout("tcp", tcp.String(), time.Second); err == nil {
		c.Close()
		t.Error("STUN TCP port still open after Shutdown")
	}
}

// The test base has no STUN server (tests run in parallel; none may bind
// 0.0.0.0:3478), and /metrics still has the STUN series.
func TestSTUNServerOffInTests(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	if a := srv.STUNAddr("udp"); a.IsValid() || len(srv.STUNListeners()) != 0 {
		t.Errorf("STUN server on %v in the test base", a)
	}
	if m := metricsText(t, srv); !strings.Contains(m, "sipedge_stun_requests_total 0\n") {
		t.Errorf("/metrics: %s", grepLines(m, "stun"))
	}
}

// RFC 5780 mode through the config: alternate_address 127.0.0.2 and the
// default alternate port (primary + 1). A change-IP-and-port request is
// answered from 127.0.0.2:P+1.
func TestSTUNServerRFC5780(t *testing.T) {
	t.Parallel()
	var e *edge.Edge
	var port uint16
	for attempt := 0; e == nil; attempt++ {
		probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port = uint16(probe.LocalAddr().(*net.UDPAddr).Port)
		probe.Close()
		cfg, err := config.Parse("test.toml", []byte(edgetest.Base))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir = t.TempDir()
		cfg.STUN.Listen = []string{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()}
		cfg.STUN.AlternateAddress = "127.0.0.2"
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		e, err = edge.Start(cfg, edge.Options{UDPReaders: 1})
		if err != nil {
			if attempt == 10 || !strings.Contains(err.Error(), "in use") {
				t.Fatal(err)
			}
			e = nil
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.Shutdown(ctx)
	})
	if n := len(e.STUNListeners()); n != 8 {
		t.Fatalf("STUN listeners %q: want 4 UDP and 4 TCP", e.STUNListeners())
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	primary := e.STUNAddr("udp")
	res, err := stun.Binding(ctx, c, primary, stun.WithRetransmission(100*time.Millisecond, 5, 10), stun.WithChangeRequest(true, true))
	if err != nil {
		t.Fatal(err)
	}
	other := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port+1)
	if res.From != other || res.ResponseOrigin != other || res.OtherAddress != other {
		t.Errorf("answer %+v: want it from, and naming, %v", res, other)
	}
}
