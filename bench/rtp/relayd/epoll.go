package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/sipedge/sipedge/bench/rtp/internal/udpx"
	"golang.org/x/sys/unix"
)

// epollRelay is the batched reference: every leg socket is connected to its
// phone, so what arrives on leg A came from phone A and what is sent on leg B
// goes to phone B without a per-packet address. Each worker owns an epoll set
// and drains ready sockets with recvmmsg, forwarding with one sendmmsg.
// Workers wait in Go's netpoller on their epoll fd, so they cost no thread
// while idle.
type epollRelay struct {
	ip      netip.Addr
	workers []*epollWorker
	mu      sync.Mutex
	legs    []*epLeg
	next    int
	stop    atomic.Bool
	wg      sync.WaitGroup
}

type epLeg struct {
	fd, out int
}

type epollWorker struct {
	epfd int
	file *os.File // epfd, registered with Go's netpoller
	mu   sync.Mutex
	legs map[int32]*epLeg // by fd; written under mu before EpollCtl, read by the worker
	rx   atomic.Uint64
	tx   atomic.Uint64
	errs atomic.Uint64
}

const epBatch = 32

func newEpoll(cfg config) (relayImpl, error) {
	r := &epollRelay{ip: cfg.ip}
	for i := 0; i < max(cfg.workers, 1); i++ {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return nil, err
		}
		// An epoll fd is itself pollable: readable when it has events. Handing
		// it to Go's netpoller lets the worker goroutine park there instead
		// of holding an OS thread in a blocking epoll_wait.
		if err := unix.SetNonblock(epfd, true); err != nil {
			return nil, err
		}
		w := &epollWorker{epfd: epfd, file: os.NewFile(uintptr(epfd), "epoll"), legs: map[int32]*epLeg{}}
		r.workers = append(r.workers, w)
		r.wg.Add(1)
		go r.run(w)
	}
	return r, nil
}

func (r *epollRelay) Create(id string, a, b netip.AddrPort) (uint16, uint16, error) {
	opt := udpx.Options{NonBlock: true}
	fa, la, err := udpx.Open(netip.AddrPortFrom(r.ip, 0), opt)
	if err != nil {
		return 0, 0, err
	}
	fb, lb, err := udpx.Open(netip.AddrPortFrom(r.ip, 0), opt)
	if err != nil {
		unix.Close(fa)
		return 0, 0, err
	}
	if err := errors.Join(udpx.Connect(fa, a), udpx.Connect(fb, b)); err != nil {
		unix.Close(fa)
		unix.Close(fb)
		return 0, 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range []*epLeg{{fd: fa, out: fb}, {fd: fb, out: fa}} {
		w := r.workers[r.next%len(r.workers)]
		r.next++
		w.mu.Lock()
		w.legs[int32(l.fd)] = l
		w.mu.Unlock()
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.fd)}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, l.fd, &ev); err != nil {
			return 0, 0, err
		}
		r.legs = append(r.legs, l)
	}
	return la.Port(), lb.Port(), nil
}

func (r *epollRelay) run(w *epollWorker) {
	defer r.wg.Done()
	rc, err := w.file.SyscallConn()
	if err != nil {
		panic(err)
	}
	events := make([]unix.EpollEvent, 128)
	b := udpx.NewBatch(epBatch, 2048, false)
	cache := map[int32]*epLeg{}
	var rx, tx, errs uint64
	handle := func(n int) {
		for _, ev := range events[:n] {
			l := cache[ev.Fd]
			if l == nil {
				w.mu.Lock()
				l = w.legs[ev.Fd]
				w.mu.Unlock()
				if l == nil {
					continue
				}
				cache[ev.Fd] = l
			}
			for {
				m, err := b.Recv(l.fd, unix.MSG_DONTWAIT)
				if err != nil || m == 0 {
					break
				}
				rx += uint64(m)
				for i := 0; i < m; i++ {
					b.SetSend(i, len(b.Msg(i)), nil)
				}
				sent, failed, _ := b.Send(l.out, m)
				tx += uint64(sent)
				errs += uint64(failed)
				if m < epBatch {
					break
				}
			}
		}
		w.rx.Store(rx)
		w.tx.Store(tx)
		w.errs.Store(errs)
	}
	for !r.stop.Load() {
		err := rc.Read(func(fd uintptr) bool {
			n, err := unix.EpollWait(int(fd), events, 0)
			if err != nil || n <= 0 {
				return false // nothing ready: park in the netpoller
			}
			handle(n)
			return true
		})
		if err != nil {
			return // closed
		}
	}
}

func (r *epollRelay) Stats() string {
	var rx, tx, errs uint64
	for _, w := range r.workers {
		rx += w.rx.Load()
		tx += w.tx.Load()
		errs += w.errs.Load()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("sessions=%d workers=%d rx=%d tx=%d errors=%d", len(r.legs)/2, len(r.workers), rx, tx, errs)
}

func (r *epollRelay) Close() error {
	r.stop.Store(true)
	for _, w := range r.workers {
		w.file.Close() // wakes the worker parked in the netpoller
	}
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.legs {
		unix.Close(l.fd)
	}
	return nil
}
