package portmaptest

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/sipedge/sipedge/portmap"
)

// servePMP answers PCP and NAT-PMP on one socket, told apart by the
// version byte (RFC 6887 §9), as miniupnpd does.
func (g *Gateway) servePMP() {
	defer g.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := g.pmp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if g.cfg.Delay > 0 {
			time.Sleep(g.cfg.Delay)
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if reply := g.handlePMP(buf[:n], from); reply != nil {
			g.pmp.WriteToUDPAddrPort(reply, from)
		}
	}
}

func (g *Gateway) handlePMP(b []byte, from netip.AddrPort) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked()
	if len(b) < 2 {
		return nil
	}
	switch {
	case b[0] == 0 && g.pmpOn:
		return g.natpmpLocked(b, from)
	case b[0] == 2 && g.pcpOn:
		return g.pcpLocked(b, from)
	case g.silent:
		return nil
	case g.pcpOn:
		// A PCP-only server: UNSUPP_VERSION in PCP format.
		return pcpHeader(b[1]&0x7f, portmap.PCPUnsuppVersion, 0, g.epochLocked())
	case g.pmpOn:
		// A NAT-PMP-only server: "unsupported version", 8 bytes.
		r := make([]byte, 8)
		r[1] = 128 + b[1]&0x7f
		binary.BigEndian.PutUint16(r[2:], portmap.PMPUnsupportedVer)
		binary.BigEndian.PutUint32(r[4:], g.epochLocked())
		return r
	}
	return nil
}

func (g *Gateway) natpmpLocked(b []byte, from netip.AddrPort) []byte {
	epoch := g.epochLocked()
	op := b[1]
	switch op {
	case 0:
		r := make([]byte, 12)
		r[1] = 128
		binary.BigEndian.PutUint32(r[4:], epoch)
		res := "ok"
		if g.cfg.RefuseMappings {
			binary.BigEndian.PutUint16(r[2:], portmap.PMPNetworkFailure)
			res = "result 3"
		} else {
			a := g.external.As4()
			copy(r[8:], a[:])
		}
		g.record(Op{Protocol: portmap.NATPMP, Action: "external", Result: res})
		return r
	case 1, 2:
		if len(b) < 12 {
			return nil
		}
		transport := "udp"
		if op == 2 {
			transport = "tcp"
		}
		iport := binary.BigEndian.Uint16(b[4:6])
		sport := binary.BigEndian.Uint16(b[6:8])
		life := time.Duration(binary.BigEndian.Uint32(b[8:12])) * time.Second
		internal := netip.AddrPortFrom(from.Addr(), iport)
		r := make([]byte, 16)
		r[1] = 128 + op
		binary.BigEndian.PutUint32(r[4:], epoch)
		copy(r[8:16], b[4:12]) // echo, overwritten on success
		fail := func(code uint16, res string) []byte {
			binary.BigEndian.PutUint16(r[2:], code)
			g.record(Op{Protocol: portmap.NATPMP, Action: "map", Transport: transport, Internal: internal, Lifetime: life, Result: res})
			return r
		}
		if life == 0 {
			// Delete (RFC 6886 §3.4); internal port 0 deletes all of the client's.
			for k, m := range g.mappings {
				if k.transport == transport && m.Internal.Addr() == from.Addr() && (iport == 0 || m.Internal.Port() == iport) && m.Protocol == portmap.NATPMP {
					delete(g.mappings, k)
				}
			}
			binary.BigEndian.PutUint16(r[10:12], 0)
			binary.BigEndian.PutUint32(r[12:16], 0)
			g.record(Op{Protocol: portmap.NATPMP, Action: "unmap", Transport: transport, Internal: internal, Result: "ok"})
			return r
		}
		if g.cfg.RefuseMappings {
			return fail(portmap.PMPNetworkFailure, "result 3")
		}
		if g.failLocked() {
			return fail(portmap.PMPOutOfResources, "result 4")
		}
		if iport == 0 {
			return fail(portmap.PMPNotAuthorized, "result 2")
		}
		m := g.findLocked(transport, internal)
		if m == nil {
			ext := g.freePortLocked(transport, sport, internal)
			m = &Mapping{Protocol: portmap.NATPMP, Transport: transport, Internal: internal, External: ext}
			g.mappings[mkey{transport, ext}] = m
		}
		m.Lifetime = g.grantLocked(life)
		m.Expires = time.Now().Add(m.Lifetime)
		m.Protocol = portmap.NATPMP
		binary.BigEndian.PutUint16(r[10:12], m.External)
		binary.BigEndian.PutUint32(r[12:16], uint32(m.Lifetime/time.Second))
		g.record(Op{Protocol: portmap.NATPMP, Action: "map", Transport: transport, Internal: internal, External: m.External, Lifetime: m.Lifetime, Result: "ok"})
		return r
	}
	r := make([]byte, 8)
	r[1] = 128 + op
	binary.BigEndian.PutUint16(r[2:], portmap.PMPUnsupportedOpcode)
	binary.BigEndian.PutUint32(r[4:], epoch)
	return r
}

func pcpHeader(op, result uint8, lifetime, epoch uint32) []byte {
	r := make([]byte, 24)
	r[0], r[1], r[3] = 2, op|0x80, result
	binary.BigEndian.PutUint32(r[4:], lifetime)
	binary.BigEndian.PutUint32(r[8:], epoch)
	return r
}

func (g *Gateway) pcpLocked(b []byte, from netip.AddrPort) []byte {
	if len(b) < 24 || len(b) > 1100 || len(b)%4 != 0 || b[1]&0x80 != 0 {
		return nil
	}
	epoch := g.epochLocked()
	op := b[1]
	client := netip.AddrFrom16([16]byte(b[8:24])).Unmap()
	payload := b[24:]
	reply := func(result uint8, lifetime uint32, p []byte) []byte {
		return append(pcpHeader(op, result, lifetime, epoch), p...)
	}
	if client != from.Addr() {
		g.record(Op{Protocol: portmap.PCP, Action: "map", Result: "ADDRESS_MISMATCH"})
		return reply(portmap.PCPAddressMismatch, 0, payload)
	}
	switch op {
	case 0:
		g.record(Op{Protocol: portmap.PCP, Action: "announce", Result: "ok"})
		return reply(portmap.PCPSuccess, 0, nil)
	case 1:
	default:
		return reply(portmap.PCPUnsuppOpcode, 0, payload)
	}
	if len(payload) < 36 {
		return reply(portmap.PCPMalformedRequest, 0, nil)
	}
	p := append([]byte(nil), payload[:36]...)
	var nonce [12]byte
	copy(nonce[:], p[0:12])
	transport := ""
	switch p[12] {
	case 17:
		transport = "udp"
	case 6:
		transport = "tcp"
	default:
		return reply(portmap.PCPUnsuppProtocol, 0, p)
	}
	iport := binary.BigEndian.Uint16(p[16:18])
	sport := binary.BigEndian.Uint16(p[18:20])
	life := time.Duration(binary.BigEndian.Uint32(b[4:8])) * time.Second
	internal := netip.AddrPortFrom(from.Addr(), iport)
	setExt := func(port uint16, a netip.Addr) {
		binary.BigEndian.PutUint16(p[18:20], port)
		a16 := a.As16()
		copy(p[20:36], a16[:])
	}
	rec := func(action string, ext uint16, res string) {
		g.record(Op{Protocol: portmap.PCP, Action: action, Transport: transport, Internal: internal, External: ext, Lifetime: life, Result: res})
	}
	if iport == 0 {
		rec("map", 0, "MALFORMED_REQUEST")
		return reply(portmap.PCPMalformedRequest, 0, p)
	}
	m := g.findLocked(transport, internal)
	if life == 0 {
		if m != nil {
			if m.nonce != nonce {
				rec("unmap", m.External, "NOT_AUTHORIZED")
				return reply(portmap.PCPNotAuthorized, 0, p)
			}
			delete(g.mappings, mkey{transport, m.External})
		}
		rec("unmap", sport, "ok")
		setExt(sport, g.external)
		return reply(portmap.PCPSuccess, 0, p)
	}
	if g.cfg.RefuseMappings {
		setExt(sport, g.external)
		rec("map", 0, "NO_RESOURCES")
		return reply(portmap.PCPNoResources, 30, p)
	}
	if g.failLocked() {
		rec("map", 0, "NO_RESOURCES")
		return reply(portmap.PCPNoResources, 30, p)
	}
	if m != nil && m.nonce != nonce {
		rec("map", m.External, "NOT_AUTHORIZED")
		return reply(portmap.PCPNotAuthorized, 0, p)
	}
	if m == nil {
		ext := g.freePortLocked(transport, sport, internal)
		m = &Mapping{Protocol: portmap.PCP, Transport: transport, Internal: internal, External: ext, nonce: nonce}
		g.mappings[mkey{transport, ext}] = m
	}
	m.Lifetime = g.grantLocked(life)
	m.Expires = time.Now().Add(m.Lifetime)
	setExt(m.External, g.external)
	life = m.Lifetime
	rec("map", m.External, "ok")
	return reply(portmap.PCPSuccess, uint32(m.Lifetime/time.Second), p)
}
