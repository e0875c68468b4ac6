//go:build linux

package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	batchSize    = 64   // packets per recvmmsg/sendmmsg
	maxPacket    = 4096 // receive buffer per packet; larger datagrams are dropped
	maxEvents    = 128  // epoll events per wakeup
	sockaddrSize = unix.SizeofSockaddrInet6
)

// mmsghdr is struct mmsghdr: a msghdr and the byte count the kernel fills
// in. Go pads it to the alignment of Msghdr exactly as C does (64 bytes on
// amd64 and arm64, 32 on 32-bit systems); a test checks the size against
// unix.SizeofMmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// worker owns an epoll instance and the sockets of the sessions hashed to
// it. Only its goroutine reads from those sockets and sends from them.
type worker struct {
	r    *Relay
	id   int
	epfd int
	evfd int // eventfd in the epoll set, for wakeups (shutdown)

	// The epoll fd itself is registered with Go's netpoller through an
	// os.File: the worker never blocks in epoll_wait holding a P, it parks
	// like any goroutine waiting for network I/O and is woken when the
	// epoll set has events. (A goroutine blocked in a syscall keeps its P
	// until sysmon takes it away, which costs up to milliseconds of
	// scheduling latency for everything else on a small machine.)
	epf      *os.File
	epc      syscall.RawConn
	blocking bool // the netpoller refused the epoll fd: block in epoll_wait

	mu    sync.Mutex
	socks map[int32]*sock

	closing atomic.Bool
	started bool
	done    chan struct{}

	ctr counters

	// Owned by the worker goroutine: preallocated buffers and headers.
	events [maxEvents]unix.EpollEvent
	ready  [maxEvents]*sock
	rdirty int // receive headers whose Namelen the kernel may have changed
	rh     [batchSize]mmsghdr
	riov   [batchSize]unix.Iovec
	rname  [batchSize][sockaddrSize]byte
	sh     [batchSize]mmsghdr
	siov   [batchSize]unix.Iovec
	sname  [batchSize][sockaddrSize]byte
	outs   [batchSize]out
	bc     batchCounters
	evbuf  [8]byte
	bufs   [batchSize][maxPacket]byte
}

func newWorker(r *Relay, id int) (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("relay: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("relay: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("relay: epoll_ctl: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, fmt.Errorf("relay: epoll fd: %w", err)
	}
	epf := os.NewFile(uintptr(epfd), "epoll")
	epc, err := epf.SyscallConn()
	if err != nil {
		epf.Close()
		unix.Close(evfd)
		return nil, fmt.Errorf("relay: epoll fd: %w", err)
	}
	w := &worker{r: r, id: id, epfd: epfd, evfd: evfd, epf: epf, epc: epc, socks: make(map[int32]*sock), done: make(chan struct{})}
	if err := epf.SetReadDeadline(time.Time{}); err != nil {
		w.blocking = true // not pollable (never seen on Linux)
	}
	for i := range w.rh {
		w.riov[i].Base = &w.bufs[i][0]
		w.riov[i].SetLen(maxPacket)
		w.rh[i].hdr.Name = &w.rname[i][0]
		w.rh[i].hdr.Namelen = sockaddrSize
		w.rh[i].hdr.Iov = &w.riov[i]
		w.rh[i].hdr.SetIovlen(1)
		w.sh[i].hdr.Name = &w.sname[i][0]
		w.sh[i].hdr.Iov = &w.siov[i]
		w.sh[i].hdr.SetIovlen(1)
	}
	return w, nil
}

func (w *worker) start() {
	w.started = true
	go w.run()
}

// stop wakes the worker, waits for it and closes its descriptors. All its
// sessions must be closed already.
func (w *worker) stop() {
	if w.started {
		w.closing.Store(true)
		w.wake()
		<-w.done
	}
	w.epf.Close()
	unix.Close(w.evfd)
}

// wake writes to the eventfd from a caller's goroutine, with its own buffer
// so it does not touch the worker's.
func (w *worker) wake() {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	for {
		if _, err := unix.Write(w.evfd, b[:]); err != unix.EINTR {
			return
		}
	}
}

// add registers a socket with the worker. The session mutex is held.
func (w *worker) add(k *sock) error {
	w.mu.Lock()
	w.socks[int32(k.fd)] = k
	w.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(k.fd)}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, k.fd, &ev); err != nil {
		w.remove(k)
		return fmt.Errorf("relay: epoll_ctl: %w", err)
	}
	return nil
}

// remove forgets a socket; closing its fd removes it from the epoll set.
// The session mutex is held.
func (w *worker) remove(k *sock) {
	w.mu.Lock()
	if w.socks[int32(k.fd)] == k {
		delete(w.socks, int32(k.fd))
	}
	w.mu.Unlock()
}

func (w *worker) run() {
	defer close(w.done)
	var (
		n     int
		everr error
	)
	// poll is called by the netpoller glue with the epoll fd: it reports
	// false (park until the epoll fd is readable) when nothing is ready.
	poll := func(fd uintptr) bool {
		for {
			n, everr = unix.EpollWait(int(fd), w.events[:], 0)
			if everr != unix.EINTR {
				return everr != nil || n > 0
			}
		}
	}
	for {
		var err error
		if w.blocking {
			n, err = unix.EpollWait(w.epfd, w.events[:], -1)
			if err == unix.EINTR {
				continue
			}
		} else if err = w.epc.Read(poll); err == nil {
			err = everr
		}
		if err != nil {
			w.r.log.Error("relay: epoll_wait failed; worker stops", "worker", w.id, "err", err)
			return
		}
		w.ctr.wakeups.Add(1)
		m, wake := 0, false
		w.mu.Lock()
		for i := 0; i < n; i++ {
			fd := w.events[i].Fd
			if fd == int32(w.evfd) {
				wake = true
			} else if k := w.socks[fd]; k != nil {
				w.ready[m] = k
				m++
			}
		}
		w.mu.Unlock()
		if wake {
			unix.Read(w.evfd, w.evbuf[:])
			if w.closing.Load() {
				return
			}
		}
		for i := 0; i < m; i++ {
			w.serve(w.ready[i])
			w.ready[i] = nil
		}
	}
}

// serve reads one batch from a ready socket and forwards it, holding the
// session mutex for the whole batch (fds are closed only under it).
func (w *worker) serve(k *sock) {
	s := k.sess
	s.mu.Lock()
	if k.closed {
		s.mu.Unlock()
		return
	}
	n := w.recv(k.fd)
	if n > 0 {
		now := s.r.now()
		m := 0
		for i := 0; i < n; i++ {
			h := &w.rh[i]
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				k.leg.stats.droppedMalformed++
				w.bc.malformed++
				continue
			}
			src := parseSockaddr(&w.rname[i], h.hdr.Namelen)
			if !src.IsValid() {
				continue
			}
			o, ok := s.handle(k, src, w.bufs[i][:h.n], now, &w.bc)
			if !ok {
				continue
			}
			w.outs[m] = o
			w.siov[m].Base = &w.bufs[i][0]
			w.siov[m].SetLen(int(h.n))
			w.sh[m].hdr.Namelen = putSockaddr(&w.sname[m], o.dst)
			m++
		}
		w.flush(m)
	}
	s.mu.Unlock()
	w.ctr.add(&w.bc)
}

// recv runs recvmmsg on fd and returns the number of packets read.
func (w *worker) recv(fd int) int {
	for i := 0; i < w.rdirty; i++ {
		w.rh[i].hdr.Namelen = sockaddrSize
	}
	r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&w.rh[0])), batchSize, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		w.rdirty = 0
		return 0
	}
	w.rdirty = int(r)
	w.ctr.recvCalls.Add(1)
	return int(r)
}

// flush sends the queued packets, one sendmmsg per run of packets going out
// of the same fd.
func (w *worker) flush(m int) {
	for i := 0; i < m; {
		j := i + 1
		for j < m && w.outs[j].fd == w.outs[i].fd {
			j++
		}
		for i < j {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(w.outs[i].fd), uintptr(unsafe.Pointer(&w.sh[i])), uintptr(j-i), unix.MSG_DONTWAIT, 0, 0)
			w.ctr.sendCalls.Add(1)
			if e != 0 {
				// The first message failed. A full socket buffer means
				// the rest would fail too; otherwise skip just this one.
				end := i + 1
				if e == unix.EAGAIN || e == unix.ENOBUFS {
					end = j
				}
				for ; i < end; i++ {
					w.outs[i].leg.stats.sendErrors++
					w.bc.sendErrs++
				}
				continue
			}
			for end := i + int(r); i < end; i++ {
				o := &w.outs[i]
				w.bc.packets[o.from]++
				w.bc.bytes[o.from] += uint64(w.siov[i].Len)
				if o.rtcp {
					w.bc.rtcp++
				}
			}
		}
	}
}

// parseSockaddr reads a sockaddr_in/sockaddr_in6 written by the kernel.
// Zones (scope ids) are ignored: making them strings would allocate.
func parseSockaddr(b *[sockaddrSize]byte, n uint32) netip.AddrPort {
	port := uint16(b[2])<<8 | uint16(b[3])
	switch binary.NativeEndian.Uint16(b[0:]) {
	case unix.AF_INET:
		if n < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case unix.AF_INET6:
		if n < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port)
	}
	return netip.AddrPort{}
}

// putSockaddr writes ap as a sockaddr and returns its length.
func putSockaddr(b *[sockaddrSize]byte, ap netip.AddrPort) uint32 {
	port := ap.Port()
	b[2], b[3] = byte(port>>8), byte(port)
	if ap.Addr().Is4() {
		binary.NativeEndian.PutUint16(b[0:], unix.AF_INET)
		a := ap.Addr().As4()
		copy(b[4:8], a[:])
		clear(b[8:16])
		return unix.SizeofSockaddrInet4
	}
	binary.NativeEndian.PutUint16(b[0:], unix.AF_INET6)
	clear(b[4:8]) // flow info
	a := ap.Addr().As16()
	copy(b[8:24], a[:])
	clear(b[24:28]) // scope id
	return unix.SizeofSockaddrInet6
}

// openPair binds the RTP socket on port and the RTCP socket on port+1.
func openPair(bind netip.Addr, port, sockBuf int) (fds [2]int, err error) {
	fds[0], err = openSocket(bind, port, sockBuf)
	if err != nil {
		return fds, err
	}
	fds[1], err = openSocket(bind, port+1, sockBuf)
	if err != nil {
		unix.Close(fds[0])
		return fds, err
	}
	return fds, nil
}

func openSocket(bind netip.Addr, port, sockBuf int) (int, error) {
	family := unix.AF_INET6
	if bind.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, sockBuf)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sockBuf)
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		// DSCP EF (46), as usual for voice; failures are harmless.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TOS, 0xb8)
		sa = &unix.SockaddrInet4{Port: port, Addr: bind.As4()}
	} else {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_TCLASS, 0xb8)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, err
		}
		sa6 := &unix.SockaddrInet6{Port: port, Addr: bind.As16()}
		if z := bind.Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			}
		}
		sa = sa6
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func closeFD(fd int) { unix.Close(fd) }

func isAddrInUse(err error) bool { return errors.Is(err, unix.EADDRINUSE) }
