package proxy

import (
	"strings"
	"sync"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// fork is the proxy's state for one server transaction forwarded to one or
// more branches (RFC 3261 §16.7 response context).
type fork struct {
	p        *Proxy
	tx       *sipx.ServerTx
	up       sipx.Flow
	upNAT    bool
	upPolicy string

	mu       sync.Mutex
	branches []*branch
	best     *sipx.Response
	final    bool
	timerC   *time.Timer
}

type branch struct {
	t    target
	ctx  *sipx.ClientTx
	done bool
}

var forks sync.Map // *sipx.ServerTx → *fork, for CANCEL

// forward sends req on every target as a branch of server transaction tx.
// record adds our Record-Route for dialog-creating requests.
func (p *Proxy) forward(req *sipx.Request, up sipx.Flow, upNAT bool, upPolicy string, tx *sipx.ServerTx, targets []target, record bool) {
	fk := &fork{p: p, tx: tx, up: up, upNAT: upNAT, upPolicy: upPolicy}
	p.Stats.inc(p.Stats.Forwarded, string(req.Method))
	if req.Method == sipx.INVITE {
		forks.Store(tx, fk)
		fk.timerC = time.AfterFunc(p.cfg.InviteTimeout, fk.timeout)
		if record && len(targets) > 0 {
			p.callStarted(req, up, upNAT, targets[0])
		}
	}
	if req.Method == sipx.BYE {
		p.forgetCall(req.CallID().Value())
	}
	fk.mu.Lock()
	for _, t := range targets {
		fk.branches = append(fk.branches, &branch{t: t})
	}
	brs := append([]*branch(nil), fk.branches...)
	fk.mu.Unlock()
	for _, b := range brs {
		out := req.Clone()
		out.Recipient = b.t.ruri
		p.decMaxForwards(out)
		fl := b.t.flow
		if record && dialogCreating(req.Method) {
			p.recordRoute(out, up, upNAT, b.t)
		}
		p.pushVia(out, fl, sipx.NewBranch(), up)
		if p.cfg.Media != nil && len(out.Body()) > 0 {
			p.cfg.Media.Request(out, fk.upLeg(), b.t.leg())
		}
		// RFC 3261 §18.1.1: a large request goes over TCP when the next
		// hop allows it; a NATed UDP peer can only be reached on its flow,
		// so it gets (fragmented) UDP.
		if b.t.tcp && !b.t.nat && fl.Transport == sipx.UDP && len(sipx.Marshal(out)) > p.cfg.UDPMaxSize {
			fl.Transport = sipx.TCP
			v := out.Via()
			v.Transport = "TCP"
		}
		bb := b
		ctx, err := p.st.NewClientTx(out, fl, func(ct *sipx.ClientTx, res *sipx.Response) { fk.onResponse(bb, res) })
		if err != nil {
			p.log.Debug("branch send failed", "to", b.t.name, "flow", fl, "error", err)
			continue
		}
		fk.mu.Lock()
		b.ctx = ctx
		fk.mu.Unlock()
	}
}

func (fk *fork) upLeg() MediaLeg {
	return MediaLeg{Flow: fk.up, NAT: fk.upNAT, Policy: fk.upPolicy}
}

func (t target) leg() MediaLeg { return MediaLeg{Flow: t.flow, NAT: t.nat, Policy: t.media} }

// onResponse handles a branch's response (§16.7).
func (fk *fork) onResponse(b *branch, res *sipx.Response) {
	p := fk.p
	code := res.StatusCode
	if code == 100 {
		return
	}
	res.RemoveHeader("Via") // ours
	if res.Via() == nil {
		return
	}
	if p.cfg.Media != nil && len(res.Body()) > 0 {
		p.cfg.Media.Response(res, b.t.leg(), fk.upLeg())
	}
	method := fk.tx.Req.Method
	fk.mu.Lock()
	switch {
	case code < 200:
		final := fk.final
		fk.mu.Unlock()
		if !final {
			_ = fk.tx.Respond(res)
		}
		return
	case code < 300:
		b.done = true
		first := !fk.final
		fk.final = true
		others := fk.others(b)
		fk.mu.Unlock()
		p.Stats.inc(p.Stats.Responses, "2xx")
		if first {
			fk.finish()
			if method == sipx.INVITE {
				p.callAnswered(res, b.t)
			}
			if method == sipx.INVITE && p.cfg.DialogUp != nil {
				var flows []sipx.Flow
				if fk.upNAT {
					flows = append(flows, fk.up)
				}
				if b.t.nat {
					flows = append(flows, b.t.flow)
				}
				p.cfg.DialogUp(res.CallID().Value(), flows...)
			}
			_ = fk.tx.Respond(res)
		} else if method == sipx.INVITE {
			// Further 2xx (forking) always go upstream (§16.7 step 5).
			_ = p.st.Send(res, fk.up)
		}
		if method == sipx.INVITE {
			for _, o := range others {
				o.Cancel()
			}
		}
		return
	}
	b.done = true
	if fk.final {
		fk.mu.Unlock()
		return
	}
	if code >= 600 {
		fk.best = res
		fk.final = true
		others := fk.others(b)
		fk.mu.Unlock()
		for _, o := range others {
			o.Cancel()
		}
		fk.send(res)
		return
	}
	if fk.best == nil || better(res, fk.best) {
		fk.best = res
	}
	if !fk.allDone() {
		fk.mu.Unlock()
		return
	}
	fk.final = true
	best := fk.best
	fk.mu.Unlock()
	fk.send(best)
}

// others returns the client transactions of the other live branches.
func (fk *fork) others(b *branch) []*sipx.ClientTx {
	var out []*sipx.ClientTx
	for _, o := range fk.branches {
		if o != b && !o.done && o.ctx != nil {
			out = append(out, o.ctx)
		}
	}
	return out
}

func (fk *fork) allDone() bool {
	for _, b := range fk.branches {
		if !b.done && b.ctx != nil {
			return false
		}
	}
	return true
}

// better orders final responses per §16.7 step 6: 6xx, then the lowest
// class; within a class the first stays (401/407 are kept as they are).
func better(a, cur *sipx.Response) bool {
	ca, cc := a.StatusCode/100, cur.StatusCode/100
	if ca == 6 {
		return cc != 6
	}
	if cc == 6 {
		return false
	}
	// A real answer beats a locally generated timeout of the same class.
	if ca == cc {
		return sipx.IsSynthetic(cur) && !sipx.IsSynthetic(a)
	}
	return ca < cc
}

func (fk *fork) send(res *sipx.Response) {
	fk.finish()
	if res.StatusCode == 503 {
		// §16.7: a 503 from downstream must not make upstream think we
		// are overloaded.
		res.StatusCode, res.Reason = 500, "Server Internal Error"
	}
	if fk.tx.Req.Method == sipx.INVITE && !sipx.InDialog(fk.tx.Req) {
		// The call failed. A failed re-INVITE (491, 488...) leaves the
		// call and its media as they were.
		fk.p.forgetCall(fk.tx.Req.CallID().Value())
	}
	fk.p.Stats.inc(fk.p.Stats.Responses, string(rune('0'+res.StatusCode/100))+"xx")
	_ = fk.tx.Respond(res)
}

func (fk *fork) finish() {
	if fk.timerC != nil {
		fk.timerC.Stop()
	}
	forks.Delete(fk.tx)
}

// timeout is Timer C: no final answer in time; cancel and answer 408.
func (fk *fork) timeout() { fk.abandon(408, "Request Timeout") }

// abandon ends a fork that has no final response yet: it cancels every
// live branch and answers upstream with code.
func (fk *fork) abandon(code int, reason string) {
	fk.mu.Lock()
	if fk.final {
		fk.mu.Unlock()
		return
	}
	fk.final = true
	others := fk.others(nil)
	fk.mu.Unlock()
	for _, o := range others {
		o.Cancel()
	}
	fk.send(sipx.NewResponse(fk.tx.Req, code, reason))
}

// HandleCancel cancels every branch of the INVITE server transaction tx and
// answers it with 487 (the stack already answered the CANCEL).
func (p *Proxy) HandleCancel(tx *sipx.ServerTx) {
	v, ok := forks.Load(tx)
	if !ok {
		_ = tx.RespondCode(487, "Request Terminated")
		return
	}
	v.(*fork).abandon(487, "Request Terminated")
}

// HandleStrayResponse forwards a response that matched no client
// transaction (a retransmitted 2xx to INVITE, RFC 6026) statelessly, on the
// upstream flow recorded in our Via.
func (p *Proxy) HandleStrayResponse(res *sipx.Response) {
	v := res.Via()
	if v == nil {
		return
	}
	br, _ := v.Params.Get("branch")
	if !strings.HasPrefix(br, sipx.MagicCookie+"-se") || !p.cfg.IsSelf(v.Host, portOr(v.Port, 5060)) {
		return
	}
	tok, _ := v.Params.Get(paramUp)
	up, ok := p.viaFlow(tok)
	if !ok {
		return
	}
	res.RemoveHeader("Via")
	if res.Via() == nil {
		return
	}
	_ = p.st.Send(res, up)
}
