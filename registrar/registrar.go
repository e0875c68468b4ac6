// Package registrar handles REGISTER (RFC 3261 §10.3) for sipedge's
// domains: digest authentication, multiple contacts per AOR, expiry,
// refresh and removal, Min-Expires — and binds each registration to the
// flow it arrived on, so calls to the user go to the observed NAT address
// from the socket the phone registered to.
//
// It answers statelessly (like Kamailio's registrar with sl_send_reply): a
// UDP retransmission of a REGISTER is simply processed again, which is
// idempotent (same Call-ID and CSeq is recognised as a repeat).
package registrar

import (
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sipedge/sipedge/location"
	"github.com/sipedge/sipedge/sipnat"
	"github.com/sipedge/sipedge/sipx"
)

// AuthStatus mirrors the proxy's: what the authenticator found.
type AuthStatus int

// Outcomes of Auth.
const (
	AuthNone AuthStatus = iota
	AuthOK
	AuthStale
	AuthFailed
)

// Config wires the registrar.
type Config struct {
	Store  *location.Store
	Logger *slog.Logger
	// LocalDomain reports whether a host is ours; CanonicalDomain maps it
	// to the AOR domain.
	LocalDomain     func(host string) bool
	CanonicalDomain func(host string) string
	// Auth verifies the Authorization header; Challenge builds a 401.
	Auth      func(req *sipx.Request, f sipx.Flow) (AuthStatus, string)
	Challenge func(req *sipx.Request, stale bool) *sipx.Response
	// NATMode returns the user's NAT policy: auto|force|never.
	NATMode   func(user string) string
	LocalNets []netip.Prefix

	MinExpires, MaxExpires, DefaultExpires time.Duration
	MaxContacts                            int
	Now                                    func() time.Time
	// Bound, if set, is told of each binding a REGISTER created or
	// refreshed (keepalives start on its flow).
	Bound func(b location.Binding)
}

// Registrar handles REGISTER requests.
type Registrar struct {
	cfg Config
	log *slog.Logger
}

// New returns a Registrar.
func New(cfg Config) *Registrar {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxContacts == 0 {
		cfg.MaxContacts = 10
	}
	return &Registrar{cfg: cfg, log: cfg.Logger.With("component", "registrar")}
}

// errResponse carries a SIP error out of the update function.
type errResponse struct {
	code   int
	reason string
	hdrs   []sipx.Header
}

func (e *errResponse) Error() string { return strconv.Itoa(e.code) + " " + e.reason }

// Handle processes req (a REGISTER for one of our domains, arrived on f)
// and returns the response to send.
func (r *Registrar) Handle(req *sipx.Request, f sipx.Flow) *sipx.Response {
	if !r.cfg.LocalDomain(req.Recipient.Host) {
		return r.fail(req, &errResponse{code: 403, reason: "Forbidden", hdrs: warn("not our domain")})
	}
	to := req.To().Address
	if to.User == "" || !r.cfg.LocalDomain(to.Host) {
		return r.fail(req, &errResponse{code: 404, reason: "Not Found", hdrs: warn("To is not a local AOR")})
	}
	st, user := r.cfg.Auth(req, f)
	switch st {
	case AuthNone, AuthFailed:
		return r.cfg.Challenge(req, false)
	case AuthStale:
		return r.cfg.Challenge(req, true)
	}
	if !strings.EqualFold(user, to.User) {
		return r.fail(req, &errResponse{code: 403, reason: "Forbidden", hdrs: warn("authentication user does not match AOR")})
	}
	aor := to.User + "@" + r.cfg.CanonicalDomain(strings.ToLower(to.Host))
	bindings, err := r.update(req, f, aor, user)
	if err != nil {
		var er *errResponse
		if errors.As(err, &er) {
			return r.fail(req, er)
		}
		r.log.Error("register", "aor", aor, "error", err)
		return sipx.NewResponse(req, 500, "Server Internal Error")
	}
	res := sipx.NewResponse(req, 200, "OK")
	now := r.cfg.Now()
	if r.cfg.Bound != nil {
		for _, b := range bindings {
			if b.Flow == f && b.CallID == req.CallID().Value() {
				r.cfg.Bound(b)
			}
		}
	}
	for _, b := range bindings {
		c := &sipx.ContactHeader{Params: sipx.NewParams()}
		if err := sipx.ParseUri(b.ContactURI, &c.Address); err != nil {
			continue
		}
		c.Params.Add("expires", strconv.Itoa(int(b.Expires.Sub(now).Round(time.Second)/time.Second)))
		res.AppendHeader(c)
	}
	res.AppendHeader(sipx.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	return res
}

func warn(s string) []sipx.Header {
	return []sipx.Header{sipx.NewHeader("Warning", `399 sipedge "`+s+`"`)}
}

func (r *Registrar) fail(req *sipx.Request, e *errResponse) *sipx.Response {
	res := sipx.NewResponse(req, e.code, e.reason)
	for _, h := range e.hdrs {
		res.AppendHeader(h)
	}
	return res
}

// contactReq is one Contact of the request with its granted expiry.
type contactReq struct {
	raw      string
	uri      string
	host     string
	port     int
	expires  time.Duration
	q        float32
	instance string
	regID    int
}

func (r *Registrar) update(req *sipx.Request, f sipx.Flow, aor, user string) ([]location.Binding, error) {
	now := r.cfg.Now()
	hdrExp := time.Duration(-1)
	if v := sipx.HeaderValue(req, "Expires"); v != "" {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil {
			return nil, &errResponse{code: 400, reason: "Bad Request", hdrs: warn("bad Expires")}
		}
		hdrExp = time.Duration(n) * time.Second
	}
	cseq, _, _ := sipx.CSeqOf(req)
	callID := req.CallID().Value()
	ua := sipx.HeaderValue(req, "User-Agent")
	paths := sipx.HeaderValues(req, "Path")

	contacts := sipx.Contacts(req)
	raws := sipx.HeaderValues(req, "Contact")
	wildcard := false
	var cs []contactReq
	for i, c := range contacts {
		if c.Address.Wildcard {
			wildcard = true
			continue
		}
		cr := contactReq{uri: c.Address.String(), host: c.Address.Host, port: c.Address.Port}
		if i < len(raws) && len(raws) == len(contacts) {
			cr.raw = raws[i]
		} else {
			cr.raw = c.Value()
		}
		cr.expires = r.cfg.DefaultExpires
		if hdrExp >= 0 {
			cr.expires = hdrExp
		}
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return nil, &errResponse{code: 400, reason: "Bad Request", hdrs: warn("bad Contact expires")}
			}
			cr.expires = time.Duration(n) * time.Second
		}
		if cr.expires > 0 && cr.expires < r.cfg.MinExpires {
			return nil, &errResponse{code: 423, reason: "Interval Too Brief",
				hdrs: []sipx.Header{sipx.NewHeader("Min-Expires", strconv.Itoa(int(r.cfg.MinExpires/time.Second)))}}
		}
		if cr.expires > r.cfg.MaxExpires {
			cr.expires = r.cfg.MaxExpires
		}
		if v, ok := c.Params.Get("q"); ok {
			if q, err := strconv.ParseFloat(v, 32); err == nil && q >= 0 && q <= 1 {
				cr.q = float32(q)
			}
		}
		if v, ok := c.Params.Get("+sip.instance"); ok {
			cr.instance = strings.Trim(v, `"<>`)
		}
		if v, ok := c.Params.Get("reg-id"); ok {
			cr.regID, _ = strconv.Atoi(v)
		}
		cs = append(cs, cr)
	}
	if len(sipx.HeaderValues(req, "Contact")) > 0 && len(cs) == 0 && !wildcard {
		return nil, &errResponse{code: 400, reason: "Bad Request", hdrs: warn("unparsable Contact")}
	}
	if wildcard && (len(cs) > 0 || hdrExp != 0) {
		return nil, &errResponse{code: 400, reason: "Bad Request", hdrs: warn("Contact: * needs Expires: 0 and no other contact")}
	}

	// NAT detection on this request.
	in := sipnat.Input{Transport: f.Transport, Source: f.Remote, LocalNets: r.cfg.LocalNets, Mode: r.cfg.NATMode(user)}
	if v := req.Via(); v != nil {
		in.ViaHost, in.ViaPort = v.Host, v.Port
		_, in.ViaRport = v.Params.Get("rport")
	}
	for _, c := range cs {
		in.Contacts = append(in.Contacts, sipnat.HostPort{Host: c.host, Port: c.port})
	}
	det := sipnat.Detect(in)
	reasons := make([]string, len(det.Reasons))
	for i, x := range det.Reasons {
		reasons[i] = string(x)
	}
	if det.Exempt {
		// Make the exemption visible in the peers view.
		if in.Mode == sipnat.ModeNever {
			reasons = []string{"exempt: nat=never"}
		} else {
			reasons = []string{"exempt: local network"}
		}
	}

	return r.cfg.Store.Update(aor, func(cur []location.Binding) ([]location.Binding, error) {
		if wildcard {
			for _, b := range cur {
				if b.CallID == callID && cseq <= b.CSeq {
					return nil, &errResponse{code: 400, reason: "Bad Request", hdrs: warn("out-of-order CSeq")}
				}
			}
			return nil, nil
		}
		out := append([]location.Binding(nil), cur...)
		for _, c := range cs {
			idx := -1
			for i, b := range out {
				if sameBinding(b, c) {
					idx = i
					break
				}
			}
			// A NATed phone that re-registers with a new Contact under the
			// same Call-ID replaces its old binding instead of piling up
			// stale ones (registration churn behind NAT).
			// Only for a single-Contact request and a binding that existed
			// before it, so a REGISTER listing several contacts keeps them all.
			if idx < 0 && det.NAT && len(cs) == 1 {
				for i, b := range out {
					if i < len(cur) && b.CallID == callID && cseq > b.CSeq && b.NAT && b.Instance == c.instance {
						idx = i
						break
					}
				}
			}
			if idx >= 0 {
				b := out[idx]
				if b.CallID == callID && cseq < b.CSeq {
					return nil, &errResponse{code: 400, reason: "Bad Request", hdrs: warn("out-of-order CSeq")}
				}
				if c.expires == 0 {
					out = append(out[:idx], out[idx+1:]...)
					continue
				}
				b.Contact, b.ContactURI = c.raw, c.uri
				b.Flow, b.Expires, b.Updated = f, now.Add(c.expires), now
				b.CallID, b.CSeq, b.UserAgent = callID, cseq, ua
				b.NAT, b.NATReasons, b.Q = det.NAT, reasons, c.q
				b.Instance, b.RegID, b.Path = c.instance, c.regID, paths
				out[idx] = b
				continue
			}
			if c.expires == 0 {
				continue
			}
			out = append(out, location.Binding{
				AOR: aor, User: user, Contact: c.raw, ContactURI: c.uri, Flow: f,
				Expires: now.Add(c.expires), Registered: now, Updated: now,
				CallID: callID, CSeq: cseq, UserAgent: ua, NAT: det.NAT, NATReasons: reasons,
				Q: c.q, Instance: c.instance, RegID: c.regID, Path: paths,
			})
		}
		// Too many contacts: drop the least recently updated.
		for len(out) > r.cfg.MaxContacts {
			oldest := 0
			for i, b := range out {
				if b.Updated.Before(out[oldest].Updated) {
					oldest = i
				}
			}
			out = append(out[:oldest], out[oldest+1:]...)
		}
		return out, nil
	})
}

// sameBinding matches a request contact to a stored binding: by instance
// and reg-id (RFC 5626) when present, else by Contact URI.
func sameBinding(b location.Binding, c contactReq) bool {
	if c.instance != "" && b.Instance != "" {
		return b.Instance == c.instance && b.RegID == c.regID
	}
	return b.ContactURI == c.uri
}
