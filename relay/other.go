//go:build !linux

package relay

import (
	"errors"
	"net/netip"
)

var errUnsupported = errors.New("relay: needs Linux (epoll, recvmmsg, sendmmsg)")

// worker is a stub: New fails before any is used.
type worker struct {
	id  int
	ctr counters
}

func newWorker(r *Relay, id int) (*worker, error) { return nil, errUnsupported }
func (w *worker) start()                          {}
func (w *worker) stop()                           {}
func (w *worker) add(k *sock) error               { return errUnsupported }
func (w *worker) remove(k *sock)                  {}

func openPair(bind netip.Addr, port, sockBuf int) (fds [2]int, err error) {
	return fds, errUnsupported
}

func closeFD(fd int) {}

func isAddrInUse(err error) bool { return false }
