package edge

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/keepalive"
	"github.com/sipedge/sipedge/location"
	"github.com/sipedge/sipedge/sipx"
	"github.com/sipedge/sipedge/stun"
)

// startKeepalive builds the keepalive manager: every NATed flow (every
// flow with keepalive.all) that a registration or a dialog uses is pinged
// from the socket the phone uses, and trunks with a keepalive interval are
// pinged too. The manager's goroutine starts with the other workers.
func (e *Edge) startKeepalive() {
	c := e.cfg.Keepalive
	userIv := map[string]time.Duration{}
	for _, u := range e.cfg.Users {
		userIv[u.Name] = e.cfg.UserKeepalive(u)
	}
	policy := func(user string) keepalive.Policy {
		iv, ok := userIv[user]
		if !ok {
			iv = c.Interval.Duration
		}
		return keepalive.Policy{Interval: iv, Method: c.Method}
	}
	e.ka = keepalive.New(keepalive.Config{
		Default: keepalive.Policy{Interval: c.Interval.Duration, Method: c.Method},
		Timeout: c.Timeout.Duration, Lagged: c.Lagged.Duration, Misses: c.Misses,
		Send: func(f sipx.Flow, b []byte) error { return e.stack.SendRaw(b, f) },
		Build: func(f sipx.Flow, branch string) []byte {
			host, port := e.Advertise(f)
			return keepalive.OptionsPing(f, branch, host, port, e.cfg.Domains[0])
		},
		// A flow is held by a registration while a live binding that
		// qualifies uses it; the first such binding's user decides the
		// interval.
		Policy: func(f sipx.Flow) (pol keepalive.Policy, ok bool) {
			e.loc.EachByFlow(f, func(b *location.Binding) bool {
				if e.keepAlive(b) {
					pol, ok = policy(b.User), true
				}
				return !ok
			})
			return pol, ok
		},
		OnStatus: e.keepaliveStatus,
		Logger:   e.log,
	})
	e.keepalivePolicy = policy
	// Registrations that survived a restart: their NAT bindings may still
	// be open, and pinging them is what keeps incoming calls working.
	e.loc.All(func(b location.Binding) bool {
		if e.keepAlive(&b) {
			e.ka.Track(b.Flow, policy(b.User), true)
		}
		return true
	})
	e.pinTrunks()
}

// stunOptions is how sipedge answers STUN on its SIP ports.
var stunOptions = &stun.ResponderOptions{Software: "sipedge"}

// answerSTUN answers a STUN Binding request that arrived on a SIP UDP
// socket (a phone's RFC 5626 §8 keepalive, or a STUN-only phone finding
// its public address) from the same socket. Anything else is dropped.
func (e *Edge) answerSTUN(b []byte, f sipx.Flow, reply func([]byte)) {
	if e.stunAnswer(b, f.Remote) { // an answer to our own query (external address)
		return
	}
	var buf [256]byte
	if out, ok := stun.Respond(buf[:0], b, f.Remote, stunOptions); ok {
		e.metrics.stunAnswered.Add(1)
		reply(out)
	}
}

// keepAlive reports whether a binding's flow gets keepalives.
func (e *Edge) keepAlive(b *location.Binding) bool {
	return b.NAT || e.cfg.Keepalive.All
}

// bound is told of each binding a REGISTER created or refreshed.
func (e *Edge) bound(b location.Binding) {
	if e.keepAlive(&b) {
		e.ka.Track(b.Flow, e.keepalivePolicy(b.User), false)
	}
}

// keepaliveStatus acts on a peer's status change: with
// keepalive.remove_unreachable, an unreachable flow's registrations go.
func (e *Edge) keepaliveStatus(f sipx.Flow, _, now keepalive.Status, st keepalive.State) {
	if now != keepalive.Unreachable || !e.cfg.Keepalive.RemoveUnreachable || !st.Registered {
		return
	}
	for _, b := range e.loc.FindByFlow(f) {
		_, _ = e.loc.Update(b.AOR, func(cur []location.Binding) ([]location.Binding, error) {
			var out []location.Binding
			for _, x := range cur {
				if x.Flow != f {
					out = append(out, x)
				}
			}
			return out, nil
		})
		e.log.Warn("registration removed: phone unreachable", "aor", b.AOR, "contact", b.ContactURI, "flow", f, "missed", st.Misses)
	}
}

// trunkPing is a trunk pinged with OPTIONS, for the peers view.
type trunkPing struct {
	name, to string
	flow     sipx.Flow
}

// pinTrunks starts pinging every route with a keepalive interval, over
// UDP from the first UDP listener. Routes whose host does not resolve are
// logged and skipped.
func (e *Edge) pinTrunks() {
	local := e.SIPAddr(sipx.UDP)
	for _, r := range e.cfg.Routes {
		if r.Keepalive.Duration <= 0 {
			continue
		}
		f, err := e.trunkFlow(r, local)
		if err != nil {
			e.log.Warn("trunk keepalive disabled", "route", r.Name, "to", r.To, "err", err)
			continue
		}
		e.ka.Pin(f, keepalive.Policy{Interval: r.Keepalive.Duration, Method: keepalive.MethodOptions})
		e.trunks = append(e.trunks, trunkPing{name: r.Name, to: r.To, flow: f})
	}
}

// trunkFlow is where a route's trunk is pinged: its next hop, over UDP
// from local.
func (e *Edge) trunkFlow(r config.Route, local netip.AddrPort) (sipx.Flow, error) {
	var u sipx.Uri
	if err := sipx.ParseUri(r.To, &u); err != nil {
		return sipx.Flow{}, err
	}
	if !local.IsValid() {
		return sipx.Flow{}, errNoUDP
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f, err := sipx.ResolveURI(ctx, &u, local)
	f.Transport = sipx.UDP
	return f, err
}

var errNoUDP = &net.AddrError{Err: "no UDP listener to ping from", Addr: ""}

// keepaliveView is a flow's keepalive state as the admin API shows it.
func keepaliveView(st keepalive.State, ok bool) (status string, ka *admin.Keepalive) {
	if !ok {
		return "", nil
	}
	v := &admin.Keepalive{
		Status: st.Status.String(), Method: st.Method, IntervalS: int(st.Interval / time.Second),
		RTTms: ms(st.RTT), MinRTTms: ms(st.MinRTT), AvgRTTms: ms(st.AvgRTT),
		Misses: st.Misses, Sent: st.Sent, Answered: st.Answered,
		LastAnswer: st.LastAnswer, NextPing: st.NextPing, Dialogs: st.Dialogs,
		HistoryMS: make([]float64, len(st.History)),
	}
	for i, d := range st.History {
		v.HistoryMS[i] = ms(d)
		if d < 0 {
			v.HistoryMS[i] = -1
		}
	}
	return statusText(st), v
}

// statusText is the status the way `sip show peers` showed it:
// "OK (23 ms)", "LAGGED (1450 ms)", "UNREACHABLE", "UNKNOWN".
func statusText(st keepalive.State) string {
	s := strings.ToUpper(st.Status.String())
	if st.Status == keepalive.OK || st.Status == keepalive.Lagged {
		s += " (" + strconv.FormatInt(max(st.RTT.Milliseconds(), 0), 10) + " ms)"
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
