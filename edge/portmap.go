package edge

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/portmap"
	"github.com/sipedge/sipedge/sipx"
)

// Port mappings on the NAT router in front of sipedge (external_address =
// "auto", "pcp", "natpmp" or "upnp"): the router is asked for its external
// address and to forward the SIP ports and the media ports; the mappings
// are renewed, re-created after a router reboot and removed on shutdown.

// portmapState is the edge's router mapping machinery.
type portmapState struct {
	mgr     atomic.Pointer[portmap.Manager]
	local   netip.Addr // our address on the router's LAN
	perCall bool       // media ports mapped per call (the range is too big)
	stop    context.CancelFunc
	done    chan struct{}
}

// protocols lists the protocols external_address asks for.
func portmapProtocols(v string) []portmap.Protocol {
	switch v {
	case config.ExternalPCP:
		return []portmap.Protocol{portmap.PCP}
	case config.ExternalNATPMP:
		return []portmap.Protocol{portmap.NATPMP}
	case config.ExternalUPnP:
		return []portmap.Protocol{portmap.UPnP}
	}
	return nil // all three
}

// startPortmap asks the default gateway, within 3 s, which of PCP,
// NAT-PMP and UPnP IGD it speaks, and keeps sipedge's ports mapped on it.
// When no gateway answers, start-up goes on (peers outside get the local
// address) and discovery is retried in the background with backoff.
//
// With external_address = "auto" and external_stun set, the STUN server
// is asked at the same time, from the SIP socket: its answer is the
// address when no gateway answers (a cloud VM's 1:1 NAT has no UPnP), and
// a router whose external address differs from what STUN sees is behind
// another NAT, which is logged.
func (e *Edge) startPortmap() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	type stunAnswer struct {
		addr   netip.Addr
		detail string
		err    error
	}
	stunc := make(chan stunAnswer, 1)
	spec := ""
	if e.cfg.ExternalAddress == config.ExternalAuto && e.cfg.ExternalSTUN != "" {
		spec = "stun:" + e.cfg.ExternalSTUN
		go func() {
			a, d, err := e.askSTUN(ctx, spec)
			stunc <- stunAnswer{a, d, err}
		}()
	}
	err := e.discoverGateway(ctx)
	if err == nil {
		select { // the first round of mappings, within the same 3 s
		case <-e.pm.mgr.Load().Ready():
		case <-ctx.Done():
		}
	}
	var st stunAnswer
	if spec != "" {
		st = <-stunc
	}
	switch {
	case err == nil && spec != "" && st.err == nil:
		if router := e.pm.mgr.Load().ExternalAddr(); router.IsValid() && router != st.addr.Unmap() {
			e.log.Warn("the router's external address is not the one the internet sees: another NAT beyond the router (double NAT or CGNAT); its mappings alone do not make sipedge reachable", "router", router, "stun", st.addr)
		}
	case err != nil && spec != "":
		// No router: STUN is the source, asked again every
		// external_refresh, or sooner with backoff when it failed too.
		if st.err == nil {
			e.setExternal(st.addr, "stun", st.detail+"; no gateway mapping: "+err.Error())
		} else {
			e.log.Warn("external address not learned yet from external_stun either", "err", st.err)
		}
		e.wg.Add(1)
		go e.refreshExternal(func(ctx context.Context) error {
			if e.pm.mgr.Load() != nil {
				return nil // the router answered meanwhile: it is the source now
			}
			a, d, err := e.askSTUN(ctx, spec)
			if err == nil {
				e.setExternal(a, "stun", d)
			}
			return err
		}, st.err)
	}
	if err != nil {
		e.log.Warn("no port mapping on the router yet; calls from outside need a port forward until there is", "external_address", e.cfg.ExternalAddress, "err", err)
		e.wg.Add(1)
		go e.retryPortmap()
	}
}

// retryPortmap retries discovery with backoff (5 s doubling up to
// external_refresh) until a gateway answers or sipedge stops.
func (e *Edge) retryPortmap() {
	defer e.wg.Done()
	backoff := 5 * time.Second
	for e.sleep(backoff) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := e.discoverGateway(ctx)
		cancel()
		if err == nil {
			return
		}
		backoff = min(2*backoff, e.cfg.ExternalRefresh.Duration)
	}
}

var errNoGateway = errors.New("no gateway answered PCP, NAT-PMP or UPnP IGD")

// discoverGateway finds the gateway's best protocol and starts the
// mapping manager on it.
func (e *Edge) discoverGateway(ctx context.Context) error {
	dc := portmap.DiscoverConfig{}
	if e.opt.Gateway != nil {
		dc = *e.opt.Gateway
	}
	dc.Protocols = portmapProtocols(e.cfg.ExternalAddress)
	best, found := portmap.Discover(ctx, dc)
	var why []string
	for _, f := range found {
		e.log.Info("gateway port mapping probe", "result", f.String(), "double_nat", f.PrivateWAN)
		why = append(why, f.String())
		if f.Err == nil && f.PrivateWAN {
			e.log.Warn("the router's own external address is not public (double NAT or carrier-grade NAT): its mappings alone do not make sipedge reachable from the internet", "protocol", f.Protocol, "external", f.External, "detail", f.Detail)
		}
	}
	if best == nil {
		if len(why) == 0 {
			return errNoGateway
		}
		return errors.New(strings.Join(why, "; "))
	}
	local := dc.Local
	if !local.IsValid() {
		var err error
		if _, local, err = portmap.DefaultGateway(); err != nil {
			return err
		}
	}
	proto := string(best.Protocol())
	m := portmap.NewManager(best, portmap.ManagerConfig{
		CheckInterval: e.cfg.Portmap.CheckInterval.Duration,
		OnExternalAddr: func(_, now netip.Addr) {
			e.setExternal(now, proto, "router "+proto)
		},
		Logger: e.log.With("component", "portmap"),
	})
	e.pm.local = local
	for _, l := range e.listeners {
		internal := l.local
		if internal.Addr().IsUnspecified() {
			internal = netip.AddrPortFrom(local, internal.Port())
		}
		tr := "udp"
		if l.transport == sipx.TCP {
			tr = "tcp"
		}
		if err := m.Add(tr, internal, internal.Port()); err != nil {
			e.log.Warn("SIP port not mapped", "transport", tr, "port", internal.Port(), "err", err)
		}
	}
	lo, hi, _ := e.cfg.Media.PortRange()
	if err := m.AddRange("udp", e.mediaLocal(), uint16(lo), uint16(hi), e.cfg.Portmap.RTPRangeMax); errors.Is(err, portmap.ErrRangeTooBig) {
		e.pm.perCall = true
	} else if err != nil {
		e.log.Warn("media ports not mapped", "range", e.cfg.Media.Ports, "err", err)
	}
	run, stop := context.WithCancel(context.Background())
	e.pm.stop, e.pm.done = stop, make(chan struct{})
	e.pm.mgr.Store(m)
	go func() {
		defer close(e.pm.done)
		m.Run(run)
	}()
	return nil
}

// mediaLocal is the relay's address on the router's LAN.
func (e *Edge) mediaLocal() netip.Addr {
	if ip, err := netip.ParseAddr(e.cfg.Media.Address); err == nil && !ip.IsUnspecified() {
		return ip
	}
	return e.pm.local
}

// mediaPorts is the relay's OnPorts hook: with per-call mappings, a
// leg's RTP and RTCP ports are mapped while the leg lives. It runs under
// the relay's session lock, so the router is asked in the background.
func (e *Edge) mediaPorts(bind netip.Addr, rtp int, open bool) {
	m := e.pm.mgr.Load()
	if m == nil || !e.pm.perCall {
		return
	}
	if bind.IsUnspecified() {
		bind = e.pm.local
	}
	go func() {
		for _, p := range []int{rtp, rtp + 1} {
			ap := netip.AddrPortFrom(bind, uint16(p))
			if !open {
				m.Remove("udp", ap)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := m.Map(ctx, "udp", ap, uint16(p)); err != nil {
				e.log.Warn("media port not mapped on the router: audio from outside may not arrive", "port", p, "err", err)
			}
			cancel()
		}
	}()
}

// closePortmap removes every mapping (bounded: 2 s).
func (e *Edge) closePortmap() {
	m := e.pm.mgr.Load()
	if m == nil {
		return
	}
	e.pm.stop()
	<-e.pm.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		e.log.Warn("router mappings not all removed", "err", err)
	} else {
		e.log.Info("router mappings removed")
	}
}

// PortMappings lists the current router mappings (for the admin view).
func (e *Edge) PortMappings() []portmap.Mapping {
	if m := e.pm.mgr.Load(); m != nil {
		return m.Mappings()
	}
	return nil
}

// Options returns the process-level options the edge was started with.
func (e *Edge) Options() Options { return e.opt }
