package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Found is what one protocol's probe found.
type Found struct {
	Protocol Protocol
	// External is the gateway's external address; valid when Err is nil
	// (or when an error reply named it, as PCP's can).
	External netip.Addr
	Err      error
	Elapsed  time.Duration
	// PrivateWAN: External is not a global address (RFC 1918, RFC 6598
	// shared space, ...): the gateway is itself behind a NAT (double NAT
	// or carrier-grade NAT), so its mappings alone do not make sipedge
	// reachable from the internet. Detail says which kind.
	PrivateWAN bool
	Detail     string
}

func (f Found) String() string {
	if f.Err != nil {
		s := fmt.Sprintf("%s: %v (%v)", f.Protocol, f.Err, f.Elapsed.Round(time.Millisecond))
		if f.Detail != "" {
			s += ": " + f.Detail
		}
		return s
	}
	s := fmt.Sprintf("%s: external address %s (%v)", f.Protocol, f.External, f.Elapsed.Round(time.Millisecond))
	if f.Detail != "" {
		s += ": " + f.Detail
	}
	return s
}

// ErrSkipped marks a probe that Discover stopped waiting for because a
// preferred protocol had answered.
var ErrSkipped = errors.New("not waited for: a preferred protocol answered")

// DiscoverConfig configures Discover. The zero value probes the default
// gateway with all three protocols.
type DiscoverConfig struct {
	// Gateway to ask; default DefaultGateway().
	Gateway netip.Addr
	// Local is our LAN address; default the one the kernel routes from
	// towards Gateway.
	Local netip.Addr
	// Protocols to try; default PCP, NAT-PMP and UPnP.
	Protocols []Protocol
	// Options for every client (WithServerPort, WithSSDPAddr, ...).
	Options []Option
	// Grace: once a less preferred protocol has answered, how much longer
	// to wait for a preferred one (default 500 ms: a gateway on the LAN
	// answers PCP and NAT-PMP within milliseconds).
	Grace time.Duration
	// WaitAll waits for every probe's answer (within ctx), for a full
	// report, instead of returning as soon as the best is known.
	WaitAll bool
}

var preference = []Protocol{PCP, NATPMP, UPnP}

// Discover probes the gateway with PCP, NAT-PMP and UPnP IGD in
// parallel and returns the client of the most preferred protocol that
// answered with an external address (PCP > NAT-PMP > UPnP; nil when none
// did) and one Found per protocol tried, in preference order. It
// returns within ctx (a 3 s bound is applied when ctx has none), and
// sooner once the best answer is known. Probes it stopped waiting for
// report ErrSkipped, those still unanswered at the deadline ErrNoAnswer.
// A PCP probe creates a mapping of a throw-away port for a moment
// (there is no other way to learn the external address) and deletes it.
func Discover(ctx context.Context, cfg DiscoverConfig) (best Client, found []Found) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
	}
	start := time.Now()
	protos := cfg.Protocols
	if len(protos) == 0 {
		protos = preference
	}
	grace := cfg.Grace
	if grace <= 0 {
		grace = 500 * time.Millisecond
	}
	gw, local := cfg.Gateway, cfg.Local
	var gwErr error
	if !gw.IsValid() {
		gw, local, gwErr = DefaultGateway()
		if cfg.Local.IsValid() {
			local = cfg.Local
		}
	} else if !local.IsValid() {
		local, _ = localAddrTo(gw)
	}

	type result struct {
		i int
		f Found
		c Client
	}
	probeCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(protos))
	order := []Protocol{}
	for _, p := range preference {
		for _, q := range protos {
			if p == q {
				order = append(order, p)
				break
			}
		}
	}
	found = make([]Found, len(order))
	done := make([]bool, len(order))
	clients := make([]Client, len(order))
	for i, p := range order {
		found[i].Protocol = p
		go func() {
			f, c := probe(probeCtx, p, gw, local, gwErr, cfg.Options)
			f.Elapsed = time.Since(start)
			results <- result{i, f, c}
		}()
	}

	var graceC <-chan time.Time
	pending := len(order)
	decided := func() bool {
		if cfg.WaitAll {
			return pending == 0
		}
		for i := range order {
			if !done[i] {
				// A preferred protocol is still out: wait for it, but
				// only for the grace period once a lesser one answered.
				for j := i + 1; j < len(order); j++ {
					if done[j] && clients[j] != nil && graceC == nil {
						graceC = time.After(grace)
					}
				}
				return false
			}
			if clients[i] != nil {
				return true
			}
		}
		return true
	}
loop:
	for pending > 0 && !decided() {
		select {
		case r := <-results:
			found[r.i], clients[r.i], done[r.i] = r.f, r.c, true
			pending--
		case <-graceC:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	// Collect anything that arrived meanwhile without waiting.
	for pending > 0 {
		select {
		case r := <-results:
			found[r.i], clients[r.i], done[r.i] = r.f, r.c, true
			pending--
			continue
		default:
		}
		break
	}
	for i := range order {
		if done[i] {
			continue
		}
		found[i].Elapsed = time.Since(start)
		if ctx.Err() != nil {
			found[i].Err = fmt.Errorf("%w within %v", ErrNoAnswer, found[i].Elapsed.Round(time.Millisecond))
		} else {
			found[i].Err = ErrSkipped
		}
	}
	for i := range order {
		if clients[i] != nil {
			return clients[i], found
		}
	}
	return nil, found
}

// probe asks the gateway for its external address with one protocol.
func probe(ctx context.Context, p Protocol, gw, local netip.Addr, gwErr error, opts []Option) (Found, Client) {
	f := Found{Protocol: p}
	var c Client
	var err error
	switch p {
	case PCP, NATPMP:
		if !gw.IsValid() {
			f.Err = gwErr
			if f.Err == nil {
				f.Err = ErrNoGateway
			}
			return f, nil
		}
		if p == PCP {
			c = NewPCP(gw, local, opts...)
		} else {
			c = NewNATPMP(gw, append([]Option{WithLocalAddr(local)}, opts...)...)
		}
		f.Detail = fmt.Sprintf("gateway %s", netip.AddrPortFrom(gw, buildOptions(opts).serverPort))
		f.External, err = c.ExternalAddr(ctx)
	case UPnP:
		o := []Option{}
		if gw.IsValid() {
			o = append(o, WithGateway(gw))
		}
		if local.IsValid() {
			o = append(o, WithLocalAddr(local))
		}
		c, err = NewUPnP(ctx, append(o, opts...)...)
		if err == nil {
			uc := c.(*upnpClient)
			uc.mu.Lock()
			f.External = uc.external
			uc.mu.Unlock()
			f.Detail = uc.Detail()
		}
	default:
		f.Err = fmt.Errorf("portmap: unknown protocol %q", p)
		return f, nil
	}
	if err != nil {
		f.Err = err
		var pe *PCPError
		if errors.As(err, &pe) && pe.External.IsValid() {
			f.External = pe.External
			if priv, why := ClassifyExternal(pe.External); priv {
				f.PrivateWAN = true
				f.Detail += "; external address " + pe.External.String() + ": " + why
			}
		}
		if refusesAll(err) {
			f.Detail += "; the gateway refuses every mapping: miniupnpd does so when its own WAN address is private or reserved (double NAT or CGNAT; it counts the RFC 5737 documentation blocks as reserved too)"
		}
		return f, nil
	}
	if priv, why := ClassifyExternal(f.External); priv {
		f.PrivateWAN = true
		f.Detail += "; external address " + f.External.String() + ": " + why
	}
	return f, c
}

// refusesAll reports the answers of a gateway that has no usable
// external address.
func refusesAll(err error) bool {
	var pe *PCPError
	var ne *NATPMPError
	switch {
	case errors.Is(err, ErrNoExternal):
		return true
	case errors.As(err, &pe):
		return pe.Code == PCPNoResources || pe.Code == PCPNetworkFailure
	case errors.As(err, &ne):
		return ne.Code == PMPNetworkFailure
	}
	return false
}
