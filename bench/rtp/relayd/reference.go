package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// reference is the trivial Go relay: two sockets per session and one
// goroutine per direction, blocking in ReadFromUDP and writing every packet
// to the fixed address of the other phone. No latching, no checks.
type reference struct {
	ip    netip.Addr
	mu    sync.Mutex
	conns []*net.UDPConn
	pumps []*pump
	wg    sync.WaitGroup
}

type pump struct {
	in, out *net.UDPConn
	to      *net.UDPAddr
	rx, tx  atomic.Uint64
	errs    atomic.Uint64
}

func newReference(cfg config) (relayImpl, error) { return &reference{ip: cfg.ip}, nil }

func (r *reference) Create(id string, a, b netip.AddrPort) (uint16, uint16, error) {
	laddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.ip, 0))
	ca, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		return 0, 0, err
	}
	cb, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		ca.Close()
		return 0, 0, err
	}
	pa := &pump{in: ca, out: cb, to: net.UDPAddrFromAddrPort(b)} // A → relay → B
	pb := &pump{in: cb, out: ca, to: net.UDPAddrFromAddrPort(a)} // B → relay → A
	r.mu.Lock()
	r.conns = append(r.conns, ca, cb)
	r.pumps = append(r.pumps, pa, pb)
	r.mu.Unlock()
	r.wg.Add(2)
	go pa.run(&r.wg)
	go pb.run(&r.wg)
	return uint16(ca.LocalAddr().(*net.UDPAddr).Port), uint16(cb.LocalAddr().(*net.UDPAddr).Port), nil
}

func (p *pump) run(wg *sync.WaitGroup) {
	defer wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := p.in.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.errs.Add(1)
			continue
		}
		p.rx.Add(1)
		if _, err := p.out.WriteToUDP(buf[:n], p.to); err != nil {
			p.errs.Add(1)
			continue
		}
		p.tx.Add(1)
	}
}

func (r *reference) Stats() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rx, tx, errs uint64
	for _, p := range r.pumps {
		rx += p.rx.Load()
		tx += p.tx.Load()
		errs += p.errs.Load()
	}
	return fmt.Sprintf("sessions=%d rx=%d tx=%d errors=%d", len(r.pumps)/2, rx, tx, errs)
}

func (r *reference) Close() error {
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}
