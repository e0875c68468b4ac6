package location

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/sipedge/sipedge/sipx"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func udpFlow(remote string) sipx.Flow {
	return sipx.Flow{Transport: sipx.UDP, Local: netip.MustParseAddrPort("198.51.100.10:5060"),
		Remote: netip.MustParseAddrPort(remote)}
}

func tcpFlow(remote string, conn uint64) sipx.Flow {
	return sipx.Flow{Transport: sipx.TCP, Local: netip.MustParseAddrPort("198.51.100.10:5060"),
		Remote: netip.MustParseAddrPort(remote), ConnID: conn}
}

func binding(contact string, f sipx.Flow, expires time.Time) Binding {
	return Binding{
		User:       "alice",
		Contact:    "<" + contact + ">",
		ContactURI: contact,
		Flow:       f,
		Expires:    expires,
		CallID:     "call-" + contact,
		CSeq:       1,
		UserAgent:  "TestPhone/1.0",
	}
}

// set returns an Update func that replaces the bindings with bs.
func set(bs ...Binding) func([]Binding) ([]Binding, error) {
	return func([]Binding) ([]Binding, error) { return bs, nil }
}

// add returns an Update func that appends b to the current bindings.
func add(b Binding) func([]Binding) ([]Binding, error) {
	return func(cur []Binding) ([]Binding, error) { return append(cur, b), nil }
}

func mustOpen(t testing.TB, c *clock) *Store {
	t.Helper()
	s, err := Open(nil, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func contacts(bs []Binding) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.ContactURI)
	}
	return out
}

// checkConsistency verifies the counters and the flow index against the
// table: every stored binding's flow lists its AOR, and the index holds
// nothing else.
func (s *Store) checkConsistency() error {
	aors, bindings, entries := 0, 0, 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for aor, bs := range sh.m {
			if len(bs) == 0 {
				sh.mu.RUnlock()
				return fmt.Errorf("empty slice stored for %q", aor)
			}
			aors++
			bindings += len(bs)
			hs := s.flowHashes(nil, bs)
			entries += len(hs)
			for _, h := range hs {
				if !slices.Contains(s.flows.lookup(h), aor) {
					sh.mu.RUnlock()
					return fmt.Errorf("index misses %q", aor)
				}
			}
			for _, b := range bs {
				if b.AOR != aor {
					sh.mu.RUnlock()
					return fmt.Errorf("binding AOR %q under key %q", b.AOR, aor)
				}
			}
		}
		sh.mu.RUnlock()
	}
	if n := s.flows.len(); n != entries {
		return fmt.Errorf("index has %d entries, table implies %d", n, entries)
	}
	if a, b := s.Count(); a != aors || b != bindings {
		return fmt.Errorf("Count() = %d, %d; table has %d, %d", a, b, aors, bindings)
	}
	return nil
}

func TestUpdateLookupExpire(t *testing.T) {
	c := newClock()
	s := mustOpen(t, c)
	now := c.Now()

	got, err := s.Update("alice@example.com", set(
		binding("sip:alice@192.168.1.20:5060", udpFlow("203.0.113.9:40512"), now.Add(60*time.Second)),
		binding("sip:alice@10.0.0.7:5060", udpFlow("203.0.113.77:1024"), now.Add(120*time.Second)),
	))
	if err != nil || len(got) != 2 {
		t.Fatalf("Update = %v, %v", got, err)
	}
	if got[0].AOR != "alice@example.com" || got[0].Registered != now || got[0].Updated != now {
		t.Errorf("stored binding not completed: %+v", got[0])
	}
	if a, b := s.Count(); a != 1 || b != 2 {
		t.Errorf("Count() = %d, %d; want 1, 2", a, b)
	}

	// Expired bindings are invisible before Expire removes them.
	c.Advance(90 * time.Second)
	if l := s.Lookup("alice@example.com"); len(l) != 1 || l[0].ContactURI != "sip:alice@10.0.0.7:5060" {
		t.Fatalf("Lookup after 90s = %v", contacts(l))
	}
	if _, b := s.Count(); b != 2 {
		t.Errorf("Count before Expire = %d bindings, want 2 (not yet purged)", b)
	}
	// Update's fn sees only unexpired bindings.
	_, err = s.Update("alice@example.com", func(cur []Binding) ([]Binding, error) {
		if len(cur) != 1 || cur[0].ContactURI != "sip:alice@10.0.0.7:5060" {
			t.Errorf("fn got %v", contacts(cur))
		}
		return cur, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Expire(); n != 0 {
		t.Errorf("Expire after Update pruned = %d, want 0 (Update already dropped it)", n)
	}
	if _, b := s.Count(); b != 1 {
		t.Errorf("Count after Update = %d bindings, want 1", b)
	}

	c.Advance(30 * time.Second) // exactly at Expires: expired
	if l := s.Lookup("alice@example.com"); l != nil {
		t.Errorf("Lookup at expiry = %v, want none", contacts(l))
	}
	if n := s.Expire(); n != 1 {
		t.Errorf("Expire = %d, want 1", n)
	}
	if a, b := s.Count(); a != 0 || b != 0 {
		t.Errorf("Count after Expire = %d, %d", a, b)
	}
	if n := s.Expire(); n != 0 {
		t.Errorf("second Expire = %d", n)
	}
	if err := s.checkConsistency(); err != nil {
		t.Error(err)
	}
}

func TestExpireSkipsAndFinds(t *testing.T) {
	c := newClock()
	s := mustOpen(t, c)
	now := c.Now()
	for i := range 200 {
		aor := fmt.Sprintf("u%d@example.com", i)
		exp := now.Add(time.Duration(10+i%3*10) * time.Second) // 10s, 20s, 30s
		if _, err := s.Update(aor, set(binding("sip:"+aor, udpFlow(fmt.Sprintf("203.0.113.1:%d", 1000+i)), exp))); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Expire(); n != 0 {
		t.Fatalf("Expire at t0 = %d", n)
	}
	want := []int{67, 67, 66}
	for step, w := range want {
		c.Advance(10 * time.Second)
		if n := s.Expire(); n != w {
			t.Errorf("step %d: Expire = %d, want %d", step, n, w)
		}
		if err := s.checkConsistency(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLookupOrder(t *testing.T) {
	c := newClock()
	s := mustOpen(t, c)
	now := c.Now()
	exp := now.Add(time.Hour)
	mk := func(uri string, q float32, updated time.Duration) Binding {
		b := binding(uri, udpFlow("203.0.113.9:5060"), exp)
		b.Q = q
		b.Updated = now.Add(updated)
		return b
	}
	_, err := s.Update("bob@example.com", set(
		mk("sip:low", 0.1, 0),
		mk("sip:half-old", 0.5, -time.Minute),
		mk("sip:half-new", 0.5, 0),
		mk("sip:unset-old", 0, -time.Hour),
		mk("sip:one", 1.0, -2*time.Hour),
		mk("sip:unset-new", 0, 0),
	))
	if err != nil {
		t.Fatal(err)
	}
	got := contacts(s.Lookup("bob@example.com"))
	want := []string{"sip:unset-new", "sip:unset-old", "sip:one", "sip:half-new", "sip:half-old", "sip:low"}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v\nwant    %v", got, want)
	}
}

func TestAORNormalization(t *testing.T) {
	c := newClock()
	s := mustOpen(t, c)
	exp := c.Now().Add(time.Hour)
	if _, err := s.Update("Alice@Example.COM", set(binding("sip:a", udpFlow("203.0.113.9:5060"), exp))); err != nil {
		t.Fatal(err)
	}
	if l := s.Lookup("Alice@example.com"); len(l) != 1 || l[0].AOR != "Alice@example.com" {
		t.Fatalf("Lookup with lower-case domain = %+v", l)
	}
	if l := s.Lookup("alice@example.com"); l != nil {
		t.Errorf("user part must stay case-sensitive, got %v", contacts(l))
	}
	for _, tt := range [][2]string{
		{"alice@example.com", "alice@example.com"},
		{"Alice@EXAMPLE.com", "Alice@example.com"},
		{"EXAMPLE.COM", "example.com"},
		{"a@b@C", "a@b@c"},
		{"", ""},
	} {
		if got := NormalizeAOR(tt[0]); got != tt[1] {
			t.Errorf("NormalizeAOR(%q) = %q, want %q", tt[0], got, tt[1])
		}
	}
	if _, err := s.Update("", set()); !errors.Is(err, ErrEmptyAOR) {
		t.Errorf("Update(\"\") err = %v", err)
	}
}

func TestUpdateErrorAndRemove(t *testing.T) {
	c := newClock()
	s := mustOpen(t, c)
	exp := c.Now().Add(time.Hour)
	f := udpFlow("203.0.113.9:5060")
	if _, err := s.Update("a@x", set(binding("sip:a", f, exp))); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	_, err := s.Update("a@x", func(cur []Binding) ([]Binding, error) {
		cur[0].Contact = "mutated" // must not leak into the store
		cur[0].Path = append(cur[0].Path, "x")
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if l := s.Lookup("a@x"); len(l) != 1 || l[0].Contact != "<sip:a>" || l[0].Path != nil {
		t.Fatalf("failed Update changed the store: %+v", l)
	}
	// Mutating a Lookup result must not change the store either.
	b := binding("sip:p", f, exp)
	b.Path = []string{"<sip:edge1;lr>"}
	b.NATReasons = []string{"private-contact"}
	if _, err := s.Update("p@x", set(b)); err != nil {
		t.Fatal(err)
	}
	l := s.Lookup("p@x")
	l[0].Path[0] = "changed"
	l[0].NATReasons[0] = "changed"
	if l := s.Lookup("p@x"); l[0].Path[0] != "<sip:edge1;lr>" || l[0].NATReasons[0] != "private-contact" {
		t.Errorf("Lookup result aliases the store: %+v", l[0])
	}

	// Empty result deletes.
	if got, err := s.Update("a@x", set()); err != nil || got == nil || len(got) != 0 {
		t.Errorf("Update to empty = %v, %v", got, err)
	}
	if l := s.Lookup("a@x"); l != nil {
		t.Errorf("after delete Lookup = %v", l)
	}
	// Expired result bindings (expires=0) are dropped.
	if got, err := s.Update("p@x", set(binding("sip:gone", f, c.Now()))); err != nil || len(got) != 0 {
		t.Errorf("Update with only expired = %v, %v", got, err)
	}
	if _, err := s.Update("r@x", set(binding("sip:r", f, exp))); err != nil {
		t.Fatal(err)
	}
	s.Remove("r@X")
	s.Remove("nobody@x")
	if a, b := s.Count(); a != 0 || b != 0 {
		t.Errorf("Count = %d, %d", a, b)
	}
	if got := s.FindByFlow(f); got != nil {
		t.Errorf("FindByFlow after removals = %v", contacts(got))
	}
	if err := s.checkConsistency(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update("a@x", set()); !errors.Is(err, ErrClosed) {
		t.Errorf("Update after Close: %v", err)
	}
	if err := s.Flush(); !errors.Is(err, ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
}

func TestFindByFlow(t *testing.T) {
	c := newClock()
	s := mustOpen(t, c)
	exp := c.Now().Add(time.Minute)
	f1 := udpFlow("203.0.113.9:40512")
	f2 := udpFlow("203.0.113.9:40513")
	t1 := tcpFlow("203.0.113.9:40512", 7)
	t2 := tcpFlow("203.0.113.9:40512", 8) // same addresses, other connection
	v6 := sipx.Flow{Transport: sipx.UDP, Local: netip.MustParseAddrPort("[2001:db8::10]:5060"),
		Remote: netip.MustParseAddrPort("[2001:db8::9]:40512")}

	find := func(f sipx.Flow) []string {
		var out []string
		for _, b := range s.FindByFlow(f) {
			out = append(out, b.AOR+" "+b.ContactURI)
		}
		return out
	}
	check := func(step string, f sipx.Flow, want ...string) {
		t.Helper()
		if got := find(f); !slices.Equal(got, want) {
			t.Errorf("%s: FindByFlow(%v) = %q, want %q", step, f, got, want)
		}
		if err := s.checkConsistency(); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}

	// Two AORs share a flow (a phone with two lines), one AOR has two
	// contacts on the same flow.
	s.Update("a@x", set(binding("sip:a1", f1, exp), binding("sip:a2", f1, exp)))
	s.Update("b@x", set(binding("sip:b1", f1, exp), binding("sip:b2", f2, exp)))
	s.Update("c@x", set(binding("sip:c1", t1, exp), binding("sip:c6", v6, exp)))
	check("initial", f1, "a@x sip:a1", "a@x sip:a2", "b@x sip:b1")
	check("initial", f2, "b@x sip:b2")
	check("initial", t1, "c@x sip:c1")
	check("initial", t2)
	check("initial", v6, "c@x sip:c6")
	check("zero flow", sipx.Flow{})

	// Remove one of a's two contacts on f1: a stays indexed.
	s.Update("a@x", func(cur []Binding) ([]Binding, error) { return cur[1:], nil })
	check("a drops a1", f1, "a@x sip:a2", "b@x sip:b1")
	// b moves its f1 contact to f2.
	s.Update("b@x", func(cur []Binding) ([]Binding, error) {
		for i := range cur {
			cur[i].Flow = f2
		}
		return cur, nil
	})
	check("b moves", f1, "a@x sip:a2")
	check("b moves", f2, "b@x sip:b1", "b@x sip:b2")
	// TCP reconnect: new connection id.
	s.Update("c@x", func(cur []Binding) ([]Binding, error) {
		cur[0].Flow = t2
		return cur, nil
	})
	check("c reconnects", t1)
	check("c reconnects", t2, "c@x sip:c1")

	// Expiry: only a2 expires sooner.
	s.Update("a@x", func(cur []Binding) ([]Binding, error) {
		cur[0].Expires = c.Now().Add(10 * time.Second)
		return cur, nil
	})
	c.Advance(10 * time.Second)
	check("a expired, not purged", f1) // invisible
	if n := s.Expire(); n != 1 {
		t.Errorf("Expire = %d", n)
	}
	check("a purged", f1)
	s.Remove("b@x")
	check("b removed", f2)
	c.Advance(time.Minute)
	s.Expire()
	check("all expired", t2)
	check("all expired", v6)
	if n := s.flows.len(); n != 0 {
		t.Errorf("index not empty: %d", n)
	}
}

func TestAll(t *testing.T) {
	c := newClock()
	s := mustOpen(t, c)
	exp := c.Now().Add(time.Minute)
	for i := range 100 {
		s.Update(fmt.Sprintf("u%d@x", i), set(binding("sip:a", udpFlow("203.0.113.1:1"), exp)))
	}
	s.Update("short@x", set(binding("sip:s", udpFlow("203.0.113.1:2"), c.Now().Add(time.Second))))
	c.Advance(time.Second)
	n := 0
	s.All(func(b Binding) bool {
		if b.AOR == "short@x" {
			t.Error("All returned an expired binding")
		}
		// fn may call the store.
		s.Lookup(b.AOR)
		n++
		return true
	})
	if n != 100 {
		t.Errorf("All visited %d, want 100", n)
	}
	n = 0
	s.All(func(Binding) bool { n++; return n < 5 })
	if n != 5 {
		t.Errorf("All did not stop: %d", n)
	}
}

func TestCompactSharesStrings(t *testing.T) {
	var sh shard
	now := time.Now()
	msg := strings.Repeat("x", 1000) + `"Alice" <sip:alice@192.168.1.20:5060;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`
	contact := msg[1000:]
	b := Binding{
		User:       "alice",
		Contact:    contact,
		ContactURI: "sip:alice@192.168.1.20:5060;ob",
		Instance:   "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
		CallID:     "abc",
		UserAgent:  "Phone",
		NATReasons: []string{"private-via", "private-contact"},
		Path:       []string{"<sip:p1;lr>", "<sip:p2;lr>"},
		Flow:       sipx.Flow{Transport: strings.Clone("udp")},
	}
	got := sh.compact(b, "alice@example.com", now)
	if !equalBindings([]Binding{got}, []Binding{func() Binding {
		w := b
		w.AOR, w.Registered, w.Updated = "alice@example.com", now, now
		return w
	}()}) {
		t.Fatalf("compact changed values:\n%+v", got)
	}
	if unsafe.StringData(got.Contact) == unsafe.StringData(contact) {
		t.Errorf("stored Contact still points into the message")
	}
	arena := unsafe.StringData(got.Contact)
	for _, f := range []string{got.ContactURI, got.Instance} {
		if p := uintptr(unsafe.Pointer(unsafe.StringData(f))); p < uintptr(unsafe.Pointer(arena)) || p >= uintptr(unsafe.Pointer(arena))+uintptr(len(got.Contact)) {
			t.Errorf("%q not shared with Contact", f)
		}
	}
	if unsafe.StringData(got.User) != unsafe.StringData(got.AOR) {
		t.Errorf("User not shared with AOR")
	}
	if got.Flow.Transport != sipx.UDP {
		t.Errorf("transport not interned")
	}
	again := sh.compact(b, "alice@example.com", now)
	if &again.NATReasons[0] != &got.NATReasons[0] {
		t.Errorf("NAT reasons not interned")
	}
	if unsafe.StringData(again.UserAgent) != unsafe.StringData(got.UserAgent) {
		t.Errorf("user agent not interned")
	}
}

func TestEachByFlow(t *testing.T) {
	c := newClock()
	s := mustOpen(t, c)
	f, other := udpFlow("203.0.113.5:4000"), udpFlow("203.0.113.5:4001")
	for _, aor := range []string{"a@x", "b@x"} {
		if _, err := s.Update(aor, func([]Binding) ([]Binding, error) {
			return []Binding{{AOR: aor, User: aor[:1], ContactURI: "sip:" + aor, Flow: f, Expires: c.Now().Add(time.Hour)},
				{AOR: aor, ContactURI: "sip:o" + aor, Flow: other, Expires: c.Now().Add(time.Hour)}}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var users []string
	s.EachByFlow(f, func(b *Binding) bool { users = append(users, b.User); return true })
	slices.Sort(users)
	if strings.Join(users, ",") != "a,b" {
		t.Fatalf("EachByFlow visited %v", users)
	}
	n := 0
	s.EachByFlow(f, func(*Binding) bool { n++; return false })
	if n != 1 {
		t.Fatalf("EachByFlow went on after false: %d calls", n)
	}
	s.EachByFlow(sipx.Flow{}, func(*Binding) bool { t.Fatal("zero flow matched"); return true })
}
