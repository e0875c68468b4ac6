// Package edge wires sipedge together: listeners, the SIP stack, the fixed
// pipeline (pipeline.go), the registrar, the proxy, the stores and the admin
// API, with a Start/Shutdown lifecycle and a readiness signal.
package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/sipedge/sipedge/anchor"
	"github.com/sipedge/sipedge/auth"
	"github.com/sipedge/sipedge/calltrace"
	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/keepalive"
	"github.com/sipedge/sipedge/location"
	"github.com/sipedge/sipedge/portmap"
	"github.com/sipedge/sipedge/proxy"
	"github.com/sipedge/sipedge/registrar"
	"github.com/sipedge/sipedge/relay"
	"github.com/sipedge/sipedge/relay/kernfwd"
	"github.com/sipedge/sipedge/sipx"
	"github.com/sipedge/sipedge/stun"
)

// listener is one configured SIP listener once bound.
type listener struct {
	transport string
	local     netip.AddrPort
	port      int
	advHost   string
	advPort   int
	explicit  bool // advertise configured: wins over the external address
}

type trunk struct {
	name string
	addr netip.Addr
}

// Edge is a running sipedge.
type Edge struct {
	cfg *config.Config
	opt Options
	log *slog.Logger

	db     *bbolt.DB
	users  *auth.LayeredUsers
	stored *auth.BoltUsers
	digest *auth.Digest
	creds  func(user string) (auth.Credentials, bool)
	secret []byte
	guard  *auth.Guard
	loc    *location.Store
	// trace keeps recent calls' SIP messages; nil when admin.trace_calls
	// is 0.
	trace *calltrace.Recorder
	stack *sipx.Stack
	reg   *registrar.Registrar
	proxy *proxy.Proxy
	ext   externalState
	pm    portmapState
	ka    *keepalive.Manager
	// keepalivePolicy is a user's keepalive policy; trunks are the
	// routes being pinged.
	keepalivePolicy func(user string) keepalive.Policy
	trunks          []trunkPing
	relay           *relay.Relay
	anchor          *anchor.Anchor
	stun            *stun.Server // nil when stun.listen is empty

	listeners     []listener
	domains       map[string]struct{}
	localNets     []netip.Prefix
	trustedTrunks []trunk
	adminToken    string
	adminAddr     string
	metrics       metrics
	started       time.Time

	closers []func()
	serve   []func() // socket readers, started once the pipeline exists
	stop    chan struct{}
	wg      sync.WaitGroup
}

// Options are process-level inputs that are not configuration.
type Options struct {
	Logger *slog.Logger
	// UDPReaders is the number of SO_REUSEPORT sockets per UDP listener.
	// Default GOMAXPROCS.
	UDPReaders int
	// Gateway, if set, is where external_address = "auto" (or pcp,
	// natpmp, upnp) looks for the router instead of the default route
	// (tests point it at a fake gateway). Its Local is sipedge's address.
	Gateway *portmap.DiscoverConfig
}

// Start opens the stores, binds every listener and starts serving. It
// returns once everything is listening (ready).
func Start(cfg *config.Config, opt Options) (_ *Edge, err error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.UDPReaders <= 0 {
		opt.UDPReaders = runtime.GOMAXPROCS(0)
	}
	e := &Edge{cfg: cfg, opt: opt, log: opt.Logger, stop: make(chan struct{}), started: time.Now(), domains: map[string]struct{}{}}
	defer func() {
		if err != nil {
			e.Shutdown(context.Background())
		}
	}()
	e.metrics.init()
	for _, p := range cfg.LocalNets {
		e.localNets = append(e.localNets, p.Prefix)
	}
	for _, d := range cfg.Domains {
		e.domains[strings.ToLower(d)] = struct{}{}
	}

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("edge: data dir: %w", err)
	}
	e.db, err = bbolt.Open(filepath.Join(cfg.DataDir, "sipedge.db"), 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("edge: open store %s: %w (is another sipedge running on this data dir?)", cfg.DataDir, err)
	}
	e.closers = append(e.closers, func() { _ = e.db.Close() })

	// Users: config users on top of the embedded store.
	e.stored, err = auth.NewBoltUsers(e.db)
	if err != nil {
		return nil, err
	}
	realm := cfg.Realm()
	var cfgUsers []auth.User
	for _, u := range cfg.Users {
		au := auth.User{Name: u.Name, Realm: realm, HA1MD5: u.HA1MD5, HA1SHA256: u.HA1SHA256, NAT: u.NAT}
		if u.Password != "" {
			au = auth.NewUser(u.Name, realm, u.Password, u.NAT)
		}
		cfgUsers = append(cfgUsers, au)
	}
	e.users = auth.NewLayered(auth.NewMemUsers(cfgUsers...), e.stored)
	e.creds = auth.CredentialsFunc(e.users, realm)
	if stored, err := e.stored.List(); err == nil {
		other := 0
		for _, u := range stored {
			if u.Realm != "" && u.Realm != realm {
				other++
			}
		}
		if other > 0 {
			// Their HA1 was computed for another realm: they can never
			// authenticate. Say so instead of answering 401 forever.
			e.log.Warn("stored users were added for another realm and cannot authenticate; re-add them with -c pointing at this config",
				"users", other, "realm", realm)
		}
	}

	secret := []byte(cfg.Auth.Secret)
	if len(secret) == 0 {
		s, err := readOrCreateSecret(filepath.Join(cfg.DataDir, "nonce.secret"), 32)
		if err != nil {
			return nil, err
		}
		secret = []byte(s)
	}
	e.secret = secret
	e.digest, err = auth.NewDigest(secret, realm, cfg.Auth.Algorithms, cfg.Auth.NonceTTL.Duration, time.Now)
	if err != nil {
		return nil, err
	}
	var trusted []netip.Prefix
	for _, p := range cfg.Security.Trusted {
		trusted = append(trusted, p.Prefix)
	}
	e.guard = auth.NewGuard(auth.GuardConfig{
		Rate: cfg.Security.RateLimit, Burst: cfg.Security.RateBurst,
		BanFailures: cfg.Security.BanFailures, BanWindow: cfg.Security.BanWindow.Duration, BanTime: cfg.Security.BanTime.Duration,
		Trusted: trusted, ScannerUserAgents: cfg.Security.ScannerUserAgents,
	}, time.Now)

	e.loc, err = location.Open(e.db, location.Options{FlushInterval: cfg.Registrar.FlushInterval.Duration})
	if err != nil {
		return nil, err
	}
	e.closers = append(e.closers, func() { _ = e.loc.Close() })

	sc := sipx.Config{Logger: e.log, Allow: e.guard.Allow, STUN: e.answerSTUN}
	if cfg.Admin.TraceCalls > 0 {
		e.trace = calltrace.New(calltrace.Config{Calls: cfg.Admin.TraceCalls})
		sc.Trace = e.trace.Record
	}
	e.stack = sipx.New(sc, e)
	e.closers = append(e.closers, func() { _ = e.stack.Close() })

	if err := e.bind(opt.UDPReaders); err != nil {
		return nil, err
	}
	if err := e.startSTUN(); err != nil {
		return nil, err
	}
	if err := e.startExternal(); err != nil {
		return nil, err
	}
	if err := e.buildRouting(); err != nil {
		return nil, err
	}
	if err := e.startAdmin(); err != nil {
		return nil, err
	}
	// Only now, with the whole pipeline built, start reading packets.
	for _, f := range e.serve {
		go f()
	}
	e.learnExternal()
	e.wg.Add(2)
	go e.housekeeping()
	go func() {
		defer e.wg.Done()
		e.ka.Run(e.stop)
	}()
	return e, nil
}

// bind opens every listener. UDP listeners get several SO_REUSEPORT sockets
// so reads spread over cores; the kernel hashes a peer's packets to one
// socket, so one peer's messages stay in order.
func (e *Edge) bind(readers int) error {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			if serr == nil && strings.HasPrefix(network, "udp") {
				// Big buffers absorb bursts. SO_RCVBUF is capped at
				// net.core.rmem_max (~208 KB by default); as root the
				// FORCE variants lift the cap.
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
				}
				if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20) != nil {
					_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for _, l := range e.cfg.Listen {
		switch l.Transport {
		case "udp":
			// Probe without SO_REUSEPORT first: with it, a second sipedge
			// would silently share the port with this one.
			probe, err := net.ListenPacket("udp", l.Address)
			if err != nil {
				return fmt.Errorf("edge: listen udp %s: %w", l.Address, err)
			}
			addr := probe.LocalAddr().String()
			_ = probe.Close()
			first, err := lc.ListenPacket(context.Background(), "udp", addr)
			if err != nil {
				return fmt.Errorf("edge: listen udp %s: %w", l.Address, err)
			}
			conn := first.(*net.UDPConn)
			bound := conn.LocalAddr().String()
			conns := []*net.UDPConn{conn}
			for i := 1; i < readers; i++ {
				c, err := lc.ListenPacket(context.Background(), "udp", bound)
				if err != nil {
					break // one socket still works
				}
				conns = append(conns, c.(*net.UDPConn))
			}
			e.addListener("udp", l, conn.LocalAddr())
			for _, c := range conns {
				c := c
				e.serve = append(e.serve, func() { _ = e.stack.ServeUDP(c) })
				e.closers = append(e.closers, func() { _ = c.Close() })
			}
		case "tcp":
			ln, err := net.Listen("tcp", l.Address) // no SO_REUSEPORT: one server per port
			if err != nil {
				return fmt.Errorf("edge: listen tcp %s: %w", l.Address, err)
			}
			e.addListener("tcp", l, ln.Addr())
			e.serve = append(e.serve, func() { _ = e.stack.ServeTCP(ln) })
			e.closers = append(e.closers, func() { _ = ln.Close() })
		default:
			return fmt.Errorf("edge: transport %q not supported", l.Transport)
		}
	}
	return nil
}

func (e *Edge) addListener(tr string, l config.Listen, a net.Addr) {
	ap, _ := netip.ParseAddrPort(a.String())
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	li := listener{transport: tr, local: ap, port: int(ap.Port()), advPort: int(ap.Port())}
	switch {
	case l.Advertise != "":
		li.explicit = true
		h, p, err := net.SplitHostPort(l.Advertise)
		if err != nil {
			li.advHost = l.Advertise
		} else {
			li.advHost = h
			li.advPort, _ = strconv.Atoi(p)
		}
	case ap.Addr().IsUnspecified():
		li.advHost = firstHostIP()
	default:
		li.advHost = ap.Addr().String()
	}
	e.listeners = append(e.listeners, li)
	// Our addresses count as local "domains" (sip:alice@198.51.100.10).
	e.domains[strings.ToLower(li.advHost)] = struct{}{}
	if !ap.Addr().IsUnspecified() {
		e.domains[ap.Addr().String()] = struct{}{}
	}
}

// firstHostIP returns a non-loopback IPv4 address of this host, or
// 127.0.0.1.
func firstHostIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}

func (e *Edge) buildRouting() error {
	c := e.cfg
	var routes []proxy.Route
	for _, r := range c.Routes {
		var u sipx.Uri
		if err := sipx.ParseUri(r.To, &u); err != nil {
			return fmt.Errorf("edge: route %q: %w", r.Name, err)
		}
		pr := proxy.Route{Name: r.Name, Domain: r.Domain, To: u, NAT: c.RouteNAT(r), Media: c.RouteMedia(r),
			TCP: r.TCP, Trusted: r.Trusted, User: mustRe(r)}
		routes = append(routes, pr)
		if r.Trusted {
			if ip, err := netip.ParseAddr(strings.Trim(u.Host, "[]")); err == nil {
				e.trustedTrunks = append(e.trustedTrunks, trunk{name: r.Name, addr: ip})
			} else if ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", u.Host); err == nil {
				for _, ip := range ips {
					e.trustedTrunks = append(e.trustedTrunks, trunk{name: r.Name, addr: ip.Unmap()})
				}
			}
		}
	}
	e.startKeepalive()
	e.reg = registrar.New(registrar.Config{
		Store: e.loc, Logger: e.log,
		LocalDomain: e.localDomain, CanonicalDomain: e.canonicalDomain,
		Auth: e.regAuth,
		Challenge: func(req *sipx.Request, stale bool) *sipx.Response {
			return e.challenge(req, stale, 401)
		},
		NATMode: e.natMode, LocalNets: e.localNets,
		MinExpires: c.Registrar.MinExpires.Duration, MaxExpires: c.Registrar.MaxExpires.Duration,
		DefaultExpires: c.Registrar.DefaultExpires.Duration, MaxContacts: c.Registrar.MaxContacts,
		Bound: e.bound,
	})
	if err := e.startMedia(); err != nil {
		return err
	}
	userMedia := map[string]string{}
	for _, u := range c.Users {
		userMedia[u.Name] = c.UserMedia(u)
	}
	e.proxy = proxy.New(proxy.Config{
		Stack: e.stack, Logger: e.log,
		Locate: e.loc.Lookup,
		UserExists: func(u string) bool {
			_, ok := e.users.Get(u)
			return ok
		},
		LocalDomain: e.localDomain, CanonicalDomain: e.canonicalDomain, IsSelf: e.isSelf,
		Advertise: e.Advertise,
		Auth:      e.proxyAuth,
		Challenge: func(req *sipx.Request, stale bool) *sipx.Response {
			return e.challenge(req, stale, 407)
		},
		Trusted: e.trusted, Routes: routes, Secret: e.secret,
		Media: e.anchor, UserMedia: func(u string) string { return userMedia[u] },
		DialogUp: e.ka.DialogUp, DialogDown: e.ka.DialogDown, CallEnded: e.callEnded,
		InviteTimeout: c.Proxy.InviteTimeout.Duration, MaxForwards: c.Proxy.MaxForwards, UDPMaxSize: c.Proxy.UDPMaxSize,
	})
	return nil
}

// startMedia starts the RTP relay and the anchor that drives it from SDP.
func (e *Edge) startMedia() error {
	m := e.cfg.Media
	lo, hi, err := m.PortRange()
	if err != nil {
		return fmt.Errorf("edge: media.ports: %w", err)
	}
	var kf *kernfwd.Forwarder
	if m.Kernel == config.KernelAuto || m.Kernel == config.KernelOn {
		kf, err = kernfwd.Open(m.KernelInterfaces)
		switch {
		case err != nil && m.Kernel == config.KernelOn:
			return fmt.Errorf("edge: media.kernel = \"on\": %w", err)
		case err != nil:
			e.log.Warn("media: in-kernel fast path unavailable, relaying in user space", "error", err)
		default:
			e.log.Info("media: in-kernel fast path on", "interfaces", kf.Interfaces())
			e.closers = append(e.closers, func() { _ = kf.Close() }) // after the relay's
		}
	}
	e.relay, err = relay.New(relay.Config{
		Kernel:  kf,
		PortMin: lo, PortMax: hi,
		Learning: m.Learning.Duration, Probation: m.Probation,
		Timeout: m.Timeout.Duration, HoldTimeout: m.HoldTimeout.Duration,
		OnTimeout: func(id, reason string) { e.anchor.Timeout(id, reason) },
		OnPorts:   e.mediaPorts,
		Logger:    e.log,
	})
	if err != nil {
		return fmt.Errorf("edge: media relay: %w", err)
	}
	e.closers = append(e.closers, func() { _ = e.relay.Close() })
	var bind, adv netip.Addr
	if m.Address != "" {
		bind, _ = netip.ParseAddr(m.Address)
	}
	if m.Advertise != "" {
		adv, _ = netip.ParseAddr(m.Advertise)
	}
	e.anchor = anchor.New(anchor.Config{
		Relay: e.relay, Default: m.Mode, BindIP: bind, AdvertiseIP: adv,
		Advertise: e.Advertise,
		EndCall:   func(id, reason string) { e.proxy.EndCall(id, reason) },
		Logger:    e.log,
	})
	return nil
}

// housekeeping expires registrations and sweeps the flood guard.
func (e *Edge) housekeeping() {
	defer e.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.loc.Expire()
			n++
			if n%10 == 0 {
				e.guard.Sweep()
			}
			e.proxy.Sweep(e.cfg.Proxy.MaxCallDuration.Duration)
		}
	}
}

// Listeners returns "transport address" for each bound SIP listener (see
// STUNListeners for the STUN server's).
func (e *Edge) Listeners() []string {
	var out []string
	for _, l := range e.listeners {
		out = append(out, l.transport+" "+l.local.String())
	}
	return out
}

// SIPAddr returns the bound address of the first listener of transport.
func (e *Edge) SIPAddr(transport string) netip.AddrPort {
	for _, l := range e.listeners {
		if l.transport == transport {
			return l.local
		}
	}
	return netip.AddrPort{}
}

// AdminAddr returns the admin API address ("" if disabled).
func (e *Edge) AdminAddr() string { return e.adminAddr }

// AdminToken returns the admin bearer token.
func (e *Edge) AdminToken() string { return e.adminToken }

// Location returns the registration store.
func (e *Edge) Location() *location.Store { return e.loc }

// Shutdown stops serving and flushes the stores.
func (e *Edge) Shutdown(ctx context.Context) {
	select {
	case <-e.stop:
		return
	default:
		close(e.stop)
	}
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		e.closePortmap() // first: the router forgets us while we still answer
		for i := len(e.closers) - 1; i >= 0; i-- {
			e.closers[i]()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		e.log.Warn("shutdown did not finish in time", "error", ctx.Err())
	}
}

// readOrCreateSecret returns the hex secret stored in path, creating it.
func readOrCreateSecret(path string, n int) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", err
	}
	return s, nil
}

// mustRe returns a route's compiled user pattern (validated by config).
func mustRe(r config.Route) *regexp.Regexp {
	re, _ := r.UserRegexp()
	return re
}
