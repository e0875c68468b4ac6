//go:build linux

package kernfwd

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

//go:embed fwd.o
var object []byte

// rawKey and rawVal mirror struct fwd_key and struct fwd_val in fwd.c.
// Addresses, ports and the SSRC are in network byte order, as in packets.
type rawKey struct {
	Saddr [4]byte
	Sport [2]byte
	Dport [2]byte
}

type rawVal struct {
	Daddr    [4]byte
	NewSaddr [4]byte
	NewDaddr [4]byte
	NewSport [2]byte
	NewDport [2]byte
	Ifindex  uint32
	SSRC     [4]byte
	Rate     uint32
	Flags    uint32

	Packets     uint64
	Bytes       uint64
	LastNS      uint64
	ExtMax      uint32
	Jitter      uint32
	Transit     int32
	HaveTransit uint32
	Punted      uint64
}

// Forwarder is the loaded program, its map and its attachments.
type Forwarder struct {
	coll   *ebpf.Collection
	fwd    *ebpf.Map
	links  []link.Link
	ifaces []string

	closeOnce sync.Once
}

// Open loads the program and attaches it to the tc ingress of the named
// interfaces, or, when names is empty, of every interface that is up and is
// loopback or Ethernet-like (interfaces that appear later are not covered).
func Open(names []string) (*Forwarder, error) {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(object))
	if err != nil {
		return nil, fmt.Errorf("kernfwd: parse program: %w", err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("kernfwd: the kernel refused the program: %+v", ve)
		}
		return nil, fmt.Errorf("kernfwd: load program (needs root or CAP_BPF): %w", err)
	}
	f := &Forwarder{coll: coll, fwd: coll.Maps["sipedge_fwd"]}
	prog := coll.Programs["sipedge_rtp"]
	if f.fwd == nil || prog == nil {
		coll.Close()
		return nil, errors.New("kernfwd: program object lacks its map or program")
	}
	ifs, err := pickInterfaces(names)
	if err != nil {
		coll.Close()
		return nil, err
	}
	for _, ifc := range ifs {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("kernfwd: attach to %s (tcx needs Linux 6.6+): %w", ifc.Name, err)
		}
		f.links = append(f.links, l)
		f.ifaces = append(f.ifaces, ifc.Name)
	}
	return f, nil
}

func pickInterfaces(names []string) ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("kernfwd: list interfaces: %w", err)
	}
	var out []net.Interface
	if len(names) == 0 {
		for _, ifc := range all {
			if ifc.Flags&net.FlagUp != 0 && (ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) == 6) {
				out = append(out, ifc)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("kernfwd: no interface is up")
		}
		return out, nil
	}
	for _, n := range names {
		i := slices.IndexFunc(all, func(ifc net.Interface) bool { return ifc.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("kernfwd: no interface %q", n)
		}
		ifc := all[i]
		if ifc.Flags&net.FlagLoopback == 0 && len(ifc.HardwareAddr) != 6 {
			return nil, fmt.Errorf("kernfwd: interface %q has no Ethernet header; only loopback and Ethernet-like interfaces are supported", n)
		}
		out = append(out, ifc)
	}
	return out, nil
}

// Interfaces returns the names of the interfaces the program is attached to.
func (f *Forwarder) Interfaces() []string { return slices.Clone(f.ifaces) }

// Close detaches the program and frees the map. Packets of installed
// entries then go to the relay's sockets again.
func (f *Forwarder) Close() error {
	f.closeOnce.Do(func() {
		for _, l := range f.links {
			l.Close()
		}
		f.coll.Close()
	})
	return nil
}

func addr4(a netip.Addr) ([4]byte, error) {
	a = a.Unmap()
	if !a.Is4() {
		return [4]byte{}, fmt.Errorf("kernfwd: %s is not IPv4", a)
	}
	return a.As4(), nil
}

func port16(p uint16) [2]byte { return [2]byte{byte(p >> 8), byte(p)} }

func (k Key) raw() (rawKey, error) {
	a, err := addr4(k.Peer.Addr())
	if err != nil {
		return rawKey{}, err
	}
	if k.Peer.Port() == 0 || k.Port == 0 {
		return rawKey{}, errors.New("kernfwd: zero port in key")
	}
	return rawKey{Saddr: a, Sport: port16(k.Peer.Port()), Dport: port16(k.Port)}, nil
}

// Install adds or replaces the entry for k. Its counters start at zero.
func (f *Forwarder) Install(k Key, e Entry) error {
	rk, err := k.raw()
	if err != nil {
		return err
	}
	var v rawVal
	if e.Local.IsValid() && !e.Local.IsUnspecified() {
		if v.Daddr, err = addr4(e.Local); err != nil {
			return err
		}
	}
	if v.NewSaddr, err = addr4(e.From.Addr()); err != nil {
		return err
	}
	if v.NewDaddr, err = addr4(e.To.Addr()); err != nil {
		return err
	}
	if e.From.Port() == 0 || e.To.Port() == 0 || e.From.Addr().IsUnspecified() || e.To.Addr().IsUnspecified() {
		return errors.New("kernfwd: entry needs a source and a destination")
	}
	if e.Ifindex < 0 {
		return errors.New("kernfwd: bad interface index")
	}
	v.NewSport, v.NewDport = port16(e.From.Port()), port16(e.To.Port())
	v.Ifindex = uint32(e.Ifindex)
	v.SSRC = [4]byte{byte(e.SSRC >> 24), byte(e.SSRC >> 16), byte(e.SSRC >> 8), byte(e.SSRC)}
	v.Rate = e.ClockRate
	v.ExtMax = e.ExtMax
	v.Jitter = e.Jitter
	return f.fwd.Put(rk, v)
}

func (v *rawVal) stats() Stats {
	return Stats{
		Packets: v.Packets,
		Bytes:   v.Bytes,
		Last:    time.Duration(v.LastNS),
		ExtMax:  v.ExtMax,
		Jitter:  v.Jitter,
		Punted:  v.Punted,
	}
}

// Read returns an entry's counters.
func (f *Forwarder) Read(k Key) (Stats, error) { return f.lookup(k, f.fwd.Lookup) }

// Remove deletes an entry and returns its final counters; from then on the
// leg's packets go to the relay's socket.
func (f *Forwarder) Remove(k Key) (Stats, error) { return f.lookup(k, f.fwd.LookupAndDelete) }

func (f *Forwarder) lookup(k Key, op func(key, value any) error) (Stats, error) {
	rk, err := k.raw()
	if err != nil {
		return Stats{}, err
	}
	var v rawVal
	if err := op(rk, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Stats{}, ErrNotFound
		}
		return Stats{}, err
	}
	return v.stats(), nil
}

// EnableRunStats makes the kernel account the program's run time (all BPF
// programs on the host, while the returned closer is open; it costs a clock
// read per run, so it is for measurements, not for production).
func EnableRunStats() (io.Closer, error) { return ebpf.EnableStats(unix.BPF_STATS_RUN_TIME) }

// RunStats returns how often the program ran (once per IPv4 packet entering
// an attached interface) and its total run time, while run statistics are
// enabled (EnableRunStats).
func (f *Forwarder) RunStats() (runs uint64, total time.Duration, err error) {
	st, err := f.coll.Programs["sipedge_rtp"].Stats()
	if err != nil {
		return 0, 0, err
	}
	return st.RunCount, st.Runtime, nil
}

// MonoNow is the current CLOCK_MONOTONIC time, the clock of Stats.Last.
func MonoNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
