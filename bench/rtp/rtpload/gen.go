package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/bench/rtp/internal/hist"
	"github.com/sipedge/sipedge/bench/rtp/internal/udpx"
	"golang.org/x/sys/unix"
)

// Packet layout: a 12-byte RTP header (V=2, PT 0, sequence, timestamp, SSRC)
// followed by the payload, whose first bytes carry what the receiver needs.
const (
	rtpHdr     = 12
	offMagic   = rtpHdr + 0  // 4 bytes "RLB1"
	offFlow    = rtpHdr + 4  // uint32 flow index
	offSeq     = rtpHdr + 8  // uint32 sequence (the RTP one wraps at 16 bits)
	offStamp   = rtpHdr + 12 // int64 send time, Unix ns (CLOCK_REALTIME)
	offFlags   = rtpHdr + 20 // bit 0: sent inside the measured window
	minPayload = 21
	magic      = 0x524c4231 // "RLB1"
	flagMeas   = 1
)

// phoneSock is one UDP socket of the simulated phones.
type phoneSock struct {
	fd     int
	addr   netip.AddrPort
	raw    udpx.Addr
	nflows int // flows sent from this socket

	// sender-owned
	batch *udpx.Batch
	meta  []int32 // flow index per batch slot; negative: not measured
	n     int
	dirty bool
}

// txFlow is the sending half of one direction of one stream.
type txFlow struct {
	sock     *phoneSock
	dst      udpx.Addr // relay port (or the other phone in direct mode)
	ssrc     uint32
	seq      uint32
	sent     uint64 // all packets
	sentMeas uint64 // packets flagged measured
	_        [64]byte
}

// rxFlow is the receiving half; only the receiver that owns rxFd touches it.
type rxFlow struct {
	rxFd   int
	expSrc uint64 // udpx.Key of the address packets must come from
	recv   uint64 // all packets
	meas   uint64 // unique measured packets
	dup    uint64
	reord  uint64
	badSrc uint64
	maxSeq int64
	seen   []uint64 // bitset of measured sequence numbers
	_      [64]byte
}

// gen is the load generator: the phones, their flows, senders and receivers.
type gen struct {
	o      *options
	socksA []*phoneSock
	socksB []*phoneSock
	tx     []txFlow
	rx     []rxFlow
	pktLen int

	interval int64 // ns between two packets of one flow
	start    time.Time
	measFrom int64 // offsets from start, ns
	measTo   int64

	stopRx atomic.Bool

	// results, filled after the run
	lat      *hist.Hist
	lag      *hist.Hist
	sendErrs uint64
	misroute uint64
	bad      uint64
	kernelTS bool
	rxNoTS   uint64
}

// stream i uses flows 2i (A→B) and 2i+1 (B→A).
func (g *gen) sockA(i int) *phoneSock { return g.socksA[i%len(g.socksA)] }
func (g *gen) sockB(i int) *phoneSock { return g.socksB[i%len(g.socksB)] }

func newGen(o *options) (*gen, error) {
	g := &gen{o: o, pktLen: rtpHdr + o.payload, kernelTS: o.rxTS == "kernel"}
	nsock := o.socks
	if nsock <= 0 || nsock > o.streams {
		nsock = o.streams
	}
	rcvbuf := o.rcvbuf
	if rcvbuf == 0 && nsock < o.streams {
		rcvbuf = 8 << 20 // shared sockets take many streams' packets
	}
	opt := udpx.Options{RcvBuf: rcvbuf, SndBuf: rcvbuf, Timestamps: g.kernelTS}
	open := func(ip netip.Addr) (*phoneSock, error) {
		fd, ap, err := udpx.Open(netip.AddrPortFrom(ip, 0), opt)
		if err != nil {
			return nil, err
		}
		raw, _ := udpx.MakeAddr(ap)
		return &phoneSock{fd: fd, addr: ap, raw: raw}, nil
	}
	for i := 0; i < nsock; i++ {
		a, err := open(o.ipA)
		if err != nil {
			g.close()
			return nil, err
		}
		g.socksA = append(g.socksA, a)
		b, err := open(o.ipB)
		if err != nil {
			g.close()
			return nil, err
		}
		g.socksB = append(g.socksB, b)
	}
	g.tx = make([]txFlow, 2*o.streams)
	g.rx = make([]rxFlow, 2*o.streams)
	return g, nil
}

func (g *gen) close() {
	for _, s := range append(g.socksA, g.socksB...) {
		unix.Close(s.fd)
	}
}

// phones lists each stream's two phone addresses, for the relay setup.
func (g *gen) phones() []streamPhones {
	p := make([]streamPhones, g.o.streams)
	for i := range p {
		p[i] = streamPhones{A: g.sockA(i).addr, B: g.sockB(i).addr}
	}
	return p
}

// wire fixes every flow's destination and expected source from the relay's
// ports: phone A sends to ports[i].A and hears the relay from ports[i].B.
func (g *gen) wire(ports []streamPorts) error {
	o := g.o
	bits := int(o.ppsPerStream*(o.warmup+o.duration).Seconds()*1.05) + 64
	for i := 0; i < o.streams; i++ {
		a, b := g.sockA(i), g.sockB(i)
		toA, err1 := udpx.MakeAddr(ports[i].A) // where phone A sends
		toB, err2 := udpx.MakeAddr(ports[i].B) // where phone B sends
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		ab, ba := &g.tx[2*i], &g.tx[2*i+1]
		ab.sock, ab.dst, ab.ssrc = a, toA, uint32(0x10000000+2*i)
		ba.sock, ba.dst, ba.ssrc = b, toB, uint32(0x10000000+2*i+1)
		a.nflows++
		b.nflows++
		// A→B arrives on B's socket from the port B sends to (symmetric RTP),
		// and in direct mode (ports are the phones) from phone A itself.
		g.rx[2*i] = rxFlow{rxFd: b.fd, expSrc: udpx.Key(&toB), maxSeq: -1, seen: make([]uint64, bits/64)}
		g.rx[2*i+1] = rxFlow{rxFd: a.fd, expSrc: udpx.Key(&toA), maxSeq: -1, seen: make([]uint64, bits/64)}
		if ports[i].direct {
			g.rx[2*i].expSrc = udpx.Key(&a.raw)
			g.rx[2*i+1].expSrc = udpx.Key(&b.raw)
		}
	}
	return nil
}

// run sends for warmup+duration, waits drain, and collects the results.
// atMeasure is called (in its own goroutine) when the measured window opens
// and closes, to sample CPU counters.
func (g *gen) run(atMeasure func(open bool)) {
	o := g.o
	g.interval = int64(float64(time.Second) / o.ppsPerStream)
	g.measFrom = int64(o.warmup)
	g.measTo = int64(o.warmup + o.duration)

	// Receivers.
	nrx := max(o.rxWorkers, 1)
	var rxwg sync.WaitGroup
	rxs := make([]*receiver, nrx)
	owners := make([][]*phoneSock, nrx)
	all := append(append([]*phoneSock{}, g.socksA...), g.socksB...)
	for i, s := range all {
		owners[i%nrx] = append(owners[i%nrx], s)
	}
	for i := range rxs {
		r, err := newReceiver(g, owners[i])
		if err != nil {
			fatal("receiver: %v", err)
		}
		rxs[i] = r
		rxwg.Add(1)
		go r.run(&rxwg)
	}

	// Senders: each owns whole sockets, so it can batch per socket.
	ns := max(o.senders, 1)
	snd := make([]*sender, ns)
	for i := range snd {
		snd[i] = &sender{g: g, lag: hist.New()}
	}
	sockOwner := map[*phoneSock]*sender{}
	for i, s := range all {
		if s.nflows == 0 {
			continue
		}
		sd := snd[i%ns]
		sockOwner[s] = sd
		s.batch = udpx.NewBatch(min(s.nflows, o.batch), g.pktLen, false)
		s.meta = make([]int32, s.batch.Len())
		for j := 0; j < s.batch.Len(); j++ {
			initPacket(s.batch.Bufs[j], o.payload)
		}
	}
	// Flow k starts at k/nflows of the interval, so the total rate is smooth.
	nflows := len(g.tx)
	for k := range g.tx {
		sd := sockOwner[g.tx[k].sock]
		sd.flows = append(sd.flows, int32(k))
		sd.offs = append(sd.offs, int64(k)*g.interval/int64(nflows))
	}

	g.start = time.Now().Add(20 * time.Millisecond)
	var swg sync.WaitGroup
	for _, sd := range snd {
		if len(sd.flows) == 0 {
			continue
		}
		swg.Add(1)
		go sd.run(&swg)
	}
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		time.Sleep(time.Until(g.start.Add(o.warmup)))
		atMeasure(true)
		time.Sleep(time.Until(g.start.Add(o.warmup + o.duration)))
		atMeasure(false)
	}()
	swg.Wait()
	cwg.Wait()
	time.Sleep(o.drain)
	g.stopRx.Store(true)
	rxwg.Wait()

	g.lat, g.lag = hist.New(), hist.New()
	for _, sd := range snd {
		g.lag.Merge(sd.lag)
		g.sendErrs += sd.errs
	}
	for _, r := range rxs {
		g.lat.Merge(r.lat)
		g.misroute += r.misroute
		g.bad += r.bad
		g.rxNoTS += r.noTS
	}
}

// initPacket fills the constant parts of a packet buffer.
func initPacket(b []byte, payload int) {
	b[0] = 0x80 // V=2, no padding, no extension, no CSRC
	b[1] = 0    // M=0, PT=0 (PCMU)
	for i := rtpHdr; i < rtpHdr+payload; i++ {
		b[i] = 0xff // µ-law silence
	}
	binary.BigEndian.PutUint32(b[offMagic:], magic)
}

// sender paces its flows and sends them in per-socket batches.
type sender struct {
	g     *gen
	flows []int32 // in order of offset
	offs  []int64
	dirty []*phoneSock
	lag   *hist.Hist
	errs  uint64
}

// run sends, every tick, all packets whose time has come, then sleeps to the
// next tick. Waking once per tick instead of once per packet keeps the
// generator cheap (a timer wake-up costs tens of µs in a VM); the packets of
// a tick go out back to back, each stamped with its real send time.
func (s *sender) run(wg *sync.WaitGroup) {
	defer wg.Done()
	g := s.g
	end := g.measTo
	iv := g.interval
	start := g.start
	tick := int64(g.o.tick)
	j, cycle := 0, int64(0)
	next := int64(0)
	for {
		if d := next - int64(time.Since(start)); d > 0 {
			time.Sleep(time.Duration(d))
		}
		now := int64(time.Since(start))
		for {
			due := cycle*iv + s.offs[j]
			if due > now || due >= end {
				break
			}
			s.lag.Add(now - due)
			s.queue(s.flows[j], due >= g.measFrom)
			if j++; j == len(s.flows) {
				j, cycle = 0, cycle+1
			}
		}
		s.flush()
		if cycle*iv+s.offs[j] >= end {
			return
		}
		next += tick
		if next < now {
			next = now // behind: no sleeping until caught up
		}
	}
}

func (s *sender) queue(k int32, meas bool) {
	f := &s.g.tx[k]
	sk := f.sock
	b := sk.batch.Bufs[sk.n]
	binary.BigEndian.PutUint16(b[2:], uint16(f.seq))
	binary.BigEndian.PutUint32(b[4:], f.seq*160)
	binary.BigEndian.PutUint32(b[8:], f.ssrc)
	binary.LittleEndian.PutUint32(b[offFlow:], uint32(k))
	binary.LittleEndian.PutUint32(b[offSeq:], f.seq)
	f.seq++
	f.sent++
	if meas {
		b[offFlags] = flagMeas
		f.sentMeas++
		sk.meta[sk.n] = k
	} else {
		b[offFlags] = 0
		sk.meta[sk.n] = -1 - k
	}
	sk.batch.SetSend(sk.n, s.g.pktLen, &f.dst)
	sk.n++
	if !sk.dirty {
		sk.dirty = true
		s.dirty = append(s.dirty, sk)
	}
	if sk.n == sk.batch.Len() {
		s.send(sk)
	}
}

func (s *sender) flush() {
	for _, sk := range s.dirty {
		if sk.n > 0 {
			s.send(sk)
		}
		sk.dirty = false
	}
	s.dirty = s.dirty[:0]
}

func (s *sender) send(sk *phoneSock) {
	stamp := time.Now().UnixNano()
	for i := 0; i < sk.n; i++ {
		binary.LittleEndian.PutUint64(sk.batch.Bufs[i][offStamp:], uint64(stamp))
	}
	_, failed, _ := sk.batch.Send(sk.fd, sk.n)
	if failed > 0 {
		s.errs += uint64(failed)
		for _, i := range sk.batch.Failed {
			if k := sk.meta[i]; k >= 0 {
				s.g.tx[k].sentMeas--
			}
		}
	}
	sk.n = 0
}

// receiver drains its sockets from one epoll set.
type receiver struct {
	g        *gen
	epfd     int
	lat      *hist.Hist
	misroute uint64
	bad      uint64
	noTS     uint64
}

func newReceiver(g *gen, socks []*phoneSock) (*receiver, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	for _, s := range socks {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll add: %w", err)
		}
	}
	return &receiver{g: g, epfd: epfd, lat: hist.New()}, nil
}

// run drains the receiver's sockets. With kernel timestamps the receive time
// is fixed when the packet reaches the socket, so the receiver can poll once
// per tick instead of waking for every packet; with user timestamps it
// blocks in epoll_wait and stamps right after recvmmsg.
func (r *receiver) run(wg *sync.WaitGroup) {
	defer wg.Done()
	defer unix.Close(r.epfd)
	g := r.g
	events := make([]unix.EpollEvent, 512)
	b := udpx.NewBatch(64, 2048, g.kernelTS)
	poll := g.kernelTS && g.o.rxTick > 0
	for !g.stopRx.Load() {
		wait := 20
		if poll {
			wait = 0
		}
		n, err := unix.EpollWait(r.epfd, events, wait)
		if err != nil {
			continue
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			for {
				m, err := b.Recv(fd, unix.MSG_DONTWAIT)
				if err != nil || m == 0 {
					break
				}
				var now int64
				for i := 0; i < m; i++ {
					ts, ok := b.KernelTime(i)
					if !ok {
						if now == 0 {
							now = time.Now().UnixNano()
						}
						ts = now
						if g.kernelTS {
							r.noTS++
						}
					}
					r.packet(fd, b.Msg(i), b.From(i), ts, b.Truncated(i))
				}
				if m < b.Len() {
					break
				}
			}
		}
		if poll && n < len(events) {
			time.Sleep(g.o.rxTick)
		}
	}
}

func (r *receiver) packet(fd int, p []byte, from *udpx.Addr, rxNs int64, trunc bool) {
	g := r.g
	if trunc || len(p) < rtpHdr+minPayload || binary.BigEndian.Uint32(p[offMagic:]) != magic {
		r.bad++
		return
	}
	k := binary.LittleEndian.Uint32(p[offFlow:])
	if int(k) >= len(g.rx) {
		r.bad++
		return
	}
	f := &g.rx[k]
	if f.rxFd != fd {
		// Delivered to the wrong phone: a relay bug (or a crossed setup).
		r.misroute++
		return
	}
	f.recv++
	if udpx.Key(from) != f.expSrc {
		f.badSrc++
	}
	seq := binary.LittleEndian.Uint32(p[offSeq:])
	if int64(seq) < f.maxSeq {
		f.reord++
	} else {
		f.maxSeq = int64(seq)
	}
	if p[offFlags]&flagMeas == 0 {
		return
	}
	if w := int(seq / 64); w < len(f.seen) {
		bit := uint64(1) << (seq % 64)
		if f.seen[w]&bit != 0 {
			f.dup++
			return
		}
		f.seen[w] |= bit
	}
	f.meas++
	sent := int64(binary.LittleEndian.Uint64(p[offStamp:]))
	r.lat.Add(rxNs - sent)
}
