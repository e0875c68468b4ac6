// Package kernfwd is the relay's optional in-kernel fast path: an eBPF
// program on the tc ingress hook (TCX) of the host's interfaces that forwards
// the RTP of locked relay legs without waking user space, much as rtpengine's
// kernel module does, but with the stock kernel (Linux 6.6 or later, root or
// CAP_BPF+CAP_NET_ADMIN) and no module to build.
//
// The relay (package relay) stays in charge: it latches and checks every
// packet in user space until a leg is locked, then installs an [Entry] for
// exactly (locked source, relay port). The program forwards only packets
// that match an entry, are RTP version 2 with the entry's SSRC and a
// plausible sequence number; anything else continues to the relay's socket
// untouched, so foreign sources are still dropped and counted there, RTCP is
// still read, and a new SSRC or a sequence jump makes the relay take the
// leg back. The program counts packets and bytes, the last arrival, the
// highest sequence number and the interarrival jitter per entry (RFC 3550
// A.1, A.8) for the relay's statistics.
//
// Forwarded packets leave with a fresh TTL through the interface the routing
// table gives for the destination ([Route]); the kernel resolves the next
// hop's MAC (bpf_redirect_neigh). They do not pass the sipedge host's own
// netfilter OUTPUT/POSTROUTING chains, and only IPv4 is forwarded in the
// kernel (IPv6 legs stay in user space).
//
// bpf/fwd.c is the program; gen.sh builds fwd.o, which is committed and
// embedded, so building sipedge does not need clang.
package kernfwd

import (
	"errors"
	"net/netip"
	"time"
)

// ErrUnsupported is returned on systems other than Linux.
var ErrUnsupported = errors.New("kernfwd: the in-kernel fast path needs Linux")

// ErrNotFound means there is no entry for a key.
var ErrNotFound = errors.New("kernfwd: no such entry")

// Key identifies a locked leg: packets from Peer to the relay's local Port.
type Key struct {
	Peer netip.AddrPort // the locked source (IPv4)
	Port uint16         // the relay's RTP port facing that peer
}

// Entry says where a locked leg's RTP goes.
type Entry struct {
	// Local is the address the relay's socket is bound to; packets for
	// other local addresses are left alone. Unspecified = any.
	Local netip.Addr
	From  netip.AddrPort // the relay's address and port facing the other side
	To    netip.AddrPort // the other side's latched address
	// Ifindex is the egress interface for To; 0 means To is a local address
	// (the packet goes up the stack to its socket).
	Ifindex int

	SSRC      uint32 // the SSRC the leg locked on; other SSRCs go to user space
	ClockRate uint32 // RTP clock rate, for jitter; 0 = 8000
	// The leg's RFC 3550 receive state so far, carried on in the kernel:
	// the extended highest sequence number (cycles | max_seq) and the
	// jitter estimate (J*16, RTP units).
	ExtMax uint32
	Jitter uint32
}

// Stats are what the program counted for an entry since it was installed.
type Stats struct {
	Packets uint64 // RTP packets forwarded in the kernel
	Bytes   uint64 // their UDP payload bytes
	// Last is the CLOCK_MONOTONIC time of the last forwarded packet (see
	// [MonoNow]); 0 = none yet.
	Last   time.Duration
	ExtMax uint32 // as in Entry, updated
	Jitter uint32
	Punted uint64 // packets from the locked source left to user space
}

// Route is where the kernel would send a packet to a destination.
type Route struct {
	Ifindex int        // egress interface
	Src     netip.Addr // preferred source address
	Local   bool       // the destination is an address of this host
}
