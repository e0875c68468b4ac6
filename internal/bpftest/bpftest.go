// Package bpftest gives tests the relay's in-kernel fast path, or skips
// them where the kernel or the privileges do not allow it.
package bpftest

import (
	"os"
	"testing"

	"github.com/sipedge/sipedge/relay/kernfwd"
)

// Forwarder loads the fast path on the named interfaces (closed at the end
// of the test). Where it cannot load, the test is skipped, or fails when
// SIPEDGE_REQUIRE_BPF is set (test/all.sh sets it when run as root).
func Forwarder(tb testing.TB, ifaces ...string) *kernfwd.Forwarder {
	tb.Helper()
	kf, err := kernfwd.Open(ifaces)
	if err != nil {
		if os.Getenv("SIPEDGE_REQUIRE_BPF") != "" {
			tb.Fatalf("in-kernel fast path unavailable: %v", err)
		}
		tb.Skipf("in-kernel fast path unavailable: %v", err)
	}
	tb.Cleanup(func() { kf.Close() })
	return kf
}
