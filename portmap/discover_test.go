package portmap_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/portmap"
	"github.com/sipedge/sipedge/portmap/portmaptest"
)

func discover(t *testing.T, g *portmaptest.Gateway, d time.Duration, mod func(*portmap.DiscoverConfig)) (portmap.Client, []portmap.Found, time.Duration) {
	t.Helper()
	cfg := g.DiscoverConfig()
	if mod != nil {
		mod(&cfg)
	}
	start := time.Now()
	best, found := portmap.Discover(ctxT(t, d), cfg)
	el := time.Since(start)
	if len(found) != len(protocols) && cfg.Protocols == nil {
		t.Fatalf("found %v", found)
	}
	for i, f := range found {
		t.Logf("%d %v", i, f)
	}
	return best, found, el
}

func foundOf(found []portmap.Found, p portmap.Protocol) portmap.Found {
	for _, f := range found {
		if f.Protocol == p {
			return f
		}
	}
	return portmap.Found{}
}

func TestDiscoverCombinations(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  portmaptest.Config
		best portmap.Protocol // "" for none
		max  time.Duration    // Discover must return by then
	}{
		{"only pcp", portmaptest.Config{PCP: true}, portmap.PCP, 2 * time.Second},
		{"only natpmp", portmaptest.Config{NATPMP: true}, portmap.NATPMP, 2 * time.Second},
		{"only upnp", portmaptest.Config{UPnP: true}, portmap.UPnP, 2 * time.Second},
		{"all three", portmaptest.Config{PCP: true, NATPMP: true, UPnP: true}, portmap.PCP, 500 * time.Millisecond},
		{"natpmp and upnp", portmaptest.Config{NATPMP: true, UPnP: true}, portmap.NATPMP, 500 * time.Millisecond},
		{"pcp and upnp", portmaptest.Config{PCP: true, UPnP: true}, portmap.PCP, 500 * time.Millisecond},
		{"none, ports closed", portmaptest.Config{}, "", 2100 * time.Millisecond},
		{"none, silent", portmaptest.Config{Silent: true}, "", 2100 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := portmaptest.New(t, c.cfg)
			best, found, el := discover(t, g, 2*time.Second, nil)
			if el > c.max {
				t.Errorf("took %v, want at most %v", el, c.max)
			}
			if c.best == "" {
				if best != nil {
					t.Fatalf("found %s", best.Protocol())
				}
				for _, f := range found {
					if f.Err == nil {
						t.Errorf("%s: no error", f.Protocol)
					}
				}
				return
			}
			if best == nil || best.Protocol() != c.best {
				t.Fatalf("best %v", best)
			}
			f := foundOf(found, c.best)
			if f.Err != nil || f.External != extAddr || f.PrivateWAN || f.Elapsed <= 0 {
				t.Errorf("found %+v", f)
			}
			// The chosen client works.
			if _, err := best.Map(ctxT(t, 2*time.Second), "udp", sipUDP, 0, time.Minute); err != nil {
				t.Error(err)
			}
		})
	}
}

// With nothing answering, Discover returns by the deadline even with
// the default (RFC-paced) retransmissions.
func TestDiscoverDeadline(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{Silent: true})
	_, found, el := discover(t, g, 700*time.Millisecond, func(c *portmap.DiscoverConfig) {
		c.Options = []portmap.Option{portmap.WithServerPort(g.PortMapPort()), portmap.WithSSDPAddr(g.SSDPAddr())}
	})
	if el < 650*time.Millisecond || el > 900*time.Millisecond {
		t.Errorf("took %v", el)
	}
	for _, f := range found {
		if !errors.Is(f.Err, portmap.ErrNoAnswer) && !errors.Is(f.Err, portmap.ErrNoIGD) {
			t.Errorf("%s: %v", f.Protocol, f.Err)
		}
	}
	// No deadline given: a 3 s bound applies.
	start := time.Now()
	portmap.Discover(context.Background(), portmap.DiscoverConfig{Gateway: lo, Local: lo, Protocols: []portmap.Protocol{portmap.NATPMP},
		Options: []portmap.Option{portmap.WithServerPort(g.PortMapPort()), portmap.WithRetransmit(time.Second, 10)}})
	if el := time.Since(start); el < 2900*time.Millisecond || el > 3500*time.Millisecond {
		t.Errorf("without deadline: %v", el)
	}
}

// A less preferred protocol answered: Discover waits only the grace
// period for a preferred one, and says it skipped it.
func TestDiscoverGrace(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{UPnP: true, Silent: true})
	best, found, el := discover(t, g, 3*time.Second, func(c *portmap.DiscoverConfig) { c.Grace = 300 * time.Millisecond })
	if best == nil || best.Protocol() != portmap.UPnP {
		t.Fatalf("best %v", best)
	}
	if el > time.Second {
		t.Errorf("took %v", el)
	}
	if f := foundOf(found, portmap.PCP); !errors.Is(f.Err, portmap.ErrSkipped) {
		t.Errorf("pcp: %v", f.Err)
	}
	// WaitAll waits for everything (until the deadline here).
	_, found, el = discover(t, g, 1200*time.Millisecond, func(c *portmap.DiscoverConfig) { c.WaitAll = true })
	if el < 1100*time.Millisecond {
		t.Errorf("WaitAll took %v", el)
	}
	if f := foundOf(found, portmap.PCP); !errors.Is(f.Err, portmap.ErrNoAnswer) {
		t.Errorf("pcp: %v", f.Err)
	}
}

func TestDiscoverDoubleNAT(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		ext  string
		want string
	}{
		{"192.168.178.20", "double NAT"},
		{"100.70.1.2", "carrier-grade NAT"},
		{"10.0.0.2", "double NAT"},
	} {
		t.Run(c.ext, func(t *testing.T) {
			t.Parallel()
			g := portmaptest.New(t, portmaptest.Config{PCP: true, NATPMP: true, UPnP: true, External: netip.MustParseAddr(c.ext)})
			best, found, _ := discover(t, g, 2*time.Second, func(c *portmap.DiscoverConfig) { c.WaitAll = true })
			if best == nil {
				t.Fatal("nothing found")
			}
			for _, f := range found {
				if f.Err != nil || !f.PrivateWAN || f.External.String() != c.ext || !strings.Contains(f.Detail, c.want) {
					t.Errorf("%+v", f)
				}
			}
		})
	}
}

// A gateway that refuses every mapping because its own WAN address is
// private (what miniupnpd does): no client, and a report that says why.
func TestDiscoverRefusingGateway(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{PCP: true, NATPMP: true, UPnP: true, RefuseMappings: true, External: netip.MustParseAddr("10.20.30.40")})
	best, found, _ := discover(t, g, 2*time.Second, func(c *portmap.DiscoverConfig) { c.WaitAll = true })
	if best != nil {
		t.Fatalf("best %s", best.Protocol())
	}
	for _, f := range found {
		if f.Err == nil || !strings.Contains(f.Detail, "refuses every mapping") {
			t.Errorf("%+v", f)
		}
	}
	// PCP's error reply names the WAN address: double NAT is known.
	if f := foundOf(found, portmap.PCP); !f.PrivateWAN || f.External != netip.MustParseAddr("10.20.30.40") {
		t.Errorf("pcp %+v", f)
	}
}
