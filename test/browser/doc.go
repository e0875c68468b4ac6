// Package browser holds the web dashboard's tests in a real (headless)
// browser. They are behind the "browser" build tag, because they need
// Chromium and take a few seconds each:
//
//	go test -tags browser ./test/browser/
//
// Screenshots go to test/browser/out/ (or $SIPEDGE_ARTIFACTS). Without
// Chromium the tests skip, unless SIPEDGE_REQUIRE_BROWSER=1.
package browser
