package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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
	// paramSig is an HMAC over the route's ftag/fa/fb: a request cannot
	// steer us to an arbitrary address with a forged route or token (that
	// would make us an open relay). The Via token carries its own "~sig".
	paramSig = "sig"
)

// mac returns a truncated HMAC-SHA256 of parts under the proxy's secret.
func (p *Proxy) mac(parts ...string) string {
	h := hmac.New(sha256.New, p.secret)
	for _, x := range parts {
		h.Write([]byte(x))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// signRoute adds the sig param over the route's flow params.
func (p *Proxy) signRoute(u *sipx.Uri) {
	ftag, _ := u.UriParams.Get(paramFtag)
	fa, _ := u.UriParams.Get(paramFA)
	fb, _ := u.UriParams.Get(paramFB)
	u.UriParams.Add(paramSig, p.mac("rr", ftag, fa, fb))
}

// routeSigned reports whether popped route params carry a valid sig.
func (p *Proxy) routeSigned(rr sipx.HeaderParams) bool {
	sig, ok := rr.Get(paramSig)
	if !ok {
		return false
	}
	ftag, _ := rr.Get(paramFtag)
	fa, _ := rr.Get(paramFA)
	fb, _ := rr.Get(paramFB)
	want := p.mac("rr", ftag, fa, fb)
	return hmac.Equal([]byte(sig), []byte(want))
}

// viaToken returns the signed upstream flow token for our Via.
func (p *Proxy) viaToken(f sipx.Flow) string {
	t := f.Token()
	return t + "~" + p.mac("via", t)
}

// viaFlow verifies and parses a signed Via token.
func (p *Proxy) viaFlow(v string) (sipx.Flow, bool) {
	i := strings.LastIndexByte(v, '~')
	if i < 0 {
		return sipx.Flow{}, false
	}
	t, sig := v[:i], v[i+1:]
	if !hmac.Equal([]byte(sig), []byte(p.mac("via", t))) {
		return sipx.Flow{}, false
	}
	f, err := sipx.ParseToken(t)
	return f, err == nil
}

// target is where a request goes next: a URI (the Request-URI to put) and
// the flow to send it on.
type target struct {
	ruri  sipx.Uri
	flow  sipx.Flow
	nat   bool   // the flow is a NATed peer: never dial, never TCP-fallback
	tcp   bool   // TCP fallback allowed for large messages
	name  string // for logs: aor or route name
	media string // media policy of the user or route
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
