package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is one sipedge process started by kabench.
type server struct {
	cmd     *exec.Cmd
	pid     int
	admin   string // http://127.0.0.1:port
	token   string
	hc      *http.Client
	logFile *os.File
	exited  chan struct{}
	exitErr error
}

// serverConfig is the sipedge.toml of one run.
func serverConfig(dataDir, domain string, sipPort, adminPort int, token string, interval time.Duration) string {
	return fmt.Sprintf(`# sipedge configuration written by kabench (bench/keepalive) for one run.
data_dir = %q
domains = [%q]

[log]
level = "warn"

[[listen]]
transport = "udp"
address = "127.0.0.1:%d"

[admin]
listen = "127.0.0.1:%d"
token = %q

# Registrar, auth (SHA-256 and MD5, digest on every REGISTER) and
# security (rate limit 200/s per source IP, bans) keep their defaults:
# every phone has its own source address, as behind real NATs.

[keepalive]
interval = %q
method = "options"
timeout = "5s"
misses = 3
`, dataDir, domain, sipPort, adminPort, token, durString(interval))
}

func durString(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	return d.String()
}

// startServer starts `sipedge serve -c cfg` and waits until its admin API
// answers.
func startServer(bin, cfg, logPath, adminAddr, token string, env []string) (*server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "-c", cfg)
	cmd.Stdout, cmd.Stderr = lf, lf
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	// If kabench dies, sipedge goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	s := &server{cmd: cmd, pid: cmd.Process.Pid, admin: "http://" + adminAddr, token: token,
		hc: &http.Client{Timeout: 120 * time.Second}, logFile: lf, exited: make(chan struct{})}
	go func() {
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			lf.Close()
			return nil, fmt.Errorf("sipedge exited at start-up (%v); see %s", s.exitErr, logPath)
		default:
		}
		if _, err := s.status(); err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("sipedge admin API not answering after 60 s; see %s", logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (SIGKILL after 10 s). Only this process,
// by its PID.
func (s *server) stop() {
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	s.logFile.Close()
}

func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// get fetches path from the admin API: body, time taken.
func (s *server) get(path string) ([]byte, time.Duration, error) {
	req, err := http.NewRequest("GET", s.admin+path, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	t0 := time.Now()
	res, err := s.hc.Do(req)
	if err != nil {
		return nil, time.Since(t0), err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	d := time.Since(t0)
	if err != nil {
		return b, d, err
	}
	if res.StatusCode != 200 {
		return b, d, fmt.Errorf("GET %s: %s", path, res.Status)
	}
	return b, d, nil
}

// getTo streams path into file: bytes written, time taken.
func (s *server) getTo(path, file string) (int64, time.Duration, error) {
	req, err := http.NewRequest("GET", s.admin+path, nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	t0 := time.Now()
	res, err := s.hc.Do(req)
	if err != nil {
		return 0, time.Since(t0), err
	}
	defer res.Body.Close()
	var w io.Writer = io.Discard
	if file != "" {
		f, err := os.Create(file)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		w = f
	}
	n, err := io.Copy(w, res.Body)
	d := time.Since(t0)
	if err == nil && res.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", path, res.Status)
	}
	return n, d, err
}

// status is the part of /api/v1/status kabench reads.
type status struct {
	Registrations int               `json:"registrations"`
	NATed         int               `json:"nated"`
	AORs          int               `json:"aors"`
	HeapBytes     uint64            `json:"heap_bytes"`
	Counters      map[string]uint64 `json:"counters"`
	took          time.Duration
}

func (s *server) status() (status, error) {
	var st status
	b, d, err := s.get("/api/v1/status")
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	st.took = d
	return st, err
}

// metrics fetches /metrics as name{labels} → value.
func (s *server) metrics() (map[string]float64, time.Duration, int, error) {
	b, d, err := s.get("/metrics")
	if err != nil {
		return nil, d, len(b), err
	}
	return parseMetrics(string(b)), d, len(b), nil
}

func parseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// Mem is one memory reading of sipedge.
type Mem struct {
	// RSS, RSSAnon and RSSFile are VmRSS, RssAnon and RssFile from
	// /proc/PID/status (RssFile: the bbolt store's mmap pages touched).
	RSS     uint64 `json:"rss_bytes"`
	RSSAnon uint64 `json:"rss_anon_bytes"`
	RSSFile uint64 `json:"rss_file_bytes"`
	// StatusHeap is heap_bytes from /api/v1/status (HeapAlloc, including
	// garbage not collected yet).
	StatusHeap uint64 `json:"status_heap_bytes"`
	// HeapAfterGC is HeapAlloc right after a forced GC
	// (/debug/pprof/heap?gc=1&debug=1): live heap only.
	HeapAfterGC uint64  `json:"heap_after_gc_bytes"`
	HeapSys     uint64  `json:"heap_sys_bytes"`
	Sys         uint64  `json:"go_sys_bytes"`
	StatusMs    float64 `json:"status_ms"`
}

// mem reads sipedge's memory: status first (it allocates), then a forced
// GC with the runtime's own figures, then /proc.
func (s *server) mem() (Mem, error) {
	var m Mem
	st, err := s.status()
	if err != nil {
		return m, err
	}
	m.StatusHeap, m.StatusMs = st.HeapBytes, ms(st.took)
	rt, err := s.runtimeStats(true)
	if err != nil {
		return m, err
	}
	m.HeapAfterGC, m.HeapSys, m.Sys = rt["HeapAlloc"], rt["HeapSys"], rt["Sys"]
	m.RSS, m.RSSAnon, m.RSSFile = procMem(s.pid)
	return m, nil
}

// runtimeStats reads sipedge's runtime.MemStats from the text heap
// profile (/debug/pprof/heap?debug=1), after a forced GC if gc is set.
func (s *server) runtimeStats(gc bool) (map[string]uint64, error) {
	path := "/debug/pprof/heap?debug=1"
	if gc {
		path += "&gc=1"
	}
	b, _, err := s.get(path)
	if err != nil {
		return nil, err
	}
	return parseMemStats(string(b)), nil
}

func parseMemStats(text string) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// freePorts picks a free UDP port and a free TCP port on 127.0.0.1.
func freePorts() (udp, tcp int, err error) {
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer u.Close()
	t, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer t.Close()
	return u.LocalAddr().(*net.UDPAddr).Port, t.Addr().(*net.TCPAddr).Port, nil
}

// ensureUsers returns a data dir template holding n users PREFIX0000001…
// (password "pw-NAME") imported with `sipedge user import -c cfg`, made
// once and kept in dir.
func ensureUsers(bin, dir, prefix, domain string, n int) (string, error) {
	tpl := filepath.Join(dir, fmt.Sprintf("users-%s-%d", prefix, n))
	stamp := filepath.Join(tpl, "kabench.stamp")
	want := fmt.Sprintf("%s %s %d\n", domain, prefix, n)
	if b, err := os.ReadFile(stamp); err == nil && string(b) == want {
		return tpl, nil
	}
	_ = os.RemoveAll(tpl)
	data := filepath.Join(tpl, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", err
	}
	csv := filepath.Join(tpl, "users.csv")
	f, err := os.Create(csv)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		u := userName(prefix, i)
		fmt.Fprintf(w, "%s,%s\n", u, password(u))
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	f.Close()
	cfg := filepath.Join(tpl, "import.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir = %q\ndomains = [%q]\n", data, domain)), 0o644); err != nil {
		return "", err
	}
	out, err := exec.Command(bin, "user", "import", "-c", cfg, csv).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("sipedge user import: %v: %s", err, out)
	}
	logf("users: %s", strings.TrimSpace(string(out)))
	return tpl, os.WriteFile(stamp, []byte(want), 0o644)
}

// freshDataDir copies the template's store into dir (emptied first).
func freshDataDir(tpl, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	src, err := os.Open(filepath.Join(tpl, "data", "sipedge.db"))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(filepath.Join(dir, "sipedge.db"))
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
