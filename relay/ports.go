package relay

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
)

// portAlloc hands out even/odd port pairs from a range. Pairs are tried in a
// random order (random start, random stride coprime to the number of pairs),
// so the next port is hard to predict; a pair whose bind fails because some
// other socket holds a port is skipped.
type portAlloc struct {
	mu      sync.Mutex
	min     int // even
	used    []bool
	inUse   int
	sockBuf int
}

func newPortAlloc(min, max, sockBuf int) *portAlloc {
	return &portAlloc{min: min, used: make([]bool, (max-min+1)/2), sockBuf: sockBuf}
}

func (p *portAlloc) usage() (used, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse, len(p.used)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// open binds a free pair on bind and returns the RTP port and the two fds.
func (p *portAlloc) open(bind netip.Addr) (port int, fds [2]int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.used)
	if p.inUse < n {
		start := rand.IntN(n)
		step := 1
		if n > 2 {
			step = 1 + rand.IntN(n-1)
			for gcd(step, n) != 1 {
				step = 1 + rand.IntN(n-1)
			}
		}
		busy := 0
		for k, i := 0, start; k < n; k, i = k+1, (i+step)%n {
			if p.used[i] {
				continue
			}
			port := p.min + 2*i
			fds, err := openPair(bind, port, p.sockBuf)
			if err != nil {
				if isAddrInUse(err) {
					busy++
					continue
				}
				return 0, fds, fmt.Errorf("relay: bind %s: %w", netip.AddrPortFrom(bind, uint16(port)), err)
			}
			p.used[i] = true
			p.inUse++
			return port, fds, nil
		}
		return 0, fds, fmt.Errorf("%w: %d-%d: %d pairs used by the relay, %d held by other sockets",
			ErrNoPorts, p.min, p.min+2*n-1, p.inUse, busy)
	}
	return 0, fds, fmt.Errorf("%w: %d-%d: all %d pairs in use", ErrNoPorts, p.min, p.min+2*n-1, n)
}

func (p *portAlloc) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := (port - p.min) / 2
	if i >= 0 && i < len(p.used) && p.used[i] {
		p.used[i] = false
		p.inUse--
	}
}
