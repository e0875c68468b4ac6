//go:build lab

package lab

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer answers every UDP datagram on conn with "src=<ip:port>", the
// source address it saw: what a server learns about a peer behind NAT.
func echoServer(t *testing.T, conn *net.UDPConn) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return // closed
			}
			if n > 0 {
				conn.WriteToUDP([]byte("src="+from.String()), from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); wg.Wait() })
}

// probe sends one datagram from conn to dst (3 tries of 1 s) and returns the
// source address the echo server saw.
func probe(conn *net.UDPConn, dst string) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	buf := make([]byte, 2048)
	for try := 0; try < 3; try++ {
		if _, err := conn.WriteToUDP([]byte("probe"), ua); err != nil {
			return netip.AddrPort{}, err
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			continue
		}
		if from.String() != dst {
			return netip.AddrPort{}, fmt.Errorf("reply from %v, want %s", from, dst)
		}
		return netip.ParseAddrPort(strings.TrimPrefix(string(buf[:n]), "src="))
	}
	return netip.AddrPort{}, fmt.Errorf("no echo from %s", dst)
}

// receives reports whether conn gets a datagram within d.
func receives(conn *net.UDPConn, d time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	_, _, err := conn.ReadFromUDP(buf)
	return err == nil
}

// TestLabTopology proves the lab itself: reachability, isolation, and that
// the two routers really behave as a port-preserving ("cone-like") NAT and a
// symmetric NAT, as seen by a server on the internet.
func TestLabTopology(t *testing.T) {
	l := New(t, Options{UDPTimeout: 20 * time.Second, UDPStreamTimeout: 30 * time.Second})

	t.Run("ping", func(t *testing.T) {
		for _, ns := range []string{NSA, NSB, NSPub} {
			rtt, err := l.Ping(ns, EdgeIP)
			if err != nil {
				t.Errorf("%s cannot reach sipedge's address: %v", ns, err)
				continue
			}
			t.Logf("%s -> %s: %v", ns, EdgeIP, rtt)
		}
	})

	t.Run("isolation", func(t *testing.T) {
		// Private addresses are not routable from the internet side, and
		// the routers know no way out of 198.51.100.0/24.
		for _, ns := range []string{NSEdge, NSPub} {
			if out, err := l.Exec(ns, "ip", "route", "get", PhoneIP); err == nil {
				t.Errorf("%s has a route to the private address %s: %s", ns, PhoneIP, out)
			}
		}
		for _, ns := range []string{NSEdge, NSPub, NSNATCone, NSNATSym, NSInet} {
			if out, _ := l.Exec(ns, "ip", "route", "show", "default"); strings.TrimSpace(out) != "" {
				t.Errorf("%s has a default route: %s", ns, out)
			}
		}
	})

	t.Run("conntrack-timeouts", func(t *testing.T) {
		for _, ns := range []string{NSNATCone, NSNATSym} {
			out, err := l.Exec(ns, "sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Fields(out); len(got) != 2 || got[0] != "20" || got[1] != "30" {
				t.Errorf("%s: udp timeouts %q, want [20 30]", ns, got)
			}
		}
	})

	// The "server": three sockets in se-edge, two ports on one address and
	// one on the second address.
	dsts := []string{EdgeIP + ":5060", EdgeIP + ":5070", EdgeIP2 + ":5060"}
	for _, d := range dsts {
		c, err := l.ListenUDP(NSEdge, d)
		if err != nil {
			t.Fatal(err)
		}
		echoServer(t, c)
	}

	// observe sends from one private socket to every destination and returns
	// what the server saw for each.
	observe := func(t *testing.T, ns string) (*net.UDPConn, []netip.AddrPort) {
		t.Helper()
		c, err := l.ListenUDP(ns, PhoneIP+":40000")
		if err != nil {
			t.Fatal(err)
		}
		var seen []netip.AddrPort
		for _, d := range dsts {
			ap, err := probe(c, d)
			if err != nil {
				t.Fatalf("%s -> %s: %v", ns, d, err)
			}
			t.Logf("%s %s:40000 -> %s seen as %v", ns, PhoneIP, d, ap)
			seen = append(seen, ap)
		}
		return c, seen
	}
	priv := netip.MustParseAddrPort(PhoneIP + ":40000")

	t.Run("cone", func(t *testing.T) {
		c, seen := observe(t, NSA)
		want := netip.MustParseAddrPort(ConeWANIP + ":40000")
		for i, ap := range seen {
			if ap != want {
				t.Errorf("via se-nat-cone to %s: seen as %v, want %v (one mapping for every destination, source port kept)", dsts[i], ap, want)
			}
		}
		if m, err := l.Mapping(NSNATCone, priv, netip.MustParseAddrPort(dsts[0])); err != nil || m != seen[0] {
			t.Errorf("conntrack mapping %v (%v) disagrees with what the server saw (%v)", m, err, seen[0])
		}
		// Filtering is still address- and port-dependent (conntrack): a
		// server socket the phone never sent to cannot reach it.
		stranger, err := l.ListenUDP(NSEdge, EdgeIP+":5080")
		if err != nil {
			t.Fatal(err)
		}
		stranger.WriteToUDP([]byte("unsolicited"), net.UDPAddrFromAddrPort(want))
		if receives(c, time.Second) {
			t.Errorf("a datagram from %s:5080 (never contacted) reached phone A through se-nat-cone", EdgeIP)
		}
	})

	t.Run("symmetric", func(t *testing.T) {
		c, seen := observe(t, NSB)
		for i, ap := range seen {
			if ap.Addr().String() != SymWANIP {
				t.Errorf("via se-nat-sym to %s: seen from %v, want address %s", dsts[i], ap.Addr(), SymWANIP)
			}
		}
		if seen[0].Port() == seen[1].Port() {
			t.Errorf("via se-nat-sym: %s and %s saw the same port %d; a symmetric NAT maps each destination to its own port", dsts[0], dsts[1], seen[0].Port())
		}
		if seen[0].Port() == seen[2].Port() {
			t.Errorf("via se-nat-sym: %s and %s saw the same port %d", dsts[0], dsts[2], seen[0].Port())
		}
		for i, d := range dsts {
			m, err := l.Mapping(NSNATSym, priv, netip.MustParseAddrPort(d))
			if err != nil || m != seen[i] {
				t.Errorf("conntrack mapping to %s is %v (%v), server saw %v", d, m, err, seen[i])
			}
		}
		// The mapping towards :5060 answers only :5060. The server must
		// send from the socket the phone used.
		other, err := l.ListenUDP(NSEdge, EdgeIP+":5090")
		if err != nil {
			t.Fatal(err)
		}
		other.WriteToUDP([]byte("wrong socket"), net.UDPAddrFromAddrPort(seen[0]))
		if receives(c, time.Second) {
			t.Errorf("a datagram from %s:5090 reached phone B through the mapping made for %s", EdgeIP, dsts[0])
		}
	})

	t.Run("public", func(t *testing.T) {
		c, err := l.ListenUDP(NSPub, PubIP+":40000")
		if err != nil {
			t.Fatal(err)
		}
		ap, err := probe(c, dsts[0])
		if err != nil {
			t.Fatal(err)
		}
		if ap.String() != PubIP+":40000" {
			t.Errorf("se-pub seen as %v, want %s:40000 (no NAT)", ap, PubIP)
		}
	})

	t.Logf("se-nat-cone conntrack:\n%s", l.Conntrack(NSNATCone))
	t.Logf("se-nat-sym conntrack:\n%s", l.Conntrack(NSNATSym))
}
