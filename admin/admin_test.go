package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/calltrace"
)

// fake is an in-memory Backend.
type fake struct {
	mu     sync.Mutex
	peers  []Peer
	users  []User
	bans   []Ban
	calls  []Call
	recent map[string]Call
	traces map[string]calltrace.Trace
	ended  []string
	polls  int
}

func (f *fake) Status() Status { return Status{Version: "test", Registrations: len(f.peers)} }
func (f *fake) Peers(q PeerQuery) ([]Peer, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FilterPeers(f.peers, q)
}
func (f *fake) Users() ([]User, error) { return f.users, nil }
func (f *fake) AddUser(name, password, nat string) error {
	if name == "" || password == "" {
		return fmt.Errorf("%w: name and password required", ErrBadRequest)
	}
	f.users = append(f.users, User{Name: name, NAT: nat, Source: "store"})
	return nil
}
func (f *fake) DeleteUser(name string) (bool, error) {
	for i, u := range f.users {
		if u.Name == name {
			f.users = append(f.users[:i], f.users[i+1:]...)
			return true, nil
		}
	}
	return false, nil
}
func (f *fake) Bans() []Ban { return f.bans }
func (f *fake) Unban(ip string) bool {
	for i, b := range f.bans {
		if b.IP == ip {
			f.bans = append(f.bans[:i], f.bans[i+1:]...)
			return true
		}
	}
	return false
}
func (f *fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	return append([]Call(nil), f.calls...)
}
func (f *fake) EndCall(id string) bool {
	for _, c := range f.calls {
		if c.CallID == id {
			f.ended = append(f.ended, id)
			return true
		}
	}
	return false
}
func (f *fake) Metrics(w io.Writer) { fmt.Fprintln(w, "sipedge_test 1") }
func (f *fake) RecentCalls() []calltrace.Summary {
	var out []calltrace.Summary
	for _, t := range f.traces {
		out = append(out, t.Summary)
	}
	return out
}
func (f *fake) RecentCall(id string) (Call, bool) { c, ok := f.recent[id]; return c, ok }
func (f *fake) CallTrace(id string) (calltrace.Trace, bool) {
	t, ok := f.traces[id]
	return t, ok
}

func newFake() *fake {
	f := &fake{
		users:  []User{{Name: "alice", Source: "config"}},
		bans:   []Ban{{IP: "203.0.113.66", Reason: "auth", Failures: 5}},
		calls:  []Call{{CallID: "live-1", From: "sip:a@x", To: "sip:b@x", State: "answered", Streams: []Stream{}}},
		recent: map[string]Call{"old-1": {CallID: "old-1", State: "ended", Streams: []Stream{}}},
		traces: map[string]calltrace.Trace{"old-1": {Summary: calltrace.Summary{CallID: "old-1", State: "ended", Status: 200},
			Messages: []calltrace.Message{{Seq: 0, In: true, Transport: "udp", Local: "127.0.0.1:5060", Remote: "127.0.0.1:40312",
				Method: "INVITE", Summary: "INVITE sip:b@x", Text: "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1\r\nCall-ID: old-1\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nContact: <sip:a@10.0.0.5:5060>\r\n\r\n"}}}},
	}
	for i := range 250 {
		p := Peer{Kind: "registration", AOR: fmt.Sprintf("sip:u%03d@x", i), Contact: fmt.Sprintf("<sip:u%03d@10.0.0.%d>", i, i%250),
			Remote: fmt.Sprintf("198.51.100.%d:5060", i%250), NAT: i%2 == 0, UserAgent: "Phone/1.0", NATReasons: []string{}}
		if i%5 == 0 {
			p.Keepalive = &Keepalive{Status: "unreachable"}
		}
		f.peers = append(f.peers, p)
	}
	f.peers[7].UserAgent = "Odd <Agent> & co"
	return f
}

type client struct {
	t   *testing.T
	url string
}

func (c client) do(method, path, token, body string, hdr ...string) (*http.Response, string) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func start(t *testing.T, f *fake) client {
	srv := httptest.NewServer(Handler(f, "secret-token", slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return client{t, srv.URL}
}

// TestEveryEndpointNeedsTheToken: every API path answers 401 without the
// token or with a wrong one, and never leaks data in that answer.
func TestEveryEndpointNeedsTheToken(t *testing.T) {
	c := start(t, newFake())
	paths := []struct{ method, path string }{
		{"GET", "/api/v1/status"}, {"GET", "/api/v1/peers"}, {"GET", "/api/v1/users"}, {"POST", "/api/v1/users"},
		{"DELETE", "/api/v1/users/alice"}, {"GET", "/api/v1/bans"}, {"DELETE", "/api/v1/bans/203.0.113.66"},
		{"GET", "/api/v1/calls"}, {"GET", "/api/v1/calls/recent"}, {"GET", "/api/v1/calls/live-1"},
		{"GET", "/api/v1/calls/old-1/trace"}, {"DELETE", "/api/v1/calls/live-1"}, {"GET", "/api/v1/events"},
		{"GET", "/metrics"}, {"GET", "/debug/pprof/"}, {"GET", "/api/v1/nonexistent"},
	}
	for _, p := range paths {
		for _, tok := range []string{"", "wrong", "secret-token2", "SECRET-TOKEN"} {
			res, body := c.do(p.method, p.path, tok, "")
			if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with token %q: %d %q, want 401 with WWW-Authenticate", p.method, p.path, tok, res.StatusCode, body)
			}
			if strings.Contains(body, "alice") || strings.Contains(body, "live-1") {
				t.Errorf("%s %s: 401 body leaks data: %s", p.method, p.path, body)
			}
		}
	}
}

func TestEndpoints(t *testing.T) {
	f := newFake()
	c := start(t, f)
	const tok = "secret-token"
	get := func(path string, want int, v any) http.Header {
		t.Helper()
		res, body := c.do("GET", path, tok, "")
		if res.StatusCode != want {
			t.Fatalf("GET %s: %d %s, want %d", path, res.StatusCode, body, want)
		}
		if v != nil {
			if err := json.Unmarshal([]byte(body), v); err != nil {
				t.Fatalf("GET %s: %v in %s", path, err, body)
			}
		}
		return res.Header
	}
	var st Status
	get("/api/v1/status", 200, &st)
	if st.Version != "test" || st.Registrations != 250 {
		t.Errorf("status %+v", st)
	}
	var us []User
	get("/api/v1/users", 200, &us)
	if len(us) != 1 || us[0].Name != "alice" {
		t.Errorf("users %+v", us)
	}
	if res, body := c.do("POST", "/api/v1/users", tok, `{"name":"bob","password":"pw"}`); res.StatusCode != 201 {
		t.Errorf("add user: %d %s", res.StatusCode, body)
	}
	if res, body := c.do("POST", "/api/v1/users", tok, `{"name":"bob"}`); res.StatusCode != 400 || !strings.Contains(body, "required") {
		t.Errorf("add user without password: %d %s, want 400", res.StatusCode, body)
	}
	if res, body := c.do("POST", "/api/v1/users", tok, `{nope`); res.StatusCode != 400 || !strings.Contains(body, "invalid JSON") {
		t.Errorf("add user, bad JSON: %d %s, want 400", res.StatusCode, body)
	}
	if res, body := c.do("POST", "/api/v1/users", tok, `{"name":"eve","password":"pw"}`, "Origin", "http://evil.example"); res.StatusCode != 403 {
		t.Errorf("cross-origin POST: %d %s, want 403", res.StatusCode, body)
	}
	if res, _ := c.do("DELETE", "/api/v1/users/bob", tok, ""); res.StatusCode != 204 {
		t.Errorf("del user: %d", res.StatusCode)
	}
	if res, _ := c.do("DELETE", "/api/v1/users/bob", tok, ""); res.StatusCode != 404 {
		t.Errorf("del missing user: %d, want 404", res.StatusCode)
	}
	var bans []Ban
	get("/api/v1/bans", 200, &bans)
	if len(bans) != 1 {
		t.Errorf("bans %+v", bans)
	}
	if res, _ := c.do("DELETE", "/api/v1/bans/203.0.113.66", tok, ""); res.StatusCode != 204 {
		t.Errorf("unban: %d", res.StatusCode)
	}
	if res, _ := c.do("DELETE", "/api/v1/bans/203.0.113.66", tok, ""); res.StatusCode != 404 {
		t.Errorf("unban again: %d, want 404", res.StatusCode)
	}
	get("/api/v1/bans", 200, &bans)
	if len(bans) != 0 {
		t.Errorf("bans after unban %+v (want [] not null)", bans)
	}

	var calls []Call
	get("/api/v1/calls", 200, &calls)
	if len(calls) != 1 || calls[0].CallID != "live-1" {
		t.Errorf("calls %+v", calls)
	}
	var call Call
	get("/api/v1/calls/live-1", 200, &call)
	if call.State != "answered" {
		t.Errorf("live call %+v", call)
	}
	get("/api/v1/calls/old-1", 200, &call)
	if call.State != "ended" {
		t.Errorf("recent call %+v", call)
	}
	get("/api/v1/calls/nope", 404, nil)
	var recent []calltrace.Summary
	get("/api/v1/calls/recent", 200, &recent)
	if len(recent) != 1 || recent[0].CallID != "old-1" {
		t.Errorf("recent %+v", recent)
	}
	var tr CallTrace
	get("/api/v1/calls/old-1/trace", 200, &tr)
	if len(tr.Messages) != 1 || len(tr.Ladder.Arrows) != 1 || len(tr.Ladder.Columns) == 0 {
		t.Errorf("trace %+v", tr)
	}
	get("/api/v1/calls/live-1/trace", 404, nil)
	if res, _ := c.do("DELETE", "/api/v1/calls/live-1", tok, ""); res.StatusCode != 204 || len(f.ended) != 1 {
		t.Errorf("hangup: %d, ended %v", res.StatusCode, f.ended)
	}
	if res, _ := c.do("DELETE", "/api/v1/calls/nope", tok, ""); res.StatusCode != 404 {
		t.Errorf("hangup unknown: %d", res.StatusCode)
	}
	res, body := c.do("GET", "/metrics", tok, "")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") || body != "sipedge_test 1\n" {
		t.Errorf("metrics: %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	get("/debug/pprof/", 200, nil)
	get("/api/v1/nonexistent", 404, nil)
}

func TestPeersPaging(t *testing.T) {
	c := start(t, newFake())
	peers := func(q string) ([]Peer, string, int) {
		t.Helper()
		res, body := c.do("GET", "/api/v1/peers"+q, "secret-token", "")
		var ps []Peer
		if res.StatusCode == 200 {
			if err := json.Unmarshal([]byte(body), &ps); err != nil {
				t.Fatalf("%s: %v in %.200s", q, err, body)
			}
		}
		return ps, res.Header.Get("X-Total-Count"), res.StatusCode
	}
	all, total, _ := peers("")
	if len(all) != 250 || total != "250" || all[0].AOR != "sip:u000@x" || all[249].AOR != "sip:u249@x" {
		t.Fatalf("all peers: %d (total %s), first %q", len(all), total, all[0].AOR)
	}
	page, total, _ := peers("?offset=100&limit=20")
	if len(page) != 20 || total != "250" || page[0].AOR != "sip:u100@x" || page[19].AOR != "sip:u119@x" {
		t.Errorf("page: %d (total %s) from %q", len(page), total, page[0].AOR)
	}
	nat, total, _ := peers("?nat=yes&limit=1000")
	if len(nat) != 125 || total != "125" {
		t.Errorf("nat=yes: %d (total %s)", len(nat), total)
	}
	un, total, _ := peers("?status=unreachable&nat=no")
	if len(un) != 25 || total != "25" { // i%5==0 and odd: 25 of 250
		t.Errorf("status=unreachable&nat=no: %d (total %s)", len(un), total)
	}
	none, _, _ := peers("?status=none")
	if len(none) != 200 {
		t.Errorf("status=none: %d", len(none))
	}
	q, _, _ := peers("?q=U01")
	if len(q) != 10 {
		t.Errorf("q=U01: %d, want u010..u019", len(q))
	}
	odd, _, _ := peers("?q=%3Cagent%3E")
	if len(odd) != 1 || odd[0].UserAgent != "Odd <Agent> & co" {
		t.Errorf("q=<agent>: %+v", odd)
	}
	past, total, _ := peers("?offset=900")
	if len(past) != 0 || total != "250" {
		t.Errorf("offset past the end: %d (total %s)", len(past), total)
	}
	for _, bad := range []string{"?limit=-1", "?offset=x", "?nat=maybe", "?status=fine"} {
		if _, _, code := peers(bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
	// The body keeps < and > as they are (not \u003c): curl users read it.
	_, body := c.do("GET", "/api/v1/peers?limit=1", "secret-token", "")
	if !strings.Contains(body, `"contact": "<sip:u000@10.0.0.0>"`) {
		t.Errorf("peers body not as writeJSON writes it:\n%s", body)
	}
}

// TestDashboardFilesNeedNoToken: the dashboard's static files are public
// (they hold no data), served with a strict CSP; the data is not.
func TestDashboardFilesNeedNoToken(t *testing.T) {
	c := start(t, newFake())
	res, body := c.do("GET", "/", "", "")
	if res.StatusCode != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("GET /: %d %.100s", res.StatusCode, body)
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store"} {
		if got := res.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if res, _ := c.do("GET", "/ui/index.html", "", ""); res.StatusCode != 200 && res.StatusCode != 301 {
		t.Errorf("GET /ui/index.html: %d", res.StatusCode)
	}
	if res, _ := c.do("GET", "/ui/nope.js", "", ""); res.StatusCode != 404 {
		t.Errorf("GET /ui/nope.js: %d, want 404", res.StatusCode)
	}
	if res, _ := c.do("GET", "/anything-else", "", ""); res.StatusCode != 401 {
		t.Errorf("GET /anything-else: %d, want 401", res.StatusCode)
	}
}

// TestEvents reads the event stream: calls at once and at every tick,
// status and recent at once.
func TestEvents(t *testing.T) {
	f := newFake()
	ev := &events{b: f, tick: 20 * time.Millisecond}
	srv := httptest.NewServer(http.HandlerFunc(ev.serve))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	var event string
	for sc.Scan() && seen["calls"] < 3 {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			var v any
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				t.Fatalf("event %s: bad JSON %v: %s", event, err, data)
			}
			if event == "calls" && !strings.Contains(data, `"live-1"`) {
				t.Errorf("calls event without the call: %s", data)
			}
			seen[event]++
		}
	}
	if seen["calls"] < 3 || seen["status"] != 1 || seen["recent"] != 1 {
		t.Errorf("events seen %v: want calls every tick, status and recent once", seen)
	}
	// The stream limit: one more than maxStreams is refused.
	ev.open.Store(maxStreams)
	rec := httptest.NewRecorder()
	ev.serve(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 503 {
		t.Errorf("stream %d: %d, want 503", maxStreams+1, rec.Code)
	}
}
