package main

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKill9KeepsRegistrations runs the real binary, registers a phone with
// digest auth, kills the server with SIGKILL (no shutdown flush), starts it
// again on the same data dir and checks the registration and its observed
// flow are back.
func TestKill9KeepsRegistrations(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sipedge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sipPort, adminPort := freeUDPPort(t), freeTCPPort(t)
	cfg := fmt.Sprintf(`data_dir = %q
domains = ["kill.example"]
[[listen]]
transport = "udp"
address = "127.0.0.1:%d"
[admin]
listen = "127.0.0.1:%d"
token = "t0k"
[stun]
listen = []
[auth]
algorithms = ["MD5"]
[keepalive]
interval = "2s"
[[users]]
name = "alice"
password = "s3cret"
`, filepath.Join(dir, "data"), sipPort, adminPort)
	cfgPath := filepath.Join(dir, "s.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	srv := startServer(t, bin, cfgPath)
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	register(t, phone, sipPort)

	// Give the write-behind flusher (100 ms default) time to commit, then
	// kill without any chance to flush.
	time.Sleep(400 * time.Millisecond)
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = srv.Wait()
	drain(phone) // pings from the killed server must not count below

	srv2 := startServer(t, bin, cfgPath)
	defer func() { _ = srv2.Process.Signal(syscall.SIGTERM); _ = srv2.Wait() }()
	out, err := exec.Command(bin, "peer", "list", "--json", "-c", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("peer list: %v\n%s", err, out)
	}
	var peers []struct {
		AOR, Contact, Remote, Transport string
		NAT                             bool
	}
	if err := json.Unmarshal(out, &peers); err != nil {
		t.Fatalf("peer list output: %v\n%s", err, out)
	}
	if len(peers) != 1 {
		t.Fatalf("after kill -9 and restart: want 1 peer, got %d: %s", len(peers), out)
	}
	p := peers[0]
	if p.AOR != "alice@kill.example" || p.Remote != phone.LocalAddr().String() || p.Transport != "udp" || !p.NAT {
		t.Fatalf("restored peer lost its flow or NAT flag: %+v (phone is %s)", p, phone.LocalAddr())
	}
	if p.Contact != "<sip:alice@10.1.2.3:5060>" {
		t.Fatalf("contact not kept as sent: %q", p.Contact)
	}

	// The restored NATed flow is kept alive: an OPTIONS arrives from the
	// server's SIP port; answered, the peer shows OK with its RTT.
	answerPing(t, phone, sipPort)
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command(bin, "peer", "list", "-c", cfgPath).CombinedOutput()
		if err != nil {
			t.Fatalf("peer list: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "STATUS") && regexp.MustCompile(`OK \([0-9]+ ms\)`).Match(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer list never shows the restored peer OK:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func drain(c *net.UDPConn) {
	buf := make([]byte, 65535)
	for {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			return
		}
	}
}

// answerPing waits for sipedge's keepalive OPTIONS on the phone's socket
// and answers it with 200.
func answerPing(t *testing.T, c *net.UDPConn, port int) {
	t.Helper()
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no keepalive OPTIONS for the restored registration: %v", err)
		}
		req := string(buf[:n])
		if !strings.HasPrefix(req, "OPTIONS ") {
			continue
		}
		if from.Port != port {
			t.Fatalf("keepalive came from port %d, not the SIP port %d the phone registered to", from.Port, port)
		}
		res := "SIP/2.0 200 OK\r\n"
		for _, l := range strings.Split(req, "\r\n") {
			for _, h := range []string{"Via:", "From:", "Call-ID:", "CSeq:"} {
				if strings.HasPrefix(l, h) {
					res += l + "\r\n"
				}
			}
			if strings.HasPrefix(l, "To:") {
				res += l + ";tag=phone\r\n"
			}
		}
		res += "Content-Length: 0\r\n\r\n"
		if _, err := c.WriteToUDP([]byte(res), from); err != nil {
			t.Fatal(err)
		}
		return
	}
}

func startServer(t *testing.T, bin, cfg string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-c", cfg)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready") {
				ready <- true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("server did not become ready")
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

// register performs REGISTER → 401 → REGISTER with MD5 digest → 200 with a
// private Contact (as a phone behind NAT sends it).
func register(t *testing.T, c *net.UDPConn, port int) {
	t.Helper()
	srv := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	msg := func(cseq int, authz string) string {
		s := "REGISTER sip:kill.example SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK-k9-" + fmt.Sprint(cseq) + "\r\n" +
			"From: <sip:alice@kill.example>;tag=k9\r\nTo: <sip:alice@kill.example>\r\n" +
			"Call-ID: kill9-test\r\nCSeq: " + fmt.Sprint(cseq) + " REGISTER\r\n" +
			"Contact: <sip:alice@10.1.2.3:5060>\r\nExpires: 600\r\nMax-Forwards: 70\r\n"
		if authz != "" {
			s += "Authorization: " + authz + "\r\n"
		}
		return s + "Content-Length: 0\r\n\r\n"
	}
	roundTrip := func(m string) string {
		if _, err := c.WriteToUDP([]byte(m), srv); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 65535)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("no answer to REGISTER: %v", err)
			}
			if !strings.HasPrefix(string(buf[:n]), "OPTIONS ") { // not a keepalive
				return string(buf[:n])
			}
		}
	}
	res := roundTrip(msg(1, ""))
	m := regexp.MustCompile(`WWW-Authenticate: Digest realm="([^"]+)", nonce="([^"]+)"`).FindStringSubmatch(res)
	if m == nil {
		t.Fatalf("want a digest challenge, got:\n%s", res)
	}
	realm, nonce := m[1], m[2]
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	ha1 := h("alice:" + realm + ":s3cret")
	ha2 := h("REGISTER:sip:kill.example")
	resp := h(ha1 + ":" + nonce + ":00000001:c0ffee:auth:" + ha2)
	authz := fmt.Sprintf(`Digest username="alice", realm="%s", nonce="%s", uri="sip:kill.example", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"`, realm, nonce, resp)
	res = roundTrip(msg(2, authz))
	if !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("want 200 to authenticated REGISTER, got:\n%s", res)
	}
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestImportRealmMismatchWarns: users imported offline without the server's
// config get HA1s for the default realm; the server must say they cannot
// authenticate instead of answering 401 forever in silence.
func TestImportRealmMismatchWarns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sipedge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	csv := filepath.Join(dir, "u.csv")
	if err := os.WriteFile(csv, []byte("u1,p1\nu2,p2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "user", "import", "--data-dir", data, csv).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `realm "sipedge.local"`) {
		t.Fatalf("import should name the realm it used: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "s.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir = %q\ndomains = [\"other.example\"]\n[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:%d\"\n[admin]\nlisten = \"off\"\n[stun]\nlisten = []\n", data, freeUDPPort(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-c", cfg)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if !strings.Contains(stderr.String(), "another realm") || !strings.Contains(stderr.String(), "users=2") {
		t.Fatalf("no realm-mismatch warning at start:\n%s", stderr.String())
	}
}
