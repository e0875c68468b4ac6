package portmap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// PCP (RFC 6887) wire format.
const (
	pcpVersion     = 2
	pcpOpAnnounce  = 0
	pcpOpMap       = 1
	pcpReplyBit    = 0x80
	pcpHeaderLen   = 24
	pcpMapLen      = 36
	pcpMaxLen      = 1100
	pcpProtoUDP    = 17
	pcpProtoTCP    = 6
	pcpMaxLifetime = 1<<32 - 1
)

// PCP result codes (RFC 6887 §7.4).
const (
	PCPSuccess               = 0
	PCPUnsuppVersion         = 1
	PCPNotAuthorized         = 2
	PCPMalformedRequest      = 3
	PCPUnsuppOpcode          = 4
	PCPUnsuppOption          = 5
	PCPMalformedOption       = 6
	PCPNetworkFailure        = 7
	PCPNoResources           = 8
	PCPUnsuppProtocol        = 9
	PCPUserExQuota           = 10
	PCPCannotProvideExternal = 11
	PCPAddressMismatch       = 12
	PCPExcessiveRemotePeers  = 13
)

var pcpResultNames = [...]string{
	"SUCCESS", "UNSUPP_VERSION", "NOT_AUTHORIZED", "MALFORMED_REQUEST",
	"UNSUPP_OPCODE", "UNSUPP_OPTION", "MALFORMED_OPTION", "NETWORK_FAILURE",
	"NO_RESOURCES", "UNSUPP_PROTOCOL", "USER_EX_QUOTA",
	"CANNOT_PROVIDE_EXTERNAL", "ADDRESS_MISMATCH", "EXCESSIVE_REMOTE_PEERS",
}

var pcpResultHints = map[uint8]string{
	PCPUnsuppVersion:         "the gateway does not speak PCP version 2",
	PCPNotAuthorized:         "port mapping is disabled on the gateway, or the mapping belongs to another client (nonce)",
	PCPMalformedRequest:      "the gateway could not parse the request",
	PCPUnsuppOpcode:          "the gateway does not implement this operation",
	PCPNetworkFailure:        "the gateway has no external address yet",
	PCPNoResources:           "the gateway cannot create more mappings now",
	PCPUnsuppProtocol:        "the gateway does not map this transport",
	PCPUserExQuota:           "we hold as many mappings as the gateway allows",
	PCPCannotProvideExternal: "the suggested external port or address is not available",
	PCPAddressMismatch:       "the gateway saw the request come from another address than it names: another NAT is between sipedge and the gateway",
	PCPExcessiveRemotePeers:  "too many remote peers",
}

// PCPError is a PCP answer with a result code other than SUCCESS.
type PCPError struct {
	Op   string
	Code uint8
	// Lifetime is how long the gateway says the error will last.
	Lifetime time.Duration
	// External is the external address an error reply named, if any
	// (miniupnpd names its WAN address when it refuses every mapping).
	External netip.Addr
}

func (e *PCPError) Error() string {
	s := fmt.Sprintf("pcp: %s: gateway answered %s", e.Op, PCPResultName(e.Code))
	if h := pcpResultHints[e.Code]; h != "" {
		s += ": " + h
	}
	if e.External.IsValid() {
		s += " (its external address: " + e.External.String() + ")"
	}
	return s
}

// Is lets errors.Is(err, ErrUnsupported) match version, opcode and
// protocol refusals.
func (e *PCPError) Is(target error) bool {
	return target == ErrUnsupported && (e.Code == PCPUnsuppVersion || e.Code == PCPUnsuppOpcode || e.Code == PCPUnsuppProtocol)
}

// PCPResultName is the RFC 6887 name of a result code, e.g. "NOT_AUTHORIZED (2)".
func PCPResultName(c uint8) string {
	if int(c) < len(pcpResultNames) {
		return fmt.Sprintf("%s (%d)", pcpResultNames[c], c)
	}
	return fmt.Sprintf("result code %d", c)
}

// errPCPGotPMP: a NAT-PMP server answered a PCP request (RFC 6887 §9).
var errPCPGotPMP = fmt.Errorf("the gateway answered in NAT-PMP format: it speaks NAT-PMP, not PCP: %w", ErrUnsupported)

// pcpReply is a decoded PCP response.
type pcpReply struct {
	Opcode   uint8
	Result   uint8
	Lifetime uint32
	Epoch    uint32
	// MAP payload; HasMap is false for an error reply of only the header.
	HasMap       bool
	Nonce        [12]byte
	Proto        uint8
	InternalPort uint16
	ExternalPort uint16
	ExternalIP   netip.Addr
}

// parsePCPReply decodes a PCP response: the header, the MAP payload and
// the options after it (checked for bounds, otherwise ignored).
func parsePCPReply(b []byte) (pcpReply, error) {
	var r pcpReply
	if len(b) >= 2 && b[0] == pmpVersion && b[1] >= pmpOpReply {
		return r, errPCPGotPMP
	}
	if len(b) < pcpHeaderLen {
		return r, fmt.Errorf("pcp: %w: %d bytes", errMalformed, len(b))
	}
	if len(b) > pcpMaxLen || len(b)%4 != 0 {
		return r, fmt.Errorf("pcp: %w: length %d", errMalformed, len(b))
	}
	if b[1]&pcpReplyBit == 0 {
		return r, fmt.Errorf("pcp: %w: a request, not a response", errMalformed)
	}
	r.Opcode = b[1] &^ pcpReplyBit
	r.Result = b[3]
	r.Lifetime = binary.BigEndian.Uint32(b[4:8])
	r.Epoch = binary.BigEndian.Uint32(b[8:12])
	if b[0] != pcpVersion {
		if r.Result == PCPUnsuppVersion {
			return r, nil
		}
		return r, fmt.Errorf("pcp: %w: version %d", errMalformed, b[0])
	}
	rest := b[pcpHeaderLen:]
	if r.Opcode == pcpOpMap {
		if len(rest) < pcpMapLen {
			if r.Result == PCPSuccess {
				return r, fmt.Errorf("pcp: %w: MAP reply without payload", errMalformed)
			}
			return r, nil
		}
		r.HasMap = true
		copy(r.Nonce[:], rest[0:12])
		r.Proto = rest[12]
		r.InternalPort = binary.BigEndian.Uint16(rest[16:18])
		r.ExternalPort = binary.BigEndian.Uint16(rest[18:20])
		r.ExternalIP = netip.AddrFrom16([16]byte(rest[20:36])).Unmap()
		rest = rest[pcpMapLen:]
	}
	if r.Opcode != pcpOpMap && r.Opcode != pcpOpAnnounce {
		// An unknown opcode's payload (echoed in an error): its length
		// is unknown, so the options cannot be found.
		return r, nil
	}
	// Options: code (1), reserved (1), length (2), data padded to 4.
	for len(rest) > 0 {
		if len(rest) < 4 {
			return r, fmt.Errorf("pcp: %w: truncated option", errMalformed)
		}
		n := int(binary.BigEndian.Uint16(rest[2:4]))
		padded := 4 + (n+3)&^3
		if padded > len(rest) {
			return r, fmt.Errorf("pcp: %w: option %d of %d bytes overruns the reply", errMalformed, rest[0], n)
		}
		rest = rest[padded:]
	}
	return r, nil
}

// pcpAddr16 is a as PCP writes addresses: IPv4 as IPv4-mapped IPv6.
func pcpAddr16(a netip.Addr) [16]byte {
	return a.As16() // IPv4 as ::ffff:a.b.c.d
}

func buildPCPHeader(b []byte, op uint8, lifetime uint32, client netip.Addr) {
	b[0], b[1] = pcpVersion, op
	binary.BigEndian.PutUint32(b[4:8], lifetime)
	c := pcpAddr16(client)
	copy(b[8:24], c[:])
}

func buildPCPMap(lifetime uint32, client netip.Addr, nonce [12]byte, proto uint8, internal, suggestedPort uint16, suggestedIP netip.Addr) []byte {
	b := make([]byte, pcpHeaderLen+pcpMapLen)
	buildPCPHeader(b, pcpOpMap, lifetime, client)
	p := b[pcpHeaderLen:]
	copy(p[0:12], nonce[:])
	p[12] = proto
	binary.BigEndian.PutUint16(p[16:18], internal)
	binary.BigEndian.PutUint16(p[18:20], suggestedPort)
	if !suggestedIP.IsValid() {
		// "all zeros" of the internal address's family; IPv4 as ::ffff:0.0.0.0.
		if client.Is4() {
			suggestedIP = netip.IPv4Unspecified()
		} else {
			suggestedIP = netip.IPv6Unspecified()
		}
	}
	ip := pcpAddr16(suggestedIP)
	copy(p[20:36], ip[:])
	return b
}

func buildPCPAnnounce(client netip.Addr) []byte {
	b := make([]byte, pcpHeaderLen)
	buildPCPHeader(b, pcpOpAnnounce, 0, client)
	return b
}

type pcpKey struct {
	proto    uint8
	internal netip.AddrPort
}

type pcpClient struct {
	server netip.AddrPort
	local  netip.Addr
	o      options
	epoch  epochTracker

	mu       sync.Mutex
	nonces   map[pcpKey][12]byte
	external netip.Addr
}

// NewPCP returns a PCP client for the gateway gw. local is our address
// on the LAN: requests are sent from it and name it as the PCP client
// address (a gateway that sees another source answers ADDRESS_MISMATCH).
// An invalid local lets the kernel choose, and names what it chose.
func NewPCP(gw, local netip.Addr, opts ...Option) Client {
	o := buildOptions(opts)
	if !local.IsValid() {
		local = o.local
	}
	return &pcpClient{
		server: netip.AddrPortFrom(gw.Unmap(), o.serverPort),
		local:  local.Unmap(),
		o:      o,
		nonces: make(map[pcpKey][12]byte),
	}
}

func (c *pcpClient) Protocol() Protocol { return PCP }
func (c *pcpClient) Resets() uint64     { return c.epoch.count() }

func pcpProto(transport string) (uint8, string, error) {
	t, err := normTransport(transport)
	if err != nil {
		return 0, "", err
	}
	if t == "tcp" {
		return pcpProtoTCP, t, nil
	}
	return pcpProtoUDP, t, nil
}

// request sends one PCP request built by build (given the local address
// that the socket got) and returns the matching reply.
func (c *pcpClient) request(ctx context.Context, what string, build func(local netip.Addr, localPort uint16) []byte, check func(pcpReply) bool) (pcpReply, netip.AddrPort, error) {
	conn, err := dialGateway(c.local, c.server)
	if err != nil {
		return pcpReply{}, netip.AddrPort{}, fmt.Errorf("pcp: %s: %w", what, err)
	}
	defer conn.Close()
	la := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	la = netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
	req := build(la.Addr(), la.Port())
	var reply pcpReply
	err = exchange(ctx, conn, req, c.o.rto, c.o.tries, func(b []byte) (bool, error) {
		r, err := parsePCPReply(b)
		if errors.Is(err, errPCPGotPMP) {
			return true, err
		}
		if err != nil {
			return false, nil
		}
		if b[0] != pcpVersion { // UNSUPP_VERSION from a server of another version
			return true, &PCPError{Op: what, Code: r.Result}
		}
		if r.Opcode != req[1] {
			return false, nil
		}
		if r.HasMap && check != nil && !check(r) {
			return false, nil
		}
		if !r.HasMap && r.Opcode == pcpOpMap && r.Result == PCPSuccess {
			return false, nil
		}
		reply = r
		c.epoch.observe(r.Epoch, c.o.now())
		if r.Result != PCPSuccess {
			pe := &PCPError{Op: what, Code: r.Result, Lifetime: time.Duration(r.Lifetime) * time.Second}
			if r.HasMap && r.ExternalIP.IsValid() && !r.ExternalIP.IsUnspecified() {
				pe.External = r.ExternalIP
			}
			return true, pe
		}
		return true, nil
	})
	if err != nil {
		var pe *PCPError
		if errors.As(err, &pe) {
			return reply, la, err
		}
		return reply, la, fmt.Errorf("pcp: %s: %w", what, err)
	}
	return reply, la, nil
}

func (c *pcpClient) nonce(k pcpKey) [12]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nonces[k]
	if !ok {
		rand.Read(n[:])
	}
	return n
}

func (c *pcpClient) Map(ctx context.Context, transport string, internal netip.AddrPort, wantExternal uint16, lifetime time.Duration) (Mapping, error) {
	proto, t, err := pcpProto(transport)
	if err != nil {
		return Mapping{}, err
	}
	if internal.Port() == 0 {
		return Mapping{}, fmt.Errorf("pcp: map %s: internal port 0", t)
	}
	if wantExternal == 0 {
		wantExternal = internal.Port()
	}
	secs := leaseSeconds(lifetime, DefaultLifetime, pcpMaxLifetime)
	what := "map " + t + " " + internal.String()
	var key pcpKey
	var nonce [12]byte
	r, _, err := c.request(ctx, what, func(local netip.Addr, _ uint16) []byte {
		in := internal
		if !in.Addr().IsValid() || in.Addr().IsUnspecified() {
			in = netip.AddrPortFrom(local, in.Port())
		}
		key = pcpKey{proto, in}
		nonce = c.nonce(key)
		return buildPCPMap(secs, local, nonce, proto, internal.Port(), wantExternal, c.suggestedIP())
	}, func(r pcpReply) bool {
		return r.Nonce == nonce && r.Proto == proto && r.InternalPort == internal.Port()
	})
	if err != nil {
		return Mapping{}, err
	}
	if r.ExternalPort == 0 || r.Lifetime == 0 || !r.ExternalIP.IsValid() {
		return Mapping{}, fmt.Errorf("pcp: %s: gateway granted %s for %d s", what, netip.AddrPortFrom(r.ExternalIP, r.ExternalPort), r.Lifetime)
	}
	c.mu.Lock()
	c.nonces[key] = nonce
	c.external = r.ExternalIP
	c.mu.Unlock()
	life := time.Duration(r.Lifetime) * time.Second
	return Mapping{
		Protocol:  PCP,
		Transport: t,
		Internal:  key.internal,
		External:  netip.AddrPortFrom(r.ExternalIP, r.ExternalPort),
		Lifetime:  life,
		Expires:   c.o.now().Add(life),
	}, nil
}

// suggestedIP suggests the external address we last saw, so a renewal
// after a gateway restart keeps it if it can.
func (c *pcpClient) suggestedIP() netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.external
}

func (c *pcpClient) Unmap(ctx context.Context, m Mapping) error {
	proto, t, err := pcpProto(m.Transport)
	if err != nil {
		return err
	}
	key := pcpKey{proto, m.Internal}
	nonce := c.nonce(key)
	what := "unmap " + t + " " + m.Internal.String()
	_, _, err = c.request(ctx, what, func(local netip.Addr, _ uint16) []byte {
		// RFC 6887 §15: lifetime 0 deletes; the nonce must be the one
		// that created the mapping.
		return buildPCPMap(0, local, nonce, proto, m.Internal.Port(), m.External.Port(), m.External.Addr())
	}, func(r pcpReply) bool {
		return r.Nonce == nonce && r.Proto == proto && r.InternalPort == m.Internal.Port()
	})
	if err == nil {
		c.mu.Lock()
		delete(c.nonces, key)
		c.mu.Unlock()
	}
	return err
}

// ExternalAddr maps the client socket's own port for a short while and
// deletes that mapping again: PCP has no "get external address" request
// (RFC 6887 §11.6 names MAP as the way).
func (c *pcpClient) ExternalAddr(ctx context.Context) (netip.Addr, error) {
	var nonce [12]byte
	rand.Read(nonce[:])
	var probe netip.AddrPort
	r, _, err := c.request(ctx, "external address", func(local netip.Addr, port uint16) []byte {
		probe = netip.AddrPortFrom(local, port)
		return buildPCPMap(120, local, nonce, pcpProtoUDP, port, 0, netip.Addr{})
	}, func(r pcpReply) bool { return r.Nonce == nonce })
	if err != nil {
		return netip.Addr{}, err
	}
	if !r.ExternalIP.IsValid() || r.ExternalIP.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("pcp: external address: gateway granted %s", r.ExternalIP)
	}
	c.mu.Lock()
	c.external = r.ExternalIP
	c.mu.Unlock()
	// Delete the probe mapping; if that fails it expires by itself.
	c.mu.Lock()
	c.nonces[pcpKey{pcpProtoUDP, probe}] = nonce
	c.mu.Unlock()
	c.Unmap(ctx, Mapping{Transport: "udp", Internal: probe, External: netip.AddrPortFrom(r.ExternalIP, r.ExternalPort)})
	return r.ExternalIP, nil
}

// Check sends an ANNOUNCE request (RFC 6887 §14.1) to learn the epoch:
// if it went backwards the gateway lost every mapping. The external
// address is the one the last MAP reply named.
func (c *pcpClient) Check(ctx context.Context, ms []Mapping) (CheckResult, error) {
	before := c.epoch.count()
	_, _, err := c.request(ctx, "announce", func(local netip.Addr, _ uint16) []byte {
		return buildPCPAnnounce(local)
	}, nil)
	var pe *PCPError
	if err != nil && !(errors.As(err, &pe) && pe.Code == PCPUnsuppOpcode) {
		return CheckResult{}, err
	}
	res := CheckResult{External: c.suggestedIP()}
	if c.epoch.count() != before {
		res.Lost = append([]Mapping(nil), ms...)
	}
	return res, nil
}
