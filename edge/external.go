package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/sipx"
	"github.com/sipedge/sipedge/stun"
)

// External address: when sipedge runs behind a NAT, peers outside the
// local networks must be given its public address (split horizon). This
// file keeps that address, learns it (static, DNS, STUN from the SIP
// socket) and refreshes it; advertise reads it for every message.

// external is the current external address and how it was learned.
type external struct {
	addr    netip.Addr
	source  string // static | dns | stun | pcp | natpmp | upnp
	detail  string // e.g. the STUN server, or what the router said
	learned time.Time
	// past holds earlier external addresses (newest first, a few), still
	// recognised as ours: dialogs record-routed through them live on.
	past []netip.Addr
}

// externalState is the edge's external-address machinery.
type externalState struct {
	cur     atomic.Pointer[external]
	changes atomic.Uint64
	subnets []netip.Prefix // sipedge's own networks: local peers

	// STUN transactions in flight from the SIP socket, by transaction id:
	// their answers arrive on the SIP port and are handed over here.
	mu      sync.Mutex
	pending map[[12]byte]*stun.Transaction
}

// External returns the external address, how it was learned and when
// (zero values when there is none).
func (e *Edge) External() (addr netip.Addr, source, detail string, learned time.Time) {
	if x := e.ext.cur.Load(); x != nil {
		return x.addr, x.source, x.detail, x.learned
	}
	return netip.Addr{}, "", "", time.Time{}
}

// setExternal records a newly learned external address and logs a change.
func (e *Edge) setExternal(addr netip.Addr, source, detail string) {
	addr = addr.Unmap()
	old := e.ext.cur.Load()
	x := &external{addr: addr, source: source, detail: detail, learned: time.Now()}
	if old != nil {
		x.past = old.past
		if old.addr != addr {
			x.past = append([]netip.Addr{old.addr}, x.past...)
			if len(x.past) > 4 {
				x.past = x.past[:4]
			}
		}
	}
	e.ext.cur.Store(x)
	switch {
	case old == nil:
		e.log.Info("external address learned", "address", addr, "source", source, "detail", detail)
	case old.addr != addr:
		e.ext.changes.Add(1)
		e.log.Warn("external address changed; new messages advertise the new one", "address", addr, "was", old.addr, "source", source, "detail", detail)
	}
}

// isExternal reports whether ip is (or was recently) our external address.
func (e *Edge) isExternal(ip netip.Addr) bool {
	x := e.ext.cur.Load()
	return x != nil && ip.IsValid() && (x.addr == ip.Unmap() || slices.Contains(x.past, ip.Unmap()))
}

// localPeer reports whether a peer at ip reaches sipedge at its local
// address: loopback, local_nets, or a subnet sipedge has an interface in.
func (e *Edge) localPeer(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return true
	}
	for _, p := range e.localNets {
		if p.Contains(ip) {
			return true
		}
	}
	for _, p := range e.ext.subnets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ownSubnets lists the networks of this host's interfaces.
func ownSubnets() []netip.Prefix {
	addrs, _ := net.InterfaceAddrs()
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(n.String()); err == nil && !p.Addr().Is4In6() {
				out = append(out, p.Masked())
			}
		}
	}
	return out
}

// startExternal sets up the external address per external_address: a
// fixed IP at once; a host name or STUN server is asked by
// learnExternal, once the SIP sockets are being read.
func (e *Edge) startExternal() error {
	e.ext.subnets = ownSubnets()
	e.ext.pending = map[[12]byte]*stun.Transaction{}
	v := e.cfg.ExternalAddress
	if v == "" {
		e.warnPrivateOnly()
		return nil
	}
	if ip, err := netip.ParseAddr(v); err == nil {
		e.setExternal(ip, "static", "external_address")
	}
	return nil
}

// learnExternal asks a host name or STUN server for the external address
// within 3 s (start-up never waits longer; a failure is retried in the
// background with backoff), then again every external_refresh.
func (e *Edge) learnExternal() {
	v := e.cfg.ExternalAddress
	switch v {
	case config.ExternalAuto, config.ExternalUPnP, config.ExternalNATPMP, config.ExternalPCP:
		e.startPortmap()
		return
	}
	if _, err := netip.ParseAddr(v); v == "" || err == nil {
		return
	}
	learn := e.resolveName
	if strings.HasPrefix(v, "stun:") {
		learn = e.learnSTUN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	err := learn(ctx)
	cancel()
	if err != nil {
		e.log.Warn("external address not learned yet; peers outside the local networks get the local address until it is", "external_address", v, "err", err)
	}
	e.wg.Add(1)
	go e.refreshExternal(learn, err)
}

// warnPrivateOnly warns when sipedge, with no external_address, would
// tell every peer a private address: behind a port forward, phones on
// the internet would then send in-dialog requests and media to it.
func (e *Edge) warnPrivateOnly() {
	for _, l := range e.listeners {
		ip, err := netip.ParseAddr(l.advHost)
		if l.explicit || err != nil || !(ip.IsPrivate() || ip.IsLinkLocalUnicast()) {
			return
		}
	}
	if len(e.listeners) > 0 {
		e.log.Warn("sipedge has only private addresses and no external_address: phones outside the local networks will be told a private address; behind a NAT router set external_address (auto, an IP, a host name or stun:host)")
	}
}

// refreshExternal asks again every external_refresh, or sooner with
// backoff (5 s doubling) after a failure.
func (e *Edge) refreshExternal(learn func(context.Context) error, lastErr error) {
	defer e.wg.Done()
	every := e.cfg.ExternalRefresh.Duration
	backoff := 5 * time.Second
	for {
		wait := every
		if lastErr != nil {
			wait = min(backoff, every)
			backoff = min(2*backoff, every)
		} else {
			backoff = 5 * time.Second
		}
		if !e.sleep(wait) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := learn(ctx)
		cancel()
		if err != nil && lastErr == nil {
			e.log.Warn("external address refresh failed; keeping the last one", "err", err)
		}
		lastErr = err
	}
}

// sleep waits d, or less when sipedge stops; it reports whether to go on.
func (e *Edge) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.stop:
		return false
	case <-t.C:
		return true
	}
}

// resolveName resolves external_address as a host name.
func (e *Edge) resolveName(ctx context.Context) error {
	host := e.cfg.ExternalAddress
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return err
	}
	if len(ips) == 0 {
		return fmt.Errorf("%s: no address", host)
	}
	ip := ips[0]
	for _, x := range ips { // prefer IPv4, like the listeners
		if x.Unmap().Is4() {
			ip = x
			break
		}
	}
	e.setExternal(ip, "dns", host)
	return nil
}

// learnSTUN asks the STUN server of external_address from the first SIP
// UDP socket, so the answer is the NAT's mapping of the SIP port itself.
func (e *Edge) learnSTUN(ctx context.Context) error {
	addr, detail, err := e.askSTUN(ctx, e.cfg.ExternalAddress)
	if err != nil {
		return err
	}
	e.setExternal(addr, "stun", detail)
	return nil
}

// askSTUN asks the STUN server spec ("stun:host[:port]") for the SIP UDP
// socket's public address.
func (e *Edge) askSTUN(ctx context.Context, spec string) (netip.Addr, string, error) {
	host, port, err := config.SplitSTUN(spec)
	if err != nil {
		return netip.Addr{}, "", err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, "", err
	}
	local := e.SIPAddr(sipx.UDP)
	if !local.IsValid() {
		return netip.Addr{}, "", errors.New("no SIP UDP listener to ask STUN from")
	}
	var server netip.AddrPort
	for _, ip := range ips {
		if ip.Unmap().Is4() == local.Addr().Is4() || local.Addr().IsUnspecified() {
			server = netip.AddrPortFrom(ip.Unmap(), uint16(port))
			break
		}
	}
	if !server.IsValid() {
		return netip.Addr{}, "", fmt.Errorf("%s has no address of the SIP socket's family", host)
	}
	res, err := e.stunFromSIP(ctx, local, server)
	if err != nil {
		return netip.Addr{}, "", fmt.Errorf("STUN %s: %w", server, err)
	}
	detail := "stun " + server.String()
	if res.Mapped.Port() != local.Port() {
		detail += fmt.Sprintf(" (the NAT maps SIP port %d to %d: forward port %d to this host for calls from outside)", local.Port(), res.Mapped.Port(), local.Port())
	}
	return res.Mapped.Addr(), detail, nil
}

// stunFromSIP runs one STUN Binding transaction from a SIP UDP socket; the
// answer comes back through answerSTUN.
func (e *Edge) stunFromSIP(ctx context.Context, local, server netip.AddrPort) (stun.Result, error) {
	t := stun.NewTransaction(server, stun.WithRetransmission(250*time.Millisecond, 5, 4), stun.WithSoftware("sipedge"))
	e.ext.mu.Lock()
	e.ext.pending[t.TID()] = t
	e.ext.mu.Unlock()
	defer func() {
		e.ext.mu.Lock()
		delete(e.ext.pending, t.TID())
		e.ext.mu.Unlock()
	}()
	f := sipx.Flow{Transport: sipx.UDP, Local: local, Remote: server}
	return t.Run(ctx, func(b []byte) error { return e.stack.SendRaw(b, f) })
}

// stunAnswer hands a STUN response that arrived on a SIP socket to the
// transaction waiting for it; it reports whether one was.
func (e *Edge) stunAnswer(b []byte, from netip.AddrPort) bool {
	if len(b) < stun.HeaderSize || b[0]&0x01 == 0 { // class bit C1: a response
		return false
	}
	var tid [12]byte
	copy(tid[:], b[8:20])
	e.ext.mu.Lock()
	t := e.ext.pending[tid]
	e.ext.mu.Unlock()
	if t == nil {
		return true // a response to nothing of ours: dropped
	}
	t.Handle(b, from)
	return true
}

// externalFor returns the external address to give a peer at peer, or
// false when the peer should be given the local one.
func (e *Edge) externalFor(peer netip.Addr) (netip.Addr, bool) {
	x := e.ext.cur.Load()
	if x == nil || e.localPeer(peer) {
		return netip.Addr{}, false
	}
	return x.addr, true
}
