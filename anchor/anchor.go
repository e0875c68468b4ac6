// Package anchor connects the proxy's SDP offer/answer to the RTP relay:
// for each call it decides whether media is relayed (the media policy of
// both sides and their NAT), asks the relay for a port pair per stream and
// side, tells the relay what each side announced, and rewrites each SDP
// minimally so that both phones send to the relay.
//
// Sides: A is the caller (the From tag of the initial INVITE), B the
// callee. An SDP from side X announces where X receives; the relay learns
// it (SetPeer X) and the SDP, rewritten with the relay's port facing the
// other side, goes on to the other side.
package anchor

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/sipedge/sipedge/proxy"
	"github.com/sipedge/sipedge/relay"
	"github.com/sipedge/sipedge/sdp"
	"github.com/sipedge/sipedge/sipx"
)

// Policies (config.MediaAlways etc.; repeated to keep this package free of
// the config package).
const (
	Always = "always"
	NAT    = "nat"
	Never  = "never"
)

// Config wires the anchor.
type Config struct {
	Relay *relay.Relay
	// Default is the media policy of a side that has none of its own.
	Default string
	// BindIP is where relay sockets are bound; invalid means the local
	// IP of the SIP flow the SDP is going to (wildcard if unspecified).
	BindIP netip.Addr
	// AdvertiseIP, if valid, is written into every rewritten SDP.
	AdvertiseIP netip.Addr
	// Advertise returns the host sipedge is known by to the peer of a
	// flow (the SIP listener's advertised or external address); used for
	// SDP when it is an IP and AdvertiseIP is not set.
	Advertise func(f sipx.Flow) (string, int)
	// EndCall is called when the relay times a call out (no media); the
	// proxy sends BYE to both sides.
	EndCall func(callID, reason string)
	Logger  *slog.Logger
}

// Anchor implements proxy.Media.
type Anchor struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	mu        sync.Mutex
	id        string
	relayed   bool
	reason    string
	callerTag string
	sess      *relay.Session
	peers     map[streamSide]relay.Peer
	mux       map[streamSide]bool
	sent      [2]sentSDP // last SDP sent to each side
}

type streamSide struct {
	stream int
	side   relay.Side
}

// sentSDP tracks the o= line of what went to one side, so that a changed
// SDP never reaches a phone with an unchanged version (RFC 3264 §8).
type sentSDP struct {
	body    []byte
	version uint64
	offset  uint64
}

// New returns an Anchor.
func New(cfg Config) *Anchor {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Default == "" {
		cfg.Default = NAT
	}
	return &Anchor{cfg: cfg, log: cfg.Logger.With("component", "media"), calls: map[string]*call{}}
}

// Decide says whether a call between sides a and b is relayed, and why:
// "never" on either side wins, then "always" on either side, then, with
// "nat" on both, whether a side is behind NAT.
func Decide(def string, a, b proxy.MediaLeg) (bool, string) {
	pa, pb := or(a.Policy, def), or(b.Policy, def)
	switch {
	case pa == Never:
		return false, "not relayed: media=never for the caller"
	case pb == Never:
		return false, "not relayed: media=never for the callee"
	case pa == Always || pb == Always:
		return true, "relayed: media=always"
	case a.NAT && b.NAT:
		return true, "relayed: both sides behind NAT"
	case a.NAT:
		return true, "relayed: caller behind NAT"
	case b.NAT:
		return true, "relayed: callee behind NAT"
	}
	return false, "not relayed: no side behind NAT"
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Request handles the SDP of a request going from one side to the other.
func (a *Anchor) Request(req *sipx.Request, from, to proxy.MediaLeg) {
	if !isSDP(req) {
		return
	}
	id := req.CallID().Value()
	fromTag, _ := req.From().Params.Get("tag")
	c := a.get(id)
	if c == nil {
		if req.Method != sipx.INVITE || sipx.InDialog(req) {
			return // not a call we anchor
		}
		c = a.create(id, fromTag, from, to)
	}
	side := relay.B
	if fromTag == c.callerTag {
		side = relay.A
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.relayed {
		return
	}
	if out, ok := a.rewrite(c, req.Body(), side, from, to); ok {
		req.SetBody(out)
	}
}

// Response handles the SDP of a response going back to the requester.
func (a *Anchor) Response(res *sipx.Response, from, to proxy.MediaLeg) {
	if res.StatusCode >= 300 || !isSDP(res) {
		return
	}
	fromTag, _ := res.From().Params.Get("tag")
	c := a.get(res.CallID().Value())
	if c == nil {
		if _, m, _ := sipx.CSeqOf(res); m != sipx.INVITE {
			return
		}
		// Late offer: the INVITE had no SDP, the callee offers in its
		// 18x/2xx and the caller answers in the ACK. The response goes
		// from the callee (from) to the caller (to).
		c = a.create(res.CallID().Value(), fromTag, to, from)
	}
	// The request came from the side whose tag is in From; the response
	// from the other.
	side := relay.A
	if fromTag == c.callerTag {
		side = relay.B
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.relayed {
		return
	}
	if out, ok := a.rewrite(c, res.Body(), side, from, to); ok {
		res.SetBody(out)
	}
	if _, m, _ := sipx.CSeqOf(res); m == sipx.INVITE && res.StatusCode < 300 && res.StatusCode >= 200 {
		c.sess.Established()
	}
}

// End forgets a call and frees its relay ports.
func (a *Anchor) End(callID string) {
	a.mu.Lock()
	c := a.calls[callID]
	delete(a.calls, callID)
	a.mu.Unlock()
	if c != nil && c.relayed {
		a.cfg.Relay.Delete(callID)
	}
}

// Timeout is the relay's OnTimeout: the call's media died.
func (a *Anchor) Timeout(callID, reason string) {
	a.mu.Lock()
	delete(a.calls, callID)
	a.mu.Unlock()
	a.log.Info("media timeout", "call_id", callID, "reason", reason)
	if a.cfg.EndCall != nil {
		// Not from inside the relay's callback: ending the call frees the
		// session, which takes the relay's locks.
		go a.cfg.EndCall(callID, reason)
	}
}

// Info is what the anchor knows about a call, for the admin API.
type Info struct {
	Relayed bool               `json:"relayed"`
	Reason  string             `json:"reason"`
	Media   *relay.SessionInfo `json:"media,omitempty"`
}

// Info returns the media state of a call; ok is false for calls without
// SDP seen.
func (a *Anchor) Info(callID string) (Info, bool) {
	c := a.get(callID)
	if c == nil {
		return Info{}, false
	}
	c.mu.Lock()
	in := Info{Relayed: c.relayed, Reason: c.reason}
	sess := c.sess
	c.mu.Unlock()
	if sess != nil {
		si := sess.Info()
		in.Media = &si
	}
	return in, true
}

func (a *Anchor) get(id string) *call {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[id]
}

func (a *Anchor) create(id, callerTag string, from, to proxy.MediaLeg) *call {
	relayed, reason := Decide(a.cfg.Default, from, to)
	c := &call{id: id, callerTag: callerTag, relayed: relayed, reason: reason,
		peers: map[streamSide]relay.Peer{}, mux: map[streamSide]bool{}}
	a.mu.Lock()
	if old, ok := a.calls[id]; ok {
		a.mu.Unlock()
		return old // a parallel branch of the same INVITE
	}
	a.calls[id] = c
	a.mu.Unlock()
	if relayed {
		c.sess = a.cfg.Relay.Create(id)
	}
	a.log.Debug("media decision", "call_id", id, "decision", reason)
	return c
}

// rewrite processes an SDP from side x (flow from) going to the other side
// (flow to). It returns the rewritten body, or false to leave it as is.
func (a *Anchor) rewrite(c *call, body []byte, x relay.Side, from, to proxy.MediaLeg) ([]byte, bool) {
	d, err := sdp.Parse(body)
	if err != nil {
		a.log.Info("SDP not relayed: cannot parse it", "call_id", c.id, "error", err)
		return nil, false
	}
	y := x.Other()
	bind := a.bindIP(to.Flow)
	rw := sdp.Rewrite{Addr: a.advertiseIP(to.Flow, bind), Media: make([]sdp.MediaRewrite, len(d.Media))}
	any := false
	for i, m := range d.Media {
		if m.Port == 0 || !m.RTP() {
			continue // rejected, or not RTP (T.38 udptl...): left alone
		}
		port, err := c.sess.Leg(i, y, bind)
		if err != nil {
			a.log.Warn("no relay port: media of this stream not relayed", "call_id", c.id, "stream", i, "error", err)
			continue
		}
		rtcp := netip.AddrPort{}
		if m.RTCP.IsValid() {
			rtcp = m.RTCP
		}
		xs, ys := streamSide{i, x}, streamSide{i, y}
		c.mux[xs] = m.RTCPMux
		p := relay.Peer{RTP: netip.AddrPortFrom(m.Conn, uint16(m.Port)), RTCP: rtcp,
			Mux:    m.RTCPMux && c.muxOf(ys),
			Source: from.Flow.Remote.Addr(), NAT: from.NAT, Hold: m.Hold(),
			ClockRate: m.ClockRate, Media: m.Type}
		c.peers[xs] = p
		c.sess.SetPeer(i, x, p)
		// rtcp-mux is agreed once both sides said so: update the other
		// side's peer if this SDP completes the agreement.
		if py, ok := c.peers[ys]; ok && py.Mux != (m.RTCPMux && c.mux[ys]) {
			py.Mux = m.RTCPMux && c.mux[ys]
			c.peers[ys] = py
			c.sess.SetPeer(i, y, py)
		}
		rw.Media[i] = sdp.MediaRewrite{Port: port, RTCPPort: port + 1, RemoveICE: m.ICE}
		any = true
	}
	if !any {
		return nil, false
	}
	out, err := sdp.Apply(body, rw)
	if err != nil {
		a.log.Info("SDP not relayed: cannot rewrite it", "call_id", c.id, "error", err)
		return nil, false
	}
	return c.versioned(y, out, d.Origin.Version), true
}

// muxOf reports whether side s said rtcp-mux for its stream; a side not
// heard from yet counts as yes (it answers the offer that has it).
func (c *call) muxOf(s streamSide) bool {
	v, ok := c.mux[s]
	return !ok || v
}

// versioned keeps the o= version of SDPs sent to side y consistent: a body
// that differs from the last one sent must carry a higher version. Our
// rewrite is deterministic, so this only ever adds an offset when the
// relay's ports changed under an unchanged phone SDP.
func (c *call) versioned(y relay.Side, out []byte, in uint64) []byte {
	s := &c.sent[y]
	v := in + s.offset
	if s.body != nil && !bytes.Equal(stripOrigin(s.body), stripOrigin(out)) && v <= s.version {
		s.offset += s.version + 1 - v
		v = s.version + 1
	}
	if v != in {
		if o, err := sdp.SetVersion(out, v); err == nil {
			out = o
		}
	}
	s.body, s.version = out, v
	return out
}

// stripOrigin returns body without its o= line, for comparisons.
func stripOrigin(body []byte) []byte {
	i := bytes.Index(body, []byte("\no="))
	if i < 0 {
		return body
	}
	j := bytes.IndexByte(body[i+1:], '\n')
	if j < 0 {
		return body[:i+1]
	}
	out := make([]byte, 0, len(body))
	out = append(out, body[:i+1]...)
	return append(out, body[i+1+j+1:]...)
}

func (a *Anchor) bindIP(to sipx.Flow) netip.Addr {
	if a.cfg.BindIP.IsValid() {
		return a.cfg.BindIP
	}
	return to.Local.Addr().Unmap()
}

// advertiseIP picks the address the side reached over flow `to` sends
// media to.
func (a *Anchor) advertiseIP(to sipx.Flow, bind netip.Addr) netip.Addr {
	if a.cfg.AdvertiseIP.IsValid() {
		return a.cfg.AdvertiseIP
	}
	if a.cfg.Advertise != nil {
		if h, _ := a.cfg.Advertise(to); h != "" {
			if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil && !ip.IsUnspecified() {
				return ip.Unmap()
			}
		}
	}
	if bind.IsValid() && !bind.IsUnspecified() {
		return bind
	}
	return routeTo(to.Remote.Addr())
}

// routeTo returns the local address the kernel would use to reach dst
// (a connected UDP socket sends nothing).
func routeTo(dst netip.Addr) netip.Addr {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}

// sdpCarrier is what requests and responses share.
type sdpCarrier interface {
	Body() []byte
	GetHeader(name string) sipx.Header
}

func isSDP(m sdpCarrier) bool {
	if len(m.Body()) == 0 {
		return false
	}
	ct := m.GetHeader("Content-Type")
	if ct == nil {
		return false
	}
	v := strings.ToLower(strings.TrimSpace(ct.Value()))
	return strings.HasPrefix(v, "application/sdp")
}
