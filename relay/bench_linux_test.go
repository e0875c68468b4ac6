//go:build linux

package relay

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// benchSock is a load generator socket: a net.UDPConn driven with
// sendmmsg/recvmmsg through its RawConn (so it parks in the netpoller, not in
// a blocking syscall) with preallocated buffers, so that the generator does
// not allocate and allocs/op shows the relay's.
type benchSock struct {
	c     *net.UDPConn
	rc    syscall.RawConn
	addr  netip.AddrPort
	hdrs  [benchBurst]mmsghdr
	iovs  [benchBurst]unix.Iovec
	names [benchBurst][sockaddrSize]byte
	bufs  [benchBurst][256]byte

	burst int // packets per round, <= benchBurst

	// state of the RawConn callbacks, allocated once
	off, cnt int
	errno    syscall.Errno
	sendFn   func(fd uintptr) bool
	recvFn   func(fd uintptr) bool
}

const (
	benchBurst  = 16 // max packets per stream per round
	benchWindow = 4  // rounds in flight
)

func newBenchSock(tb testing.TB, ipStr string, burst int) *benchSock {
	tb.Helper()
	c := listenUDP(tb, ipStr)
	c.SetReadBuffer(1 << 20)
	rc, err := c.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	k := &benchSock{c: c, rc: rc, addr: addrOf(c), burst: burst}
	for i := range k.hdrs {
		k.iovs[i].Base = &k.bufs[i][0]
		k.iovs[i].SetLen(len(k.bufs[i]))
		k.hdrs[i].hdr.Iov = &k.iovs[i]
		k.hdrs[i].hdr.SetIovlen(1)
		k.hdrs[i].hdr.Name = &k.names[i][0]
	}
	k.sendFn = func(fd uintptr) bool { return k.mmsg(fd, unix.SYS_SENDMMSG) }
	k.recvFn = func(fd uintptr) bool { return k.mmsg(fd, unix.SYS_RECVMMSG) }
	return k
}

// mmsg runs one non-blocking sendmmsg/recvmmsg for the rest of the burst;
// it returns false (wait for readiness) on EAGAIN.
func (k *benchSock) mmsg(fd uintptr, trap uintptr) bool {
	for {
		r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(&k.hdrs[k.off])), uintptr(k.cnt-k.off), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			k.off += int(r)
			if k.off < k.cnt {
				continue
			}
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			k.errno = e
			return true
		}
	}
}

// prepareSend fills the burst with RTP packets (172 bytes, like G.711/20 ms)
// addressed to dst.
func (k *benchSock) prepareSend(dst netip.AddrPort, ssrc uint32) {
	for i := range k.hdrs {
		copy(k.bufs[i][:], makeRTP(0, 0, 0, ssrc, make([]byte, 160)))
		k.iovs[i].SetLen(172)
		k.hdrs[i].hdr.Namelen = putSockaddr(&k.names[i], dst)
	}
}

func (k *benchSock) sendBurst(seq *uint16) error {
	for i := 0; i < k.burst; i++ {
		*seq++
		k.bufs[i][2], k.bufs[i][3] = byte(*seq>>8), byte(*seq)
	}
	k.off, k.cnt, k.errno = 0, k.burst, 0
	if err := k.rc.Write(k.sendFn); err != nil {
		return err
	}
	if k.errno != 0 {
		return k.errno
	}
	return nil
}

func (k *benchSock) recvBurst() error {
	for i := range k.hdrs {
		k.hdrs[i].hdr.Namelen = sockaddrSize
	}
	k.off, k.cnt, k.errno = 0, k.burst, 0
	k.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := k.rc.Read(k.recvFn); err != nil {
		return fmt.Errorf("recvmmsg after %d of %d packets: %w", k.off, k.burst, err)
	}
	if k.errno != 0 {
		return k.errno
	}
	return nil
}

// BenchmarkForward measures relay throughput on loopback: N streams, each
// with a sender (A) and a receiver (B); per round every sender sends a burst
// of RTP packets and every receiver reads them, with up to 4 rounds in
// flight. burst=16 shows the batched path; burst=1 over many streams is what
// real calls look like (one packet per stream every 20 ms, so each socket
// rarely has more than one packet waiting). The generator (one sending and
// one receiving goroutine) shares the machine's cores with the relay's
// workers. ns/op is per relayed packet.
func BenchmarkForward(b *testing.B) {
	for _, c := range []struct{ streams, burst int }{{1, 16}, {16, 16}, {256, 16}, {256, 1}, {512, 1}} {
		n, burst := c.streams, c.burst
		b.Run(fmt.Sprintf("streams=%d/burst=%d", n, burst), func(b *testing.B) {
			r := newTestRelay(b, Config{PortMin: 62000, PortMax: 64999})
			bind := netip.MustParseAddr("127.0.0.1")
			senders := make([]*benchSock, n)
			receivers := make([]*benchSock, n)
			for i := 0; i < n; i++ {
				sa, sb := newBenchSock(b, "127.0.0.2", burst), newBenchSock(b, "127.0.0.3", burst)
				s := r.Create(fmt.Sprint("bench-", i))
				pa, err := s.Leg(0, A, bind)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Leg(0, B, bind); err != nil {
					b.Fatal(err)
				}
				s.SetPeer(0, A, Peer{RTP: sa.addr, Source: sa.addr.Addr()})
				s.SetPeer(0, B, Peer{RTP: sb.addr, Source: sb.addr.Addr()})
				s.Established()
				sa.prepareSend(netip.AddrPortFrom(bind, uint16(pa)), uint32(i+1))
				senders[i], receivers[i] = sa, sb
			}
			seqs := make([]uint16, n)
			sendRound := func() error {
				for i, k := range senders {
					if err := k.sendBurst(&seqs[i]); err != nil {
						return err
					}
				}
				return nil
			}
			recvRound := func() {
				for _, k := range receivers {
					if err := k.recvBurst(); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := sendRound(); err != nil { // warm up
				b.Fatal(err)
			}
			recvRound()
			before := r.Totals().PacketsAtoB
			rounds := (b.N + n*burst - 1) / (n * burst)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			// The sender runs ahead of the receiver by up to benchWindow
			// rounds, so sending, relaying and receiving overlap.
			tokens := make(chan struct{}, benchWindow)
			errc := make(chan error, 1)
			go func() {
				for i := 0; i < rounds; i++ {
					tokens <- struct{}{}
					if err := sendRound(); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for i := 0; i < rounds; i++ {
				recvRound()
				<-tokens
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			pkts := rounds * n * burst
			b.ReportMetric(float64(pkts)/el.Seconds(), "pkts/s")
			waitFor(b, "counters", func() bool { return r.Totals().PacketsAtoB-before == uint64(pkts) })
			t := r.Totals()
			if t.DroppedForeign+t.DroppedNoTarget+t.SendErrors != 0 {
				b.Fatalf("drops: %+v", t)
			}
			b.ReportMetric(float64(t.RecvCalls)/float64(t.PacketsAtoB), "recvmmsg/pkt")
		})
	}
}

// BenchmarkHandle measures the per-packet work without the syscalls:
// parsing, latching, statistics and counters.
func BenchmarkHandle(b *testing.B) {
	r := newTestRelay(b, Config{})
	s := r.Create("h")
	bind := netip.MustParseAddr("127.0.0.1")
	s.Leg(0, A, bind)
	s.Leg(0, B, bind)
	src := netip.MustParseAddrPort("127.0.0.2:5004")
	s.SetPeer(0, A, Peer{RTP: src})
	s.SetPeer(0, B, Peer{RTP: netip.MustParseAddrPort("127.0.0.3:5004")})
	pkt := makeRTP(0, 1, 0, 1, make([]byte, 160))
	k := &s.streams[0].legs[A].socks[0]
	var c batchCounters
	now := time.Now()
	b.ReportAllocs()
	seq := uint16(0)
	for b.Loop() {
		seq++
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		s.mu.Lock()
		if _, ok := s.handle(k, src, pkt, now, &c); !ok {
			b.Fatal("not forwarded")
		}
		s.mu.Unlock()
	}
}

// TestForwardDoesNotAllocate is the allocation check as a test (benchmarks
// do not run in CI): a relayed packet costs zero heap allocations.
func TestForwardDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	res := testing.Benchmark(func(b *testing.B) {
		r := newTestRelay(b, Config{PortMin: 62000, PortMax: 64999, Workers: 1})
		bind := netip.MustParseAddr("127.0.0.1")
		sa, sb := newBenchSock(b, "127.0.0.2", benchBurst), newBenchSock(b, "127.0.0.3", benchBurst)
		s := r.Create("alloc")
		pa, _ := s.Leg(0, A, bind)
		s.Leg(0, B, bind)
		s.SetPeer(0, A, Peer{RTP: sa.addr})
		s.SetPeer(0, B, Peer{RTP: sb.addr})
		sa.prepareSend(netip.AddrPortFrom(bind, uint16(pa)), 1)
		var seq uint16
		round := func() {
			if err := sa.sendBurst(&seq); err != nil {
				b.Fatal(err)
			}
			if err := sb.recvBurst(); err != nil {
				b.Fatal(err)
			}
		}
		round()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			round()
		}
	})
	// Allow a little slack for runtime background allocations over
	// thousands of rounds, but not one allocation per packet or batch.
	if perRound := float64(res.MemAllocs) / float64(res.N); perRound > 0.05 {
		t.Fatalf("%.3f allocations per burst of %d packets", perRound, benchBurst)
	}
}
