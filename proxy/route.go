package proxy

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sipedge/sipedge/sipx"
)

// Record-Route parameters (in our route URI, echoed back in Route):
//
//	ftag  From tag of the dialog-creating request: tells which side sent an
//	      in-dialog request (Kamailio's rr direction trick).
//	fa    flow token of the caller side (the side whose From tag is ftag).
//	fb    flow token of the callee side.
//
// A side's token is present only when requests to it must go to its
// observed flow (it is NATed or registered by flow); otherwise routing uses
// the Request-URI / remaining Route set as usual.
const (
	paramFtag = "ftag"
	paramFA   = "fa"
	paramFB   = "fb"
	// paramUp in our Via holds the upstream flow token, so responses that
	// outlive their transaction (2xx retransmissions) still go back on the
	// right flow.
	paramUp = "se-up"
)

// target is where a request goes next: a URI (the Request-URI to put) and
// the flow to send it on.
type target struct {
	ruri sipx.Uri
	flow sipx.Flow
	nat  bool   // the flow is a NATed peer: never dial, never TCP-fallback
	tcp  bool   // TCP fallback allowed for large messages
	name string // for logs: aor or route name
}

// resolveURI turns a SIP URI host/port/transport into a flow to dial/send.
// Hostnames are resolved with the system resolver (A/AAAA; no SRV yet).
func resolveURI(u *sipx.Uri, local netip.AddrPort) (sipx.Flow, error) {
	tr := sipx.UDP
	if t, ok := u.UriParams.Get("transport"); ok && strings.EqualFold(t, "tcp") {
		tr = sipx.TCP
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	host := strings.Trim(u.Host, "[]")
	if m, ok := u.UriParams.Get("maddr"); ok && m != "" {
		host = m
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, err := net.DefaultResolver.LookupNetIP(bgctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return sipx.Flow{}, errNoDNS
		}
		ip = ips[0]
	}
	return sipx.Flow{Transport: tr, Local: local, Remote: netip.AddrPortFrom(ip.Unmap(), uint16(port))}, nil
}

// flowParam parses a flow token param, "" or invalid → false.
func flowParam(p sipx.HeaderParams, key string) (sipx.Flow, bool) {
	v, ok := p.Get(key)
	if !ok || v == "" {
		return sipx.Flow{}, false
	}
	f, err := sipx.ParseToken(v)
	if err != nil {
		return sipx.Flow{}, false
	}
	return f, true
}

func portOr(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}
