package main

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestRelaysForward sends a packet each way through every implementation
// that needs nothing outside this process and checks what arrives, and from
// which port.
func TestRelaysForward(t *testing.T) {
	for _, impl := range []string{"reference", "reference-epoll", "sipedge"} {
		t.Run(impl, func(t *testing.T) {
			cfg := config{ip: netip.MustParseAddr("127.0.0.1"), portMin: 41000, portMax: 41999, workers: 2}
			r, err := impls[impl](cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			a := listen(t)
			b := listen(t)
			defer a.Close()
			defer b.Close()
			pa, pb, err := r.Create("t1", addrOf(a), addrOf(b))
			if err != nil {
				t.Fatal(err)
			}
			relayA := net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.ip, pa))
			relayB := net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.ip, pb))
			for seq := 0; seq < 3; seq++ {
				pkt := rtp(uint16(seq), 0x1111)
				if _, err := a.WriteToUDP(pkt, relayA); err != nil {
					t.Fatal(err)
				}
				expect(t, b, pkt, relayB)
				pkt = rtp(uint16(seq), 0x2222)
				if _, err := b.WriteToUDP(pkt, relayB); err != nil {
					t.Fatal(err)
				}
				expect(t, a, pkt, relayA)
			}
			if s := r.Stats(); !strings.Contains(s, "sessions=1") {
				t.Errorf("stats %q", s)
			}
		})
	}
}

// TestProtocol drives the stdin/stdout command loop.
func TestProtocol(t *testing.T) {
	r, _ := newReference(config{ip: netip.MustParseAddr("127.0.0.1")})
	defer r.Close()
	var out strings.Builder
	w := bufio.NewWriter(&out)
	for _, cmd := range []string{"create x 127.0.0.2:5000 127.0.0.3:5002", "create y bad 1", "nope", "stats"} {
		if handle(r, cmd, w) {
			t.Fatalf("%q ended the loop", cmd)
		}
	}
	if !handle(r, "quit", w) {
		t.Fatal("quit did not end the loop")
	}
	w.Flush()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ok ") || !strings.HasPrefix(lines[1], "err ") ||
		!strings.HasPrefix(lines[2], "err unknown") || !strings.HasPrefix(lines[3], "stats sessions=1 ") {
		t.Fatalf("replies:\n%s", out.String())
	}
}

func listen(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func rtp(seq uint16, ssrc uint32) []byte {
	b := make([]byte, 172)
	b[0] = 0x80
	b[2], b[3] = byte(seq>>8), byte(seq)
	b[8], b[9], b[10], b[11] = byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc)
	b[20] = 0x5a
	return b
}

func expect(t *testing.T, c *net.UDPConn, want []byte, from *net.UDPAddr) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, src, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("nothing relayed to %v: %v", c.LocalAddr(), err)
	}
	if string(buf[:n]) != string(want) {
		t.Fatalf("relayed packet differs")
	}
	if src.AddrPort() != from.AddrPort() {
		t.Fatalf("relayed from %v, want %v (symmetric RTP)", src, from)
	}
}
