//go:build lab

package lab

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/relay/kernfwd"
)

// The relay's in-kernel fast path ([media] kernel, package relay/kernfwd)
// across the lab's real NATs: once a leg is locked (latched, its learning
// window closed; the relay's sweep checks once a second) an eBPF program on
// se-edge's tc ingress forwards its RTP straight back out of eth0 towards
// the other phone's NAT, without sipedge's sockets.

const (
	// kernelLearning is the relay's learning window in these tests: short,
	// so that the legs lock (and go to the kernel) early in the call.
	kernelLearning = time.Second
	// kernelWait bounds how long after the call is established both legs
	// of its audio stream may take to be forwarded in the kernel.
	kernelWait = 10 * time.Second
	// kernelTalk is how long the kernel tests talk: long enough that most
	// of the call is forwarded in the kernel.
	kernelTalk = 10 * time.Second
	// minKernelShare is the part of all relayed RTP packets that the
	// kernel must have forwarded by the end of the call.
	minKernelShare = 0.5
	// minKernelTone is how many seconds of the other side's tone each
	// phone must have heard beyond what could have passed through user
	// space before both legs were in the kernel.
	minKernelTone = 3.0
)

// kernelConfig is sipedge's config in the kernel tests: the fast path on
// (no start without it) on every interface of se-edge, a short learning
// window.
func kernelConfig() EdgeConfig {
	return EdgeConfig{Kernel: "on", Learning: kernelLearning}
}

// needKernelFastPath loads and attaches the fast path's program in ns (on
// every interface, as sipedge will) and detaches it again. If the kernel
// will not have it, t fails when SIPEDGE_REQUIRE_BPF is set and skips
// otherwise: sipedge with kernel = "on" would refuse to start.
func needKernelFastPath(t *testing.T, ns string) {
	t.Helper()
	var ifaces []string
	err := InNS(ns, func() error {
		kf, err := kernfwd.Open(nil)
		if err != nil {
			return err
		}
		ifaces = kf.Interfaces()
		return kf.Close()
	})
	if err != nil {
		if os.Getenv("SIPEDGE_REQUIRE_BPF") != "" {
			t.Fatalf("in-kernel fast path unavailable in %s (SIPEDGE_REQUIRE_BPF is set): %v", ns, err)
		}
		t.Skipf("in-kernel fast path unavailable in %s (set SIPEDGE_REQUIRE_BPF=1 to fail instead): %v", ns, err)
	}
	t.Logf("in-kernel fast path loads and attaches in %s (%s)", ns, strings.Join(ifaces, ", "))
}

// kernelWatch follows the one call's audio stream in the admin API.
type kernelWatch struct {
	t *testing.T
	s *Sipedge
	// In is when both legs were first seen in the kernel (zero: never),
	// InAfter how long after the call was established, AtIn the legs then.
	In      time.Time
	InAfter time.Duration
	AtIn    [2]StreamLeg
	// AtEnd are the legs right before the hang-up.
	AtEnd [2]StreamLeg
}

func newKernelWatch(t *testing.T, s *Sipedge) *kernelWatch { return &kernelWatch{t: t, s: s} }

// legs are the legs of the one live call's first stream.
func (k *kernelWatch) legs() ([2]StreamLeg, error) {
	calls, err := k.s.Calls()
	if err != nil {
		return [2]StreamLeg{}, err
	}
	if len(calls) != 1 || len(calls[0].Streams) == 0 {
		return [2]StreamLeg{}, fmt.Errorf("want one call with a relayed stream, have %+v", calls)
	}
	return calls[0].Streams[0].Legs, nil
}

// waitIn polls the API (every 100 ms, up to kernelWait) until both legs
// are forwarded in the kernel; it fails t if they never are. It logs when
// each leg latched, locked and went to the kernel. Call it as
// audioOpts.Talking: the call has just been established.
func (k *kernelWatch) waitIn() {
	k.t.Helper()
	established := time.Now()
	var first [2]map[string]time.Duration
	for i := range first {
		first[i] = map[string]time.Duration{}
	}
	when := func(i int, what string) string {
		if d, ok := first[i][what]; ok {
			return d.String()
		}
		return "never"
	}
	var legs [2]StreamLeg
	var err error
	for {
		legs, err = k.legs()
		now := time.Since(established)
		if err == nil {
			for i, lg := range legs {
				for what, on := range map[string]bool{"latched": lg.Latched, "locked": lg.Locked, "kernel": lg.Kernel} {
					if _, seen := first[i][what]; on && !seen {
						first[i][what] = now.Round(10 * time.Millisecond)
					}
				}
			}
			if legs[0].Kernel && legs[1].Kernel {
				k.In, k.InAfter, k.AtIn = time.Now(), now, legs
				break
			}
		}
		if now > kernelWait {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, side := range []string{"caller's", "callee's"} {
		k.t.Logf("%s leg, first seen (polling every 100 ms) after the call was established: latched %s, locked %s, in the kernel %s",
			side, when(i, "latched"), when(i, "locked"), when(i, "kernel"))
	}
	if k.In.IsZero() {
		if err != nil {
			k.t.Errorf("the call's legs were not both forwarded in the kernel within %v of the call being established: %v", kernelWait, err)
			return
		}
		k.t.Errorf("the call's legs were not both forwarded in the kernel within %v of the call being established (learning window %v); last seen:\n  caller's: %v\n  callee's: %v",
			kernelWait, kernelLearning, legs[0], legs[1])
		return
	}
	k.t.Logf("both legs in the kernel %v after the call was established:\n  caller's: %v\n  callee's: %v",
		k.InAfter.Round(10*time.Millisecond), legs[0], legs[1])
}

// stillIn checks, right before the hang-up, that both legs are still in
// the kernel and that /metrics counts them. Call it in
// audioOpts.BeforeHangup.
func (k *kernelWatch) stillIn() {
	k.t.Helper()
	legs, err := k.legs()
	if err != nil {
		k.t.Errorf("calls before hang-up: %v", err)
		return
	}
	k.AtEnd = legs
	k.t.Logf("legs before hang-up:\n  caller's: %v\n  callee's: %v", legs[0], legs[1])
	if k.In.IsZero() {
		return // waitIn has said it
	}
	if !legs[0].Kernel || !legs[1].Kernel {
		k.t.Errorf("by the end of the call a leg had left the kernel (caller's kernel=%v, callee's kernel=%v)", legs[0].Kernel, legs[1].Kernel)
	}
	m, err := k.s.Metrics()
	if err != nil {
		k.t.Errorf("metrics: %v", err)
		return
	}
	if n := MetricSum(m, "sipedge_relay_kernel_legs"); n != 2 {
		k.t.Errorf("sipedge_relay_kernel_legs = %v during the call, want 2", n)
	}
}

// wantShare checks, after the call, that the kernel's entries are gone and
// that the kernel forwarded at least minKernelShare of the relayed RTP
// (sipedge_relay_kernel_packets_total against sipedge_relay_packets_total,
// which includes it), and that each phone heard at least minKernelTone
// seconds of the other's tone more than user space could have carried
// before both legs were in the kernel: so both directions went through it.
func (k *kernelWatch) wantShare(r audioResult) {
	k.t.Helper()
	var m map[string]float64
	var err error
	deadline := time.Now().Add(3 * time.Second)
	for {
		m, err = k.s.Metrics()
		if err != nil {
			k.t.Errorf("metrics: %v", err)
			return
		}
		if MetricSum(m, "sipedge_relay_kernel_legs") == 0 {
			break
		}
		if time.Now().After(deadline) {
			k.t.Errorf("sipedge_relay_kernel_legs = %v 3 s after the call ended, want 0: the kernel's entries outlive the call",
				MetricSum(m, "sipedge_relay_kernel_legs"))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	kern := MetricSum(m, "sipedge_relay_kernel_packets_total")
	all := MetricSum(m, "sipedge_relay_packets_total")
	share := 0.0
	if all > 0 {
		share = kern / all
	}
	k.t.Logf("/metrics after the call: sipedge_relay_kernel_packets_total %v of sipedge_relay_packets_total %v (%.0f%%; caller->callee %v, callee->caller %v); dropped: foreign %v, learning %v",
		kern, all, 100*share,
		m[`sipedge_relay_packets_total{direction="caller_to_callee"}`], m[`sipedge_relay_packets_total{direction="callee_to_caller"}`],
		m[`sipedge_relay_dropped_total{reason="foreign_source"}`], m[`sipedge_relay_dropped_total{reason="learning"}`])
	if share < minKernelShare {
		k.t.Errorf("the kernel forwarded %v of %v relayed RTP packets (%.0f%%), want >= %.0f%%", kern, all, 100*share, 100*minKernelShare)
	}
	if k.In.IsZero() {
		return
	}
	user := k.InAfter.Seconds()
	for _, c := range []struct {
		who   Phone
		got   float64
		other Phone
	}{{r.From, r.CallerGot, r.To}, {r.To, r.CalleeGot, r.From}} {
		if c.got-user < minKernelTone {
			k.t.Errorf("%s heard %.1f s of %s's tone, at most %.1f s of which can have passed before both legs were in the kernel: want >= %.0f s more",
				c.who.User, c.got, c.other.User, user, minKernelTone)
		}
	}
}

// TestLabAudioKernel: TestLabAudioConeToSym (A behind the cone NAT calls B
// behind the symmetric NAT, two-way tones through the relay) with the
// in-kernel fast path on and a 1 s learning window. Both legs must be
// forwarded in the kernel within kernelWait of the answer and stay there to
// the end; the kernel must have forwarded at least half of the call's RTP
// and carried several seconds of tone each way; the sniffer on se-edge
// must see the relayed flows leave the relay's ports for the NATs' public
// addresses.
func TestLabAudioKernel(t *testing.T) {
	l, s := mediaLabWith(t, kernelConfig())
	if err := l.SoftwareChecksums(); err != nil {
		t.Fatal(err)
	}
	k := newKernelWatch(t, s)
	r := audioCall(t, l, s, alice, bob, audioOpts{
		Talk:    kernelTalk,
		Talking: k.waitIn,
		BeforeHangup: func() {
			k.stillIn()
			logCalls(t, s, "before hanging up", false)
		},
	})
	wantTwoWay(t, r)
	wantRelayed(t, r)
	k.wantShare(r)
	t.Logf("packets from the relay's ports with a wrong UDP checksum on se-edge's wire: %d", r.Relay.BadSumOut)
	if r.Relay.BadSumOut != 0 {
		t.Errorf("%d packets left the relay's ports with a wrong UDP checksum (the routers and phones drop them): the fast path's rewrite breaks the checksum", r.Relay.BadSumOut)
	}
}

// TestLabRTPInjectionKernel: TestLabRTPInjection with the in-kernel fast
// path on and a 1 s learning window, so that the attack's second phase
// (attackLate) comes while both legs are forwarded in the kernel. The
// attacker's packets (another source) do not match a kernel entry and go
// up to the relay's sockets, which must drop them: none reaches a phone,
// and the legs' dropped_foreign grows by at least 100 (the late phase sends
// 100 to each of the call's ports) while they are in the kernel.
func TestLabRTPInjectionKernel(t *testing.T) {
	l, s := mediaLabWith(t, kernelConfig())
	k := newKernelWatch(t, s)
	var attackStart time.Time
	r := rtpInjection(t, l, s, audioOpts{
		BeforeDial: func() { attackStart = time.Now() },
		Talking:    k.waitIn,
		BeforeHangup: func() {
			k.stillIn()
			logCalls(t, s, "before hanging up, after both attack phases", false)
		},
	})
	k.wantShare(r)
	if k.In.IsZero() {
		return
	}
	inAt := k.In.Sub(attackStart)
	t.Logf("both legs were in the kernel %v after the attack began (%v after the call was established); the late attack phase ran %v-%v after it began",
		inAt.Round(10*time.Millisecond), k.InAfter.Round(10*time.Millisecond), attackLate.from, attackLate.to)
	if inAt > attackLate.from {
		t.Errorf("the legs went to the kernel %v into the attack, after its late phase began (%v): the attack did not test the kernel path",
			inAt.Round(10*time.Millisecond), attackLate.from)
	}
	in := int64(k.AtIn[0].DroppedForeign + k.AtIn[1].DroppedForeign)
	end := int64(k.AtEnd[0].DroppedForeign + k.AtEnd[1].DroppedForeign)
	t.Logf("dropped_foreign (both legs): %d when the legs went to the kernel, %d before the hang-up", in, end)
	if end-in < 100 {
		t.Errorf("dropped_foreign grew by %d while the legs were in the kernel, want >= 100: the attacker's packets were not counted as foreign (or did not reach the relay's sockets)", end-in)
	}
}
