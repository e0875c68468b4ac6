package udpx

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestAddrRoundTrip(t *testing.T) {
	ap := netip.MustParseAddrPort("127.0.0.2:40002")
	a, err := MakeAddr(ap)
	if err != nil {
		t.Fatal(err)
	}
	if got := AddrPort(&a); got != ap {
		t.Fatalf("AddrPort = %v", got)
	}
	if Key(&a) != uint64(0x7f000002)<<16|40002 {
		t.Fatalf("Key = %x", Key(&a))
	}
	if _, err := MakeAddr(netip.MustParseAddrPort("[::1]:5")); err == nil {
		t.Fatal("IPv6 must be refused")
	}
}

// TestBatchSendRecv sends a batch to two sockets with sendmmsg and reads it
// back with recvmmsg, checking payloads, sources and kernel timestamps.
func TestBatchSendRecv(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tx, txAddr, err := Open(netip.AddrPortFrom(lo, 0), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tx)
	var rx [2]int
	var dst [2]Addr
	for i := range rx {
		fd, ap, err := Open(netip.AddrPortFrom(lo, 0), Options{Timestamps: true, RcvBuf: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		rx[i] = fd
		dst[i], _ = MakeAddr(ap)
	}
	before := time.Now().UnixNano()
	b := NewBatch(4, 64, false)
	for i := 0; i < 4; i++ {
		b.Bufs[i][0] = byte(i)
		b.SetSend(i, 10+i, &dst[i%2])
	}
	if sent, failed, err := b.Send(tx, 4); sent != 4 || failed != 0 || err != nil {
		t.Fatalf("Send = %d, %d, %v", sent, failed, err)
	}
	r := NewBatch(8, 2048, true)
	for k, fd := range rx {
		n, err := r.Recv(fd, unix.MSG_DONTWAIT)
		if err != nil || n != 2 {
			t.Fatalf("socket %d: Recv = %d, %v", k, n, err)
		}
		for i := 0; i < n; i++ {
			want := k + 2*i
			if m := r.Msg(i); len(m) != 10+want || int(m[0]) != want {
				t.Errorf("socket %d slot %d: %d bytes, first %d", k, i, len(m), m[0])
			}
			if AddrPort(r.From(i)) != txAddr {
				t.Errorf("source %v, want %v", AddrPort(r.From(i)), txAddr)
			}
			ts, ok := r.KernelTime(i)
			if !ok || ts < before-int64(time.Second) || ts > time.Now().UnixNano()+int64(time.Second) {
				t.Errorf("kernel time %d (ok %v), sent at %d", ts, ok, before)
			}
		}
	}
	if n, err := r.Recv(rx[0], unix.MSG_DONTWAIT); err != unix.EAGAIN || n != 0 {
		t.Fatalf("empty socket: %d, %v", n, err)
	}
}
