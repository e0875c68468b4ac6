package portmap_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/portmap"
	"github.com/sipedge/sipedge/portmap/portmaptest"
)

// events records a Manager's events.
type events struct {
	mu  sync.Mutex
	evs []portmap.Event
	ext []netip.Addr
}

func (e *events) add(ev portmap.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) count(k portmap.EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

func (e *events) externals() []netip.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ext)
}

func newManager(t *testing.T, c portmap.Client, cfg portmap.ManagerConfig) (*portmap.Manager, *events) {
	ev := &events{}
	cfg.OnEvent = ev.add
	cfg.OnExternalAddr = func(old, new netip.Addr) {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		ev.ext = append(ev.ext, new)
	}
	m := portmap.NewManager(c, cfg)
	t.Cleanup(func() { m.Close(context.Background()) })
	return m, ev
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func run(t *testing.T, m *portmap.Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// Mappings are renewed before their (short) lease ends, with the same
// external port, and never lapse on the gateway.
func TestManagerRenewal(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			g := gatewayFor(t, p, portmaptest.Config{MaxLease: 2 * time.Second})
			// UPnP cannot tell a shorter lease: ask for 2 s there.
			m, ev := newManager(t, newClient(t, g, p), portmap.ManagerConfig{Lifetime: 2 * time.Second, CheckInterval: time.Hour})
			m.Add("udp", sipUDP, 0)
			m.Add("tcp", sipUDP, 0)
			run(t, m)
			select {
			case <-m.Ready():
			case <-time.After(2 * time.Second):
				t.Fatal("not ready")
			}
			if got := m.Mappings(); len(got) != 2 || got[0].Transport != "tcp" || got[1].Lifetime != 2*time.Second {
				t.Fatalf("mappings %v", got)
			}
			if ext := m.ExternalAddr(); ext != extAddr {
				t.Errorf("external %v", ext)
			}
			// Watch the gateway for 3.5 s: it must hold both throughout.
			end := time.Now().Add(3500 * time.Millisecond)
			for time.Now().Before(end) {
				if n := len(g.Mappings()); n != 2 {
					t.Fatalf("gateway holds %d mappings", n)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n := ev.count(portmap.EventRenewed); n < 4 {
				t.Errorf("%d renewals", n)
			}
			for _, gm := range g.Mappings() {
				if gm.External != 5060 {
					t.Errorf("port moved: %+v", gm)
				}
			}
			if got := ev.externals(); len(got) != 1 || got[0] != extAddr {
				t.Errorf("external address callbacks %v", got)
			}
		})
	}
}

// After a gateway reboot the mappings are re-created: PCP and NAT-PMP
// notice the epoch going back, UPnP the missing entries.
func TestManagerReboot(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			g := gatewayFor(t, p, portmaptest.Config{})
			m, ev := newManager(t, newClient(t, g, p), portmap.ManagerConfig{CheckInterval: 200 * time.Millisecond})
			m.Add("udp", sipUDP, 0)
			if err := m.AddRange("udp", lo, 20000, 20003, 8); err != nil {
				t.Fatal(err)
			}
			run(t, m)
			waitFor(t, 2*time.Second, "5 mappings", func() bool { return len(g.Mappings()) == 5 })
			before := g.Mappings()
			g.Reboot()
			if len(g.Mappings()) != 0 {
				t.Fatal("reboot kept mappings")
			}
			waitFor(t, 2*time.Second, "re-creation", func() bool { return len(g.Mappings()) == 5 })
			after := g.Mappings()
			for i := range before {
				if before[i].External != after[i].External || before[i].Internal != after[i].Internal {
					t.Errorf("re-created %+v, was %+v", after[i], before[i])
				}
			}
			if p == portmap.UPnP {
				if ev.count(portmap.EventLost) != 5 {
					t.Errorf("%d lost events", ev.count(portmap.EventLost))
				}
			} else if ev.count(portmap.EventGatewayReset) != 1 {
				t.Errorf("%d reset events", ev.count(portmap.EventGatewayReset))
			}
			waitFor(t, time.Second, "mapped events", func() bool { return ev.count(portmap.EventMapped) == 10 })
			if len(m.Mappings()) != 5 {
				t.Errorf("manager holds %v", m.Mappings())
			}
		})
	}
}

// Failures are retried with growing waits, then succeed.
func TestManagerBackoff(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{NATPMP: true})
	m, ev := newManager(t, newClient(t, g, portmap.NATPMP), portmap.ManagerConfig{RetryMin: 100 * time.Millisecond, RetryMax: time.Second})
	g.FailNext(4)
	m.Add("udp", sipUDP, 0)
	run(t, m)
	waitFor(t, 5*time.Second, "mapping", func() bool { return len(m.Mappings()) == 1 })
	if ev.count(portmap.EventFailed) != 4 {
		t.Errorf("%d failures", ev.count(portmap.EventFailed))
	}
	var times []time.Time
	for _, op := range g.Ops() {
		if op.Action == "map" {
			times = append(times, op.Time)
		}
	}
	if len(times) != 5 {
		t.Fatalf("%d map requests", len(times))
	}
	// 100, 200, 400, 800 ms, each ±10 %.
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		want := 100 * time.Millisecond << (i - 1)
		if gap < want*85/100 || gap > want*130/100+50*time.Millisecond {
			t.Errorf("gap %d: %v, want about %v", i, gap, want)
		}
	}
	st := m.Status()
	if len(st) != 1 || !st[0].Mapped || st[0].Failures != 0 || st[0].LastError != "" {
		t.Errorf("status %+v", st)
	}
}

// A gateway that stops answering: renewals fail until the lease ends,
// then the mapping is reported expired; when it answers again the
// mapping comes back.
func TestManagerExpiry(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{PCP: true, MaxLease: time.Second})
	c := portmap.NewPCP(g.Addr(), lo, append(g.Options(), portmap.WithRetransmit(20*time.Millisecond, 2))...)
	m, ev := newManager(t, c, portmap.ManagerConfig{RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond, CheckInterval: time.Hour})
	m.Add("udp", sipUDP, 0)
	run(t, m)
	waitFor(t, 2*time.Second, "mapping", func() bool { return len(m.Mappings()) == 1 })
	g.SetDown(true)
	waitFor(t, 3*time.Second, "expiry", func() bool { return ev.count(portmap.EventExpired) == 1 })
	if len(m.Mappings()) != 0 {
		t.Errorf("still listed: %v", m.Mappings())
	}
	if st := m.Status(); len(st) != 1 || st[0].Mapped || st[0].Failures == 0 || st[0].LastError == "" {
		t.Errorf("status %+v", st)
	}
	g.SetDown(false)
	waitFor(t, 2*time.Second, "mapping again", func() bool { return len(m.Mappings()) == 1 })
}

// Close removes every mapping from the gateway, also without Run.
func TestManagerClose(t *testing.T) {
	t.Parallel()
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			g := gatewayFor(t, p, portmaptest.Config{})
			m, ev := newManager(t, newClient(t, g, p), portmap.ManagerConfig{})
			for port := uint16(20000); port < 20010; port++ {
				if _, err := m.Map(ctxT(t, 2*time.Second), "udp", netip.AddrPortFrom(lo, port), 0); err != nil {
					t.Fatal(err)
				}
			}
			m.Add("tcp", sipUDP, 0)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { m.Run(ctx); close(done) }()
			waitFor(t, 2*time.Second, "11 mappings", func() bool { return len(g.Mappings()) == 11 })
			if err := m.Close(ctxT(t, 3*time.Second)); err != nil {
				t.Fatal(err)
			}
			<-done // Close stopped Run
			cancel()
			if got := g.Mappings(); len(got) != 0 {
				t.Errorf("left on the gateway: %+v", got)
			}
			if ev.count(portmap.EventRemoved) != 11 || len(m.Mappings()) != 0 {
				t.Errorf("%d removed events; manager %v", ev.count(portmap.EventRemoved), m.Mappings())
			}
			if _, err := m.Map(context.Background(), "udp", sipUDP, 0); !errors.Is(err, portmap.ErrClosed) {
				t.Errorf("Map after Close: %v", err)
			}
		})
	}
}

// Per-call mappings: Map now, Remove at the end of the call.
func TestManagerPerCall(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{UPnP: true, Taken: []uint16{30000}})
	m, ev := newManager(t, newClient(t, g, portmap.UPnP), portmap.ManagerConfig{})
	run(t, m)
	rtp := netip.AddrPortFrom(lo, 30000)
	mp, err := m.Map(ctxT(t, 2*time.Second), "udp", rtp, 0)
	if err != nil {
		t.Fatal(err)
	}
	if mp.External.Port() == 30000 {
		t.Errorf("taken port granted: %v", mp)
	}
	if got, ok := m.Lookup("udp", rtp); !ok || got != mp {
		t.Errorf("lookup %v %v", got, ok)
	}
	m.Remove("udp", rtp)
	waitFor(t, 2*time.Second, "removal", func() bool { return len(g.Mappings()) == 0 })
	waitFor(t, time.Second, "removed event", func() bool { return ev.count(portmap.EventRemoved) == 1 })
	if _, ok := m.Lookup("udp", rtp); ok || len(m.Status()) != 0 {
		t.Errorf("still known: %+v", m.Status())
	}
}

// A changed external address is reported and the mappings renewed.
func TestManagerExternalChange(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{NATPMP: true})
	m, ev := newManager(t, newClient(t, g, portmap.NATPMP), portmap.ManagerConfig{CheckInterval: 100 * time.Millisecond})
	m.Add("udp", sipUDP, 0)
	run(t, m)
	waitFor(t, 2*time.Second, "mapping", func() bool { return len(m.Mappings()) == 1 })
	newExt := netip.MustParseAddr("198.51.100.20")
	g.SetExternal(newExt)
	waitFor(t, 2*time.Second, "new address", func() bool {
		ms := m.Mappings()
		return len(ms) == 1 && ms[0].External.Addr() == newExt
	})
	if got := ev.externals(); len(got) != 2 || got[1] != newExt {
		t.Errorf("callbacks %v", got)
	}
	if ev.count(portmap.EventChanged) != 1 {
		t.Errorf("%d changed events", ev.count(portmap.EventChanged))
	}
}

func TestManagerAddRange(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{PCP: true})
	m, _ := newManager(t, newClient(t, g, portmap.PCP), portmap.ManagerConfig{})
	if err := m.AddRange("udp", lo, 10000, 20000, 64); !errors.Is(err, portmap.ErrRangeTooBig) {
		t.Errorf("big range: %v", err)
	}
	if err := m.AddRange("udp", lo, 20, 10, 64); err == nil {
		t.Error("reversed range accepted")
	}
	if err := m.AddRange("udp", lo, 40000, 40031, 64); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 3*time.Second, "32 mappings", func() bool { return len(m.Mappings()) == 32 })
	if len(g.Mappings()) != 32 {
		t.Errorf("gateway holds %d", len(g.Mappings()))
	}
}

func TestMapRange(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{NATPMP: true, Taken: []uint16{20002}})
	c := newClient(t, g, portmap.NATPMP)
	res := portmap.MapRange(ctxT(t, 5*time.Second), c, "udp", lo, 20000, 20099, time.Hour, portmap.RangeOptions{Max: 20, Parallel: 4})
	if len(res.Mapped) != 20 || len(res.Failed) != 0 || len(res.NotTried) != 80 || res.NotTried[0] != 20020 {
		t.Fatalf("mapped %d failed %v not tried %d", len(res.Mapped), res.Failed, len(res.NotTried))
	}
	for i, m := range res.Mapped {
		want := uint16(20000 + i)
		if m.Internal.Port() != want || (want != 20002 && m.External.Port() != want) || (want == 20002 && m.External.Port() == want) {
			t.Errorf("%v", m)
		}
	}
	// Out of resources: it stops asking.
	g2 := portmaptest.New(t, portmaptest.Config{PCP: true})
	g2.FailNext(1000)
	res = portmap.MapRange(ctxT(t, 5*time.Second), newClient(t, g2, portmap.PCP), "udp", lo, 20000, 20099, time.Hour, portmap.RangeOptions{Max: 100, Parallel: 2})
	if len(res.Mapped) != 0 || len(res.Failed) > 4 || len(res.Failed)+len(res.NotTried) != 100 {
		t.Errorf("mapped %d failed %d not tried %d", len(res.Mapped), len(res.Failed), len(res.NotTried))
	}
}

// A Client with none of the optional interfaces (no Checker, no
// ResetCounter) is only renewed.
func TestManagerPlainClient(t *testing.T) {
	t.Parallel()
	g := portmaptest.New(t, portmaptest.Config{NATPMP: true, MaxLease: time.Second})
	plain := struct{ portmap.Client }{newClient(t, g, portmap.NATPMP)}
	if _, ok := any(plain).(portmap.Checker); ok {
		t.Fatal("wrapper is a Checker")
	}
	m, ev := newManager(t, plain, portmap.ManagerConfig{CheckInterval: 50 * time.Millisecond})
	m.Add("udp", sipUDP, 0)
	run(t, m)
	waitFor(t, 3*time.Second, "two renewals", func() bool { return ev.count(portmap.EventRenewed) >= 2 })
	// Idle between renewals: a handful of requests, no busy loop.
	if n := len(g.Ops()); n > 6 {
		t.Errorf("%d requests", n)
	}
}
