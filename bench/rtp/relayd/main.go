// Command relayd runs one RTP relay implementation in its own process, so the
// load generator (rtpload) can account the relay's CPU time cleanly from
// /proc/<pid>/stat. rtpload starts it and drives it over stdin/stdout with a
// line protocol:
//
//	→ create ID A_IP:PORT B_IP:PORT
//	← ok PORT_A PORT_B        (phone A sends to PORT_A, phone B to PORT_B)
//	← err MESSAGE
//	→ stats
//	← stats KEY=VALUE ...
//	→ quit                    (or end of input): close and exit
//
// Every relay listens on -ip (127.0.0.1). Packets that phone A sends to
// PORT_A leave from PORT_B towards phone B's address, and the other way round.
//
// Implementations (-impl):
//
//	reference        the trivial Go relay: per leg a net.UDPConn and a
//	                 goroutine doing ReadFromUDP/WriteToUDP to the fixed
//	                 other phone. The reference limit for plain Go.
//	reference-epoll  a batched relay without Go's netpoller: -workers threads
//	                 each with its own epoll set, recvmmsg/sendmmsg on
//	                 connected sockets. What user space can do at best.
//	sipedge          github.com/sipedge/sipedge/relay, set up as the SIP side
//	                 does for a call (Leg, SetPeer, Established).
//	sipedge-kernel   the same with the in-kernel fast path (relay/kernfwd) on
//	                 lo: locked legs are forwarded by an eBPF program, so most
//	                 of the work happens in the sender's softirq, not in relayd.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
)

// relayImpl is one relay under test.
type relayImpl interface {
	// Create sets up a session between phones a and b and returns the relay
	// ports each phone must send to.
	Create(id string, a, b netip.AddrPort) (portA, portB uint16, err error)
	// Stats is a one-line KEY=VALUE summary of the relay's own counters.
	Stats() string
	Close() error
}

var impls = map[string]func(cfg config) (relayImpl, error){
	"reference":       newReference,
	"reference-epoll": newEpoll,
	"sipedge":         newSipedge,
	"sipedge-kernel":  newSipedgeKernel,
}

type config struct {
	ip      netip.Addr
	portMin int
	portMax int
	workers int
}

func main() {
	impl := flag.String("impl", "reference", "relay implementation: reference, reference-epoll, sipedge or sipedge-kernel")
	ip := flag.String("ip", "127.0.0.1", "IPv4 address the relay ports listen on")
	ports := flag.String("ports", "30000-39999", "port range for relays that take one (sipedge)")
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "threads for reference-epoll")
	flag.Parse()

	cfg := config{workers: *workers}
	var err error
	if cfg.ip, err = netip.ParseAddr(*ip); err != nil || !cfg.ip.Is4() {
		fatal("bad -ip %q", *ip)
	}
	if _, err := fmt.Sscanf(*ports, "%d-%d", &cfg.portMin, &cfg.portMax); err != nil || cfg.portMin <= 0 || cfg.portMax < cfg.portMin || cfg.portMax > 65535 {
		fatal("bad -ports %q", *ports)
	}
	mk, ok := impls[*impl]
	if !ok {
		fatal("unknown -impl %q", *impl)
	}
	r, err := mk(cfg)
	if err != nil {
		fatal("%s: %v", *impl, err)
	}
	in := bufio.NewReaderSize(os.Stdin, 64<<10)
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	fmt.Fprintf(out, "ready impl=%s pid=%d gomaxprocs=%d\n", *impl, os.Getpid(), runtime.GOMAXPROCS(0))
	out.Flush()
	for {
		line, err := in.ReadString('\n')
		if line = strings.TrimSpace(line); line != "" {
			if quit := handle(r, line, out); quit {
				break
			}
		}
		if err != nil {
			break
		}
		// Answer a pipelined burst of commands in one write.
		if in.Buffered() == 0 {
			out.Flush()
		}
	}
	out.Flush()
	if err := r.Close(); err != nil {
		fatal("close: %v", err)
	}
}

func handle(r relayImpl, line string, out *bufio.Writer) (quit bool) {
	f := strings.Fields(line)
	switch f[0] {
	case "create":
		if len(f) != 4 {
			fmt.Fprintf(out, "err usage: create ID A_IP:PORT B_IP:PORT\n")
			return false
		}
		a, err1 := netip.ParseAddrPort(f[2])
		b, err2 := netip.ParseAddrPort(f[3])
		if err1 != nil || err2 != nil {
			fmt.Fprintf(out, "err bad address\n")
			return false
		}
		pa, pb, err := r.Create(f[1], a, b)
		if err != nil {
			fmt.Fprintf(out, "err %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			return false
		}
		fmt.Fprintf(out, "ok %d %d\n", pa, pb)
	case "stats":
		fmt.Fprintf(out, "stats %s\n", r.Stats())
	case "quit":
		return true
	default:
		fmt.Fprintf(out, "err unknown command %q\n", f[0])
	}
	return false
}

func fatal(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "relayd: "+format+"\n", a...)
	os.Exit(1)
}
