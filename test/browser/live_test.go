//go:build browser

package browser

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/internal/browsertest"
	"github.com/sipedge/sipedge/uatest"
)

// The phones' private addresses: they claim these in Via, Contact and
// SDP while really sending from 127.0.0.1, so sipedge sees them behind NAT.
const (
	aliceLAN = "192.168.1.10"
	bobLAN   = "192.168.1.20"
	sipWait  = 5 * time.Second
)

// TestDashboardLiveCall: a real sipedge, two NATed phones, a call with RTP
// both ways through the relay, watched in the dashboard from
// registration to hang-up.
func TestDashboardLiveCall(t *testing.T) {
	browsertest.Require(t)
	// Started before the browser, so stopped after it: the browser's
	// event stream is gone by then.
	srv := edgetest.Start(t, edgetest.Base)
	alice := natPhone(t, srv, "alice", aliceLAN)
	bob := natPhone(t, srv, "bob", bobLAN)

	aRTP := newMediaPeer(t, 0xA11CE)
	bRTP := newMediaPeer(t, 0xB0B)
	out, err := alice.Invite("bob@"+edgetest.Domain, uatest.InviteOpts{SDP: uatest.SDP(aliceLAN, aRTP.port(), "")})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bob.WaitInvite(sipWait)
	if err != nil {
		t.Fatalf("bob got no INVITE: %v", err)
	}
	bDst := mediaAddr(t, in.Invite().Body)
	if err := in.Answer(uatest.SDP(bobLAN, bRTP.port(), "")); err != nil {
		t.Fatal(err)
	}
	ok, err := out.WaitCode(200, sipWait)
	if err != nil {
		t.Fatalf("alice got no 200: %v", err)
	}
	aDst := mediaAddr(t, ok.Body)
	if err := out.Ack(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.WaitAck(sipWait); err != nil {
		t.Fatalf("bob got no ACK: %v", err)
	}
	// 50 packets/s each way, as a G.711 call, until the hang-up.
	aRTP.start(aDst)
	bRTP.start(bDst)

	p := newPage(t, "http://"+srv.Admin)
	p.load("/#token=" + url.QueryEscape(srv.Token))
	p.wait("the overview", `document.querySelector('#nat-share')`)
	if got := p.text("#nat-share"); got != "2 registrations, 2 behind NAT (100 %)" {
		t.Errorf("overview says %q", got)
	}

	t.Run("peers", func(t *testing.T) {
		p.t = t
		p.route("#/peers")
		for _, u := range []string{"alice", "bob"} {
			row := "#peers tr" + attrSel("data-aor", u+"@"+edgetest.Domain)
			p.wait(u+"'s row", `document.querySelector(`+jsString(row)+`)`)
			if got := p.text(row + " .badge.nat"); got != "NAT" {
				t.Errorf("%s's NAT badge = %q, want NAT", u, got)
			}
			// The server's plain-words explanation, not the reason codes.
			if got := p.text(row + " .reasons"); !strings.Contains(got, "changes the address and the port") {
				t.Errorf("%s: NAT explanation shown = %q, want sipedge's sentence", u, got)
			}
			if got := p.text(row + " td.contact"); !strings.Contains(got, map[string]string{"alice": aliceLAN, "bob": bobLAN}[u]) {
				t.Errorf("%s's contact as sent = %q, want the private address", u, got)
			}
			if got := p.text(row + " td.observed"); !strings.Contains(got, "127.0.0.1:") {
				t.Errorf("%s's observed address = %q, want 127.0.0.1:port", u, got)
			}
		}
		p.screenshot("live-peers")
	})

	t.Run("calls", func(t *testing.T) {
		p.t = t
		p.route("#/calls")
		card := "#live-calls article" + attrSel("data-call-id", out.CallID)
		p.wait("the live call", `document.querySelector(`+jsString(card)+`)`)
		if got := p.text(card + " .badge.state"); got != "answered" {
			t.Errorf("call state = %q, want answered", got)
		}
		if got := p.text(card + " .media"); !strings.Contains(got, "relayed") {
			t.Errorf("call media = %q, want relayed", got)
		}
	})

	t.Run("call page", func(t *testing.T) {
		p.t = t
		p.route("#/call/" + url.PathEscape(out.CallID))
		sel := func(dir string) string { return `.dirrow[data-dir="` + dir + `"] .metric-value.packets` }
		p.wait("media flowing both ways", fmt.Sprintf(`+document.querySelector(%s)?.dataset.value > 10 && +document.querySelector(%s)?.dataset.value > 10`,
			jsString(sel("caller-callee")), jsString(sel("callee-caller"))))
		first := [2]float64{p.number(sel("caller-callee"), "data-value"), p.number(sel("callee-caller"), "data-value")}
		p.wait("both counters to rise", fmt.Sprintf(`+document.querySelector(%s).dataset.value >= %v && +document.querySelector(%s).dataset.value >= %v`,
			jsString(sel("caller-callee")), first[0]+40, jsString(sel("callee-caller")), first[1]+40))
		second := [2]float64{p.number(sel("caller-callee"), "data-value"), p.number(sel("callee-caller"), "data-value")}
		t.Logf("packets shown: caller→callee %v then %v, callee→caller %v then %v", first[0], second[0], first[1], second[1])
		// What the phones got agrees: the relay passed it on.
		if a, b := bRTP.received(0xA11CE), aRTP.received(0xB0B); a < int(first[0])/2 || b < int(first[1])/2 {
			t.Errorf("phones received %d (bob) and %d (alice) packets while the dashboard showed %v", a, b, first)
		}
		p.wait("a packet rate", `/\d\/s/.test(document.querySelector('.dirrow[data-dir="callee-caller"] .metric-value.rate').textContent)`)

		p.wait("the ladder", `document.querySelectorAll('#ladder-svg g.arrow').length >= 6`)
		var labels []string
		p.eval(`[...document.querySelectorAll('#ladder-svg g.arrow text.label')].map(e => e.textContent)`, &labels)
		if !inOrder(labels, "INVITE", "200 OK", "ACK") {
			t.Errorf("ladder arrows = %q, want INVITE … 200 OK … ACK", labels)
		}
		var kinds []string
		p.eval(`[...document.querySelectorAll('#fix-list li')].map(e => e.dataset.kind)`, &kinds)
		for _, k := range []string{"rport", "contact", "sdp"} {
			if !contains(kinds, k) {
				t.Errorf("fixes listed = %q, want one of kind %s", kinds, k)
			}
		}
		if n := p.count("#ladder-svg g.col-nat"); n != 2 {
			t.Errorf("ladder has %d NAT columns, want 2 (both phones behind NAT)", n)
		}
		p.click(`#ladder-svg g.arrow[data-seq="0"]`)
		p.wait("the INVITE's text", `document.querySelector('#sip-text')?.textContent.startsWith('INVITE sip:bob@')`)
		p.screenshot("live-call")
	})

	t.Run("hang-up", func(t *testing.T) {
		p.t = t
		done := make(chan error, 1)
		go func() {
			r, err := out.Bye()
			if err == nil && r.Code != 200 {
				err = fmt.Errorf("BYE answered %d", r.Code)
			}
			done <- err
		}()
		bye, err := in.WaitRequest("BYE", sipWait)
		if err != nil {
			t.Fatalf("bob got no BYE: %v", err)
		}
		_ = in.Respond(bye, 200, "OK")
		if err := <-done; err != nil {
			t.Fatalf("alice's BYE: %v", err)
		}
		aRTP.stop()
		bRTP.stop()
		// The call page turns into the ended call's final snapshot.
		p.wait("the call page to show the end", `document.querySelector('.call-page-head .badge.state')?.textContent === 'ended'`)
		if n := p.count(".call-page-head .badge.live"); n != 0 {
			t.Errorf("the ended call is still marked live")
		}
		p.wait("the BYE in the ladder", `[...document.querySelectorAll('#ladder-svg g.arrow text.label')].some(e => e.textContent === 'BYE')`)
		p.route("#/calls")
		row := "#recent tr" + attrSel("data-call-id", out.CallID)
		p.wait("the call among the recent calls, ended", `document.querySelector(`+jsString(row)+`)?.dataset.state === 'ended'`)
		p.wait("no live call", `document.querySelectorAll('#live-calls article[data-call-id]').length === 0`)
		if got := p.text(row + " .badge.state"); got != "ended" {
			t.Errorf("recent call state shown = %q", got)
		}
		p.screenshot("live-recent")
	})

	p.t = t
	browsertest.CheckClean(t, p.ctx)
}

func natPhone(t *testing.T, srv *edgetest.Server, user, lan string) *uatest.Phone {
	t.Helper()
	ph := srv.Phone(t, uatest.Config{Name: user + "@" + lan, User: user, ViaHost: lan, ViaPort: 5060})
	res, err := ph.Register("", "", "")
	if err != nil || res.Code != 200 {
		t.Fatalf("REGISTER of %s: %v %v", user, res, err)
	}
	return ph
}

func inOrder(list []string, prefixes ...string) bool {
	i := 0
	for _, s := range list {
		if i < len(prefixes) && strings.HasPrefix(s, prefixes[i]) {
			i++
		}
	}
	return i == len(prefixes)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// mediaAddr reads the c= address and first m= port of an SDP body.
func mediaAddr(t *testing.T, body []byte) netip.AddrPort {
	t.Helper()
	var ip netip.Addr
	var port uint64
	for _, l := range strings.Split(string(body), "\n") {
		l = strings.TrimSpace(l)
		if a, ok := strings.CutPrefix(l, "c=IN IP4 "); ok {
			ip, _ = netip.ParseAddr(a)
		}
		if m, ok := strings.CutPrefix(l, "m=audio "); ok && port == 0 {
			port, _ = strconv.ParseUint(strings.Fields(m)[0], 10, 16)
		}
	}
	if !ip.IsValid() || port == 0 {
		t.Fatalf("no media address in SDP:\n%s", body)
	}
	return netip.AddrPortFrom(ip, uint16(port))
}

// mediaPeer is a phone's RTP socket on loopback: it sends a PCMU-sized
// stream every 20 ms once started and counts what it receives per SSRC.
type mediaPeer struct {
	t    *testing.T
	conn *net.UDPConn
	ssrc uint32

	mu   sync.Mutex
	got  map[uint32]int
	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	sent atomic.Int64
}

func newMediaPeer(t *testing.T, ssrc uint32) *mediaPeer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	m := &mediaPeer{t: t, conn: c, ssrc: ssrc, got: map[uint32]int{}, quit: make(chan struct{})}
	m.wg.Add(1)
	go m.receive()
	t.Cleanup(func() { m.stop(); _ = c.Close(); m.wg.Wait() })
	return m
}

func (m *mediaPeer) port() int { return m.conn.LocalAddr().(*net.UDPAddr).Port }

func (m *mediaPeer) receive() {
	defer m.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := m.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n >= 12 && buf[0]>>6 == 2 {
			m.mu.Lock()
			m.got[binary.BigEndian.Uint32(buf[8:12])]++
			m.mu.Unlock()
		}
	}
}

func (m *mediaPeer) received(ssrc uint32) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.got[ssrc]
}

// start sends to dst every 20 ms until stop (at most two minutes).
func (m *mediaPeer) start(dst netip.AddrPort) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		pkt := make([]byte, 12+160)
		pkt[0], pkt[1] = 0x80, 0 // RTP v2, PCMU
		binary.BigEndian.PutUint32(pkt[8:], m.ssrc)
		for seq := uint16(1); seq < 6000; seq++ {
			binary.BigEndian.PutUint16(pkt[2:], seq)
			binary.BigEndian.PutUint32(pkt[4:], uint32(seq)*160)
			if _, err := m.conn.WriteToUDPAddrPort(pkt, dst); err != nil {
				return
			}
			m.sent.Add(1)
			select {
			case <-m.quit:
				return
			case <-tick.C:
			}
		}
	}()
}

func (m *mediaPeer) stop() { m.once.Do(func() { close(m.quit) }) }
