package edge_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/cli"
	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// rtpEnd is a phone's RTP socket: it sends numbered RTP packets and
// records what arrives, by SSRC.
type rtpEnd struct {
	t    *testing.T
	conn *net.UDPConn
	ssrc uint32

	mu   sync.Mutex
	got  map[uint32]int            // packets received per SSRC
	from map[netip.AddrPort]int    // packets received per source
	seqs map[uint32]map[uint16]int // sequence numbers seen per SSRC
	done chan struct{}
	wg   sync.WaitGroup // senders
}

func newRTPEnd(t *testing.T, ip string, ssrc uint32) *rtpEnd {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	r := &rtpEnd{t: t, conn: c, ssrc: ssrc, got: map[uint32]int{}, from: map[netip.AddrPort]int{},
		seqs: map[uint32]map[uint16]int{}, done: make(chan struct{})}
	go r.read()
	t.Cleanup(func() { r.wg.Wait(); _ = c.Close(); <-r.done })
	return r
}

func (r *rtpEnd) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

func (r *rtpEnd) read() {
	defer close(r.done)
	buf := make([]byte, 1500)
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < 12 || buf[0]>>6 != 2 {
			continue
		}
		ssrc := binary.BigEndian.Uint32(buf[8:12])
		seq := binary.BigEndian.Uint16(buf[2:4])
		r.mu.Lock()
		r.got[ssrc]++
		r.from[netip.AddrPortFrom(src.Addr().Unmap(), src.Port())]++
		if r.seqs[ssrc] == nil {
			r.seqs[ssrc] = map[uint16]int{}
		}
		r.seqs[ssrc][seq]++
		r.mu.Unlock()
	}
}

func (r *rtpEnd) count(ssrc uint32) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[ssrc]
}

func (r *rtpEnd) sources() map[netip.AddrPort]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[netip.AddrPort]int{}
	for k, v := range r.from {
		out[k] = v
	}
	return out
}

// rtpPacket is a PCMU packet with 160 bytes of payload.
func rtpPacket(ssrc uint32, seq uint16) []byte {
	b := make([]byte, 12+160)
	b[0] = 0x80
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	for i := 12; i < len(b); i++ {
		b[i] = byte(ssrc) ^ byte(i)
	}
	return b
}

// send sends n packets from seq first to dst, 2 ms apart.
func (r *rtpEnd) send(dst netip.AddrPort, first uint16, n int) {
	for i := 0; i < n; i++ {
		if _, err := r.conn.WriteToUDPAddrPort(rtpPacket(r.ssrc, first+uint16(i)), dst); err != nil {
			r.t.Errorf("RTP send: %v", err)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sendAsync is send in the background (waited for at cleanup).
func (r *rtpEnd) sendAsync(dst netip.AddrPort, first uint16, n int) {
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.send(dst, first, n) }()
}

// waitCount waits until r got at least n packets of ssrc.
func (r *rtpEnd) waitCount(ssrc uint32, n int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c := r.count(ssrc); c >= n {
			return c
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r.count(ssrc)
}

// sdpConn returns the c= address and the first m= port of an SDP body.
func sdpConn(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	var ip netip.Addr
	port := 0
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimRight(l, "\r")
		switch {
		case strings.HasPrefix(l, "c=IN IP4 "), strings.HasPrefix(l, "c=IN IP6 "):
			ip, _ = netip.ParseAddr(l[9:])
		case strings.HasPrefix(l, "m=") && port == 0:
			f := strings.Fields(l)
			if len(f) > 1 {
				port, _ = strconv.Atoi(f[1])
			}
		}
	}
	if !ip.IsValid() || port == 0 {
		t.Fatalf("SDP without c= address or m= port:\n%s", body)
	}
	return netip.AddrPortFrom(ip, uint16(port))
}

// sdpLinesExcept returns the lines of body other than c=, m= and o=.
func sdpLinesExcept(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\r\n") {
		if strings.HasPrefix(l, "c=") || strings.HasPrefix(l, "m=") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// mediaCall sets up a call from alice to bob (both behind "NAT") with
// real RTP sockets on 127.0.0.1, returning the phones' calls, their RTP
// ends, and the relay addresses each phone was told to send to.
type mediaCall struct {
	srv          *edgetest.Server
	alice, bob   *uatest.Phone
	out, in      *uatest.Call
	aRTP, bRTP   *rtpEnd
	aDst, bDst   netip.AddrPort // where alice / bob send RTP (from the SDP they got)
	offer, answr string         // SDP bodies as sent by the phones
	gotOffer     []byte         // SDP as bob received it
	gotAnswer    []byte         // SDP as alice received it
}

// checkSymmetric: each phone got RTP only from the relay port it sends to
// (symmetric RTP).
func (mc *mediaCall) checkSymmetric(t *testing.T) {
	t.Helper()
	for src := range mc.bRTP.sources() {
		if src != mc.bDst {
			t.Errorf("bob got RTP from %s, want only from the relay port he sends to (%s): symmetric RTP", src, mc.bDst)
		}
	}
	for src := range mc.aRTP.sources() {
		if src != mc.aDst {
			t.Errorf("alice got RTP from %s, want only from %s", src, mc.aDst)
		}
	}
}

func startMediaCall(t *testing.T, srv *edgetest.Server) *mediaCall {
	t.Helper()
	mc := &mediaCall{srv: srv}
	mc.alice = natPhone(t, srv, "alice", aliceLAN)
	mc.bob = natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, mc.alice)
	mustRegister(t, mc.bob)
	mc.aRTP = newRTPEnd(t, "127.0.0.1", 0xA11CE)
	mc.bRTP = newRTPEnd(t, "127.0.0.1", 0xB0B)
	mc.offer = uatest.SDP(aliceLAN, mc.aRTP.port(), "")
	call, err := mc.alice.Invite("bob@test.example", uatest.InviteOpts{SDP: mc.offer})
	if err != nil {
		t.Fatal(err)
	}
	in, err := mc.bob.WaitInvite(wait)
	if err != nil {
		t.Fatal(err)
	}
	mc.out, mc.in = call, in
	mc.gotOffer = in.Invite().Body
	mc.bDst = sdpConn(t, mc.gotOffer)
	mc.answr = uatest.SDP(bobLAN, mc.bRTP.port(), "")
	if err := in.Answer(mc.answr); err != nil {
		t.Fatal(err)
	}
	ok, err := call.WaitCode(200, wait)
	if err != nil {
		t.Fatal(err)
	}
	mc.gotAnswer = ok.Body
	mc.aDst = sdpConn(t, ok.Body)
	if err := call.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.WaitAck(wait); err != nil {
		t.Fatal(err)
	}
	return mc
}

// TestMediaRelayBetweenNATedPhones: two phones behind NAT announce private
// addresses; sipedge rewrites both SDPs to its relay (only c= and the m=
// port change), and RTP sent to the relay reaches the other phone in both
// directions, from the relay port that phone was given.
func TestMediaRelayBetweenNATedPhones(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	mc := startMediaCall(t, srv)
	relayIP := srv.UDP.Addr()
	for _, c := range []struct {
		name string
		got  netip.AddrPort
		sent string
		body []byte
	}{{"offer bob got", mc.bDst, mc.offer, mc.gotOffer}, {"answer alice got", mc.aDst, mc.answr, mc.gotAnswer}} {
		if c.got.Addr() != relayIP {
			t.Errorf("%s points at %s, want the relay on %s:\n%s", c.name, c.got, relayIP, c.body)
		}
		if c.got.Port()%2 != 0 {
			t.Errorf("%s: relay RTP port %d is odd", c.name, c.got.Port())
		}
		if a, b := sdpLinesExcept(c.sent), sdpLinesExcept(string(c.body)); strings.Join(a, "\n") != strings.Join(b, "\n") {
			t.Errorf("%s: lines other than c=/m= changed:\nsent:\n%s\ngot:\n%s", c.name, c.sent, c.body)
		}
	}
	if mc.aDst == mc.bDst {
		t.Errorf("both phones were given the same relay port %s", mc.aDst)
	}

	mc.aRTP.sendAsync(mc.aDst, 1000, 50)
	mc.bRTP.sendAsync(mc.bDst, 2000, 50)
	// Probation holds back the first few packets of a NATed source.
	if n := mc.bRTP.waitCount(0xA11CE, 40, 3*time.Second); n < 40 {
		t.Errorf("bob got %d of alice's 50 RTP packets, want >= 40", n)
	}
	if n := mc.aRTP.waitCount(0xB0B, 40, 3*time.Second); n < 40 {
		t.Errorf("alice got %d of bob's 50 RTP packets, want >= 40", n)
	}
	mc.checkSymmetric(t)

	var calls []admin.Call
	if code := srv.GetJSON(t, "/api/v1/calls", &calls); code != 200 || len(calls) != 1 {
		t.Fatalf("GET /api/v1/calls: %d, %d calls", code, len(calls))
	}
	c := calls[0]
	if c.CallID != mc.out.CallID || c.State != "answered" || !c.Relayed || len(c.Streams) != 1 {
		t.Fatalf("call = %+v", c)
	}
	st := c.Streams[0]
	if st.Legs[0].Packets < 40 || st.Legs[1].Packets < 40 {
		t.Errorf("relay counted %d packets from alice and %d from bob, want >= 40 each", st.Legs[0].Packets, st.Legs[1].Packets)
	}

	// The CLI shows both directions with their counters.
	var out, errb bytes.Buffer
	if rc := cli.Main([]string{"call", "list", "--admin", "http://" + srv.Admin, "--token", srv.Token}, &out, &errb); rc != 0 {
		t.Fatalf("sipedge call list: exit %d: %s", rc, errb.String())
	}
	for _, want := range []string{mc.out.CallID, "relayed: both sides behind NAT", "audio caller->callee: ", "audio callee->caller: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("sipedge call list output lacks %q:\n%s", want, out.String())
		}
	}

	hangup(t, mc.out, mc.in, "alice", "bob")
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		calls = nil
		srv.GetJSON(t, "/api/v1/calls", &calls)
		if len(calls) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(calls) != 0 {
		t.Errorf("call still listed after BYE: %+v", calls)
	}
}

// TestMediaInjectionDropped: an attacker sprays RTP at both relay ports
// from another address, during the learning window and after. Not one of
// its packets may reach a phone (RTP Bleed / RTP Inject), while the
// phones' own media keeps flowing.
func TestMediaInjectionDropped(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+"\n[media]\nlearning = \"300ms\"\n")
	mc := startMediaCall(t, srv)
	evil := newRTPEnd(t, "127.0.0.66", 0xBAD)
	var wg sync.WaitGroup
	for _, dst := range []netip.AddrPort{mc.aDst, mc.bDst} {
		wg.Add(1)
		go func() { defer wg.Done(); evil.send(dst, 1, 100) }() // before and during learning
	}
	mc.aRTP.sendAsync(mc.aDst, 1000, 100)
	mc.bRTP.sendAsync(mc.bDst, 2000, 100)
	wg.Wait()
	time.Sleep(400 * time.Millisecond) // the learning window closes: locked
	for _, dst := range []netip.AddrPort{mc.aDst, mc.bDst} {
		evil.send(dst, 200, 50)
	}
	mc.bRTP.waitCount(0xA11CE, 90, 3*time.Second)
	mc.aRTP.waitCount(0xB0B, 90, 3*time.Second)
	if n := mc.aRTP.count(0xBAD) + mc.bRTP.count(0xBAD); n != 0 {
		t.Errorf("%d injected packets reached the phones, want 0", n)
	}
	if a, b := mc.bRTP.count(0xA11CE), mc.aRTP.count(0xB0B); a < 90 || b < 90 {
		t.Errorf("phones' own media: bob got %d, alice got %d of 100, want >= 90 each", a, b)
	}
	var calls []admin.Call
	srv.GetJSON(t, "/api/v1/calls", &calls)
	if len(calls) != 1 || len(calls[0].Streams) != 1 {
		t.Fatalf("calls = %+v", calls)
	}
	legs := calls[0].Streams[0].Legs
	if d := legs[0].DroppedForeign + legs[1].DroppedForeign; d < 300 {
		t.Errorf("relay counted %d foreign packets dropped, want >= 300 (all of the attacker's)", d)
	}
}

// TestMediaTimeoutEndsCall: an answered call whose media never flows is
// ended by sipedge with a BYE to both phones, carrying the reason.
func TestMediaTimeoutEndsCall(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+"\n[media]\ntimeout = \"1s\"\n")
	mc := startMediaCall(t, srv)
	for _, s := range []struct {
		name string
		c    *uatest.Call
	}{{"bob", mc.in}, {"alice", mc.out}} {
		bye, err := s.c.WaitRequest("BYE", 5*time.Second)
		if err != nil {
			t.Errorf("%s got no BYE after the media timeout: %v", s.name, err)
			continue
		}
		_ = s.c.Respond(bye, 200, "OK")
		if r := bye.Get("Reason"); !strings.Contains(r, "media") {
			t.Errorf("%s's BYE Reason = %q, want one naming the media timeout", s.name, r)
		}
		if bye.Tag("From") == "" || bye.Tag("To") == "" {
			t.Errorf("%s's BYE lacks dialog tags:\n%s", s.name, bye)
		}
	}
}

// TestCallHangupCLI: `sipedge call hangup` ends an answered call with a
// BYE to both sides.
func TestCallHangupCLI(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	mc := startMediaCall(t, srv)
	var out, errb bytes.Buffer
	if rc := cli.Main([]string{"call", "hangup", mc.out.CallID, "--admin", "http://" + srv.Admin, "--token", srv.Token}, &out, &errb); rc != 0 {
		t.Fatalf("sipedge call hangup: exit %d: %s", rc, errb.String())
	}
	for _, c := range []*uatest.Call{mc.in, mc.out} {
		bye, err := c.WaitRequest("BYE", wait)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Respond(bye, 200, "OK")
		if !strings.Contains(bye.Get("Reason"), "administrator") {
			t.Errorf("BYE Reason = %q", bye.Get("Reason"))
		}
	}
	if rc := cli.Main([]string{"call", "hangup", mc.out.CallID, "--admin", "http://" + srv.Admin, "--token", srv.Token}, &out, &errb); rc == 0 {
		t.Errorf("hanging up an ended call succeeded")
	}
}

// TestMediaNeverLeavesSDP: with media = "never" the SDP passes untouched
// (the lab uses this to reproduce one-way audio).
func TestMediaNeverLeavesSDP(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+"\n[media]\nmode = \"never\"\n")
	mc := startMediaCall(t, srv)
	if string(mc.gotOffer) != mc.offer {
		t.Errorf("offer changed with media=never:\nsent:\n%s\ngot:\n%s", mc.offer, mc.gotOffer)
	}
	if string(mc.gotAnswer) != mc.answr {
		t.Errorf("answer changed with media=never:\nsent:\n%s\ngot:\n%s", mc.answr, mc.gotAnswer)
	}
	var calls []admin.Call
	srv.GetJSON(t, "/api/v1/calls", &calls)
	if len(calls) != 1 || calls[0].Relayed || !strings.Contains(calls[0].MediaDecision, "never") {
		t.Errorf("calls = %+v, want one unrelayed call saying why", calls)
	}
}

// TestMediaReinviteHoldAndHandover: alice puts bob on hold (sendonly), then
// resumes from a new RTP port. The relay ports stay the same, the o=
// version follows alice's, and after the resume media goes to alice's new
// port.
func TestMediaReinviteHoldAndHandover(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	mc := startMediaCall(t, srv)

	reinvite := func(sdp string) []byte {
		t.Helper()
		m, dst, err := mc.out.NewRequest("INVITE")
		if err != nil {
			t.Fatal(err)
		}
		m.Add("Contact", mc.alice.Contact())
		m.Add("Content-Type", "application/sdp")
		m.Body = []byte(sdp)
		tx, err := mc.out.Send(m, dst)
		if err != nil {
			t.Fatal(err)
		}
		req, err := mc.in.WaitRequest("INVITE", wait)
		if err != nil {
			t.Fatal(err)
		}
		if err := mc.in.RespondSDP(req, 200, "OK", mc.answr); err != nil {
			t.Fatal(err)
		}
		if r, err := tx.WaitFinal(wait); err != nil || r.Code != 200 {
			t.Fatalf("re-INVITE: %v %v", r, err)
		}
		ack, adst, _ := mc.out.NewRequest("ACK")
		_, _ = mc.out.Send(ack, adst)
		return req.Body
	}
	hold := strings.Replace(strings.Replace(mc.offer, "a=sendrecv", "a=sendonly", 1), "o=uatest 1 1", "o=uatest 1 2", 1)
	got := reinvite(hold)
	if d := sdpConn(t, got); d != mc.bDst {
		t.Errorf("hold re-INVITE moved bob's relay address from %s to %s", mc.bDst, d)
	}
	if !strings.Contains(string(got), "a=sendonly") || !strings.Contains(string(got), "o=uatest 1 2 ") {
		t.Errorf("hold SDP lost sendonly or alice's o= version 2:\n%s", got)
	}

	moved := newRTPEnd(t, "127.0.0.1", 0xA11CE)
	resume := strings.Replace(uatest.SDP(aliceLAN, moved.port(), ""), "o=uatest 1 1", "o=uatest 1 3", 1)
	reinvite(resume)
	mc.bRTP.sendAsync(mc.bDst, 5000, 50)
	moved.sendAsync(mc.aDst, 3000, 50)
	if n := moved.waitCount(0xB0B, 40, 3*time.Second); n < 40 {
		t.Errorf("after handover alice's new port got %d of bob's 50 packets, want >= 40", n)
	}
}

// TestMediaPolicyPerUser: a user's own media policy reaches the call
// decision: bob with media = "never" gets alice's SDP untouched although
// both are behind NAT, and the call says why.
func TestMediaPolicyPerUser(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) {
		for i := range c.Users {
			if c.Users[i].Name == "bob" {
				c.Users[i].Media = config.MediaNever
			}
		}
	})
	mc := startMediaCall(t, srv)
	if string(mc.gotOffer) != mc.offer {
		t.Errorf("offer to bob (media=never) was rewritten:\n%s", mc.gotOffer)
	}
	var calls []admin.Call
	srv.GetJSON(t, "/api/v1/calls", &calls)
	if len(calls) != 1 || calls[0].Relayed || calls[0].MediaDecision != "not relayed: media=never for the callee" {
		t.Errorf("calls = %+v", calls)
	}
}

// TestMaxCallDuration: a call that is not relayed has no media timeout;
// when its BYE is lost it would be kept (and its flows pinged) forever.
// proxy.max_call_duration ends it with a BYE to both phones.
func TestMaxCallDuration(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base+"\n[media]\nmode = \"never\"\n", func(c *config.Config) {
		c.Proxy.MaxCallDuration = config.Duration{Duration: time.Second}
	})
	mc := startMediaCall(t, srv)
	for _, c := range []*uatest.Call{mc.in, mc.out} {
		bye, err := c.WaitRequest("BYE", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Respond(bye, 200, "OK")
		if !strings.Contains(bye.Get("Reason"), "call longer than 1s") {
			t.Errorf("BYE Reason = %q", bye.Get("Reason"))
		}
	}
	var calls []admin.Call
	srv.GetJSON(t, "/api/v1/calls", &calls)
	if len(calls) != 0 {
		t.Errorf("call still listed: %+v", calls)
	}
}

// TestMediaLateOffer: the INVITE carries no SDP; bob offers in the 200
// and alice answers in the ACK. Both SDPs are anchored and RTP flows both
// ways through the relay.
func TestMediaLateOffer(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)
	mustRegister(t, alice)
	mustRegister(t, bob)
	aRTP := newRTPEnd(t, "127.0.0.1", 0xA11CE)
	bRTP := newRTPEnd(t, "127.0.0.1", 0xB0B)
	call, err := alice.Invite("bob@test.example", uatest.InviteOpts{SDP: "-"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(wait)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(uatest.SDP(bobLAN, bRTP.port(), "")); err != nil {
		t.Fatal(err)
	}
	ok, err := call.WaitCode(200, wait)
	if err != nil {
		t.Fatal(err)
	}
	aDst := sdpConn(t, ok.Body) // the relay port alice sends to
	if aDst.Addr() != srv.UDP.Addr() {
		t.Fatalf("late offer in the 200 not anchored: %s", ok.Body)
	}
	ack, dst, err := call.NewRequest("ACK")
	if err != nil {
		t.Fatal(err)
	}
	ack.Add("Content-Type", "application/sdp")
	ack.Body = []byte(uatest.SDP(aliceLAN, aRTP.port(), ""))
	if err := alice.SendRawTo(ack.Bytes(), dst); err != nil {
		t.Fatal(err)
	}
	got, err := in.WaitAck(wait)
	if err != nil {
		t.Fatal(err)
	}
	bDst := sdpConn(t, got.Body)
	if bDst.Addr() != srv.UDP.Addr() || bDst == aDst {
		t.Fatalf("answer in the ACK not anchored: %s", got.Body)
	}
	aRTP.sendAsync(aDst, 1, 50)
	bRTP.sendAsync(bDst, 1, 50)
	if n := bRTP.waitCount(0xA11CE, 40, 3*time.Second); n < 40 {
		t.Errorf("bob got %d of alice's 50 packets", n)
	}
	if n := aRTP.waitCount(0xB0B, 40, 3*time.Second); n < 40 {
		t.Errorf("alice got %d of bob's 50 packets", n)
	}
	// The ACK came from behind alice's NAT: the relay must know, so that
	// it never aims at her private SDP address.
	var calls []admin.Call
	srv.GetJSON(t, "/api/v1/calls", &calls)
	if len(calls) != 1 || len(calls[0].Streams) != 1 {
		t.Fatalf("calls = %+v", calls)
	}
	if tg := calls[0].Streams[0].Legs[0].Target; strings.HasPrefix(tg, aliceLAN) {
		t.Errorf("relay sends alice's media to her private address %s", tg)
	}
}
