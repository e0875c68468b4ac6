package main

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/sipedge/sipedge/auth"
	"github.com/sipedge/sipedge/keepalive"
	"github.com/sipedge/sipedge/sipx"
	"github.com/sipedge/sipedge/uatest"
	"golang.org/x/sys/unix"
)

// TestOptionsOKIsAnAnswer: the phones' 200 to a real keepalive OPTIONS
// parses with sipedge's parser and counts as the answer in a real
// keepalive.Manager.
func TestOptionsOKIsAnAnswer(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	var sent [][]byte
	f := sipx.Flow{Transport: sipx.UDP, Local: netip.MustParseAddrPort("127.0.0.1:5060"),
		Remote: netip.MustParseAddrPort("127.64.0.1:40000")}
	m := keepalive.New(keepalive.Config{
		Default: keepalive.Policy{Interval: 25 * time.Second, Method: keepalive.MethodOptions},
		Send: func(_ sipx.Flow, b []byte) error {
			mu.Lock()
			sent = append(sent, append([]byte(nil), b...))
			mu.Unlock()
			return nil
		},
		Build: func(f sipx.Flow, branch string) []byte {
			return keepalive.OptionsPing(f, branch, "127.0.0.1", 5060, "bench.example")
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    func() time.Time { return now },
	})
	m.Pin(f, keepalive.Policy{Interval: 25 * time.Second, Method: keepalive.MethodOptions})
	now = now.Add(30 * time.Second)
	m.Step()
	if len(sent) != 1 {
		t.Fatalf("%d pings sent, want 1", len(sent))
	}

	var req msg
	if !parseMsg(sent[0], &req) || !req.request || string(req.method) != "OPTIONS" {
		t.Fatalf("ping not parsed as OPTIONS:\n%s", sent[0])
	}
	out := appendOptionsOK(nil, &req, []byte("tag1"))
	parsed, err := sipx.ParseMessage(out)
	if err != nil {
		t.Fatalf("200 does not parse: %v\n%s", err, out)
	}
	res, ok := parsed.(*sipx.Response)
	if !ok || res.StatusCode != 200 {
		t.Fatalf("not a 200: %s", out)
	}
	for _, h := range []string{"Call-ID", "CSeq", "From"} {
		if got, want := sipx.HeaderValue(res, h), headerOf(t, sent[0], h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if tag, _ := res.To().Params.Get("tag"); tag != "tag1" {
		t.Errorf("To tag %q, want tag1", tag)
	}
	now = now.Add(3 * time.Millisecond)
	if !m.Response(res, f) {
		t.Fatal("Manager did not take the 200 as a ping answer")
	}
	st, _ := m.State(f)
	if st.Answered != 1 || st.Status != keepalive.OK || st.RTT != 3*time.Millisecond {
		t.Fatalf("state after answer: answered %d, status %v, rtt %v", st.Answered, st.Status, st.RTT)
	}

	// A To that has a tag keeps it; several Vias are echoed in order.
	in := "OPTIONS sip:a@127.64.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP p1;branch=z9hG4bK1\r\nv: SIP/2.0/UDP p2;branch=z9hG4bK2\r\n" +
		"f: <sip:x@y>;tag=a\r\nt: <sip:a@b>;tag=b\r\ni: c1\r\nCSeq: 7 OPTIONS\r\n\r\n"
	if !parseMsg([]byte(in), &req) {
		t.Fatal("compact headers not parsed")
	}
	got := string(appendOptionsOK(nil, &req, []byte("new")))
	if strings.Contains(got, "new") || !strings.Contains(got, "Via: SIP/2.0/UDP p1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP p2;branch=z9hG4bK2\r\n") ||
		!strings.Contains(got, "CSeq: 7 OPTIONS\r\n") || !strings.Contains(got, "Call-ID: c1\r\n") {
		t.Fatalf("bad 200:\n%s", got)
	}
}

func headerOf(t *testing.T, b []byte, name string) string {
	t.Helper()
	m, err := sipx.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	return sipx.HeaderValue(m, name)
}

func TestHasTag(t *testing.T) {
	for v, want := range map[string]bool{
		"<sip:a@b>":                 false,
		"<sip:a@b;tag=x>":           false, // a URI parameter, not the header's
		"<sip:a@b>;tag=x":           true,
		"<sip:a@b> ; TAG = x":       true,
		"<sip:a@b>;foo=1;tag=x":     true,
		"<sip:a@b>;tagx=1":          false,
		"sip:a@b;tag=x":             true,
		`"A;tag=x" <sip:a@b>;foo=1`: false,
	} {
		if got := hasTag([]byte(v)); got != want {
			t.Errorf("hasTag(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestDigestAgainstSipedge: the phones' Authorization passes sipedge's
// own verifier, for the challenge a UA would pick first and for MD5 only.
func TestDigestAgainstSipedge(t *testing.T) {
	const realm, user = "bench.example", "ka0000001"
	creds := func(string) (auth.Credentials, bool) {
		return auth.Credentials{HA1MD5: auth.HA1(auth.AlgMD5, user, realm, password(user)),
			HA1SHA256: auth.HA1(auth.AlgSHA256, user, realm, password(user))}, true
	}
	for _, algs := range [][]string{nil, {auth.AlgMD5}} {
		d, err := auth.NewDigest(make([]byte, 32), realm, algs, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		res := "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
		for _, c := range d.Challenges(false) {
			res += "WWW-Authenticate: " + c + "\r\n"
		}
		var m msg
		if !parseMsg([]byte(res+"Content-Length: 0\r\n\r\n"), &m) || m.status != 401 || m.nauth == 0 {
			t.Fatalf("401 not parsed")
		}
		c, ok := pickChallenge(&m)
		if !ok {
			t.Fatal("no challenge picked")
		}
		if want := auth.AlgSHA256; algs != nil {
			if c.Algorithm != auth.AlgMD5 {
				t.Errorf("picked %q", c.Algorithm)
			}
		} else if c.Algorithm != want {
			t.Errorf("picked %q, want %q first", c.Algorithm, want)
		}
		hdr := uatest.Authorization(c, user, password(user), "REGISTER", "sip:"+realm)
		got, err := d.Verify("REGISTER", hdr, creds)
		if err != nil || got != user {
			t.Fatalf("Verify(%s) = %q, %v", hdr, got, err)
		}
		bad := uatest.Authorization(c, user, "wrong", "REGISTER", "sip:"+realm)
		if _, err := d.Verify("REGISTER", bad, creds); err == nil {
			t.Fatal("a wrong password verified")
		}
	}
}

// TestRegisterIsNATed: the REGISTER parses, and sipedge's NAT detection
// would call it NATed when it comes from the phone's loopback address.
func TestRegisterIsNATed(t *testing.T) {
	p := &regParams{user: "ka0000001", domain: "bench.example", private: privateIP(70000), callID: "c1@x",
		tag: "t", branch: "z9hG4bK.x", cseq: 2, expires: 3600, auth: `Digest username="ka0000001"`}
	b := appendRegister(nil, p)
	m, err := sipx.ParseMessage(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	req := m.(*sipx.Request)
	if req.Method != sipx.REGISTER || req.Recipient.Host != "bench.example" {
		t.Fatalf("bad request line: %s", b)
	}
	cs := sipx.Contacts(req)
	if len(cs) != 1 || cs[0].Address.Host != "10.1.17.112" || cs[0].Address.Port != 5060 {
		t.Fatalf("contact %v", cs)
	}
	if v := req.Via(); v.Host != "10.1.17.112" {
		t.Fatalf("via host %q", v.Host)
	}
	if sipx.HeaderValue(req, "Expires") != "3600" || sipx.HeaderValue(req, "Authorization") == "" {
		t.Fatalf("headers missing: %s", b)
	}
	ip := loopIP(70000)
	if ip[0] != 127 || loopIP(0) != [4]byte{127, 64, 0, 1} || loopIP(253)[3] != 254 || loopIP(254)[3] != 1 {
		t.Fatalf("loopIP: %v %v %v", ip, loopIP(0), loopIP(254))
	}
	seen := map[[4]byte]bool{}
	for i := 0; i < 200000; i++ {
		a := loopIP(i)
		if seen[a] || a[3] == 0 || a[3] == 255 {
			t.Fatalf("loopIP(%d) = %v repeats or ends in 0/255", i, a)
		}
		seen[a] = true
	}
}

func TestSpread(t *testing.T) {
	bins := make([]uint32, 1000) // 10 s
	for i := range bins {
		bins[i] = 4
	}
	bins[500] = 40 // one busy 10 ms
	for i := 600; i < 620; i++ {
		bins[i] = 0 // 200 ms of silence
	}
	s := spread(bins)
	if s.Max10ms != 40 || s.Max100ms != 76 || s.LongestGapMs != 200 || s.MinPerSec != 320 {
		t.Fatalf("%+v", s)
	}
	if s.Ratio100ms < 1.8 || s.Ratio100ms > 2.0 {
		t.Fatalf("ratio %v", s.Ratio100ms)
	}
	r := randomMaxOverMean(100000, 25*time.Second, 100*time.Millisecond, 3, 1)
	if r < 1.05 || r > 1.3 {
		t.Fatalf("random max/mean for 400 per bin = %v, want about 1.15", r)
	}
	if lo, hi := histRange(map[string]int{"2": 5, "3": 1, "0": 2}); lo != 0 || hi != 3 {
		t.Fatalf("histRange %d %d", lo, hi)
	}
}

func TestProcParsers(t *testing.T) {
	rss, anon, file := parseProcStatus("Name:\tx\nVmRSS:\t  2048 kB\nRssAnon:\t 1024 kB\nRssFile:\t 512 kB\n")
	if rss != 2048*1024 || anon != 1024*1024 || file != 512*1024 {
		t.Fatalf("parseProcStatus = %d %d %d", rss, anon, file)
	}
	snmp := "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\nUdp: 10 1 3 9 2\n"
	if m := parseSnmpUDP(snmp); m["RcvbufErrors"] != 2 || m["InErrors"] != 3 {
		t.Fatalf("parseSnmpUDP = %v", m)
	}
	if rt := parseMemStats("heap profile: 1: 2 [3: 4] @ heap/1048576\n# runtime.MemStats\n# TotalAlloc = 123\n# NumGC = 7\n# GCCPUFraction = 0.01\n"); rt["TotalAlloc"] != 123 || rt["NumGC"] != 7 {
		t.Fatalf("parseMemStats = %v", rt)
	}
	mt := parseMetrics("# TYPE x counter\nsipedge_keepalive_pings_total 12\nsipedge_keepalive_flows{status=\"ok\"} 3\n")
	if mt["sipedge_keepalive_pings_total"] != 12 || mt[`sipedge_keepalive_flows{status="ok"}`] != 3 {
		t.Fatalf("parseMetrics = %v", mt)
	}
}

func TestStampOf(t *testing.T) {
	hl := unix.CmsgLen(0)
	ts := unix.NsecToTimespec(1_700_000_000_123_456_789)
	buf := make([]byte, unix.CmsgSpace(8)+unix.CmsgSpace(16))
	// An unrelated message first, then the timestamp.
	h := (*unix.Cmsghdr)(unsafe.Pointer(&buf[0]))
	h.Level, h.Type = unix.SOL_SOCKET, 99
	h.SetLen(unix.CmsgLen(8))
	o := unix.CmsgSpace(8)
	h2 := (*unix.Cmsghdr)(unsafe.Pointer(&buf[o]))
	h2.Level, h2.Type = unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS
	h2.SetLen(unix.CmsgLen(16))
	binary.NativeEndian.PutUint64(buf[o+hl:], uint64(ts.Sec))
	binary.NativeEndian.PutUint64(buf[o+hl+8:], uint64(ts.Nsec))
	if got := stampOf(buf); got != 1_700_000_000_123_456_789 {
		t.Fatalf("stampOf = %d", got)
	}
	if stampOf(buf[:o]) != 0 || stampOf(nil) != 0 {
		t.Fatal("stamp found where there is none")
	}
}
