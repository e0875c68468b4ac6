package keepalive

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

var local = netip.MustParseAddrPort("198.51.100.10:5060")

func flow(port uint16) sipx.Flow {
	return sipx.Flow{Transport: sipx.UDP, Local: local,
		Remote: netip.AddrPortFrom(netip.MustParseAddr("198.51.100.21"), port)}
}

func TestNextIsOnTheGrid(t *testing.T) {
	iv := 25 * time.Second
	at := func(s float64) time.Time { return time.Unix(0, int64(s*float64(time.Second))) }
	for _, c := range []struct {
		phase time.Duration
		after float64
		want  float64
	}{
		{0, 0, 25},
		{0, 1, 25},
		{0, 24.999, 25},
		{0, 25, 50}, // strictly after
		{3 * time.Second, 0, 3},
		{3 * time.Second, 3, 28},
		{3 * time.Second, 27.5, 28},
		{3 * time.Second, 1e9, 1e9 + 3}, // 1e9 = 40e6 intervals
		{24 * time.Second, 1e9 + 24.5, 1e9 + 49},
	} {
		got := Next(c.phase, iv, at(c.after))
		if !got.Equal(at(c.want)) {
			t.Errorf("Next(phase %v, after %v) = %v, want %v", c.phase, c.after, got.Sub(time.Unix(0, 0)).Seconds(), c.want)
		}
	}
	if !Next(0, 0, at(5)).IsZero() {
		t.Error("interval 0 must mean never")
	}
}

// TestTimeoutInvariants: the defaults beat the NAT timeouts they exist for.
func TestTimeoutInvariants(t *testing.T) {
	const natStream, natUnassured = 30 * time.Second, 20 * time.Second
	if DefaultInterval >= natStream {
		t.Errorf("default interval %v does not beat a %v NAT timeout", DefaultInterval, natStream)
	}
	if firstMin+firstSpread >= natUnassured {
		t.Errorf("first ping at up to %v comes after a %v unassured-flow timeout", firstMin+firstSpread, natUnassured)
	}
	// Linux assures a UDP flow (stream timeout) only for a packet more
	// than 2 s after it began; an earlier ping only restarts the short one.
	if firstMin <= 2*time.Second {
		t.Errorf("first ping at %v: too early to assure the NAT binding", firstMin)
	}
	if DefaultTimeout >= DefaultInterval {
		t.Errorf("timeout %v must be under the interval %v", DefaultTimeout, DefaultInterval)
	}
}

// TestScheduleGaps walks many flows' schedules from First: the first ping
// within 5 s, then never more than one interval between pings.
func TestScheduleGaps(t *testing.T) {
	seed := maphash.MakeSeed()
	added := time.Unix(1_700_000_000, 123456789)
	for _, iv := range []time.Duration{DefaultInterval, 3 * time.Second, 90 * time.Second} {
		for p := uint16(1); p < 500; p++ {
			ph := Phase(seed, flow(p), iv)
			if ph < 0 || ph >= iv {
				t.Fatalf("phase %v outside [0, %v)", ph, iv)
			}
			at := First(ph, iv, added)
			if d := at.Sub(added); d < firstMin || d >= firstMin+firstSpread {
				t.Fatalf("interval %v: first ping %v after the flow appeared, want [%v, %v)", iv, d, firstMin, firstMin+firstSpread)
			}
			for range 5 {
				n := Next(ph, iv, at)
				if d := n.Sub(at); d <= 0 || d > iv {
					t.Fatalf("interval %v: gap %v between pings", iv, d)
				}
				at = n
			}
		}
	}
}

// TestPhaseSpreadsEvenly: 100,000 flows land evenly over the interval.
func TestPhaseSpreadsEvenly(t *testing.T) {
	seed := maphash.MakeSeed()
	const n, bins = 100_000, 100
	var count [bins]int
	for i := range n {
		f := sipx.Flow{Transport: sipx.UDP, Local: local,
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), uint16(5060+i%7))}
		ph := Phase(seed, f, DefaultInterval)
		count[int(ph*bins/DefaultInterval)]++
	}
	mean := n / bins
	for i, c := range count {
		if c < mean*85/100 || c > mean*115/100 {
			t.Fatalf("bin %d has %d flows, mean %d: phases are not spread evenly", i, c, mean)
		}
	}
}

// harness is a Manager with a fake clock and a recording sender.
type harness struct {
	t       *testing.T
	now     time.Time
	m       *Manager
	mu      sync.Mutex
	sent    []sent
	pol     map[sipx.Flow]Policy
	changes []string
}

type sent struct {
	at     time.Time
	f      sipx.Flow
	b      string
	branch string
}

func newHarness(t *testing.T, cfg Config) *harness {
	h := &harness{t: t, now: time.Unix(1_700_000_000, 0), pol: map[sipx.Flow]Policy{}}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Now = func() time.Time { return h.now }
	cfg.Send = func(f sipx.Flow, b []byte) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		s := sent{at: h.now, f: f, b: string(b)}
		if i := strings.Index(s.b, "branch="); i >= 0 {
			s.branch = strings.Fields(strings.ReplaceAll(s.b[i+7:], ";", " "))[0]
		}
		h.sent = append(h.sent, s)
		return nil
	}
	cfg.Build = func(f sipx.Flow, branch string) []byte {
		return OptionsPing(f, branch, "198.51.100.10", 5060, "sipedge.test")
	}
	cfg.Policy = func(f sipx.Flow) (Policy, bool) {
		p, ok := h.pol[f]
		return p, ok
	}
	cfg.OnStatus = func(f sipx.Flow, old, new Status, st State) {
		h.changes = append(h.changes, fmt.Sprintf("%d:%v->%v", f.Remote.Port(), old, new))
	}
	h.m = New(cfg)
	return h
}

// run advances the clock to d from now in steps, calling Step whenever
// something is due, like Run does.
func (h *harness) run(d time.Duration) {
	end := h.now.Add(d)
	for {
		next := h.m.Step()
		if next.IsZero() || next.After(end) {
			h.now = end
			return
		}
		if next.After(h.now) {
			h.now = next
		}
	}
}

func (h *harness) take() []sent {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sent
	h.sent = nil
	return s
}

// ping runs until the next ping is sent (within max) and returns it; the
// clock stops at the ping.
func (h *harness) ping(max time.Duration) sent {
	end := h.now.Add(max)
	for {
		next := h.m.Step()
		if s := h.take(); len(s) > 0 {
			return s[0]
		}
		if next.IsZero() || next.After(end) {
			h.t.Fatalf("no ping within %v", max)
		}
		h.now = next
	}
}

// answer sends the answer to ping s from remote after rtt.
func (h *harness) answer(s sent, from sipx.Flow, rtt time.Duration, code int) bool {
	h.now = h.now.Add(rtt)
	msg, err := sipx.ParseMessage([]byte(s.b))
	if err != nil {
		h.t.Fatal(err)
	}
	res := sipx.NewResponse(msg.(*sipx.Request), code, "OK")
	return h.m.Response(res, from)
}

func TestManagerPingsAndMeasures(t *testing.T) {
	h := newHarness(t, Config{Default: Policy{Interval: 20 * time.Second}})
	f := flow(4000)
	h.pol[f] = Policy{Interval: 20 * time.Second}
	start := h.now
	h.m.Track(f, h.pol[f], false)
	s := []sent{h.ping(6 * time.Second)}
	if !strings.HasPrefix(s[0].b, "OPTIONS sip:198.51.100.21:4000 ") || s[0].f != f {
		t.Fatalf("want an OPTIONS to the flow within 5 s, got %+v", s)
	}
	if d := s[0].at.Sub(start); d < 2500*time.Millisecond || d >= 5*time.Second {
		t.Fatalf("first ping %v after Track", d)
	}
	// The answer from elsewhere does not count; from the flow it does.
	other := flow(4999)
	if !h.answer(s[0], other, 0, 200) {
		t.Fatal("a ping answer must be consumed even when it is not accepted")
	}
	if !h.answer(s[0], f, 30*time.Millisecond, 200) {
		t.Fatal("answer not consumed")
	}
	st, _ := h.m.State(f)
	if st.Status != OK || st.RTT != 30*time.Millisecond || st.Answered != 1 || st.Misses != 0 {
		t.Fatalf("after a 30 ms answer: %+v", st)
	}
	// A duplicate answer is ignored.
	h.answer(s[0], f, 10*time.Millisecond, 200)
	if st, _ := h.m.State(f); st.Answered != 1 {
		t.Fatalf("duplicate answer counted: %+v", st)
	}
	// Steady pinging: one ping per interval, none answered.
	var last time.Time
	for i := range 5 {
		p := h.ping(21 * time.Second)
		if i > 0 && p.at.Sub(last) != 20*time.Second {
			t.Fatalf("gap %v between pings", p.at.Sub(last))
		}
		last = p.at
		h.run(6 * time.Second) // past the answer timeout
	}
	// None was answered: 3 misses make it unreachable, reported once.
	st, _ = h.m.State(f)
	if st.Status != Unreachable || st.Misses != 5 {
		t.Fatalf("after 5 unanswered pings: %+v", st)
	}
	if got := strings.Join(h.changes, " "); got != "4000:unknown->ok 4000:ok->unreachable" {
		t.Fatalf("status changes %q", got)
	}
	h.changes = nil
	// A slow answer to the next ping: reachable again, but lagged.
	h.answer(h.ping(20*time.Second), f, 1500*time.Millisecond, 200)
	st, _ = h.m.State(f)
	if st.Status != Lagged || st.MinRTT != 30*time.Millisecond || st.AvgRTT != 765*time.Millisecond {
		t.Fatalf("after a 1.5 s answer: %+v", st)
	}
	hist := st.History
	if len(hist) != 7 || hist[0] != 30*time.Millisecond || hist[1] != -1 || hist[6] != 1500*time.Millisecond {
		t.Fatalf("history %v", hist)
	}
	if got := strings.Join(h.changes, " "); got != "4000:unreachable->lagged" {
		t.Fatalf("status changes %q", got)
	}
}

// TestManagerRegistrationLifetime: a flow lives while a registration uses
// it or a dialog holds it, and no longer.
func TestManagerRegistrationLifetime(t *testing.T) {
	h := newHarness(t, Config{})
	f := flow(4000)
	h.pol[f] = Policy{Interval: 10 * time.Second}
	h.m.Track(f, h.pol[f], false)
	h.ping(6 * time.Second)
	h.run(30 * time.Second)
	if n := len(h.take()); n != 3 {
		t.Fatalf("%d pings in 30 s at 10 s", n)
	}
	// A call starts, then the registration goes: the dialog keeps the flow.
	h.m.DialogUp("call-1", f)
	delete(h.pol, f)
	h.run(30 * time.Second)
	if n := len(h.take()); n != 3 {
		t.Fatalf("during the call, unregistered: %d pings in 30 s, want 3", n)
	}
	if st, ok := h.m.State(f); !ok || st.Registered || st.Dialogs != 1 {
		t.Fatalf("state during the call: %+v %v", st, ok)
	}
	h.m.DialogDown("call-1")
	h.run(30 * time.Second)
	if n := len(h.take()); n != 0 || h.m.Len() != 0 {
		t.Fatalf("after the call: %d pings, %d flows kept", n, h.m.Len())
	}
	// A registration whose policy turns keepalives off stops at the next ping.
	h.pol[f] = Policy{Interval: 10 * time.Second}
	h.m.Track(f, h.pol[f], false)
	h.run(6 * time.Second)
	h.take()
	h.pol[f] = Policy{Interval: 0}
	h.run(30 * time.Second)
	if n := len(h.take()); n != 0 || h.m.Len() != 0 {
		t.Fatalf("keepalive turned off: %d pings, %d flows", n, h.m.Len())
	}
	// Interval 0 from the start: never tracked.
	h.m.Track(f, Policy{Interval: 0}, false)
	if h.m.Len() != 0 {
		t.Fatal("a flow with keepalives off was tracked")
	}
}

// TestManagerDialogOnly: a dialog's NATed flows are pinged even when no
// registration uses them (a caller that never registered, a trunk).
func TestManagerDialogOnly(t *testing.T) {
	h := newHarness(t, Config{Default: Policy{Interval: 15 * time.Second}})
	h.m.DialogUp("c1", flow(4000), flow(4001), flow(4000))
	h.m.DialogUp("c1", flow(4000)) // retransmitted 2xx
	h.run(6 * time.Second)
	first := map[sipx.Flow]int{}
	for _, x := range h.take() {
		first[x.f]++
	}
	if len(first) != 2 {
		t.Fatalf("first pings went to %v, want both flows", first)
	}
	h.run(15 * time.Second)
	if s := h.take(); len(s) != 2 {
		t.Fatalf("%d pings, want one per flow", len(s))
	}
	h.m.DialogUp("c2", flow(4001))
	h.m.DialogDown("c1")
	h.run(15 * time.Second)
	s := h.take()
	if len(s) != 1 || s[0].f != flow(4001) {
		t.Fatalf("after c1 ended, only c2's flow: %+v", s)
	}
	h.m.DialogDown("c2")
	h.m.DialogDown("c2")
	if h.m.Len() != 0 {
		t.Fatal("flows kept after every dialog ended")
	}
}

func TestManagerCRLF(t *testing.T) {
	h := newHarness(t, Config{})
	f := flow(4000)
	h.pol[f] = Policy{Interval: 10 * time.Second, Method: MethodCRLF}
	h.m.Track(f, h.pol[f], false)
	h.ping(6 * time.Second)
	h.run(60 * time.Second)
	s := h.take()
	if len(s) != 6 || s[0].b != "\r\n\r\n" {
		t.Fatalf("CRLF pings: %d, first %q", len(s), s[0].b)
	}
	if st, _ := h.m.State(f); st.Status != Unmonitored || st.Misses != 0 {
		t.Fatalf("a CRLF-pinged flow has no status to miss: %+v", st)
	}
}

// TestManagerRestoredNoBurst: flows restored at start-up do not all ping
// in the first seconds.
func TestManagerRestoredNoBurst(t *testing.T) {
	h := newHarness(t, Config{})
	for p := range uint16(1000) {
		f := flow(10000 + p)
		h.pol[f] = Policy{Interval: DefaultInterval}
		h.m.Track(f, h.pol[f], true)
	}
	h.run(5 * time.Second)
	if n := len(h.take()); n > 300 {
		t.Fatalf("%d of 1000 restored flows pinged in the first 5 s of a 25 s interval", n)
	}
}

// TestManagerNoBursts: 20,000 flows appearing at once (a router reboot)
// are pinged evenly once past their first ping: no 100 ms window holds
// more than 1.5× its share.
func TestManagerNoBursts(t *testing.T) {
	h := newHarness(t, Config{})
	const n = 20_000
	for i := range n {
		f := sipx.Flow{Transport: sipx.UDP, Local: local,
			Remote: netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 250)}), uint16(1024+i))}
		h.pol[f] = Policy{Interval: DefaultInterval}
		h.m.Track(f, h.pol[f], false)
	}
	start := h.now
	h.run(10 * time.Second) // the first pings
	h.take()
	h.run(2 * DefaultInterval)
	s := h.take()
	if len(s) != 2*n {
		t.Fatalf("%d pings in two intervals, want %d", len(s), 2*n)
	}
	win := map[int64]int{}
	for _, x := range s {
		win[int64(x.at.Sub(start)/(100*time.Millisecond))]++
	}
	share := float64(n) / float64(DefaultInterval/(100*time.Millisecond))
	for w, c := range win {
		if float64(c) > 1.5*share {
			t.Fatalf("window %d: %d pings, fair share %.0f", w, c, share)
		}
	}
}

func TestResponseIgnoresOthers(t *testing.T) {
	h := newHarness(t, Config{})
	req, err := sipx.ParseMessage([]byte("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKproxy1\r\n" +
		"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.m.Response(sipx.NewResponse(req.(*sipx.Request), 200, "OK"), flow(1)) {
		t.Fatal("a response to someone else's request was taken as a ping answer")
	}
	for _, b := range []string{"z9hG4bKka.", "z9hG4bKka.zz", "z9hG4bKka.1.", "z9hG4bKka.!.1", "z9hG4bKka.1.99999999999999"} {
		r := strings.Replace(string(mustBytes(req)), "z9hG4bKproxy1", b, 1)
		m, err := sipx.ParseMessage([]byte(r))
		if err != nil {
			t.Fatal(err)
		}
		if !h.m.Response(sipx.NewResponse(m.(*sipx.Request), 200, "OK"), flow(1)) {
			t.Fatalf("branch %q: ours, must be consumed", b)
		}
	}
}

func mustBytes(m sipx.Message) []byte { return []byte(m.String()) }

// TestManagerLateStepsCountEveryMiss: with the timeout as long as the
// interval and steps running late, a ping replaced while unanswered is
// still counted missed (the benchmark once saw half of them forgotten).
func TestManagerLateStepsCountEveryMiss(t *testing.T) {
	h := newHarness(t, Config{Timeout: 5 * time.Second})
	f := flow(4000)
	h.pol[f] = Policy{Interval: 5 * time.Second}
	h.m.Track(f, h.pol[f], false)
	for i := range 200 {
		next := h.m.Step()
		if next.IsZero() {
			t.Fatal("nothing scheduled")
		}
		h.now = next.Add(time.Duration(i%4) * 10 * time.Millisecond) // 0-30 ms late
	}
	h.m.Step()
	sent := uint64(len(h.take()))
	st, _ := h.m.State(f)
	if st.Answered != 0 || st.Sent != sent || uint64(st.Misses) < sent-1 || st.Status != Unreachable {
		t.Fatalf("%d pings sent, none answered: state %+v", sent, st)
	}
}
