//go:build !linux

package kernfwd

import (
	"io"
	"net/netip"
	"time"
)

// Forwarder is unavailable on this system.
type Forwarder struct{}

// Open fails on systems other than Linux.
func Open(names []string) (*Forwarder, error) { return nil, ErrUnsupported }

// Interfaces returns nil.
func (f *Forwarder) Interfaces() []string { return nil }

// Close does nothing.
func (f *Forwarder) Close() error { return nil }

// Install fails.
func (f *Forwarder) Install(k Key, e Entry) error { return ErrUnsupported }

// Read fails.
func (f *Forwarder) Read(k Key) (Stats, error) { return Stats{}, ErrUnsupported }

// Remove fails.
func (f *Forwarder) Remove(k Key) (Stats, error) { return Stats{}, ErrUnsupported }

// EnableRunStats fails.
func EnableRunStats() (io.Closer, error) { return nil, ErrUnsupported }

// RunStats fails.
func (f *Forwarder) RunStats() (runs uint64, total time.Duration, err error) {
	return 0, 0, ErrUnsupported
}

// MonoNow returns 0.
func MonoNow() time.Duration { return 0 }

// LookupRoute fails.
func LookupRoute(dst, src netip.Addr) (Route, error) { return Route{}, ErrUnsupported }
