// Package admin is sipedge's HTTP admin API: JSON over HTTP, bound to
// localhost by default, every endpoint behind a bearer token. The CLI and
// (later) the dashboard use the same API. JSON field names are a stable
// contract: fields may be added, never renamed or repurposed.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"
)

// Peer is one registration (or a pinged trunk) as shown by `sipedge peer
// list`.
type Peer struct {
	// Kind is "registration" or "trunk" (a route with a keepalive; AOR
	// is then the route's name and Contact its URI).
	Kind       string    `json:"kind"`
	AOR        string    `json:"aor"`
	User       string    `json:"user"`
	Contact    string    `json:"contact"`     // as sent by the phone
	Transport  string    `json:"transport"`   // udp|tcp
	Remote     string    `json:"remote"`      // observed source ip:port
	Local      string    `json:"local"`       // our socket
	NAT        bool      `json:"nat"`         // NAT handling applies
	NATReasons []string  `json:"nat_reasons"` // why NAT was detected
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

// Call is one live call as shown by `sipedge call list`.
type Call struct {
	CallID   string    `json:"call_id"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	State    string    `json:"state"` // ringing|answered
	Started  time.Time `json:"started"`
	Answered time.Time `json:"answered,omitzero"`
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
	Peers() []Peer
	Users() ([]User, error)
	AddUser(name, password, nat string) error
	DeleteUser(name string) (bool, error)
	Bans() []Ban
	Unban(ip string) bool
	Calls() []Call
	// EndCall hangs a call up (BYE to both sides); false if unknown.
	EndCall(id string) bool
	Metrics(w io.Writer)
}

// ErrBadRequest wraps user errors that map to 400.
var ErrBadRequest = errors.New("admin: bad request")

// Handler returns the API's HTTP handler.
func Handler(b Backend, token string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, b.Status()) })
	mux.HandleFunc("GET /api/v1/peers", func(w http.ResponseWriter, r *http.Request) {
		ps := b.Peers()
		sort.Slice(ps, func(i, j int) bool {
			if ps[i].AOR != ps[j].AOR {
				return ps[i].AOR < ps[j].AOR
			}
			return ps[i].Contact < ps[j].Contact
		})
		if ps == nil {
			ps = []Peer{}
		}
		writeJSON(w, 200, ps)
	})
	mux.HandleFunc("GET /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
		us, err := b.Users()
		if err != nil {
			writeErr(w, err)
			return
		}
		if us == nil {
			us = []User{}
		}
		writeJSON(w, 200, us)
	})
	mux.HandleFunc("POST /api/v1/users", func(w http.ResponseWriter, r *http.Request) {
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
	mux.HandleFunc("DELETE /api/v1/users/{name}", func(w http.ResponseWriter, r *http.Request) {
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
	mux.HandleFunc("GET /api/v1/bans", func(w http.ResponseWriter, r *http.Request) {
		bs := b.Bans()
		if bs == nil {
			bs = []Ban{}
		}
		writeJSON(w, 200, bs)
	})
	mux.HandleFunc("DELETE /api/v1/bans/{ip}", func(w http.ResponseWriter, r *http.Request) {
		if !b.Unban(r.PathValue("ip")) {
			writeJSON(w, 404, map[string]string{"error": "not banned"})
			return
		}
		w.WriteHeader(204)
	})
	mux.HandleFunc("GET /api/v1/calls", func(w http.ResponseWriter, r *http.Request) {
		cs := b.Calls()
		if cs == nil {
			cs = []Call{}
		}
		writeJSON(w, 200, cs)
	})
	mux.HandleFunc("GET /api/v1/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		for _, c := range b.Calls() {
			if c.CallID == id {
				writeJSON(w, 200, c)
				return
			}
		}
		writeJSON(w, 404, map[string]string{"error": "no such call"})
	})
	mux.HandleFunc("DELETE /api/v1/calls/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !b.EndCall(r.PathValue("id")) {
			writeJSON(w, 404, map[string]string{"error": "no such answered call"})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		b.Metrics(w)
	})
	// Profiling for operators, behind the same token.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/heap", pprof.Handler("heap").ServeHTTP)
	mux.HandleFunc("GET /debug/pprof/goroutine", pprof.Handler("goroutine").ServeHTTP)
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
		mux.ServeHTTP(w, r)
	})
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

// Serve runs the API on l until it is closed.
func Serve(l net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return srv
}
