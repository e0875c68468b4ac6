package relay

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func makeRTP(pt uint8, seq uint16, ts, ssrc uint32, payload []byte) []byte {
	b := make([]byte, 12, 12+len(payload))
	b[0] = 0x80
	b[1] = pt & 0x7f
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return append(b, payload...)
}

func appendReportBlock(b []byte, rb reportBlock) []byte {
	b = binary.BigEndian.AppendUint32(b, rb.SSRC)
	cum := uint32(rb.CumLost) & 0xffffff
	b = append(b, rb.FractionLost, byte(cum>>16), byte(cum>>8), byte(cum))
	b = binary.BigEndian.AppendUint32(b, rb.HighestSeq)
	b = binary.BigEndian.AppendUint32(b, rb.Jitter)
	b = binary.BigEndian.AppendUint32(b, rb.LSR)
	return binary.BigEndian.AppendUint32(b, rb.DLSR)
}

// makeRR builds an RR, or an SR when sr is set, followed by an SDES with a
// CNAME (a type the parser skips).
func makeRTCP(sr bool, ssrc uint32, blocks ...reportBlock) []byte {
	pt := byte(rtcpRR)
	if sr {
		pt = rtcpSR
	}
	b := []byte{0x80 | byte(len(blocks)), pt, 0, 0}
	b = binary.BigEndian.AppendUint32(b, ssrc)
	if sr {
		b = append(b, make([]byte, 20)...)
	}
	for _, rb := range blocks {
		b = appendReportBlock(b, rb)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)/4-1))
	// SDES: one chunk, CNAME "relay", END, padded to 32 bits.
	sdes := []byte{0x81, 202, 0, 0}
	sdes = binary.BigEndian.AppendUint32(sdes, ssrc)
	sdes = append(sdes, 1, 5, 'r', 'e', 'l', 'a', 'y', 0)
	for len(sdes)%4 != 0 {
		sdes = append(sdes, 0)
	}
	binary.BigEndian.PutUint16(sdes[2:], uint16(len(sdes)/4-1))
	return append(b, sdes...)
}

func TestParseRTP(t *testing.T) {
	p := makeRTP(0, 0x1234, 0xdeadbeef, 0xcafebabe, []byte("hello"))
	h, ok := parseRTP(p)
	if !ok || h.PT != 0 || h.Seq != 0x1234 || h.Timestamp != 0xdeadbeef || h.SSRC != 0xcafebabe || h.HeaderLen != 12 || h.Marker {
		t.Fatalf("parseRTP = %+v, %v", h, ok)
	}
	// CSRCs and a header extension.
	q := append([]byte{}, p[:12]...)
	q[0] = 0x80 | 0x10 | 2
	q[1] = 0x80 | 101
	q = append(q, make([]byte, 8)...)           // 2 CSRCs
	q = append(q, 0xbe, 0xde, 0, 1, 1, 2, 3, 4) // extension of one word
	q = append(q, "payload"...)
	h, ok = parseRTP(q)
	if !ok || !h.Marker || h.PT != 101 || h.HeaderLen != 12+8+8 {
		t.Fatalf("parseRTP with CSRC/ext = %+v, %v", h, ok)
	}
	bad := map[string][]byte{
		"short":             p[:11],
		"version 0 (ZRTP)":  append([]byte{0x10}, p[1:]...),
		"version 1":         append([]byte{0x40}, p[1:]...),
		"STUN":              {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		"CSRCs overflow":    append([]byte{0x8f}, p[1:]...),
		"extension missing": append([]byte{0x90}, p[1:12]...),
		"extension overflow": func() []byte {
			b := append([]byte{0x90}, p[1:12]...)
			return append(b, 0xbe, 0xde, 0, 9)
		}(),
	}
	for name, b := range bad {
		if _, ok := parseRTP(b); ok {
			t.Errorf("%s: parseRTP accepted %x", name, b)
		}
	}
}

func TestIsRTCPMux(t *testing.T) {
	for b1, want := range map[byte]bool{0: false, 8: false, 0x80 | 8: false, 0x80 | 62: false, 191: false, 192: true, 200: true, 201: true, 223: true, 224: false} {
		if got := isRTCPMux([]byte{0x80, b1}); got != want {
			t.Errorf("second byte %d: mux RTCP %v, want %v", b1, got, want)
		}
	}
}

func TestParseRTCP(t *testing.T) {
	rb1 := reportBlock{SSRC: 0x1111, FractionLost: 64, CumLost: -3, HighestSeq: 70000, Jitter: 160, LSR: 5, DLSR: 6}
	rb2 := reportBlock{SSRC: 0x2222, FractionLost: 1, CumLost: 1234567, HighestSeq: 1, Jitter: 8}
	for _, sr := range []bool{false, true} {
		b := makeRTCP(sr, 0xaaaa, rb1, rb2)
		if !rtcpHeaderOK(b) {
			t.Fatalf("sr=%v: header not ok", sr)
		}
		s, ok := parseRTCP(b, 0)
		if !ok || s.Packets != 2 || s.Sender != 0xaaaa || !s.HasBlock || s.Block != rb1 {
			t.Fatalf("sr=%v: parseRTCP = %+v, %v", sr, s, ok)
		}
		s, ok = parseRTCP(b, 0x2222)
		if !ok || s.Block != rb2 {
			t.Fatalf("sr=%v: want block for 0x2222, got %+v", sr, s.Block)
		}
	}
	// Empty RR (no blocks) is valid but has no block.
	if s, ok := parseRTCP(makeRTCP(false, 1), 0); !ok || s.HasBlock {
		t.Fatalf("empty RR: %+v %v", s, ok)
	}
	good := makeRTCP(true, 0xaaaa, rb1)
	bad := map[string][]byte{
		"empty":          {},
		"short":          good[:3],
		"version 1":      append([]byte{0x41}, good[1:]...),
		"trailing bytes": append(append([]byte{}, good...), 1, 2, 3, 4, 5),
		"length too big": func() []byte {
			b := append([]byte{}, good...)
			binary.BigEndian.PutUint16(b[2:], 200)
			return b
		}(),
		"blocks overflow": func() []byte {
			b := append([]byte{}, good...)
			b[0] = 0x80 | 5 // claims 5 blocks
			return b
		}(),
		"RTP type in compound": func() []byte {
			b := append([]byte{}, good...)
			return append(b, 0x80, 0, 0, 0)
		}(),
	}
	for name, b := range bad {
		if _, ok := parseRTCP(b, 0); ok {
			t.Errorf("%s: parseRTCP accepted %x", name, b)
		}
	}
	// SRTCP-like: valid first header, trailer: forwarded, no stats.
	srtcp := append(append([]byte{}, good...), 0x80, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9)
	if !rtcpHeaderOK(srtcp) {
		t.Error("SRTCP-like packet not forwardable")
	}
	if _, ok := parseRTCP(srtcp, 0); ok {
		t.Error("SRTCP-like packet parsed for stats")
	}
	for name, b := range map[string][]byte{"RTP": makeRTP(0, 1, 1, 1, nil), "short": {0x80, 200, 0}, "too long": {0x80, 200, 0, 9, 0, 0, 0, 0}} {
		if rtcpHeaderOK(b) {
			t.Errorf("%s: rtcpHeaderOK accepted %x", name, b)
		}
	}
}

func TestRxStatsLossAndJitter(t *testing.T) {
	var s rxStats
	h := rtpHeader{SSRC: 1}
	// 100 packets, 20 ms apart, perfectly timed, seq wraps; 5 lost.
	seq := uint16(65500)
	for i := 0; i < 100; i++ {
		h.Seq = seq + uint16(i)
		h.Timestamp = uint32(i * 160)
		if i%20 == 7 {
			continue
		}
		s.update(&h, uint32(1000+i*160))
	}
	exp, lost := s.totals()
	if exp != 100 || lost != 5 {
		t.Fatalf("expected/lost = %d/%d, want 100/5", exp, lost)
	}
	if j := s.jitterMS(8000); j != 0 {
		t.Fatalf("jitter %.3f ms for perfect timing", j)
	}
	// Alternate ±80 units (10 ms) of delay: jitter converges near 160 units = 20 ms.
	var u rxStats
	for i := 0; i < 2000; i++ {
		h.Seq = uint16(i)
		h.Timestamp = uint32(i * 160)
		d := 0
		if i%2 == 1 {
			d = 160
		}
		u.update(&h, uint32(i*160+d))
	}
	if j := u.jitterMS(8000); j < 18 || j > 21 {
		t.Fatalf("jitter %.2f ms, want ~20", j)
	}
	// New SSRC: counts continue, the new source starts fresh.
	h.SSRC = 2
	for i := 0; i < 10; i++ {
		h.Seq = uint16(30000 + i*2) // every other packet lost
		u.update(&h, 0)
	}
	exp, lost = u.totals()
	if exp != 2000+19 || lost != 9 {
		t.Fatalf("after SSRC change expected/lost = %d/%d, want 2019/9", exp, lost)
	}
	// A single wild sequence jump is ignored (not counted); two make a restart.
	var w rxStats
	h.SSRC = 3
	for i := 0; i < 10; i++ {
		h.Seq = uint16(i)
		w.update(&h, 0)
	}
	h.Seq = 40000
	w.update(&h, 0)
	if exp, lost := w.totals(); exp != 10 || lost != 0 {
		t.Fatalf("after a stray jump expected/lost = %d/%d, want 10/0", exp, lost)
	}
	h.Seq = 40001
	w.update(&h, 0)
	h.Seq = 40002
	w.update(&h, 0)
	if exp, lost := w.totals(); exp != 12 || lost != 0 {
		t.Fatalf("after a restart expected/lost = %d/%d, want 12/0", exp, lost)
	}
}

func TestRTPUnits(t *testing.T) {
	if got := rtpUnits(1500*time.Millisecond, 8000); got != 12000 {
		t.Fatalf("1.5 s at 8 kHz = %d", got)
	}
	// No overflow after long uptimes (wraps mod 2^32 like RTP timestamps).
	d := 400 * 24 * time.Hour
	if got, want := rtpUnits(d+time.Second, 90000), rtpUnits(d, 90000)+90000; got != want {
		t.Fatalf("wrap: %d != %d", got, want)
	}
}

func TestOneWayAlarmText(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(7 * time.Second)
	sending := legStats{packets: 300, firstRTP: t0, lastRTP: now.Add(-20 * time.Millisecond)}
	cases := []struct {
		name string
		b    legStats
		bIn  alarmInput
		want string
	}{
		{"silent side", legStats{}, alarmInput{}, "one-way audio: no RTP from B for 7s while A sends; B has sent nothing at all — its phone may be sending to a wrong (private?) address, or a firewall drops it"},
		{"NAT moved", legStats{packets: 10, firstRTP: t0, lastRTP: t0, droppedForeign: 120, lastForeign: ap("198.51.100.22:40112"), lastForeignAt: now},
			alarmInput{latched: true, src: ap("198.51.100.22:40000")},
			"120 packets from B were dropped because they came from 198.51.100.22:40112, not the locked source 198.51.100.22:40000 — B's NAT may have changed its port"},
		{"stopped", legStats{packets: 10, firstRTP: t0, lastRTP: t0.Add(-5 * time.Second)}, alarmInput{latched: true}, "B stopped sending 12s ago"},
		{"both send", legStats{packets: 10, firstRTP: t0, lastRTP: now}, alarmInput{}, ""},
		{"too early", legStats{}, alarmInput{}, ""},
	}
	for _, c := range cases {
		a := sending
		b := c.b
		in := [2]alarmInput{{stats: &a}, c.bIn}
		in[B].stats = &b
		est := t0
		if c.name == "too early" {
			est = now.Add(-4 * time.Second)
		}
		got := oneWayAlarm(now, est, 5*time.Second, "audio", in)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: alarm %q, want it to contain %q", c.name, got, c.want)
		}
		// Symmetric: swap the sides.
		in[A], in[B] = in[B], in[A]
		got = oneWayAlarm(now, est, 5*time.Second, "audio", in)
		if c.want != "" && !strings.Contains(got, "no RTP from A") {
			t.Errorf("%s swapped: alarm %q", c.name, got)
		}
	}
}

// FuzzRTP checks that arbitrary input never crashes the RTP path and that
// accepted headers are self-consistent.
func FuzzRTP(f *testing.F) {
	f.Add(makeRTP(0, 1, 160, 0x1234, []byte("payload")))
	f.Add([]byte{0x90, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 1, 2, 3, 4})
	f.Add([]byte{0x8f, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := parseRTP(b)
		if !ok {
			return
		}
		if len(b) < 12 || h.HeaderLen < 12 || h.HeaderLen > len(b) || b[0]>>6 != 2 {
			t.Fatalf("accepted inconsistent header %+v for %d bytes", h, len(b))
		}
		var s rxStats
		s.update(&h, 1)
		s.update(&h, 2)
		if exp, _ := s.totals(); exp < 1 {
			t.Fatalf("expected %d after packets", exp)
		}
	})
}

// fuzzSession is a session without sockets (fake fds that handle never
// uses), so fuzz inputs can run through the whole per-packet path.
func fuzzSession() (*Session, *[2]leg) {
	r := &Relay{
		pol: latchPolicy{learning: 3 * time.Second, maxWindow: maxLearnWindow, probation: 2},
		log: slog.New(slog.DiscardHandler),
		cfg: Config{Now: time.Now},
	}
	s := &Session{r: r, id: "fuzz"}
	st := s.stream(0)
	for k := range st.legs {
		l := &st.legs[k]
		l.bind = ip("127.0.0.1")
		l.port = 40000 + 2*k
		for j := range l.socks {
			l.socks[j].fd, l.socks[j].closed = 100+2*k+j, false
		}
	}
	now := time.Now()
	st.legs[A].latch.setPeer(now, Peer{RTP: ap("127.0.0.2:4000"), Source: ip("127.0.0.2")})
	st.legs[B].latch.setPeer(now, Peer{RTP: ap("127.0.0.3:4000"), Source: ip("127.0.0.3"), Mux: true})
	st.legs[B].peer.Mux = true
	return s, &st.legs
}

// FuzzHandle runs arbitrary datagrams through the relay's per-packet path
// (classification, parsing, latching, statistics) on RTP and RTCP sockets,
// from the announced, a learnable and a foreign source.
func FuzzHandle(f *testing.F) {
	f.Add(makeRTP(0, 1, 160, 0x1234, []byte("payload")), uint8(0))
	f.Add(makeRTCP(true, 1, reportBlock{SSRC: 2}), uint8(1))
	f.Add([]byte{0x80, 201, 0, 1, 0, 0, 0, 1}, uint8(6))
	f.Fuzz(func(t *testing.T, b []byte, sel uint8) {
		s, legs := fuzzSession()
		srcs := []netip.AddrPort{ap("127.0.0.2:4000"), ap("127.0.0.2:4001"), ap("127.0.0.2:5000"), ap("127.0.0.66:1")}
		var c batchCounters
		now := time.Now()
		for i := 0; i < 4; i++ {
			l := &legs[(int(sel)+i)%2]
			k := &l.socks[(int(sel)>>1+i)%2]
			src := srcs[(int(sel)>>2+i)%len(srcs)]
			s.mu.Lock()
			o, ok := s.handle(k, src, b, now, &c)
			s.mu.Unlock()
			if ok && (!validAP(o.dst) || o.fd < 100) {
				t.Fatalf("forwarded to %s fd %d", o.dst, o.fd)
			}
			if ok && src.Addr() == ip("127.0.0.66") {
				t.Fatalf("forwarded a packet from a foreign IP: %x", b)
			}
		}
	})
}

// FuzzRTCP checks that arbitrary input never crashes the RTCP parsers and
// that a parsed compound is consistent.
func FuzzRTCP(f *testing.F) {
	f.Add(makeRTCP(true, 1, reportBlock{SSRC: 2, FractionLost: 3, CumLost: -1, Jitter: 4}))
	f.Add(makeRTCP(false, 1))
	f.Add([]byte{0x80, 200, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr := rtcpHeaderOK(b)
		s, ok := parseRTCP(b, 2)
		if ok && !hdr && len(b) >= 8 {
			t.Fatalf("compound parsed but first header rejected: %x", b)
		}
		if ok && s.Packets < 1 {
			t.Fatalf("ok with %d packets", s.Packets)
		}
		if ok {
			// The packets must cover the input exactly.
			n, total := 0, 0
			for total < len(b) {
				total += 4 * (int(binary.BigEndian.Uint16(b[total+2:])) + 1)
				n++
			}
			if total != len(b) || n != s.Packets {
				t.Fatalf("parsed %d packets over %d bytes, input %d bytes", n, total, len(b))
			}
		}
		if s.HasBlock && (s.Block.CumLost > 1<<23-1 || s.Block.CumLost < -(1<<23)) {
			t.Fatalf("cumulative lost out of 24-bit range: %d", s.Block.CumLost)
		}
		_ = isRTCPMux(b)
	})
}
