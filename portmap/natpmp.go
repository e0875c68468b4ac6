package portmap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// NAT-PMP (RFC 6886) wire format.
const (
	pmpVersion    = 0
	pmpOpExternal = 0
	pmpOpMapUDP   = 1
	pmpOpMapTCP   = 2
	pmpOpReply    = 128
)

// NAT-PMP result codes (RFC 6886 §3.5).
const (
	PMPSuccess           = 0
	PMPUnsupportedVer    = 1
	PMPNotAuthorized     = 2
	PMPNetworkFailure    = 3
	PMPOutOfResources    = 4
	PMPUnsupportedOpcode = 5
)

// NATPMPError is a NAT-PMP answer with a result code other than success.
type NATPMPError struct {
	Op   string // "external address", "map udp", ...
	Code uint16
}

func (e *NATPMPError) Error() string {
	return fmt.Sprintf("natpmp: %s: gateway answered %s", e.Op, pmpResultText(e.Code))
}

// Is lets errors.Is(err, ErrUnsupported) match version and opcode refusals.
func (e *NATPMPError) Is(target error) bool {
	return target == ErrUnsupported && (e.Code == PMPUnsupportedVer || e.Code == PMPUnsupportedOpcode)
}

func pmpResultText(c uint16) string {
	switch c {
	case PMPSuccess:
		return "success (0)"
	case PMPUnsupportedVer:
		return "unsupported version (1)"
	case PMPNotAuthorized:
		return "not authorized/refused (2): port mapping is disabled on the gateway"
	case PMPNetworkFailure:
		return "network failure (3): the gateway has no external address yet"
	case PMPOutOfResources:
		return "out of resources (4): the gateway cannot create more mappings"
	case PMPUnsupportedOpcode:
		return "unsupported opcode (5)"
	}
	return fmt.Sprintf("unknown result code %d", c)
}

// pmpReply is a decoded NAT-PMP response.
type pmpReply struct {
	Op       uint8 // request opcode (without the 128)
	Result   uint16
	Epoch    uint32
	External netip.Addr // opcode 0
	Internal uint16     // opcodes 1, 2
	Mapped   uint16
	Lifetime uint32
}

var errMalformed = errors.New("malformed reply")

// errPMPGotPCP: a PCP-only server refused our NAT-PMP version.
var errPMPGotPCP = fmt.Errorf("the gateway answered in PCP format: it speaks PCP, not NAT-PMP: %w", ErrUnsupported)

// parsePMPReply decodes a NAT-PMP response. An error response may be
// only the 8-byte header.
func parsePMPReply(b []byte) (pmpReply, error) {
	var r pmpReply
	if len(b) >= 4 && b[0] == pcpVersion && b[1]&pcpReplyBit != 0 && b[3] == PCPUnsuppVersion {
		// A PCP-only server's UNSUPP_VERSION (RFC 6887 §9).
		return r, errPMPGotPCP
	}
	if len(b) < 8 {
		return r, fmt.Errorf("natpmp: %w: %d bytes", errMalformed, len(b))
	}
	if b[0] != pmpVersion {
		return r, fmt.Errorf("natpmp: %w: version %d", errMalformed, b[0])
	}
	if b[1] < pmpOpReply {
		return r, fmt.Errorf("natpmp: %w: opcode %d is a request", errMalformed, b[1])
	}
	r.Op = b[1] - pmpOpReply
	r.Result = binary.BigEndian.Uint16(b[2:4])
	r.Epoch = binary.BigEndian.Uint32(b[4:8])
	if r.Result != PMPSuccess {
		return r, nil
	}
	switch r.Op {
	case pmpOpExternal:
		if len(b) < 12 {
			return r, fmt.Errorf("natpmp: %w: external address reply of %d bytes", errMalformed, len(b))
		}
		r.External = netip.AddrFrom4([4]byte(b[8:12]))
	case pmpOpMapUDP, pmpOpMapTCP:
		if len(b) < 16 {
			return r, fmt.Errorf("natpmp: %w: mapping reply of %d bytes", errMalformed, len(b))
		}
		r.Internal = binary.BigEndian.Uint16(b[8:10])
		r.Mapped = binary.BigEndian.Uint16(b[10:12])
		r.Lifetime = binary.BigEndian.Uint32(b[12:16])
	}
	return r, nil
}

func buildPMPMap(op uint8, internal, suggested uint16, lifetime uint32) []byte {
	b := make([]byte, 12)
	b[0], b[1] = pmpVersion, op
	binary.BigEndian.PutUint16(b[4:], internal)
	binary.BigEndian.PutUint16(b[6:], suggested)
	binary.BigEndian.PutUint32(b[8:], lifetime)
	return b
}

type natpmpClient struct {
	server netip.AddrPort
	o      options
	epoch  epochTracker

	mu       sync.Mutex
	external netip.Addr
}

// NewNATPMP returns a NAT-PMP client for the gateway gw (IPv4 only). It
// sends nothing until used.
func NewNATPMP(gw netip.Addr, opts ...Option) Client {
	o := buildOptions(opts)
	return &natpmpClient{server: netip.AddrPortFrom(gw.Unmap(), o.serverPort), o: o}
}

func (c *natpmpClient) Protocol() Protocol { return NATPMP }
func (c *natpmpClient) Resets() uint64     { return c.epoch.count() }

// request runs one exchange and returns the matching reply.
func (c *natpmpClient) request(ctx context.Context, local netip.Addr, what string, req []byte, check func(pmpReply) bool) (pmpReply, netip.Addr, error) {
	conn, err := dialGateway(local, c.server)
	if err != nil {
		return pmpReply{}, netip.Addr{}, fmt.Errorf("natpmp: %s: %w", what, err)
	}
	defer conn.Close()
	var reply pmpReply
	err = exchange(ctx, conn, req, c.o.rto, c.o.tries, func(b []byte) (bool, error) {
		r, err := parsePMPReply(b)
		if errors.Is(err, errPMPGotPCP) {
			return true, err
		}
		if err != nil || r.Op != req[1] {
			return false, nil
		}
		if r.Result == PMPSuccess && check != nil && !check(r) {
			return false, nil
		}
		reply = r
		c.epoch.observe(r.Epoch, c.o.now())
		if r.Result != PMPSuccess {
			return true, &NATPMPError{Op: what, Code: r.Result}
		}
		return true, nil
	})
	if err != nil {
		var pe *NATPMPError
		if errors.As(err, &pe) {
			return reply, netip.Addr{}, err
		}
		return reply, netip.Addr{}, fmt.Errorf("natpmp: %s: %w", what, err)
	}
	src := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return reply, src, nil
}

func (c *natpmpClient) ExternalAddr(ctx context.Context) (netip.Addr, error) {
	r, _, err := c.request(ctx, c.o.local, "external address", []byte{pmpVersion, pmpOpExternal}, nil)
	if err != nil {
		return netip.Addr{}, err
	}
	c.mu.Lock()
	c.external = r.External
	c.mu.Unlock()
	return r.External, nil
}

func (c *natpmpClient) cachedExternal(ctx context.Context) (netip.Addr, error) {
	c.mu.Lock()
	ext := c.external
	c.mu.Unlock()
	if ext.IsValid() {
		return ext, nil
	}
	return c.ExternalAddr(ctx)
}

func pmpOp(transport string) (uint8, string, error) {
	t, err := normTransport(transport)
	if err != nil {
		return 0, "", err
	}
	if t == "tcp" {
		return pmpOpMapTCP, t, nil
	}
	return pmpOpMapUDP, t, nil
}

func (c *natpmpClient) bindAddr(internal netip.Addr) netip.Addr {
	if c.o.local.IsValid() {
		return c.o.local
	}
	if internal.IsValid() && !internal.IsUnspecified() {
		return internal.Unmap()
	}
	return netip.Addr{}
}

func (c *natpmpClient) Map(ctx context.Context, transport string, internal netip.AddrPort, wantExternal uint16, lifetime time.Duration) (Mapping, error) {
	op, t, err := pmpOp(transport)
	if err != nil {
		return Mapping{}, err
	}
	if internal.Port() == 0 {
		return Mapping{}, fmt.Errorf("natpmp: map %s: internal port 0", t)
	}
	if wantExternal == 0 {
		wantExternal = internal.Port()
	}
	secs := leaseSeconds(lifetime, DefaultLifetime, 1<<31)
	what := "map " + t + " " + internal.String()
	ext, err := c.cachedExternal(ctx)
	if err != nil {
		return Mapping{}, err
	}
	req := buildPMPMap(op, internal.Port(), wantExternal, secs)
	before := c.epoch.count()
	r, src, err := c.request(ctx, c.bindAddr(internal.Addr()), what, req, func(r pmpReply) bool { return r.Internal == internal.Port() })
	if err != nil {
		return Mapping{}, err
	}
	if r.Mapped == 0 || r.Lifetime == 0 {
		return Mapping{}, fmt.Errorf("natpmp: %s: gateway granted port %d for %d s", what, r.Mapped, r.Lifetime)
	}
	// The epoch may just have shown a reboot, which can come with a new
	// external address: ask again then.
	if c.epoch.count() != before {
		if e, err := c.ExternalAddr(ctx); err == nil {
			ext = e
		}
	}
	in := internal
	if !in.Addr().IsValid() || in.Addr().IsUnspecified() {
		in = netip.AddrPortFrom(src, internal.Port())
	}
	life := time.Duration(r.Lifetime) * time.Second
	return Mapping{
		Protocol:  NATPMP,
		Transport: t,
		Internal:  in,
		External:  netip.AddrPortFrom(ext, r.Mapped),
		Lifetime:  life,
		Expires:   c.o.now().Add(life),
	}, nil
}

func (c *natpmpClient) Unmap(ctx context.Context, m Mapping) error {
	op, t, err := pmpOp(m.Transport)
	if err != nil {
		return err
	}
	// RFC 6886 §3.4: delete with lifetime 0 and suggested external port 0.
	req := buildPMPMap(op, m.Internal.Port(), 0, 0)
	_, _, err = c.request(ctx, c.bindAddr(m.Internal.Addr()), "unmap "+t+" "+m.Internal.String(), req, func(r pmpReply) bool { return r.Internal == m.Internal.Port() })
	return err
}

// Check asks for the external address; a reset epoch means every
// mapping is lost.
func (c *natpmpClient) Check(ctx context.Context, ms []Mapping) (CheckResult, error) {
	before := c.epoch.count()
	ext, err := c.ExternalAddr(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{External: ext}
	if c.epoch.count() != before {
		res.Lost = append([]Mapping(nil), ms...)
	}
	return res, nil
}
