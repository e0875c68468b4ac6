// Package udpx holds the few raw UDP socket helpers the RTP benchmark needs:
// IPv4 sockets as plain file descriptors, sendto without allocation, and
// batched sendmmsg/recvmmsg with optional kernel receive timestamps.
//
// The benchmark tools drive these descriptors from their own epoll loops (or
// block in them), not through Go's netpoller, so that the load generator costs
// as few cycles per packet as possible and stays out of the measurement.
package udpx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Addr is a raw IPv4 socket address, ready to hand to the kernel.
type Addr = unix.RawSockaddrInet4

// MakeAddr converts an IPv4 address and port to a raw socket address.
func MakeAddr(ap netip.AddrPort) (Addr, error) {
	if !ap.Addr().Is4() {
		return Addr{}, fmt.Errorf("udpx: %v is not IPv4", ap)
	}
	var a Addr
	a.Family = unix.AF_INET
	// sin_port is in network byte order; the struct field is a host uint16.
	p := (*[2]byte)(unsafe.Pointer(&a.Port))
	binary.BigEndian.PutUint16(p[:], ap.Port())
	a.Addr = ap.Addr().As4()
	return a, nil
}

// AddrPort converts a raw socket address back.
func AddrPort(a *Addr) netip.AddrPort {
	p := (*[2]byte)(unsafe.Pointer(&a.Port))
	return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), binary.BigEndian.Uint16(p[:]))
}

// Key packs an address into a comparable integer (IP in the high bits).
func Key(a *Addr) uint64 {
	p := (*[2]byte)(unsafe.Pointer(&a.Port))
	return uint64(binary.BigEndian.Uint32(a.Addr[:]))<<16 | uint64(binary.BigEndian.Uint16(p[:]))
}

// Options for Open.
type Options struct {
	RcvBuf     int  // SO_RCVBUF(FORCE) in bytes; 0 leaves the default
	SndBuf     int  // SO_SNDBUF(FORCE) in bytes; 0 leaves the default
	Timestamps bool // SO_TIMESTAMPNS: kernel receive time on every datagram
	NonBlock   bool
}

// Open creates a UDP socket bound to ap (port 0: the kernel picks one) and
// returns its descriptor and the bound address.
func Open(ap netip.AddrPort, o Options) (int, netip.AddrPort, error) {
	typ := unix.SOCK_DGRAM | unix.SOCK_CLOEXEC
	if o.NonBlock {
		typ |= unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_INET, typ, unix.IPPROTO_UDP)
	if err != nil {
		return -1, netip.AddrPort{}, fmt.Errorf("udpx: socket: %w", err)
	}
	fail := func(what string, err error) (int, netip.AddrPort, error) {
		unix.Close(fd)
		return -1, netip.AddrPort{}, fmt.Errorf("udpx: %s %v: %w", what, ap, err)
	}
	if o.RcvBuf > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.RcvBuf) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, o.RcvBuf); err != nil {
				return fail("SO_RCVBUF", err)
			}
		}
	}
	if o.SndBuf > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, o.SndBuf) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, o.SndBuf); err != nil {
				return fail("SO_SNDBUF", err)
			}
		}
	}
	if o.Timestamps {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return fail("SO_TIMESTAMPNS", err)
		}
	}
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	g4, ok := got.(*unix.SockaddrInet4)
	if !ok {
		return fail("getsockname", errors.New("not IPv4"))
	}
	return fd, netip.AddrPortFrom(netip.AddrFrom4(g4.Addr), uint16(g4.Port)), nil
}

// Connect fixes the socket's peer: it then receives only from that address
// and Send needs no destination.
func Connect(fd int, to netip.AddrPort) error {
	return unix.Connect(fd, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()})
}

// SendTo sends one datagram without allocating.
func SendTo(fd int, b []byte, to *Addr) error {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(to)), unsafe.Sizeof(*to))
	if e != 0 {
		return e
	}
	return nil
}

// RecvFrom reads one datagram (blocking unless flags has MSG_DONTWAIT).
func RecvFrom(fd int, b []byte, from *Addr, flags int) (int, error) {
	l := uint32(unsafe.Sizeof(*from))
	n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		uintptr(flags), uintptr(unsafe.Pointer(from)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// ctrlLen is room for one SCM_TIMESTAMPNS control message.
var ctrlLen = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

// Batch is a reusable set of message slots for sendmmsg and recvmmsg.
type Batch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	Bufs  [][]byte // one buffer per slot, each of the size given to NewBatch
	names []Addr
	ctrl  []byte
	size  int
	// Failed lists the slots the last Send could not send.
	Failed []int
}

// NewBatch makes n slots of bufSize bytes each; with ctrl, every slot gets
// room for a kernel timestamp.
func NewBatch(n, bufSize int, ctrl bool) *Batch {
	b := &Batch{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		Bufs:  make([][]byte, n),
		names: make([]Addr, n),
		size:  bufSize,
	}
	mem := make([]byte, n*bufSize)
	if ctrl {
		b.ctrl = make([]byte, n*ctrlLen)
	}
	for i := range b.hdrs {
		b.Bufs[i] = mem[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
		b.iovs[i].Base = &b.Bufs[i][0]
		b.iovs[i].SetLen(bufSize)
		h := &b.hdrs[i].Hdr
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
	}
	return b
}

// Len is the number of slots.
func (b *Batch) Len() int { return len(b.hdrs) }

// Recv reads up to Len() datagrams. flags is usually MSG_DONTWAIT; with 0 it
// blocks until at least one datagram is there.
func (b *Batch) Recv(fd int, flags int) (int, error) {
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		b.iovs[i].SetLen(b.size)
		if b.ctrl != nil {
			h.Control = &b.ctrl[i*ctrlLen]
			h.SetControllen(ctrlLen)
		}
		h.Flags = 0
	}
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)),
		uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Msg is the payload of slot i after Recv.
func (b *Batch) Msg(i int) []byte { return b.Bufs[i][:b.hdrs[i].Len] }

// From is the source address of slot i after Recv.
func (b *Batch) From(i int) *Addr { return &b.names[i] }

// Truncated reports whether slot i's datagram did not fit.
func (b *Batch) Truncated(i int) bool { return b.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 }

// KernelTime returns the SO_TIMESTAMPNS receive time (Unix ns) of slot i.
func (b *Batch) KernelTime(i int) (int64, bool) {
	if b.ctrl == nil {
		return 0, false
	}
	h := &b.hdrs[i].Hdr
	c := b.ctrl[i*ctrlLen : i*ctrlLen+int(h.Controllen)]
	for len(c) >= unix.SizeofCmsghdr {
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		l := int(cm.Len)
		if l < unix.SizeofCmsghdr || l > len(c) {
			return 0, false
		}
		if cm.Level == unix.SOL_SOCKET && cm.Type == unix.SCM_TIMESTAMPNS &&
			l >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&c[unix.CmsgLen(0)]))
			return ts.Nano(), true
		}
		c = c[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(c)):]
	}
	return 0, false
}

// SetSend prepares slot i to send the first n bytes of Bufs[i] to the given
// address (nil: the connected peer).
func (b *Batch) SetSend(i, n int, to *Addr) {
	h := &b.hdrs[i].Hdr
	if to != nil {
		h.Name = (*byte)(unsafe.Pointer(to))
		h.Namelen = uint32(unsafe.Sizeof(*to))
	} else {
		h.Name = nil
		h.Namelen = 0
	}
	h.Control = nil
	h.SetControllen(0)
	b.iovs[i].SetLen(n)
}

// SetSendBuf is SetSend with the slot's iovec pointing at buf instead of
// Bufs[i] (buf must stay alive until Send returns).
func (b *Batch) SetSendBuf(i int, buf []byte, to *Addr) {
	b.SetSend(i, len(buf), to)
	b.iovs[i].Base = &buf[0]
}

// ResetBuf points slot i back at its own buffer (after SetSendBuf).
func (b *Batch) ResetBuf(i int) { b.iovs[i].Base = &b.Bufs[i][0] }

// Send sends slots [0,n) with sendmmsg. A datagram the kernel refuses (for
// example ECONNREFUSED left by an ICMP error) is skipped and counted, so one
// bad destination does not stall the rest. It returns how many were sent,
// how many failed, and the last error.
func (b *Batch) Send(fd int, n int) (sent, failed int, err error) {
	b.Failed = b.Failed[:0]
	done := 0
	for done < n {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[done])),
			uintptr(n-done), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			b.Failed = append(b.Failed, done)
			done++
			failed++
			err = e
			continue
		}
		done += int(r)
		sent += int(r)
	}
	return sent, failed, err
}
