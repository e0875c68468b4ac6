// Package admin is sipedge's HTTP admin API: JSON over HTTP, bound to
// localhost by default, every endpoint behind a bearer token, and the web
// dashboard (static files embedded in the binary, which read the same API
// with the token the admin pastes or opens it with). The CLI uses the same
// API. JSON field names are a stable contract: fields may be added, never
// renamed or repurposed.
package admin

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/sipedge/sipedge/calltrace"
)

// Peer is one registration (or a pinged trunk) as shown by `sipedge peer
// list`.
type Peer struct {
	// Kind is "registration" or "trunk" (a route with a keepalive; AOR
	// is then the route's name and Contact its URI).
	Kind       string   `json:"kind"`
	AOR        string   `json:"aor"`
	User       string   `json:"user"`
	Contact    string   `json:"contact"`     // as sent by the phone
	Transport  string   `json:"transport"`   // udp|tcp
	Remote     string   `json:"remote"`      // observed source ip:port
	Local      string   `json:"local"`       // our socket
	NAT        bool     `json:"nat"`         // NAT handling applies
	NATReasons []string `json:"nat_reasons"` // why NAT was detected
	// NATKind and NATExplain say in a word and in a sentence what the
	// reasons show: none|nat|nat-port-changed|port-changed-only|
	// via-ok-contact-not|invalid-host|forced ("" for trunks).
	NATKind    string    `json:"nat_kind"`
	NATExplain string    `json:"nat_explain"`
	Expires    time.Time `json:"expires"`
	ExpiresIn  int       `json:"expires_in"` // seconds
	UserAgent  string    `json:"user_agent"`
	Registered time.Time `json:"registered"`
	Updated    time.Time `json:"updated"`
	// Status is the keepalive status as text: "OK (23 ms)", "LAGGED
	// (1450 ms)", "UNREACHABLE", "UNKNOWN", "UNMONITORED" (CRLF pings),
	// or "" when the flow gets no keepalives.
	Status string `json:"status"`
	// Keepalive is the flow's keepalive state; null when it gets none.
	Keepalive *Keepalive `json:"keepalive"`
}

// Keepalive is what the keepalives know about a peer's flow.
type Keepalive struct {
	Status    string  `json:"status"` // unknown|ok|lagged|unreachable|unmonitored
	Method    string  `json:"method"` // options|crlf
	IntervalS int     `json:"interval_s"`
	RTTms     float64 `json:"rtt_ms"` // last answer
	MinRTTms  float64 `json:"min_rtt_ms"`
	AvgRTTms  float64 `json:"avg_rtt_ms"`
	// Misses in a row; Sent and Answered count pings.
	Misses     int       `json:"misses"`
	Sent       uint64    `json:"sent"`
	Answered   uint64    `json:"answered"`
	LastAnswer time.Time `json:"last_answer,omitzero"`
	NextPing   time.Time `json:"next_ping"`
	// Dialogs is the number of calls holding the flow open.
	Dialogs int `json:"dialogs"`
	// HistoryMS is the RTT of the most recent pings, oldest first; -1
	// for a ping that went unanswered.
	HistoryMS []float64 `json:"history_ms"`
}

// User is a provisioned SIP user (no secrets).
type User struct {
	Name   string `json:"name"`
	NAT    string `json:"nat,omitempty"`
	Source string `json:"source"` // "config" or "store"
}

// Ban is a banned source.
type Ban struct {
	IP       string    `json:"ip"`
	Until    time.Time `json:"until"`
	Reason   string    `json:"reason"`
	Failures int       `json:"failures"`
}

// Status is the server overview.
type Status struct {
	Version       string            `json:"version"`
	Started       time.Time         `json:"started"`
	Uptime        int64             `json:"uptime_seconds"`
	Listeners     []string          `json:"listeners"`
	Domains       []string          `json:"domains"`
	AORs          int               `json:"aors"`
	Registrations int               `json:"registrations"`
	NATed         int               `json:"nated"`
	Transactions  map[string]int    `json:"transactions"`
	Counters      map[string]uint64 `json:"counters"`
	HeapBytes     uint64            `json:"heap_bytes"`
	// External is sipedge's public address when it is behind a NAT
	// (external_address), null when it has none or has not learned it.
	External *External `json:"external"`
	// PortMappings are the mappings sipedge holds on its NAT router
	// (external_address = auto, pcp, natpmp or upnp).
	PortMappings []PortMapping `json:"port_mappings"`
}

// PortMapping is one port forwarded to sipedge by its router.
type PortMapping struct {
	Protocol  string    `json:"protocol"`  // pcp|natpmp|upnp
	Transport string    `json:"transport"` // udp|tcp
	Internal  string    `json:"internal"`
	External  string    `json:"external"`
	Expires   time.Time `json:"expires,omitzero"`
}

// External is the external address and how it was learned.
type External struct {
	Address string    `json:"address"`
	Source  string    `json:"source"` // static|dns|stun|pcp|natpmp|upnp
	Detail  string    `json:"detail"`
	Learned time.Time `json:"learned"`
	Changes uint64    `json:"changes"` // times it changed since start
}

// Call is one live call as shown by `sipedge call list`, or a recent call
// as it was when it ended.
type Call struct {
	CallID string `json:"call_id"`
	From   string `json:"from"`
	To     string `json:"to"`
	// State is ringing|answered while the call lives; ended|failed|
	// cancelled for a recent call (then Ended is set and Streams hold the
	// final counts).
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Answered time.Time `json:"answered,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
	Caller   CallLeg   `json:"caller"`
	Callee   CallLeg   `json:"callee"`
	// Relayed says whether the call's media goes through sipedge's relay;
	// MediaDecision says why (policy and NAT).
	Relayed       bool     `json:"relayed"`
	MediaDecision string   `json:"media_decision"`
	Streams       []Stream `json:"streams"`
	// Alarms lists the streams' alarms (one-way audio) in plain words.
	Alarms []string `json:"alarms,omitempty"`
}

// CallLeg is one side of a call.
type CallLeg struct {
	Flow string `json:"flow"` // transport:local->remote of its SIP
	NAT  bool   `json:"nat"`
	Name string `json:"name,omitempty"` // AOR or route (callee)
}

// Stream is one relayed m= line. Legs[0] is the caller's side, Legs[1]
// the callee's; each counts what the relay received FROM that side, so
// Legs[0] is the caller→callee direction.
type Stream struct {
	Index int          `json:"index"`
	Media string       `json:"media"`
	Legs  [2]StreamLeg `json:"legs"`
	Alarm string       `json:"alarm,omitempty"`
}

// StreamLeg is what the relay knows about one side of a stream.
type StreamLeg struct {
	RelayPort      int    `json:"relay_port"` // the relay's RTP port this side sends to
	Announced      string `json:"announced"`  // the side's SDP address
	Target         string `json:"target"`     // where the relay sends to this side
	Latched        bool   `json:"latched"`
	Locked         bool   `json:"locked"`
	Kernel         bool   `json:"kernel"` // forwarded by the in-kernel fast path now
	Hold           bool   `json:"hold"`
	RTCPMux        bool   `json:"rtcp_mux"`
	Packets        uint64 `json:"packets"`
	Bytes          uint64 `json:"bytes"`
	RTCPPackets    uint64 `json:"rtcp_packets"`
	DroppedForeign uint64 `json:"dropped_foreign"` // from unknown sources (injection)
	// Other drops: held back while a new source proved itself, not
	// RTP/RTCP from the phone, no address to send to yet.
	DroppedLearning  uint64    `json:"dropped_learning"`
	DroppedMalformed uint64    `json:"dropped_malformed"`
	DroppedNoTarget  uint64    `json:"dropped_no_target"`
	LastSeen         time.Time `json:"last_seen,omitzero"`
	Lost             int64     `json:"lost"`         // from RTP sequence numbers
	LossPercent      float64   `json:"loss_percent"` // of expected packets
	JitterMs         float64   `json:"jitter_ms"`    // RFC 3550 interarrival jitter
	// What the side's own RTCP reports say about what it receives.
	ReportedLossPercent float64 `json:"reported_loss_percent"`
	ReportedJitterMs    float64 `json:"reported_jitter_ms"`
}

// Backend is what the API shows and changes.
type Backend interface {
	Status() Status
	// Peers returns the page of peers q selects and how many it selects
	// in all (FilterPeers does it for a backend with a full list).
	Peers(q PeerQuery) (page []Peer, total int)
	Users() ([]User, error)
	AddUser(name, password, nat string) error
	DeleteUser(name string) (bool, error)
	Bans() []Ban
	Unban(ip string) bool
	Calls() []Call
	// EndCall hangs a call up (BYE to both sides); false if unknown.
	EndCall(id string) bool
	Metrics(w io.Writer)
	// RecentCalls lists the calls whose SIP trace is kept, newest first.
	RecentCalls() []calltrace.Summary
	// RecentCall is a recent call as it was when it ended.
	RecentCall(id string) (Call, bool)
	// CallTrace is the SIP trace of a live or recent call.
	CallTrace(id string) (calltrace.Trace, bool)
}

// CallTrace is a call's SIP messages and the ladder diagram drawn from
// them (GET /api/v1/calls/{id}/trace).
type CallTrace struct {
	calltrace.Trace
	Ladder calltrace.Ladder `json:"ladder"`
}

// ErrBadRequest wraps user errors that map to 400.
var ErrBadRequest = errors.New("admin: bad request")

// Handler returns the API's HTTP handler: the dashboard's static files
// at / and /ui/ (no data in them, so no token), everything else behind
// the bearer token.
func Handler(b Backend, token string, log *slog.Logger) http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, b.Status()) })
	api.HandleFunc("GET /api/v1/peers", func(w http.ResponseWriter, r *http.Request) { servePeers(w, r, b) })
	api.HandleFunc("GET /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
		us, err := b.Users()
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 200, nonNil(us))
	})
	api.HandleFunc("POST /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Name, Password, NAT string }
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil {
			writeJSON(w, 400, map[string]string{"error": "invalid JSON: " + err.Error()})
			return
		}
		if err := b.AddUser(in.Name, in.Password, in.NAT); err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, 201, map[string]string{"name": in.Name})
	})
	api.HandleFunc("DELETE /api/v1/users/{name}", func(w http.ResponseWriter, r *http.Request) {
		ok, err := b.DeleteUser(r.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		if !ok {
			writeJSON(w, 404, map[string]string{"error": "no such user"})
			return
		}
		w.WriteHeader(204)
	})
	api.HandleFunc("GET /api/v1/bans", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, nonNil(b.Bans())) })
	api.HandleFunc("DELETE /api/v1/bans/{ip}", func(w http.ResponseWriter, r *http.Request) {
		if !b.Unban(r.PathValue("ip")) {
			writeJSON(w, 404, map[string]string{"error": "not banned"})
			return
		}
		w.WriteHeader(204)
	})
	api.HandleFunc("GET /api/v1/calls", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, nonNil(b.Calls())) })
	api.HandleFunc("GET /api/v1/calls/recent", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, nonNil(b.RecentCalls()))
	})
	api.HandleFunc("GET /api/v1/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		for _, c := range b.Calls() {
			if c.CallID == id {
				writeJSON(w, 200, c)
				return
			}
		}
		if c, ok := b.RecentCall(id); ok {
			writeJSON(w, 200, c)
			return
		}
		writeJSON(w, 404, map[string]string{"error": "no such call"})
	})
	api.HandleFunc("GET /api/v1/calls/{id}/trace", func(w http.ResponseWriter, r *http.Request) {
		t, ok := b.CallTrace(r.PathValue("id"))
		if !ok {
			writeJSON(w, 404, map[string]string{"error": "no trace of that call (never seen, or no longer among the recent calls)"})
			return
		}
		writeJSON(w, 200, CallTrace{Trace: t, Ladder: calltrace.Analyze(t)})
	})
	api.HandleFunc("DELETE /api/v1/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !b.EndCall(r.PathValue("id")) {
			writeJSON(w, 404, map[string]string{"error": "no such answered call"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ev := &events{b: b}
	api.HandleFunc("GET /api/v1/events", ev.serve)
	api.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		b.Metrics(w)
	})
	// Profiling for operators, behind the same token.
	api.HandleFunc("GET /debug/pprof/", pprof.Index)
	api.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	api.HandleFunc("GET /debug/pprof/heap", pprof.Handler("heap").ServeHTTP)
	api.HandleFunc("GET /debug/pprof/goroutine", pprof.Handler("goroutine").ServeHTTP)
	api.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 404, map[string]string{"error": "no such endpoint"})
	})

	want := []byte("Bearer " + token)
	authed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sipedge"`)
			writeJSON(w, 401, map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		if r.Method != http.MethodGet && r.Header.Get("Origin") != "" && !sameHost(r) {
			writeJSON(w, 403, map[string]string{"error": "cross-origin request refused"})
			return
		}
		api.ServeHTTP(w, r)
	})
	root := http.NewServeMux()
	ui := uiHandler()
	root.Handle("GET /{$}", ui)
	root.Handle("GET /ui/", ui)
	root.Handle("/", authed)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		root.ServeHTTP(w, r)
	})
}

// nonNil makes a nil slice encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func sameHost(r *http.Request) bool {
	o := r.Header.Get("Origin")
	o = strings.TrimPrefix(strings.TrimPrefix(o, "http://"), "https://")
	return o == r.Host
}

func writeErr(w http.ResponseWriter, err error) {
	code := 500
	if errors.Is(err, ErrBadRequest) {
		code = 400
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Serve runs the API on l until it is closed, over TLS when tc is not nil.
// Event streams lift the write timeout for themselves.
func Serve(l net.Listener, h http.Handler, tc *tls.Config) *http.Server {
	// Shutdown waits for running requests but does not cancel them: the
	// base context is cancelled on shutdown so event streams end too.
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, TLSConfig: tc,
		ErrorLog:    slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return ctx }}
	srv.RegisterOnShutdown(cancel)
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	go func() { _ = srv.Serve(l) }()
	return srv
}
