package natprobe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sipedge/sipedge/stun"
)

// sock is one local UDP socket of the probe. Its reader hands Binding
// responses to the transactions registered on it (by transaction id: an
// answer may arrive on another socket than the one that asked, which is
// what the binding lifetime test looks for) and Binding requests to
// onRequest (the hairpinning test).
type sock struct {
	c     *net.UDPConn
	local netip.AddrPort // as reported: the routed IP when bound to the wildcard

	mu        sync.Mutex
	txs       map[[12]byte]*tx
	onRequest func(tid [12]byte, from netip.AddrPort)

	done chan struct{}
}

// tx is a transaction that may be answered on several sockets.
type tx struct {
	t  *stun.Transaction
	mu sync.Mutex // serialises Handle so that "on" names the socket of the accepted answer
	on *sock
}

func (x *tx) handle(b []byte, from netip.AddrPort, s *sock) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.t.Handle(b, from) && x.on == nil {
		x.on = s
	}
}

func (x *tx) arrivedOn() *sock {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.on
}

// listen opens a socket at bind and starts its reader. reportIP replaces
// a wildcard bind IP in the reported local address.
func listen(bind netip.AddrPort, reportIP netip.Addr) (*sock, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(bind))
	if err != nil {
		return nil, err
	}
	la := c.LocalAddr().(*net.UDPAddr).AddrPort()
	ip := la.Addr().Unmap()
	if ip.IsUnspecified() && reportIP.IsValid() {
		ip = reportIP
	}
	s := &sock{c: c, local: netip.AddrPortFrom(ip, la.Port()), txs: map[[12]byte]*tx{}, done: make(chan struct{})}
	go s.read()
	return s, nil
}

// read runs until the socket is closed.
func (s *sock) read() {
	defer close(s.done)
	buf := make([]byte, 2048)
	var m stun.Message
	var attrs [16]stun.Attr
	for errs := 0; errs < 1000; {
		n, from, err := s.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			errs++ // e.g. an ICMP error reported on the socket; bounded
			continue
		}
		m.Attrs = attrs[:0]
		if m.Unmarshal(buf[:n]) != nil || m.Method != stun.MethodBinding {
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		s.mu.Lock()
		x, hook := s.txs[m.TID], s.onRequest
		s.mu.Unlock()
		switch m.Class {
		case stun.ClassSuccess, stun.ClassError:
			if x != nil {
				x.handle(buf[:n], from, s)
			}
		case stun.ClassRequest:
			if hook != nil {
				hook(m.TID, from)
			}
		}
	}
}

func (s *sock) close() {
	s.c.Close()
	<-s.done
}

func (s *sock) add(x *tx) {
	s.mu.Lock()
	s.txs[x.t.TID()] = x
	s.mu.Unlock()
}

func (s *sock) remove(x *tx) {
	s.mu.Lock()
	delete(s.txs, x.t.TID())
	s.mu.Unlock()
}

func (s *sock) setOnRequest(f func(tid [12]byte, from netip.AddrPort)) {
	s.mu.Lock()
	s.onRequest = f
	s.mu.Unlock()
}

// exchange is the outcome of one Binding transaction.
type exchange struct {
	res  stun.Result
	on   *sock // socket the answer arrived on
	err  error
	sent time.Time
}

// transact runs one Binding transaction from s to dst whose answer is
// also accepted on the sockets in also.
func (p *prober) transact(ctx context.Context, s *sock, dst netip.AddrPort, also []*sock, opts ...stun.ClientOption) exchange {
	o := append(p.clientOpts(), opts...)
	x := &tx{t: stun.NewTransaction(dst, o...)}
	s.add(x)
	defer s.remove(x)
	for _, a := range also {
		a.add(x)
		defer a.remove(x)
	}
	e := exchange{sent: time.Now()}
	e.res, e.err = x.t.Run(ctx, func(b []byte) error {
		_, err := s.c.WriteToUDPAddrPort(b, dst)
		return err
	})
	e.on = x.arrivedOn()
	return e
}

// clientOpts are the options of every request: the shortened
// retransmission schedule, SOFTWARE, and no FINGERPRINT, so that a device
// rewriting addresses in the answer (the ALG test) does not also make the
// answer fail its FINGERPRINT check and vanish.
func (p *prober) clientOpts() []stun.ClientOption {
	o := []stun.ClientOption{stun.WithRetransmission(p.cfg.RTO, p.cfg.Tries, rm), stun.WithoutFingerprint()}
	if p.cfg.Software != "" {
		o = append(o, stun.WithSoftware(p.cfg.Software))
	}
	return o
}

// rm is the wait after the last transmission, in initial RTOs.
const rm = 4

// exchangeBound is the longest a transaction runs without an answer.
func (p *prober) exchangeBound() time.Duration {
	d, rto := time.Duration(0), p.cfg.RTO
	for i := 0; i < p.cfg.Tries-1; i++ {
		d += rto
		rto *= 2
	}
	return d + rm*p.cfg.RTO
}
