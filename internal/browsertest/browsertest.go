// Package browsertest drives a headless Chromium (Debian's, at
// /usr/bin/chromium or $CHROMIUM) for tests of the web dashboard. It
// watches every page for what a person would notice as broken: uncaught
// JavaScript exceptions, console errors, Content-Security-Policy
// violations and alert/confirm/prompt dialogs (a dialog fails the test at
// once: in the dashboard it can only mean injected script ran).
//
// Tests skip when no browser is installed, unless SIPEDGE_REQUIRE_BROWSER=1
// (CI sets it), which turns a missing browser into a failure.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Window size of the browser; screenshots are this wide.
const (
	Width  = 1400
	Height = 1000
)

// watch collects what went wrong on the tabs of one browser.
type watch struct {
	tb testing.TB

	mu      sync.Mutex
	done    bool     // the test has ended: report nothing more
	errors  []string // exceptions, console errors, CSP and other log errors
	dialogs []string // dialogs opened (and dismissed)
	console []string // every console message, for failure reports
}

type watchKey struct{}

// ExecPath returns the browser binary: $CHROMIUM, else /usr/bin/chromium,
// else chromium or chromium-browser on $PATH; "" if there is none.
func ExecPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if p, err := exec.LookPath(p); err == nil {
			return p
		}
		return ""
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, n := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// Require returns the browser binary, or skips the test when there is
// none (fails it if SIPEDGE_REQUIRE_BROWSER=1). Tests that set up
// something costly before Start call it first.
func Require(tb testing.TB) string {
	tb.Helper()
	bin := ExecPath()
	if bin == "" {
		msg := "browsertest: no Chromium (install Debian's chromium package, or set CHROMIUM to the binary)"
		if os.Getenv("SIPEDGE_REQUIRE_BROWSER") == "1" {
			tb.Fatal(msg + "; SIPEDGE_REQUIRE_BROWSER=1 requires one")
		}
		tb.Skip(msg)
	}
	return bin
}

// Start launches a headless browser with a fresh profile and returns the
// context of its first tab, watched for problems (see Errors and
// Dialogs). The browser is closed when the test ends. Without a browser
// the test is skipped, or fails if SIPEDGE_REQUIRE_BROWSER=1.
func Start(tb testing.TB) context.Context {
	tb.Helper()
	bin := Require(tb)
	// A fresh profile, removed at the end; not tb.TempDir, because the
	// browser's helper processes may still write to it for a moment
	// after the browser is gone.
	profile, err := os.MkdirTemp("", "sipedge-browser-")
	if err != nil {
		tb.Fatalf("browsertest: %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(Width, Height),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("headless", "new"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		// Root on a machine without user namespaces: no sandbox.
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		// A closed network: nothing but the page under test.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("no-proxy-server", true),
		// Timers of a headless tab must run at full speed: the dashboard
		// polls and animates.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("lang", "en-US"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx,
		chromedp.WithLogf(func(string, ...any) {}),
		// chromedp reports protocol messages it cannot decode (a newer
		// browser than its cdproto) as errors; they are harmless here.
		chromedp.WithErrorf(func(f string, a ...any) {
			if os.Getenv("BROWSERTEST_DEBUG") != "" {
				tb.Logf("chromedp: "+f, a...)
			}
		}))
	w := &watch{tb: tb}
	ctx = context.WithValue(ctx, watchKey{}, w)
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
		cancel()
		cancelAlloc()
		for i := 0; ; i++ {
			err := os.RemoveAll(profile)
			if err == nil || i == 20 {
				if err != nil {
					tb.Logf("browsertest: removing the profile %s: %v", profile, err)
				}
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	w.listen(ctx)
	// Start the browser now, so a browser that cannot start fails here.
	// (The first Run must get ctx itself: the browser lives as long as
	// the context of that Run.)
	if err := chromedp.Run(ctx); err != nil {
		tb.Fatalf("browsertest: starting %s: %v", bin, err)
	}
	return ctx
}

// NewTab opens another tab of ctx's browser, watched like the first one;
// it is closed when the test ends.
func NewTab(tb testing.TB, ctx context.Context) context.Context {
	tb.Helper()
	w := from(ctx)
	tctx, cancel := chromedp.NewContext(ctx)
	tb.Cleanup(cancel)
	w.listen(tctx)
	if err := chromedp.Run(tctx); err != nil {
		tb.Fatalf("browsertest: new tab: %v", err)
	}
	return tctx
}

func from(ctx context.Context) *watch {
	w, _ := ctx.Value(watchKey{}).(*watch)
	if w == nil {
		panic("browsertest: context not made by browsertest.Start")
	}
	return w
}

func (w *watch) listen(ctx context.Context) {
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			w.add(&w.errors, "exception: "+exceptionText(ev.ExceptionDetails))
		case *cdpruntime.EventConsoleAPICalled:
			msg := consoleText(ev)
			w.add(&w.console, string(ev.Type)+": "+msg)
			if ev.Type == cdpruntime.APITypeError || ev.Type == cdpruntime.APITypeAssert {
				w.add(&w.errors, "console."+string(ev.Type)+": "+msg)
			}
		case *cdplog.EventEntryAdded:
			e := ev.Entry
			if e == nil {
				return
			}
			w.add(&w.console, "log "+string(e.Source)+" "+string(e.Level)+": "+e.Text)
			// Failed requests (a 401 the page expects, say) are the
			// page's business; CSP violations, deprecations and the rest
			// at error level are not.
			if e.Level == cdplog.LevelError && e.Source != cdplog.SourceNetwork {
				w.add(&w.errors, "log ("+string(e.Source)+"): "+e.Text+at(e.URL, e.LineNumber))
			}
		case *page.EventJavascriptDialogOpening:
			d := fmt.Sprintf("dialog (%s): %q", ev.Type, ev.Message)
			w.add(&w.dialogs, d)
			w.mu.Lock()
			if !w.done {
				w.tb.Errorf("browsertest: the page opened a %s (injected script ran?)", d)
			}
			w.mu.Unlock()
			// Dismiss it, or the page hangs; never from the listener itself.
			go func() { _ = chromedp.Run(ctx, page.HandleJavaScriptDialog(false)) }()
		}
	})
}

func (w *watch) add(list *[]string, s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	*list = append(*list, s)
}

func at(url string, line int64) string {
	if url == "" {
		return ""
	}
	return fmt.Sprintf(" (%s:%d)", url, line)
}

func exceptionText(d *cdpruntime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	s := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		s += " " + d.Exception.Description
	}
	return s + at(d.URL, d.LineNumber+1)
}

func consoleText(ev *cdpruntime.EventConsoleAPICalled) string {
	var parts []string
	for _, a := range ev.Args {
		switch {
		case a.Description != "":
			parts = append(parts, a.Description)
		case len(a.Value) > 0:
			parts = append(parts, strings.Trim(string(a.Value), `"`))
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

// Errors returns the problems seen so far on the tabs of ctx's browser:
// uncaught exceptions, console.error calls, and log entries at error
// level other than failed network requests (CSP violations among them).
func Errors(ctx context.Context) []string {
	w := from(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errors...)
}

// Dialogs returns the dialogs the pages opened (each was dismissed and
// already failed the test).
func Dialogs(ctx context.Context) []string {
	w := from(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.dialogs...)
}

// Console returns every console and log message so far, for reports.
func Console(ctx context.Context) []string {
	w := from(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.console...)
}

// CheckClean fails the test for every error and dialog seen so far.
func CheckClean(tb testing.TB, ctx context.Context) {
	tb.Helper()
	for _, e := range Errors(ctx) {
		tb.Errorf("browser: %s", e)
	}
	for _, d := range Dialogs(ctx) {
		tb.Errorf("browser: the page opened a %s", d)
	}
}

// ArtifactDir is where screenshots go: $SIPEDGE_ARTIFACTS if set, else
// test/browser/out in the module.
func ArtifactDir() string {
	if d := os.Getenv("SIPEDGE_ARTIFACTS"); d != "" {
		return d
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join(os.TempDir(), "sipedge-browser")
	}
	// file is .../internal/browsertest/browsertest.go
	return filepath.Join(filepath.Dir(file), "..", "..", "test", "browser", "out")
}

// Screenshot saves a full-page PNG of the tab as <ArtifactDir>/<name>.png,
// logs and returns its path (the page is scrolled to the top first). A
// failure to take it fails the test.
func Screenshot(tb testing.TB, ctx context.Context, name string) string {
	tb.Helper()
	return screenshot(tb, ctx, name, true)
}

// ScreenshotViewport is Screenshot of the window only (Width×Height from
// the top), for long pages.
func ScreenshotViewport(tb testing.TB, ctx context.Context, name string) string {
	tb.Helper()
	return screenshot(tb, ctx, name, false)
}

func screenshot(tb testing.TB, ctx context.Context, name string, full bool) string {
	tb.Helper()
	dir := ArtifactDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Errorf("browsertest: screenshot %s: %v", name, err)
		return ""
	}
	var png []byte
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// From the top: a sticky header would otherwise be drawn where the
	// page is scrolled to.
	capture := chromedp.CaptureScreenshot(&png)
	if full {
		capture = chromedp.FullScreenshot(&png, 100)
	}
	if err := chromedp.Run(sctx, chromedp.Evaluate(`window.scrollTo(0, 0)`, nil), capture); err != nil {
		tb.Errorf("browsertest: screenshot %s: %v", name, err)
		return ""
	}
	path, err := filepath.Abs(filepath.Join(dir, name+".png"))
	if err != nil {
		path = filepath.Join(dir, name+".png")
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.Errorf("browsertest: screenshot %s: %v", name, err)
		return ""
	}
	tb.Logf("screenshot: %s", path)
	return path
}

// Eval evaluates a JavaScript expression in the tab and decodes its
// value into res (a pointer), failing the test on error.
func Eval(tb testing.TB, ctx context.Context, expr string, res any) {
	tb.Helper()
	if err := chromedp.Run(ctx, chromedp.Evaluate(expr, res)); err != nil {
		tb.Fatalf("browsertest: evaluating %s: %v", expr, err)
	}
}

// WaitJS polls a JavaScript expression every 50 ms until it is truthy,
// up to d; it returns whether it became so. The last value is decoded
// into res if res is not nil.
func WaitJS(ctx context.Context, expr string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		var ok bool
		err := chromedp.Run(ctx, chromedp.Evaluate("!!("+expr+")", &ok))
		if err == nil && ok {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ColorScheme makes the tab prefer "dark" or "light" colours, or the
// default for "".
func ColorScheme(tb testing.TB, ctx context.Context, scheme string) {
	tb.Helper()
	var features []*emulation.MediaFeature
	if scheme != "" {
		features = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}
	}
	if err := chromedp.Run(ctx, emulation.SetEmulatedMedia().WithFeatures(features)); err != nil {
		tb.Fatalf("browsertest: color scheme %q: %v", scheme, err)
	}
}

// Viewport resizes the tab's viewport (the window stays as it is).
func Viewport(tb testing.TB, ctx context.Context, width, height int64) {
	tb.Helper()
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		tb.Fatalf("browsertest: viewport %dx%d: %v", width, height, err)
	}
}
