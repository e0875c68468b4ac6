//go:build linux

package edge_test

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/cli"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/internal/bpftest"
)

// TestMediaKernelFastPath: with media.kernel = "on", a call between two
// NATed phones is relayed in user space until its legs lock and by the
// kernel after; the API and /metrics say so, media keeps flowing both ways
// from the right relay ports, and an attacker's packets still never reach
// a phone.
func TestMediaKernelFastPath(t *testing.T) {
	t.Parallel()
	bpftest.Forwarder(t, "lo").Close() // skip (or fail) here if it cannot load
	srv := edgetest.Start(t, edgetest.Base+"\n[media]\nlearning = \"300ms\"\nkernel = \"on\"\nkernel_interfaces = [\"lo\"]\n")
	mc := startMediaCall(t, srv)
	mc.aRTP.sendAsync(mc.aDst, 1000, 100)
	mc.bRTP.sendAsync(mc.bDst, 2000, 100)

	legs := func() [2]admin.StreamLeg {
		var calls []admin.Call
		srv.GetJSON(t, "/api/v1/calls", &calls)
		if len(calls) != 1 || len(calls[0].Streams) != 1 {
			t.Fatalf("calls = %+v", calls)
		}
		return calls[0].Streams[0].Legs
	}
	deadline := time.Now().Add(5 * time.Second)
	for l := legs(); !l[0].Kernel || !l[1].Kernel; l = legs() {
		if time.Now().After(deadline) {
			t.Fatalf("legs never went to the kernel: %+v", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mc.aRTP.wg.Wait()
	mc.bRTP.wg.Wait()

	// Now in the kernel: more media, and an attacker.
	evil := newRTPEnd(t, "127.0.0.66", 0xBAD)
	mc.aRTP.sendAsync(mc.aDst, 1100, 100)
	mc.bRTP.sendAsync(mc.bDst, 2100, 100)
	for _, dst := range []netip.AddrPort{mc.aDst, mc.bDst} {
		evil.send(dst, 1, 50)
	}
	if a, b := mc.bRTP.waitCount(0xA11CE, 190, 5*time.Second), mc.aRTP.waitCount(0xB0B, 190, 5*time.Second); a < 190 || b < 190 {
		t.Errorf("bob got %d of alice's 200 packets, alice %d of bob's; want >= 190 each", a, b)
	}
	if n := mc.aRTP.count(0xBAD) + mc.bRTP.count(0xBAD); n != 0 {
		t.Errorf("%d injected packets reached the phones, want 0", n)
	}
	mc.checkSymmetric(t)
	l := legs()
	if l[0].Packets < 190 || l[1].Packets < 190 || l[0].Lost != 0 || l[1].Lost != 0 {
		t.Errorf("per-leg counters: alice %d (lost %d), bob %d (lost %d); want >= 190 and no loss", l[0].Packets, l[0].Lost, l[1].Packets, l[1].Lost)
	}
	if d := l[0].DroppedForeign + l[1].DroppedForeign; d < 100 {
		t.Errorf("%d foreign packets counted, want the attacker's 100", d)
	}
	var out, errb bytes.Buffer
	if rc := cli.Main([]string{"call", "list", "--admin", "http://" + srv.Admin, "--token", srv.Token}, &out, &errb); rc != 0 {
		t.Fatalf("sipedge call list: exit %d: %s", rc, errb.String())
	}
	if n := strings.Count(out.String(), ", in kernel"); n != 2 {
		t.Errorf("sipedge call list marks %d directions \"in kernel\", want 2:\n%s", n, out.String())
	}
	m := metricsText(t, srv)
	if !strings.Contains(m, "sipedge_relay_kernel_legs 2\n") {
		t.Errorf("/metrics: %s", grepLines(m, "kernel"))
	}
	var kp int
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, "sipedge_relay_kernel_packets_total "); ok {
			kp = atoiOr0(v)
		}
	}
	if kp < 150 {
		t.Errorf("sipedge_relay_kernel_packets_total = %d, want >= 150 (the 200 sent after the legs locked)", kp)
	}

	hangup(t, mc.out, mc.in, "alice", "bob")
	deadline = time.Now().Add(3 * time.Second)
	for !strings.Contains(metricsText(t, srv), "sipedge_relay_kernel_legs 0\n") {
		if time.Now().After(deadline) {
			t.Fatal("kernel legs left after the call ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func atoiOr0(s string) int {
	n := 0
	for _, c := range strings.TrimSpace(s) {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}
