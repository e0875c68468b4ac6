package main

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sipedge/sipedge/uatest"
)

// The phones: one UDP socket per phone, each bound to its own loopback
// address (127.64.0.1, 127.64.0.2, …, an ephemeral port each), so every
// registration is its own flow, as N phones behind N NATs would be. A few
// workers (default 2) each own an epoll set over a share of the sockets;
// a worker reads the ready sockets one datagram at a time and answers from
// the same socket. Each socket holds at most one datagram per wake-up
// (one OPTIONS per interval), so recvmmsg/sendmmsg, which batch on one
// socket, would save nothing: the batching is epoll_wait's, which returns
// every ready socket at once.
//
// Arrival times are the kernel's (SO_TIMESTAMPNS): on loopback the packet
// is stamped when sipedge's sendto hands it to the stack, so the schedule
// seen here is sipedge's, even when a worker is late to read it.

// Phone registration states.
const (
	stIdle     uint8 = iota
	stWait           // REGISTER without credentials sent
	stWaitAuth       // REGISTER with credentials sent
	stRegistered
	stFailed
)

type phone struct {
	mu     sync.Mutex // guards the registration fields: state … sentAt
	state  uint8
	tries  uint8
	fd     int32
	cseq   uint32
	sentAt int64 // fleet clock of the last REGISTER

	lastPing atomic.Int64  // fleet clock of the last OPTIONS (0: none yet)
	pings    atomic.Uint32 // OPTIONS received in this run
	winPings atomic.Uint32 // OPTIONS received in the window
}

// binNS is the resolution of the OPTIONS arrival histogram.
const binNS = int64(10 * time.Millisecond)

// maxRegTries bounds the REGISTER attempts of one phone per run, and a
// registration left unanswered for regRetry starts again.
const (
	maxRegTries = 4
	regRetry    = 4 * time.Second
)

type fleet struct {
	first   int // global index of phones[0]: addresses and users are global
	n       int
	prefix  string // user name prefix
	domain  string
	expires int
	phones  []phone
	workers []*worker
	// The fleet clock is CLOCK_MONOTONIC minus a base shared by every
	// shard process: time.Since(base) + offset.
	base    time.Time
	offset  int64
	rtToClk int64 // add to a CLOCK_REALTIME ns stamp to get the fleet clock
	srv     unix.SockaddrInet4

	runTag atomic.Pointer[string] // Call-ID part: one per sipedge run

	registered, failed, retries atomic.Int64
	codes                       sync.Map // status code → *atomic.Int64 (final non-2xx answers)

	bins []atomic.Uint32 // OPTIONS received per 10 ms of fleet clock

	// The measurement window, fleet clock; gaps are counted when both
	// pings fall inside it. winStart is MaxInt64 while no window is open.
	winStart, winEnd atomic.Int64
	interval         atomic.Int64 // expected gap (ns)

	stop atomic.Bool
	wg   sync.WaitGroup
}

type worker struct {
	f    *fleet
	epfd int
	sa   unix.SockaddrInet4 // sipedge; a copy per worker (Sendto writes into it)

	mu sync.Mutex
	st wstats
}

// wstats are a worker's counters, guarded by worker.mu.
type wstats struct {
	Options   uint64 // OPTIONS received
	Answered  uint64 // 200s sent for them
	SendErrs  uint64
	OtherReqs uint64
	Junk      uint64
	Stale     uint64 // responses for no REGISTER in progress
	WinPings  uint64 // OPTIONS received inside the window
	WinAnswd  uint64 // … and answered
	WinErrs   uint64 // … whose answer could not be sent
	Gap       gapStats
	// Lag: read time minus the kernel's arrival stamp, in the window (how
	// late the generator was to read; not part of sipedge's schedule).
	LagN, LagSum, LagMax int64
}

// gapStats describe the time between two pings of one phone against the
// configured interval (deviation = gap − interval).
type gapStats struct {
	N       uint64
	AbsSum  int64 // ns
	MinDev  int64
	MaxDev  int64
	Buckets [6]uint64 // |dev| ≤ 1, 5, 10, 50, 100 ms, more
}

var gapBounds = [...]int64{int64(time.Millisecond), int64(5 * time.Millisecond), int64(10 * time.Millisecond),
	int64(50 * time.Millisecond), int64(100 * time.Millisecond)}

func (g *gapStats) add(dev int64) {
	if g.N == 0 || dev < g.MinDev {
		g.MinDev = dev
	}
	if g.N == 0 || dev > g.MaxDev {
		g.MaxDev = dev
	}
	g.N++
	a := dev
	if a < 0 {
		a = -a
	}
	g.AbsSum += a
	i := 0
	for i < len(gapBounds) && a > gapBounds[i] {
		i++
	}
	g.Buckets[i]++
}

func (g *gapStats) merge(o gapStats) {
	if o.N == 0 {
		return
	}
	if g.N == 0 || o.MinDev < g.MinDev {
		g.MinDev = o.MinDev
	}
	if g.N == 0 || o.MaxDev > g.MaxDev {
		g.MaxDev = o.MaxDev
	}
	g.N += o.N
	g.AbsSum += o.AbsSum
	for i := range g.Buckets {
		g.Buckets[i] += o.Buckets[i]
	}
}

// loopIP is phone i's own source address: 127.64.0.1 onwards, skipping
// .0 and .255 in the last byte.
func loopIP(i int) [4]byte {
	return [4]byte{127, byte(64 + i/(256*254)), byte(i / 254 % 256), byte(1 + i%254)}
}

// privateIP is the address phone i believes it has (behind its NAT).
func privateIP(i int) string {
	return "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
}

// userName is the user of phone i (global index).
func userName(prefix string, i int) string { return fmt.Sprintf("%s%07d", prefix, i+1) }

func password(user string) string { return "pw-" + user }

// monoNow reads CLOCK_MONOTONIC, the clock every process shares.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// clock is a fleet clock: ns since a CLOCK_MONOTONIC base shared by all
// processes, read through Go's (vDSO) monotonic time.
type clock struct {
	base   time.Time
	offset int64
}

func newClock(monoBase int64) clock {
	t := time.Now()
	return clock{base: t, offset: monoNow() - monoBase}
}

func (c clock) now() int64 { return int64(time.Since(c.base)) + c.offset }

// newFleet opens sockets for the n phones first… first+n-1 and starts the
// workers. maxRun bounds the fleet's lifetime for the arrival histogram.
func newFleet(first, n, workers int, prefix, domain string, srv [4]byte, srvPort int, clk clock, maxRun time.Duration) (*fleet, error) {
	if first+n > (127-64)*256*254 {
		return nil, fmt.Errorf("at most %d phones", (127-64)*256*254)
	}
	f := &fleet{first: first, n: n, prefix: prefix, domain: domain, expires: 3600, phones: make([]phone, n),
		base: clk.base, offset: clk.offset, srv: unix.SockaddrInet4{Port: srvPort, Addr: srv},
		bins: make([]atomic.Uint32, int64(maxRun)/binNS+1)}
	t := time.Now()
	f.rtToClk = int64(t.Sub(f.base)) + f.offset - t.UnixNano()
	f.winStart.Store(math.MaxInt64)
	tag := "r0"
	f.runTag.Store(&tag)
	for w := 0; w < workers; w++ {
		ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			f.close()
			return nil, err
		}
		f.workers = append(f.workers, &worker{f: f, epfd: ep, sa: f.srv})
	}
	for i := range f.phones {
		f.phones[i].fd = -1
	}
	for i := range f.phones {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("socket %d: %w", i, err)
		}
		f.phones[i].fd = int32(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			f.close()
			return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: loopIP(first + i)}); err != nil {
			f.close()
			return nil, fmt.Errorf("bind %v: %w", loopIP(first+i), err)
		}
		w := f.workers[i%len(f.workers)]
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			f.close()
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	for _, w := range f.workers {
		f.wg.Add(1)
		go w.loop()
	}
	return f, nil
}

func (f *fleet) close() {
	f.stop.Store(true)
	f.wg.Wait()
	for i := range f.phones {
		if fd := f.phones[i].fd; fd >= 0 {
			unix.Close(int(fd))
		}
	}
	for _, w := range f.workers {
		unix.Close(w.epfd)
	}
}

// now is the fleet clock.
func (f *fleet) now() int64 { return int64(time.Since(f.base)) + f.offset }

// reset forgets the previous run: call it while no sipedge runs.
func (f *fleet) reset(tag string) {
	f.runTag.Store(&tag)
	for i := range f.phones {
		p := &f.phones[i]
		p.mu.Lock()
		p.state, p.tries, p.sentAt = stIdle, 0, 0
		p.mu.Unlock()
		p.lastPing.Store(0)
		p.pings.Store(0)
		p.winPings.Store(0)
	}
	for _, w := range f.workers {
		w.mu.Lock()
		w.st = wstats{}
		w.mu.Unlock()
	}
	f.registered.Store(0)
	f.failed.Store(0)
	f.retries.Store(0)
	f.codes.Range(func(k, _ any) bool { f.codes.Delete(k); return true })
	f.winStart.Store(math.MaxInt64)
	f.winEnd.Store(math.MaxInt64)
}

// rxbuf receives one datagram with its kernel timestamp, without
// allocating.
type rxbuf struct {
	buf [8192]byte
	oob [64]byte
	iov unix.Iovec
	hdr unix.Msghdr
}

// recv reads one datagram from fd: its length and the kernel's
// CLOCK_REALTIME arrival stamp in ns (0 if none came).
func (r *rxbuf) recv(fd int) (int, int64, error) {
	r.iov.Base = &r.buf[0]
	r.iov.SetLen(len(r.buf))
	r.hdr = unix.Msghdr{Iov: &r.iov, Iovlen: 1, Control: &r.oob[0]}
	r.hdr.SetControllen(len(r.oob))
	n, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&r.hdr)), 0)
	if e != 0 {
		return 0, 0, e
	}
	return int(n), stampOf(r.oob[:r.hdr.Controllen]), nil
}

// stampOf finds SCM_TIMESTAMPNS in a control message buffer.
func stampOf(oob []byte) int64 {
	hl := unix.CmsgLen(0)
	for len(oob) >= hl {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hl || l > len(oob) {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= hl+int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[hl]))
			return ts.Nano()
		}
		oob = oob[min(len(oob), unix.CmsgSpace(l-hl)):]
	}
	return 0
}

func (w *worker) loop() {
	defer w.f.wg.Done()
	evs := make([]unix.EpollEvent, 512)
	rx := new(rxbuf)
	out := make([]byte, 0, 4096)
	var m msg
	for !w.f.stop.Load() {
		n, err := unix.EpollWait(w.epfd, evs, 100)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			logf("epoll_wait: %v", err)
			return
		}
		for i := 0; i < n; i++ {
			idx := int(evs[i].Fd)
			p := &w.f.phones[idx]
			k, stamp, err := rx.recv(int(p.fd))
			if err != nil || k <= 0 {
				continue
			}
			out = w.handle(idx, p, rx.buf[:k], stamp, &m, out)
		}
	}
}

// handle processes one datagram received by phone idx; stamp is the
// kernel's arrival time (CLOCK_REALTIME ns, 0 if unknown).
func (w *worker) handle(idx int, p *phone, b []byte, stamp int64, m *msg, out []byte) []byte {
	f := w.f
	now := f.now()
	at := now // arrival, fleet clock
	if stamp != 0 {
		at = min(now, stamp+f.rtToClk)
	}
	if !parseMsg(b, m) {
		w.mu.Lock()
		w.st.Junk++
		w.mu.Unlock()
		return out
	}
	if m.request {
		if !bytes.Equal(m.method, []byte("OPTIONS")) {
			w.mu.Lock()
			w.st.OtherReqs++
			w.mu.Unlock()
			return out
		}
		n := p.pings.Add(1)
		var tag [24]byte
		t := append(tag[:0], 'k', 'b')
		t = strconv.AppendUint(t, uint64(idx), 36)
		t = append(t, '.')
		t = strconv.AppendUint(t, uint64(n), 36)
		out = appendOptionsOK(out[:0], m, t)
		err := unix.Sendto(int(p.fd), out, 0, &w.sa)
		if bi := at / binNS; bi >= 0 && bi < int64(len(f.bins)) {
			f.bins[bi].Add(1)
		}
		last := p.lastPing.Swap(at)
		ws, we := f.winStart.Load(), f.winEnd.Load()
		w.mu.Lock()
		w.st.Options++
		if err != nil {
			w.st.SendErrs++
		} else {
			w.st.Answered++
		}
		if at >= ws && at < we {
			p.winPings.Add(1)
			lag := now - at
			w.st.LagN++
			w.st.LagSum += lag
			w.st.LagMax = max(w.st.LagMax, lag)
			w.st.WinPings++
			if err != nil {
				w.st.WinErrs++
			} else {
				w.st.WinAnswd++
			}
			if last >= ws {
				w.st.Gap.add(at - last - f.interval.Load())
			}
		}
		w.mu.Unlock()
		return out
	}
	if !bytes.Equal(m.cseqMth, []byte("REGISTER")) {
		w.mu.Lock()
		w.st.Stale++
		w.mu.Unlock()
		return out
	}
	return f.registerResponse(idx, p, m, now, out, w)
}

// registerResponse moves phone idx's registration on.
func (f *fleet) registerResponse(idx int, p *phone, m *msg, now int64, out []byte, w *worker) []byte {
	if m.status < 200 {
		return out
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if (p.state != stWait && p.state != stWaitAuth) || m.cseqNum != p.cseq {
		w.mu.Lock()
		w.st.Stale++
		w.mu.Unlock()
		return out
	}
	switch {
	case m.status == 200:
		p.state = stRegistered
		f.registered.Add(1)
	case m.status == 401 && p.state == stWait:
		c, ok := pickChallenge(m)
		if !ok {
			f.failPhone(p, 401)
			return out
		}
		user := userName(f.prefix, f.first+idx)
		p.cseq++
		p.state = stWaitAuth
		p.sentAt = now
		auth := uatest.Authorization(c, user, password(user), "REGISTER", "sip:"+f.domain)
		out = appendRegister(out[:0], f.regParams(idx, p, user, auth))
		if err := unix.Sendto(int(p.fd), out, 0, &w.sa); err != nil {
			f.failPhone(p, 0)
		}
	default:
		f.failPhone(p, m.status)
	}
	return out
}

// failPhone marks p failed; p.mu is held.
func (f *fleet) failPhone(p *phone, code int) {
	p.state = stFailed
	f.failed.Add(1)
	v, _ := f.codes.LoadOrStore(code, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (f *fleet) regParams(idx int, p *phone, user, auth string) *regParams {
	gi := f.first + idx
	priv := privateIP(gi)
	tag := *f.runTag.Load()
	return &regParams{user: user, domain: f.domain, private: priv,
		callID: "kab-" + tag + "-" + strconv.Itoa(gi) + "@" + priv, tag: "kb" + strconv.Itoa(gi),
		branch: "z9hG4bK.kb" + tag + "." + strconv.Itoa(gi) + "." + strconv.FormatUint(uint64(p.cseq), 10),
		cseq:   p.cseq, expires: f.expires, auth: auth}
}

// startRegister sends phone idx's first REGISTER (no credentials).
func (f *fleet) startRegister(idx int, sa *unix.SockaddrInet4, buf []byte) []byte {
	p := &f.phones[idx]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == stRegistered {
		return buf
	}
	if p.tries >= maxRegTries {
		if p.state != stFailed {
			f.failPhone(p, -1) // timed out
		}
		return buf
	}
	if p.tries > 0 {
		f.retries.Add(1)
	}
	p.tries++
	p.cseq++
	p.state = stWait
	p.sentAt = f.now()
	buf = appendRegister(buf[:0], f.regParams(idx, p, userName(f.prefix, f.first+idx), ""))
	if err := unix.Sendto(int(p.fd), buf, 0, sa); err != nil {
		f.failPhone(p, 0)
	}
	return buf
}

// RegResult is how the phones' registration went.
type RegResult struct {
	Rate       float64          `json:"rate_target_per_s"`
	SendS      float64          `json:"send_s"`     // first to last initial REGISTER
	CompleteS  float64          `json:"complete_s"` // until all were answered (or gave up)
	Registered int64            `json:"registered"`
	Failed     int64            `json:"failed"`
	Retries    int64            `json:"retries"`
	Codes      map[string]int64 `json:"failure_codes,omitempty"`
	// LastSentAt is the fleet clock of the last REGISTER sent.
	LastSentAt int64 `json:"last_sent_at_ns"`
}

// register registers every phone at rate per second, retrying those left
// unanswered for regRetry (at most maxRegTries attempts each), for at most
// limit.
func (f *fleet) register(rate float64, limit time.Duration) RegResult {
	start := time.Now()
	deadline := start.Add(limit)
	sa := f.srv
	var buf []byte
	i := 0
	for i < f.n && time.Now().Before(deadline) {
		due := min(f.n, int(time.Since(start).Seconds()*rate)+1)
		for ; i < due; i++ {
			buf = f.startRegister(i, &sa, buf)
		}
		time.Sleep(time.Millisecond)
	}
	sendS := time.Since(start).Seconds()
	for k := 1; time.Now().Before(deadline); k++ {
		time.Sleep(100 * time.Millisecond)
		if f.registered.Load()+f.failed.Load() >= int64(f.n) {
			break
		}
		if k%5 != 0 {
			continue
		}
		now := f.now()
		for j := range f.phones {
			p := &f.phones[j]
			p.mu.Lock()
			late := (p.state == stWait || p.state == stWaitAuth || p.state == stIdle) && now-p.sentAt > int64(regRetry)
			p.mu.Unlock()
			if late {
				buf = f.startRegister(j, &sa, buf)
			}
		}
	}
	r := RegResult{Rate: rate, SendS: sendS, CompleteS: time.Since(start).Seconds(),
		Registered: f.registered.Load(), Failed: f.failed.Load(), Retries: f.retries.Load(), LastSentAt: f.lastSent()}
	f.codes.Range(func(k, v any) bool {
		if r.Codes == nil {
			r.Codes = map[string]int64{}
		}
		name := strconv.Itoa(k.(int))
		switch k.(int) {
		case 0:
			name = "send error"
		case -1:
			name = "no answer"
		}
		r.Codes[name] = v.(*atomic.Int64).Load()
		return true
	})
	return r
}

func (f *fleet) lastSent() int64 {
	var last int64
	for i := range f.phones {
		p := &f.phones[i]
		p.mu.Lock()
		last = max(last, p.sentAt)
		p.mu.Unlock()
	}
	return last
}

// stats sums the workers' counters.
func (f *fleet) stats() wstats {
	var s wstats
	for _, w := range f.workers {
		w.mu.Lock()
		o := w.st
		w.mu.Unlock()
		s.add(o)
	}
	return s
}

func (s *wstats) add(o wstats) {
	s.Options += o.Options
	s.Answered += o.Answered
	s.SendErrs += o.SendErrs
	s.OtherReqs += o.OtherReqs
	s.Junk += o.Junk
	s.Stale += o.Stale
	s.WinPings += o.WinPings
	s.WinAnswd += o.WinAnswd
	s.WinErrs += o.WinErrs
	s.Gap.merge(o.Gap)
	s.LagN += o.LagN
	s.LagSum += o.LagSum
	s.LagMax = max(s.LagMax, o.LagMax)
}

// winCounts returns every phone's OPTIONS count in the window.
func (f *fleet) winCounts() []uint32 {
	out := make([]uint32, len(f.phones))
	for i := range f.phones {
		out[i] = f.phones[i].winPings.Load()
	}
	return out
}

// window sets the measurement window [from, to) (fleet clock): call it
// before from; per-phone window counts restart.
func (f *fleet) window(from, to int64) {
	f.winStart.Store(math.MaxInt64)
	for i := range f.phones {
		f.phones[i].winPings.Store(0)
	}
	for _, w := range f.workers {
		w.mu.Lock()
		w.st.WinPings, w.st.WinAnswd, w.st.WinErrs, w.st.Gap = 0, 0, 0, gapStats{}
		w.st.LagN, w.st.LagSum, w.st.LagMax = 0, 0, 0
		w.mu.Unlock()
	}
	f.winEnd.Store(to)
	f.winStart.Store(from)
}

// binsBetween returns the 10 ms arrival counts of the whole bins inside
// [from, to) (fleet clock).
func (f *fleet) binsBetween(from, to int64) []uint32 {
	a := (from + binNS - 1) / binNS
	b := to / binNS
	b = min(b, int64(len(f.bins)))
	if b <= a {
		return nil
	}
	out := make([]uint32, b-a)
	for i := range out {
		out[i] = f.bins[a+int64(i)].Load()
	}
	return out
}
