//go:build lab

// Package lab is sipedge's NAT lab: Linux network namespaces joined by veth
// pairs and a bridge, two iptables NAT routers of different behaviour, and
// real SIP clients (SIPp) on both sides of them. It is built and torn down by
// each test (lab.New), needs root, and only ever touches namespaces whose name
// starts with Prefix. See README.md in this directory for the topology.
//
// Nothing here leaves the lab: the "internet" is the bridge in se-inet
// (198.51.100.0/24), the LANs are 192.168.1.0/24 behind each router, no
// namespace has a route anywhere else, and the host's own interfaces, routes
// and firewall are never touched (every ip/iptables/sysctl command runs inside
// one of our namespaces).
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Prefix is the prefix of every namespace the lab creates; a leftover
// namespace with this prefix (from a run that was killed) is deleted before a
// new lab is built.
const Prefix = "se-"

// Namespaces.
const (
	NSInet    = "se-inet"     // the internet segment: a bridge, nothing else
	NSEdge    = "se-edge"     // the sipedge host
	NSNATCone = "se-nat-cone" // router with plain MASQUERADE (port-preserving)
	NSNATSym  = "se-nat-sym"  // router with MASQUERADE --random-fully (symmetric)
	NSA       = "se-a"        // phone A, behind se-nat-cone
	NSB       = "se-b"        // phone B, behind se-nat-sym
	NSPub     = "se-pub"      // a phone with a public address, no NAT
)

// Addresses. Both LANs are 192.168.1.0/24 on purpose: two phones with the same
// private address must stay two different peers.
const (
	EdgeIP     = "198.51.100.10" // sipedge
	EdgeIP2    = "198.51.100.11" // second address of se-edge (STUN work)
	ConeWANIP  = "198.51.100.21" // se-nat-cone's public address
	SymWANIP   = "198.51.100.22" // se-nat-sym's public address
	PubIP      = "198.51.100.30" // se-pub
	LANGateway = "192.168.1.1"   // LAN address of both routers
	PhoneIP    = "192.168.1.10"  // phone A and phone B
	inetPrefix = "/24"
)

// Interface names inside the namespaces.
const (
	IfPublic = "eth0" // se-edge, se-pub, se-a and se-b
	IfWAN    = "wan0" // routers, towards se-inet
	IfLAN    = "lan0" // routers, towards their phone
)

// Options tune a lab. The zero value is a usable default.
type Options struct {
	// UDPTimeout is the routers' nf_conntrack_udp_timeout: how long a UDP
	// mapping that has seen traffic one way only survives. If zero, 30s.
	UDPTimeout time.Duration
	// UDPStreamTimeout is nf_conntrack_udp_timeout_stream: the same for a
	// mapping that has seen traffic both ways. If zero, 120s.
	UDPStreamTimeout time.Duration
	// Capture, if set, records every packet on se-edge's public interface
	// into edge.pcapng in the artifact directory.
	Capture bool
	// LockWait bounds how long New waits for another lab run on this host
	// to finish (namespace names are global). If zero, 15m.
	LockWait time.Duration
}

func (o Options) udpTimeout() time.Duration {
	if o.UDPTimeout == 0 {
		return 30 * time.Second
	}
	return o.UDPTimeout
}

func (o Options) udpStreamTimeout() time.Duration {
	if o.UDPStreamTimeout == 0 {
		return 120 * time.Second
	}
	return o.UDPStreamTimeout
}

func (o Options) lockWait() time.Duration {
	if o.LockWait == 0 {
		return 15 * time.Minute
	}
	return o.LockWait
}

// Lab is one built topology. Use it from the test goroutine only (Start and
// friends may be called from others; they are guarded).
type Lab struct {
	T    testing.TB
	Dir  string // artifact directory: test/lab/out/<TestName>/
	Opts Options

	mu    sync.Mutex
	procs []*Proc
	seq   int
	lock  *os.File
}

// cmdTimeout bounds every short command the harness runs (ip, iptables, ...).
const cmdTimeout = 30 * time.Second

// tools the lab cannot work without.
var requiredTools = []string{"ip", "ss", "sysctl", "iptables", "conntrack", "sipp"}

// Skip skips t unless the lab can run here: root, and the required tools.
func Skip(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("lab: needs Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("lab: needs root (network namespaces, iptables); run as root: go test -tags lab ./test/lab/")
	}
	for _, tool := range requiredTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("lab: %s not found in PATH (needs iproute2, procps, iptables, conntrack, sipp)", tool)
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skipf("lab: no network namespace support: %v", err)
	}
}

// New builds the whole topology for t and registers its teardown: every
// process started through the lab is stopped, every namespace deleted, even
// when the test fails. It skips t when the lab cannot run here.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	Skip(t)
	l := &Lab{T: t, Opts: opts, Dir: artifactDir(t)}
	if err := os.RemoveAll(l.Dir); err != nil {
		t.Fatalf("lab: clearing %s: %v", l.Dir, err)
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if err := l.acquireLock(opts.lockWait()); err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(l.close)
	if err := sweep(t.Logf); err != nil {
		t.Fatalf("lab: removing leftovers of an earlier run: %v", err)
	}
	if err := l.build(); err != nil {
		t.Fatalf("lab: building topology: %v", err)
	}
	if opts.Capture {
		l.Capture(NSEdge, IfPublic, "")
	}
	return l
}

// labDir is the directory of this package's sources.
func labDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("lab: runtime.Caller failed")
	}
	return filepath.Dir(file)
}

// ModuleRoot is the root of the sipedge module (where go.mod is).
func ModuleRoot() string { return filepath.Clean(filepath.Join(labDir(), "..", "..")) }

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func artifactDir(t testing.TB) string {
	return filepath.Join(labDir(), "out", unsafeName.ReplaceAllString(t.Name(), "_"))
}

// acquireLock serialises lab runs on this host: namespace names are global,
// so two concurrent runs would tear down each other's labs.
func (l *Lab) acquireLock(wait time.Duration) error {
	path := filepath.Join(os.TempDir(), "sipedge-lab.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			l.lock = f
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return fmt.Errorf("another lab run holds %s for more than %v", path, wait)
		}
		if !logged {
			l.T.Logf("lab: waiting for another lab run to finish (%s)", path)
			logged = true
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// close stops every process (newest first), deletes the namespaces and
// releases the lock. It runs as a t.Cleanup.
func (l *Lab) close() {
	l.mu.Lock()
	procs := append([]*Proc(nil), l.procs...)
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
	if err := sweep(func(string, ...any) {}); err != nil {
		l.T.Errorf("lab: teardown: %v", err)
	}
	if l.lock != nil {
		syscall.Flock(int(l.lock.Fd()), syscall.LOCK_UN)
		l.lock.Close()
	}
	l.T.Logf("lab: artifacts in %s", l.Dir)
}

// sweep deletes every namespace named Prefix*, first killing (by PID, as
// listed by `ip netns pids`) any process still inside one: those can only be
// lab processes that outlived a killed test binary.
func sweep(logf func(string, ...any)) error {
	out, err := run(context.Background(), "ip", "netns", "list")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], Prefix) {
			continue
		}
		ns := f[0]
		pids, _ := run(context.Background(), "ip", "netns", "pids", ns)
		for _, p := range strings.Fields(pids) {
			var pid int
			if _, err := fmt.Sscan(p, &pid); err == nil && pid > 1 && pid != os.Getpid() {
				logf("lab: killing leftover process %d in %s", pid, ns)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		logf("lab: deleting namespace %s", ns)
		if _, err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// run runs a command with cmdTimeout and returns its stdout; a failure
// carries stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Exec runs a short command inside namespace ns (bounded by 30 s) and
// returns its stdout. The error, if any, includes stderr.
func (l *Lab) Exec(ns string, args ...string) (string, error) {
	return run(context.Background(), "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// must runs a setup command inside ns and returns its error with context.
func (l *Lab) must(ns string, args ...string) error {
	_, err := l.Exec(ns, args...)
	return err
}

// ip runs `ip -n ns args...`.
func (l *Lab) ip(ns string, args ...string) error {
	_, err := run(context.Background(), "ip", append([]string{"-n", ns}, args...)...)
	return err
}

type router struct {
	ns, wan string
	random  bool // --random-fully: a new random port per destination
	phoneNS string
}

var routers = []router{
	{ns: NSNATCone, wan: ConeWANIP, phoneNS: NSA},
	{ns: NSNATSym, wan: SymWANIP, random: true, phoneNS: NSB},
}

// build creates the namespaces, links, addresses, routes and NAT rules.
func (l *Lab) build() error {
	all := []string{NSInet, NSEdge, NSNATCone, NSNATSym, NSA, NSB, NSPub}
	for _, ns := range all {
		if _, err := run(context.Background(), "ip", "netns", "add", ns); err != nil {
			return err
		}
		if err := l.ip(ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
		// No IPv6: nothing in the lab uses it, and it only adds noise
		// (router solicitations, DAD) to captures.
		if err := l.must(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			return err
		}
	}

	// The internet: one bridge, a port per public host.
	if err := l.ip(NSInet, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if err := l.ip(NSInet, "link", "set", "br0", "up"); err != nil {
		return err
	}
	type host struct{ ns, port, ifname string }
	public := []struct {
		host
		addrs []string
	}{
		{host{NSEdge, "p-edge", IfPublic}, []string{EdgeIP, EdgeIP2}},
		{host{NSNATCone, "p-cone", IfWAN}, []string{ConeWANIP}},
		{host{NSNATSym, "p-sym", IfWAN}, []string{SymWANIP}},
		{host{NSPub, "p-pub", IfPublic}, []string{PubIP}},
	}
	for _, h := range public {
		if err := l.ip(NSInet, "link", "add", h.port, "type", "veth", "peer", "name", h.ifname, "netns", h.ns); err != nil {
			return err
		}
		if err := l.ip(NSInet, "link", "set", h.port, "master", "br0", "up"); err != nil {
			return err
		}
		for _, a := range h.addrs {
			if err := l.ip(h.ns, "addr", "add", a+inetPrefix, "dev", h.ifname); err != nil {
				return err
			}
		}
		if err := l.ip(h.ns, "link", "set", h.ifname, "up"); err != nil {
			return err
		}
	}

	// The LANs: a veth between each router and its phone.
	for _, r := range routers {
		if err := l.ip(r.ns, "link", "add", IfLAN, "type", "veth", "peer", "name", IfPublic, "netns", r.phoneNS); err != nil {
			return err
		}
		if err := l.ip(r.ns, "addr", "add", LANGateway+"/24", "dev", IfLAN); err != nil {
			return err
		}
		if err := l.ip(r.ns, "link", "set", IfLAN, "up"); err != nil {
			return err
		}
		if err := l.ip(r.phoneNS, "addr", "add", PhoneIP+"/24", "dev", IfPublic); err != nil {
			return err
		}
		if err := l.ip(r.phoneNS, "link", "set", IfPublic, "up"); err != nil {
			return err
		}
		// The phone's default route ends at its router; the router has no
		// default route, so only 198.51.100.0/24 is reachable.
		if err := l.ip(r.phoneNS, "route", "add", "default", "via", LANGateway); err != nil {
			return err
		}
		if err := l.setupNAT(r); err != nil {
			return fmt.Errorf("%s: %w", r.ns, err)
		}
	}
	return nil
}

// setupNAT turns r.ns into a home router: forwarding on, MASQUERADE on the
// WAN side, unsolicited inbound traffic dropped, conntrack timeouts from the
// options, no SIP helper.
func (l *Lab) setupNAT(r router) error {
	masq := []string{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", IfWAN, "-j", "MASQUERADE"}
	if r.random {
		masq = append(masq, "--random-fully")
	}
	steps := [][]string{
		{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
		masq,
		{"iptables", "-A", "FORWARD", "-i", IfLAN, "-o", IfWAN, "-j", "ACCEPT"},
		{"iptables", "-A", "FORWARD", "-i", IfWAN, "-o", IfLAN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"iptables", "-A", "FORWARD", "-j", "DROP"},
		{"sysctl", "-qw",
			fmt.Sprintf("net.netfilter.nf_conntrack_udp_timeout=%d", int(l.Opts.udpTimeout().Seconds())),
			fmt.Sprintf("net.netfilter.nf_conntrack_udp_timeout_stream=%d", int(l.Opts.udpStreamTimeout().Seconds()))},
	}
	for _, s := range steps {
		if err := l.must(r.ns, s...); err != nil {
			return err
		}
	}
	// No SIP ALG: kernels before 6.0 attach conntrack helpers (nf_conntrack_sip
	// rewrites SIP and SDP) automatically when this sysctl is 1. Newer kernels
	// only attach helpers through explicit CT rules, which we never add.
	if out, err := l.Exec(r.ns, "sysctl", "-n", "net.netfilter.nf_conntrack_helper"); err == nil && strings.TrimSpace(out) != "0" {
		if err := l.must(r.ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_helper=0"); err != nil {
			return err
		}
	}
	return l.FlushConntrack(r.ns)
}

// FlushConntrack empties the conntrack table of a router namespace, which
// forgets every NAT mapping.
func (l *Lab) FlushConntrack(ns string) error {
	_, err := l.Exec(ns, "conntrack", "-F")
	return err
}

// Conntrack dumps the conntrack table of a router namespace, one flow per
// line in conntrack's own format.
func (l *Lab) Conntrack(ns string) string {
	out, err := l.Exec(ns, "conntrack", "-L")
	if err != nil {
		return "conntrack -L failed: " + err.Error()
	}
	return out
}

// Mapping returns the public address and port that router ns uses for the
// UDP flow orig (private address:port) → dst, from its conntrack table.
func (l *Lab) Mapping(ns string, orig, dst netip.AddrPort) (netip.AddrPort, error) {
	ap, _, err := l.mapping(ns, orig, dst)
	return ap, err
}

// mapping also returns the seconds the conntrack entry has left.
func (l *Lab) mapping(ns string, orig, dst netip.AddrPort) (netip.AddrPort, int, error) {
	out, err := l.Exec(ns, "conntrack", "-L", "-p", "udp",
		"--orig-src", orig.Addr().String(), "--orig-port-src", fmt.Sprint(orig.Port()),
		"--orig-dst", dst.Addr().String(), "--orig-port-dst", fmt.Sprint(dst.Port()))
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if ap, ok := replyDst(line); ok {
			ttl := 0
			if f := strings.Fields(line); len(f) > 2 {
				fmt.Sscan(f[2], &ttl)
			}
			return ap, ttl, nil
		}
	}
	return netip.AddrPort{}, 0, fmt.Errorf("%s: no conntrack entry for udp %v -> %v", ns, orig, dst)
}

// MappingWatch follows one NAT mapping over time; see WatchMapping.
type MappingWatch struct {
	stop   chan struct{}
	done   chan struct{}
	events []string
}

// WatchMapping polls router ns once a second for the mapping of the UDP flow
// orig → dst and records when it appears, changes or disappears, with the
// time since the watch started and the entry's remaining lifetime. Stop
// returns the timeline; it explains, for example, why a BYE 40 s into a
// call never reached a phone whose binding expired after 30 s.
func (l *Lab) WatchMapping(ns string, orig, dst netip.AddrPort) *MappingWatch {
	w := &MappingWatch{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(w.done)
		last := "unknown"
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			ap, ttl, err := l.mapping(ns, orig, dst)
			state := "no mapping"
			if err == nil {
				state = ap.String()
			}
			if state != last {
				ev := fmt.Sprintf("+%4.1fs %s %v->%v: %s", time.Since(start).Seconds(), ns, orig, dst, state)
				if err == nil {
					ev += fmt.Sprintf(" (expires in %ds unless refreshed)", ttl)
				}
				w.events = append(w.events, ev)
				last = state
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Stop ends the watch and returns its timeline.
func (w *MappingWatch) Stop() []string {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.events
}

// replyDst parses a conntrack -L line and returns the destination of its
// reply tuple: for a NATed flow, the public address and port of the mapping.
func replyDst(line string) (netip.AddrPort, bool) {
	var dsts, dports []string
	for _, f := range strings.Fields(line) {
		switch {
		case strings.HasPrefix(f, "dst="):
			dsts = append(dsts, strings.TrimPrefix(f, "dst="))
		case strings.HasPrefix(f, "dport="):
			dports = append(dports, strings.TrimPrefix(f, "dport="))
		}
	}
	if len(dsts) < 2 || len(dports) < 2 {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(dsts[1] + ":" + dports[1])
	return ap, err == nil
}

// Capture records packets on iface inside ns into <ns>-<iface>.pcapng in the
// artifact directory, with an optional BPF filter, until the lab is torn down
// (or the returned Proc is stopped). It uses dumpcap (Wireshark's capture
// engine, installed with tshark) or tshark itself. It waits until capturing
// has begun; a lab without either tool logs it and returns nil.
func (l *Lab) Capture(ns, iface, filter string) *Proc {
	l.T.Helper()
	file := filepath.Join(l.Dir, ns+"-"+iface+".pcapng")
	var args []string
	switch {
	case lookPath("dumpcap"):
		args = []string{"dumpcap", "-q", "-i", iface, "-w", file}
	case lookPath("tshark"):
		args = []string{"tshark", "-q", "-i", iface, "-w", file}
	default:
		l.T.Logf("lab: no dumpcap or tshark, not capturing on %s/%s", ns, iface)
		return nil
	}
	if filter != "" {
		args = append(args, "-f", filter)
	}
	p := l.Start(ns, "capture-"+ns+"-"+iface, args...)
	// Both print "Capturing on 'eth0'" once the interface is open.
	if err := p.WaitOutput("Capturing on", 10*time.Second); err != nil {
		l.T.Fatalf("lab: capture on %s/%s: %v", ns, iface, err)
	}
	return p
}

// Tshark is Capture by the name the first design used.
func (l *Lab) Tshark(ns, iface, filter string) *Proc { return l.Capture(ns, iface, filter) }

func lookPath(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// Proc is a process started inside a namespace.
type Proc struct {
	Name   string
	NS     string
	Stdout string // file with its stdout
	Stderr string // file with its stderr

	cmd  *exec.Cmd
	done chan struct{}
	err  error // from Wait, valid once done is closed
	once sync.Once
}

// Start runs args inside namespace ns in the background, with the artifact
// directory as working directory and stdout/stderr in <name>.stdout and
// <name>.stderr there. The process is stopped when the lab is torn down; it is
// also killed by the kernel if the test binary dies (PR_SET_PDEATHSIG).
// `ip netns exec` execs the command, so Proc's PID is the command's own.
func (l *Lab) Start(ns, name string, args ...string) *Proc {
	l.T.Helper()
	name = unsafeName.ReplaceAllString(name, "_")
	p := &Proc{
		Name:   name,
		NS:     ns,
		Stdout: filepath.Join(l.Dir, name+".stdout"),
		Stderr: filepath.Join(l.Dir, name+".stderr"),
		done:   make(chan struct{}),
	}
	stdout, err := os.Create(p.Stdout)
	if err != nil {
		l.T.Fatalf("lab: %v", err)
	}
	stderr, err := os.Create(p.Stderr)
	if err != nil {
		l.T.Fatalf("lab: %v", err)
	}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Dir = l.Dir
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		l.T.Fatalf("lab: starting %s in %s: %v", name, ns, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait()
		stdout.Close()
		stderr.Close()
		close(p.done)
	}()
	return p
}

// PID is the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit code once the process has exited (-1 if it was
// killed by a signal or is still running).
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Wait waits up to timeout for the process to exit and returns its exit code.
// On timeout the process keeps running and the error says so.
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s (pid %d) still running after %v", p.Name, p.PID(), timeout)
	}
}

// Stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// 5 s. It signals only this process, by PID, and is safe to call twice.
func (p *Proc) Stop() {
	p.once.Do(func() {
		if p.Exited() {
			return
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// WaitOutput waits until substr appears in the process's stdout or stderr.
func (p *Proc) WaitOutput(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, f := range []string{p.Stdout, p.Stderr} {
			if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(substr)) {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (code %d) before printing %q; stderr: %s", p.Name, p.ExitCode(), substr, p.Tail(20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not print %q within %v", p.Name, substr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tail returns the last n lines of the process's stderr.
func (p *Proc) Tail(n int) string { return tailFile(p.Stderr, n) }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// nextName returns a unique, ordered name for the n-th run of something.
func (l *Lab) nextName(parts ...string) string {
	l.mu.Lock()
	l.seq++
	n := l.seq
	l.mu.Unlock()
	return fmt.Sprintf("%02d-%s", n, strings.Join(parts, "-"))
}
