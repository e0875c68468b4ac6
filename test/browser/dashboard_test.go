//go:build browser

package browser

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/calltrace"
	"github.com/sipedge/sipedge/internal/browsertest"
)

// TestDashboardFake runs the dashboard against the admin API over a fake
// backend: sign-in, the peers table (with hostile user agents), the calls,
// a live call's counters and a recorded call's ladder.
func TestDashboardFake(t *testing.T) {
	b := newFakeBackend()
	// The API can be swapped for one with another token, as after a
	// restart with a new admin.token.
	var api atomic.Pointer[http.Handler]
	setToken := func(tok string) {
		h := admin.Handler(b, tok, slog.New(slog.DiscardHandler))
		api.Store(&h)
	}
	setToken("tok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*api.Load()).ServeHTTP(w, r) }))
	t.Cleanup(srv.Close) // after the browser closes its event stream
	p := newPage(t, srv.URL)

	t.Run("no token: token form", func(t *testing.T) {
		p.t = t
		p.load("/")
		p.wait("the token form", `document.querySelector('#token-form input[type=password]')`)
		if got := p.text("#token-help"); !strings.Contains(got, "admin.token") || !strings.Contains(got, "sipedge dashboard") {
			t.Errorf("token form help = %q, want it to name admin.token and `sipedge dashboard`", got)
		}
		if n := p.count("#peers, .overview, #live-calls"); n != 0 {
			t.Errorf("%d data views shown without a token", n)
		}
	})

	t.Run("wrong token: error", func(t *testing.T) {
		p.t = t
		p.load("/#token=wrong")
		p.wait("the error for a wrong token", `(() => { const e = document.querySelector('#token-error'); return e && !e.hidden && /refused/.test(e.textContent); })()`)
		var href string
		p.eval(`location.href`, &href)
		if strings.Contains(href, "wrong") {
			t.Errorf("the token stayed in the URL: %s", href)
		}
		// The form says so too for a token typed in.
		p.eval(`document.querySelector('#token-error').hidden = true; document.querySelector('#token-input').value = 'also-wrong';
			document.querySelector('#token-form').requestSubmit()`, nil)
		p.wait("the form's error for a wrong token", `!document.querySelector('#token-error').hidden`)
	})

	t.Run("token in link", func(t *testing.T) {
		p.t = t
		p.load("/#token=tok")
		p.wait("the overview", `document.querySelector('#nat-share')`)
		var href, stored string
		p.eval(`location.href`, &href)
		p.eval(`sessionStorage.getItem('sipedge.token') || ''`, &stored)
		if strings.Contains(href, "tok") {
			t.Errorf("the token is still in the URL: %s", href)
		}
		if stored != "tok" {
			t.Errorf("sessionStorage token = %q, want tok", stored)
		}
		p.wait("the stream to be live", `document.querySelector('#conn').dataset.state === 'live'`)
		p.wait("the version in the header", `document.querySelector('#version').textContent.includes(`+jsString(fakeVersion)+`)`)
		want := fmt.Sprintf("%d registrations, %d behind NAT (%d %%)", fakeRegs, fakeNATed, fakeNATed*100/fakeRegs)
		if got := p.text("#nat-share"); got != want {
			t.Errorf("overview says %q, want %q", got, want)
		}
		for _, s := range []string{"198.51.100.10", "pcp", "PCP on gateway", "udp 0.0.0.0:5060", "198.51.100.10:30000-39999"} {
			if !strings.Contains(p.text("main"), s) {
				t.Errorf("overview lacks %q", s)
			}
		}
		p.screenshot("overview")
	})

	peers := fakePeers()
	t.Run("peers", func(t *testing.T) {
		p.t = t
		p.route("#/peers")
		// The first page: the listed peers and the first bulk ones.
		p.wait("a page of peers", `document.querySelectorAll('#peers tr[data-aor]').length === 100`)
		if n := p.count(`#peers tr[data-aor^="zz-bulk-"]`); n != 100-len(peers) {
			t.Errorf("%d bulk peers on the first page, want %d", n, 100-len(peers))
		}
		row := func(aor string) string { return "#peers tr" + attrSel("data-aor", aor) }
		for _, c := range []struct{ aor, badge, text string }{
			{"alice@test.example", ".badge.nat", "NAT"},
			{"bob@test.example", ".badge.nat", "NAT"},
			{"carol@test.example", ".badge.nonat", "no NAT"},
			{"carrier", ".badge.trunk", "trunk"},
			{evilAOR, ".badge.nonat", "no NAT"},
		} {
			if got := p.text(row(c.aor) + " " + c.badge); got != c.text {
				t.Errorf("%s: badge %s says %q, want %q", c.aor, c.badge, got, c.text)
			}
		}
		// The NAT reasons are visible, not only in a tooltip.
		if got := p.text(row("alice@test.example") + " .reasons"); !strings.Contains(got, "private address 10.0.0.5 in Contact") {
			t.Errorf("alice's NAT reasons shown = %q", got)
		}
		var title string
		p.eval(`document.querySelector(`+jsString(row("alice@test.example")+" .badge.nat")+`).title`, &title)
		if !strings.Contains(title, "differs from source 127.0.0.1:40312") {
			t.Errorf("alice's NAT badge title = %q, want the reasons", title)
		}
		for aor, want := range map[string]string{"alice@test.example": "OK", "bob@test.example": "LAGGED", "dave@test.example": "UNREACHABLE", "carrier": "OK"} {
			if got := p.text(row(aor) + " .badge.ka"); got != want {
				t.Errorf("%s keepalive badge = %q, want %q", aor, got, want)
			}
		}
		// Hostile header values are text.
		if got := p.text(row(evilAOR) + " td.ua"); got != evilUA {
			t.Errorf("the hostile user agent is shown as %q, want the literal text %q", got, evilUA)
		}
		if got := p.text(row(evilAOR) + " td.contact"); got != evilContact {
			t.Errorf("the hostile contact is shown as %q, want the literal text %q", got, evilContact)
		}
		if n := p.count("#peers img, #peers script, #peers [onload], #peers [onerror]"); n != 0 {
			t.Errorf("%d elements were made from header values", n)
		}
		// Sparklines: one per peer with history; misses marked.
		if n := p.count("#peers svg.spark polyline"); n < 4 {
			t.Errorf("%d sparklines with a line, want >= 4", n)
		}
		if got := p.number(row("dave@test.example")+" svg.spark", "data-misses"); got != 4 {
			t.Errorf("dave's sparkline marks %v misses, want 4", got)
		}
		if n := p.count(row("dave@test.example") + " svg.spark .spark-miss"); n != 4 {
			t.Errorf("dave's sparkline draws %d misses, want 4", n)
		}
		total := len(peers) + fakeBulk
		if got := p.text("#peer-count"); got != fmt.Sprintf("1–100 of %d", total) {
			t.Errorf("pager says %q", got)
		}
		browsertest.ScreenshotViewport(t, p.ctx, "peers")

		// Paging; the page survives a trip to another view.
		p.click("#peer-next")
		p.wait("the second page", fmt.Sprintf(`document.querySelectorAll('#peers tr[data-aor]').length === %d && document.querySelector('#peers tr[data-aor="zz-bulk-119@test.example"]')`, total-100))
		if got := p.text("#peer-count"); got != fmt.Sprintf("101–%d of %d", total, total) {
			t.Errorf("pager on page 2 says %q", got)
		}
		p.route("#/")
		p.wait("the overview", `document.querySelector('#nat-share')`)
		p.route("#/peers")
		p.wait("the second page again", fmt.Sprintf(`document.querySelectorAll('#peers tr[data-aor]').length === %d`, total-100))
		p.click("#peer-prev")
		p.wait("the first page again", `document.querySelector('#peers tr[data-aor="alice@test.example"]')`)

		// The NAT filter asks the API, and survives the 5 s refresh.
		p.eval(`{ const s = document.querySelector('#peer-nat'); s.value = 'yes'; s.dispatchEvent(new Event('change')) }`, nil)
		p.wait("only NATed peers", fmt.Sprintf(`document.querySelectorAll('#peers tr[data-aor]').length === %d && document.querySelectorAll('#peers tr[data-nat=no]').length === 0`, fakeNATed))
		p.eval(`{ const q = document.querySelector('#peer-q'); q.value = 'grandstream'; q.dispatchEvent(new Event('input')) }`, nil)
		p.wait("the search to find bob", `document.querySelectorAll('#peers tr[data-aor]').length === 1 && document.querySelector('#peers tr[data-aor="bob@test.example"]')`)
		p.eval(`{ const s = document.querySelector('#peer-nat'); s.value = ''; s.dispatchEvent(new Event('change'));
			const q = document.querySelector('#peer-q'); q.value = ''; q.dispatchEvent(new Event('input')) }`, nil)
		p.wait("every peer again", `document.querySelectorAll('#peers tr[data-aor]').length === 100`)
	})

	recent := b.RecentCalls()
	t.Run("calls", func(t *testing.T) {
		p.t = t
		p.route("#/calls")
		live := "#live-calls article" + attrSel("data-call-id", liveCallID)
		p.wait("the live call", `document.querySelector(`+jsString(live)+`)`)
		p.wait("both live calls", `document.querySelectorAll('#live-calls article[data-call-id]').length === 2`)
		if got := p.text(live + " .badge.state"); got != "answered" {
			t.Errorf("live call state = %q", got)
		}
		if got := p.text(live + " .media"); !strings.Contains(got, "relayed") || !strings.Contains(got, "both sides behind NAT") {
			t.Errorf("live call media = %q", got)
		}
		for _, dir := range []string{"caller-callee", "callee-caller"} {
			if got := p.text(live + " tr" + attrSel("data-dir", dir) + " td.packets"); got == "" || got == "0" {
				t.Errorf("live call %s packets = %q", dir, got)
			}
		}
		p.wait("a packet rate", `/\d\/s/.test(document.querySelector(`+jsString(live+` tr[data-dir="caller-callee"] td.rate`)+`).textContent)`)
		ow := "#live-calls article" + attrSel("data-call-id", oneWayCallID)
		if got := p.text(ow + " .alarm"); !strings.Contains(got, "callee→caller is silent") {
			t.Errorf("one-way call alarm shown = %q", got)
		}
		p.wait("the recent calls", fmt.Sprintf(`document.querySelectorAll('#recent tr[data-call-id]').length === %d`, len(recent)))
		ended := "#recent tr" + attrSel("data-call-id", endedCallID)
		if got := p.text(ended + " .badge.state"); got != "ended" {
			t.Errorf("recent call state = %q, want ended", got)
		}
		var href string
		p.eval(`document.querySelector(`+jsString(ended+" a")+`).getAttribute('href')`, &href)
		if want := "#/call/" + url.PathEscape(endedCallID); !strings.HasPrefix(href, "#/call/") || !strings.Contains(href, "ended%2F3") {
			t.Errorf("recent call link = %q, want one like %q", href, want)
		}
		p.screenshot("calls")
	})

	t.Run("live call page", func(t *testing.T) {
		p.t = t
		p.route("#/call/" + url.PathEscape(liveCallID))
		sel := func(dir string) string { return `.dirrow[data-dir="` + dir + `"] .metric-value.packets` }
		p.wait("the stream panel", `document.querySelectorAll('#streams .dirrow').length === 2`)
		before := [2]float64{p.number(sel("caller-callee"), "data-value"), p.number(sel("callee-caller"), "data-value")}
		if before[0] <= 0 || before[1] <= 0 {
			t.Fatalf("packet counters before = %v", before)
		}
		p.wait("both directions' counters to rise", fmt.Sprintf(`parseFloat(document.querySelector(%s).dataset.value) > %v && parseFloat(document.querySelector(%s).dataset.value) > %v`,
			jsString(sel("caller-callee")), before[0], jsString(sel("callee-caller")), before[1]))
		p.wait("a rate chart with samples", `[...document.querySelectorAll('#streams svg.ratechart')].every(s => +s.dataset.samples >= 1)`)
		p.wait("the ladder of the live call", `document.querySelectorAll('#ladder-svg g.arrow').length >= 8`)
		if got := p.text("#hangup"); got != "Hang up" {
			t.Errorf("hang-up button says %q", got)
		}
		p.screenshot("call-live")
	})

	t.Run("recorded call page", func(t *testing.T) {
		p.t = t
		tr, ok := b.CallTrace(endedCallID)
		if !ok {
			t.Fatal("fake has no trace")
		}
		ladder := calltrace.Analyze(tr)
		var fixes []calltrace.Fix
		for _, a := range ladder.Arrows {
			fixes = append(fixes, a.Fixes...)
		}
		if len(fixes) == 0 {
			t.Fatal("the fake trace has no fixes: make it NATed")
		}
		p.route("#/call/" + url.PathEscape(endedCallID))
		p.wait("the ladder", fmt.Sprintf(`document.querySelectorAll('#ladder-svg g.arrow').length === %d`, len(tr.Messages)))
		if got := p.count("#ladder-svg g.col"); got != len(ladder.Columns) {
			t.Errorf("ladder has %d columns, want %d", got, len(ladder.Columns))
		}
		if got := p.count("#ladder-svg g.col-nat"); got != 2 {
			t.Errorf("ladder has %d NAT columns, want 2", got)
		}
		if got := p.count("#ladder-svg .nat-mark"); got != len(tr.Messages) {
			t.Errorf("ladder marks %d NAT crossings, want %d (every message crosses one)", got, len(tr.Messages))
		}
		if got := p.count("#ladder-svg g.arrow.has-fix"); got == 0 {
			t.Errorf("no arrow is highlighted for its fixes")
		}
		if got := p.count("#ladder-svg g.arrow.retrans"); got != 1 {
			t.Errorf("%d retransmissions drawn, want 1", got)
		}
		if got := p.count("#fix-list li"); got != len(fixes) {
			t.Errorf("%d fixes listed, want %d", got, len(fixes))
		}
		if got := p.text("#fix-list li"); !strings.Contains(got, fixes[0].Text) || !strings.Contains(got, fixes[0].Kind) {
			t.Errorf("first fix listed = %q, want %s: %q", got, fixes[0].Kind, fixes[0].Text)
		}
		if got := p.text("main"); !strings.Contains(got, "Via says 10.0.0.5:5060, the packet came from 127.0.0.1:40312") {
			t.Errorf("the rport fix is not shown")
		}
		if got := p.text(".call-page-head .badge.state"); got != "ended" {
			t.Errorf("call state shown = %q, want ended", got)
		}
		if got := p.text(`.dirrow[data-dir="callee-caller"] .metric-value.packets`); got != "4,080" {
			t.Errorf("final callee→caller packets = %q, want 4,080", got)
		}
		// Click the INVITE: its text shows, hostile headers as text.
		p.click(`#ladder-svg g.arrow[data-seq="0"]`)
		p.wait("the INVITE's text", `(document.querySelector('#sip-text') || {}).textContent?.startsWith('INVITE sip:bob@test.example SIP/2.0')`)
		if got := p.text("#sip-text"); !strings.Contains(got, "Subject: </pre><script>alert(4)</script>") {
			t.Errorf("the message text lost its hostile header: %q", got)
		}
		if n := p.count("#message script, #message img"); n != 0 {
			t.Errorf("%d elements were made from message text", n)
		}
		if got := p.count("#ladder-svg g.arrow.selected"); got != 1 {
			t.Errorf("%d arrows selected, want 1", got)
		}
		p.click(`#ladder-svg g.arrow[data-seq="5"]`)
		p.wait("the 200's text", `document.querySelector('#sip-text').textContent.startsWith('SIP/2.0 200 OK')`)
		p.screenshot("call-ladder")
	})

	t.Run("rejected call page", func(t *testing.T) {
		p.t = t
		busy := "#recent tr" + attrSel("data-call-id", busyCallID)
		p.route("#/calls")
		p.wait("the rejected call among the recent calls", `document.querySelector(`+jsString(busy)+`)?.dataset.state === 'failed'`)
		if got := p.text(busy + " .status-code"); strings.TrimSpace(got) != "486" {
			t.Errorf("rejected call's status shown = %q, want 486", got)
		}
		p.click(busy + " a")
		p.wait("its ladder", `document.querySelectorAll('#ladder-svg g.arrow').length === 7`)
		if got := p.text(".call-page-head .badge.state"); got != "failed" {
			t.Errorf("rejected call state shown = %q, want failed", got)
		}
		if got := p.text(".legs-card"); !strings.Contains(got, "no media details") {
			t.Errorf("rejected call page says %q where the legs go", got)
		}
		if got := p.count("#ladder-svg g.col-nat"); got != 1 {
			t.Errorf("rejected call ladder has %d NAT columns, want 1 (dave's)", got)
		}
		p.screenshot("call-rejected")
	})

	t.Run("unknown call", func(t *testing.T) {
		p.t = t
		p.route("#/call/nope")
		p.wait("not found", `document.querySelector('main').textContent.includes('Call not found')`)
	})

	t.Run("dark and narrow", func(t *testing.T) {
		p.t = t
		browsertest.ColorScheme(t, p.ctx, "dark")
		defer browsertest.ColorScheme(t, p.ctx, "")
		p.route("#/call/" + url.PathEscape(endedCallID))
		p.wait("the ladder", `document.querySelectorAll('#ladder-svg g.arrow').length > 0`)
		var bg string
		p.eval(`getComputedStyle(document.body).backgroundColor`, &bg)
		if bg == "rgb(244, 245, 247)" {
			t.Errorf("dark mode: body background is still the light one")
		}
		p.screenshot("call-ladder-dark")
		p.route("#/peers")
		p.wait("the peers", `document.querySelectorAll('#peers tr[data-aor]').length > 0`)
		browsertest.ScreenshotViewport(t, p.ctx, "peers-dark")
		browsertest.Viewport(t, p.ctx, 420, 900)
		defer browsertest.Viewport(t, p.ctx, browsertest.Width, browsertest.Height)
		p.route("#/calls")
		p.wait("the live calls", `document.querySelectorAll('#live-calls article').length > 0`)
		p.screenshot("calls-narrow")
	})

	t.Run("stream reconnects", func(t *testing.T) {
		p.t = t
		p.route("#/calls")
		p.wait("live", `document.querySelector('#conn').dataset.state === 'live'`)
		srv.CloseClientConnections()
		p.wait("reconnecting shown", `document.querySelector('#conn').dataset.state === 'retry' && /reconnecting/.test(document.querySelector('#conn').textContent)`)
		p.wait("live again", `document.querySelector('#conn').dataset.state === 'live'`)
		p.wait("the live call still shown", `document.querySelector('#live-calls article[data-call-id]')`)
	})

	t.Run("token changed", func(t *testing.T) {
		p.t = t
		setToken("tok2")
		srv.CloseClientConnections() // the stream reconnects and meets a 401
		p.wait("the token form with an error", `(() => { const e = document.querySelector('#token-error'); return e && !e.hidden && /refused/.test(e.textContent); })()`)
		p.screenshot("token-form")
		p.eval(`document.querySelector('#token-input').value = 'tok2'; document.querySelector('#token-form').requestSubmit()`, nil)
		p.wait("the dashboard again", `document.querySelector('#live-calls article[data-call-id]')`)
		p.wait("live", `document.querySelector('#conn').dataset.state === 'live'`)
	})

	p.t = t
	browsertest.CheckClean(t, p.ctx)
	if d := browsertest.Dialogs(p.ctx); len(d) > 0 {
		t.Errorf("dialogs opened: %v", d)
	}
}
