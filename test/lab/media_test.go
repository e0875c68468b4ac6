//go:build lab

package lab

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sipedge/sipedge/internal/tone"
)

// Two-way audio with real softphones (baresip) behind the lab's NATs,
// through sipedge's media relay. The caller plays 440 Hz, the callee
// 880 Hz; each records what it receives, and each recording must hold the
// other side's tone for several seconds (internal/tone: Goertzel filter,
// 100 ms windows).

const (
	callerTone = 440.0
	calleeTone = 880.0
	// talkTime is how long a call stays up once established, and how
	// much audio each phone sends.
	talkTime = 8 * time.Second
	// maxExtraTalk bounds how much longer a call may last when the
	// phones fall behind on a starved host (see audioOpts.Talk).
	maxExtraTalk = 10 * time.Second
	// minToneSeconds is how much of the other side's tone a recording of
	// a talkTime call must hold: half of it, which leaves room for the
	// call's start (latching, jitter buffer) on a busy host.
	minToneSeconds = 4.0
	// RelayPorts is the relay's port range in the media tests: small, so
	// that an attacker can spray all of it.
	RelayPorts                 = "30000-30199"
	relayPortMin, relayPortMax = 30000, 30199
)

// mediaUsers are DefaultUsers plus the second phones' accounts.
var mediaUsers = append(append([]User(nil), DefaultUsers...), User{"dave", "davepw"}, User{"erin", "erinpw"})

var (
	dave = PhoneA2.As("dave", "davepw", Domain) // second phone behind the cone NAT
	erin = PhoneB2.As("erin", "erinpw", Domain) // second phone behind the symmetric NAT
)

// where says where a phone is, for messages.
func where(p Phone) string {
	behind := map[string]string{NSA: "cone NAT", NSA2: "cone NAT", NSB: "symmetric NAT", NSB2: "symmetric NAT"}[p.NS]
	if behind == "" {
		return fmt.Sprintf("%s (%s, public %s)", p.User, p.NS, p.IP)
	}
	return fmt.Sprintf("%s (%s, %s behind the %s)", p.User, p.NS, p.IP, behind)
}

// mediaLab builds the lab (with the second phones in extra, "se-a2" and/or
// "se-b2") and starts sipedge with media mode mode ("" for sipedge's
// default) and the small relay port range.
func mediaLab(t *testing.T, mode string, extra ...string) (*Lab, *Sipedge) {
	t.Helper()
	return mediaLabWith(t, EdgeConfig{Media: mode}, extra...)
}

// mediaLabWith is mediaLab with more of sipedge's config: cfg's Users and
// MediaPorts default to mediaUsers and RelayPorts. With cfg.Kernel "on"
// it first checks that the in-kernel fast path can load in se-edge
// (needKernelFastPath), since sipedge would refuse to start without it.
func mediaLabWith(t *testing.T, cfg EdgeConfig, extra ...string) (*Lab, *Sipedge) {
	t.Helper()
	SkipNoBaresip(t)
	l := New(t, Options{Capture: true})
	for _, ns := range extra {
		router := map[string]string{NSA2: NSNATCone, NSB2: NSNATSym}[ns]
		if err := l.AddLANPhone(router, ns, PhoneIP2); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Users == nil {
		cfg.Users = mediaUsers
	}
	if cfg.MediaPorts == "" {
		cfg.MediaPorts = RelayPorts
	}
	if cfg.Kernel == "on" {
		needKernelFastPath(t, cfg.ns())
	}
	s := l.StartSipedge(cfg)
	return l, s
}

// audioOpts tune audioCall.
type audioOpts struct {
	// Talk is how much audio each phone must have sent before the caller
	// hangs up: the call lasts that long, or up to maxExtraTalk longer
	// when a starved host makes the phones fall behind. Default talkTime.
	Talk       time.Duration
	BeforeDial func() // runs right before the caller dials
	// Talking runs as soon as the call is established, during the talk:
	// the call lasts at least Talk after establishment whatever Talking
	// takes.
	Talking func()
	// BeforeHangup runs at the end of the talk, while the call is up.
	BeforeHangup func()
	// Proxy is the softphones' outbound proxy ("ip:port"); default
	// EdgeSIP.
	Proxy string
	// Relay is where the relay's traffic is counted; default edgeRelay.
	Relay *relaySpot
}

// relaySpot is where a call's relayed media is counted: a sniffer on Iface
// in NS sees packets to and from IP on ports Min..Max (the relay's public
// address and port range).
type relaySpot struct {
	NS, Iface, IP string
	Min, Max      uint16
}

func (r relaySpot) has(p uint16) bool { return p >= r.Min && p <= r.Max }

func (r relaySpot) String() string { return fmt.Sprintf("%s:%d-%d", r.IP, r.Min, r.Max) }

// edgeRelay is sipedge's relay in se-edge: RelayPorts on EdgeIP.
var edgeRelay = relaySpot{NSEdge, IfPublic, EdgeIP, relayPortMin, relayPortMax}

// audioResult is what one call left.
type audioResult struct {
	Caller, Callee           *Softphone
	From, To                 Phone
	CallerHeard, CalleeHeard *tone.Audio
	// CallerGot is how many seconds of the callee's tone the caller's
	// recording holds, CalleeGot the same for the callee.
	CallerGot, CalleeGot float64
	// Relay is what a sniffer on se-edge saw of the relay's port range
	// during the call.
	Relay relayTraffic
}

// audioCall: the callee registers and waits (auto-answer, 880 Hz), the
// caller registers and calls it through sipedge (440 Hz), both talk for
// opts.Talk, the caller hangs up. It fails t if the call cannot be set up
// or torn down, or if a phone did not play its own tone (a harness
// problem); whether audio flowed is for the caller to judge from the
// result, which it also logs.
func audioCall(t *testing.T, l *Lab, s *Sipedge, from, to Phone, opts audioOpts) audioResult {
	t.Helper()
	if opts.Talk == 0 {
		opts.Talk = talkTime
	}
	if opts.Relay == nil {
		opts.Relay = &edgeRelay
	}
	r := audioResult{From: from, To: to}
	t0 := time.Now()
	r.Callee = l.StartSoftphone(SoftphoneSpec{Phone: to, ToneHz: calleeTone, AutoAnswer: true, Proxy: opts.Proxy})
	r.Caller = l.StartSoftphone(SoftphoneSpec{Phone: from, ToneHz: callerTone, Proxy: opts.Proxy})
	for _, sp := range []*Softphone{r.Callee, r.Caller} {
		if err := sp.WaitRegistered(10 * time.Second); err != nil {
			t.Fatalf("%v\n(baresip log: %s)", err, sp.Proc.Stdout)
		}
	}
	registered := time.Since(t0)
	relay := startRelayCapture(t, l, *opts.Relay)
	if opts.BeforeDial != nil {
		opts.BeforeDial()
	}
	start := time.Now()
	if err := r.Caller.Dial("sip:" + to.User + "@" + Domain); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Caller.WaitEstablished(15 * time.Second); err != nil {
		t.Fatalf("call %s -> %s not established: %v", from.User, to.User, err)
	}
	if _, err := r.Callee.WaitEstablished(5 * time.Second); err != nil {
		t.Fatalf("call %s -> %s not established at the callee: %v", from.User, to.User, err)
	}
	established := time.Now()
	t.Logf("call %s -> %s established %v after dialling (both phones registered %v after starting); talking for %v",
		where(from), where(to), time.Since(start).Round(time.Millisecond), registered.Round(time.Millisecond), opts.Talk)
	if opts.Talking != nil {
		opts.Talking()
	}
	time.Sleep(time.Until(established.Add(opts.Talk)))
	// Wait, if need be, until both phones have sent the whole talk.
	talked := time.Now().Add(maxExtraTalk)
	for time.Now().Before(talked) &&
		(r.Caller.SentSeconds() < opts.Talk.Seconds()-0.1 || r.Callee.SentSeconds() < opts.Talk.Seconds()-0.1) {
		time.Sleep(100 * time.Millisecond)
	}
	if late := time.Since(established) - opts.Talk; late > time.Second {
		t.Logf("the phones fell behind (busy host?): the call lasted %v longer, until both had sent %v of audio (caller %.1f s, callee %.1f s)",
			late.Round(100*time.Millisecond), opts.Talk, r.Caller.SentSeconds(), r.Callee.SentSeconds())
	}
	s.Alive(t)
	if opts.BeforeHangup != nil {
		opts.BeforeHangup()
	}
	t1 := time.Now()
	if err := r.Caller.Hangup(); err != nil {
		t.Errorf("hangup: %v", err)
	}
	if _, err := r.Caller.WaitClosed(5 * time.Second); err != nil {
		t.Errorf("caller: %v", err)
	}
	if ev, err := r.Callee.WaitClosed(5 * time.Second); err != nil {
		t.Errorf("callee: the caller's BYE did not end the call: %v", err)
	} else {
		t.Logf("callee's call closed: %s", ev)
	}
	// Stopping closes the recordings.
	r.Callee.Stop()
	r.Caller.Stop()
	r.Relay = relay.stop()
	t.Logf("hang-up and softphone shutdown took %v", time.Since(t1).Round(time.Millisecond))
	t.Logf("relay ports %s (seen in %s): packets in by source %v, out by destination %v", opts.Relay, opts.Relay.NS, r.Relay.In, r.Relay.Out)

	for _, c := range []struct {
		sp      *Softphone
		p       Phone
		own     float64
		heard   **tone.Audio
		got     *float64
		other   float64
		otherSP *Softphone
	}{
		{r.Caller, from, callerTone, &r.CallerHeard, &r.CallerGot, calleeTone, r.Callee},
		{r.Callee, to, calleeTone, &r.CalleeHeard, &r.CalleeGot, callerTone, r.Caller},
	} {
		said, saidFile, err := c.sp.Said()
		if err != nil {
			t.Errorf("%s: %v", c.p.User, err)
		} else if sec := tone.Seconds(said, c.own); sec < opts.Talk.Seconds()-1 {
			t.Errorf("%s sent only %.1f s of its own %g Hz tone in a %v call (%s): the softphone itself did not play its tone all along (host overloaded? audio source broken?); this is not the network's fault",
				c.p.User, sec, c.own, opts.Talk, saidFile)
		}
		heard, file, err := c.sp.Heard()
		if err != nil {
			t.Errorf("%s: %v", c.p.User, err)
			heard = &tone.Audio{Rate: 8000}
		}
		*c.heard = heard
		*c.got = tone.Seconds(heard, c.other)
		t.Logf("%s received %.1f s of audio: %.1f s of %s's %g Hz, %.1f s of its own %g Hz; per second (1=%g Hz 2=%g Hz .=silence ~=other): %q (%s)",
			c.p.User, heard.Duration().Seconds(), *c.got, c.otherSP.Spec.Phone.User, c.other,
			tone.Seconds(heard, c.own), c.own, callerTone, calleeTone, tone.Timeline(heard, callerTone, calleeTone), file)
	}
	return r
}

// wantTwoWay fails t unless each side heard the other's tone for at least
// minToneSeconds.
func wantTwoWay(t *testing.T, r audioResult) {
	t.Helper()
	if r.CallerGot < minToneSeconds {
		t.Errorf("no audio %s -> %s: the caller's recording holds %.1f s of the callee's %g Hz tone, want >= %.0f s",
			r.To.User, r.From.User, r.CallerGot, calleeTone, minToneSeconds)
	}
	if r.CalleeGot < minToneSeconds {
		t.Errorf("no audio %s -> %s: the callee's recording holds %.1f s of the caller's %g Hz tone, want >= %.0f s",
			r.From.User, r.To.User, r.CalleeGot, callerTone, minToneSeconds)
	}
}

// publicIP is the address a phone's packets come from on the internet.
func publicIP(p Phone) string {
	switch p.NS {
	case NSA, NSA2:
		return ConeWANIP
	case NSB, NSB2:
		return SymWANIP
	}
	return p.IP
}

// minRelayed is how many packets each phone must send to the relay's ports
// and receive from them in a call that the relay anchors: two seconds of
// 20 ms RTP packets.
const minRelayed = 100

// wantRelayed fails t unless the call's media went through the relay: from
// each phone's public address an RTP flow of at least minRelayed packets
// to a relay port, and one back. Two phones behind one NAT share its
// address, so that address needs two flows each way. Two phones on one LAN
// can hear each other without the relay (their private addresses work
// there), so the tones alone do not prove it.
func wantRelayed(t *testing.T, r audioResult) {
	t.Helper()
	phones := map[string][]string{} // public IP -> phones behind it
	for _, p := range []Phone{r.From, r.To} {
		ip := publicIP(p)
		phones[ip] = append(phones[ip], where(p))
	}
	bigFlows := func(flows map[flowKey]int, ip string) (n int, all []string) {
		for k, c := range flows {
			if k.peer.Addr().String() == ip {
				all = append(all, fmt.Sprintf("%v<->%d: %d", k.peer, k.relay, c))
				if c >= minRelayed {
					n++
				}
			}
		}
		sort.Strings(all)
		return n, all
	}
	for ip, ps := range phones {
		if n, all := bigFlows(r.Relay.InFlows, ip); n < len(ps) {
			t.Errorf("%d flow(s) of >= %d packets from %s to the relay's ports, want %d (for %s): the media did not go through the relay; flows: %v",
				n, minRelayed, ip, len(ps), strings.Join(ps, " and "), all)
		}
		if n, all := bigFlows(r.Relay.OutFlows, ip); n < len(ps) {
			t.Errorf("%d flow(s) of >= %d packets from the relay's ports to %s, want %d (for %s); flows: %v",
				n, minRelayed, ip, len(ps), strings.Join(ps, " and "), all)
		}
	}
}

// TestLabAudioConeToSym: A behind the cone NAT calls B behind the
// symmetric NAT; sipedge's default media policy ("nat": relay calls with a
// NATed leg) must give two-way audio. Both phones put their private address
// in SDP and neither uses STUN or ICE.
func TestLabAudioConeToSym(t *testing.T) {
	l, s := mediaLab(t, "")
	r := audioCall(t, l, s, alice, bob, audioOpts{
		BeforeHangup: func() { logCalls(t, s, "before hanging up", true) },
	})
	wantTwoWay(t, r)
	wantRelayed(t, r)
	wantLadder(t, s, r)
}

// wantLadder checks the call's ladder as the dashboard draws it: each
// phone at the private address it claims, its NAT at the public address
// the packets came from, and the SDP rewritten to the relay for both.
func wantLadder(t *testing.T, s *Sipedge, r audioResult) {
	t.Helper()
	l, err := s.LastLadder()
	if err != nil {
		t.Fatalf("ladder: %v", err)
	}
	var cols []string
	for _, c := range l.Columns {
		cols = append(cols, c.Kind+" "+c.Addr)
	}
	want := []string{"phone " + r.From.IP, "nat " + publicIP(r.From), "sipedge", "nat " + publicIP(r.To), "phone " + r.To.IP}
	ok := len(cols) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(cols[i], want[i])
	}
	if !ok {
		t.Errorf("ladder columns %q, want prefixes %q", cols, want)
	}
	sdp := 0
	for _, a := range l.Arrows {
		for _, f := range a.Fixes {
			if f.Kind == "sdp" && strings.Contains(f.Text, "relay") {
				sdp++
			}
		}
	}
	if l.State != "ended" || sdp < 2 {
		t.Errorf("ladder of %s: state %q, %d SDP rewrites to the relay; want ended and both offer and answer rewritten", l.CallID, l.State, sdp)
	}
}

// TestLabAudioConeToCone: two phones behind the same cone NAT, on the same
// LAN (A 192.168.1.10 and A2 192.168.1.11): the relay is on the internet,
// so media goes out through the NAT and back in.
func TestLabAudioConeToCone(t *testing.T) {
	l, s := mediaLab(t, "", NSA2)
	r := audioCall(t, l, s, alice, dave, audioOpts{})
	wantTwoWay(t, r)
	wantRelayed(t, r)
}

// TestLabAudioSymToSym: two phones behind the same symmetric NAT, on the
// same LAN (B 192.168.1.10 and B2 192.168.1.11).
func TestLabAudioSymToSym(t *testing.T) {
	l, s := mediaLab(t, "", NSB2)
	r := audioCall(t, l, s, bob, erin, audioOpts{})
	wantTwoWay(t, r)
	wantRelayed(t, r)
}

// TestLabAudioPublicToSym: carol on a public address (se-pub, no NAT)
// calls B behind the symmetric NAT.
func TestLabAudioPublicToSym(t *testing.T) {
	l, s := mediaLab(t, "")
	r := audioCall(t, l, s, carol, bob, audioOpts{})
	wantTwoWay(t, r)
	wantRelayed(t, r)
}

// TestLabAudioMediaNever: the cone -> symmetric call of
// TestLabAudioConeToSym with the relay off ([media] mode = "never"): SDP
// passes unchanged, each phone sends its audio to the other's private
// address, and at least one direction must stay silent. This is the classic
// NAT failure the relay exists for, and it proves the audio check can fail.
func TestLabAudioMediaNever(t *testing.T) {
	l, s := mediaLab(t, "never")
	r := audioCall(t, l, s, alice, bob, audioOpts{})
	if r.CallerGot >= minToneSeconds && r.CalleeGot >= minToneSeconds {
		t.Errorf("two-way audio (%.1f s and %.1f s) with the media relay off: either sipedge still relays, or the lab's NATs let private-address media through",
			r.CallerGot, r.CalleeGot)
	} else {
		t.Logf("as expected without the relay: %s heard %.1f s of %s, %s heard %.1f s of %s",
			r.From.User, r.CallerGot, r.To.User, r.To.User, r.CalleeGot, r.From.User)
	}
	if len(r.Relay.In) != 0 || len(r.Relay.Out) != 0 {
		t.Errorf("with media mode never, packets went to or from the relay's ports: in %v, out %v", r.Relay.In, r.Relay.Out)
	}
}

// TestLabRTPInjection: during a cone -> symmetric call, an attacker on the
// internet (se-pub) sprays RTP (its own SSRC, a marker in the payload) at
// every port of the relay's range: throughout the first seconds of the call
// (the relay's learning window, when it latches to the phones' NATed
// addresses) and again later. Sniffers inside both phones' namespaces must
// see none of the attacker's packets arrive, the attacker must get none of the
// call's audio back, and the tones must still pass both ways.
func TestLabRTPInjection(t *testing.T) {
	l, s := mediaLab(t, "")
	rtpInjection(t, l, s, audioOpts{
		BeforeHangup: func() { logCalls(t, s, "before hanging up, after both attack phases", false) },
	})
}

// Injection attack phases, since the caller dials: the first covers the
// INVITE, the answer and the learning window, the second comes mid-call,
// when the legs are long locked.
var (
	attackEarly = attackPhase{0, 6 * time.Second}
	attackLate  = attackPhase{8 * time.Second, 10 * time.Second}
)

// rtpInjection runs TestLabRTPInjection's call (alice -> bob, a 10 s talk)
// under attack (attackEarly and attackLate) and checks it: no attacker
// packet reaches either phone, nothing comes back to the attacker, the
// attack hit the call's own relay ports, two-way audio through the relay.
// opts adds hooks to the call (BeforeDial runs right before the attack
// starts); its Talk and Relay are the helper's own.
func rtpInjection(t *testing.T, l *Lab, s *Sipedge, opts audioOpts) audioResult {
	t.Helper()
	// pcap files of both phones' interfaces, for a human (the counts come
	// from the sniffers below).
	for _, ns := range []string{NSA, NSB} {
		if c := l.Capture(ns, IfPublic, "udp"); c != nil {
			defer c.Stop()
		}
	}
	type seen struct{ attack, relay atomic.Int64 }
	counts := map[string]*seen{NSA: {}, NSB: {}}
	edgeIP := netip.MustParseAddr(EdgeIP)
	var sniffers []*udpSniffer
	for _, ns := range []string{NSA, NSB} {
		c := counts[ns]
		sn := sniffUDP(t, ns, IfPublic, func(p sniffed) {
			if p.outgoing {
				return
			}
			if isAttack(p.payload) {
				c.attack.Add(1)
			} else if p.src.Addr() == edgeIP && relayPort(p.src.Port()) {
				c.relay.Add(1)
			}
		})
		sniffers = append(sniffers, sn)
	}
	atk := startRTPAttacker(t, l, EdgeIP, relayPortMin, relayPortMax, []attackPhase{attackEarly, attackLate})
	opts.Talk = 10 * time.Second
	opts.Relay = nil
	if before := opts.BeforeDial; before != nil {
		opts.BeforeDial = func() { before(); atk.Start() }
	} else {
		opts.BeforeDial = atk.Start
	}
	r := audioCall(t, l, s, alice, bob, opts)
	atk.Stop()
	for _, sn := range sniffers {
		sn.Stop()
	}
	t.Logf("attacker sent %d packets (%d ports, SSRC %#08x, payload marker %q) from %s; got back %d packets %v",
		atk.sent.Load(), relayPortMax-relayPortMin+1, attackSSRC, attackMarker, atk.conn.LocalAddr(), atk.recv.Load(), atk.from())
	if atk.sent.Load() == 0 {
		t.Fatal("the attacker sent nothing")
	}
	for _, p := range []Phone{alice, bob} {
		c := counts[p.NS]
		t.Logf("%s received %d attacker packets and %d other packets from the relay's ports", where(p), c.attack.Load(), c.relay.Load())
		if n := c.attack.Load(); n != 0 {
			t.Errorf("%d of the attacker's RTP packets reached %s: the relay forwards injected media", n, where(p))
		}
	}
	if n := atk.recv.Load(); n != 0 {
		t.Errorf("the attacker received %d packets from the relay %v: the call's media leaks to a stranger (the relay latched onto the attacker)", n, atk.from())
	}
	// The attack must have hit the call's own relay ports, else "nothing
	// got through" proves nothing.
	hits, ahead := 0, []string{}
	for port := range r.Relay.CallPorts {
		hits += r.Relay.AttackTo[port]
		fa, fp := r.Relay.FirstAttack[port], r.Relay.FirstOther[port]
		if !fa.IsZero() && fa.Before(fp) {
			ahead = append(ahead, fmt.Sprintf("%d by %v", port, fp.Sub(fa).Round(time.Millisecond)))
		}
	}
	sort.Strings(ahead)
	t.Logf("the attack hit the call's relay ports %v with %d packets; it reached these ports before the phones' first packet: %v",
		sortedPorts(r.Relay.CallPorts), hits, ahead)
	if hits == 0 {
		t.Errorf("none of the attacker's packets went to the call's relay ports %v: the attack missed (wrong port range?)", sortedPorts(r.Relay.CallPorts))
	}
	wantTwoWay(t, r)
	wantRelayed(t, r)
	return r
}

func sortedPorts(m map[uint16]bool) []int {
	var out []int
	for p := range m {
		out = append(out, int(p))
	}
	sort.Ints(out)
	return out
}

// isAttack recognises the attacker's packets by SSRC or payload marker.
func isAttack(b []byte) bool {
	return len(b) >= 12 && binary.BigEndian.Uint32(b[8:12]) == attackSSRC || bytes.Contains(b, []byte(attackMarker))
}

// The attacker's packets: RTP version 2, PCMU, its own SSRC and a marker at
// the start of the payload, so that a capture finds them whatever the relay
// rewrites in the header.
const (
	attackSSRC   = 0x5ea77acc
	attackMarker = "SIPEDGE-ATTACK"
)

type attackPhase struct{ from, to time.Duration } // since Start

type rtpAttacker struct {
	conn       *net.UDPConn
	target     string
	minP, maxP int
	phases     []attackPhase
	sent, recv atomic.Int64
	mu         sync.Mutex
	sources    map[string]int
	stop       chan struct{}
	wg         sync.WaitGroup
	once       sync.Once
}

// startRTPAttacker opens the attacker's socket in se-pub; Start begins the
// phases (each: every port from minP to maxP, one packet per port every
// 20 ms, like a real stream per port with consistent sequence numbers and
// timestamps, which is what a relay's probation checks).
func startRTPAttacker(t *testing.T, l *Lab, target string, minP, maxP int, phases []attackPhase) *rtpAttacker {
	t.Helper()
	conn, err := l.ListenUDP(NSPub, PubIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	a := &rtpAttacker{conn: conn, target: target, minP: minP, maxP: maxP, phases: phases,
		sources: map[string]int{}, stop: make(chan struct{})}
	a.wg.Add(1)
	go a.receive()
	t.Cleanup(a.Stop)
	return a
}

func (a *rtpAttacker) receive() {
	defer a.wg.Done()
	buf := make([]byte, 2048)
	for {
		_, from, err := a.conn.ReadFromUDP(buf)
		if err != nil {
			select {
			case <-a.stop:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			// ICMP port unreachable surfaces as a read error on Linux:
			// not a packet. Keep reading until stopped.
			time.Sleep(time.Millisecond)
			continue
		}
		a.recv.Add(1)
		a.mu.Lock()
		a.sources[from.String()]++
		a.mu.Unlock()
	}
}

func (a *rtpAttacker) from() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.sources {
		out[k] = v
	}
	return out
}

// Start runs the phases in the background.
func (a *rtpAttacker) Start() {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		start := time.Now()
		n := a.maxP - a.minP + 1
		seq := make([]uint16, n)
		ts := make([]uint32, n)
		for i := range seq {
			seq[i] = uint16(i * 1000)
			ts[i] = uint32(i) * 100000
		}
		pkt := make([]byte, 12+160)
		copy(pkt[12:], attackMarker)
		for i := 12 + len(attackMarker); i < len(pkt); i++ {
			pkt[i] = 0xff // PCMU silence
		}
		ip := net.ParseIP(a.target)
		for _, ph := range a.phases {
			select {
			case <-a.stop:
				return
			case <-time.After(time.Until(start.Add(ph.from))):
			}
			tick := time.NewTicker(20 * time.Millisecond)
			for time.Since(start) < ph.to {
				for i := 0; i < n; i++ {
					pkt[0], pkt[1] = 0x80, 0 // V=2, PT=0 (PCMU)
					binary.BigEndian.PutUint16(pkt[2:], seq[i])
					binary.BigEndian.PutUint32(pkt[4:], ts[i])
					binary.BigEndian.PutUint32(pkt[8:], attackSSRC)
					seq[i]++
					ts[i] += 160
					if _, err := a.conn.WriteToUDP(pkt, &net.UDPAddr{IP: ip, Port: a.minP + i}); err == nil {
						a.sent.Add(1)
					}
				}
				select {
				case <-a.stop:
					tick.Stop()
					return
				case <-tick.C:
				}
			}
			tick.Stop()
		}
	}()
}

// Stop ends the attack and closes the socket.
func (a *rtpAttacker) Stop() {
	a.once.Do(func() {
		close(a.stop)
		a.conn.Close()
		a.wg.Wait()
	})
}

// logCalls logs sipedge's live calls (GET /api/v1/calls) and every counter
// whose name mentions "drop", if the admin API has the endpoint.
func logCalls(t *testing.T, s *Sipedge, when string, full bool) {
	t.Helper()
	body, err := s.get("/api/v1/calls")
	if err != nil {
		t.Logf("calls %s: %v", when, err)
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Logf("calls %s: %v: %s", when, err, body)
		return
	}
	drops := map[string]float64{}
	findCounters(v, "", "drop", drops)
	keys := make([]string, 0, len(drops))
	for k := range drops {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s = %v", k, drops[k])
	}
	if !full {
		t.Logf("calls %s: dropped counters:%s", when, b.String())
		return
	}
	const max = 6000
	text := string(body)
	if len(text) > max {
		text = text[:max] + "..."
	}
	t.Logf("calls %s: %s\ndropped counters:%s", when, text, b.String())
}

// findCounters collects the numbers in v whose key contains word, by path.
func findCounters(v any, path, word string, out map[string]float64) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if n, ok := e.(float64); ok && strings.Contains(strings.ToLower(k), word) {
				out[p] = n
				continue
			}
			findCounters(e, p, word, out)
		}
	case []any:
		for i, e := range x {
			findCounters(e, fmt.Sprintf("%s[%d]", path, i), word, out)
		}
	}
}

// relayTraffic is what went to and from the relay's port range on
// EdgeIP.
type relayTraffic struct {
	In  map[string]int // packets to the relay's ports, by source IP
	Out map[string]int // packets from the relay's ports, by destination IP
	// InFlows and OutFlows are the same by source (destination) IP:port
	// and relay port: one per RTP or RTCP flow.
	InFlows, OutFlows map[flowKey]int
	// CallPorts are the relay ports that got packets other than the
	// attacker's: the call's own.
	CallPorts map[uint16]bool
	// AttackTo counts the attacker's packets per relay port; FirstAttack
	// and FirstOther are when each port got its first packet from the
	// attacker and from anyone else.
	AttackTo                map[uint16]int
	FirstAttack, FirstOther map[uint16]time.Time
	// BadSumOut counts the packets from the relay's ports with a wrong
	// UDP checksum on the wire (sniffed.badSum): meaningful only with
	// Lab.SoftwareChecksums.
	BadSumOut int
}

// flowKey is a peer's address and a relay port.
type flowKey struct {
	peer  netip.AddrPort
	relay uint16
}

// relayCounter fills a relayTraffic from a sniffer on se-edge.
type relayCounter struct {
	mu      sync.Mutex
	tr      relayTraffic
	sniffer *udpSniffer
}

func relayPort(p uint16) bool { return p >= relayPortMin && p <= relayPortMax }

// startRelayCapture starts counting the relay's traffic at spot.
func startRelayCapture(t *testing.T, l *Lab, spot relaySpot) *relayCounter {
	t.Helper()
	c := &relayCounter{tr: relayTraffic{
		In: map[string]int{}, Out: map[string]int{}, CallPorts: map[uint16]bool{},
		InFlows: map[flowKey]int{}, OutFlows: map[flowKey]int{},
		AttackTo: map[uint16]int{}, FirstAttack: map[uint16]time.Time{}, FirstOther: map[uint16]time.Time{},
	}}
	relayIP := netip.MustParseAddr(spot.IP)
	c.sniffer = sniffUDP(t, spot.NS, spot.Iface, func(p sniffed) {
		c.mu.Lock()
		defer c.mu.Unlock()
		tr := &c.tr
		if p.dst.Addr() == relayIP && spot.has(p.dst.Port()) {
			port := p.dst.Port()
			tr.In[p.src.Addr().String()]++
			tr.InFlows[flowKey{p.src, port}]++
			if isAttack(p.payload) {
				tr.AttackTo[port]++
				if tr.FirstAttack[port].IsZero() {
					tr.FirstAttack[port] = time.Now()
				}
			} else {
				tr.CallPorts[port] = true
				if tr.FirstOther[port].IsZero() {
					tr.FirstOther[port] = time.Now()
				}
			}
		}
		if p.src.Addr() == relayIP && spot.has(p.src.Port()) {
			tr.Out[p.dst.Addr().String()]++
			tr.OutFlows[flowKey{p.dst, p.src.Port()}]++
			if p.badSum {
				tr.BadSumOut++
			}
		}
	})
	return c
}

// stop ends the count.
func (c *relayCounter) stop() relayTraffic {
	c.sniffer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tr
}

// sniffed is one UDP/IPv4 packet seen on an interface.
type sniffed struct {
	src, dst netip.AddrPort
	payload  []byte // only valid during the callback
	outgoing bool   // sent by this namespace (else received)
	// badSum: the UDP checksum is set and wrong. A packet sent with
	// checksum offload (the lab's default, see Lab.SoftwareChecksums)
	// shows only a partial checksum here, which counts as wrong.
	badSum bool
}

// udpSniffer reads every IPv4 packet on one interface of a namespace
// through an AF_PACKET socket (no capture tool needed) and hands the UDP
// ones to a callback, on one goroutine.
type udpSniffer struct {
	fd      int
	stopped atomic.Bool
	done    chan struct{}
	once    sync.Once
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sniffUDP starts a sniffer on iface in ns; it runs until Stop or the end
// of the test.
func sniffUDP(t *testing.T, ns, iface string, fn func(sniffed)) *udpSniffer {
	t.Helper()
	s := &udpSniffer{fd: -1, done: make(chan struct{})}
	err := InNS(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		// SOCK_DGRAM: packets without their link-layer header. ETH_P_ALL,
		// not ETH_P_IP: only "all protocols" sockets see outgoing packets.
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(syscall.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<20)
		return syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &syscall.Timeval{Usec: 100000})
	})
	if err != nil {
		if s.fd >= 0 {
			syscall.Close(s.fd)
		}
		t.Fatalf("lab: sniffing on %s/%s: %v", ns, iface, err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		for !s.stopped.Load() {
			n, from, err := syscall.Recvfrom(s.fd, buf, 0)
			if err != nil || n < 20 {
				continue // timeout (EAGAIN), EINTR, runt
			}
			ll, _ := from.(*syscall.SockaddrLinklayer)
			if ll == nil || ll.Protocol != htons(syscall.ETH_P_IP) {
				continue
			}
			p, ok := parseUDP4(buf[:n])
			if !ok {
				continue
			}
			p.outgoing = ll.Pkttype == 4 // PACKET_OUTGOING
			fn(p)
		}
	}()
	t.Cleanup(s.Stop)
	return s
}

// parseUDP4 parses an IPv4 packet carrying a whole UDP datagram.
func parseUDP4(b []byte) (sniffed, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != 17 {
		return sniffed{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 || len(b) < ihl+8 {
		return sniffed{}, false // a later fragment, or truncated
	}
	src, _ := netip.AddrFromSlice(b[12:16])
	dst, _ := netip.AddrFromSlice(b[16:20])
	u := b[ihl:]
	end := min(len(u), int(binary.BigEndian.Uint16(u[4:6])))
	if end < 8 {
		return sniffed{}, false
	}
	return sniffed{
		src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:2])),
		dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:4])),
		payload: u[8:end],
		badSum:  binary.BigEndian.Uint16(u[6:8]) != 0 && end == int(binary.BigEndian.Uint16(u[4:6])) && udpSum(b[12:20], u[:end]) != 0xffff,
	}, true
}

// udpSum is the ones' complement sum (RFC 768) of the IPv4 pseudo-header
// (addrs: source and destination address) and the UDP datagram u,
// checksum field included: 0xffff when the checksum is right.
func udpSum(addrs, u []byte) uint16 {
	sum := uint32(17) + uint32(len(u)) // protocol, UDP length
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(addrs)
	add(u)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// Stop ends the sniffer and waits for its last callback.
func (s *udpSniffer) Stop() {
	s.once.Do(func() {
		s.stopped.Store(true)
		<-s.done
		syscall.Close(s.fd)
	})
}
