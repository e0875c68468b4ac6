//go:build lab

package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sipedge behind a NAT router: AddGateway adds a home router (se-gw) to the
// internet bridge with a LAN of its own (10.77.0.0/24) and a server on it
// (se-srv, where sipedge runs). The router is built with legacy iptables
// only, because miniupnpd (Debian's miniupnpd-iptables 2.3.1, built on
// libiptc) keeps its port mappings in the legacy tables: chains MINIUPNPD
// in nat, mangle and filter, and MINIUPNPD-POSTROUTING in nat, hooked in
// as /etc/miniupnpd/iptables_init.sh does.
//
//	se-inet br0 ── wan0 198.51.100.50 [se-gw: MASQUERADE, miniupnpd] lan0 10.77.0.1 ── eth0 10.77.0.10 [se-srv: sipedge]

// Namespaces and addresses of the router with sipedge behind it.
const (
	NSGW      = "se-gw"  // the router in front of sipedge
	NSSrv     = "se-srv" // sipedge's host on the router's LAN
	GWWANIP   = "198.51.100.50"
	GWLANIP   = "10.77.0.1"
	SrvIP     = "10.77.0.10"
	SrvNet    = "10.77.0.0/24"
	SrvSIP    = SrvIP + ":5060"   // sipedge's SIP socket (UDP and TCP) in se-srv
	GWSIP     = GWWANIP + ":5060" // where the phones send SIP
	gwBridge  = "p-gw"            // the router's port on br0
	fwdChain  = "LAB-FWD"         // manual port forwards (nat and filter)
	upnpChain = "MINIUPNPD"
)

// legacyIPTables is the iptables command miniupnpd's tables are made with.
const legacyIPTables = "iptables-legacy"

// SkipNoMiniupnpd skips t unless miniupnpd (Debian: miniupnpd-iptables),
// iptables-legacy and stund (stun-server, for miniupnpd's STUN check) are
// installed.
func SkipNoMiniupnpd(t interface {
	Helper()
	Skipf(string, ...any)
}) {
	t.Helper()
	for _, tool := range []string{"miniupnpd", legacyIPTables, "stund"} {
		if !lookPath(tool) {
			t.Skipf("lab: %s not found (apt-get install miniupnpd-iptables iptables stun-server)", tool)
		}
	}
}

// ErrNoLegacyIPTables: the kernel has no legacy iptables (x_tables nat),
// which miniupnpd-iptables needs; AddGateway's error wraps it.
var ErrNoLegacyIPTables = errors.New("lab: iptables-legacy does not work here (kernel without legacy x_tables nat?)")

// ipt runs iptables-legacy in se-gw.
func (l *Lab) ipt(args ...string) error {
	return l.must(NSGW, append([]string{legacyIPTables, "-w"}, args...)...)
}

// AddGateway adds se-gw and se-srv (see the top of this file). The router
// forwards LAN → WAN, lets WAN → LAN through only for established flows,
// manual forwards (AddPortForward) and miniupnpd's mappings, masquerades
// on wan0, has the lab's UDP conntrack timeouts and no SIP helper. se-srv's
// default route is the router, as in any home LAN; the router itself has
// no default route (the lab's internet is 198.51.100.0/24 only).
func (l *Lab) AddGateway() error {
	for _, ns := range []string{NSGW, NSSrv} {
		if _, err := run(context.Background(), "ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	steps := []struct {
		ns   string
		args []string
	}{
		{NSGW, []string{"ip", "link", "set", "lo", "up"}},
		{NSSrv, []string{"ip", "link", "set", "lo", "up"}},
		{NSGW, []string{"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}},
		{NSSrv, []string{"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}},
		{NSInet, []string{"ip", "link", "add", gwBridge, "type", "veth", "peer", "name", IfWAN, "netns", NSGW}},
		{NSInet, []string{"ip", "link", "set", gwBridge, "master", "br0", "up"}},
		{NSGW, []string{"ip", "addr", "add", GWWANIP + inetPrefix, "dev", IfWAN}},
		{NSGW, []string{"ip", "link", "set", IfWAN, "up"}},
		{NSGW, []string{"ip", "link", "add", IfLAN, "type", "veth", "peer", "name", IfPublic, "netns", NSSrv}},
		{NSGW, []string{"ip", "addr", "add", GWLANIP + "/24", "dev", IfLAN}},
		{NSGW, []string{"ip", "link", "set", IfLAN, "up"}},
		// miniupnpd answers SSDP on lan0: multicast needs a route there.
		{NSGW, []string{"ip", "route", "add", "239.0.0.0/8", "dev", IfLAN}},
		{NSSrv, []string{"ip", "addr", "add", SrvIP + "/24", "dev", IfPublic}},
		{NSSrv, []string{"ip", "link", "set", IfPublic, "up"}},
		{NSSrv, []string{"ip", "route", "add", "default", "via", GWLANIP}},
		{NSGW, []string{"sysctl", "-qw", "net.ipv4.ip_forward=1"}},
		{NSGW, []string{"sysctl", "-qw",
			fmt.Sprintf("net.netfilter.nf_conntrack_udp_timeout=%d", int(l.Opts.udpTimeout().Seconds())),
			fmt.Sprintf("net.netfilter.nf_conntrack_udp_timeout_stream=%d", int(l.Opts.udpStreamTimeout().Seconds()))}},
	}
	for _, s := range steps {
		if err := l.must(s.ns, s.args...); err != nil {
			return fmt.Errorf("lab: adding %s: %w", NSGW, err)
		}
	}
	if _, err := l.Exec(NSGW, legacyIPTables, "-w", "-t", "nat", "-S"); err != nil {
		return fmt.Errorf("%w: %v", ErrNoLegacyIPTables, err)
	}
	if out, err := l.Exec(NSGW, "sysctl", "-n", "net.netfilter.nf_conntrack_helper"); err == nil && strings.TrimSpace(out) != "0" {
		if err := l.must(NSGW, "sysctl", "-qw", "net.netfilter.nf_conntrack_helper=0"); err != nil {
			return err
		}
	}
	rules := [][]string{
		// miniupnpd's chains, hooked as iptables_init.sh hooks them.
		{"-t", "nat", "-N", upnpChain},
		{"-t", "nat", "-A", "PREROUTING", "-i", IfWAN, "-j", upnpChain},
		{"-t", "nat", "-N", upnpChain + "-POSTROUTING"},
		{"-t", "nat", "-A", "POSTROUTING", "-o", IfWAN, "-j", upnpChain + "-POSTROUTING"},
		{"-t", "mangle", "-N", upnpChain},
		{"-t", "mangle", "-A", "PREROUTING", "-i", IfWAN, "-j", upnpChain},
		{"-t", "filter", "-N", upnpChain},
		{"-t", "filter", "-A", "FORWARD", "-i", IfWAN, "!", "-o", IfWAN, "-j", upnpChain},
		// Manual port forwards (AddPortForward).
		{"-t", "nat", "-N", fwdChain},
		{"-t", "nat", "-A", "PREROUTING", "-i", IfWAN, "-j", fwdChain},
		{"-t", "filter", "-N", fwdChain},
		{"-t", "filter", "-A", "FORWARD", "-i", IfWAN, "-o", IfLAN, "-j", fwdChain},
		// The home router itself.
		{"-t", "nat", "-A", "POSTROUTING", "-o", IfWAN, "-j", "MASQUERADE"},
		{"-t", "filter", "-A", "FORWARD", "-i", IfLAN, "-o", IfWAN, "-j", "ACCEPT"},
		{"-t", "filter", "-A", "FORWARD", "-i", IfWAN, "-o", IfLAN, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"-t", "filter", "-A", "FORWARD", "-j", "DROP"},
	}
	for _, r := range rules {
		if err := l.ipt(r...); err != nil {
			return fmt.Errorf("lab: %s firewall: %w", NSGW, err)
		}
	}
	if err := l.FlushConntrack(NSGW); err != nil {
		return err
	}
	if _, err := l.Ping(NSSrv, PubIP); err != nil {
		return fmt.Errorf("lab: after adding %s: %w", NSGW, err)
	}
	if _, err := l.Ping(NSPub, GWWANIP); err != nil {
		return fmt.Errorf("lab: after adding %s: %w", NSGW, err)
	}
	return nil
}

// AddPortForward forwards proto ("udp" or "tcp") ports from..to on the
// router's WAN address to the same ports of SrvIP: what a user sets up by
// hand in a router's web page.
func (l *Lab) AddPortForward(proto string, from, to int) error {
	ports := strconv.Itoa(from)
	if to != from {
		ports += ":" + strconv.Itoa(to)
	}
	dst := SrvIP
	if err := l.ipt("-t", "nat", "-A", fwdChain, "-d", GWWANIP, "-p", proto, "--dport", ports, "-j", "DNAT", "--to-destination", dst); err != nil {
		return err
	}
	return l.ipt("-t", "filter", "-A", fwdChain, "-d", SrvIP, "-p", proto, "--dport", ports, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")
}

// ClearPortForwards removes every manual forward and empties the router's
// conntrack table (a forwarded flow would otherwise outlive its rule).
func (l *Lab) ClearPortForwards() error {
	for _, table := range []string{"nat", "filter"} {
		if err := l.ipt("-t", table, "-F", fwdChain); err != nil {
			return err
		}
	}
	return l.FlushConntrack(NSGW)
}

// GWRule is one DNAT rule in the router's nat table: a port mapping.
type GWRule struct {
	Chain   string
	Proto   string
	ExtPort int
	ToIP    string // "" if unknown
	ToPort  int
	Line    string // as iptables -S prints it
}

func (r GWRule) String() string {
	return fmt.Sprintf("%s %d -> %s:%d", r.Proto, r.ExtPort, r.ToIP, r.ToPort)
}

var (
	dnatRule = regexp.MustCompile(`-p (udp|tcp)\b.*--dport (\d+)\b.*-j DNAT(?: --to-destination ([0-9.]+):?(\d*))?`)
	// miniupnpd's rule in MINIUPNPD-POSTROUTING for each mapping (it keeps
	// the mapped port for the internal host's own outgoing packets).
	upnpPostRule = regexp.MustCompile(`-s ([0-9.]+)/32 -p (udp|tcp)\b.*--sport (\d+)\b.*-j MASQUERADE --to-ports (\d+)`)
)

// GWRules lists the DNAT rules of chain (MINIUPNPD: miniupnpd's mappings;
// LAB-FWD: the manual forwards) in the router's nat table, and the raw
// `iptables-legacy -t nat -S chain` output.
//
// Debian's iptables-legacy 1.8.9 cannot print the target of miniupnpd's
// DNAT rules (libiptc writes an older revision of the target:
// "-j DNAT [unsupported revision]"), so for MINIUPNPD the internal address
// and port come from miniupnpd's matching MINIUPNPD-POSTROUTING rule
// ("-s IP/32 -p udp --sport INT -j MASQUERADE --to-ports EXT").
func (l *Lab) GWRules(chain string) ([]GWRule, string, error) {
	out, err := l.Exec(NSGW, legacyIPTables, "-w", "-t", "nat", "-S", chain)
	if err != nil {
		return nil, out, err
	}
	post := map[string][2]string{} // "udp 30000" -> internal IP, port
	if chain == upnpChain {
		po, _ := l.Exec(NSGW, legacyIPTables, "-w", "-t", "nat", "-S", upnpChain+"-POSTROUTING")
		for _, line := range strings.Split(po, "\n") {
			if m := upnpPostRule.FindStringSubmatch(line); m != nil {
				post[m[2]+" "+m[4]] = [2]string{m[1], m[3]}
			}
		}
	}
	var rules []GWRule
	for _, line := range strings.Split(out, "\n") {
		m := dnatRule.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := GWRule{Chain: chain, Proto: m[1], ToIP: m[3], Line: line}
		r.ExtPort, _ = strconv.Atoi(m[2])
		r.ToPort = r.ExtPort
		if m[4] != "" {
			r.ToPort, _ = strconv.Atoi(m[4])
		}
		if r.ToIP == "" {
			if p, ok := post[r.Proto+" "+m[2]]; ok {
				r.ToIP = p[0]
				r.ToPort, _ = strconv.Atoi(p[1])
			}
		}
		rules = append(rules, r)
	}
	sort.Slice(rules, func(i, j int) bool {
		if rules[i].Proto != rules[j].Proto {
			return rules[i].Proto < rules[j].Proto
		}
		return rules[i].ExtPort < rules[j].ExtPort
	})
	return rules, out, nil
}

// UPnPRules is GWRules(MINIUPNPD).
func (l *Lab) UPnPRules() ([]GWRule, string, error) { return l.GWRules(upnpChain) }

// Miniupnpd is miniupnpd running in se-gw.
type Miniupnpd struct {
	Proc   *Proc
	Config string
	lab    *Lab
}

// MiniupnpdConfig is miniupnpd's config for the lab router: UPnP IGD (HTTP
// on lan0:5000), NAT-PMP and PCP (UDP 5351), secure mode, mappings only
// for the LAN and ports ≥ 1024, and the STUN check against stunHost:3478.
// miniupnpd counts 198.51.100.0/24 as reserved ("Port forwarding is
// impossible") unless a STUN server that answers all four RFC 3489
// CHANGE-REQUEST probes (a two-address stund) shows it is not filtered
// (portmap/testdata/miniupnpd-2.3.1/README.md).
func MiniupnpdConfig(stunHost string) string {
	return strings.Join([]string{
		"ext_ifname=" + IfWAN,
		"listening_ip=" + IfLAN,
		"http_port=5000",
		"enable_natpmp=yes",
		"enable_upnp=yes",
		"secure_mode=yes",
		"system_uptime=no",
		"min_lifetime=120",
		"max_lifetime=86400",
		"uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07c",
		"friendly_name=sipedge lab router",
		"ext_perform_stun=yes",
		"ext_stun_host=" + stunHost,
		"ext_stun_port=3478",
		"allow 1024-65535 " + SrvNet + " 1024-65535",
		"deny 0-65535 0.0.0.0/0 0-65535",
	}, "\n") + "\n"
}

// StartMiniupnpd writes MiniupnpdConfig(stunHost) to NN-miniupnpd.conf and
// runs `miniupnpd -d` (foreground, log on stderr: NN-miniupnpd.stderr) in
// se-gw; it waits until miniupnpd listens
// for NAT-PMP/PCP and says port forwarding is enabled (its STUN check
// passed). The STUN server must already run.
func (l *Lab) StartMiniupnpd(stunHost string) (*Miniupnpd, error) {
	l.T.Helper()
	name := l.nextName("miniupnpd")
	m := &Miniupnpd{Config: filepath.Join(l.Dir, name+".conf"), lab: l}
	if err := os.WriteFile(m.Config, []byte(MiniupnpdConfig(stunHost)), 0o644); err != nil {
		return nil, err
	}
	m.Proc = l.Start(NSGW, name, "miniupnpd", "-f", m.Config, "-d", "-P", filepath.Join(l.Dir, name+".pid"))
	if err := m.Proc.WaitOutput("Listening for NAT-PMP/PCP", 10*time.Second); err != nil {
		return m, fmt.Errorf("miniupnpd: %v\n%s", err, m.Log(30))
	}
	if err := m.Proc.WaitOutput("Port forwarding is now enabled", 10*time.Second); err != nil {
		return m, fmt.Errorf("miniupnpd's STUN check did not enable port forwarding: %v\n%s", err, m.Log(30))
	}
	return m, nil
}

// Log is the tail of miniupnpd's log (stdout and stderr).
func (m *Miniupnpd) Log(n int) string {
	return strings.TrimSpace(tailFile(m.Proc.Stdout, n) + "\n" + tailFile(m.Proc.Stderr, n))
}

// GWDiagnostics is everything about the router for a failure message: its
// legacy nat and filter tables, conntrack, and miniupnpd's log tail.
func (l *Lab) GWDiagnostics(m *Miniupnpd) string {
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		out, err := l.Exec(NSGW, legacyIPTables, "-w", "-t", table, "-S")
		if err != nil {
			out += err.Error()
		}
		fmt.Fprintf(&b, "--- %s: iptables-legacy -t %s -S\n%s", NSGW, table, out)
	}
	fmt.Fprintf(&b, "--- %s: conntrack -L\n%s", NSGW, l.Conntrack(NSGW))
	if m != nil {
		fmt.Fprintf(&b, "--- miniupnpd log tail (%s)\n%s\n", m.Proc.Stderr, m.Log(40))
	}
	return b.String()
}
