//go:build lab

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The lab's sipedge: built once per test binary from ./cmd/sipedge, run in
// se-edge with a config written per test and a fresh data directory.

const (
	// EdgeSIP is where sipedge listens for SIP (UDP and TCP).
	EdgeSIP = EdgeIP + ":5060"
	// Domain is the SIP domain sipedge serves in the lab.
	Domain = "lab.example"
	// AdminAddr and AdminToken reach sipedge's admin API from inside se-edge.
	AdminAddr  = "127.0.0.1:5080"
	AdminToken = "labtoken"
)

// DefaultUsers are the lab's accounts: alice (phone A), bob (phone B) and
// carol (the public phone).
var DefaultUsers = []User{{"alice", "alicepw"}, {"bob", "bobpw"}, {"carol", "carolpw"}}

// User is a SIP account in sipedge's config.
type User struct{ Name, Password string }

// EdgeConfig is what a test may change in sipedge's config.
type EdgeConfig struct {
	// Users; if nil, DefaultUsers.
	Users []User
	// BanFailures is [security] ban_failures; if zero, 5.
	BanFailures int
	// Algorithms is [auth] algorithms; if nil, ["MD5"]. SIPp 3.6.1 can only
	// answer MD5 and reads only the first challenge header, so with
	// sipedge's default ["SHA-256", "MD5"] every SIPp phone would fail.
	Algorithms []string
	// Media is [media] mode: "always", "nat" or "never". MediaPorts is
	// [media] ports, the relay's RTP port range ("30000-30199"). When
	// these and the other [media] fields below are all zero there is no
	// [media] table (sipedge's defaults).
	Media      string
	MediaPorts string
	// Learning is [media] learning, the relay's learning window after
	// each offer/answer (0: sipedge's default, 3 s). A short one locks
	// the legs sooner.
	Learning time.Duration
	// Kernel is [media] kernel, the in-kernel RTP fast path: "off",
	// "auto" or "on" ("" for sipedge's default, off). KernelInterfaces is
	// [media] kernel_interfaces (nil: sipedge's default, every up
	// loopback or Ethernet-like interface of its namespace).
	Kernel           string
	KernelInterfaces []string
	// UserKeepalive overrides [keepalive] interval for some users (their
	// [[users]] keepalive): 0 turns keepalives off for their flows and
	// dialogs.
	UserKeepalive map[string]time.Duration
	// Extra is appended to the file verbatim: whole TOML tables only.
	Extra string

	// NS is the namespace sipedge runs in; default NSEdge. ListenIP is
	// the IP of its SIP listeners (UDP and TCP, port 5060); default EdgeIP.
	NS       string
	ListenIP string
	// ExternalAddress is the top-level external_address ("" for none,
	// "auto", a fixed IP, ...); LocalNets is local_nets.
	ExternalAddress string
	LocalNets       []string
	// Name labels the artifacts of this sipedge (<Name>.toml,
	// <Name>.stdout/.stderr, <Name>-data/); default "sipedge". A test that
	// starts several sipedges one after the other gives each its own.
	Name string
}

func (c EdgeConfig) ns() string {
	if c.NS == "" {
		return NSEdge
	}
	return c.NS
}

func (c EdgeConfig) name() string {
	if c.Name == "" {
		return "sipedge"
	}
	return c.Name
}

// TOML renders the config file for dataDir.
func (c EdgeConfig) TOML(dataDir string) string {
	users := c.Users
	if users == nil {
		users = DefaultUsers
	}
	ban := c.BanFailures
	if ban == 0 {
		ban = 5
	}
	algs := c.Algorithms
	if algs == nil {
		algs = []string{"MD5"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir = %q\n", dataDir)
	fmt.Fprintf(&b, "domains = [%q]\n", Domain)
	if c.ExternalAddress != "" {
		fmt.Fprintf(&b, "external_address = %q\n", c.ExternalAddress)
	}
	if c.LocalNets != nil {
		fmt.Fprintf(&b, "local_nets = %s\n", tomlStrings(c.LocalNets))
	}
	b.WriteString("\n")
	b.WriteString("[log]\nlevel = \"debug\"\n\n")
	listen := EdgeSIP
	if c.ListenIP != "" {
		listen = c.ListenIP + ":5060"
	}
	for _, tr := range []string{"udp", "tcp"} {
		fmt.Fprintf(&b, "[[listen]]\ntransport = %q\naddress = %q\n\n", tr, listen)
	}
	fmt.Fprintf(&b, "[admin]\nlisten = %q\ntoken = %q\n\n", AdminAddr, AdminToken)
	fmt.Fprintf(&b, "[auth]\nalgorithms = %s\n\n", tomlStrings(algs))
	fmt.Fprintf(&b, "[security]\nban_failures = %d\n\n", ban)
	if c.Media != "" || c.MediaPorts != "" || c.Learning != 0 || c.Kernel != "" || c.KernelInterfaces != nil {
		b.WriteString("[media]\n")
		if c.Media != "" {
			fmt.Fprintf(&b, "mode = %q\n", c.Media)
		}
		if c.MediaPorts != "" {
			fmt.Fprintf(&b, "ports = %q\n", c.MediaPorts)
		}
		if c.Learning != 0 {
			fmt.Fprintf(&b, "learning = %q\n", c.Learning.String())
		}
		if c.Kernel != "" {
			fmt.Fprintf(&b, "kernel = %q\n", c.Kernel)
		}
		if c.KernelInterfaces != nil {
			fmt.Fprintf(&b, "kernel_interfaces = %s\n", tomlStrings(c.KernelInterfaces))
		}
		b.WriteString("\n")
	}
	for _, u := range users {
		fmt.Fprintf(&b, "[[users]]\nname = %q\npassword = %q\n", u.Name, u.Password)
		if iv, ok := c.UserKeepalive[u.Name]; ok {
			fmt.Fprintf(&b, "keepalive = %q\n", iv.String())
		}
		b.WriteString("\n")
	}
	if c.Extra != "" {
		b.WriteString(c.Extra)
		b.WriteString("\n")
	}
	return b.String()
}

// tomlStrings renders a TOML array of strings.
func tomlStrings(list []string) string {
	q := make([]string, len(list))
	for i, v := range list {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

var sipedgeBuild struct {
	once sync.Once
	path string
	err  error
}

// BuildSipedge builds ./cmd/sipedge once per test binary into
// test/lab/out/_bin/sipedge and returns its path; it fails t with the
// compiler's output if the server does not build.
func BuildSipedge(t testing.TB) string {
	t.Helper()
	b := &sipedgeBuild
	b.once.Do(func() {
		dir := filepath.Join(labDir(), "out", "_bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "sipedge")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), "build", "-o", b.path, "./cmd/sipedge")
		cmd.Dir = ModuleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/sipedge: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("lab: sipedge does not build (yet?): %v", b.err)
	}
	return b.path
}

// goTool is the go command: `go test` puts its own toolchain's bin first in
// PATH.
func goTool() string { return "go" }

// Sipedge is a running sipedge in se-edge (or EdgeConfig.NS).
type Sipedge struct {
	NS      string
	Proc    *Proc
	Bin     string
	Config  string // path of the config file
	DataDir string
	lab     *Lab
	http    *http.Client
}

// StartSipedge builds sipedge (once), writes cfg with a fresh data directory
// into the artifact directory, runs `sipedge serve -c` in se-edge (or
// cfg.NS) and waits (up to 10 s) until the admin API answers
// GET /api/v1/status with 200. If t fails, the tail of sipedge's log is
// printed.
func (l *Lab) StartSipedge(cfg EdgeConfig) *Sipedge {
	l.T.Helper()
	bin := BuildSipedge(l.T)
	s := &Sipedge{
		NS:      cfg.ns(),
		Bin:     bin,
		Config:  filepath.Join(l.Dir, cfg.name()+".toml"),
		DataDir: filepath.Join(l.Dir, cfg.name()+"-data"),
		lab:     l,
		http:    l.HTTPClient(cfg.ns()),
	}
	if err := os.RemoveAll(s.DataDir); err != nil {
		l.T.Fatal(err)
	}
	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		l.T.Fatal(err)
	}
	if err := os.WriteFile(s.Config, []byte(cfg.TOML(s.DataDir)), 0o600); err != nil {
		l.T.Fatal(err)
	}
	s.Proc = l.Start(s.NS, cfg.name(), bin, "serve", "-c", s.Config)
	l.T.Cleanup(func() {
		if l.T.Failed() {
			l.T.Logf("sipedge log tail (%s):\n%s", s.Proc.Stderr, s.Proc.Tail(40))
		}
	})
	if err := s.waitReady(10 * time.Second); err != nil {
		l.T.Fatalf("lab: sipedge not ready: %v", err)
	}
	return s
}

func (s *Sipedge) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if s.Proc.Exited() {
			return fmt.Errorf("sipedge exited with code %d:\n%s", s.Proc.ExitCode(), s.Proc.Tail(30))
		}
		_, err := s.get("/api/v1/status")
		if err == nil {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("admin API http://%s/api/v1/status not answering 200 after %v: %v\nsipedge log tail:\n%s",
				AdminAddr, timeout, last, s.Proc.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches an admin API path with the bearer token, from inside se-edge.
func (s *Sipedge) get(path string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+AdminAddr+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// Peer is one registration as the admin API and `sipedge peer list --json`
// show it.
type Peer struct {
	Kind       string    `json:"kind"` // "registration" or "trunk"
	AOR        string    `json:"aor"`
	User       string    `json:"user"`
	Contact    string    `json:"contact"`
	Transport  string    `json:"transport"`
	Remote     string    `json:"remote"`
	Local      string    `json:"local"`
	NAT        bool      `json:"nat"`
	NATReasons []string  `json:"nat_reasons"`
	Expires    time.Time `json:"expires"`
	UserAgent  string    `json:"user_agent"`
	Registered time.Time `json:"registered"` // first REGISTER of this binding
	Updated    time.Time `json:"updated"`    // last REGISTER
	// Status is the keepalive status as text ("OK (3 ms)", "LAGGED
	// (1450 ms)", "UNREACHABLE", "UNKNOWN"), "" for a flow without
	// keepalives; Keepalive is then nil.
	Status    string         `json:"status"`
	Keepalive *PeerKeepalive `json:"keepalive"`
}

// PeerKeepalive is a peer's keepalive state in the peers view.
type PeerKeepalive struct {
	Status     string    `json:"status"` // unknown|ok|lagged|unreachable|unmonitored
	Method     string    `json:"method"` // options|crlf
	IntervalS  int       `json:"interval_s"`
	RTTms      float64   `json:"rtt_ms"`
	Misses     int       `json:"misses"`
	Sent       uint64    `json:"sent"`
	Answered   uint64    `json:"answered"`
	LastAnswer time.Time `json:"last_answer"`
	NextPing   time.Time `json:"next_ping"`
	Dialogs    int       `json:"dialogs"`
	HistoryMS  []float64 `json:"history_ms"`
}

// Peers is GET /api/v1/peers.
func (s *Sipedge) Peers() ([]Peer, error) {
	body, err := s.get("/api/v1/peers")
	if err != nil {
		return nil, err
	}
	var peers []Peer
	if err := json.Unmarshal(body, &peers); err != nil {
		return nil, fmt.Errorf("GET /api/v1/peers: %w: %s", err, body)
	}
	return peers, nil
}

// PeersCLI is `sipedge peer list --json`, run inside se-edge.
func (s *Sipedge) PeersCLI() ([]Peer, error) {
	out, err := s.PeersJSON()
	if err != nil {
		return nil, err
	}
	var peers []Peer
	if err := json.Unmarshal([]byte(out), &peers); err != nil {
		return nil, fmt.Errorf("sipedge peer list --json: %w: %s", err, out)
	}
	return peers, nil
}

// PeersJSON is the raw output of `sipedge peer list --json`, run inside
// se-edge (for logs and failure messages).
func (s *Sipedge) PeersJSON() (string, error) {
	return s.lab.Exec(s.NS, s.Bin, "peer", "list", "--json", "--admin", "http://"+AdminAddr, "--token", AdminToken)
}

// EdgeStatus is the part of `sipedge status --json` (GET /api/v1/status)
// the lab reads; Raw is the whole document.
type EdgeStatus struct {
	Listeners     []string          `json:"listeners"`
	Registrations int               `json:"registrations"`
	Counters      map[string]uint64 `json:"counters"`
	// External is null when sipedge has no external address.
	External *struct {
		Address string `json:"address"`
		Source  string `json:"source"` // static|dns|stun|pcp|natpmp|upnp
		Detail  string `json:"detail"`
	} `json:"external"`
	// PortMappings are the mappings sipedge holds on its NAT router.
	PortMappings []struct {
		Protocol  string `json:"protocol"`  // pcp|natpmp|upnp
		Transport string `json:"transport"` // udp|tcp
		Internal  string `json:"internal"`
		External  string `json:"external"`
	} `json:"port_mappings"`
	Raw string `json:"-"`
}

// StatusCLI is `sipedge status --json`, run in sipedge's namespace.
func (s *Sipedge) StatusCLI() (EdgeStatus, error) {
	out, err := s.lab.Exec(s.NS, s.Bin, "status", "--json", "--admin", "http://"+AdminAddr, "--token", AdminToken)
	st := EdgeStatus{Raw: out}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("sipedge status --json: %w: %s", err, out)
	}
	st.Raw = out
	return st, nil
}

// Peer returns the registration of aor ("alice@lab.example"), waiting up to
// 2 s for it to appear.
func (s *Sipedge) Peer(aor string) (Peer, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		peers, err := s.Peers()
		if err != nil {
			return Peer{}, err
		}
		var aors []string
		for _, p := range peers {
			if p.AOR == aor {
				return p, nil
			}
			aors = append(aors, p.AOR)
		}
		if time.Now().After(deadline) {
			return Peer{}, fmt.Errorf("no peer %s; peers: %v", aor, aors)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops sipedge (SIGTERM, then SIGKILL after 5 s).
func (s *Sipedge) Stop() { s.Proc.Stop() }

// Alive fails t if sipedge has exited.
func (s *Sipedge) Alive(t testing.TB) {
	t.Helper()
	if s.Proc.Exited() {
		t.Fatalf("sipedge exited with code %d:\n%s", s.Proc.ExitCode(), s.Proc.Tail(30))
	}
}

// Signal sends sig to sipedge (for reload or shutdown tests).
func (s *Sipedge) Signal(sig syscall.Signal) error { return s.Proc.cmd.Process.Signal(sig) }

// Ladder is the part of GET /api/v1/calls/{id}/trace the lab checks.
type Ladder struct {
	CallID  string `json:"call_id"`
	State   string `json:"state"`
	Columns []struct {
		Kind string `json:"kind"`
		Addr string `json:"addr"`
	} `json:"columns"`
	Arrows []struct {
		Label string `json:"label"`
		Fixes []struct {
			Kind string `json:"kind"`
			Text string `json:"text"`
		} `json:"fixes"`
	} `json:"arrows"`
}

// LastLadder is the ladder of the most recent call sipedge traced.
func (s *Sipedge) LastLadder() (*Ladder, error) {
	body, err := s.get("/api/v1/calls/recent")
	if err != nil {
		return nil, err
	}
	var recent []struct {
		CallID string `json:"call_id"`
	}
	if err := json.Unmarshal(body, &recent); err != nil || len(recent) == 0 {
		return nil, fmt.Errorf("GET /api/v1/calls/recent: %v: %s", err, body)
	}
	if body, err = s.get("/api/v1/calls/" + url.PathEscape(recent[0].CallID) + "/trace"); err != nil {
		return nil, err
	}
	var l struct {
		CallID string `json:"call_id"`
		State  string `json:"state"`
		Ladder Ladder `json:"ladder"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	l.Ladder.CallID, l.Ladder.State = l.CallID, l.State
	return &l.Ladder, nil
}

// Call is one live call as GET /api/v1/calls shows it: the part the lab
// reads, with the lab's own types so that the JSON field names are pinned.
type Call struct {
	CallID  string `json:"call_id"`
	State   string `json:"state"` // ringing|answered
	Relayed bool   `json:"relayed"`
	Streams []struct {
		Index int    `json:"index"`
		Media string `json:"media"`
		// Legs[0] is the caller's side, Legs[1] the callee's; each counts
		// what the relay received from that side.
		Legs [2]StreamLeg `json:"legs"`
	} `json:"streams"`
}

// StreamLeg is one side of a relayed stream in GET /api/v1/calls.
type StreamLeg struct {
	RelayPort      int    `json:"relay_port"` // the relay port this side sends to
	Target         string `json:"target"`     // where the relay sends to this side
	Latched        bool   `json:"latched"`
	Locked         bool   `json:"locked"`
	Kernel         bool   `json:"kernel"` // forwarded by the in-kernel fast path now
	Packets        uint64 `json:"packets"`
	DroppedForeign uint64 `json:"dropped_foreign"`
}

func (l StreamLeg) String() string {
	return fmt.Sprintf("port %d -> %s latched=%v locked=%v kernel=%v packets=%d dropped_foreign=%d",
		l.RelayPort, l.Target, l.Latched, l.Locked, l.Kernel, l.Packets, l.DroppedForeign)
}

// Calls is GET /api/v1/calls.
func (s *Sipedge) Calls() ([]Call, error) {
	body, err := s.get("/api/v1/calls")
	if err != nil {
		return nil, err
	}
	var calls []Call
	if err := json.Unmarshal(body, &calls); err != nil {
		return nil, fmt.Errorf("GET /api/v1/calls: %w: %s", err, body)
	}
	return calls, nil
}

// Metrics reads GET /metrics: every sample by series, name and labels as
// written (`sipedge_relay_packets_total{direction="caller_to_callee"}`).
func (s *Sipedge) Metrics() (map[string]float64, error) {
	body, err := s.get("/metrics")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("GET /metrics: no samples: %.200s", body)
	}
	return m, nil
}

// MetricSum is the sum of every series of metric name in m, whatever its
// labels.
func MetricSum(m map[string]float64, name string) float64 {
	var sum float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}
