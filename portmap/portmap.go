package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Protocol names a port-mapping protocol.
type Protocol string

// The protocols, in the order Discover prefers them.
const (
	PCP    Protocol = "pcp"    // Port Control Protocol, RFC 6887
	NATPMP Protocol = "natpmp" // NAT Port Mapping Protocol, RFC 6886
	UPnP   Protocol = "upnp"   // UPnP Internet Gateway Device (WANIPConnection / WANPPPConnection)
)

// Mapping is one port mapping held on the gateway.
type Mapping struct {
	Protocol  Protocol
	Transport string         // "udp" or "tcp"
	Internal  netip.AddrPort // our address:port on the LAN
	External  netip.AddrPort // as the gateway reports it: external IP and the port it granted
	// Lifetime is the lease the gateway granted; 0 means a permanent
	// mapping (a UPnP router that supports only permanent leases).
	Lifetime time.Duration
	// Expires is when the lease ends; zero for a permanent mapping.
	Expires time.Time
}

func (m Mapping) String() string {
	life := "permanent"
	if m.Lifetime > 0 {
		life = m.Lifetime.String()
	}
	return fmt.Sprintf("%s %s %s -> %s (%s)", m.Protocol, m.Transport, m.Internal, m.External, life)
}

// Client speaks one port-mapping protocol to one gateway. Its methods are
// safe for concurrent use; each returns within ctx.
type Client interface {
	Protocol() Protocol
	// ExternalAddr asks the gateway for its external (WAN) address.
	ExternalAddr(ctx context.Context) (netip.Addr, error)
	// Map creates or renews a mapping from internal to an external port
	// (wantExternal, 0 for the same port as internal; the gateway may grant
	// another) for lifetime. Calling Map again for the same transport and
	// internal address:port renews it.
	Map(ctx context.Context, transport string, internal netip.AddrPort, wantExternal uint16, lifetime time.Duration) (Mapping, error)
	// Unmap removes m from the gateway. Removing a mapping the gateway
	// no longer has is not an error.
	Unmap(ctx context.Context, m Mapping) error
}

// ResetCounter is implemented by clients whose gateway tells them when it
// lost its state (the PCP and NAT-PMP epoch, RFC 6887 §8.5 and RFC 6886
// §3.6): Resets counts how many times so far an answer showed the gateway
// had restarted or otherwise forgotten its mappings. Manager re-creates
// every mapping when the count changes.
type ResetCounter interface {
	Resets() uint64
}

// Checker is implemented by every client of this package. Manager calls
// Check periodically, between renewals, to notice a rebooted gateway or a
// changed external address quickly.
type Checker interface {
	Check(ctx context.Context, ms []Mapping) (CheckResult, error)
}

// CheckResult is what Check learned.
type CheckResult struct {
	// External is the gateway's current external address; invalid when
	// the check could not tell.
	External netip.Addr
	// Lost are the mappings of ms that the gateway no longer holds.
	Lost []Mapping
}

// Errors that the clients wrap; test with errors.Is.
var (
	// ErrNoAnswer: the gateway did not answer within the retransmissions
	// or the context.
	ErrNoAnswer = errors.New("no answer from the gateway")
	// ErrRefused: the gateway's port is closed (ICMP port unreachable):
	// it does not run this protocol.
	ErrRefused = errors.New("gateway port closed")
	// ErrUnsupported: the gateway answered but does not speak this
	// protocol (version) or operation.
	ErrUnsupported = errors.New("not supported by the gateway")
	// ErrNoGateway: no default gateway was found.
	ErrNoGateway = errors.New("no default gateway")
	// ErrNoExternal: the gateway says it has no external address.
	ErrNoExternal = errors.New("the gateway has no external address")
	// ErrNoIGD: no UPnP Internet Gateway Device answered the search.
	ErrNoIGD = errors.New("no UPnP Internet Gateway Device found")
)

// DefaultLifetime is the lease Manager asks for unless configured:
// two hours, the lifetime RFC 6886 recommends and within what PCP servers
// (miniupnpd: 120 s to 86400 s) and UPnP IGD:2 (up to 604800 s) grant.
const DefaultLifetime = 2 * time.Hour

// Option configures a client.
type Option func(*options)

type options struct {
	serverPort  uint16        // PCP / NAT-PMP server port
	rto         time.Duration // first retransmission timeout
	tries       int           // sends per request
	ssdpAddrs   []netip.AddrPort
	gateway     netip.Addr
	local       netip.Addr
	httpClient  *http.Client
	description string
	now         func() time.Time
}

func buildOptions(opts []Option) options {
	o := options{
		serverPort:  5351,
		rto:         250 * time.Millisecond,
		tries:       6,
		description: "sipedge",
		now:         time.Now,
	}
	for _, f := range opts {
		if f != nil {
			f(&o)
		}
	}
	if o.httpClient == nil {
		o.httpClient = defaultHTTPClient()
	}
	return o
}

// WithServerPort sets the PCP / NAT-PMP server port (default 5351).
func WithServerPort(p uint16) Option { return func(o *options) { o.serverPort = p } }

// WithRetransmit sets the PCP / NAT-PMP retransmission schedule: the
// first timeout (default 250 ms, RFC 6886 §3.1), doubled after each send,
// for at most tries sends (default 6, about 16 s in all). The context
// bounds it too.
func WithRetransmit(first time.Duration, tries int) Option {
	return func(o *options) {
		if first > 0 {
			o.rto = first
		}
		if tries > 0 {
			o.tries = tries
		}
	}
}

// WithSSDPAddr sets where UPnP discovery sends its M-SEARCH requests,
// instead of the SSDP multicast group 239.255.255.250:1900 and the
// gateway's port 1900. Tests point it at a fake gateway on 127.0.0.1.
func WithSSDPAddr(addrs ...netip.AddrPort) Option {
	return func(o *options) { o.ssdpAddrs = append([]netip.AddrPort(nil), addrs...) }
}

// WithGateway tells UPnP discovery the default gateway: it is asked by
// unicast M-SEARCH too, and its answer is preferred.
func WithGateway(gw netip.Addr) Option { return func(o *options) { o.gateway = gw } }

// WithLocalAddr sets our LAN address: the source of PCP / NAT-PMP
// requests and the UPnP NewInternalClient for mappings whose internal
// address is unspecified. By default it is the address the kernel routes
// from towards the gateway.
func WithLocalAddr(a netip.Addr) Option { return func(o *options) { o.local = a } }

// WithHTTPClient sets the HTTP client for UPnP descriptions and SOAP.
// The default one uses no proxy and limits connection set-up to 2 s.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithDescription sets the UPnP NewPortMappingDescription (default
// "sipedge").
func WithDescription(s string) Option { return func(o *options) { o.description = s } }

// WithClock sets the clock used for lease expiry and epoch checks.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// normTransport returns "udp" or "tcp".
func normTransport(t string) (string, error) {
	switch strings.ToLower(t) {
	case "udp":
		return "udp", nil
	case "tcp":
		return "tcp", nil
	}
	return "", fmt.Errorf("portmap: transport %q: want udp or tcp", t)
}

// leaseSeconds converts a lifetime to whole seconds for the wire,
// rounding up and clamping to max; a non-positive lifetime becomes def.
func leaseSeconds(d time.Duration, def time.Duration, max uint32) uint32 {
	if d <= 0 {
		d = def
	}
	s := (d + time.Second - 1) / time.Second
	if s > time.Duration(max) {
		return max
	}
	return uint32(s)
}
