package edge_test

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// TestMain fails the run if any server or phone goroutine outlives the
// tests (every edge is shut down and every phone closed by Cleanup).
func TestMain(m *testing.M) { os.Exit(edgetest.CheckLeaks(m)) }

const (
	aliceLAN = "192.168.1.10" // alice's fake private address (behind "NAT")
	bobLAN   = "192.168.1.20"
	bob2LAN  = "192.168.1.21"
	wait     = 3 * time.Second
)

// natPhone is a phone that claims a private address in Via, Contact and SDP
// while it really sends from 127.0.0.1:<ephemeral>.
func natPhone(t *testing.T, srv *edgetest.Server, user, lan string) *uatest.Phone {
	t.Helper()
	return srv.Phone(t, uatest.Config{Name: user + "@" + lan, User: user, ViaHost: lan, ViaPort: 5060})
}

// mustRegister registers p and fails the test unless the answer is 200.
func mustRegister(t *testing.T, p *uatest.Phone) *uatest.Msg {
	t.Helper()
	res, err := p.Register("", "", "")
	if err != nil {
		t.Fatalf("REGISTER of %s: %v", p.Name(), err)
	}
	if res.Code != 200 {
		t.Fatalf("REGISTER of %s: got %s, want 200 OK\n%s", p.Name(), res.Summary(), res)
	}
	return res
}

// quietUDPAddr is a loopback UDP address nobody listens on (yet): a
// server that does not answer, which a test may start there later.
func quietUDPAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func isTimeout(err error) bool { return errors.Is(err, uatest.ErrTimeout) }

// sentHeader returns header name of the last message p sent with that
// header.
func sentHeader(p *uatest.Phone, name string) string {
	evs := p.Events()
	for i := len(evs) - 1; i >= 0; i-- {
		if e := evs[i]; !e.In && e.Msg != nil && e.Msg.Has(name) {
			return e.Msg.Get(name)
		}
	}
	return ""
}

func peerSummary(ps []admin.Peer) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.AOR+" "+p.Contact+" via "+p.Transport+":"+p.Remote+" nat="+boolStr(p.NAT)+" "+strings.Join(p.NATReasons, ","))
	}
	if len(s) == 0 {
		return "(no peers)"
	}
	return strings.Join(s, "\n")
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// waitFor polls cond every 20ms up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
