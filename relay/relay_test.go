package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Tests with real sockets use only loopback addresses: phones on 127.0.0.2
// and 127.0.0.3, an attacker on 127.0.0.66, the relay on 127.0.0.1. Relay
// ports come from 61000-64999, above Linux's ephemeral range, so the phones'
// own sockets do not collide with them.

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestRelay(t testing.TB, cfg Config) *Relay {
	t.Helper()
	if cfg.PortMin == 0 {
		cfg.PortMin, cfg.PortMax = 61000, 61999
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// phone is a fake phone: an RTP and an RTCP socket on one loopback IP.
type phone struct {
	t          testing.TB
	name       string
	rtp, rtcp  *net.UDPConn
	seq        uint16
	ssrc       uint32
	relayRTP   netip.AddrPort // the relay port this phone was given
	relayRTCP  netip.AddrPort
	clockStart uint32
}

func listenUDP(t testing.TB, ipStr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ipStr), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newPhone(t testing.TB, name, ipStr string, ssrc uint32) *phone {
	return &phone{t: t, name: name, rtp: listenUDP(t, ipStr), rtcp: listenUDP(t, ipStr), ssrc: ssrc, seq: 1000}
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (p *phone) rtpAddr() netip.AddrPort  { return addrOf(p.rtp) }
func (p *phone) rtcpAddr() netip.AddrPort { return addrOf(p.rtcp) }

// peer is the Peer a non-NATed phone announces.
func (p *phone) peer() Peer {
	return Peer{RTP: p.rtpAddr(), RTCP: p.rtcpAddr(), Source: p.rtpAddr().Addr(), Media: "audio"}
}

func (p *phone) sendRTP(payload string) []byte {
	p.t.Helper()
	p.seq++
	b := makeRTP(0, p.seq, uint32(p.seq)*160, p.ssrc, []byte(payload))
	if _, err := p.rtp.WriteToUDPAddrPort(b, p.relayRTP); err != nil {
		p.t.Fatal(err)
	}
	return b
}

func (p *phone) sendRTCP(c *net.UDPConn, to netip.AddrPort, b []byte) {
	p.t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		p.t.Fatal(err)
	}
}

func readFrom(t testing.TB, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read on %s: %v", c.LocalAddr(), err)
	}
	return buf[:n], from
}

// expectRTP reads one packet on the phone's RTP socket and checks it came
// from the relay port the phone was given, with this payload.
func (p *phone) expectRTP(payload string) {
	p.t.Helper()
	b, from := readFrom(p.t, p.rtp)
	if from != p.relayRTP {
		p.t.Fatalf("%s: packet from %s, want the relay port %s", p.name, from, p.relayRTP)
	}
	h, ok := parseRTP(b)
	if !ok {
		p.t.Fatalf("%s: got non-RTP %x", p.name, b)
	}
	if got := string(b[h.HeaderLen:]); got != payload {
		p.t.Fatalf("%s: got payload %q, want %q", p.name, got, payload)
	}
}

// drainUntil reads RTP until a packet with payload end arrives; any packet
// whose payload contains "EVIL" fails the test.
func (p *phone) drainUntil(end string) int {
	p.t.Helper()
	n := 0
	for {
		b, _ := readFrom(p.t, p.rtp)
		n++
		if bytes.Contains(b, []byte("EVIL")) {
			p.t.Fatalf("%s received an attacker packet: %q", p.name, b)
		}
		if h, ok := parseRTP(b); ok && string(b[h.HeaderLen:]) == end {
			return n
		}
	}
}

// expectOnlyEnd sends an END marker each way and checks it is the only
// packet either phone still had to read: nothing else (an attacker's
// packets) got through.
func expectOnlyEnd(t *testing.T, a, b *phone) {
	t.Helper()
	a.sendRTP("END-A")
	b.sendRTP("END-B")
	if n := b.drainUntil("END-A"); n != 1 {
		t.Fatalf("B got %d packets before END", n)
	}
	if n := a.drainUntil("END-B"); n != 1 {
		t.Fatalf("A got %d packets before END", n)
	}
}

// call sets up a session with one audio stream between two phones.
func setupCall(t testing.TB, r *Relay, id string, a, b *phone, bind string, pa, pb Peer) *Session {
	t.Helper()
	s := r.Create(id)
	bindIP := netip.MustParseAddr(bind)
	portA, err := s.Leg(0, A, bindIP)
	if err != nil {
		t.Fatal(err)
	}
	portB, err := s.Leg(0, B, bindIP)
	if err != nil {
		t.Fatal(err)
	}
	if portA%2 != 0 || portB%2 != 0 || portA == portB {
		t.Fatalf("ports %d %d: want distinct even ports", portA, portB)
	}
	a.relayRTP = netip.AddrPortFrom(bindIP, uint16(portA))
	a.relayRTCP = netip.AddrPortFrom(bindIP, uint16(portA+1))
	b.relayRTP = netip.AddrPortFrom(bindIP, uint16(portB))
	b.relayRTCP = netip.AddrPortFrom(bindIP, uint16(portB+1))
	s.SetPeer(0, A, pa)
	s.SetPeer(0, B, pb)
	s.Established()
	return s
}

func TestForwardBothWays(t *testing.T) {
	r := newTestRelay(t, Config{})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	s := setupCall(t, r, "call-1", a, b, "127.0.0.1", a.peer(), b.peer())

	const n = 50
	var bytesA, bytesB uint64
	for i := 0; i < n; i++ {
		bytesA += uint64(len(a.sendRTP(fmt.Sprintf("A->B #%d", i))))
		b.expectRTP(fmt.Sprintf("A->B #%d", i))
	}
	for i := 0; i < n; i++ {
		bytesB += uint64(len(b.sendRTP(fmt.Sprintf("B->A #%d", i))))
		a.expectRTP(fmt.Sprintf("B->A #%d", i))
	}
	waitFor(t, "totals", func() bool { tt := r.Totals(); return tt.PacketsAtoB == n && tt.PacketsBtoA == n })
	tt := r.Totals()
	if tt.BytesAtoB != bytesA || tt.BytesBtoA != bytesB || tt.Sessions != 1 || tt.Established != 1 || tt.PortsInUse != 4 ||
		tt.DroppedForeign != 0 || tt.DroppedNoTarget != 0 || tt.DroppedLearning != 0 {
		t.Fatalf("totals %+v", tt)
	}
	info := s.Info()
	st := info.Streams[0]
	if st.A.Packets != n || st.B.Packets != n || st.A.Bytes != bytesA || st.B.Bytes != bytesB {
		t.Fatalf("leg counters A %d/%d B %d/%d", st.A.Packets, st.A.Bytes, st.B.Packets, st.B.Bytes)
	}
	if !st.A.Latched || st.A.Source != a.rtpAddr() || st.B.Source != b.rtpAddr() || st.A.Target != a.rtpAddr() {
		t.Fatalf("latch state: %+v / %+v", st.A, st.B)
	}
	if st.A.Expected != n || st.A.Lost != 0 || st.A.SSRC != 0xa || st.A.LastSeen.IsZero() {
		t.Fatalf("A stats: expected %d lost %d ssrc %x", st.A.Expected, st.A.Lost, st.A.SSRC)
	}
	if st.Alarm != "" || st.Media != "audio" {
		t.Fatalf("stream: %+v", st)
	}
	// The snapshot is JSON for the admin API.
	js, err := json.Marshal(r.Sessions())
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"id":"call-1"`, `"local_rtp":`, `"latched":true`, `"source":"127.0.0.2:`, `"jitter_ms":`} {
		if !strings.Contains(string(js), key) {
			t.Errorf("JSON lacks %s: %s", key, js)
		}
	}
	if strings.Contains(string(js), `"alarm"`) {
		t.Errorf("JSON has an empty alarm: %s", js)
	}
}

// TestAttackerNeverReachesPhones sprays RTP and RTCP from a foreign loopback
// IP at both relay ports, before, during and after learning; a NATed phone
// learns its real port meanwhile. No attacker packet may reach a phone.
func TestAttackerNeverReachesPhones(t *testing.T) {
	clk := newFakeClock()
	r := newTestRelay(t, Config{Now: clk.Now})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	evil := listenUDP(t, "127.0.0.66")
	// A is NATed: it announces a private address; its NAT (SIP source)
	// is 127.0.0.2. The relay must learn A's real port.
	pa := Peer{RTP: ap("10.11.12.13:4000"), Source: ip("127.0.0.2"), NAT: true}
	s := setupCall(t, r, "call-evil", a, b, "127.0.0.1", pa, b.peer())

	sent := 0
	// RTCP is accepted from the latched IP on any port (phones pick their
	// RTCP port freely), so the spray from A's own NAT IP is RTP only.
	spray := func(from *net.UDPConn, n int, rtcp bool) {
		t.Helper()
		for i := 0; i < n; i++ {
			for _, dst := range []netip.AddrPort{a.relayRTP, b.relayRTP} {
				pkt := makeRTP(0, uint16(i), uint32(i)*160, 0xe711, []byte("EVIL"))
				if _, err := from.WriteToUDPAddrPort(pkt, dst); err != nil {
					t.Fatal(err)
				}
				sent++
			}
			for _, dst := range []netip.AddrPort{a.relayRTCP, b.relayRTCP} {
				if !rtcp {
					break
				}
				if _, err := from.WriteToUDPAddrPort(append(makeRTCP(false, 0xe711), "EVIL"...), dst); err != nil {
					t.Fatal(err)
				}
				sent++
			}
		}
		waitFor(t, "attacker packets counted", func() bool { return r.Totals().DroppedForeign == uint64(sent) })
	}

	spray(evil, 20, true) // before anyone sent: inside the learning window
	if info := s.Info().Streams[0]; info.A.Latched || info.A.DroppedForeign != 40 || info.B.DroppedForeign != 40 {
		t.Fatalf("after first spray: A latched=%v foreign A=%d B=%d", info.A.Latched, info.A.DroppedForeign, info.B.DroppedForeign)
	}
	if info := s.Info().Streams[0]; info.A.LastForeign.Addr() != ip("127.0.0.66") {
		t.Fatalf("last foreign %s", info.A.LastForeign)
	}

	// A starts: the first Probation-1 packets are held back, then it latches.
	for i := 0; i < 10; i++ {
		a.sendRTP(fmt.Sprintf("a%d", i))
	}
	for i := 3; i < 10; i++ {
		b.expectRTP(fmt.Sprintf("a%d", i))
	}
	if info := s.Info().Streams[0].A; !info.Latched || info.Source != a.rtpAddr() || info.DroppedLearning != 3 || info.Target != a.rtpAddr() {
		t.Fatalf("A not latched to its real port: %+v", info)
	}
	b.sendRTP("b0")
	a.expectRTP("b0")

	spray(evil, 20, true) // still inside the window (the clock has not moved)
	clk.Add(10 * time.Second)
	if info := s.Info().Streams[0]; !info.A.Locked || !info.B.Locked {
		t.Fatal("legs not locked after the learning window")
	}
	spray(evil, 20, true) // after the window
	// After the lock even A's own NAT IP from another port is foreign.
	natEvil := listenUDP(t, "127.0.0.2")
	spray(natEvil, 10, false)

	expectOnlyEnd(t, a, b)
	info := s.Info().Streams[0]
	if info.A.DroppedForeign+info.B.DroppedForeign != uint64(sent) {
		t.Fatalf("dropped foreign %d+%d, sent %d", info.A.DroppedForeign, info.B.DroppedForeign, sent)
	}
	if info.A.Source != a.rtpAddr() || info.B.Source != b.rtpAddr() {
		t.Fatalf("latch moved: A %s B %s", info.A.Source, info.B.Source)
	}
}

// TestStrayOldPortAfterReinvite: after a re-INVITE (SetPeer again) a single
// packet from another port of the phone's IP does not move the latch.
func TestStrayOldPortAfterReinvite(t *testing.T) {
	clk := newFakeClock()
	r := newTestRelay(t, Config{Now: clk.Now})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	s := setupCall(t, r, "call-stray", a, b, "127.0.0.1", a.peer(), b.peer())
	a.sendRTP("x")
	b.expectRTP("x")
	clk.Add(time.Minute)
	s.SetPeer(0, A, a.peer()) // re-INVITE: window reopens
	old := listenUDP(t, "127.0.0.2")
	if _, err := old.WriteToUDPAddrPort(makeRTP(0, 7, 7, 0xa, []byte("EVIL stray")), a.relayRTP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stray counted", func() bool { return s.Info().Streams[0].A.DroppedLearning == 1 })
	b.sendRTP("to-A")
	a.expectRTP("to-A")
	a.sendRTP("END")
	b.drainUntil("END")
}

func TestRTCPAndMux(t *testing.T) {
	r := newTestRelay(t, Config{})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	pb := b.peer()
	pb.Mux = true
	pb.RTCP = netip.AddrPort{}
	s := setupCall(t, r, "call-rtcp", a, b, "127.0.0.1", a.peer(), pb)

	// RTP first, so that each side has an SSRC.
	a.sendRTP("a")
	b.expectRTP("a")
	b.sendRTP("b")
	a.expectRTP("b")

	// A (no mux) sends an SR on its RTCP socket to the relay's RTCP port;
	// B (mux) gets it on its RTP socket from the relay's RTP port.
	srA := makeRTCP(true, 0xa, reportBlock{SSRC: 0xb, FractionLost: 128, CumLost: 7, Jitter: 80})
	a.sendRTCP(a.rtcp, a.relayRTCP, srA)
	got, from := readFrom(t, b.rtp)
	if !bytes.Equal(got, srA) || from != b.relayRTP {
		t.Fatalf("B got %x from %s, want the SR from %s", got, from, b.relayRTP)
	}
	// B sends a muxed RR on its RTP socket; A gets it on its RTCP socket
	// from the relay's RTCP port.
	rrB := makeRTCP(false, 0xb, reportBlock{SSRC: 0xa, FractionLost: 64, CumLost: -1, Jitter: 160})
	b.sendRTCP(b.rtp, b.relayRTP, rrB)
	got, from = readFrom(t, a.rtcp)
	if !bytes.Equal(got, rrB) || from != a.relayRTCP {
		t.Fatalf("A got %x from %s, want the RR from %s", got, from, a.relayRTCP)
	}
	// RTCP from a foreign IP is dropped.
	evil := listenUDP(t, "127.0.0.66")
	evil.WriteToUDPAddrPort(makeRTCP(false, 0xe), a.relayRTCP)
	evil.WriteToUDPAddrPort(makeRTCP(false, 0xe), b.relayRTP)
	waitFor(t, "foreign RTCP counted", func() bool { return r.Totals().DroppedForeign == 2 })

	st := s.Info().Streams[0]
	if st.A.RTCPPackets != 1 || st.B.RTCPPackets != 1 || r.Totals().RTCPPackets != 2 {
		t.Fatalf("rtcp counters A %d B %d", st.A.RTCPPackets, st.B.RTCPPackets)
	}
	if st.A.Report == nil || st.A.Report.FractionLost != 0.5 || st.A.Report.CumulativeLost != 7 || st.A.Report.JitterMS != 10 {
		t.Fatalf("A's report %+v", st.A.Report)
	}
	if st.B.Report == nil || st.B.Report.FractionLost != 0.25 || st.B.Report.CumulativeLost != -1 || st.B.Report.JitterMS != 20 {
		t.Fatalf("B's report %+v", st.B.Report)
	}
	if !st.B.RTCPMux || st.B.RTCPTarget != b.rtpAddr() || st.A.RTCPTarget != a.rtcpAddr() {
		t.Fatalf("rtcp targets A %s B %s", st.A.RTCPTarget, st.B.RTCPTarget)
	}
	// RTP still flows after RTCP.
	a.sendRTP("END")
	b.drainUntil("END")
}

func TestIPv6(t *testing.T) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Close()
	r := newTestRelay(t, Config{})
	a := newPhone(t, "A", "::1", 0xa)
	b := newPhone(t, "B", "::1", 0xb)
	s := setupCall(t, r, "call-v6", a, b, "::1", a.peer(), b.peer())
	for i := 0; i < 5; i++ {
		a.sendRTP(fmt.Sprintf("v6 a%d", i))
		b.expectRTP(fmt.Sprintf("v6 a%d", i))
		b.sendRTP(fmt.Sprintf("v6 b%d", i))
		a.expectRTP(fmt.Sprintf("v6 b%d", i))
	}
	a.sendRTCP(a.rtcp, a.relayRTCP, makeRTCP(false, 0xa))
	if _, from := readFrom(t, b.rtcp); from != b.relayRTCP {
		t.Fatalf("v6 RTCP from %s", from)
	}
	if st := s.Info().Streams[0]; st.A.Packets != 5 || st.B.Packets != 5 || !st.A.Bind.Is6() {
		t.Fatalf("v6 counters %d %d", st.A.Packets, st.B.Packets)
	}
	// A wildcard bind of the other family works too.
	s2 := r.Create("call-v6-any")
	if _, err := s2.Leg(0, A, netip.IPv6Unspecified()); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Leg(0, B, netip.IPv4Unspecified()); err != nil {
		t.Fatal(err)
	}
}

// TestNoTargetAndGarbage: a side with nothing announced yet gets nothing;
// garbage on an RTP port is counted and does not disturb the flow.
func TestNoTargetAndGarbage(t *testing.T) {
	r := newTestRelay(t, Config{})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	s := r.Create("call-partial")
	bind := ip("127.0.0.1")
	pa, _ := s.Leg(0, A, bind)
	pb, _ := s.Leg(0, B, bind)
	a.relayRTP = netip.AddrPortFrom(bind, uint16(pa))
	b.relayRTP = netip.AddrPortFrom(bind, uint16(pb))
	s.SetPeer(0, A, a.peer())
	a.sendRTP("early") // B has announced nothing yet
	waitFor(t, "no-target drop", func() bool { return r.Totals().DroppedNoTarget == 1 })
	for _, g := range [][]byte{{}, {0}, []byte("GET / HTTP/1.0\r\n\r\n"), {0x80}, make([]byte, 3000)} {
		a.rtp.WriteToUDPAddrPort(g, a.relayRTP)
	}
	waitFor(t, "garbage drops", func() bool { return r.Totals().DroppedMalformed == 5 })
	s.SetPeer(0, B, b.peer())
	a.sendRTP("now")
	b.expectRTP("now")
	if st := s.Info().Streams[0].A; st.DroppedMalformed != 5 || st.DroppedNoTarget != 1 || st.Packets != 2 {
		t.Fatalf("A counters %+v", st)
	}
}

func TestTimeouts(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	fired := map[string]string{}
	r := newTestRelay(t, Config{Now: clk.Now, OnTimeout: func(id, reason string) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := fired[id]; dup {
			t.Errorf("OnTimeout twice for %s", id)
		}
		fired[id] = reason
	}})
	reason := func(id string) string { mu.Lock(); defer mu.Unlock(); return fired[id] }
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)

	offer := r.Create("offer-only")
	if _, err := offer.Leg(0, A, ip("127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	active := setupCall(t, r, "active", a, b, "127.0.0.1", a.peer(), b.peer())
	h1 := newPhone(t, "H1", "127.0.0.4", 1)
	h2 := newPhone(t, "H2", "127.0.0.5", 2)
	ph := h1.peer()
	ph.Hold = true
	held := setupCall(t, r, "held", h1, h2, "127.0.0.1", ph, h2.peer())
	_ = held

	clk.Add(50 * time.Second)
	a.sendRTP("alive")
	b.expectRTP("alive")
	clk.Add(59 * time.Second) // 59 s after the last packet
	r.sweep(clk.Now())
	if reason("active") != "" || reason("held") != "" {
		t.Fatalf("early timeout: %v", fired)
	}
	clk.Add(2 * time.Second)
	r.sweep(clk.Now())
	if got := reason("active"); got != "no media for 1m1s" {
		t.Fatalf("active: reason %q", got)
	}
	if _, ok := r.Get("active"); ok {
		t.Fatal("timed-out session not deleted")
	}
	if reason("held") != "" {
		t.Fatal("held call timed out with the normal timeout")
	}
	clk.Add(9*time.Minute + 30*time.Second)
	r.sweep(clk.Now())
	if got := reason("offer-only"); !strings.Contains(got, "not established within 10m0s") {
		t.Fatalf("offer: reason %q", got)
	}
	clk.Add(time.Hour)
	r.sweep(clk.Now())
	if got := reason("held"); !strings.Contains(got, "while on hold") {
		t.Fatalf("held: reason %q", got)
	}
	r.sweep(clk.Now())
	if tt := r.Totals(); tt.Sessions != 0 || tt.PortsInUse != 0 || tt.Timeouts != 3 {
		t.Fatalf("after timeouts: %+v", tt)
	}
	if _, err := active.Leg(1, A, ip("127.0.0.1")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leg on a deleted session: %v", err)
	}
}

// TestTimeoutFromHousekeeping checks the housekeeping goroutine itself.
func TestTimeoutFromHousekeeping(t *testing.T) {
	clk := newFakeClock()
	done := make(chan string, 1)
	r := newTestRelay(t, Config{Now: clk.Now, Timeout: 5 * time.Second, OnTimeout: func(id, reason string) { done <- id + ": " + reason }})
	s := r.Create("idle")
	s.Established()
	clk.Add(6 * time.Second)
	select {
	case got := <-done:
		if got != "idle: no media for 6s" {
			t.Fatalf("OnTimeout(%s)", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("housekeeping did not time out the session")
	}
	waitFor(t, "session deleted", func() bool { _, ok := r.Get("idle"); return !ok })
}

func TestOneWayAlarm(t *testing.T) {
	clk := newFakeClock()
	r := newTestRelay(t, Config{Now: clk.Now})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	s := setupCall(t, r, "call-oneway", a, b, "127.0.0.1", a.peer(), b.peer())
	alarm := func() string { return s.Info().Streams[0].Alarm }
	for i := 0; i < 4; i++ {
		a.sendRTP(fmt.Sprint(i))
		b.expectRTP(fmt.Sprint(i))
		if i < 3 {
			clk.Add(2 * time.Second)
		}
	}
	want := "one-way audio: no RTP from B for 6s while A sends; B has sent nothing at all — its phone may be sending to a wrong (private?) address, or a firewall drops it"
	if got := alarm(); got != want {
		t.Fatalf("alarm %q\nwant  %q", got, want)
	}
	r.sweep(clk.Now()) // logs it; must not time out
	b.sendRTP("b")
	a.expectRTP("b")
	if got := alarm(); got != "" {
		t.Fatalf("alarm %q after B sent", got)
	}
	// B's NAT changes its port after the window closed: its packets are
	// dropped and the alarm says why.
	clk.Add(6 * time.Second)
	moved := listenUDP(t, "127.0.0.3")
	for i := 0; i < 3; i++ {
		a.sendRTP(fmt.Sprint("x", i))
		b.expectRTP(fmt.Sprint("x", i))
		moved.WriteToUDPAddrPort(makeRTP(0, uint16(i), 0, 0xb, nil), b.relayRTP)
		clk.Add(3 * time.Second)
	}
	a.sendRTP("y")
	b.expectRTP("y")
	waitFor(t, "drops", func() bool { return s.Info().Streams[0].B.DroppedForeign == 3 })
	got := alarm()
	if !strings.Contains(got, "no RTP from B for") || !strings.Contains(got, "3 packets from B were dropped because they came from "+addrOf(moved).String()+", not the locked source") {
		t.Fatalf("alarm %q", got)
	}
	// No alarm while a side is on hold.
	ph := b.peer()
	ph.Hold = true
	s.SetPeer(0, B, ph)
	if got := alarm(); got != "" {
		t.Fatalf("alarm %q while on hold", got)
	}
}

func TestDeleteFreesPortsAndExhaustion(t *testing.T) {
	r := newTestRelay(t, Config{PortMin: 62000, PortMax: 62003}) // two pairs
	bind := ip("127.0.0.1")
	s1 := r.Create("one")
	p1, err := s1.Leg(0, A, bind)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := s1.Leg(0, B, bind)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := s1.Leg(0, A, bind); again != p1 {
		t.Fatalf("Leg again: %d, want %d", again, p1)
	}
	if _, err := s1.Leg(0, A, netip.IPv6Loopback()); err == nil {
		t.Fatal("Leg with another family accepted")
	}
	s2 := r.Create("two")
	if _, err := s2.Leg(0, A, bind); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("exhausted range: err %v", err)
	} else if !strings.Contains(err.Error(), "62000-62003") {
		t.Fatalf("error does not name the range: %v", err)
	}
	if tt := r.Totals(); tt.PortsInUse != 4 || tt.PortsTotal != 4 {
		t.Fatalf("ports %d/%d", tt.PortsInUse, tt.PortsTotal)
	}
	r.Delete("one")
	r.Delete("one") // idempotent
	if tt := r.Totals(); tt.PortsInUse != 0 || tt.Sessions != 1 {
		t.Fatalf("after delete: %+v", tt)
	}
	// The ports are really closed: they can be bound again.
	for _, p := range []int{p1, p1 + 1, p2, p2 + 1} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			t.Fatalf("port %d still bound after Delete: %v", p, err)
		}
		c.Close()
	}
	q1, err := s2.Leg(0, A, bind)
	if err != nil {
		t.Fatal(err)
	}
	q2, err := s2.Leg(0, B, bind)
	if err != nil {
		t.Fatal(err)
	}
	if q1 == q2 || (q1 != 62000 && q1 != 62002) || (q2 != 62000 && q2 != 62002) {
		t.Fatalf("re-allocated %d %d", q1, q2)
	}
	// A pair held by another socket is skipped, and the error says so.
	r.Delete("two")
	hold, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 62001})
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	s3 := r.Create("three")
	if p, err := s3.Leg(0, A, bind); err != nil || p != 62002 {
		t.Fatalf("Leg with 62001 busy: %d %v", p, err)
	}
	if _, err := s3.Leg(0, B, bind); !errors.Is(err, ErrNoPorts) || !strings.Contains(err.Error(), "1 held by other sockets") {
		t.Fatalf("err %v", err)
	}
}

func TestRandomPorts(t *testing.T) {
	r := newTestRelay(t, Config{PortMin: 63000, PortMax: 63999})
	seen := map[int]bool{}
	for i := 0; i < 20; i++ {
		s := r.Create(fmt.Sprint("s", i))
		p, err := s.Leg(0, A, ip("127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		seen[p] = true
		r.Delete(s.ID())
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct ports in 20 allocations: not random", len(seen))
	}
}

func TestSessionsAndClose(t *testing.T) {
	clk := newFakeClock()
	r, err := New(Config{PortMin: 64000, PortMax: 64099, Now: clk.Now, Workers: 3, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c", "a", "b"} {
		s := r.Create(id)
		if _, err := s.Leg(0, A, ip("127.0.0.1")); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
	}
	if s1, s2 := r.Create("a"), r.Create("a"); s1 != s2 {
		t.Fatal("Create did not return the existing session")
	}
	var ids []string
	for _, si := range r.Sessions() {
		ids = append(ids, si.ID)
	}
	if strings.Join(ids, ",") != "c,a,b" {
		t.Fatalf("Sessions order %v", ids)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if tt := r.Totals(); tt.Sessions != 0 || tt.PortsInUse != 0 {
		t.Fatalf("after Close: %+v", tt)
	}
	if _, err := r.Create("late").Leg(0, A, ip("127.0.0.1")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leg after Close: %v", err)
	}
}

// TestConcurrentControl runs control calls against live traffic (for -race).
func TestConcurrentControl(t *testing.T) {
	r := newTestRelay(t, Config{})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	s := setupCall(t, r, "busy", a, b, "127.0.0.1", a.peer(), b.peer())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = s.Info()
			_ = r.Sessions()
			_ = r.Totals()
			s.SetPeer(0, A, a.peer())
			x := r.Create(fmt.Sprint("tmp", i%4))
			x.Leg(0, A, ip("127.0.0.1"))
			r.Delete(x.ID())
		}
	}()
	for i := 0; i < 200; i++ {
		a.sendRTP(fmt.Sprint(i))
		b.expectRTP(fmt.Sprint(i))
	}
	close(stop)
	wg.Wait()
}

// TestStrangerGarbageIsForeign: whatever a stranger sends — RTP sprayed at
// an RTCP port, bytes that are not RTP at an RTP port — counts as foreign
// (an attack), not as a phone's malformed packet.
func TestStrangerGarbageIsForeign(t *testing.T) {
	r := newTestRelay(t, Config{})
	a := newPhone(t, "A", "127.0.0.2", 0xa)
	b := newPhone(t, "B", "127.0.0.3", 0xb)
	evil := listenUDP(t, "127.0.0.66")
	s := setupCall(t, r, "call-garbage", a, b, "127.0.0.1", a.peer(), b.peer())
	for _, dst := range []netip.AddrPort{a.relayRTCP, b.relayRTCP} {
		if _, err := evil.WriteToUDPAddrPort(makeRTP(0, 1, 160, 0xe711, []byte("EVIL")), dst); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := evil.WriteToUDPAddrPort([]byte("not rtp"), a.relayRTP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stranger's packets counted", func() bool { return r.Totals().DroppedForeign == 3 })
	if tt := r.Totals(); tt.DroppedMalformed != 0 {
		t.Errorf("a stranger's packets counted as malformed: %+v", tt)
	}
	if st := s.Info().Streams[0]; st.A.DroppedForeign != 2 || st.B.DroppedForeign != 1 {
		t.Errorf("foreign A=%d B=%d, want 2 and 1", st.A.DroppedForeign, st.B.DroppedForeign)
	}
}
