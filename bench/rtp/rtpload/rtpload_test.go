package main

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/sipedge/sipedge/bench/rtp/internal/hist"
	"github.com/sipedge/sipedge/bench/rtp/internal/udpx"
)

func TestSDPAudio(t *testing.T) {
	sdp := phoneSDP(netip.MustParseAddrPort("127.0.0.2:4000"), 7)
	got, err := sdpAudio(sdp)
	if err != nil || got != netip.MustParseAddrPort("127.0.0.2:4000") {
		t.Fatalf("own SDP: %v, %v", got, err)
	}
	// rtpengine's answer: media-level c= wins over session level, video
	// before audio is skipped, the section after audio is ignored.
	reply := strings.Join([]string{
		"v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0",
		"m=video 5000 RTP/AVP 96", "c=IN IP4 10.9.9.9",
		"m=audio 40002 RTP/AVP 0", "c=IN IP4 127.0.0.1", "a=rtcp:40003",
		"m=audio 40010 RTP/AVP 0", "c=IN IP4 127.0.0.9", ""}, "\r\n")
	if got, err := sdpAudio(reply); err != nil || got != netip.MustParseAddrPort("127.0.0.1:40002") {
		t.Fatalf("reply: %v, %v", got, err)
	}
	if got, err := sdpAudio("v=0\nc=IN IP4 127.0.0.5\nm=audio 9 RTP/AVP 0\n"); err != nil || got.String() != "127.0.0.5:9" {
		t.Fatalf("session c=: %v, %v", got, err)
	}
	for _, bad := range []string{"v=0\r\n", "c=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n", "m=audio 9 RTP/AVP 0\r\n"} {
		if _, err := sdpAudio(bad); err == nil {
			t.Errorf("sdpAudio(%q) succeeded", bad)
		}
	}
}

func TestNGMessage(t *testing.T) {
	b, err := encodeNG("123_4", map[string]any{"command": "ping"})
	if err != nil || string(b) != "123_4 d7:command4:pinge" {
		t.Fatalf("encodeNG = %q, %v", b, err)
	}
	c, m, err := decodeNG([]byte("123_4 d6:result4:ponge"))
	if err != nil || c != "123_4" || m["result"] != "pong" {
		t.Fatalf("decodeNG = %q %v %v", c, m, err)
	}
	for _, bad := range []string{"nocookie", " d1:ai1ee", "c li1ee"} {
		if _, _, err := decodeNG([]byte(bad)); err == nil {
			t.Errorf("decodeNG(%q) succeeded", bad)
		}
	}
}

// TestReceiverAccounting feeds crafted packets to a receiver and checks loss,
// duplicate, reordering, wrong-source and wrong-phone counting.
func TestReceiverAccounting(t *testing.T) {
	o := &options{payload: 160, maxLoss: 0.1, maxLag: 1e9}
	g := &gen{o: o, pktLen: rtpHdr + 160, lag: hist.New()}
	g.tx = make([]txFlow, 2)
	src := netip.MustParseAddrPort("127.0.0.1:30000")
	srcRaw, _ := udpx.MakeAddr(src)
	other, _ := udpx.MakeAddr(netip.MustParseAddrPort("127.0.0.1:30001"))
	g.rx = []rxFlow{
		{rxFd: 10, expSrc: udpx.Key(&srcRaw), maxSeq: -1, seen: make([]uint64, 4)},
		{rxFd: 11, expSrc: udpx.Key(&other), maxSeq: -1, seen: make([]uint64, 4)},
	}
	r := &receiver{g: g, lat: hist.New()}
	pkt := func(flow, seq uint32, meas bool, sentNs int64) []byte {
		b := make([]byte, g.pktLen)
		initPacket(b, 160)
		binary.LittleEndian.PutUint32(b[offFlow:], flow)
		binary.LittleEndian.PutUint32(b[offSeq:], seq)
		binary.LittleEndian.PutUint64(b[offStamp:], uint64(sentNs))
		b[offFlags] = 0
		if meas {
			b[offFlags] = flagMeas
		}
		return b
	}
	// flow 0: seq 0 (warm-up, not measured), 1..5 measured with 3 missing,
	// 5 before 4 (reordered), 2 twice (duplicate).
	r.packet(10, pkt(0, 0, false, 0), &srcRaw, 1000, false)
	for _, s := range []uint32{1, 2, 2, 5, 4} {
		r.packet(10, pkt(0, s, true, 1000), &srcRaw, 1000+int64(s)*1000, false)
	}
	g.tx[0].sentMeas = 5
	// flow 1: one packet from the wrong source, one on the wrong socket,
	// one malformed, one truncated.
	g.tx[1].sentMeas = 1
	r.packet(11, pkt(1, 0, true, 0), &srcRaw, 500, false)
	r.packet(10, pkt(1, 1, true, 0), &other, 500, false)
	bad := pkt(1, 2, true, 0)
	bad[offMagic] ^= 0xff
	r.packet(11, bad, &other, 500, false)
	r.packet(11, pkt(1, 3, true, 0), &other, 500, true)

	f0, f1 := g.rx[0], g.rx[1]
	if f0.recv != 6 || f0.meas != 4 || f0.dup != 1 || f0.reord != 1 || f0.badSrc != 0 {
		t.Errorf("flow 0: %+v", f0)
	}
	if f1.recv != 1 || f1.meas != 1 || f1.badSrc != 1 {
		t.Errorf("flow 1: %+v", f1)
	}
	if r.misroute != 1 || r.bad != 2 {
		t.Errorf("misrouted %d (want 1), malformed %d (want 2)", r.misroute, r.bad)
	}
	// Latencies: 1000, 2000 (the duplicate is not counted), 5000, 4000, and 500.
	if r.lat.Count() != 5 || r.lat.Quantile(1) != 5000 || r.lat.Min() != 500 {
		t.Errorf("latency: n=%d max=%d min=%d", r.lat.Count(), r.lat.Quantile(1), r.lat.Min())
	}

	g.lat, g.misroute, g.bad = r.lat, r.misroute, r.bad
	o.duration = 1e9
	res := g.result(o)
	if res.Sent != 6 || res.Received != 5 || res.Lost != 1 || res.Pass {
		t.Errorf("result: sent %d received %d lost %d pass %v", res.Sent, res.Received, res.Lost, res.Pass)
	}
	if res.WorstFlow != 20 {
		t.Errorf("worst flow loss %.1f%%, want 20%%", res.WorstFlow)
	}
	if !strings.Contains(res.Why, "loss") || !strings.Contains(res.Why, "wrong phone") {
		t.Errorf("why = %q", res.Why)
	}
}
