package edge_test

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/sipx"
	"github.com/sipedge/sipedge/stun"
	"github.com/sipedge/sipedge/uatest"
)

// Split horizon: with an external address, peers outside the local
// networks are told the external address, local ones the local address; a
// listener's own advertise wins; the external address counts as ours.
func TestExternalStaticSplitHorizon(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, `external_address = "203.0.113.50"
local_nets = ["10.0.0.0/8"]
`+edgetest.Base)
	local := srv.UDP.Addr().String()
	for _, c := range []struct {
		peer, want string
	}{
		{"198.51.100.7:5060", "203.0.113.50"}, // the internet
		{"203.0.113.9:40000", "203.0.113.50"},
		{"10.1.2.3:5060", local}, // local_nets
		{"127.0.0.1:5060", local},
	} {
		f := sipx.Flow{Transport: sipx.UDP, Local: srv.UDP, Remote: netip.MustParseAddrPort(c.peer)}
		if host, port := srv.Advertise(f); host != c.want || port != int(srv.UDP.Port()) {
			t.Errorf("advertised to %s: %s:%d, want %s:%d", c.peer, host, port, c.want, srv.UDP.Port())
		}
	}
	st := srv.Status(t)
	if st.External == nil || st.External.Address != "203.0.113.50" || st.External.Source != "static" {
		t.Errorf("status external: %+v", st.External)
	}
	if m := metricsText(t, srv); !strings.Contains(m, `sipedge_external_address_info{address="203.0.113.50",source="static"} 1`) {
		t.Errorf("/metrics: %s", grepLines(m, "external"))
	}
	// A phone that knows us by the external address registers to it.
	p := srv.Phone(t, uatest.Config{User: "alice", Domain: "203.0.113.50"})
	if res, err := p.Register("", "", ""); err != nil || res.Code != 200 {
		t.Fatalf("REGISTER to the external address: %v %v", res, err)
	}

	// A listener's own advertise address wins.
	srv2 := edgetest.Start(t, `external_address = "203.0.113.50"`+"\n"+strings.Replace(edgetest.Base,
		"transport = \"udp\"\naddress = \"127.0.0.1:0\"", "transport = \"udp\"\naddress = \"127.0.0.1:0\"\nadvertise = \"sip.example.net\"", 1))
	f := sipx.Flow{Transport: sipx.UDP, Local: srv2.UDP, Remote: netip.MustParseAddrPort("198.51.100.7:5060")}
	if host, _ := srv2.Advertise(f); host != "sip.example.net" {
		t.Errorf("with listen.advertise, advertised %q", host)
	}
}

// stun: sipedge asks a STUN server from its SIP UDP socket; when the server
// does not answer at start-up, start-up still finishes within about 3 s
// and the address is learned later, with backoff.
func TestExternalSTUN(t *testing.T) {
	t.Parallel()
	port := int(quietUDPAddr(t).Port())

	begin := time.Now()
	srv := edgetest.Start(t, `external_address = "stun:127.0.0.1:`+strconv.Itoa(port)+`"`+"\n"+edgetest.Base)
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("start-up took %v with an unanswering STUN server, want about 3 s at most", d)
	}
	if st := srv.Status(t); st.External != nil {
		t.Fatalf("external address without a STUN answer: %+v", st.External)
	}
	s, err := stun.NewServer(stun.ServerConfig{Listen: []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}})
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	defer s.Close()
	deadline := time.Now().Add(12 * time.Second) // first retry after 5 s
	var ext *admin.External
	for ext == nil || ext.Source != "stun" {
		if time.Now().After(deadline) {
			t.Fatalf("external address not learned after the STUN server came up: %+v", ext)
		}
		time.Sleep(100 * time.Millisecond)
		ext = srv.Status(t).External
	}
	if ext.Address != "127.0.0.1" || !strings.Contains(ext.Detail, "stun 127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("learned %+v", ext)
	}
	if st := s.Stats(); st.Answered == 0 {
		t.Errorf("the STUN server answered nothing: %+v", st)
	}
}

// A host name is resolved.
func TestExternalHostName(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, `external_address = "localhost"`+"\n"+edgetest.Base)
	ext := srv.Status(t).External
	if ext == nil || ext.Source != "dns" || (ext.Address != "127.0.0.1" && ext.Address != "::1") {
		t.Fatalf("external from a host name: %+v", ext)
	}
}
