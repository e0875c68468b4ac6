package natprobe

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipedge/sipedge/stun"
)

// DefaultPort is the STUN port used when the server has none.
const DefaultPort = 3478

// Defaults of Config.
const (
	DefaultRTO         = 250 * time.Millisecond
	DefaultTries       = 4
	DefaultLifetimeMax = 120 * time.Second
	DefaultSoftware    = "sipedge natprobe" // 16 bytes: classic RFC 3489 servers (stund) drop attributes not a multiple of 4 long
)

// DefaultLifetimeSteps are the idle times of the binding lifetime test,
// cut at Config.LifetimeMax (which is added when it falls between two).
var DefaultLifetimeSteps = []time.Duration{
	5 * time.Second, 10 * time.Second, 15 * time.Second, 20 * time.Second,
	25 * time.Second, 30 * time.Second, 45 * time.Second, 60 * time.Second,
	90 * time.Second, 120 * time.Second,
}

// Config configures Probe.
type Config struct {
	// Server is the STUN server, "host", "host:port", "ip", "[v6]:port";
	// the port defaults to 3478.
	Server string
	// Bind is the local address of the main socket: "", "IP", "IP:PORT"
	// or ":PORT". By default the probe binds to the address that routes to
	// the server, any port. The other sockets use the same IP.
	Bind string
	// RTO and Tries shorten the RFC 8489 retransmission schedule: Tries
	// transmissions, RTO doubling, then 4 RTOs of waiting (250 ms and 4:
	// 2.75 s without an answer). Defaults DefaultRTO, DefaultTries.
	RTO   time.Duration
	Tries int
	// Lifetime runs the binding lifetime test, which takes up to
	// LifetimeMax (default 120 s) more. LifetimeSteps replaces
	// DefaultLifetimeSteps.
	Lifetime      bool
	LifetimeMax   time.Duration
	LifetimeSteps []time.Duration
	// Progress, if set, is told what the probe is doing, one line at a
	// time (never concurrently).
	Progress func(string)
	// Software is sent as SOFTWARE; default DefaultSoftware.
	Software string
}

// ErrNoAnswer is what a NoAnswerError matches with errors.Is.
var ErrNoAnswer = errors.New("natprobe: no STUN answer")

// NoAnswerError is returned when the server does not answer at all.
type NoAnswerError struct {
	Server string        // as given
	Wait   time.Duration // how long the probe waited
}

func (e *NoAnswerError) Error() string {
	return fmt.Sprintf("no STUN answer from %s within %s s: UDP blocked or wrong server",
		e.Server, strconv.FormatFloat(math.Round(e.Wait.Seconds()*10)/10, 'f', -1, 64))
}

// Is makes errors.Is(err, ErrNoAnswer) true.
func (e *NoAnswerError) Is(target error) bool { return target == ErrNoAnswer }

type prober struct {
	cfg    Config
	bindIP netip.Addr // IP all sockets bind to (maybe the wildcard)
	repIP  netip.Addr // IP reported for a wildcard bind

	progMu sync.Mutex
	sockMu sync.Mutex
	socks  []*sock
}

func (p *prober) progress(format string, args ...any) {
	if p.cfg.Progress == nil {
		return
	}
	p.progMu.Lock()
	defer p.progMu.Unlock()
	p.cfg.Progress(fmt.Sprintf(format, args...))
}

// open opens a socket on the probe's IP.
func (p *prober) open(port uint16) (*sock, error) {
	s, err := listen(netip.AddrPortFrom(p.bindIP, port), p.repIP)
	if err != nil {
		return nil, fmt.Errorf("natprobe: %w", err)
	}
	p.sockMu.Lock()
	p.socks = append(p.socks, s)
	p.sockMu.Unlock()
	return s, nil
}

func (p *prober) closeAll() {
	p.sockMu.Lock()
	defer p.sockMu.Unlock()
	for _, s := range p.socks {
		s.close()
	}
	p.socks = nil
}

func (c *Config) setDefaults() error {
	if c.RTO <= 0 {
		c.RTO = DefaultRTO
	}
	if c.Tries <= 0 {
		c.Tries = DefaultTries
	}
	if c.Tries > 10 {
		return errors.New("natprobe: at most 10 tries")
	}
	if c.LifetimeMax <= 0 {
		c.LifetimeMax = DefaultLifetimeMax
	}
	if c.Software == "" {
		c.Software = DefaultSoftware
	}
	if strings.TrimSpace(c.Server) == "" {
		return errors.New("natprobe: no STUN server given")
	}
	return nil
}

// steps returns the lifetime test's idle times, ascending, up to max.
func (c *Config) steps() []time.Duration {
	src := c.LifetimeSteps
	if len(src) == 0 {
		src = DefaultLifetimeSteps
	}
	var out []time.Duration
	for _, d := range src {
		if d > 0 && d <= c.LifetimeMax {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(c.LifetimeSteps) == 0 && (len(out) == 0 || out[len(out)-1] < c.LifetimeMax) {
		out = append(out, c.LifetimeMax)
	}
	return out
}

// Probe discovers, from where it runs, the public address and the NAT's
// behaviour using the STUN server cfg.Server (RFC 5780 for the mapping
// and filtering tests). It returns a Report even for a NAT that breaks
// SIP; an error means the probe could not run: bad configuration, no
// answer at all (a *NoAnswerError, with a Report saying "UDP blocked"), an
// error response to the first request, or ctx ending.
//
// Without Lifetime, the probe takes about one round trip plus, when some
// answers are filtered, one retransmission schedule (2.75 s by default);
// never more than a few such schedules. With Lifetime it takes up to
// LifetimeMax longer (less when a binding expires early). Independent
// tests use separate sockets and run concurrently.
func Probe(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	start := time.Now()
	p := &prober{cfg: cfg}
	defer p.closeAll()

	bind, err := parseBind(cfg.Bind)
	if err != nil {
		return nil, err
	}
	name, server, err := resolveServer(ctx, cfg.Server, bind.Addr())
	if err != nil {
		return nil, err
	}
	p.bindIP = bind.Addr()
	if !p.bindIP.IsValid() || p.bindIP.IsUnspecified() {
		ip, err := routedIP(server)
		if err != nil {
			return nil, fmt.Errorf("natprobe: no route to %s: %w", server, err)
		}
		p.repIP = ip
		if !p.bindIP.IsValid() {
			p.bindIP = ip
		} else if ip.Is4() {
			p.bindIP = netip.IPv4Unspecified()
		} else {
			p.bindIP = netip.IPv6Unspecified()
		}
	}

	total := 4*p.exchangeBound() + 5*time.Second
	if cfg.Lifetime {
		total += cfg.LifetimeMax + 2*p.exchangeBound()
	}
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()

	rep := &Report{
		Server:      ServerInfo{Name: name, Address: server.String()},
		Mapping:     Unknown,
		Filtering:   Unknown,
		RFC3489Name: NameUnknown,
		Tests:       []Test{},
		Advice:      []string{},
	}
	defer func() { rep.DurationS = math.Round(time.Since(start).Seconds()*1000) / 1000 }()

	a, err := p.open(bind.Port())
	if err != nil {
		return nil, err
	}
	rep.LocalAddress = a.local.String()

	// Test I: the public address, the server's abilities, rewriting.
	p.progress("binding: Binding request from %s to %s", a.local, server)
	e1 := p.transact(ctx, a, server, nil)
	rep.Tests = append(rep.Tests, p.record("binding", a, server, "Binding", e1))
	if e1.err != nil {
		if ctx.Err() != nil {
			return rep, fmt.Errorf("natprobe: %w", ctx.Err())
		}
		if errors.Is(e1.err, stun.ErrTimeout) {
			o := Outcomes{}
			rep.RFC3489Name, rep.Advice = RFC3489Name(o), Advice(o)
			nae := &NoAnswerError{Server: name, Wait: p.exchangeBound()}
			rep.Error = nae.Error()
			return rep, nae
		}
		err := fmt.Errorf("natprobe: %s cannot be probed: %w", name, e1.err)
		rep.Error = err.Error()
		return rep, err
	}
	r1 := e1.res
	mapped := r1.Mapped
	rep.PublicAddress = mapped.String()
	rep.NATPresent = mapped != a.local
	rep.Server.Software = r1.Software
	rep.Server.ClassicRFC3489 = !r1.XORMapped.IsValid()
	if r1.ResponseOrigin.IsValid() {
		rep.Server.ResponseOrigin = r1.ResponseOrigin.String()
	}
	rep.Rewriting = rewriting(r1, a.local)
	other := r1.OtherAddress
	switch {
	case !other.IsValid():
		rep.Server.Notes = append(rep.Server.Notes, "no OTHER-ADDRESS: not an RFC 5780 server; only the public address, rewriting and hairpinning can be tested")
	case other.Addr().Is4() != server.Addr().Is4() || other == server:
		rep.Server.Notes = append(rep.Server.Notes, "OTHER-ADDRESS "+other.String()+" is unusable (same as the server, or another address family)")
		other = netip.AddrPort{}
	default:
		rep.Server.RFC5780 = true
		rep.Server.OtherAddress = other.String()
		if other.Addr() == server.Addr() {
			rep.Server.Notes = append(rep.Server.Notes, "OTHER-ADDRESS has the server's own IP: only port changes can be tested")
		} else if other.Port() == server.Port() {
			rep.Server.Notes = append(rep.Server.Notes, "OTHER-ADDRESS has the server's own port: only IP changes can be tested")
		}
	}
	if rep.NATPresent {
		p.progress("public address %s: NAT present (local %s)", mapped, a.local)
	} else {
		p.progress("public address %s: no NAT", mapped)
	}

	// The other tests are independent: separate sockets, concurrent.
	var wg sync.WaitGroup
	var mapEx, filtEx [2]exchange
	var mapTests, filtTests, hairTests, lifeTests []Test
	if other.IsValid() {
		wg.Add(2)
		go func() {
			defer wg.Done()
			mapEx, mapTests = p.mappingTests(ctx, a, server, other)
		}()
		go func() {
			defer wg.Done()
			filtEx, filtTests = p.filteringTests(ctx, server, other)
		}()
	}
	hairpin, hairSrc := TriUnknown, ""
	if rep.NATPresent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hairpin, hairSrc, hairTests = p.hairpinTest(ctx, a, mapped, server)
		}()
	} else {
		hairTests = []Test{{Name: "hairpin", From: "-", To: mapped.String(), Request: "-", Outcome: "skipped: no NAT"}}
	}
	var life *Lifetime
	var respPort Tri
	if cfg.Lifetime {
		wg.Add(1)
		go func() {
			defer wg.Done()
			life, lifeTests, respPort = p.lifetimeTest(ctx, server)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("natprobe: %w", err)
	}

	rep.Tests = append(rep.Tests, mapTests...)
	rep.Tests = append(rep.Tests, filtTests...)
	rep.Tests = append(rep.Tests, hairTests...)
	rep.Tests = append(rep.Tests, lifeTests...)
	if other.IsValid() {
		var note string
		rep.Mapping, note = decideMapping(server, other, mapped, mapEx)
		if note != "" {
			rep.Server.Notes = append(rep.Server.Notes, "mapping: "+note)
		}
		altAlive := mapEx[0].err == nil || mapEx[1].err == nil
		var change Tri
		rep.Filtering, change, note = decideFiltering(server, other, filtEx, altAlive)
		rep.Server.ChangeRequest = change
		if note != "" {
			rep.Server.Notes = append(rep.Server.Notes, "filtering: "+note)
		}
	}
	for _, e := range mapEx {
		if other.IsValid() && e.err == nil && e.res.Mapped.IsValid() && e.res.Mapped != a.local {
			rep.NATPresent = true // mapped == local toward the primary only
		}
	}
	if !rep.NATPresent && rep.Mapping == Unknown && other.IsValid() {
		// Without a NAT the mapping is trivially the local address.
		rep.Mapping = EndpointIndependent
	}
	rep.Hairpinning, rep.HairpinSource = hairpin, hairSrc
	rep.BindingLifetime = life
	rep.Server.ResponsePort = respPort

	o := Outcomes{
		Answered:         true,
		NAT:              rep.NATPresent,
		RFC5780:          rep.Server.RFC5780,
		Mapping:          rep.Mapping,
		Filtering:        rep.Filtering,
		Rewriting:        rep.Rewriting.Detected,
		MappedAddress:    rep.Rewriting.MappedAddress,
		XORMappedAddress: rep.Rewriting.XORMappedAddress,
		Hairpinning:      rep.Hairpinning,
		Lifetime:         life,
	}
	c := Classify(o)
	rep.RFC3489Name, rep.Advice = c.RFC3489Name, c.Advice
	p.progress("done: %s (mapping %s, filtering %s)", rep.RFC3489Name, rep.Mapping, rep.Filtering)
	return rep, nil
}

// rewriting compares MAPPED-ADDRESS with XOR-MAPPED-ADDRESS.
func rewriting(r stun.Result, local netip.AddrPort) Rewriting {
	w := Rewriting{}
	if r.PlainMapped.IsValid() {
		w.MappedAddress = r.PlainMapped.String()
	}
	if r.XORMapped.IsValid() {
		w.XORMappedAddress = r.XORMapped.String()
	}
	switch {
	case !r.XORMapped.IsValid():
		w.Evidence = "no XOR-MAPPED-ADDRESS in the answer (RFC 3489 server): cannot compare"
	case !r.PlainMapped.IsValid():
		w.Evidence = "no MAPPED-ADDRESS in the answer: cannot compare"
	case r.PlainMapped == r.XORMapped:
		w.Detected = TriNo
		w.Evidence = "MAPPED-ADDRESS = XOR-MAPPED-ADDRESS"
	default:
		w.Detected = TriYes
		w.Evidence = "MAPPED-ADDRESS " + r.PlainMapped.String() + " != XOR-MAPPED-ADDRESS " + r.XORMapped.String()
		switch {
		case r.PlainMapped == local:
			w.Evidence += ": the public address in the packet was rewritten to this host's own address"
		case r.PlainMapped.Addr() == local.Addr():
			w.Evidence += ": the public IP in the packet was rewritten to this host's own IP"
		}
	}
	return w
}

// mappingTests runs RFC 5780 §4.3 tests II (alternate IP, primary port)
// and III (alternate IP and port) from the main socket, concurrently.
// With a one-IP server only the port-changed test runs, as [1].
func (p *prober) mappingTests(ctx context.Context, a *sock, server, other netip.AddrPort) ([2]exchange, []Test) {
	// With a one-IP server dst[1] is the other port on the same IP; with
	// a one-port server dst[0] is the other IP on the same port: other.
	dst := [2]netip.AddrPort{netip.AddrPortFrom(other.Addr(), server.Port()), other}
	run := [2]bool{other.Addr() != server.Addr(), other.Port() != server.Port()}
	p.progress("mapping: Binding requests from %s to the alternate address(es) %s", a.local, strings.Join(addrList(dst, run), ", "))
	var ex [2]exchange
	var wg sync.WaitGroup
	for i := range dst {
		if !run[i] {
			ex[i].err = errSkipped
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ex[i] = p.transact(ctx, a, dst[i], nil)
		}()
	}
	wg.Wait()
	var tests []Test
	for i, name := range []string{"mapping-2", "mapping-3"} {
		if run[i] {
			tests = append(tests, p.record(name, a, dst[i], "Binding", ex[i]))
		}
	}
	return ex, tests
}

var errSkipped = errors.New("not run")

func addrList(dst [2]netip.AddrPort, run [2]bool) []string {
	var s []string
	for i := range dst {
		if run[i] {
			s = append(s, dst[i].String())
		}
	}
	return s
}

// decideMapping applies RFC 5780 §4.3 to the answers of tests II and III
// (ex[0], ex[1]) given test I's mapped address m1.
func decideMapping(server, other, m1 netip.AddrPort, ex [2]exchange) (Behaviour, string) {
	ok := func(i int) bool { return ex[i].err == nil }
	if other.Addr() == server.Addr() {
		// One IP: only the port can change.
		if !ok(1) {
			return Unknown, "the server's other port did not answer"
		}
		if ex[1].res.Mapped != m1 {
			return AddressAndPortDependent, ""
		}
		return Unknown, "the server has one IP: endpoint-independent or address-dependent"
	}
	if !ok(0) {
		return Unknown, "the server's alternate IP did not answer"
	}
	m2 := ex[0].res.Mapped
	if m2 == m1 {
		return EndpointIndependent, ""
	}
	if other.Port() == server.Port() {
		return Unknown, "the server has one port: address-dependent or address-and-port-dependent"
	}
	if !ok(1) {
		return Unknown, "the server's alternate address did not answer test III"
	}
	if ex[1].res.Mapped == m2 {
		return AddressDependent, ""
	}
	return AddressAndPortDependent, ""
}

// filteringTests runs RFC 5780 §4.4 tests II (CHANGE-REQUEST: change IP
// and port) and III (change port) from a fresh socket that sends to the
// primary address only, concurrently: the answers come from addresses
// that socket never sent to, so only a NAT that does not filter by
// address (II) or by port (III) lets them in.
func (p *prober) filteringTests(ctx context.Context, server, other netip.AddrPort) ([2]exchange, []Test) {
	var ex [2]exchange
	f, err := p.open(0)
	if err != nil {
		ex[0].err, ex[1].err = err, err
		return ex, []Test{{Name: "filtering-2", From: "-", To: server.String(), Request: "-", Outcome: "error: " + err.Error()}}
	}
	type req struct {
		name     string
		ip, port bool
		run      bool
	}
	reqs := [2]req{
		{"filtering-2", true, true, other.Addr() != server.Addr() && other.Port() != server.Port()},
		{"filtering-3", false, true, other.Port() != server.Port()},
	}
	if other.Port() == server.Port() {
		// One port: test II can still change the IP.
		reqs[0] = req{"filtering-2", true, false, true}
	}
	p.progress("filtering: CHANGE-REQUEST from %s to %s", f.local, server)
	var wg sync.WaitGroup
	for i, r := range reqs {
		if !r.run {
			ex[i].err = errSkipped
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ex[i] = p.transact(ctx, f, server, nil, stun.WithChangeRequest(r.ip, r.port))
		}()
	}
	wg.Wait()
	var tests []Test
	for i, r := range reqs {
		if !r.run {
			continue
		}
		what := "Binding CHANGE-REQUEST change-port"
		switch {
		case r.ip && r.port:
			what = "Binding CHANGE-REQUEST change-IP change-port"
		case r.ip:
			what = "Binding CHANGE-REQUEST change-IP"
		}
		t := p.record(r.name, f, server, what, ex[i])
		if ex[i].err == nil && !changedAs(ex[i].res.From, server, r.ip, r.port) {
			t.Note = "answer from " + ex[i].res.From.String() + ": the server did not change its address as asked"
		}
		tests = append(tests, t)
	}
	return ex, tests
}

// changedAs reports whether from differs from server in IP and/or port
// exactly as a CHANGE-REQUEST asked.
func changedAs(from, server netip.AddrPort, ip, port bool) bool {
	return (from.Addr() != server.Addr()) == ip && (from.Port() != server.Port()) == port
}

// decideFiltering applies RFC 5780 §4.4. ex[0] asked for a change of IP
// and port (of IP only with a one-port server), ex[1] of port only.
// altAlive says the alternate address answered the mapping tests, so its
// silence now is filtering, not a dead server. It also says whether the
// server honoured CHANGE-REQUEST.
func decideFiltering(server, other netip.AddrPort, ex [2]exchange, altAlive bool) (Behaviour, Tri, string) {
	onePort := other.Port() == server.Port()
	ipFlag := [2]bool{true, false}
	portFlag := [2]bool{!onePort, true}
	var good [2]bool
	change := TriUnknown
	for i := range ex {
		if ex[i].err == errSkipped {
			continue
		}
		var er *stun.ErrorResponse
		switch {
		case ex[i].err == nil && changedAs(ex[i].res.From, server, ipFlag[i], portFlag[i]):
			good[i] = true
			if change == TriUnknown {
				change = TriYes
			}
		case ex[i].err == nil, errors.As(ex[i].err, &er):
			change = TriNo
		}
	}
	if change == TriNo {
		return Unknown, TriNo, "the server does not honour CHANGE-REQUEST"
	}
	oneIP := other.Addr() == server.Addr()
	switch {
	case good[0] && !onePort:
		return EndpointIndependent, change, ""
	case good[0]: // one port: the IP changed and got through
		return Unknown, change, "the server has one port: endpoint-independent or address-dependent"
	case good[1] && oneIP:
		return Unknown, change, "the server has one IP: endpoint-independent or address-dependent"
	case good[1]:
		return AddressDependent, change, ""
	}
	for i := range ex {
		if ex[i].err != nil && ex[i].err != errSkipped && !errors.Is(ex[i].err, stun.ErrTimeout) {
			return Unknown, change, "a filtering test failed: " + ex[i].err.Error()
		}
	}
	if !altAlive {
		return Unknown, change, "no answer from the server's alternate address at all, so silence proves nothing"
	}
	if ex[1].err == errSkipped {
		return Unknown, change, "the server has one port: address-dependent or address-and-port-dependent"
	}
	return AddressAndPortDependent, change, ""
}

// hairpinTest checks RFC 5780 §4.5 hairpinning: a second socket learns
// its public address, the main socket sends it one packet (so a filtering
// NAT lets the reverse direction in, as a phone's own RTP would), then
// the second socket sends Binding requests to the main socket's public
// address; hairpinning works if one arrives on the main socket.
func (p *prober) hairpinTest(ctx context.Context, a *sock, mappedA, server netip.AddrPort) (Tri, string, []Test) {
	h, err := p.open(0)
	if err != nil {
		return TriUnknown, "", []Test{{Name: "hairpin", From: "-", To: mappedA.String(), Request: "-", Outcome: "error: " + err.Error()}}
	}
	p.progress("hairpinning: from %s to %s (the first socket's public address)", h.local, mappedA)
	hb := p.transact(ctx, h, server, nil)
	tests := []Test{p.record("hairpin-binding", h, server, "Binding", hb)}
	if hb.err != nil {
		return TriUnknown, "", tests
	}
	mappedH := hb.res.Mapped

	// The opening packet: a Binding indication, which nobody answers.
	var ib stun.Builder
	ib.Reset(nil, stun.MethodBinding, stun.ClassIndication, stun.NewTransactionID())
	_, _ = a.c.WriteToUDPAddrPort(ib.Bytes(), mappedH)

	t := stun.NewTransaction(mappedA, p.clientOpts()...)
	got := make(chan netip.AddrPort, 1)
	a.setOnRequest(func(tid [12]byte, from netip.AddrPort) {
		if tid == t.TID() {
			select {
			case got <- from:
			default:
			}
		}
	})
	defer a.setOnRequest(nil)
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sent atomic.Int32
	start := time.Now()
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		_, _ = t.Run(hctx, func(b []byte) error {
			sent.Add(1)
			_, err := h.c.WriteToUDPAddrPort(b, mappedA)
			return err
		})
	}()
	var from netip.AddrPort
	arrived := false
	select {
	case from = <-got:
		arrived = true
	case <-runDone:
		select {
		case from = <-got:
			arrived = true
		default:
		}
	}
	rtt := time.Since(start)
	cancel()
	<-runDone

	tr := Test{
		Name:    "hairpin",
		From:    h.local.String(),
		To:      mappedA.String(),
		Request: "Binding (after one packet from " + a.local.String() + " to " + mappedH.String() + ")",
		Sent:    int(sent.Load()),
	}
	if !arrived {
		tr.Outcome = "not received"
		tests = append(tests, tr)
		p.progress("hairpinning: no")
		return TriNo, "", tests
	}
	tr.Outcome = "received"
	tr.ResponseFrom = from.String()
	tr.ReceivedOn = a.local.String()
	tr.RTTMs = ms(rtt)
	switch from {
	case mappedH:
		tr.Note = "source translated to the sender's public address"
	case h.local:
		tr.Note = "source not translated: the sender's private address"
	}
	tests = append(tests, tr)
	p.progress("hairpinning: yes (arrived from %s)", from)
	return TriYes, from.String(), tests
}

// lifetimeTest measures how long an idle binding lives (RFC 5780 §4.6),
// all idle times in parallel: one socket per idle time T gets a binding
// and stays silent for T; then another socket asks the server to answer
// to the first one's public port (RESPONSE-PORT). The answer arrives on
// the first socket while its binding lives. The first check, at T = 0,
// tells whether the server honours RESPONSE-PORT at all. After the first
// binding found expired, longer idle times are not waited for.
func (p *prober) lifetimeTest(ctx context.Context, server netip.AddrPort) (*Lifetime, []Test, Tri) {
	steps := p.cfg.steps()
	l := &Lifetime{Status: LifetimeUnknown, MaxS: p.cfg.LifetimeMax.Seconds()}
	if len(steps) == 0 {
		l.Note = "no idle times to test"
		return l, nil, TriUnknown
	}
	y, err := p.open(0)
	if err != nil {
		l.Note = err.Error()
		return l, nil, TriUnknown
	}
	// First: does RESPONSE-PORT work, and does its answer find a fresh
	// binding? Only then are the idle bindings worth making.
	n := len(steps) + 1
	xs := make([]*sock, n) // xs[0] is the check's, xs[i] idles for steps[i-1]
	binds := make([]exchange, n)
	bound := make([]time.Time, n)
	for i := range xs {
		if xs[i], err = p.open(0); err != nil {
			l.Note = err.Error()
			return l, nil, TriUnknown
		}
	}
	p.progress("binding lifetime: checking RESPONSE-PORT support")
	binds[0] = p.transact(ctx, xs[0], server, nil)
	tests := []Test{p.record("lifetime-binding-check", xs[0], server, "Binding", binds[0])}
	if binds[0].err != nil {
		l.Note = "no answer to the binding for the RESPONSE-PORT check"
		return l, tests, TriUnknown
	}
	port := binds[0].res.Mapped.Port()
	ck := p.transact(ctx, y, server, []*sock{xs[0]}, stun.WithResponsePort(port))
	tests = append(tests, p.record("lifetime-check", y, server, "Binding RESPONSE-PORT "+strconv.Itoa(int(port))+" (answer expected on "+xs[0].local.String()+")", ck))
	var er *stun.ErrorResponse
	switch {
	case errors.As(ck.err, &er):
		l.Status, l.Note = LifetimeUnsupported, "the server answered RESPONSE-PORT with "+strconv.Itoa(er.Code)+" "+er.Reason
		return l, tests, TriNo
	case ck.err != nil:
		l.Note = "no answer to a RESPONSE-PORT request for a fresh binding (the server drops it, or the NAT gives each socket another public IP)"
		return l, tests, TriUnknown
	case ck.on != xs[0]:
		l.Note = "the server ignored RESPONSE-PORT and answered the requesting socket"
		return l, tests, TriNo
	}

	p.progress("binding lifetime: %d idle times up to %s, in parallel; this takes up to %s", len(steps), steps[len(steps)-1], (steps[len(steps)-1] + 2*p.exchangeBound()).Round(time.Second))
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			binds[i] = p.transact(ctx, xs[i], server, nil)
			bound[i] = time.Now()
		}()
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		tests = append(tests, p.record("lifetime-binding-"+secs(steps[i-1].Seconds())+"s", xs[i], server, "Binding", binds[i]))
	}

	var mu sync.Mutex
	cutoff := time.Duration(math.MaxInt64)
	stop := make(chan struct{})
	var stopOnce sync.Once
	expired := func(d time.Duration) {
		mu.Lock()
		cutoff = min(cutoff, d)
		mu.Unlock()
		stopOnce.Do(func() { close(stop) })
	}
	beyond := func(d time.Duration) bool {
		mu.Lock()
		defer mu.Unlock()
		return d > cutoff
	}
	results := make([]LifetimeStep, len(steps))
	checks := make([]*Test, len(steps))
	for i, d := range steps {
		results[i] = LifetimeStep{IdleS: d.Seconds()}
		x, b := xs[i+1], binds[i+1]
		if b.err != nil {
			results[i].Note = "no binding"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			timer := time.NewTimer(time.Until(bound[i+1].Add(d)))
			defer timer.Stop()
			stopc := stop
			for waiting := true; waiting; {
				select {
				case <-ctx.Done():
					results[i].Note = "not tested: " + ctx.Err().Error()
					return
				case <-stopc:
					stopc = nil
				case <-timer.C:
					waiting = false
				}
				if beyond(d) {
					results[i].Note = "skipped: a shorter idle time already expired"
					return
				}
			}
			port := b.res.Mapped.Port()
			e := p.transact(ctx, y, server, []*sock{x}, stun.WithResponsePort(port))
			idle := e.sent.Sub(bound[i+1])
			t := p.record("lifetime-"+secs(d.Seconds())+"s", y, server,
				"Binding RESPONSE-PORT "+strconv.Itoa(int(port))+" (to "+x.local.String()+", idle "+idle.Round(time.Millisecond).String()+")", e)
			checks[i] = &t
			switch {
			case e.err == nil && e.on == x:
				results[i].Survived = TriYes
				p.progress("binding lifetime: idle %s: alive", d)
			case errors.Is(e.err, stun.ErrTimeout):
				results[i].Survived = TriNo
				p.progress("binding lifetime: idle %s: gone", d)
				expired(d)
			case e.err == nil:
				results[i].Note = "answer arrived on the requesting socket"
			default:
				results[i].Note = e.err.Error()
			}
		}()
	}
	wg.Wait()
	for _, c := range checks {
		if c != nil {
			tests = append(tests, *c)
		}
	}
	l.Steps = results
	summarizeLifetime(l)
	return l, tests, TriYes
}

// summarizeLifetime sets the bounds and status from l.Steps.
func summarizeLifetime(l *Lifetime) {
	lower, upper := -1.0, math.Inf(1)
	for _, s := range l.Steps {
		if s.Survived == TriYes {
			lower = max(lower, s.IdleS)
		}
	}
	inconsistent := false
	for _, s := range l.Steps {
		if s.Survived == TriNo {
			if s.IdleS > lower {
				upper = min(upper, s.IdleS)
			} else {
				inconsistent = true
			}
		}
	}
	switch {
	case !math.IsInf(upper, 1):
		l.Status = LifetimeMeasured
		l.LowerS, l.UpperS = max(lower, 0), upper
	case lower >= 0:
		l.Status = LifetimeLongerThan
		l.LowerS = lower
	default:
		l.Status = LifetimeUnknown
		if l.Note == "" {
			l.Note = "no idle time could be tested"
		}
		return
	}
	l.Seconds = l.LowerS
	if inconsistent {
		l.Note = "inconsistent: a binding was gone after a shorter idle time than one that survived (packet loss?)"
	}
}

// record turns an exchange into a Test.
func (p *prober) record(name string, from *sock, to netip.AddrPort, request string, e exchange) Test {
	t := Test{Name: name, From: from.local.String(), To: to.String(), Request: request}
	switch {
	case e.err == nil:
		t.Outcome = "answered"
		t.ResponseFrom = e.res.From.String()
		if e.on != nil {
			t.ReceivedOn = e.on.local.String()
		}
		t.Mapped = e.res.Mapped.String()
		t.RTTMs = ms(e.res.RTT)
		t.Sent = e.res.Sent
	case errors.Is(e.err, stun.ErrTimeout):
		t.Outcome = "no answer"
		t.Sent = p.cfg.Tries
	default:
		t.Outcome = "error: " + strings.TrimPrefix(e.err.Error(), "stun: ")
	}
	return t
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// parseBind parses Config.Bind.
func parseBind(s string) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), 0), nil
	}
	if strings.HasPrefix(s, ":") {
		port, err := strconv.ParseUint(s[1:], 10, 16)
		if err == nil {
			return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port)), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("natprobe: bad bind address %q: want IP, IP:PORT or :PORT", s)
}

// resolveServer resolves "host[:port]", preferring IPv4 unless the bind
// IP is IPv6. It returns the name with its port, and the address.
func resolveServer(ctx context.Context, s string, bindIP netip.Addr) (string, netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		host, portStr = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), strconv.Itoa(DefaultPort)
	}
	if host == "" {
		return "", netip.AddrPort{}, fmt.Errorf("natprobe: bad STUN server %q: no host", s)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", netip.AddrPort{}, fmt.Errorf("natprobe: bad STUN server %q: bad port", s)
	}
	name := net.JoinHostPort(host, portStr)
	if ip, err := netip.ParseAddr(host); err == nil {
		return name, netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return "", netip.AddrPort{}, fmt.Errorf("natprobe: resolving %s: %w", host, err)
	}
	want6 := bindIP.IsValid() && bindIP.Is6() && !bindIP.Is4In6()
	pick := netip.Addr{}
	for _, ip := range ips {
		ip = ip.Unmap()
		if ip.Is6() == want6 {
			pick = ip
			break
		}
	}
	if !pick.IsValid() {
		if bindIP.IsValid() && !bindIP.IsUnspecified() {
			return "", netip.AddrPort{}, fmt.Errorf("natprobe: %s has no address of the bind address's family", host)
		}
		pick = ips[0].Unmap()
	}
	return name, netip.AddrPortFrom(pick, uint16(port)), nil
}

// routedIP returns the local IP that routes to dst (no packet is sent).
func routedIP(dst netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
