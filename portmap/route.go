package portmap

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// procRoute is read by DefaultGateway; a variable for tests.
var procRoute = "/proc/net/route"

// DefaultGateway returns the IPv4 default gateway from /proc/net/route
// (the default route with the lowest metric) and the local address the
// kernel uses to reach it. Opening a connected UDP socket to find that
// address sends no packet.
func DefaultGateway() (gw netip.Addr, local netip.Addr, err error) {
	f, err := os.Open(procRoute)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("portmap: %w: %v", ErrNoGateway, err)
	}
	defer f.Close()
	gw, _, err = parseProcRoute(f)
	if err != nil {
		return netip.Addr{}, netip.Addr{}, err
	}
	local, err = localAddrTo(gw)
	if err != nil {
		return gw, netip.Addr{}, fmt.Errorf("portmap: local address towards gateway %s: %w", gw, err)
	}
	return gw, local, nil
}

// localAddrTo returns the source address the kernel picks towards dst.
func localAddrTo(dst netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 5351)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// parseProcRoute finds the default route in the Linux /proc/net/route
// format: a header line, then whitespace-separated fields Iface,
// Destination, Gateway, Flags, RefCnt, Use, Metric, Mask, ... with the
// addresses in hex, in host (little-endian) byte order.
func parseProcRoute(r io.Reader) (gw netip.Addr, iface string, err error) {
	const rtfUp, rtfGateway = 0x1, 0x2
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	best := -1
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		metric, err2 := strconv.Atoi(f[6])
		raw, err3 := hex.DecodeString(f[2])
		if err1 != nil || err2 != nil || err3 != nil || len(raw) != 4 {
			continue
		}
		if flags&rtfUp == 0 || flags&rtfGateway == 0 {
			continue
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], binary.LittleEndian.Uint32(raw))
		a := netip.AddrFrom4(b)
		if a.IsUnspecified() {
			continue
		}
		if best < 0 || metric < best {
			best, gw, iface = metric, a, f[0]
		}
	}
	if best < 0 {
		return netip.Addr{}, "", fmt.Errorf("portmap: %w in %s", ErrNoGateway, procRoute)
	}
	return gw, iface, nil
}
