// Package keepalive holds NAT bindings open. A NAT forgets an idle UDP
// binding in 30 s to a few minutes (Linux conntrack: 30 s for a flow that
// never became "assured"), after which a BYE or re-INVITE to the phone is
// dropped. While a dialog lasts, each NATed flow it uses gets a SIP OPTIONS
// ping from the socket the flow uses: our packet refreshes the binding, and
// the phone's answer refreshes it from the inside too.
//
// What to send when is a pure function (Next) of the flow's key and the
// time; the Pinger only applies it. Issue #4 extends this to registrations,
// RTT and unreachable detection.
package keepalive

import (
	"hash/fnv"
	"sync"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// Defaults.
const (
	// DefaultInterval is below the shortest common NAT UDP timeout (30 s)
	// with room for jitter and one lost ping's worth of slack.
	DefaultInterval = 20 * time.Second
	// DefaultMaxAge stops pinging a dialog whose BYE we never saw.
	DefaultMaxAge = 6 * time.Hour
)

// Next returns when a flow with key, last pinged (or added) at last, is due
// again: interval minus a deterministic per-key jitter of up to 20 %, so
// many flows added at once spread out instead of pinging in bursts.
func Next(key string, last time.Time, interval time.Duration) time.Time {
	h := fnv.New32a()
	h.Write([]byte(key))
	jitter := time.Duration(uint64(h.Sum32()) % uint64(interval/5+1))
	return last.Add(interval - jitter)
}

// Sender sends a ping on a flow.
type Sender func(f sipx.Flow, ping []byte) error

// Pinger pings the NATed flows of live dialogs.
type Pinger struct {
	interval, maxAge time.Duration
	send             Sender
	build            func(f sipx.Flow) []byte
	now              func() time.Time

	mu      sync.Mutex
	dialogs map[string]*dialog // by Call-ID
}

type dialog struct {
	flows []sipx.Flow
	added time.Time
	next  []time.Time
}

// Config configures a Pinger; zero values use the defaults.
type Config struct {
	Interval, MaxAge time.Duration
	Send             Sender
	// Build returns the ping for a flow (an OPTIONS request).
	Build func(f sipx.Flow) []byte
	Now   func() time.Time
}

// New returns a Pinger. Call Tick regularly (e.g. every second).
func New(cfg Config) *Pinger {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pinger{interval: cfg.Interval, maxAge: cfg.MaxAge, send: cfg.Send, build: cfg.Build, now: cfg.Now,
		dialogs: map[string]*dialog{}}
}

// DialogUp starts pinging the flows of dialog callID (its NATed sides).
func (p *Pinger) DialogUp(callID string, flows ...sipx.Flow) {
	if len(flows) == 0 {
		return
	}
	now := p.now()
	d := &dialog{flows: flows, added: now, next: make([]time.Time, len(flows))}
	for i, f := range flows {
		d.next[i] = Next(callID+f.String(), now, p.interval)
	}
	p.mu.Lock()
	p.dialogs[callID] = d
	p.mu.Unlock()
}

// DialogDown stops pinging dialog callID.
func (p *Pinger) DialogDown(callID string) {
	p.mu.Lock()
	delete(p.dialogs, callID)
	p.mu.Unlock()
}

// Len returns the number of dialogs being kept alive.
func (p *Pinger) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.dialogs)
}

// Tick sends every ping that is due and returns how many were sent.
func (p *Pinger) Tick() int {
	now := p.now()
	type due struct{ f sipx.Flow }
	var out []due
	p.mu.Lock()
	for id, d := range p.dialogs {
		if now.Sub(d.added) > p.maxAge {
			delete(p.dialogs, id)
			continue
		}
		for i, f := range d.flows {
			if !now.Before(d.next[i]) {
				out = append(out, due{f})
				d.next[i] = Next(id+f.String(), now, p.interval)
			}
		}
	}
	p.mu.Unlock()
	for _, x := range out {
		_ = p.send(x.f, p.build(x.f))
	}
	return len(out)
}

// OptionsPing builds an out-of-dialog OPTIONS for flow f, with our Via
// (host, port) and domain in From. Its answer matches no transaction and
// is dropped; what matters is that packets crossed the NAT.
func OptionsPing(f sipx.Flow, host string, port int, domain string) []byte {
	tag := sipx.NewTag()
	ruri := "sip:" + sipx.HostPort(f.Remote.Addr().String(), int(f.Remote.Port()))
	tr := "UDP"
	if f.Transport == sipx.TCP {
		tr = "TCP"
	}
	return []byte("OPTIONS " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + tr + " " + sipx.HostPort(host, port) + ";branch=" + sipx.NewBranch() + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:keepalive@" + domain + ">;tag=" + tag + "\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: ka-" + tag + "@" + domain + "\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Content-Length: 0\r\n\r\n")
}
