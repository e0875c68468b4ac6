//go:build browser

package browser

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/sipedge/sipedge/internal/browsertest"
)

// waitFor is how long a page gets to show something.
const waitFor = 8 * time.Second

// page drives one dashboard tab.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string // http://host:port
}

func newPage(t *testing.T, base string) *page {
	t.Helper()
	return &page{t: t, ctx: browsertest.Start(t), base: base}
}

// load navigates to base+path as a fresh page load.
func (p *page) load(path string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(p.base+path)); err != nil {
		p.t.Fatalf("loading %s: %v", path, err)
	}
}

// route moves the single-page app to hash without reloading it.
func (p *page) route(hash string) {
	p.t.Helper()
	p.eval("location.hash = "+jsString(hash), nil)
}

func (p *page) eval(expr string, v any) {
	p.t.Helper()
	var discard any
	if v == nil {
		v = &discard
	}
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.Evaluate(expr, v)); err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
}

// wait polls the JavaScript expression until it is truthy; if it is not
// within waitFor the test fails, with a screenshot and the console.
func (p *page) wait(what, expr string) {
	p.t.Helper()
	if !browsertest.WaitJS(p.ctx, expr, waitFor) {
		p.fail(what, expr)
	}
}

func (p *page) fail(what, expr string) {
	p.t.Helper()
	var html string
	_ = chromedp.Run(p.ctx, chromedp.Evaluate(`(document.querySelector('main') || document.body).innerText.slice(0, 3000)`, &html))
	shot := browsertest.Screenshot(p.t, p.ctx, "FAILED-"+strings.ReplaceAll(p.t.Name(), "/", "-"))
	p.t.Fatalf("timed out after %v waiting for %s\n  (%s)\npage text:\n%s\nconsole:\n  %s\nscreenshot: %s", waitFor, what, expr, html,
		strings.Join(browsertest.Console(p.ctx), "\n  "), shot)
}

// text returns the textContent of the first element matching sel, or ""
// if none does.
func (p *page) text(sel string) string {
	p.t.Helper()
	var s string
	p.eval(`(document.querySelector(`+jsString(sel)+`) || {}).textContent || ""`, &s)
	return s
}

// count returns how many elements match sel.
func (p *page) count(sel string) int {
	p.t.Helper()
	var n int
	p.eval(`document.querySelectorAll(`+jsString(sel)+`).length`, &n)
	return n
}

// click dispatches a click on the first element matching sel.
func (p *page) click(sel string) {
	p.t.Helper()
	var ok bool
	p.eval(`(() => { const e = document.querySelector(`+jsString(sel)+`); if (!e) return false;
		e.dispatchEvent(new MouseEvent('click', {bubbles: true})); return true; })()`, &ok)
	if !ok {
		p.t.Fatalf("nothing to click at %s", sel)
	}
}

// number reads a number from an attribute of the first element at sel
// (-1 if there is none).
func (p *page) number(sel, attr string) float64 {
	p.t.Helper()
	var v float64
	p.eval(`(() => { const e = document.querySelector(`+jsString(sel)+`); if (!e) return -1;
		const n = parseFloat(e.getAttribute(`+jsString(attr)+`)); return Number.isFinite(n) ? n : -1; })()`, &v)
	return v
}

func (p *page) screenshot(name string) string {
	p.t.Helper()
	return browsertest.Screenshot(p.t, p.ctx, name)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// attrSel is a CSS attribute selector [name="value"] for any value.
func attrSel(name, value string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\a `)
	return `[` + name + `="` + r.Replace(value) + `"]`
}
