//go:build lab

package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// The test process opens sockets inside lab namespaces itself: a socket
// belongs to the network namespace of the thread that created it, for its
// whole life, whichever thread uses it later. So a goroutine locks its thread,
// enters the namespace with setns(2), creates the socket and goes back.

// setnsTrap is setns(2) per architecture; package syscall names it only for
// some of them.
func setnsTrap() (uintptr, error) {
	switch runtime.GOARCH {
	case "amd64":
		return 308, nil
	case "arm64", "riscv64", "loong64":
		return 268, nil
	case "386":
		return 346, nil
	case "arm":
		return 375, nil
	case "ppc64", "ppc64le":
		return 350, nil
	case "s390x":
		return 339, nil
	}
	return 0, fmt.Errorf("lab: setns syscall number unknown for %s", runtime.GOARCH)
}

func setns(fd uintptr) error {
	trap, err := setnsTrap()
	if err != nil {
		return err
	}
	if _, _, e := syscall.RawSyscall(trap, fd, syscall.CLONE_NEWNET, 0); e != 0 {
		return e
	}
	return nil
}

// InNS runs fn on an OS thread that is inside network namespace ns. Sockets
// fn creates stay in ns. fn must not start goroutines that create sockets.
func InNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// If the thread cannot be put back into its own namespace it stays
		// locked, and the runtime ends it when this goroutine returns.
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("lab: namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := setns(target.Fd()); err != nil {
			errc <- fmt.Errorf("lab: setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := setns(orig.Fd()); err != nil {
			errc <- fmt.Errorf("lab: leaving %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenUDP opens a UDP socket bound to addr ("ip:port") inside ns.
func (l *Lab) ListenUDP(ns, addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	var c *net.UDPConn
	err = InNS(ns, func() error {
		var err error
		c, err = net.ListenUDP("udp4", ua)
		return err
	})
	if err != nil {
		return nil, err
	}
	l.T.Cleanup(func() { c.Close() })
	return c, nil
}

// Ping sends ICMP echo requests from ns to dst (an IPv4 address) until one
// is answered, up to 3 tries of 1 s, and returns the round-trip time. (The lab
// host has no ping binary; this is a raw socket in the namespace.)
func (l *Lab) Ping(ns, dst string) (time.Duration, error) {
	ip := net.ParseIP(dst).To4()
	if ip == nil {
		return 0, fmt.Errorf("lab: ping: %q is not an IPv4 address", dst)
	}
	var c net.PacketConn
	if err := InNS(ns, func() error {
		var err error
		c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		return 0, err
	}
	defer c.Close()
	id := uint16(os.Getpid())
	buf := make([]byte, 1500)
	for seq := uint16(1); seq <= 3; seq++ {
		req := icmpEcho(id, seq)
		start := time.Now()
		if _, err := c.WriteTo(req, &net.IPAddr{IP: ip}); err != nil {
			return 0, fmt.Errorf("lab: ping %s from %s: %w", dst, ns, err)
		}
		c.SetReadDeadline(start.Add(time.Second))
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break // timeout: next try
			}
			// An ip4:icmp socket delivers the ICMP message without the IP header.
			if n >= 8 && buf[0] == 0 && buf[1] == 0 &&
				uint16(buf[4])<<8|uint16(buf[5]) == id && uint16(buf[6])<<8|uint16(buf[7]) == seq &&
				from.(*net.IPAddr).IP.Equal(ip) {
				return time.Since(start), nil
			}
		}
	}
	return 0, fmt.Errorf("lab: ping %s from %s: no echo reply", dst, ns)
}

// icmpEcho builds an ICMP echo request.
func icmpEcho(id, seq uint16) []byte {
	b := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 's', 'i', 'p', 'e', 'd', 'g', 'e', '!'}
	var sum uint32
	for i := 0; i < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	b[2], b[3] = byte(cs>>8), byte(cs)
	return b
}

// HTTPClient returns an HTTP client whose connections are made from inside
// ns (for example to sipedge's admin API on 127.0.0.1 in se-edge).
func (l *Lab) HTTPClient(ns string) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := InNS(ns, func() error {
			var err error
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

// SoftwareChecksums turns checksum offload off, transmit and receive, on
// every interface of every lab namespace (those that exist now: call it
// after adding hosts). By default a veth hands its peer a UDP packet with
// only a partial checksum (CHECKSUM_PARTIAL), which the receiver takes on
// trust, so a wrong checksum would go unnoticed. Without offload every
// packet leaves with a full checksum computed in software, and the
// routers' conntrack (nf_conntrack_checksum) and the phones' UDP check it
// and drop a bad one, as they do with packets from a real NIC.
func (l *Lab) SoftwareChecksums() error {
	out, err := run(context.Background(), "ip", "netns", "list")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], Prefix) {
			continue
		}
		ns := f[0]
		err := InNS(ns, func() error {
			ifs, err := net.Interfaces()
			if err != nil {
				return err
			}
			for _, ifc := range ifs {
				if ifc.Flags&net.FlagLoopback != 0 {
					continue
				}
				for _, cmd := range []uint32{ethtoolSTXCSUM, ethtoolSRXCSUM} {
					// A bridge has no receive checksumming to turn off.
					if err := ethtoolSet(ifc.Name, cmd, 0); err != nil && err != syscall.EOPNOTSUPP {
						return fmt.Errorf("%s: ethtool command %#x: %w", ifc.Name, cmd, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("lab: checksum offload off in %s: %w", ns, err)
		}
	}
	return nil
}

// The legacy ethtool ioctl (linux/ethtool.h), as `ethtool -K IF tx off rx
// off` does it; the lab needs no ethtool binary.
const (
	siocETHTOOL    = 0x8946
	ethtoolSRXCSUM = 0x15 // set receive checksum offload
	ethtoolSTXCSUM = 0x17 // set transmit checksum offload
)

// ethtoolSet sends an ethtool_value command for ifname on the calling
// thread's namespace.
func ethtoolSet(ifname string, cmd, data uint32) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	val := &struct{ Cmd, Data uint32 }{cmd, data}
	var ifr struct {
		Name [syscall.IFNAMSIZ]byte
		Data unsafe.Pointer // struct ifreq's ifr_data
		_    [16]byte       // the rest of the union
	}
	copy(ifr.Name[:syscall.IFNAMSIZ-1], ifname)
	ifr.Data = unsafe.Pointer(val)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), siocETHTOOL, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	return nil
}
