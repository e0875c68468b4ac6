// Package portmaptest is a fake NAT gateway on 127.0.0.1 for testing
// package portmap: PCP (RFC 6887) and NAT-PMP (RFC 6886) on one UDP
// socket, as miniupnpd serves them, and a UPnP Internet Gateway Device
// (SSDP answering M-SEARCH on a UDP port of its own, a device
// description and SOAP control for WANIPConnection:1/:2 or
// WANPPPConnection:1). Its replies follow the formats recorded from
// miniupnpd 2.3.1 (../testdata/miniupnpd-2.3.1) and, for the other UPnP
// flavours, the quirks of common router firmware.
//
// It is configurable (which protocols answer, the external address,
// lease caps, errors, ports held by someone else), can "reboot" (epoch
// back to 0, every mapping forgotten) and records every request, so
// tests can check creation, renewal and removal.
package portmaptest

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/portmap"
)

// UPnP flavours: the shape of the device description and SOAP replies.
const (
	// FlavorMiniUPnPd: miniupnpd 2.3.1's rootDesc.xml and replies (s:
	// prefixes, no whitespace, "<u:AddPortMappingResponse .../>").
	FlavorMiniUPnPd = "miniupnpd"
	// FlavorFritz: an IGD:1 in the style of AVM FRITZ!Box firmware:
	// newlines between elements, /igdupnp/control/ URLs, an IPv6
	// firewall service besides WANIPConnection:1.
	FlavorFritz = "fritzbox"
	// FlavorLibUPnP: the Intel/portable libupnp SDK that many cheap
	// routers run: ISO-8859-1 declared, a URLBase, relative control URLs
	// without a leading slash, an unescaped '&' in the friendly name,
	// SOAP-ENV: and m: prefixes.
	FlavorLibUPnP = "libupnp"
)

// Config configures a Gateway. The zero value answers nothing.
type Config struct {
	PCP, NATPMP, UPnP bool
	// Silent: requests of a protocol that is off get no answer at all
	// (a firewall dropping them) instead of "unsupported version" (PCP /
	// NAT-PMP) or SSDP silence plus a closed HTTP port (UPnP, always
	// silent). With PCP and NAT-PMP both off and Silent false, the UDP
	// port is closed (ICMP port unreachable).
	Silent bool
	// External address (default 203.0.113.7). A private one makes a
	// double NAT.
	External netip.Addr
	// RefuseMappings answers like miniupnpd whose own WAN address is
	// private or reserved: PCP NO_RESOURCES (naming External), NAT-PMP
	// result 3, UPnP GetExternalIPAddress "" and AddPortMapping 501.
	RefuseMappings bool
	// MaxLease caps the lifetimes PCP and NAT-PMP grant (0: no cap;
	// UPnP has no way to tell a shorter lease, so it keeps the asked one).
	MaxLease time.Duration
	// Epoch is the epoch time at start, in seconds (default 1000).
	Epoch uint32
	// UPnPVersion is the WANIPConnection version (1 or 2; default 2).
	UPnPVersion int
	// Flavor is the UPnP flavour (default FlavorMiniUPnPd).
	Flavor string
	// PPP offers WANPPPConnection:1 instead of WANIPConnection.
	PPP bool
	// OnlyPermanent: UPnP answers 725 OnlyPermanentLeasesSupported to a
	// nonzero lease.
	OnlyPermanent bool
	// NoAddAny: an IGD:2 that answers 401 Invalid Action to
	// AddAnyPortMapping.
	NoAddAny bool
	// Taken are external ports another LAN host holds: PCP and NAT-PMP
	// grant another port, UPnP AddPortMapping answers 718, AddAny picks
	// another.
	Taken []uint16
	// Delay before every answer.
	Delay time.Duration
}

// Mapping is one mapping the gateway holds.
type Mapping struct {
	Protocol    portmap.Protocol
	Transport   string
	Internal    netip.AddrPort
	External    uint16
	Lifetime    time.Duration // 0: permanent
	Expires     time.Time
	Description string
	nonce       [12]byte
}

// Op is one request the gateway answered.
type Op struct {
	Time      time.Time
	Protocol  portmap.Protocol
	Action    string // "external", "map", "unmap", "announce", "AddPortMapping", ...
	Transport string
	Internal  netip.AddrPort
	External  uint16
	Lifetime  time.Duration
	Result    string // "ok" or the error
}

type mkey struct {
	transport string
	external  uint16
}

// Gateway is a running fake gateway.
type Gateway struct {
	cfg Config

	pmp      *net.UDPConn // PCP and NAT-PMP
	pmpPort  uint16
	ssdp     *net.UDPConn
	http     *http.Server
	httpLn   net.Listener
	httpPort uint16
	wg       sync.WaitGroup

	mu         sync.Mutex
	epochStart time.Time
	epochBase  uint32
	external   netip.Addr
	mappings   map[mkey]*Mapping
	ops        []Op
	failNext   int
	pcpOn      bool
	pmpOn      bool
	upnpOn     bool
	silent     bool
}

// New starts a Gateway and stops it when the test ends.
func New(t testing.TB, cfg Config) *Gateway {
	t.Helper()
	g, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// Start starts a Gateway on 127.0.0.1.
func Start(cfg Config) (*Gateway, error) {
	if !cfg.External.IsValid() {
		cfg.External = netip.MustParseAddr("203.0.113.7")
	}
	if cfg.Epoch == 0 {
		cfg.Epoch = 1000
	}
	if cfg.Flavor == "" {
		cfg.Flavor = FlavorMiniUPnPd
	}
	if cfg.UPnPVersion == 0 {
		cfg.UPnPVersion = 2
		if cfg.Flavor != FlavorMiniUPnPd {
			cfg.UPnPVersion = 1
		}
	}
	g := &Gateway{
		cfg:        cfg,
		epochStart: time.Now(),
		epochBase:  cfg.Epoch,
		external:   cfg.External,
		mappings:   make(map[mkey]*Mapping),
		pcpOn:      cfg.PCP,
		pmpOn:      cfg.NATPMP,
		upnpOn:     cfg.UPnP,
		silent:     cfg.Silent,
	}
	lo := netip.MustParseAddr("127.0.0.1")
	var err error
	if cfg.PCP || cfg.NATPMP || cfg.Silent {
		g.pmp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
		if err != nil {
			return nil, err
		}
		g.pmpPort = uint16(g.pmp.LocalAddr().(*net.UDPAddr).Port)
		g.wg.Add(1)
		go g.servePMP()
	} else {
		// Reserve a port and close it: requests there meet a closed port.
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
		if err != nil {
			return nil, err
		}
		g.pmpPort = uint16(c.LocalAddr().(*net.UDPAddr).Port)
		c.Close()
	}
	g.ssdp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
	if err != nil {
		g.Close()
		return nil, err
	}
	g.httpLn, err = net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		g.Close()
		return nil, err
	}
	g.httpPort = uint16(g.httpLn.Addr().(*net.TCPAddr).Port)
	if cfg.UPnP {
		g.http = &http.Server{Handler: http.HandlerFunc(g.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.http.Serve(g.httpLn)
		}()
	} else {
		g.httpLn.Close() // connection refused
	}
	g.wg.Add(1)
	go g.serveSSDP()
	return g, nil
}

// Close stops the gateway.
func (g *Gateway) Close() {
	if g.pmp != nil {
		g.pmp.Close()
	}
	if g.ssdp != nil {
		g.ssdp.Close()
	}
	if g.http != nil {
		g.http.Close()
	} else if g.httpLn != nil {
		g.httpLn.Close()
	}
	g.wg.Wait()
}

// Addr is the gateway's address, 127.0.0.1.
func (g *Gateway) Addr() netip.Addr { return netip.MustParseAddr("127.0.0.1") }

// PortMapPort is the UDP port of PCP and NAT-PMP (5351 on a real one).
func (g *Gateway) PortMapPort() uint16 { return g.pmpPort }

// SSDPAddr is where to send M-SEARCH requests.
func (g *Gateway) SSDPAddr() netip.AddrPort {
	return netip.AddrPortFrom(g.Addr(), uint16(g.ssdp.LocalAddr().(*net.UDPAddr).Port))
}

// DescURL is the device description's URL.
func (g *Gateway) DescURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", g.httpPort, g.paths().desc)
}

// Options are the portmap client options that point at this gateway,
// with a fast retransmission schedule (50 ms doubling, 5 tries).
func (g *Gateway) Options() []portmap.Option {
	return []portmap.Option{
		portmap.WithServerPort(g.pmpPort),
		portmap.WithSSDPAddr(g.SSDPAddr()),
		portmap.WithLocalAddr(g.Addr()),
		portmap.WithGateway(g.Addr()),
		portmap.WithRetransmit(50*time.Millisecond, 5),
	}
}

// DiscoverConfig points portmap.Discover at this gateway.
func (g *Gateway) DiscoverConfig() portmap.DiscoverConfig {
	return portmap.DiscoverConfig{Gateway: g.Addr(), Local: g.Addr(), Options: g.Options()}
}

// Mappings returns the mappings the gateway holds (expired ones are
// dropped), sorted by transport and external port.
func (g *Gateway) Mappings() []Mapping {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked()
	var out []Mapping
	for _, m := range g.mappings {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Mapping) int {
		if a.Transport != b.Transport {
			if a.Transport < b.Transport {
				return -1
			}
			return 1
		}
		return int(a.External) - int(b.External)
	})
	return out
}

// Ops returns every request answered so far.
func (g *Gateway) Ops() []Op {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ops)
}

// CountOps counts the requests of a protocol and action answered "ok".
func (g *Gateway) CountOps(p portmap.Protocol, action string) int {
	n := 0
	for _, op := range g.Ops() {
		if op.Protocol == p && op.Action == action && op.Result == "ok" {
			n++
		}
	}
	return n
}

// Reboot makes the gateway forget every mapping and restart its epoch
// at 0.
func (g *Gateway) Reboot() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mappings = make(map[mkey]*Mapping)
	g.epochStart = time.Now()
	g.epochBase = 0
}

// SetExternal changes the external address.
func (g *Gateway) SetExternal(a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.external = a
}

// FailNext makes the next n mapping requests fail: PCP NO_RESOURCES,
// NAT-PMP "out of resources", UPnP 501 Action Failed.
func (g *Gateway) FailNext(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failNext = n
}

// SetDown stops (true) or resumes (false) answering anything on the
// PCP / NAT-PMP port, as a gateway that is rebooting.
func (g *Gateway) SetDown(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.silent = down
	if down {
		g.pcpOn, g.pmpOn = false, false
	} else {
		g.pcpOn, g.pmpOn = g.cfg.PCP, g.cfg.NATPMP
		g.silent = g.cfg.Silent
	}
}

func (g *Gateway) epochLocked() uint32 {
	return g.epochBase + uint32(time.Since(g.epochStart)/time.Second)
}

func (g *Gateway) expireLocked() {
	now := time.Now()
	for k, m := range g.mappings {
		if m.Lifetime > 0 && !now.Before(m.Expires) {
			delete(g.mappings, k)
		}
	}
}

func (g *Gateway) record(op Op) {
	op.Time = time.Now()
	g.ops = append(g.ops, op)
}

func (g *Gateway) takenLocked(transport string, port uint16, by netip.AddrPort) bool {
	if slices.Contains(g.cfg.Taken, port) {
		return true
	}
	m := g.mappings[mkey{transport, port}]
	return m != nil && m.Internal != by
}

// freePortLocked picks a free external port, preferring want.
func (g *Gateway) freePortLocked(transport string, want uint16, by netip.AddrPort) uint16 {
	if want != 0 && !g.takenLocked(transport, want, by) {
		return want
	}
	for p := uint16(40000); p < 65535; p++ {
		if !g.takenLocked(transport, p, by) {
			return p
		}
	}
	return 0
}

// findLocked finds the mapping of an internal endpoint.
func (g *Gateway) findLocked(transport string, internal netip.AddrPort) *Mapping {
	for k, m := range g.mappings {
		if k.transport == transport && m.Internal == internal {
			return m
		}
	}
	return nil
}

func (g *Gateway) grantLocked(asked time.Duration) time.Duration {
	if g.cfg.MaxLease > 0 && asked > g.cfg.MaxLease {
		return g.cfg.MaxLease
	}
	return asked
}

func (g *Gateway) failLocked() bool {
	if g.failNext > 0 {
		g.failNext--
		return true
	}
	return false
}
