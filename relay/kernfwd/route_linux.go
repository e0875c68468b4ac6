//go:build linux

package kernfwd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// LookupRoute asks the kernel (rtnetlink RTM_GETROUTE, as `ip route get`)
// how it would send an IPv4 packet to dst, from src if src is valid and
// specified.
func LookupRoute(dst, src netip.Addr) (Route, error) {
	dst = dst.Unmap()
	src = src.Unmap()
	if !dst.Is4() {
		return Route{}, fmt.Errorf("kernfwd: route to %s: only IPv4", dst)
	}
	withSrc := src.Is4() && !src.IsUnspecified()

	const rtmsgLen = 12
	attrs := 8
	if withSrc {
		attrs += 8
	}
	req := make([]byte, unix.NLMSG_HDRLEN+rtmsgLen+attrs)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence
	rt := req[unix.NLMSG_HDRLEN:]
	rt[0] = unix.AF_INET
	rt[1] = 32 // dst_len
	if withSrc {
		rt[2] = 32
	}
	a := rt[rtmsgLen:]
	ne.PutUint16(a[0:], 8)
	ne.PutUint16(a[2:], unix.RTA_DST)
	d4 := dst.As4()
	copy(a[4:8], d4[:])
	if withSrc {
		ne.PutUint16(a[8:], 8)
		ne.PutUint16(a[10:], unix.RTA_SRC)
		s4 := src.As4()
		copy(a[12:16], s4[:])
	}

	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return Route{}, fmt.Errorf("kernfwd: netlink: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Route{}, fmt.Errorf("kernfwd: netlink send: %w", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return Route{}, fmt.Errorf("kernfwd: netlink receive: %w", err)
	}
	return parseRouteReply(buf[:n], src)
}

// parseRouteReply reads an RTM_NEWROUTE (or an NLMSG_ERROR) reply.
func parseRouteReply(b []byte, src netip.Addr) (Route, error) {
	ne := binary.NativeEndian
	if len(b) < unix.NLMSG_HDRLEN {
		return Route{}, errors.New("kernfwd: short netlink reply")
	}
	l := int(ne.Uint32(b[0:]))
	typ := ne.Uint16(b[4:])
	if l < unix.NLMSG_HDRLEN || l > len(b) {
		return Route{}, errors.New("kernfwd: bad netlink reply length")
	}
	body := b[unix.NLMSG_HDRLEN:l]
	switch typ {
	case unix.NLMSG_ERROR:
		if len(body) < 4 {
			return Route{}, errors.New("kernfwd: short netlink error")
		}
		if code := int32(ne.Uint32(body)); code != 0 {
			return Route{}, fmt.Errorf("kernfwd: no route: %w", syscall.Errno(-code))
		}
		return Route{}, errors.New("kernfwd: netlink acknowledged without a route")
	case unix.RTM_NEWROUTE:
	default:
		return Route{}, fmt.Errorf("kernfwd: unexpected netlink message type %d", typ)
	}
	if len(body) < 12 {
		return Route{}, errors.New("kernfwd: short route message")
	}
	var r Route
	switch body[7] { // rtm_type
	case unix.RTN_LOCAL:
		r.Local = true
	case unix.RTN_UNICAST:
	default:
		return Route{}, fmt.Errorf("kernfwd: route of type %d is not unicast", body[7])
	}
	for a := body[12:]; len(a) >= 4; {
		al := int(ne.Uint16(a[0:]))
		at := ne.Uint16(a[2:])
		if al < 4 || al > len(a) {
			return Route{}, errors.New("kernfwd: bad route attribute")
		}
		v := a[4:al]
		switch at {
		case unix.RTA_OIF:
			if len(v) == 4 {
				r.Ifindex = int(ne.Uint32(v))
			}
		case unix.RTA_PREFSRC:
			if len(v) == 4 {
				r.Src = netip.AddrFrom4([4]byte(v))
			}
		}
		a = a[min((al+3)&^3, len(a)):]
	}
	if src.Is4() && !src.IsUnspecified() {
		r.Src = src
	}
	if r.Ifindex == 0 || !r.Src.IsValid() {
		return Route{}, errors.New("kernfwd: route without an interface or a source address")
	}
	return r, nil
}
