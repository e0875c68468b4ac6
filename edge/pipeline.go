package edge

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/sipedge/sipedge/auth"
	"github.com/sipedge/sipedge/proxy"
	"github.com/sipedge/sipedge/registrar"
	"github.com/sipedge/sipedge/sipnat"
	"github.com/sipedge/sipedge/sipx"
)

// The fixed processing order of a SIP message. Each stage may assume the
// ones above it ran:
//
//	socket            sipx: read, demux (SIP | STUN | CRLF keepalive)
//	flood guard       sipx Config.Allow → auth.Guard: per-source rate, bans
//	parse + sanity    sipx: parse, required headers, CSeq method, 400
//	received/rport    sipx.StampReceived: always, with the observed source
//	transactions      sipx: retransmissions absorbed, CANCEL matched
//	scanner drop      Request below: known scanner User-Agents get nothing
//	NAT detect        Request below: sipnat.Detect on Via/Contact vs source
//	registrar         REGISTER for our domains (digest auth, flow binding)
//	proxy             everything else: policy (no open relay), location
//	                  lookup, Record-Route with flows, forking, media seam
//	send              sipx: from the socket of the target's flow
//
// Errors become SIP responses in the stage that owns them; nothing below
// the socket logs raw messages above debug level.

// Request implements sipx.Handler.
func (e *Edge) Request(req *sipx.Request, f sipx.Flow) {
	if ua := sipx.HeaderValue(req, "User-Agent"); ua != "" && e.guard.IsScanner(ua) {
		e.metrics.scannerDrops.Add(1)
		return
	}
	e.metrics.countRequest(string(req.Method))
	if req.Method == sipx.REGISTER && e.localDomain(req.Recipient.Host) {
		res := e.reg.Handle(req, f)
		if res.StatusCode != 401 { // challenges are counted where built
			e.metrics.countResponse(res.StatusCode)
		}
		_ = e.stack.Respond(res, f)
		return
	}
	e.proxy.HandleRequest(req, f, e.detectNAT(req, f).NAT)
}

// Response implements sipx.Handler: answers to our keepalive pings, then
// responses the proxy forwards statelessly.
func (e *Edge) Response(res *sipx.Response, f sipx.Flow) {
	if e.ka.Response(res, f) {
		return
	}
	e.proxy.HandleStrayResponse(res)
}

// Cancel implements sipx.Handler.
func (e *Edge) Cancel(tx *sipx.ServerTx, _ *sipx.Request) { e.proxy.HandleCancel(tx) }

// detectNAT runs NAT detection on a request's Via and Contacts against the
// observed flow, with the sender's policy when it is a known user.
func (e *Edge) detectNAT(req *sipx.Request, f sipx.Flow) sipnat.Result {
	in := sipnat.Input{Transport: f.Transport, Source: f.Remote, LocalNets: e.localNets, Mode: e.cfg.NAT.Mode}
	if from := req.From(); from != nil && e.localDomain(from.Address.Host) {
		in.Mode = e.natMode(from.Address.User)
	}
	if v := req.Via(); v != nil {
		in.ViaHost, in.ViaPort = v.Host, v.Port
		_, in.ViaRport = v.Params.Get("rport")
	}
	for _, c := range sipx.Contacts(req) {
		in.Contacts = append(in.Contacts, sipnat.HostPort{Host: c.Address.Host, Port: c.Address.Port})
	}
	return sipnat.Detect(in)
}

// natMode is a user's NAT policy: the user's own, else the global one.
func (e *Edge) natMode(user string) string {
	if u, ok := e.users.Get(user); ok && u.NAT != "" {
		return u.NAT
	}
	return e.cfg.NAT.Mode
}

// verify checks the digest credentials in header hdr of req.
func (e *Edge) verify(req *sipx.Request, f sipx.Flow, hdr string) (proxy.AuthStatus, string) {
	v := sipx.HeaderValue(req, hdr)
	if v == "" {
		return proxy.AuthNone, ""
	}
	user, err := e.digest.Verify(string(req.Method), v, e.creds)
	switch {
	case err == nil:
		e.guard.AuthOK(f.Remote.Addr())
		e.metrics.authOK.Add(1)
		return proxy.AuthOK, user
	case errors.Is(err, auth.ErrStale):
		return proxy.AuthStale, user
	case errors.Is(err, auth.ErrNoCredentials):
		return proxy.AuthNone, ""
	}
	e.metrics.authFailed.Add(1)
	// Only guesses count towards a ban: a wrong password, an unknown user
	// or a forged nonce. A malformed header or an algorithm we did not
	// offer is a broken client, re-challenged but not banned.
	guess := errors.Is(err, auth.ErrBadResponse) || errors.Is(err, auth.ErrUnknownUser) || errors.Is(err, auth.ErrBadNonce)
	if !guess {
		e.log.Info("authentication rejected", "source", f.Remote, "user", user, "reason", err)
		return proxy.AuthFailed, user
	}
	if e.guard.AuthFailed(f.Remote.Addr()) {
		e.log.Warn("source banned after failed authentications", "source", f.Remote.Addr(), "user", user)
	} else {
		e.log.Info("authentication failed", "source", f.Remote, "user", user, "reason", err)
	}
	return proxy.AuthFailed, user
}

// challenge builds a 401 (REGISTER) or 407 with one challenge per
// algorithm (RFC 8760).
func (e *Edge) challenge(req *sipx.Request, stale bool, code int) *sipx.Response {
	reason, hdr := "Unauthorized", "WWW-Authenticate"
	if code == 407 {
		reason, hdr = "Proxy Authentication Required", "Proxy-Authenticate"
	}
	res := sipx.NewResponse(req, code, reason)
	// A known user is offered only the algorithms we hold an HA1 for
	// (a config user given only ha1_md5 cannot answer SHA-256).
	chs := e.digest.Challenges(stale)
	name := req.From().Address.User
	if req.Method == sipx.REGISTER {
		name = req.To().Address.User
	}
	if c, ok := e.creds(name); ok {
		chs = e.digest.ChallengesFor(stale, c)
	}
	for _, c := range chs {
		res.AppendHeader(sipx.NewHeader(hdr, c))
	}
	e.metrics.countResponse(code)
	return res
}

func (e *Edge) regAuth(req *sipx.Request, f sipx.Flow) (registrar.AuthStatus, string) {
	st, u := e.verify(req, f, "Authorization")
	return registrar.AuthStatus(st), u
}

func (e *Edge) proxyAuth(req *sipx.Request, f sipx.Flow) proxy.AuthResult {
	st, u := e.verify(req, f, "Proxy-Authorization")
	return proxy.AuthResult{Status: st, User: u}
}

// localDomain reports whether host is one of our domains or addresses.
func (e *Edge) localDomain(host string) bool {
	h := strings.ToLower(strings.Trim(host, "[]"))
	if _, ok := e.domains[h]; ok {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && e.isExternal(ip)
}

// canonicalDomain maps any local host (a domain or one of our IPs) to the
// AOR domain: a domain stays, an IP becomes the first domain.
func (e *Edge) canonicalDomain(host string) string {
	h := strings.ToLower(strings.Trim(host, "[]"))
	if _, err := netip.ParseAddr(h); err == nil {
		return e.cfg.Domains[0]
	}
	return h
}

// isSelf reports whether host:port is one of our listeners.
func (e *Edge) isSelf(host string, port int) bool {
	h := strings.ToLower(strings.Trim(host, "[]"))
	for _, l := range e.listeners {
		if l.port != port {
			continue
		}
		if h == l.advHost || h == l.local.Addr().String() {
			return true
		}
		if l.local.Addr().IsUnspecified() {
			if _, ok := e.domains[h]; ok {
				return true
			}
		}
		if ip, err := netip.ParseAddr(h); err == nil && !l.explicit && e.isExternal(ip) {
			return true
		}
	}
	return false
}

// Advertise returns the host and port to put in Via/Record-Route (and
// SDP) for a message sent on flow f: the listener's configured advertise
// address if any; else, when sipedge has an external address and f's peer
// is not local, the external address (split horizon); else the
// listener's own address.
func (e *Edge) Advertise(f sipx.Flow) (string, int) {
	l := e.listenerFor(f.Transport, f.Local)
	if l == nil {
		return "127.0.0.1", 5060
	}
	if !l.explicit {
		if ip, ok := e.externalFor(f.Remote.Addr()); ok {
			return ip.String(), l.advPort
		}
	}
	return l.advHost, l.advPort
}

// listenerFor finds the listener of socket local on transport, else the
// first of that transport, else the first at all.
func (e *Edge) listenerFor(transport string, local netip.AddrPort) *listener {
	var first *listener
	for i := range e.listeners {
		l := &e.listeners[i]
		if l.transport != transport {
			continue
		}
		if first == nil {
			first = l
		}
		if l.local == local {
			return l
		}
	}
	if first == nil && len(e.listeners) > 0 {
		first = &e.listeners[0]
	}
	return first
}

// trusted reports whether src is a trusted trunk's address.
func (e *Edge) trusted(src netip.Addr) (string, bool) {
	for _, t := range e.trustedTrunks {
		if t.addr == src {
			return t.name, true
		}
	}
	return "", false
}
