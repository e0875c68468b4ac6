package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// dialGateway opens a UDP socket connected to server, bound to local
// when it is valid and not unspecified. A connected socket receives only
// the server's datagrams (RFC 6886 §3.1: the client checks the source)
// and reports ICMP port unreachable as ECONNREFUSED.
func dialGateway(local netip.Addr, server netip.AddrPort) (*net.UDPConn, error) {
	var laddr *net.UDPAddr
	if local.IsValid() && !local.IsUnspecified() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	network := "udp4"
	if server.Addr().Is6() && !server.Addr().Is4In6() {
		network = "udp6"
	}
	return net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(server))
}

// exchange sends req on conn and waits for a datagram that match accepts,
// retransmitting after rto, 2·rto, 4·rto, ... for at most tries sends,
// and never past ctx. match returns (false, nil) to ignore a datagram (a
// late answer to another request), (true, nil) to accept it and
// (true, err) to end the exchange with err.
func exchange(ctx context.Context, conn *net.UDPConn, req []byte, rto time.Duration, tries int, match func([]byte) (bool, error)) error {
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 1500)
	wait := rto
	start := time.Now()
	for try := 1; ; try++ {
		if _, err := conn.Write(req); err != nil {
			return sockErr(conn, err)
		}
		deadline := time.Now().Add(wait)
		capped := false
		if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
			deadline, capped = d, true
		}
		conn.SetReadDeadline(deadline)
		// ctx is marked done before the AfterFunc runs, so checking after
		// setting the deadline cannot miss a cancellation.
		if err := ctx.Err(); err != nil {
			return noAnswer(conn, try, start, err)
		}
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					if cerr := ctx.Err(); cerr != nil {
						return noAnswer(conn, try, start, cerr)
					}
					if capped { // ctx's deadline, a moment before ctx notices
						return noAnswer(conn, try, start, context.DeadlineExceeded)
					}
					break
				}
				return sockErr(conn, err)
			}
			if ok, err := match(buf[:n]); ok {
				return err
			}
		}
		if try >= tries {
			return noAnswer(conn, try, start, nil)
		}
		wait *= 2
	}
}

func noAnswer(conn *net.UDPConn, tries int, start time.Time, cause error) error {
	s := "s"
	if tries == 1 {
		s = ""
	}
	msg := fmt.Sprintf("%s: %d request%s in %v", conn.RemoteAddr(), tries, s, time.Since(start).Round(time.Millisecond))
	if cause != nil {
		return fmt.Errorf("%w (%s; %w)", ErrNoAnswer, msg, cause)
	}
	return fmt.Errorf("%w (%s)", ErrNoAnswer, msg)
}

func sockErr(conn *net.UDPConn, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w: %s (ICMP port unreachable)", ErrRefused, conn.RemoteAddr())
	}
	return err
}

// epochTracker checks a server's "seconds since start of epoch" against
// our own clock (RFC 6887 §8.5, which also covers RFC 6886 §3.6): the
// server lost its state when its time went backwards by more than a
// second, or when the two clocks advanced at rates differing by more than
// 1/16 plus 2 seconds.
type epochTracker struct {
	mu         sync.Mutex
	seen       bool
	prevServer uint32
	prevClient time.Time
	resets     uint64
}

// observe records an answer; it reports whether the server lost state.
func (e *epochTracker) observe(server uint32, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.seen {
		e.seen, e.prevServer, e.prevClient = true, server, now
		return false
	}
	sd := float64(int64(server) - int64(e.prevServer))
	cd := now.Sub(e.prevClient).Seconds()
	lost := sd < -1 || cd+2 < sd-sd/16 || sd+2 < cd-cd/16
	if lost {
		e.resets++
	}
	if lost || sd >= 0 {
		e.prevServer, e.prevClient = server, now
	}
	return lost
}

func (e *epochTracker) count() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.resets
}
