package edge_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

const envStartupChild = "EDGE_TEST_STARTUP_CHILD"

// Phones do not stop sending while sipedge restarts: packets arrive as soon
// as the SIP socket is bound. Start must not hand them to a pipeline that
// is not built yet. The scenario runs in a child process because the bug
// is a nil dereference (or, under -race, a data race) that would take the
// whole test binary down.
func TestStartupUnderLoad(t *testing.T) {
	if os.Getenv(envStartupChild) != "" {
		startupUnderLoad(t)
		return
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStartupUnderLoad$", "-test.count=1")
	cmd.Env = append(os.Environ(), envStartupChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		s := string(out)
		what := "failed"
		switch {
		case strings.Contains(s, "nil pointer dereference"):
			what = "crashed with a nil pointer dereference"
		case strings.Contains(s, "DATA RACE"):
			what = "has a data race"
		}
		if len(s) > 6000 {
			s = s[:6000] + "\n[...]"
		}
		t.Errorf("sipedge %s when SIP packets arrive during Start (%v).\n"+
			"edge/edge.go Start: bind() starts ServeUDP/ServeTCP goroutines before buildRouting() sets e.reg/e.proxy and before every listener is added to e.domains/e.listeners; "+
			"start serving only at the end of Start.\n--- child output ---\n%s", what, err, s)
	}
}

func startupUnderLoad(t *testing.T) {
	// A port to restart on, known before the server exists.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(c.LocalAddr().String())
	c.Close()

	flood, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer flood.Close()
	reg := (&uatest.Msg{Method: "REGISTER", URI: "sip:test.example", Headers: []uatest.Header{
		{Name: "Via", Value: "SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bKflood"},
		{Name: "From", Value: "<sip:alice@test.example>;tag=f"}, {Name: "To", Value: "<sip:alice@test.example>"},
		{Name: "Call-ID", Value: "flood"}, {Name: "CSeq", Value: "1 REGISTER"}, {Name: "Max-Forwards", Value: "70"},
		{Name: "Contact", Value: "<sip:alice@192.168.1.10:5060>"}}}).Bytes()
	inv := strings.Replace(strings.Replace(string(reg), "REGISTER sip:test.example", "INVITE sip:bob@test.example", 1), "1 REGISTER", "1 INVITE", 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			b := reg
			if i%2 == 1 {
				b = []byte(inv)
			}
			_, _ = flood.WriteToUDPAddrPort(b, port)
			if i%16 == 0 {
				time.Sleep(10 * time.Microsecond)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	dir := t.TempDir()
	for i := 0; i < 40; i++ {
		srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) {
			c.DataDir = dir
			c.Listen[0].Address = port.String()
		})
		time.Sleep(5 * time.Millisecond)
		srv.Stop()
	}
}

// A second sipedge (another data dir) on the same SIP port must fail to
// start, not silently share the port: SO_REUSEPORT would make the kernel
// split the phones' packets between the two servers, each with half of the
// registrations.
func TestSecondInstanceOnSamePort(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	for _, tr := range []string{"udp", "tcp"} {
		cfg, err := config.Parse("second.toml", []byte(edgetest.Base))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DataDir = t.TempDir()
		addr := srv.UDP
		if tr == "tcp" {
			addr = srv.TCP
		}
		cfg.Listen = []config.Listen{{Transport: tr, Address: addr.String()}}
		e, err := edge.Start(cfg, edge.Options{UDPReaders: 1})
		if err == nil {
			e.Shutdown(context.Background())
			t.Errorf("a second sipedge started on %s %s, already used by the first one (edge/edge.go bind sets SO_REUSEPORT on the first socket too; "+
				"bind it without SO_REUSEPORT first, or probe, so that a port in use is an error)", tr, addr)
			continue
		}
		if !strings.Contains(err.Error(), "in use") {
			t.Logf("second instance on %s %s refused: %v", tr, addr, err)
		}
	}
}
