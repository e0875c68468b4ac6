// Package edgetest boots a whole sipedge in-process from a TOML string, on
// loopback ports chosen by the kernel, and gives tests the addresses, the
// admin API and fake phones (package uatest) pointed at it. Startup is
// signalled by edge.Start returning (everything is listening), never slept
// for; the server is shut down when the test ends.
package edgetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge"
	"github.com/sipedge/sipedge/uatest"
)

// Domain is the SIP domain of Base.
const Domain = "test.example"

// Passwords of the users in Base.
var Passwords = map[string]string{
	"alice": "alice-secret",
	"bob":   "bob-secret",
	"carol": "carol-secret",
}

// Base is the default test configuration: UDP and TCP on 127.0.0.1:0, the
// admin API on 127.0.0.1:0, no STUN server, domain test.example, users
// alice, bob and carol, no rate limit. data_dir is filled in by Start. Tests may append tables
// ([[routes]], [[users]]) and change anything else with a mutate function.
const Base = `
domains = ["test.example"]

[log]
level = "warn"

[[listen]]
transport = "udp"
address = "127.0.0.1:0"

[[listen]]
transport = "tcp"
address = "127.0.0.1:0"

[registrar]
min_expires = "60s"
max_expires = "3600s"
default_expires = "3600s"
flush_interval = "20ms"

[security]
rate_limit = 0

# Tests start many servers at once: none binds the STUN port (a test that
# wants the STUN server sets stun.listen, e.g. to 127.0.0.1:0).
[stun]
listen = []

[admin]
listen = "127.0.0.1:0"

[[users]]
name = "alice"
password = "alice-secret"

[[users]]
name = "bob"
password = "bob-secret"

[[users]]
name = "carol"
password = "carol-secret"
`

// Server is a running sipedge under test.
type Server struct {
	*edge.Edge
	Cfg   *config.Config
	UDP   netip.AddrPort // SIP over UDP
	TCP   netip.AddrPort // SIP over TCP (invalid if not configured)
	Admin string         // admin API host:port
	Token string         // admin bearer token

	tb   testing.TB
	logs *tbWriter
	once sync.Once
}

// Start parses toml (a complete config, usually Base plus additions),
// applies mutate, sets data_dir to a fresh temporary directory unless the
// config sets one, validates and starts the server. It is shut down at the
// end of the test.
func Start(tb testing.TB, toml string, mutate ...func(*config.Config)) *Server {
	tb.Helper()
	return StartWith(tb, edge.Options{}, toml, mutate...)
}

// StartWith is Start with process-level options (e.g. a fake gateway for
// external_address = "auto"); UDPReaders is set here, and Logger unless
// given (by default the log goes to the test's log).
func StartWith(tb testing.TB, opt edge.Options, toml string, mutate ...func(*config.Config)) *Server {
	tb.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		tb.Fatalf("edgetest: config does not parse:\n%v\n--- config ---\n%s", err, toml)
	}
	if !strings.Contains(toml, "data_dir") {
		cfg.DataDir = tb.TempDir()
	}
	for _, f := range mutate {
		f(cfg)
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatalf("edgetest: config is invalid: %v", err)
	}
	return start(tb, cfg, opt)
}

func start(tb testing.TB, cfg *config.Config, opt edge.Options) *Server {
	tb.Helper()
	w := &tbWriter{tb: tb}
	level := slog.LevelWarn
	switch os.Getenv("SIPEDGE_TEST_LOG") {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	}
	opt.UDPReaders = 2
	e, err := edge.Start(cfg, opt)
	if err != nil {
		tb.Fatalf("edgetest: start: %v", err)
	}
	s := &Server{Edge: e, Cfg: cfg, UDP: e.SIPAddr("udp"), TCP: e.SIPAddr("tcp"), Admin: e.AdminAddr(), Token: e.AdminToken(), tb: tb, logs: w}
	tb.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down (idempotent); logging to the test ends.
func (s *Server) Stop() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			s.Shutdown(ctx)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			// Do not hang the whole run: report with the stacks.
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			s.tb.Errorf("edgetest: Shutdown did not return within 15s (its context expired after 10s); goroutines:\n%s", buf)
		}
		s.logs.stop()
	})
}

// Restart stops the server and starts a new one on the same data dir and
// the same SIP ports (as a restarted daemon would), returning it.
func (s *Server) Restart(tb testing.TB) *Server {
	tb.Helper()
	s.Stop()
	cfg := s.Cfg.Clone()
	for i := range cfg.Listen {
		switch cfg.Listen[i].Transport {
		case "udp":
			cfg.Listen[i].Address = s.UDP.String()
		case "tcp":
			cfg.Listen[i].Address = s.TCP.String()
		}
	}
	return start(tb, cfg, edge.Options{Gateway: s.Edge.Options().Gateway})
}

// Phone opens a fake phone aimed at the server: Server is set from the
// transport (UDP unless cfg.Transport is "tcp"), Domain defaults to
// test.example and Password to the user's password in Base.
func (s *Server) Phone(tb testing.TB, cfg uatest.Config) *uatest.Phone {
	tb.Helper()
	if !cfg.Server.IsValid() {
		cfg.Server = s.UDP
		if strings.EqualFold(cfg.Transport, "tcp") {
			cfg.Server = s.TCP
		}
	}
	if cfg.Domain == "" {
		cfg.Domain = Domain
	}
	if cfg.Password == "" {
		cfg.Password = Passwords[cfg.User]
	}
	return uatest.New(tb, cfg)
}

// GetJSON GETs an admin API path with the bearer token and decodes the
// JSON answer into v; it returns the HTTP status.
func (s *Server) GetJSON(tb testing.TB, path string, v any) int {
	tb.Helper()
	req, err := http.NewRequest("GET", "http://"+s.Admin+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		tb.Fatalf("admin GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if v != nil && res.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			tb.Fatalf("admin GET %s: bad JSON: %v\n%s", path, err, b)
		}
	}
	return res.StatusCode
}

// Peers returns GET /api/v1/peers.
func (s *Server) Peers(tb testing.TB) []admin.Peer {
	tb.Helper()
	var ps []admin.Peer
	if code := s.GetJSON(tb, "/api/v1/peers", &ps); code != 200 {
		tb.Fatalf("GET /api/v1/peers: HTTP %d", code)
	}
	return ps
}

// PeersOf returns the peers of one AOR ("alice" means alice@test.example).
func (s *Server) PeersOf(tb testing.TB, user string) []admin.Peer {
	tb.Helper()
	aor := user
	if !strings.Contains(aor, "@") {
		aor += "@" + Domain
	}
	var out []admin.Peer
	for _, p := range s.Peers(tb) {
		if p.AOR == aor {
			out = append(out, p)
		}
	}
	return out
}

// Bans returns GET /api/v1/bans.
func (s *Server) Bans(tb testing.TB) []admin.Ban {
	tb.Helper()
	var bs []admin.Ban
	if code := s.GetJSON(tb, "/api/v1/bans", &bs); code != 200 {
		tb.Fatalf("GET /api/v1/bans: HTTP %d", code)
	}
	return bs
}

// Status returns GET /api/v1/status.
func (s *Server) Status(tb testing.TB) admin.Status {
	tb.Helper()
	var st admin.Status
	if code := s.GetJSON(tb, "/api/v1/status", &st); code != 200 {
		tb.Fatalf("GET /api/v1/status: HTTP %d", code)
	}
	return st
}

// tbWriter sends server logs to the test log until the test ends (logging
// to a finished test panics).
type tbWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *tbWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log("sipedge: " + strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// Leaks returns the stacks of goroutines still running code of this module
// (server or test kit) after waiting up to wait for them to end. Call it
// from TestMain after m.Run, when every server and phone is closed.
func Leaks(wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	for {
		var leaked []string
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if !strings.Contains(g, "github.com/sipedge/sipedge/") || strings.Contains(g, "edgetest.Leaks") {
				continue
			}
			leaked = append(leaked, g)
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CheckLeaks runs m and fails the run if goroutines of this module
// outlive the tests.
func CheckLeaks(m interface{ Run() int }) int {
	code := m.Run()
	if l := Leaks(5 * time.Second); len(l) > 0 {
		fmt.Fprintf(os.Stderr, "edgetest: %d goroutine(s) leaked after all tests:\n\n%s\n", len(l), strings.Join(l, "\n\n"))
		if code == 0 {
			code = 1
		}
	}
	return code
}
