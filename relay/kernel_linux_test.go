//go:build linux

package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sipedge/sipedge/internal/bpftest"
	"github.com/sipedge/sipedge/relay/kernfwd"
)

func kernelLegs(s *Session) (a, b bool) {
	st := s.Info().Streams[0]
	return st.A.Kernel, st.B.Kernel
}

// TestKernelFastPath follows a call through the in-kernel fast path: user
// space until the legs lock, the kernel after, foreign packets still
// dropped and counted by user space, statistics kept whole, and user space
// taking the legs back on a new SSRC, a re-INVITE and the end of the call.
func TestKernelFastPath(t *testing.T) {
	kf := bpftest.Forwarder(t, "lo")
	clk := newFakeClock()
	r := newTestRelay(t, Config{Now: clk.Now, Kernel: kf})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	evil := listenUDP(t, "127.0.0.66")
	pa := Peer{RTP: ap("10.11.12.13:4000"), Source: ip("127.0.0.2"), NAT: true, Media: "audio"}
	s := setupCall(t, r, "call-kernel", a, b, "127.0.0.1", pa, b.peer())

	for i := range 10 {
		a.sendRTP(fmt.Sprintf("a%d", i))
	}
	for i := 3; i < 10; i++ { // Probation holds back the first three
		b.expectRTP(fmt.Sprintf("a%d", i))
	}
	b.sendRTP("b0")
	a.expectRTP("b0")
	r.sweep(clk.Now())
	if ka, kb := kernelLegs(s); ka || kb {
		t.Fatalf("offloaded inside the learning window: A %v B %v", ka, kb)
	}

	clk.Add(10 * time.Second) // the window closes: both legs locked
	r.sweep(clk.Now())
	if ka, kb := kernelLegs(s); !ka || !kb {
		t.Fatalf("locked legs not offloaded: A %v B %v", ka, kb)
	}
	if tot := r.Totals(); tot.KernelLegs != 2 {
		t.Fatalf("KernelLegs %d", tot.KernelLegs)
	}
	recvBefore := r.Totals().RecvCalls
	wantBytes := 0
	for i := range 50 {
		wantBytes += 2 * (12 + len(fmt.Sprintf("ka%d", i)))
		a.sendRTP(fmt.Sprintf("ka%d", i))
		b.expectRTP(fmt.Sprintf("ka%d", i))
		b.sendRTP(fmt.Sprintf("kb%d", i))
		a.expectRTP(fmt.Sprintf("kb%d", i))
	}
	if n := r.Totals().RecvCalls - recvBefore; n != 0 {
		t.Fatalf("user space received %d batches while the kernel forwarded", n)
	}
	info := s.Info().Streams[0]
	tot := r.Totals()
	if tot.KernelPackets != 100 || tot.KernelBytes != uint64(wantBytes) {
		t.Fatalf("kernel counted %d packets, %d bytes; want 100, %d", tot.KernelPackets, tot.KernelBytes, wantBytes)
	}
	if info.A.Packets != 7+50 || info.B.Packets != 1+50 || info.A.Lost != 0 || info.B.Lost != 0 ||
		info.A.Expected != 57 || info.B.Expected != 51 {
		t.Fatalf("statistics after the kernel forwarded: A %d/%d lost %d, B %d/%d lost %d",
			info.A.Packets, info.A.Expected, info.A.Lost, info.B.Packets, info.B.Expected, info.B.Lost)
	}
	if d := clk.Now().Sub(info.A.LastSeen); d < -time.Second || d > 2*time.Second {
		t.Fatalf("last seen %s from now", d)
	}
	if tot.PacketsAtoB < 57 || tot.PacketsBtoA < 51 {
		t.Fatalf("totals do not include the kernel's packets: %+v", tot)
	}

	// A stranger, and A's own NAT IP from another port, are still user
	// space's to drop and count: none reaches a phone.
	natEvil := listenUDP(t, "127.0.0.2")
	sent := 0
	for i := range 20 {
		for _, from := range []interface {
			WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error)
		}{evil, natEvil} {
			for _, dst := range []netip.AddrPort{a.relayRTP, b.relayRTP} {
				if _, err := from.WriteToUDPAddrPort(makeRTP(0, uint16(1100+i), 0, 0xb, []byte("EVIL")), dst); err != nil {
					t.Fatal(err)
				}
				sent++
			}
		}
	}
	waitFor(t, "foreign packets counted", func() bool { return r.Totals().DroppedForeign == uint64(sent) })
	expectOnlyEnd(t, a, b)

	// RTCP stays in user space and is forwarded there.
	a.sendRTCP(a.rtcp, a.relayRTCP, makeRTCP(true, 0xa))
	if _, from := readFrom(t, b.rtcp); from != b.relayRTCP {
		t.Fatalf("RTCP from %s", from)
	}

	// A new SSRC from A: the kernel leaves it to user space, which forwards
	// it and takes the leg back; the sweep offloads it again.
	a.ssrc = 0xa2
	a.sendRTP("new-ssrc")
	b.expectRTP("new-ssrc")
	if ka, kb := kernelLegs(s); ka || !kb {
		t.Fatalf("after a new SSRC: A in kernel %v (want false), B %v (want true)", ka, kb)
	}
	r.sweep(clk.Now())
	if ka, _ := kernelLegs(s); !ka {
		t.Fatal("A not offloaded again with its new SSRC")
	}
	a.sendRTP("kernel-again")
	b.expectRTP("kernel-again")

	// A sequence jump: the kernel leaves it to user space, which forwards
	// it and takes the leg back.
	a.seq += 20000
	a.sendRTP("jump")
	b.expectRTP("jump")
	if ka, _ := kernelLegs(s); ka {
		t.Fatal("A still in the kernel after a sequence jump")
	}
	r.sweep(clk.Now())
	if ka, _ := kernelLegs(s); !ka {
		t.Fatal("A not offloaded again after the jump")
	}

	// A re-INVITE from B: both directions back to user space at once.
	keyA := kernfwd.Key{Peer: a.rtpAddr(), Port: a.relayRTP.Port()}
	s.SetPeer(0, B, b.peer())
	if ka, kb := kernelLegs(s); ka || kb {
		t.Fatalf("after SetPeer: A %v B %v, want both in user space", ka, kb)
	}
	if _, err := kf.Read(keyA); !errors.Is(err, kernfwd.ErrNotFound) {
		t.Fatalf("A's entry survived SetPeer: %v", err)
	}
	a.sendRTP("user-again")
	b.expectRTP("user-again")
	b.sendRTP("b-user-again") // B's window runs from its first packet
	a.expectRTP("b-user-again")

	clk.Add(10 * time.Second)
	r.sweep(clk.Now())
	if ka, kb := kernelLegs(s); !ka || !kb {
		t.Fatalf("not offloaded after the new window: A %v B %v", ka, kb)
	}
	r.Delete("call-kernel")
	if _, err := kf.Read(keyA); !errors.Is(err, kernfwd.ErrNotFound) {
		t.Fatalf("A's entry survived the end of the call: %v", err)
	}
	if tot := r.Totals(); tot.KernelLegs != 0 {
		t.Fatalf("KernelLegs %d after Delete", tot.KernelLegs)
	}
}
