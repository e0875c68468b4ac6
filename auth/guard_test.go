package auth

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var (
	ip1 = netip.MustParseAddr("198.51.100.1")
	ip2 = netip.MustParseAddr("198.51.100.2")
)

func TestGuardRate(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{Rate: 10, Burst: 5}, c.Now)
	for i := range 5 {
		if !g.Allow(ip1) {
			t.Fatalf("burst packet %d refused", i)
		}
	}
	if g.Allow(ip1) {
		t.Fatalf("packet past the burst allowed")
	}
	if !g.Allow(ip2) {
		t.Fatalf("other source refused")
	}
	// One token every 100ms.
	c.Advance(99 * time.Millisecond)
	if g.Allow(ip1) {
		t.Errorf("allowed before a token was due")
	}
	c.Advance(time.Millisecond)
	if !g.Allow(ip1) || g.Allow(ip1) {
		t.Errorf("want exactly one packet after 100ms")
	}
	// Sustained: over 10s at 100 packets/s offered, ~10/s get through.
	got := 0
	for range 1000 {
		c.Advance(10 * time.Millisecond)
		if g.Allow(ip1) {
			got++
		}
	}
	if got != 100 {
		t.Errorf("sustained: %d allowed in 10s, want 100", got)
	}
	// A long pause refills only up to the burst.
	c.Advance(time.Hour)
	n := 0
	for g.Allow(ip1) {
		n++
	}
	if n != 5 {
		t.Errorf("after a pause %d allowed, want burst 5", n)
	}
	if st := g.Stats(); st.RateLimited == 0 || st.BannedDrops != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestGuardDefaultBurst(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{Rate: 2.5}, c.Now)
	n := 0
	for g.Allow(ip1) {
		n++
	}
	if n != 3 {
		t.Errorf("default burst = %d, want ceil(2.5)", n)
	}
	off := NewGuard(GuardConfig{}, c.Now)
	for range 10000 {
		if !off.Allow(ip1) {
			t.Fatal("zero config refused a packet")
		}
	}
	if st := off.Stats(); st.Sources != 0 {
		t.Errorf("rate off still tracks sources: %+v", st)
	}
}

func TestGuardBan(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{BanFailures: 3, BanWindow: time.Minute, BanTime: 10 * time.Minute}, c.Now)
	if g.AuthFailed(ip1) || g.AuthFailed(ip1) {
		t.Fatal("banned before the 3rd failure")
	}
	if !g.Allow(ip1) {
		t.Fatal("refused before the ban")
	}
	if !g.AuthFailed(ip1) {
		t.Fatal("not banned at exactly 3 failures")
	}
	if g.Allow(ip1) {
		t.Fatal("banned source allowed")
	}
	if !g.Allow(ip2) {
		t.Fatal("neighbour refused")
	}
	if !g.AuthFailed(ip1) {
		t.Error("AuthFailed on banned source should report banned")
	}
	bans := g.Bans()
	if len(bans) != 1 || bans[0].IP != ip1 || bans[0].Reason != BanReasonAuth || bans[0].Failures != 3 ||
		!bans[0].Until.Equal(c.Now().Add(10*time.Minute)) {
		t.Errorf("Bans = %+v", bans)
	}
	c.Advance(10*time.Minute - time.Nanosecond)
	if g.Allow(ip1) {
		t.Error("allowed just before the ban ends")
	}
	c.Advance(time.Nanosecond)
	if !g.Allow(ip1) {
		t.Error("refused after the ban ended")
	}
	if len(g.Bans()) != 0 {
		t.Errorf("expired ban listed")
	}
	// The count restarted: it takes 3 more failures.
	if g.AuthFailed(ip1) || g.AuthFailed(ip1) || !g.AuthFailed(ip1) {
		t.Error("count not restarted after a ban")
	}
	st := g.Stats()
	if st.BansIssued != 2 || st.BannedDrops != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestGuardBanWindow(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{BanFailures: 3, BanWindow: time.Minute}, c.Now)
	g.AuthFailed(ip1)
	g.AuthFailed(ip1)
	c.Advance(time.Minute) // window over: count restarts
	if g.AuthFailed(ip1) || g.AuthFailed(ip1) {
		t.Fatal("failures from an expired window counted")
	}
	c.Advance(59 * time.Second)
	if !g.AuthFailed(ip1) {
		t.Fatal("3 failures within the window did not ban")
	}
	if !g.Bans()[0].Until.Equal(c.Now().Add(DefaultBanTime)) {
		t.Errorf("default ban time not used")
	}
}

func TestGuardAuthOK(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{BanFailures: 2}, c.Now)
	g.AuthFailed(ip1)
	g.AuthOK(ip1)
	if g.AuthFailed(ip1) {
		t.Error("AuthOK did not reset the count")
	}
	g.AuthOK(ip2) // unknown source: no effect, no panic
	if !g.AuthFailed(ip1) {
		t.Error("not banned")
	}
}

func TestGuardManualBan(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{Rate: 100}, c.Now)
	g.Ban(ip1, time.Minute)
	g.BanWithReason(ip2, 0, BanReasonScanner)
	if g.Allow(ip1) || g.Allow(ip2) {
		t.Fatal("manually banned source allowed")
	}
	bans := g.Bans()
	if len(bans) != 2 || bans[0].IP != ip1 || bans[0].Reason != BanReasonManual || bans[1].Reason != BanReasonScanner ||
		!bans[1].Until.Equal(c.Now().Add(DefaultBanTime)) {
		t.Errorf("Bans = %+v", bans)
	}
	if !g.Unban(ip1) || g.Unban(ip1) {
		t.Error("Unban results wrong")
	}
	if !g.Allow(ip1) {
		t.Error("unbanned source refused")
	}
	g.Ban(ip1, time.Duration(1<<62)) // overflow-safe
	if g.Allow(ip1) {
		t.Error("very long ban not applied")
	}
}

func TestGuardTrusted(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{
		Rate: 1, Burst: 1, BanFailures: 1,
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:192.0.2.0/120"), netip.MustParsePrefix("2001:db8::1/128")},
	}, c.Now)
	for _, s := range []string{"10.1.2.3", "::ffff:10.9.9.9", "192.0.2.77", "2001:db8::1"} {
		ip := netip.MustParseAddr(s)
		for range 100 {
			if !g.Allow(ip) {
				t.Fatalf("%s: trusted source rate-limited", s)
			}
		}
		if g.AuthFailed(ip) {
			t.Errorf("%s: trusted source banned", s)
		}
		g.Ban(ip, time.Hour)
		if !g.Allow(ip) {
			t.Errorf("%s: trusted source refused after manual ban", s)
		}
	}
	if !g.Allow(ip1) || g.Allow(ip1) {
		t.Error("untrusted source not limited")
	}
}

func TestGuardKeys(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{Rate: 1, Burst: 1}, c.Now)
	// IPv4-mapped counts as IPv4.
	if !g.Allow(netip.MustParseAddr("::ffff:198.51.100.1")) || g.Allow(ip1) {
		t.Error("mapped and plain IPv4 are different sources")
	}
	// One /64 is one source; another /64 is another.
	if !g.Allow(netip.MustParseAddr("2001:db8:1:2::1")) || g.Allow(netip.MustParseAddr("2001:db8:1:2:ffff::9")) {
		t.Error("same /64 counted separately")
	}
	if !g.Allow(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("different /64 refused")
	}
	// Zones are ignored.
	if !g.Allow(netip.MustParseAddr("fe80::1%eth0")) || g.Allow(netip.MustParseAddr("fe80::2%eth1")) {
		t.Error("zone or host bits separate fe80::/64 sources")
	}
	// Per-address IPv6 when configured.
	g128 := NewGuard(GuardConfig{Rate: 1, Burst: 1, IPv6PrefixLen: 128}, c.Now)
	if !g128.Allow(netip.MustParseAddr("2001:db8::1")) || !g128.Allow(netip.MustParseAddr("2001:db8::2")) {
		t.Error("/128 sources merged")
	}
	// Bans show the prefix address.
	g.Ban(netip.MustParseAddr("2001:db8:1:2::1234"), time.Minute)
	if b := g.Bans(); len(b) != 1 || b[0].IP != netip.MustParseAddr("2001:db8:1:2::") {
		t.Errorf("Bans = %+v", b)
	}
	// The zero address does not panic.
	g.Allow(netip.Addr{})
	g.AuthFailed(netip.Addr{})
}

func TestGuardEviction(t *testing.T) {
	c := newClock()
	const max = 128 // two per shard
	g := NewGuard(GuardConfig{Rate: 1, Burst: 1, MaxSources: max}, c.Now)
	for i := range 10000 {
		g.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	st := g.Stats()
	if st.Sources > max || st.Sources < max/2 {
		t.Errorf("%d sources tracked, cap %d", st.Sources, max)
	}
	if st.Evicted != uint64(10000-st.Sources) {
		t.Errorf("evicted %d, sources %d", st.Evicted, st.Sources)
	}
	// Least recently seen goes first: keep one source busy, it survives.
	g = NewGuard(GuardConfig{Rate: 1000, Burst: 1000, MaxSources: max}, c.Now)
	for i := range 10000 {
		if !g.Allow(ip1) {
			t.Fatalf("busy source lost its bucket (evicted?) at %d", i)
		}
		g.Allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
		if i%1000 == 999 {
			c.Advance(time.Second) // refill
		}
	}
	// Bans are bounded separately, and survive source churn.
	g = NewGuard(GuardConfig{MaxBans: 64}, c.Now)
	g.Ban(ip1, time.Hour)
	for i := range 1000 {
		g.Ban(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), time.Duration(2+i)*time.Hour)
	}
	if st := g.Stats(); st.Bans > 64 {
		t.Errorf("%d bans, cap 64", st.Bans)
	}
	if !g.Allow(ip1) {
		t.Errorf("the ban ending soonest should have made room")
	}
}

func TestGuardSweep(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{Rate: 10, Burst: 10, BanFailures: 5, BanWindow: time.Minute, BanTime: time.Minute}, c.Now)
	for i := range 1000 {
		g.Allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	g.AuthFailed(ip1)
	g.Ban(ip2, time.Minute)
	if st := g.Stats(); st.Sources != 1001 || st.Bans != 1 {
		t.Fatalf("stats %+v", st)
	}
	c.Advance(time.Second) // buckets full again; ip1's window still open
	g.Sweep()
	if st := g.Stats(); st.Sources != 1 || st.Bans != 1 {
		t.Errorf("after sweep: %+v", st)
	}
	c.Advance(time.Minute)
	g.Sweep()
	if st := g.Stats(); st.Sources != 0 || st.Bans != 0 {
		t.Errorf("after second sweep: %+v", st)
	}
	// Slots are reused after a sweep.
	for i := range 1000 {
		g.Allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	total := 0
	for i := range g.shards {
		total += len(g.shards[i].slots) - 1
	}
	if total != 1001 {
		t.Errorf("%d slots allocated, want reuse (1001)", total)
	}
	if st := g.Stats(); st.Sources != 1000 {
		t.Errorf("stats %+v", st)
	}
}

func TestGuardAllowAllocs(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{Rate: 1e6, Burst: 1e6, BanFailures: 5, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, c.Now)
	g.Ban(ip2, time.Hour)
	v6 := netip.MustParseAddr("2001:db8::1")
	g.Allow(ip1)
	g.Allow(v6)
	if n := testing.AllocsPerRun(1000, func() { g.Allow(ip1); g.Allow(ip2); g.Allow(v6) }); n != 0 {
		t.Errorf("Allow allocates %v times", n)
	}
}

func TestIsScanner(t *testing.T) {
	c := newClock()
	g := NewGuard(GuardConfig{ScannerUserAgents: append(DefaultScannerUserAgents(), "", "ÄBC")}, c.Now)
	for ua, want := range map[string]bool{
		"friendly-scanner":         true,
		"Friendly-Scanner/1.0":     true,
		"sipvicious":               true,
		"SIPVicious 0.3.4":         true,
		"pplsip":                   true,
		"VaxSIPUserAgent/3.1":      true,
		"xx sipcli/v1.8 yy":        true,
		"Yealink SIP-T46S 66.86":   false,
		"Linphone/5.2 (belle-sip)": false,
		"":                         false,
		"friendly-scanne":          false,
		"äbc":                      false, // non-ASCII is compared exactly
		"ÄBC!":                     true,
	} {
		if got := g.IsScanner(ua); got != want {
			t.Errorf("IsScanner(%q) = %v", ua, got)
		}
	}
	if st := g.Stats(); st.ScannerDrops != 8 {
		t.Errorf("scanner drops %d", st.ScannerDrops)
	}
	if n := testing.AllocsPerRun(100, func() { g.IsScanner("Mozilla/5.0 Grandstream GXP2170 1.0.11.3") }); n != 0 {
		t.Errorf("IsScanner allocates %v", n)
	}
	if NewGuard(GuardConfig{}, nil).IsScanner("friendly-scanner") {
		t.Error("no patterns should match nothing")
	}
}

func TestGuardConcurrent(t *testing.T) {
	g := NewGuard(GuardConfig{Rate: 100, Burst: 10, BanFailures: 3, MaxSources: 256}, nil)
	done := make(chan struct{})
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 5000 {
				ip := netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i % 50)})
				g.Allow(ip)
				if i%7 == 0 {
					g.AuthFailed(ip)
				}
				if i%11 == 0 {
					g.AuthOK(ip)
				}
				if i%500 == 0 {
					g.Sweep()
					g.Bans()
					g.Stats()
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	if st := g.Stats(); st.Sources > 256+guardShards {
		t.Errorf("stats %+v", st)
	}
	_ = fmt.Sprint(g.Bans())
}
