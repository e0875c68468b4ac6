package portmap_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/sipedge/sipedge/portmap"
	"github.com/sipedge/sipedge/portmap/portmaptest"
)

var (
	lo      = netip.MustParseAddr("127.0.0.1")
	sipUDP  = netip.AddrPortFrom(lo, 5060)
	extAddr = netip.MustParseAddr("203.0.113.7")
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newClient makes a client of protocol p for the fake gateway g.
func newClient(t *testing.T, g *portmaptest.Gateway, p portmap.Protocol) portmap.Client {
	t.Helper()
	switch p {
	case portmap.PCP:
		return portmap.NewPCP(g.Addr(), lo, g.Options()...)
	case portmap.NATPMP:
		return portmap.NewNATPMP(g.Addr(), g.Options()...)
	}
	c, err := portmap.NewUPnP(ctxT(t, 2*time.Second), g.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func gatewayFor(t *testing.T, p portmap.Protocol, cfg portmaptest.Config) *portmaptest.Gateway {
	switch p {
	case portmap.PCP:
		cfg.PCP = true
	case portmap.NATPMP:
		cfg.NATPMP = true
	case portmap.UPnP:
		cfg.UPnP = true
	}
	return portmaptest.New(t, cfg)
}

var protocols = []portmap.Protocol{portmap.PCP, portmap.NATPMP, portmap.UPnP}

// Every client maps, renews, checks and removes against the fake.
func TestClientLifecycle(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			g := gatewayFor(t, p, portmaptest.Config{})
			c := newClient(t, g, p)
			ctx := ctxT(t, 5*time.Second)
			if c.Protocol() != p {
				t.Errorf("protocol %s", c.Protocol())
			}
			ext, err := c.ExternalAddr(ctx)
			if err != nil || ext != extAddr {
				t.Fatalf("external %v %v", ext, err)
			}
			var ms []portmap.Mapping
			for _, tr := range []string{"udp", "TCP"} {
				m, err := c.Map(ctx, tr, sipUDP, 0, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if m.Protocol != p || m.Internal != sipUDP || m.External != netip.AddrPortFrom(extAddr, 5060) || m.Lifetime != time.Hour {
					t.Errorf("mapping %v", m)
				}
				if d := time.Until(m.Expires); d < 59*time.Minute || d > time.Hour {
					t.Errorf("expires in %v", d)
				}
				ms = append(ms, m)
			}
			if n := len(g.Mappings()); n != 2 {
				t.Fatalf("gateway holds %d mappings", n)
			}
			// Renewal keeps the port (and, for PCP, the nonce: the fake
			// refuses another one).
			m, err := c.Map(ctx, "udp", sipUDP, 5060, 2*time.Hour)
			if err != nil || m.External.Port() != 5060 {
				t.Fatalf("renewal %v %v", m, err)
			}
			res, err := c.(portmap.Checker).Check(ctx, ms)
			if err != nil || res.External != extAddr || len(res.Lost) != 0 {
				t.Errorf("check %+v %v", res, err)
			}
			for _, m := range ms {
				if err := c.Unmap(ctx, m); err != nil {
					t.Error(err)
				}
			}
			if got := g.Mappings(); len(got) != 0 {
				t.Errorf("left on the gateway: %+v", got)
			}
			// Removing again is not an error.
			if err := c.Unmap(ctx, ms[0]); err != nil {
				t.Errorf("second unmap: %v", err)
			}
		})
	}
}

// An internal address left unspecified becomes our LAN address.
func TestMapUnspecifiedInternal(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			g := gatewayFor(t, p, portmaptest.Config{})
			c := newClient(t, g, p)
			m, err := c.Map(ctxT(t, 3*time.Second), "udp", netip.MustParseAddrPort("0.0.0.0:5070"), 0, time.Hour)
			if err != nil || m.Internal != netip.AddrPortFrom(lo, 5070) {
				t.Fatalf("%v %v", m, err)
			}
			if gm := g.Mappings(); len(gm) != 1 || gm[0].Internal != netip.AddrPortFrom(lo, 5070) {
				t.Errorf("gateway %+v", gm)
			}
		})
	}
}

// A port someone else holds: PCP and NAT-PMP grant another, UPnP IGD:2
// AddAnyPortMapping picks another, IGD:1 retries AddPortMapping on 718.
func TestMapTakenPort(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		p    portmap.Protocol
		cfg  portmaptest.Config
	}{
		{"pcp", portmap.PCP, portmaptest.Config{}},
		{"natpmp", portmap.NATPMP, portmaptest.Config{}},
		{"upnp-igd2", portmap.UPnP, portmaptest.Config{}},
		{"upnp-igd1", portmap.UPnP, portmaptest.Config{UPnPVersion: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.cfg.Taken = []uint16{5060}
			g := gatewayFor(t, c.p, c.cfg)
			cl := newClient(t, g, c.p)
			m, err := cl.Map(ctxT(t, 3*time.Second), "udp", sipUDP, 5060, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if m.External.Port() == 5060 || m.External.Port() == 0 {
				t.Errorf("granted %v", m.External)
			}
			gm := g.Mappings()
			if len(gm) != 1 || gm[0].External != m.External.Port() {
				t.Errorf("gateway %+v, client %v", gm, m)
			}
		})
	}
}

func TestPCPNonceAndReboot(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{PCP: true})
	c := portmap.NewPCP(g.Addr(), lo, g.Options()...)
	ctx := ctxT(t, 5*time.Second)
	m, err := c.Map(ctx, "udp", sipUDP, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Another client (another nonce) may neither renew nor delete it.
	other := portmap.NewPCP(g.Addr(), lo, g.Options()...)
	var pe *portmap.PCPError
	if _, err := other.Map(ctx, "udp", sipUDP, 0, time.Hour); !errors.As(err, &pe) || pe.Code != portmap.PCPNotAuthorized {
		t.Errorf("other nonce: %v", err)
	}
	if err := other.Unmap(ctx, m); !errors.As(err, &pe) || pe.Code != portmap.PCPNotAuthorized {
		t.Errorf("other nonce unmap: %v", err)
	}
	rc := c.(portmap.ResetCounter)
	ch := c.(portmap.Checker)
	if res, err := ch.Check(ctx, []portmap.Mapping{m}); err != nil || len(res.Lost) != 0 || rc.Resets() != 0 {
		t.Fatalf("check %+v %v resets %d", res, err, rc.Resets())
	}
	g.Reboot()
	res, err := ch.Check(ctx, []portmap.Mapping{m})
	if err != nil || len(res.Lost) != 1 || rc.Resets() != 1 {
		t.Fatalf("after reboot: %+v %v resets %d", res, err, rc.Resets())
	}
	// Re-created with the same nonce and port.
	m2, err := c.Map(ctx, "udp", sipUDP, m.External.Port(), time.Hour)
	if err != nil || m2.External != m.External {
		t.Fatalf("re-create %v %v", m2, err)
	}
}

func TestNATPMPReboot(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{NATPMP: true})
	c := portmap.NewNATPMP(g.Addr(), g.Options()...)
	ctx := ctxT(t, 5*time.Second)
	m, err := c.Map(ctx, "tcp", sipUDP, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g.Reboot()
	g.SetExternal(netip.MustParseAddr("198.51.100.9"))
	// The renewal shows the reset epoch; the client asks the address again.
	m2, err := c.Map(ctx, "tcp", sipUDP, m.External.Port(), time.Hour)
	if err != nil || c.(portmap.ResetCounter).Resets() != 1 {
		t.Fatalf("%v %v", m2, err)
	}
	if m2.External != netip.MustParseAddrPort("198.51.100.9:5060") {
		t.Errorf("after reboot %v", m2.External)
	}
}

// Lease caps: the granted lifetime is what the mapping says.
func TestLeaseCap(t *testing.T) {
	t.Parallel()
	for _, p := range []portmap.Protocol{portmap.PCP, portmap.NATPMP} {
		g := gatewayFor(t, p, portmaptest.Config{MaxLease: 90 * time.Second})
		m, err := newClient(t, g, p).Map(ctxT(t, 3*time.Second), "udp", sipUDP, 0, time.Hour)
		if err != nil || m.Lifetime != 90*time.Second {
			t.Errorf("%s: %v %v", p, m, err)
		}
	}
}

// Errors are recognisable, and fast when the gateway can tell at once.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	t.Run("pcp against nat-pmp only", func(t *testing.T) {
		t.Parallel()
		g := portmaptest.New(t, portmaptest.Config{NATPMP: true})
		start := time.Now()
		_, err := portmap.NewPCP(g.Addr(), lo, g.Options()...).ExternalAddr(ctxT(t, 3*time.Second))
		if !errors.Is(err, portmap.ErrUnsupported) || time.Since(start) > time.Second {
			t.Errorf("%v after %v", err, time.Since(start))
		}
	})
	t.Run("nat-pmp against pcp only", func(t *testing.T) {
		t.Parallel()
		g := portmaptest.New(t, portmaptest.Config{PCP: true})
		start := time.Now()
		_, err := portmap.NewNATPMP(g.Addr(), g.Options()...).ExternalAddr(ctxT(t, 3*time.Second))
		if !errors.Is(err, portmap.ErrUnsupported) || time.Since(start) > time.Second {
			t.Errorf("%v after %v", err, time.Since(start))
		}
	})
	t.Run("closed port", func(t *testing.T) {
		t.Parallel()
		g := portmaptest.New(t, portmaptest.Config{})
		for _, c := range []portmap.Client{portmap.NewPCP(g.Addr(), lo, g.Options()...), portmap.NewNATPMP(g.Addr(), g.Options()...)} {
			start := time.Now()
			_, err := c.ExternalAddr(ctxT(t, 3*time.Second))
			if !errors.Is(err, portmap.ErrRefused) || time.Since(start) > time.Second {
				t.Errorf("%s: %v after %v", c.Protocol(), err, time.Since(start))
			}
		}
	})
	t.Run("silent: retransmissions end", func(t *testing.T) {
		t.Parallel()
		g := portmaptest.New(t, portmaptest.Config{Silent: true})
		// 50 ms doubling, 5 tries: 50+100+200+400+800 ms.
		start := time.Now()
		_, err := portmap.NewNATPMP(g.Addr(), g.Options()...).ExternalAddr(context.Background())
		if el := time.Since(start); !errors.Is(err, portmap.ErrNoAnswer) || el < 1500*time.Millisecond || el > 3*time.Second {
			t.Errorf("%v after %v", err, el)
		}
	})
	t.Run("silent: context ends it", func(t *testing.T) {
		t.Parallel()
		g := portmaptest.New(t, portmaptest.Config{Silent: true})
		start := time.Now()
		_, err := portmap.NewPCP(g.Addr(), lo, g.Options()...).Map(ctxT(t, 300*time.Millisecond), "udp", sipUDP, 0, time.Hour)
		if el := time.Since(start); !errors.Is(err, portmap.ErrNoAnswer) || !errors.Is(err, context.DeadlineExceeded) || el > time.Second {
			t.Errorf("%v after %v", err, el)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		t.Parallel()
		g := portmaptest.New(t, portmaptest.Config{PCP: true, NATPMP: true, UPnP: true})
		ctx := ctxT(t, 3*time.Second)
		g.FailNext(1)
		_, err := portmap.NewPCP(g.Addr(), lo, g.Options()...).Map(ctx, "udp", sipUDP, 0, time.Hour)
		var pe *portmap.PCPError
		if !errors.As(err, &pe) || pe.Code != portmap.PCPNoResources || pe.Lifetime != 30*time.Second {
			t.Errorf("pcp: %v", err)
		}
		g.FailNext(1)
		_, err = portmap.NewNATPMP(g.Addr(), g.Options()...).Map(ctx, "udp", sipUDP, 0, time.Hour)
		var ne *portmap.NATPMPError
		if !errors.As(err, &ne) || ne.Code != portmap.PMPOutOfResources {
			t.Errorf("natpmp: %v", err)
		}
		u := newClient(t, g, portmap.UPnP)
		g.FailNext(1)
		_, err = u.Map(ctx, "udp", netip.AddrPortFrom(lo, 5062), 0, time.Hour)
		var ue *portmap.UPnPError
		if !errors.As(err, &ue) || ue.Code != portmap.UPnPActionFailed || ue.HTTPStatus != 500 {
			t.Errorf("upnp: %v", err)
		}
		if _, err := u.Map(ctx, "sctp", sipUDP, 0, time.Hour); err == nil {
			t.Error("sctp accepted")
		}
	})
}

// UPnP against each flavour and service version.
func TestUPnPFlavors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  portmaptest.Config
		svc  string
	}{
		{"miniupnpd-igd2", portmaptest.Config{}, "WANIPConnection:2"},
		{"miniupnpd-igd1", portmaptest.Config{UPnPVersion: 1}, "WANIPConnection:1"},
		{"igd2-without-AddAny", portmaptest.Config{NoAddAny: true}, "WANIPConnection:2"},
		{"fritzbox", portmaptest.Config{Flavor: portmaptest.FlavorFritz}, "WANIPConnection:1"},
		{"libupnp-ppp", portmaptest.Config{Flavor: portmaptest.FlavorLibUPnP, PPP: true}, "WANPPPConnection:1"},
		{"libupnp-ip", portmaptest.Config{Flavor: portmaptest.FlavorLibUPnP}, "WANIPConnection:1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.cfg.UPnP = true
			g := portmaptest.New(t, c.cfg)
			cl := newClient(t, g, portmap.UPnP)
			ctx := ctxT(t, 3*time.Second)
			m, err := cl.Map(ctx, "udp", sipUDP, 0, time.Hour)
			if err != nil || m.External != netip.AddrPortFrom(extAddr, 5060) {
				t.Fatalf("%v %v", m, err)
			}
			gm := g.Mappings()
			if len(gm) != 1 || gm[0].Description != "sipedge" || gm[0].Lifetime != time.Hour {
				t.Errorf("gateway %+v", gm)
			}
			wantAny := c.cfg.UPnPVersion != 1 && !c.cfg.NoAddAny && !c.cfg.PPP && c.cfg.Flavor == ""
			if got := g.CountOps(portmap.UPnP, "AddAnyPortMapping") == 1; got != wantAny {
				t.Errorf("AddAnyPortMapping used: %v", got)
			}
			res, err := cl.(portmap.Checker).Check(ctx, []portmap.Mapping{m})
			if err != nil || len(res.Lost) != 0 {
				t.Errorf("check %+v %v", res, err)
			}
			g.Reboot()
			res, err = cl.(portmap.Checker).Check(ctx, []portmap.Mapping{m})
			if err != nil || len(res.Lost) != 1 {
				t.Errorf("check after reboot %+v %v", res, err)
			}
			if err := cl.Unmap(ctx, m); err != nil {
				t.Errorf("unmap of a lost mapping: %v", err)
			}
			if d := cl.(interface{ Detail() string }).Detail(); d == "" {
				t.Error("no detail")
			}
			_ = c.svc
		})
	}
}

func TestUPnPOnlyPermanent(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{UPnP: true, OnlyPermanent: true, UPnPVersion: 1})
	c := newClient(t, g, portmap.UPnP)
	ctx := ctxT(t, 3*time.Second)
	m, err := c.Map(ctx, "udp", sipUDP, 0, time.Hour)
	if err != nil || m.Lifetime != 0 || !m.Expires.IsZero() {
		t.Fatalf("%v %v", m, err)
	}
	// Remembered: the next one asks for a permanent lease at once.
	if _, err := c.Map(ctx, "tcp", sipUDP, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	n725 := 0
	for _, op := range g.Ops() {
		if op.Result == "725" {
			n725++
		}
	}
	if n725 != 1 {
		t.Errorf("%d answers 725", n725)
	}
}

func TestUPnPRefusingGateway(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{UPnP: true, RefuseMappings: true})
	_, err := portmap.NewUPnP(ctxT(t, 2*time.Second), g.Options()...)
	if !errors.Is(err, portmap.ErrNoExternal) {
		t.Errorf("%v", err)
	}
}

func TestNewUPnPFromURL(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{UPnP: true, Flavor: portmaptest.FlavorFritz})
	c, err := portmap.NewUPnPFromURL(ctxT(t, 2*time.Second), g.DescURL(), portmap.WithLocalAddr(lo))
	if err != nil {
		t.Fatal(err)
	}
	if ext, err := c.ExternalAddr(ctxT(t, 2*time.Second)); err != nil || ext != extAddr {
		t.Errorf("%v %v", ext, err)
	}
	if _, err := portmap.NewUPnPFromURL(context.Background(), "ftp://x/"); err == nil {
		t.Error("ftp URL accepted")
	}
}

// No IGD: discovery ends with the context.
func TestNewUPnPNoAnswer(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{})
	start := time.Now()
	_, err := portmap.NewUPnP(ctxT(t, 400*time.Millisecond), g.Options()...)
	if el := time.Since(start); !errors.Is(err, portmap.ErrNoIGD) || el < 350*time.Millisecond || el > time.Second {
		t.Errorf("%v after %v", err, el)
	}
}
