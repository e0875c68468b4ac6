package uatest

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Call is one INVITE dialog seen from the phone: as caller (UAC, from
// Invite) or callee (UAS, from WaitInvite).
type Call struct {
	p        *Phone
	UAC      bool
	CallID   string
	LocalTag string

	user, password string
	noAuth         bool

	mu           sync.Mutex
	remoteTag    string
	localURI     string // From (UAC) or To (UAS) value without tag
	remoteURI    string
	remoteTarget string
	routeSet     []string
	localCSeq    int
	invite       *Msg // the current INVITE: as sent (UAC) or received (UAS)
	inviteTx     *Transaction
	challenge    *Msg
	skip         map[*Msg]bool
	established  bool
	ackRaw       []byte
	ackDst       netip.AddrPort
	okRaw        []byte
	okDst        netip.AddrPort
	okTimer      *time.Timer
	okInterval   time.Duration
	okStart      time.Time
	acked        bool

	resps     queue[*Msg] // UAC: responses to our INVITE(s)
	reqs      queue[*Msg] // requests in the dialog, CANCEL, ACK for non-2xx
	acks      queue[*Msg] // UAS: ACK for our 2xx
	cancelled atomic.Bool
}

// InviteOpts tunes Invite.
type InviteOpts struct {
	// SDP is the offer; "" uses the phone's SDP, "-" sends no body.
	SDP string
	// Headers are added to the INVITE.
	Headers []Header
	// NoAuth returns 401/407 to the test instead of answering them.
	NoAuth bool
	// User and Password override the phone's credentials.
	User, Password string
	// From overrides the From URI (e.g. "sip:mallory@evil.example").
	From string
}

// Invite starts a call to to ("bob@test.example" or a SIP URI) through the
// server. It returns once the INVITE is sent; a 401/407 is answered with
// credentials automatically (once). Wait for responses on the Call.
func (p *Phone) Invite(to string, o InviteOpts) (*Call, error) {
	if !strings.HasPrefix(to, "sip:") && !strings.HasPrefix(to, "sips:") {
		to = "sip:" + to
	}
	m := p.NewRequest("INVITE", to)
	if o.From != "" {
		m.Set("From", "<"+o.From+">;tag="+NewTag())
	}
	m.Headers = append(m.Headers, o.Headers...)
	switch o.SDP {
	case "":
		m.Body = []byte(p.SDP())
	case "-":
	default:
		m.Body = []byte(o.SDP)
	}
	if len(m.Body) > 0 {
		m.Set("Content-Type", "application/sdp")
	}
	c := &Call{p: p, UAC: true, CallID: m.CallID(), LocalTag: m.Tag("From"), invite: m, localCSeq: 1,
		user: o.User, password: o.Password, noAuth: o.NoAuth, skip: map[*Msg]bool{}}
	if c.user == "" {
		c.user = p.cfg.User
	}
	if c.password == "" {
		c.password = p.cfg.Password
	}
	c.localURI = stripTag(m.Get("From"))
	c.remoteURI = stripTag(m.Get("To"))
	p.mu.Lock()
	p.dialogs[c.CallID+"|"+c.LocalTag] = c
	p.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	tx, err := p.startTx(m, p.cfg.Server, c)
	c.inviteTx = tx
	return c, err
}

func stripTag(v string) string {
	na, err := ParseNameAddr(v)
	if err != nil {
		return v
	}
	var ps Params
	for _, x := range na.Params {
		if !strings.EqualFold(x.Name, "tag") {
			ps = append(ps, x)
		}
	}
	na.Params = ps
	return na.String()
}

// gotResponse runs in the phone's reader for every new response to one of
// the call's INVITEs.
func (c *Call) gotResponse(tx *Transaction, m *Msg) {
	c.mu.Lock()
	if (m.Code == 401 || m.Code == 407) && tx == c.inviteTx && c.challenge == nil && !c.noAuth && c.password != "" {
		c.challenge = m
		c.skip[m] = true
		hdr, authz := "Proxy-Authenticate", "Proxy-Authorization"
		if m.Code == 401 {
			hdr, authz = "WWW-Authenticate", "Authorization"
		}
		ch, err := PickChallenge(m.Values(hdr), c.p.cfg.Algorithm)
		if err == nil {
			inv := cloneMsg(c.invite)
			via, _ := c.p.newVia()
			inv.Set("Via", via)
			c.localCSeq++
			inv.Set("CSeq", strconv.Itoa(c.localCSeq)+" INVITE")
			inv.Add(authz, Authorization(ch, c.user, c.password, "INVITE", inv.URI))
			c.invite = inv
			ntx, _ := c.p.startTx(inv, c.p.cfg.Server, c)
			c.inviteTx = ntx
		}
	}
	c.mu.Unlock()
	c.resps.push(m)
}

// got2xx establishes the dialog from the first 2xx and re-sends the ACK
// for retransmitted ones.
func (c *Call) got2xx(tx *Transaction, m *Msg) {
	c.mu.Lock()
	if !c.established {
		c.established = true
		c.remoteTag = m.Tag("To")
		if na, err := ParseNameAddr(m.Get("Contact")); err == nil {
			c.remoteTarget = na.URI.String()
		}
		rr := m.Values("Record-Route")
		c.routeSet = nil
		for i := len(rr) - 1; i >= 0; i-- {
			c.routeSet = append(c.routeSet, rr[i])
		}
	}
	ack, dst := c.ackRaw, c.ackDst
	c.mu.Unlock()
	if ack != nil {
		_ = c.p.write(ack, dst)
	}
}

func cloneMsg(m *Msg) *Msg {
	n := *m
	n.Headers = append([]Header(nil), m.Headers...)
	n.Raw = nil
	return &n
}

// Invite returns the current INVITE (as sent by the caller, or as received
// by the callee).
func (c *Call) Invite() *Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.invite
}

// Challenge returns the 401/407 that was answered automatically, if any.
func (c *Call) Challenge() *Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.challenge
}

// RouteSet returns the dialog's route set, in the order Route headers are
// written.
func (c *Call) RouteSet() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.routeSet...)
}

// RemoteTarget returns the remote Contact URI.
func (c *Call) RemoteTarget() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remoteTarget
}

// Responses returns every response to the call's INVITEs so far.
func (c *Call) Responses() []*Msg { return c.resps.all() }

// WaitResponse waits for the next response (not an automatically answered
// challenge) for which match is true.
func (c *Call) WaitResponse(timeout time.Duration, match func(*Msg) bool) (*Msg, error) {
	m, ok := c.resps.wait(c.p.closed, c.p.timeout(timeout), func(m *Msg) bool {
		c.mu.Lock()
		skip := c.skip[m]
		c.mu.Unlock()
		return !skip && (match == nil || match(m))
	})
	if !ok {
		return nil, fmt.Errorf("%w: call %s on %s got no matching response in %s (got %s)", ErrTimeout, c.CallID, c.p.name, c.p.timeout(timeout), summaries(c.resps.all()))
	}
	return m, nil
}

// WaitCode waits for a response with the given status code.
func (c *Call) WaitCode(code int, timeout time.Duration) (*Msg, error) {
	return c.WaitResponse(timeout, func(m *Msg) bool { return m.Code == code })
}

// WaitFinal waits for the final response (challenges answered
// automatically are skipped).
func (c *Call) WaitFinal(timeout time.Duration) (*Msg, error) {
	return c.WaitResponse(timeout, func(m *Msg) bool { return m.Code >= 200 })
}

// target computes the Request-URI, the Route values and the destination
// of an in-dialog request (RFC 3261 §12.2.1.1).
func (c *Call) target() (string, []string, netip.AddrPort) {
	ruri := c.remoteTarget
	var routes []string
	if len(c.routeSet) > 0 {
		first, err := ParseNameAddr(c.routeSet[0])
		if err == nil && !first.URI.Params.Has("lr") {
			// Strict router: its URI becomes the Request-URI.
			ruri = first.URI.String()
			routes = append(routes, c.routeSet[1:]...)
			routes = append(routes, "<"+c.remoteTarget+">")
		} else {
			routes = append(routes, c.routeSet...)
		}
	}
	dst := c.p.cfg.Server
	next := ruri
	if len(routes) > 0 {
		if na, err := ParseNameAddr(routes[0]); err == nil {
			next = na.URI.String()
		}
	}
	if u, err := ParseURI(next); err == nil {
		if a, ok := u.AddrPort(); ok {
			dst = a
		}
	}
	return ruri, routes, dst
}

// Dest returns where the phone sends in-dialog requests (the first Route,
// else the remote target).
func (c *Call) Dest() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _, d := c.target()
	return d
}

// NewRequest builds an in-dialog request (CSeq incremented, except for
// ACK, which takes the INVITE's).
func (c *Call) NewRequest(method string) (*Msg, netip.AddrPort, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remoteTag == "" {
		return nil, netip.AddrPort{}, errors.New("uatest: no dialog yet (no 2xx / no answer)")
	}
	ruri, routes, dst := c.target()
	m := &Msg{Method: method, URI: ruri}
	via, _ := c.p.newVia()
	m.Add("Via", via)
	for _, r := range routes {
		m.Add("Route", r)
	}
	m.Add("Max-Forwards", "70")
	m.Add("From", c.localURI+";tag="+c.LocalTag)
	m.Add("To", c.remoteURI+";tag="+c.remoteTag)
	m.Add("Call-ID", c.CallID)
	if method == "ACK" {
		n, _ := c.invite.CSeq()
		m.Add("CSeq", strconv.Itoa(n)+" ACK")
	} else {
		c.localCSeq++
		m.Add("CSeq", strconv.Itoa(c.localCSeq)+" "+method)
	}
	m.Add("User-Agent", c.p.cfg.UserAgent)
	return m, dst, nil
}

// Ack sends the ACK for the 2xx (caller side): Request-URI = the callee's
// Contact, Route = the Record-Route set reversed, sent to the first Route.
// A retransmitted 2xx is ACKed again automatically afterwards.
func (c *Call) Ack() error {
	m, dst, err := c.NewRequest("ACK")
	if err != nil {
		return err
	}
	raw := m.Bytes()
	c.mu.Lock()
	c.ackRaw, c.ackDst = raw, dst
	c.mu.Unlock()
	return c.p.write(raw, dst)
}

// Send sends an in-dialog request built by NewRequest.
func (c *Call) Send(m *Msg, dst netip.AddrPort) (*Transaction, error) {
	return c.p.startTx(m, dst, nil)
}

// Bye sends BYE in the dialog and returns its final response.
func (c *Call) Bye() (*Msg, error) {
	m, dst, err := c.NewRequest("BYE")
	if err != nil {
		return nil, err
	}
	tx, err := c.Send(m, dst)
	if err != nil {
		return nil, err
	}
	return tx.WaitFinal(0)
}

// Cancel cancels the pending INVITE (same Request-URI, top Via, Route,
// Call-ID, From, To and CSeq number) and returns the 200 to the CANCEL.
// The INVITE's 487 arrives on the call (WaitCode(487)).
func (c *Call) Cancel() (*Msg, error) {
	c.mu.Lock()
	inv := c.invite
	dst := c.inviteTx.dst
	c.mu.Unlock()
	m := &Msg{Method: "CANCEL", URI: inv.URI}
	m.Add("Via", inv.Values("Via")[0])
	for _, r := range inv.Values("Route") {
		m.Add("Route", r)
	}
	m.Add("Max-Forwards", "70")
	m.Add("From", inv.Get("From"))
	m.Add("To", inv.Get("To"))
	m.Add("Call-ID", inv.Get("Call-ID"))
	n, _ := inv.CSeq()
	m.Add("CSeq", strconv.Itoa(n)+" CANCEL")
	tx, err := c.p.startTx(m, dst, nil)
	if err != nil {
		return nil, err
	}
	return tx.WaitFinal(0)
}

// newIncoming makes the callee side of an INVITE.
func (p *Phone) newIncoming(m *Msg) *Call {
	c := &Call{p: p, CallID: m.CallID(), LocalTag: NewTag(), invite: m, skip: map[*Msg]bool{}}
	c.remoteTag = m.Tag("From")
	c.remoteURI = stripTag(m.Get("From"))
	c.localURI = stripTag(m.Get("To"))
	if na, err := ParseNameAddr(m.Get("Contact")); err == nil {
		c.remoteTarget = na.URI.String()
	}
	c.routeSet = m.Values("Record-Route")
	p.mu.Lock()
	p.dialogs[c.CallID+"|"+c.LocalTag] = c
	if st := p.servers[m.Branch()+"|INVITE"]; st != nil {
		st.call = c
	}
	p.mu.Unlock()
	return c
}

// WaitInvite waits for an incoming INVITE and returns the callee side of
// the call.
func (p *Phone) WaitInvite(timeout time.Duration) (*Call, error) {
	c, ok := p.invites.wait(p.closed, p.timeout(timeout), nil)
	if !ok {
		return nil, fmt.Errorf("%w: phone %s (real address %s) received no INVITE in %s", ErrTimeout, p.name, p.Addr(), p.timeout(timeout))
	}
	return c, nil
}

// NoInvite asserts that no INVITE arrives within d; it returns the INVITE
// if one does.
func (p *Phone) NoInvite(d time.Duration) *Call {
	c, ok := p.invites.wait(p.closed, d, nil)
	if !ok {
		return nil
	}
	return c
}

// respond sends a response to the call's INVITE (callee side).
func (c *Call) respond(code int, reason, sdp string, extra ...Header) error {
	c.mu.Lock()
	inv := c.invite
	c.mu.Unlock()
	res := NewResponse(inv, code, reason, c.LocalTag)
	if code > 100 && code < 300 {
		res.Add("Contact", "<"+c.p.ContactURI(userOf(inv.URI))+">")
	}
	res.Headers = append(res.Headers, extra...)
	if sdp != "" {
		res.Add("Content-Type", "application/sdp")
		res.Body = []byte(sdp)
	}
	if err := c.p.respond(inv, res); err != nil {
		return err
	}
	if code >= 200 && code < 300 {
		c.mu.Lock()
		c.established = true
		c.okRaw = res.Bytes()
		c.okDst = responseDest(inv)
		c.okStart = time.Now()
		if c.p.udp != nil && c.p.cfg.T1 > 0 && !c.acked {
			c.okInterval = c.p.cfg.T1
			c.okTimer = c.p.afterFunc(c.okInterval, c.retransmitOK)
		}
		c.mu.Unlock()
	}
	return nil
}

func userOf(uri string) string {
	u, err := ParseURI(uri)
	if err != nil {
		return ""
	}
	return u.User
}

// retransmitOK re-sends the 2xx until the ACK arrives (RFC 3261 §13.3.1.4).
func (c *Call) retransmitOK() {
	c.mu.Lock()
	if c.acked || time.Since(c.okStart) > 64*c.p.cfg.T1 {
		c.mu.Unlock()
		return
	}
	c.okInterval *= 2
	if c.okInterval > 4*time.Second {
		c.okInterval = 4 * time.Second
	}
	raw, dst := c.okRaw, c.okDst
	c.okTimer = c.p.afterFunc(c.okInterval, c.retransmitOK)
	c.mu.Unlock()
	_ = c.p.write(raw, dst)
}

// Ring sends 180 Ringing.
func (c *Call) Ring() error { return c.respond(180, "Ringing", "") }

// Answer sends 200 OK with the SDP answer ("" = the phone's SDP) and
// retransmits it until the ACK arrives.
func (c *Call) Answer(sdp string) error {
	if sdp == "" {
		sdp = c.p.SDP()
	}
	return c.respond(200, "OK", sdp)
}

// Reject sends a final error response to the INVITE.
func (c *Call) Reject(code int, reason string) error { return c.respond(code, reason, "") }

func (c *Call) gotAck(m *Msg) {
	c.mu.Lock()
	c.acked = true
	t := c.okTimer
	c.okTimer = nil
	c.mu.Unlock()
	c.p.stopTimer(t)
	c.acks.push(m)
}

func (c *Call) gotRequest(m *Msg) { c.reqs.push(m) }

// WaitAck waits for the ACK of our 2xx (callee side).
func (c *Call) WaitAck(timeout time.Duration) (*Msg, error) {
	m, ok := c.acks.wait(c.p.closed, c.p.timeout(timeout), nil)
	if !ok {
		return nil, fmt.Errorf("%w: callee %s (real address %s) got no ACK for its 200 in %s", ErrTimeout, c.p.name, c.p.Addr(), c.p.timeout(timeout))
	}
	return m, nil
}

// WaitRequest waits for a request in the dialog (BYE, re-INVITE, ...), or
// a CANCEL / non-2xx ACK of the INVITE transaction. method "" matches any.
func (c *Call) WaitRequest(method string, timeout time.Duration) (*Msg, error) {
	m, ok := c.reqs.wait(c.p.closed, c.p.timeout(timeout), func(m *Msg) bool { return method == "" || m.Method == method })
	if !ok {
		return nil, fmt.Errorf("%w: %s (real address %s) got no %s in call %s within %s", ErrTimeout, c.p.name, c.p.Addr(), orAny(method), c.CallID, c.p.timeout(timeout))
	}
	return m, nil
}

// WaitCancel waits for the CANCEL of the INVITE (answered automatically
// with 200, and the INVITE with 487).
func (c *Call) WaitCancel(timeout time.Duration) (*Msg, error) {
	return c.WaitRequest("CANCEL", timeout)
}

// Cancelled reports whether a CANCEL arrived.
func (c *Call) Cancelled() bool { return c.cancelled.Load() }

// Respond answers a request received in the dialog.
func (c *Call) Respond(req *Msg, code int, reason string) error {
	return c.p.Respond(req, code, reason)
}

// RespondSDP answers a request received in the dialog (a re-INVITE or
// UPDATE) with an SDP body and our Contact.
func (c *Call) RespondSDP(req *Msg, code int, reason, sdp string) error {
	res := NewResponse(req, code, reason, "")
	res.Add("Contact", "<"+c.p.ContactURI("")+">")
	res.Add("Content-Type", "application/sdp")
	res.Body = []byte(sdp)
	return c.p.respond(req, res)
}
