package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/auth"
	"github.com/sipedge/sipedge/keepalive"
	"github.com/sipedge/sipedge/location"
	"github.com/sipedge/sipedge/proxy"
	"github.com/sipedge/sipedge/relay"
	"github.com/sipedge/sipedge/sipnat"
	"github.com/sipedge/sipedge/sipx"
)

// Version is set at build time.
var Version = "dev"

// metrics are the edge's counters (Prometheus text format on /metrics).
type metrics struct {
	mu                 sync.Mutex
	requests           map[string]uint64
	responses          map[string]uint64
	authOK, authFailed atomic.Uint64
	scannerDrops       atomic.Uint64
	stunAnswered       atomic.Uint64 // STUN Binding requests on SIP ports
}

func (m *metrics) init() {
	m.requests = map[string]uint64{}
	m.responses = map[string]uint64{}
}

func (m *metrics) countRequest(method string) {
	m.mu.Lock()
	m.requests[method]++
	m.mu.Unlock()
}

func (m *metrics) countResponse(code int) {
	k := fmt.Sprintf("%dxx", code/100)
	m.mu.Lock()
	m.responses[k]++
	m.mu.Unlock()
}

// startAdmin opens the admin API listener unless disabled.
func (e *Edge) startAdmin() error {
	tok := e.cfg.Admin.Token
	if tok == "" {
		s, err := readOrCreateSecret(filepath.Join(e.cfg.DataDir, "admin.token"), 24)
		if err != nil {
			return err
		}
		tok = s
	}
	e.adminToken = tok
	if e.cfg.AdminDisabled() {
		return nil
	}
	var tc *tls.Config
	if a := e.cfg.Admin; a.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey)
		if err != nil {
			return fmt.Errorf("edge: admin TLS certificate: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", e.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("edge: admin listen %s: %w", e.cfg.Admin.Listen, err)
	}
	e.adminAddr = l.Addr().String()
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	e.log.Info("admin API and dashboard", "url", scheme+"://"+e.adminAddr+"/", "hint", "sipedge dashboard prints a link with the token")
	srv := admin.Serve(l, admin.Handler(e, tok, e.log), tc)
	e.closers = append(e.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return nil
}

// Status implements admin.Backend.
func (e *Edge) Status() admin.Status {
	aors, regs := e.loc.Count()
	nated := 0
	// The dashboard's event stream asks every 5 s: count without copies.
	e.loc.Each(func(b *location.Binding) bool {
		if b.NAT {
			nated++
		}
		return true
	})
	sv, cl := e.stack.Transactions()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var doms []string
	doms = append(doms, e.cfg.Domains...)
	var ext *admin.External
	if addr, source, detail, learned := e.External(); addr.IsValid() {
		ext = &admin.External{Address: addr.String(), Source: source, Detail: detail, Learned: learned, Changes: e.ext.changes.Load()}
	}
	pms := []admin.PortMapping{}
	for _, m := range e.PortMappings() {
		pms = append(pms, admin.PortMapping{Protocol: string(m.Protocol), Transport: m.Transport,
			Internal: m.Internal.String(), External: m.External.String(), Expires: m.Expires})
	}
	return admin.Status{
		External: ext, PortMappings: pms,
		Version: Version, Started: e.started, Uptime: int64(time.Since(e.started) / time.Second),
		Listeners: append(e.Listeners(), e.STUNListeners()...), Domains: doms, AORs: aors, Registrations: regs, NATed: nated,
		Transactions: map[string]int{"server": sv, "client": cl},
		Counters:     e.counters(), HeapBytes: ms.HeapAlloc,
	}
}

func (e *Edge) counters() map[string]uint64 {
	st := &e.stack.Stats
	gs := e.guard.Stats()
	c := map[string]uint64{
		"sip_rx_packets": st.RxPackets.Load(), "sip_tx_packets": st.TxPackets.Load(),
		"sip_parse_errors": st.ParseErrors.Load(), "sip_dropped": st.Dropped.Load(),
		"sip_keepalives": st.Keepalives.Load(), "sip_retransmissions": st.Retransmissions.Load(),
		"sip_tx_timeouts": st.TxTimeouts.Load(),
		"auth_ok":         e.metrics.authOK.Load(), "auth_failed": e.metrics.authFailed.Load(),
		"scanner_drops": e.metrics.scannerDrops.Load(), "sip_stun_answered": e.metrics.stunAnswered.Load(),
		"guard_rate_limited": gs.RateLimited, "guard_banned_drops": gs.BannedDrops, "guard_bans": gs.BansIssued,
	}
	stunCounters(c, e.stunStats())
	e.metrics.mu.Lock()
	for k, v := range e.metrics.requests {
		c["requests_"+k] = v
	}
	for k, v := range e.metrics.responses {
		c["responses_"+k] = v
	}
	e.metrics.mu.Unlock()
	return c
}

// Peers implements admin.Backend: registrations and pinged trunks. The
// selection runs on the stored bindings and only the page is built, so a
// dashboard page costs little with 100,000 registrations.
func (e *Edge) Peers(q admin.PeerQuery) ([]admin.Peer, int) {
	flowStatus := func(f sipx.Flow) func() string {
		return func() string {
			st, ok := e.ka.State(f)
			if !ok {
				return admin.PeerStatus(nil)
			}
			return st.Status.String()
		}
	}
	// Select on the stored bindings without copying them; keep only the
	// sort keys, and fetch the page's bindings afterwards. Trunks (a few)
	// sort in among them; trunk is their index, -1 for a registration.
	type ref struct {
		aor, contact string
		trunk        int
	}
	_, n := e.loc.Count()
	sel := make([]ref, 0, n+len(e.trunks))
	e.loc.Each(func(b *location.Binding) bool {
		remote := ""
		if q.Q != "" {
			remote = b.Flow.Remote.String()
		}
		var status func() string // only when asked: it costs a closure and a lookup
		if q.Status != "" {
			status = flowStatus(b.Flow)
		}
		if q.Matches(b.AOR, b.Contact, remote, b.UserAgent, b.NAT, status) {
			sel = append(sel, ref{b.AOR, b.Contact, -1})
		}
		return true
	})
	for i, t := range e.trunks {
		if q.Matches(t.name, t.to, t.flow.Remote.String(), "", false, flowStatus(t.flow)) {
			sel = append(sel, ref{t.name, t.to, i})
		}
	}
	sort.Slice(sel, func(i, j int) bool { return admin.PeerLess(sel[i].aor, sel[i].contact, sel[j].aor, sel[j].contact) })
	from, to := q.Page(len(sel))
	out := make([]admin.Peer, 0, to-from)
	now := time.Now()
	for _, r := range sel[from:to] {
		if r.trunk >= 0 {
			out = append(out, e.trunkPeer(e.trunks[r.trunk]))
			continue
		}
		// A binding that went away since the scan is left out.
		for _, b := range e.loc.Lookup(r.aor) {
			if b.Contact == r.contact {
				out = append(out, e.bindingPeer(b, now))
			}
		}
	}
	return out, len(sel)
}

func (e *Edge) bindingPeer(b location.Binding, now time.Time) admin.Peer {
	status, ka := keepaliveView(e.ka.State(b.Flow))
	rs := make([]sipnat.Reason, len(b.NATReasons))
	for i, r := range b.NATReasons {
		rs[i] = sipnat.Reason(r)
	}
	kind, why := sipnat.Explain(rs)
	return admin.Peer{NATKind: kind, NATExplain: why,
		Kind: "registration", AOR: b.AOR, User: b.User, Contact: b.Contact, Transport: b.Flow.Transport,
		Remote: b.Flow.Remote.String(), Local: b.Flow.Local.String(), NAT: b.NAT,
		NATReasons: append([]string{}, b.NATReasons...), Expires: b.Expires,
		ExpiresIn: int(b.Expires.Sub(now) / time.Second), UserAgent: b.UserAgent,
		Registered: b.Registered, Updated: b.Updated, Status: status, Keepalive: ka,
	}
}

func (e *Edge) trunkPeer(t trunkPing) admin.Peer {
	status, ka := keepaliveView(e.ka.State(t.flow))
	return admin.Peer{
		Kind: "trunk", AOR: t.name, Contact: t.to, Transport: t.flow.Transport,
		Remote: t.flow.Remote.String(), Local: t.flow.Local.String(), NATReasons: []string{},
		Status: status, Keepalive: ka,
	}
}

// Users implements admin.Backend.
func (e *Edge) Users() ([]admin.User, error) {
	stored, err := e.stored.List()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []admin.User
	for _, u := range e.cfg.Users {
		seen[u.Name] = true
		out = append(out, admin.User{Name: u.Name, NAT: u.NAT, Source: "config"})
	}
	for _, u := range stored {
		if !seen[u.Name] {
			out = append(out, admin.User{Name: u.Name, NAT: u.NAT, Source: "store"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddUser implements admin.Backend.
func (e *Edge) AddUser(name, password, nat string) error {
	if err := auth.ValidUserName(name); err != nil {
		return fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	if password == "" {
		return fmt.Errorf("%w: password required", admin.ErrBadRequest)
	}
	switch nat {
	case "", "auto", "force", "never":
	default:
		return fmt.Errorf("%w: nat must be auto, force or never", admin.ErrBadRequest)
	}
	return e.users.Put(auth.NewUser(name, e.cfg.Realm(), password, nat))
}

// DeleteUser implements admin.Backend.
func (e *Edge) DeleteUser(name string) (bool, error) {
	ok, err := e.users.Delete(name)
	if errors.Is(err, auth.ErrConfigUser) {
		return false, fmt.Errorf("%w: %v", admin.ErrBadRequest, err)
	}
	return ok, err
}

// Bans implements admin.Backend.
func (e *Edge) Bans() []admin.Ban {
	var out []admin.Ban
	for _, b := range e.guard.Bans() {
		out = append(out, admin.Ban{IP: b.IP.String(), Until: b.Until, Reason: b.Reason, Failures: b.Failures})
	}
	return out
}

// Unban implements admin.Backend.
func (e *Edge) Unban(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	return e.guard.Unban(a)
}

// Metrics implements admin.Backend (Prometheus text exposition).
func (e *Edge) Metrics(w io.Writer) {
	st := e.Status()
	fmt.Fprintf(w, "# TYPE sipedge_registrations gauge\nsipedge_registrations %d\n", st.Registrations)
	fmt.Fprintf(w, "# TYPE sipedge_registrations_nated gauge\nsipedge_registrations_nated %d\n", st.NATed)
	fmt.Fprintf(w, "# TYPE sipedge_transactions gauge\nsipedge_transactions{side=\"server\"} %d\nsipedge_transactions{side=\"client\"} %d\n",
		st.Transactions["server"], st.Transactions["client"])
	keys := make([]string, 0, len(st.Counters))
	for k := range st.Counters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var methods []string
	for _, k := range keys {
		if m, ok := strings.CutPrefix(k, "requests_"); ok {
			methods = append(methods, m)
			continue
		}
		if strings.HasPrefix(k, "responses_") {
			continue // the registrar's own; all are in sipedge_sip_transactions_total
		}
		fmt.Fprintf(w, "# TYPE sipedge_%s_total counter\nsipedge_%s_total %d\n", k, k, st.Counters[k])
	}
	fmt.Fprintf(w, "# TYPE sipedge_sip_requests_total counter\n")
	for _, m := range methods {
		fmt.Fprintf(w, "sipedge_sip_requests_total{method=%q} %d\n", m, st.Counters["requests_"+m])
	}
	// Final responses by method and class: "server" is what sipedge
	// answered (itself or relaying the callee's answer), "client" what the
	// next hops answered sipedge.
	fmt.Fprintf(w, "# TYPE sipedge_sip_transactions_total counter\n")
	for _, side := range []struct {
		name string
		c    *sipx.TxCounts
	}{{"server", &e.stack.Stats.Server}, {"client", &e.stack.Stats.Client}} {
		side.c.Each(func(method, class string, n uint64) {
			fmt.Fprintf(w, "sipedge_sip_transactions_total{side=%q,method=%q,class=%q} %d\n", side.name, method, class, n)
		})
	}
	fmt.Fprintf(w, "# TYPE sipedge_bans gauge\nsipedge_bans %d\n", len(e.guard.Bans()))
	if st.Registrations > 0 {
		fmt.Fprintf(w, "# TYPE sipedge_registrations_nated_ratio gauge\nsipedge_registrations_nated_ratio %g\n", float64(st.NATed)/float64(st.Registrations))
	}
	rt := e.relay.Totals()
	calls := e.proxy.Calls()
	answered := 0
	for _, c := range calls {
		if c.State == "answered" {
			answered++
		}
	}
	fmt.Fprintf(w, "# TYPE sipedge_calls gauge\nsipedge_calls{state=\"ringing\"} %d\nsipedge_calls{state=\"answered\"} %d\n", len(calls)-answered, answered)
	fmt.Fprintf(w, "# TYPE sipedge_relay_sessions gauge\nsipedge_relay_sessions %d\n", rt.Sessions)
	fmt.Fprintf(w, "# TYPE sipedge_relay_ports_in_use gauge\nsipedge_relay_ports_in_use %d\n", rt.PortsInUse)
	fmt.Fprintf(w, "# TYPE sipedge_relay_packets_total counter\nsipedge_relay_packets_total{direction=\"caller_to_callee\"} %d\nsipedge_relay_packets_total{direction=\"callee_to_caller\"} %d\n", rt.PacketsAtoB, rt.PacketsBtoA)
	fmt.Fprintf(w, "# TYPE sipedge_relay_bytes_total counter\nsipedge_relay_bytes_total{direction=\"caller_to_callee\"} %d\nsipedge_relay_bytes_total{direction=\"callee_to_caller\"} %d\n", rt.BytesAtoB, rt.BytesBtoA)
	fmt.Fprintf(w, "# TYPE sipedge_relay_dropped_total counter\n")
	for _, d := range []struct {
		reason string
		n      uint64
	}{{"foreign_source", rt.DroppedForeign}, {"learning", rt.DroppedLearning}, {"no_target", rt.DroppedNoTarget}, {"malformed", rt.DroppedMalformed}, {"send_error", rt.SendErrors}} {
		fmt.Fprintf(w, "sipedge_relay_dropped_total{reason=%q} %d\n", d.reason, d.n)
	}
	fmt.Fprintf(w, "# TYPE sipedge_relay_timeouts_total counter\nsipedge_relay_timeouts_total %d\n", rt.Timeouts)
	fmt.Fprintf(w, "# TYPE sipedge_relay_kernel_legs gauge\nsipedge_relay_kernel_legs %d\n", rt.KernelLegs)
	fmt.Fprintf(w, "# TYPE sipedge_relay_kernel_packets_total counter\nsipedge_relay_kernel_packets_total %d\n", rt.KernelPackets)
	e.keepaliveMetrics(w)
	stunMetrics(w, e.stunStats())
	if st.External != nil {
		fmt.Fprintf(w, "# TYPE sipedge_external_address_info gauge\nsipedge_external_address_info{address=%q,source=%q} 1\n", st.External.Address, st.External.Source)
	}
	fmt.Fprintf(w, "# TYPE sipedge_external_address_changes_total counter\nsipedge_external_address_changes_total %d\n", e.ext.changes.Load())
}

// keepaliveMetrics writes the keepalive gauges, counters and the RTT
// histogram.
func (e *Edge) keepaliveMetrics(w io.Writer) {
	counts := e.ka.Counts()
	fmt.Fprintf(w, "# TYPE sipedge_keepalive_flows gauge\n")
	for s := keepalive.Unknown; s <= keepalive.Unmonitored; s++ {
		fmt.Fprintf(w, "sipedge_keepalive_flows{status=%q} %d\n", s.String(), counts[s])
	}
	for _, c := range []struct {
		name string
		v    uint64
	}{{"pings", e.ka.Pings.Load()}, {"answers", e.ka.Answers.Load()}, {"missed", e.ka.Missed.Load()},
		{"status_changes", e.ka.Changes.Load()}, {"send_errors", e.ka.SendErrors.Load()}} {
		fmt.Fprintf(w, "# TYPE sipedge_keepalive_%s_total counter\nsipedge_keepalive_%s_total %d\n", c.name, c.name, c.v)
	}
	buckets, sum := e.ka.RTT().Snapshot()
	fmt.Fprintf(w, "# TYPE sipedge_keepalive_rtt_seconds histogram\n")
	var cum uint64
	for i, n := range buckets {
		cum += n
		le := "+Inf"
		if i < len(keepalive.RTTBuckets) {
			le = strconv.FormatFloat(keepalive.RTTBuckets[i].Seconds(), 'g', -1, 64)
		}
		fmt.Fprintf(w, "sipedge_keepalive_rtt_seconds_bucket{le=%q} %d\n", le, cum)
	}
	fmt.Fprintf(w, "sipedge_keepalive_rtt_seconds_sum %g\nsipedge_keepalive_rtt_seconds_count %d\n", sum.Seconds(), cum)
}

// TokenFile is where the admin token lives in a data dir.
func TokenFile(dataDir string) string { return filepath.Join(dataDir, "admin.token") }

// Calls implements admin.Backend: the proxy's live calls with the relay's
// view of their media.
func (e *Edge) Calls() []admin.Call {
	var out []admin.Call
	for _, c := range e.proxy.Calls() {
		out = append(out, e.adminCall(c))
	}
	return out
}

// adminCall is a proxy call with the relay's view of its media.
func (e *Edge) adminCall(c proxy.Call) admin.Call {
	ac := admin.Call{CallID: c.CallID, From: c.From, To: c.To, State: c.State,
		Started: c.Started, Answered: c.Answered,
		Caller: admin.CallLeg(c.Caller), Callee: admin.CallLeg(c.Callee), Streams: []admin.Stream{}}
	if ac.Caller.Name == "" {
		ac.Caller.Name = strings.TrimPrefix(strings.TrimPrefix(c.From, "sip:"), "sips:")
	}
	in, ok := e.anchor.Info(c.CallID)
	if !ok {
		ac.MediaDecision = "no SDP seen"
		return ac
	}
	ac.Relayed, ac.MediaDecision = in.Relayed, in.Reason
	if in.Media != nil {
		for _, s := range in.Media.Streams {
			as := admin.Stream{Index: s.Index, Media: s.Media, Alarm: s.Alarm,
				Legs: [2]admin.StreamLeg{streamLeg(s.A), streamLeg(s.B)}}
			ac.Streams = append(ac.Streams, as)
			if s.Alarm != "" {
				ac.Alarms = append(ac.Alarms, fmt.Sprintf("stream %d (%s): %s", s.Index, s.Media, s.Alarm))
			}
		}
	}
	return ac
}

func streamLeg(l relay.LegInfo) admin.StreamLeg {
	sl := admin.StreamLeg{RelayPort: l.LocalRTP, Latched: l.Latched, Locked: l.Locked, Kernel: l.Kernel, Hold: l.Hold, RTCPMux: l.RTCPMux,
		Packets: l.Packets, Bytes: l.Bytes, RTCPPackets: l.RTCPPackets, DroppedForeign: l.DroppedForeign,
		DroppedLearning: l.DroppedLearning, DroppedMalformed: l.DroppedMalformed, DroppedNoTarget: l.DroppedNoTarget,
		LastSeen: l.LastSeen, Lost: l.Lost, LossPercent: l.LossPercent, JitterMs: l.JitterMS}
	if l.Announced.IsValid() {
		sl.Announced = l.Announced.String()
	}
	if l.Target.IsValid() {
		sl.Target = l.Target.String()
	}
	if r := l.Report; r != nil {
		sl.ReportedLossPercent, sl.ReportedJitterMs = r.FractionLost*100, r.JitterMS
	}
	return sl
}

// EndCall implements admin.Backend.
func (e *Edge) EndCall(id string) bool { return e.proxy.EndCall(id, "ended by the administrator") }
