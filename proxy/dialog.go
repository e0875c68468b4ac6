package proxy

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// The proxy keeps a small record of every INVITE call from the initial
// request to its end. It is what `sipedge call list` shows, and what lets
// sipedge end a call itself (a BYE to both sides when its media died):
// a proxy normally cannot, because only the phones know the dialog.

// Call is a snapshot of one call for the admin API.
type Call struct {
	CallID   string    `json:"call_id"`
	From     string    `json:"from"` // caller's From URI
	To       string    `json:"to"`   // callee's To URI
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Answered time.Time `json:"answered,omitzero"`
	Caller   CallLeg   `json:"caller"`
	Callee   CallLeg   `json:"callee"`
}

// CallLeg is one side of a call as the proxy sees it.
type CallLeg struct {
	Flow string `json:"flow"`           // transport:local->remote
	NAT  bool   `json:"nat"`            // behind NAT
	Name string `json:"name,omitempty"` // AOR or route of the callee
}

// Call states.
const (
	CallRinging  = "ringing"
	CallAnswered = "answered"
)

// dialog is the proxy's record of one call.
type dialog struct {
	mu       sync.Mutex
	callID   string
	state    string
	started  time.Time
	answered time.Time

	// Caller (A) and callee (B) as they identify themselves.
	fromHdr, toHdr string // From with A's tag; To with B's tag once answered
	fromTag, toTag string
	fromURI, toURI string
	aContact       string // A's Contact (remote target for requests to A)
	bContact       string // B's Contact from the 2xx
	aFlow, bFlow   sipx.Flow
	aNAT, bNAT     bool
	bName          string
	aCSeq, bCSeq   uint32 // highest CSeq seen from each side
	// Route sets beyond us towards each side, in the order to use them.
	aRoutes, bRoutes []string
	nUpRR            int // Record-Route entries the INVITE carried when it reached us
	ended            bool
}

type dialogs struct {
	mu sync.Mutex
	m  map[string]*dialog
}

func (ds *dialogs) get(callID string) *dialog {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.m[callID]
}

func (ds *dialogs) take(callID string) *dialog {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	d := ds.m[callID]
	delete(ds.m, callID)
	return d
}

// callStarted records an initial INVITE forwarded from flow up.
func (p *Proxy) callStarted(req *sipx.Request, up sipx.Flow, upNAT bool, first target) {
	id := req.CallID().Value()
	from, to := req.From(), req.To()
	d := &dialog{callID: id, state: CallRinging, started: time.Now(),
		fromHdr: from.Value(), fromURI: from.Address.String(), toURI: to.Address.String(),
		aFlow: up, aNAT: upNAT, bFlow: first.flow, bNAT: first.nat, bName: first.name,
		nUpRR: len(req.GetHeaders("Record-Route"))}
	d.fromTag, _ = from.Params.Get("tag")
	if c := req.Contact(); c != nil {
		d.aContact = c.Address.String()
	}
	if n, _, ok := sipx.CSeqOf(req); ok {
		d.aCSeq = n
	}
	p.dlg.mu.Lock()
	if _, dup := p.dlg.m[id]; !dup {
		p.dlg.m[id] = d
	}
	p.dlg.mu.Unlock()
}

// callAnswered completes the record from the first 2xx, which came from
// branch b.
func (p *Proxy) callAnswered(res *sipx.Response, b target) {
	d := p.dlg.get(res.CallID().Value())
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == CallAnswered {
		return // a re-INVITE's 2xx
	}
	d.state, d.answered = CallAnswered, time.Now()
	d.bFlow, d.bNAT, d.bName = b.flow, b.nat, b.name
	to := res.To()
	d.toHdr = to.Value()
	d.toTag, _ = to.Params.Get("tag")
	if c := res.Contact(); c != nil {
		d.bContact = c.Address.String()
	}
	// The 2xx's Record-Route list reads [towards B ..., ours (1 or 2),
	// towards A ...]; A-side entries are the nUpRR at the end.
	var rr []string
	for _, h := range res.GetHeaders("Record-Route") {
		if r, ok := h.(*sipx.RecordRoute); ok {
			rr = append(rr, r.Address.String())
		}
	}
	if d.nUpRR <= len(rr) {
		d.aRoutes = rr[len(rr)-d.nUpRR:]
		down := rr[:len(rr)-d.nUpRR]
		// Drop our own entries (the last one or two of the downstream
		// part), then reverse: the caller uses them last-to-first.
		for len(down) > 0 && p.ownRoute(down[len(down)-1]) {
			down = down[:len(down)-1]
		}
		for i := len(down) - 1; i >= 0; i-- {
			d.bRoutes = append(d.bRoutes, down[i])
		}
	}
}

func (p *Proxy) ownRoute(s string) bool {
	var u sipx.Uri
	if err := sipx.ParseUri(s, &u); err != nil {
		return false
	}
	return p.cfg.IsSelf(u.Host, portOr(u.Port, 5060))
}

// callSeen notes an in-dialog request's CSeq, so a BYE sipedge generates
// carries a higher one.
func (p *Proxy) callSeen(req *sipx.Request) {
	d := p.dlg.get(req.CallID().Value())
	if d == nil {
		return
	}
	n, _, ok := sipx.CSeqOf(req)
	if !ok {
		return
	}
	tag, _ := req.From().Params.Get("tag")
	d.mu.Lock()
	if tag == d.fromTag {
		d.aCSeq = max(d.aCSeq, n)
	} else {
		d.bCSeq = max(d.bCSeq, n)
	}
	d.mu.Unlock()
}

// forgetCall ends everything the call held: the proxy's record, the
// media session and the dialog keepalives (BYE forwarded or sent, INVITE
// failed, call too old).
func (p *Proxy) forgetCall(callID string) {
	d := p.dlg.take(callID)
	if d != nil && p.cfg.CallEnded != nil {
		p.cfg.CallEnded(d.snapshot())
	}
	if p.cfg.Media != nil {
		p.cfg.Media.End(callID)
	}
	if p.cfg.DialogDown != nil {
		p.cfg.DialogDown(callID)
	}
}

// Calls returns the live calls, oldest first.
func (p *Proxy) Calls() []Call {
	p.dlg.mu.Lock()
	ds := make([]*dialog, 0, len(p.dlg.m))
	for _, d := range p.dlg.m {
		ds = append(ds, d)
	}
	p.dlg.mu.Unlock()
	out := make([]Call, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

func (d *dialog) snapshot() Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Call{CallID: d.callID, From: d.fromURI, To: d.toURI, State: d.state,
		Started: d.started, Answered: d.answered,
		Caller: CallLeg{Flow: d.aFlow.String(), NAT: d.aNAT},
		Callee: CallLeg{Flow: d.bFlow.String(), NAT: d.bNAT, Name: d.bName}}
}

// Sweep ends calls that have lasted longer than maxAge: answered calls
// with a BYE to both sides, calls still ringing (which Timer C should have
// ended) by forgetting them.
func (p *Proxy) Sweep(maxAge time.Duration) {
	cutoff := time.Now().Add(-maxAge)
	var old []string
	p.dlg.mu.Lock()
	for id, d := range p.dlg.m {
		if d.started.Before(cutoff) {
			old = append(old, id)
		}
	}
	p.dlg.mu.Unlock()
	for _, id := range old {
		if !p.EndCall(id, "call longer than "+maxAge.String()) {
			p.forgetCall(id)
		}
	}
}

// EndCall ends an answered call from the middle: a BYE to each side, as
// if the other side had hung up, with a Reason header saying why. It
// reports whether the call was known and answered.
func (p *Proxy) EndCall(callID, why string) bool {
	d := p.dlg.get(callID)
	if d == nil {
		return false
	}
	d.mu.Lock()
	if d.state != CallAnswered || d.ended {
		d.mu.Unlock()
		return false
	}
	d.ended = true
	toB := p.byeRequest(d.bContact, d.bRoutes, d.fromHdr, d.toHdr, callID, d.aCSeq+1, d.bFlow, why)
	toA := p.byeRequest(d.aContact, d.aRoutes, d.toHdr, d.fromHdr, callID, d.bCSeq+1, d.aFlow, why)
	aFlow, bFlow := d.aFlow, d.bFlow
	d.mu.Unlock()
	p.log.Info("ending call", "call_id", callID, "reason", why)
	// Forgotten before the BYEs leave, so no listing shows a call whose
	// BYEs are out.
	p.forgetCall(callID)
	for _, s := range []struct {
		req  *sipx.Request
		flow sipx.Flow
	}{{toB, bFlow}, {toA, aFlow}} {
		if s.req == nil {
			continue
		}
		if _, err := p.st.NewClientTx(s.req, s.flow, func(*sipx.ClientTx, *sipx.Response) {}); err != nil {
			p.log.Debug("BYE send failed", "call_id", callID, "error", err)
		}
	}
	return true
}

// byeRequest builds a BYE to target (a Contact URI) through routes, sent
// on flow, with From/To as given (the sender's and the receiver's header
// values, tags included).
func (p *Proxy) byeRequest(target string, routes []string, from, to, callID string, cseq uint32, flow sipx.Flow, why string) *sipx.Request {
	if target == "" {
		return nil
	}
	host, port := p.cfg.Advertise(flow)
	tr := strings.ToUpper(flow.Transport)
	var b strings.Builder
	b.WriteString("BYE " + target + " SIP/2.0\r\n")
	b.WriteString("Via: SIP/2.0/" + tr + " " + sipx.HostPort(host, port) + ";branch=" + sipx.NewBranch() + ";rport\r\n")
	b.WriteString("Max-Forwards: " + strconv.Itoa(p.cfg.MaxForwards) + "\r\n")
	for _, r := range routes {
		b.WriteString("Route: <" + r + ">\r\n")
	}
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nCall-ID: " + callID + "\r\n")
	b.WriteString("CSeq: " + strconv.FormatUint(uint64(cseq), 10) + " BYE\r\n")
	b.WriteString(`Reason: SIP;cause=408;text="` + strings.ReplaceAll(why, `"`, `'`) + "\"\r\n")
	b.WriteString("Content-Length: 0\r\n\r\n")
	m, err := sipx.ParseMessage([]byte(b.String()))
	if err != nil {
		p.log.Warn("cannot build BYE", "call_id", callID, "error", err)
		return nil
	}
	req, ok := m.(*sipx.Request)
	if !ok {
		return nil
	}
	return req
}
