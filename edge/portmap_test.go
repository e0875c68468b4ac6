package edge_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/edge"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/portmap/portmaptest"
	"github.com/sipedge/sipedge/sipx"
	"github.com/sipedge/sipedge/stun"
)

// gatewayMappings lists a fake gateway's mappings as "udp 127.0.0.1:5060".
func gatewayMappings(g *portmaptest.Gateway) map[string]bool {
	out := map[string]bool{}
	for _, m := range g.Mappings() {
		out[m.Transport+" "+m.Internal.String()] = true
	}
	return out
}

// external_address = "auto": sipedge finds the router (PCP preferred),
// learns its external address, maps its SIP ports and its small media
// range, advertises the external address to outside peers, and removes
// every mapping on shutdown.
func TestPortmapAuto(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{PCP: true, NATPMP: true, UPnP: true})
	dc := g.DiscoverConfig()
	srv := edgetest.StartWith(t, edge.Options{Gateway: &dc}, `external_address = "auto"`+"\n"+edgetest.Base+`
[media]
ports = "31000-31019"
`)
	st := srv.Status(t)
	if st.External == nil || st.External.Address != "203.0.113.7" || st.External.Source != "pcp" {
		t.Fatalf("external: %+v", st.External)
	}
	want := []string{"udp " + srv.UDP.String(), "tcp " + srv.TCP.String()}
	for p := 31000; p <= 31019; p++ {
		want = append(want, "udp 127.0.0.1:"+strconv.Itoa(p))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := gatewayMappings(g)
		missing := 0
		for _, w := range want {
			if !got[w] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d mappings missing on the gateway: %v", missing, len(want), got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f := sipx.Flow{Transport: sipx.UDP, Local: srv.UDP, Remote: netip.MustParseAddrPort("198.51.100.7:5060")}
	if host, _ := srv.Advertise(f); host != "203.0.113.7" {
		t.Errorf("advertised %s to an outside peer", host)
	}
	if pm := srv.Status(t).PortMappings; len(pm) < len(want) || pm[0].Protocol != "pcp" || !strings.HasPrefix(pm[0].External, "203.0.113.7:") {
		t.Errorf("status port_mappings: %+v", pm)
	}
	srv.Stop()
	if got := g.Mappings(); len(got) != 0 {
		t.Fatalf("mappings left on the gateway after shutdown: %+v", got)
	}
}

// With the default (large) media range, each relayed call's ports are
// mapped while the call lasts.
func TestPortmapPerCall(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{NATPMP: true})
	dc := g.DiscoverConfig()
	srv := edgetest.StartWith(t, edge.Options{Gateway: &dc}, `external_address = "natpmp"`+"\n"+edgetest.Base+`
[media]
ports = "32000-32999"
`)
	if st := srv.Status(t); st.External == nil || st.External.Source != "natpmp" {
		t.Fatalf("external: %+v", st.External)
	}
	base := len(g.Mappings()) // the SIP ports
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	call, in := answeredCall(t, alice, bob)
	media := func() int {
		n := 0
		for _, m := range g.Mappings() {
			if p := m.Internal.Port(); m.Transport == "udp" && p >= 32000 && p <= 32999 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for media() < 4 { // RTP+RTCP for each side
		if time.Now().After(deadline) {
			t.Fatalf("media mappings during the call: %d (all: %v)", media(), gatewayMappings(g))
		}
		time.Sleep(50 * time.Millisecond)
	}
	hangup(t, call, in, "alice", "bob")
	deadline = time.Now().Add(5 * time.Second)
	for media() != 0 || len(g.Mappings()) != base {
		if time.Now().After(deadline) {
			t.Fatalf("media mappings left after the call: %v", gatewayMappings(g))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// No gateway answers: start-up still finishes within about 3 s, with no
// external address, and says why.
func TestPortmapNoGateway(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{Silent: true})
	dc := g.DiscoverConfig()
	begin := time.Now()
	srv := edgetest.StartWith(t, edge.Options{Gateway: &dc}, `external_address = "auto"`+"\n"+edgetest.Base)
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("start-up took %v without a gateway", d)
	}
	if st := srv.Status(t); st.External != nil {
		t.Errorf("external address without a gateway: %+v", st.External)
	}
}

// auto with external_stun: no router answers, so the STUN server's answer
// (asked from the SIP socket at the same time) is the external address;
// with a router, the router's address wins.
func TestPortmapAutoSTUN(t *testing.T) {
	t.Parallel()
	s, err := stun.NewServer(stun.ServerConfig{Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stunAddr string
	for _, l := range s.Listeners() {
		if l.Transport == "udp" {
			stunAddr = l.Addr.String()
		}
	}
	cfg := `external_address = "auto"` + "\nexternal_stun = \"" + stunAddr + "\"\n" + edgetest.Base

	silent := portmaptest.New(t, portmaptest.Config{Silent: true})
	dc := silent.DiscoverConfig()
	srv := edgetest.StartWith(t, edge.Options{Gateway: &dc}, cfg)
	// Learned at start-up, or (on a loaded machine) at the first retry.
	deadline := time.Now().Add(8 * time.Second)
	ext := srv.Status(t).External
	for ext == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		ext = srv.Status(t).External
	}
	if ext == nil || ext.Source != "stun" || ext.Address != "127.0.0.1" {
		t.Errorf("no router, STUN answers: external %+v", ext)
	}

	g := portmaptest.New(t, portmaptest.Config{PCP: true})
	dc2 := g.DiscoverConfig()
	srv2 := edgetest.StartWith(t, edge.Options{Gateway: &dc2}, cfg)
	if ext := srv2.Status(t).External; ext == nil || ext.Source != "pcp" || ext.Address != "203.0.113.7" {
		t.Errorf("router and STUN: external %+v", ext)
	}
}

// auto with external_stun, neither answering at start-up: STUN is asked
// again with backoff, and its answer becomes the external address once
// the server is up.
func TestPortmapAutoSTUNRetry(t *testing.T) {
	t.Parallel()
	stunAddr := quietUDPAddr(t)
	silent := portmaptest.New(t, portmaptest.Config{Silent: true})
	dc := silent.DiscoverConfig()
	srv := edgetest.StartWith(t, edge.Options{Gateway: &dc},
		`external_address = "auto"`+"\nexternal_stun = \""+stunAddr.String()+"\"\n"+edgetest.Base)
	if ext := srv.Status(t).External; ext != nil {
		t.Fatalf("external address with nothing answering: %+v", ext)
	}
	s, err := stun.NewServer(stun.ServerConfig{Listen: []netip.AddrPort{stunAddr}})
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	defer s.Close()
	deadline := time.Now().Add(12 * time.Second) // first retry after 5 s
	for {
		if ext := srv.Status(t).External; ext != nil && ext.Source == "stun" && ext.Address == "127.0.0.1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("STUN not asked again: external %+v", srv.Status(t).External)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
