// Package proxy is sipedge's transaction-stateful proxy (RFC 3261 §16):
// routing to registered users' flows (forking to every contact, best
// response wins, CANCEL to all branches), to static routes, loose routing
// with a flow-carrying Record-Route so in-dialog requests reach NATed phones,
// Max-Forwards and loop detection, and the no-open-relay policy.
package proxy

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sipedge/sipedge/location"
	"github.com/sipedge/sipedge/sipx"
)

var (
	bgctx = context.Background()
)

// AuthStatus is the outcome of checking a request's credentials.
type AuthStatus int

// Outcomes.
const (
	AuthNone   AuthStatus = iota // no credentials
	AuthOK                       // verified; User set
	AuthStale                    // valid but stale nonce: re-challenge stale=true
	AuthFailed                   // wrong: counted towards a ban
)

// AuthResult is what the edge's authenticator says about a request.
type AuthResult struct {
	Status AuthStatus
	User   string
}

// Route is a compiled static route.
type Route struct {
	Name    string
	User    *regexp.Regexp // nil = any
	Domain  string         // "" = any
	To      sipx.Uri
	NAT     string
	Media   string // media policy for calls over this route
	TCP     bool
	Trusted bool
}

// Media is the seam where the RTP relay hooks in: every SDP body of a
// dialog passes through it (offer in requests, answer in responses). A nil
// Media leaves SDP untouched.
type Media interface {
	// Request may rewrite the SDP of a request forwarded from one side to
	// the other.
	Request(req *sipx.Request, from, to MediaLeg)
	// Response may rewrite the SDP of a response travelling back.
	Response(res *sipx.Response, from, to MediaLeg)
	// End is called when a call ends (BYE, CANCEL, failure).
	End(callID string)
}

// MediaLeg describes one side of a message's hop for the media layer.
type MediaLeg struct {
	Flow sipx.Flow
	NAT  bool // behind NAT
	// Policy is the side's media policy (always|nat|never) when the side
	// is a known user or route, "" for the default. Only initial requests
	// carry it; the media layer keeps its decision for the whole call.
	Policy string
}

// Config wires the proxy to the rest of the edge.
type Config struct {
	Stack  *sipx.Stack
	Logger *slog.Logger
	// Locate returns the bindings of an AOR ("user@domain").
	Locate func(aor string) []location.Binding
	// UserExists reports whether user is provisioned (404 vs 480).
	UserExists func(user string) bool
	// LocalDomain reports whether host is one of ours (a domain, or one of
	// our addresses).
	LocalDomain func(host string) bool
	// CanonicalDomain maps a local host to the AOR domain (IP → first
	// domain).
	CanonicalDomain func(host string) string
	// IsSelf reports whether host:port is this server (Route, loops).
	IsSelf func(host string, port int) bool
	// Advertise returns the host and port to put in Via/Record-Route for
	// a message sent on flow f. The answer may depend on f's peer (split
	// horizon: a LAN peer gets our LAN address, others the external one).
	Advertise func(f sipx.Flow) (string, int)
	// Auth checks Proxy-Authorization; Challenge builds a 407.
	Auth      func(req *sipx.Request, f sipx.Flow) AuthResult
	Challenge func(req *sipx.Request, stale bool) *sipx.Response
	// Trusted reports whether the source is a trusted trunk (no auth).
	Trusted func(src netip.Addr) (string, bool)
	// NATFor returns whether requests to a binding's flow need NAT
	// handling; bindings carry their own NAT flag, this adds policy.
	Routes []Route
	Media  Media
	// UserMedia returns a local user's media policy; nil means default.
	UserMedia func(user string) string
	// Secret keys the HMAC on our Record-Route and Via flow tokens.
	Secret []byte
	// DialogUp is called when an INVITE is answered with a 2xx, with the
	// flows of the dialog's NATed sides (to keep their bindings open);
	// DialogDown when a BYE ends it. Either may be nil.
	DialogUp   func(callID string, flows ...sipx.Flow)
	DialogDown func(callID string)
	// CallEnded, if set, is given the call's last snapshot when it ends,
	// before Media.End, so the media layer can still be asked about it.
	CallEnded     func(Call)
	InviteTimeout time.Duration
	MaxForwards   int
	UDPMaxSize    int
}

// Proxy is the stateful proxy.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	st     *sipx.Stack
	secret []byte
	dlg    dialogs

	Stats Stats
}

// Stats counters.
type Stats struct {
	mu        sync.Mutex
	Forwarded map[string]uint64 // by method
	Responses map[string]uint64 // by class "2xx"
	Denied    uint64
}

func (s *Stats) inc(m map[string]uint64, k string) {
	s.mu.Lock()
	m[k]++
	s.mu.Unlock()
}

// New returns a Proxy.
func New(cfg Config) *Proxy {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.InviteTimeout == 0 {
		cfg.InviteTimeout = 120 * time.Second
	}
	if cfg.MaxForwards == 0 {
		cfg.MaxForwards = 70
	}
	if cfg.UDPMaxSize == 0 {
		cfg.UDPMaxSize = 1300
	}
	if len(cfg.Secret) == 0 {
		cfg.Secret = make([]byte, 32)
		_, _ = rand.Read(cfg.Secret)
	}
	return &Proxy{cfg: cfg, log: cfg.Logger.With("component", "proxy"), st: cfg.Stack, secret: cfg.Secret,
		dlg:   dialogs{m: map[string]*dialog{}},
		Stats: Stats{Forwarded: map[string]uint64{}, Responses: map[string]uint64{}}}
}

// reply sends a stateless or stateful response with an optional reason
// header for operators.
func (p *Proxy) reply(req *sipx.Request, f sipx.Flow, tx *sipx.ServerTx, code int, reason, why string) {
	res := sipx.NewResponse(req, code, reason)
	if why != "" {
		res.AppendHeader(sipx.NewHeader("Warning", `399 sipedge "`+strings.ReplaceAll(why, `"`, `'`)+`"`))
	}
	p.Stats.inc(p.Stats.Responses, strconv.Itoa(code/100)+"xx")
	if tx != nil {
		_ = tx.Respond(res)
		return
	}
	_ = p.st.Respond(res, f)
}

// HandleRequest is the proxy stage of the pipeline for every request that
// is not a REGISTER for us.
// nat says whether the sender's flow is NATed (from the edge's detection).
func (p *Proxy) HandleRequest(req *sipx.Request, f sipx.Flow, nat bool) {
	// Max-Forwards (RFC 3261 §16.3 step 3).
	mf := req.MaxForwards()
	if mf != nil && *mf == 0 {
		if req.Method != sipx.ACK {
			p.reply(req, f, nil, 483, "Too Many Hops", "")
		}
		return
	}
	// Loop detection: one of the lower Vias is ours.
	if p.looped(req) {
		if req.Method != sipx.ACK {
			p.reply(req, f, nil, 482, "Loop Detected", "")
		}
		return
	}
	// Loose routing (§16.4): pop our own Route, remembering its params.
	// With a double Record-Route (transport change, RFC 5658) two of our
	// routes are on top: pop them all, keeping the first one's params.
	var rr *sipx.HeaderParams
	for {
		r := req.Route()
		if r == nil || !p.cfg.IsSelf(r.Address.Host, portOr(r.Address.Port, 5060)) {
			break
		}
		if rr == nil {
			params := r.Address.UriParams.Clone()
			rr = &params
		}
		req.RemoveHeader("Route")
	}
	if rr != nil && !p.routeSigned(*rr) {
		// A route to us we did not record (or a forged one): it proves
		// nothing, so the request is judged as if it had none.
		p.log.Debug("unsigned or forged route params ignored", "source", f.Remote)
		rr = nil
	}
	if req.Method == sipx.ACK {
		p.forwardACK(req, f, nat, rr)
		return
	}
	if req.Method == sipx.CANCEL {
		// A CANCEL that matched no transaction of ours (the stack handles
		// the others).
		p.reply(req, f, nil, 481, "Call/Transaction Does Not Exist", "")
		return
	}
	if sipx.InDialog(req) {
		p.callSeen(req)
		p.inDialog(req, f, nat, rr)
		return
	}
	p.initial(req, f, nat)
}

func (p *Proxy) looped(req *sipx.Request) bool {
	vias := req.GetHeaders("Via")
	for i, h := range vias {
		if i == 0 {
			continue
		}
		v, ok := h.(*sipx.ViaHeader)
		if !ok {
			continue
		}
		if b, _ := v.Params.Get("branch"); strings.HasPrefix(b, sipx.MagicCookie+"-se") && p.cfg.IsSelf(v.Host, portOr(v.Port, 5060)) {
			return true
		}
	}
	return false
}

// inDialog routes a mid-dialog request: to the flow recorded in our route
// for the other side when there is one, else by Route/Request-URI.
func (p *Proxy) inDialog(req *sipx.Request, f sipx.Flow, nat bool, rr *sipx.HeaderParams) {
	tx, ok := p.st.NewServerTx(req, f)
	if !ok {
		return
	}
	t, err := p.dialogTarget(req, f, rr)
	if err != nil {
		p.reply(req, f, tx, 404, "Not Found", err.Error())
		return
	}
	if rr == nil && !p.cfg.LocalDomain(req.Recipient.Host) {
		// Not routed through us and not for us: only for authenticated
		// users (no open relay).
		if !p.authorizedRelay(req, f, tx) {
			return
		}
	}
	p.forward(req, f, nat, "", tx, []target{t}, false)
}

// dialogTarget picks where an in-dialog request or ACK goes.
func (p *Proxy) dialogTarget(req *sipx.Request, f sipx.Flow, rr *sipx.HeaderParams) (target, error) {
	t := target{ruri: *req.Recipient.Clone()}
	if rr != nil {
		ftag, _ := rr.Get(paramFtag)
		fromTag, _ := req.From().Params.Get("tag")
		key := paramFA // towards the caller
		if fromTag == ftag {
			key = paramFB // from the caller: towards the callee
		}
		if fl, ok := flowParam(*rr, key); ok {
			t.flow, t.nat = fl, true
			t.name = "dialog-flow"
			if !p.st.ConnAlive(fl) {
				return t, errors.New("flow of the peer is gone")
			}
			return t, nil
		}
	}
	// Next hop: remaining Route, else the Request-URI.
	next := &req.Recipient
	if r := req.Route(); r != nil {
		next = &r.Address
	}
	fl, err := sipx.ResolveURI(bgctx, next, netip.AddrPort{})
	if err != nil {
		return t, err
	}
	if next == &req.Recipient && p.cfg.LocalDomain(next.Host) && next.User != "" {
		// Request-URI names a local user (e.g. a UA that ignores Record-Route):
		// use the registration's flow.
		if bs := p.cfg.Locate(p.aor(next)); len(bs) > 0 {
			fl = bs[0].Flow
			t.nat = bs[0].NAT
		}
	}
	t.flow = fl
	return t, nil
}

func (p *Proxy) aor(u *sipx.Uri) string {
	d := strings.ToLower(u.Host)
	if p.cfg.CanonicalDomain != nil {
		d = p.cfg.CanonicalDomain(d)
	}
	return u.User + "@" + d
}

// forwardACK forwards an ACK for a 2xx statelessly (it has no transaction).
func (p *Proxy) forwardACK(req *sipx.Request, f sipx.Flow, nat bool, rr *sipx.HeaderParams) {
	// An ACK cannot be challenged: without our signed route it is
	// forwarded only to a local user, never to an arbitrary address.
	if rr == nil && !p.cfg.LocalDomain(req.Recipient.Host) {
		p.log.Debug("ACK without our route to a foreign host dropped", "source", f.Remote)
		return
	}
	t, err := p.dialogTarget(req, f, rr)
	if err != nil {
		p.log.Debug("ACK dropped", "error", err, "call_id", req.CallID().Value())
		return
	}
	out := req.Clone()
	out.Recipient = t.ruri
	p.decMaxForwards(out)
	p.pushVia(out, t.flow, sipx.StatelessBranch(req), f)
	if p.cfg.Media != nil && len(out.Body()) > 0 {
		p.cfg.Media.Request(out, MediaLeg{Flow: f, NAT: nat}, MediaLeg{Flow: t.flow, NAT: t.nat})
	}
	p.Stats.inc(p.Stats.Forwarded, "ACK")
	if err := p.st.Send(out, t.flow); err != nil {
		p.log.Debug("ACK send", "error", err)
	}
}

// authorizedRelay enforces "no open relay": the request must come from an
// authenticated local user or a trusted trunk. It answers the request (407
// or 403) and returns false otherwise.
func (p *Proxy) authorizedRelay(req *sipx.Request, f sipx.Flow, tx *sipx.ServerTx) bool {
	if p.cfg.Trusted != nil {
		if _, ok := p.cfg.Trusted(f.Remote.Addr()); ok {
			return true
		}
	}
	ar := p.cfg.Auth(req, f)
	switch ar.Status {
	case AuthOK:
		consumeCredentials(req)
		return true
	case AuthStale:
		_ = tx.Respond(p.cfg.Challenge(req, true))
		return false
	case AuthFailed:
		p.Stats.mu.Lock()
		p.Stats.Denied++
		p.Stats.mu.Unlock()
		_ = tx.Respond(p.cfg.Challenge(req, false))
		return false
	}
	// No credentials: a local user gets challenged; a stranger is refused.
	if p.cfg.LocalDomain(req.From().Address.Host) {
		_ = tx.Respond(p.cfg.Challenge(req, false))
		return false
	}
	p.Stats.mu.Lock()
	p.Stats.Denied++
	p.Stats.mu.Unlock()
	p.reply(req, f, tx, 403, "Relaying Denied", "not a local user or domain")
	return false
}

// initial routes a dialog-creating or out-of-dialog request.
func (p *Proxy) initial(req *sipx.Request, f sipx.Flow, nat bool) {
	tx, ok := p.st.NewServerTx(req, f)
	if !ok {
		return
	}
	if req.Method == sipx.INVITE {
		_ = tx.Respond(sipx.NewResponse(req, 100, "Trying"))
	}
	ruri := &req.Recipient
	if ruri.User == "" && p.cfg.LocalDomain(ruri.Host) && req.Route() == nil {
		// Addressed to this server itself: OPTIONS is a keepalive or
		// health check and is answered without a challenge.
		if req.Method == sipx.OPTIONS {
			res := sipx.NewResponse(req, 200, "OK")
			res.AppendHeader(sipx.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, PRACK, SUBSCRIBE, NOTIFY, REFER, MESSAGE"))
			res.AppendHeader(sipx.NewHeader("Accept", "application/sdp"))
			_ = tx.Respond(res)
			return
		}
		p.reply(req, f, tx, 405, "Method Not Allowed", "")
		return
	}
	from := req.From().Address
	fromLocal := p.cfg.LocalDomain(from.Host)
	trusted := false
	upPolicy := ""
	if p.cfg.Trusted != nil {
		var trunk string
		trunk, trusted = p.cfg.Trusted(f.Remote.Addr())
		upPolicy = p.routeMedia(trunk)
	}
	// A request claiming to be from one of our users must prove it, so
	// nobody can call as alice from outside (Kamailio's from_uri==myself).
	if fromLocal && !trusted && p.cfg.UserExists(from.User) {
		ar := p.cfg.Auth(req, f)
		switch ar.Status {
		case AuthOK:
			if !strings.EqualFold(ar.User, from.User) {
				p.reply(req, f, tx, 403, "Forbidden", "authentication user does not match From")
				return
			}
			consumeCredentials(req)
			upPolicy = p.userMedia(from.User)
		case AuthStale:
			_ = tx.Respond(p.cfg.Challenge(req, true))
			return
		default:
			_ = tx.Respond(p.cfg.Challenge(req, false))
			return
		}
		trusted = true
	}

	if p.cfg.LocalDomain(ruri.Host) && ruri.User != "" {
		if req.Route() == nil {
			targets := p.localTargets(req)
			if len(targets) > 0 {
				p.forward(req, f, nat, upPolicy, tx, targets, true)
				return
			}
			if t, ok := p.staticRoute(ruri); ok {
				p.forward(req, f, nat, upPolicy, tx, []target{t}, true)
				return
			}
			if p.cfg.UserExists(ruri.User) {
				p.reply(req, f, tx, 480, "Temporarily Unavailable", "user not registered")
			} else {
				p.reply(req, f, tx, 404, "Not Found", "no such user")
			}
			return
		}
	}
	// Outside destination: only for local users / trunks.
	if !trusted && !p.authorizedRelay(req, f, tx) {
		return
	}
	if t, ok := p.staticRoute(ruri); ok && req.Route() == nil {
		p.forward(req, f, nat, upPolicy, tx, []target{t}, true)
		return
	}
	next := ruri
	if r := req.Route(); r != nil {
		next = &r.Address
	}
	fl, err := sipx.ResolveURI(bgctx, next, netip.AddrPort{})
	if err != nil {
		p.reply(req, f, tx, 404, "Not Found", "cannot resolve "+next.Host)
		return
	}
	p.forward(req, f, nat, upPolicy, tx, []target{{ruri: *ruri.Clone(), flow: fl, name: next.Host}}, true)
}

// localTargets returns a branch per registered contact of the R-URI user.
func (p *Proxy) localTargets(req *sipx.Request) []target {
	bs := p.cfg.Locate(p.aor(&req.Recipient))
	out := make([]target, 0, len(bs))
	for _, b := range bs {
		var u sipx.Uri
		if err := sipx.ParseUri(b.ContactURI, &u); err != nil {
			continue
		}
		if !p.st.ConnAlive(b.Flow) {
			continue
		}
		out = append(out, target{ruri: u, flow: b.Flow, nat: b.NAT, name: b.AOR, media: p.userMedia(b.User)})
	}
	return out
}

func (p *Proxy) staticRoute(u *sipx.Uri) (target, bool) {
	for _, r := range p.cfg.Routes {
		if r.Domain != "" && !strings.EqualFold(r.Domain, u.Host) {
			continue
		}
		if r.User != nil && !r.User.MatchString(u.User) {
			continue
		}
		fl, err := sipx.ResolveURI(bgctx, &r.To, netip.AddrPort{})
		if err != nil {
			continue
		}
		ruri := *u.Clone()
		ruri.Host, ruri.Port = r.To.Host, r.To.Port
		return target{ruri: ruri, flow: fl, nat: r.NAT == "force", tcp: r.TCP, name: r.Name, media: r.Media}, true
	}
	return target{}, false
}

func (p *Proxy) userMedia(user string) string {
	if p.cfg.UserMedia == nil {
		return ""
	}
	return p.cfg.UserMedia(user)
}

func (p *Proxy) routeMedia(name string) string {
	for _, r := range p.cfg.Routes {
		if r.Name == name {
			return r.Media
		}
	}
	return ""
}

func (p *Proxy) decMaxForwards(r *sipx.Request) {
	if mf := r.MaxForwards(); mf != nil {
		mf.Dec()
		return
	}
	m := sipx.MaxForwards(p.cfg.MaxForwards)
	r.AppendHeader(&m)
}

// pushVia adds our Via for sending on flow to, remembering the upstream
// flow in a parameter.
func (p *Proxy) pushVia(r *sipx.Request, to sipx.Flow, branch string, up sipx.Flow) {
	host, port := p.cfg.Advertise(to)
	v := &sipx.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: strings.ToUpper(to.Transport),
		Host: host, Port: port, Params: sipx.NewParams()}
	v.Params.Add("branch", branch)
	v.Params.Add("rport", "")
	v.Params.Add(paramUp, p.viaToken(up))
	r.PrependHeader(v)
}

// consumeCredentials removes the Proxy-Authorization we verified: the
// credentials are for our realm and must not travel downstream.
func consumeCredentials(r *sipx.Request) { sipx.RemoveHeaders(r, "Proxy-Authorization") }

// recordRoute inserts our Record-Route carrying both sides' flows. When the
// request changes transport, or each side knows us by another address
// (split horizon: a LAN phone and one on the internet), two entries are
// added (RFC 5658), one for each side, so each side reaches us over its
// own transport at an address it can reach.
func (p *Proxy) recordRoute(r *sipx.Request, up sipx.Flow, upNAT bool, down target) {
	ftag, _ := r.From().Params.Get("tag")
	mk := func(f sipx.Flow) *sipx.RecordRoute {
		host, port := p.cfg.Advertise(f)
		u := sipx.Uri{Scheme: "sip", Host: host, Port: port, UriParams: sipx.NewParams()}
		if f.Transport == sipx.TCP {
			u.UriParams.Add("transport", "tcp")
		}
		u.UriParams.Add("lr", "")
		u.UriParams.Add(paramFtag, ftag)
		if upNAT {
			u.UriParams.Add(paramFA, up.Token())
		}
		if down.nat {
			u.UriParams.Add(paramFB, down.flow.Token())
		}
		p.signRoute(&u)
		return &sipx.RecordRoute{Address: u}
	}
	upRR, downRR := mk(up), mk(down.flow)
	if up.Transport != down.flow.Transport || upRR.Address.Host != downRR.Address.Host || upRR.Address.Port != downRR.Address.Port {
		r.PrependHeader(upRR)
	}
	r.PrependHeader(downRR)
}

func dialogCreating(m sipx.RequestMethod) bool {
	switch m {
	case sipx.INVITE, sipx.SUBSCRIBE, sipx.REFER, sipx.NOTIFY:
		return true
	}
	return false
}
