//go:build linux

package kernfwd

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// openOrSkip loads the program on lo, or skips where the kernel or the
// privileges do not allow it (SIPEDGE_REQUIRE_BPF=1 makes that a failure).
func openOrSkip(t *testing.T) *Forwarder {
	t.Helper()
	f, err := Open([]string{"lo"})
	if err != nil {
		if os.Getenv("SIPEDGE_REQUIRE_BPF") != "" {
			t.Fatalf("in-kernel fast path unavailable: %v", err)
		}
		t.Skipf("in-kernel fast path unavailable: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestObjectMatchesSource(t *testing.T) {
	src, err := os.ReadFile("bpf/fwd.c")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(src)
	if got := hex.EncodeToString(sum[:]); got != sourceSHA256 {
		t.Fatalf("fwd.o was built from another fwd.c (sha256 %s, source now %s): run relay/kernfwd/gen.sh", sourceSHA256, got)
	}
}

func TestLayoutMatchesProgram(t *testing.T) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytesReader(object))
	if err != nil {
		t.Fatal(err)
	}
	m := spec.Maps["sipedge_fwd"]
	if m == nil {
		t.Fatal("no sipedge_fwd map")
	}
	if k, v := binary.Size(rawKey{}), binary.Size(rawVal{}); uint32(k) != m.KeySize || uint32(v) != m.ValueSize {
		t.Fatalf("Go key/value %d/%d bytes, program %d/%d", k, v, m.KeySize, m.ValueSize)
	}
}

func udp(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ap(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func rtpPacket(ssrc uint32, seq uint16, ts uint32, payload string) []byte {
	b := make([]byte, 12, 12+len(payload))
	b[0], b[1] = 0x80, 0
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return append(b, payload...)
}

// recv reads one datagram or returns nil after d.
func recv(c *net.UDPConn, d time.Duration) ([]byte, netip.AddrPort) {
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}
	}
	return buf[:n], from
}

// TestForwardOnLoopback: with an entry installed, RTP from the locked
// source to the relay port arrives at the other phone from the relay's
// other port, and never at the relay's socket; anything the entry does not
// cover (another source, another SSRC, RTCP) still reaches the relay's socket.
func TestForwardOnLoopback(t *testing.T) {
	f := openOrSkip(t)
	phoneA := udp(t, "127.0.0.2:0")
	phoneB := udp(t, "127.0.0.3:0")
	legA := udp(t, "127.0.0.1:0") // the relay's socket facing A
	legB := udp(t, "127.0.0.1:0") // facing B
	stranger := udp(t, "127.0.0.4:0")

	r, err := LookupRoute(ap(phoneB).Addr(), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Local {
		t.Fatalf("route to 127.0.0.3: %+v, want local", r)
	}
	key := Key{Peer: ap(phoneA), Port: ap(legA).Port()}
	const ssrc = 0x11223344
	if err := f.Install(key, Entry{Local: ap(legA).Addr(), From: ap(legB), To: ap(phoneB), SSRC: ssrc, ExtMax: 99}); err != nil {
		t.Fatal(err)
	}
	before := MonoNow()
	for i := range 20 {
		if _, err := phoneA.WriteToUDPAddrPort(rtpPacket(ssrc, uint16(100+i), uint32(160*i), "hello"), ap(legA)); err != nil {
			t.Fatal(err)
		}
		b, from := recv(phoneB, 2*time.Second)
		if b == nil {
			t.Fatalf("packet %d did not arrive at B", i)
		}
		if from != ap(legB) {
			t.Fatalf("packet %d came from %s, want the relay's B leg %s", i, from, ap(legB))
		}
		if string(b[12:]) != "hello" || binary.BigEndian.Uint16(b[2:]) != uint16(100+i) {
			t.Fatalf("packet %d changed: % x", i, b)
		}
	}
	if b, _ := recv(legA, 100*time.Millisecond); b != nil {
		t.Fatalf("the relay's socket got a packet the kernel forwarded: % x", b)
	}
	st, err := f.Read(key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 20 || st.Bytes != 20*17 || st.ExtMax != 119 || st.Last < before || st.Last > MonoNow() || st.Punted != 0 {
		t.Fatalf("stats %+v", st)
	}

	// Not covered by the entry: user space gets them.
	cases := []struct {
		name string
		from *net.UDPConn
		pkt  []byte
	}{
		{"another source", stranger, rtpPacket(ssrc, 120, 0, "inject")},
		{"another SSRC", phoneA, rtpPacket(ssrc+1, 120, 0, "newssrc")},
		{"RTCP (mux)", phoneA, []byte{0x80, 200, 0, 6, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"a sequence jump", phoneA, rtpPacket(ssrc, 20000, 0, "jump")},
		{"not RTP", phoneA, []byte("\x00\x01\x00\x00STUN-ish-binding")},
	}
	for _, c := range cases {
		if _, err := c.from.WriteToUDPAddrPort(c.pkt, ap(legA)); err != nil {
			t.Fatal(err)
		}
		b, _ := recv(legA, 2*time.Second)
		if string(b) != string(c.pkt) {
			t.Fatalf("%s: the relay's socket got % x, want the packet unchanged", c.name, b)
		}
		if b, _ := recv(phoneB, 50*time.Millisecond); b != nil {
			t.Fatalf("%s: reached B: % x", c.name, b)
		}
	}
	st, err = f.Read(key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 20 || st.Punted != 4 { // the stranger matches no entry at all
		t.Fatalf("after the uncovered packets: %+v", st)
	}

	fin, err := f.Remove(key)
	if err != nil || fin.Packets != 20 {
		t.Fatalf("Remove: %+v %v", fin, err)
	}
	if _, err := f.Read(key); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read after Remove: %v", err)
	}
	phoneA.WriteToUDPAddrPort(rtpPacket(ssrc, 121, 0, "after"), ap(legA))
	if b, _ := recv(legA, 2*time.Second); string(b[12:]) != "after" {
		t.Fatalf("after Remove the relay's socket got % x", b)
	}
}

// TestChecksumRewrite sends a packet with a complete UDP checksum through
// a raw socket, so that the receiving socket verifies it: it arrives only
// if the program's incremental checksum update is right.
func TestChecksumRewrite(t *testing.T) {
	f := openOrSkip(t)
	phoneB := udp(t, "127.0.0.3:0")
	legA := udp(t, "127.0.0.1:0")
	legB := udp(t, "127.0.0.1:0")
	src := netip.MustParseAddrPort("127.0.0.2:4000")
	key := Key{Peer: src, Port: ap(legA).Port()}
	if err := f.Install(key, Entry{From: ap(legB), To: ap(phoneB), SSRC: 7}); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP)
	if err != nil {
		t.Skipf("raw socket: %v", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.Addr().As4()}); err != nil {
		t.Fatal(err)
	}
	send := func(badSum bool) {
		u := udpDatagram(src, ap(legA), rtpPacket(7, 1, 0, "checksummed"))
		if badSum {
			u[6] ^= 0x55
		}
		if err := unix.Sendto(fd, u, 0, &unix.SockaddrInet4{Addr: ap(legA).Addr().As4()}); err != nil {
			t.Fatal(err)
		}
	}
	send(false)
	b, from := recv(phoneB, 2*time.Second)
	if b == nil || from != ap(legB) || string(b[12:]) != "checksummed" {
		t.Fatalf("a correctly checksummed packet did not arrive rewritten: % x from %s", b, from)
	}
	// The receiver does verify: a corrupted checksum stays corrupted after
	// the rewrite and the packet is dropped.
	send(true)
	if b, _ := recv(phoneB, 300*time.Millisecond); b != nil {
		t.Fatalf("a packet with a bad checksum arrived: the receiver does not verify, so this test proves nothing")
	}
}

// udpDatagram builds a UDP header+payload with a full checksum.
func udpDatagram(src, dst netip.AddrPort, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	copy(u[8:], payload)
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	add(s4[:])
	add(d4[:])
	add([]byte{0, unix.IPPROTO_UDP, byte(len(u) >> 8), byte(len(u))})
	add(u)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	c := ^uint16(sum)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return u
}

func TestRouteParse(t *testing.T) {
	r, err := LookupRoute(netip.MustParseAddr("127.0.0.9"), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if !r.Local || r.Ifindex != lo.Index || !r.Src.IsLoopback() {
		t.Fatalf("route to 127.0.0.9: %+v", r)
	}
	if _, err := LookupRoute(netip.MustParseAddr("::1"), netip.Addr{}); err == nil {
		t.Fatal("IPv6 route accepted")
	}
	for _, b := range [][]byte{nil, {1, 2, 3}, make([]byte, 16), make([]byte, 40)} {
		if _, err := parseRouteReply(b, netip.Addr{}); err == nil {
			t.Fatalf("garbage %x parsed", b)
		}
	}
}

func TestInstallRejectsBadEntries(t *testing.T) {
	f := openOrSkip(t)
	good := Entry{From: netip.MustParseAddrPort("127.0.0.1:5000"), To: netip.MustParseAddrPort("127.0.0.3:6000")}
	k := Key{Peer: netip.MustParseAddrPort("127.0.0.2:7000"), Port: 5002}
	for name, c := range map[string]struct {
		k Key
		e Entry
	}{
		"ipv6 peer":   {Key{Peer: netip.MustParseAddrPort("[::1]:7000"), Port: 5002}, good},
		"zero port":   {Key{Peer: k.Peer}, good},
		"ipv6 target": {k, Entry{From: good.From, To: netip.MustParseAddrPort("[::1]:6000")}},
		"no source":   {k, Entry{To: good.To}},
		"unspecified": {k, Entry{From: netip.MustParseAddrPort("0.0.0.0:5000"), To: good.To}},
	} {
		if err := f.Install(c.k, c.e); err == nil {
			t.Errorf("%s: installed", name)
		}
	}
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
