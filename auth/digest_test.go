package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func newClock() *clock                   { return &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newTestDigest(t testing.TB, c *clock, algs ...string) *Digest {
	t.Helper()
	if len(algs) == 0 {
		algs = nil
	}
	d, err := NewDigest(testSecret, "sipedge.test", algs, time.Minute, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestResponseRFC2617 computes the RFC 2617 §3.5 example from first
// principles and checks it against the RFC's literal response.
func TestResponseRFC2617(t *testing.T) {
	const (
		user, realm, pass = "Mufasa", "testrealm@host.com", "Circle Of Life"
		nonce             = "dcd98b7102dd2f0e8b11d0f600bfb0c093"
		uri, nc, cnonce   = "/dir/index.html", "00000001", "0a4f113b"
		method            = "GET"
		want              = "6629fae49393a05397450978507c4ef1"
	)
	ha1 := md5hex(user + ":" + realm + ":" + pass)
	ha2 := md5hex(method + ":" + uri)
	independent := md5hex(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	if independent != want {
		t.Fatalf("first-principles response %s, RFC says %s", independent, want)
	}
	if got := HA1("MD5", user, realm, pass); got != ha1 {
		t.Errorf("HA1 = %s, want %s", got, ha1)
	}
	var buf [64]byte
	if got := string(response(algMD5, buf[:], ha1, nonce, nc, cnonce, "auth", method, uri)); got != want {
		t.Errorf("response = %s, want %s", got, want)
	}
}

// TestResponseRFC7616 checks the RFC 7616 §3.9.1 SHA-256 example.
func TestResponseRFC7616(t *testing.T) {
	const (
		user, realm, pass = "Mufasa", "http-auth@example.org", "Circle of Life"
		nonce             = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
		uri, nc, cnonce   = "/dir/index.html", "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
		method            = "GET"
		want              = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
	)
	ha1 := HA1("sha-256", user, realm, pass)
	if ha1 != sha256hex(user+":"+realm+":"+pass) {
		t.Fatalf("HA1 = %s", ha1)
	}
	var buf [64]byte
	if got := string(response(algSHA256, buf[:], ha1, nonce, nc, cnonce, "auth", method, uri)); got != want {
		t.Errorf("response = %s, want %s", got, want)
	}
	// The same through the header parser, with the RFC's header text.
	h := `Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`
	scheme, p, err := parseAuthorization(h)
	if err != nil || scheme != "Digest" {
		t.Fatalf("parse: %q %v", scheme, err)
	}
	got := response(algSHA256, buf[:], ha1, p.v[pNonce], p.v[pNC], p.v[pCnonce], p.v[pQop], method, p.v[pURI])
	if string(got) != p.v[pResponse] {
		t.Errorf("parsed response %s, computed %s", p.v[pResponse], got)
	}
}

// TestResponseRFC2069 checks the qop-less form against first principles.
func TestResponseRFC2069(t *testing.T) {
	ha1 := HA1("MD5", "bob", "r", "pw")
	want := md5hex(ha1 + ":n0nce:" + md5hex("REGISTER:sip:r"))
	var buf [64]byte
	if got := string(response(algMD5, buf[:], ha1, "n0nce", "", "", "", "REGISTER", "sip:r")); got != want {
		t.Errorf("got %s want %s", got, want)
	}
}

func TestHA1Unknown(t *testing.T) {
	if got := HA1("SHA-512-256", "a", "b", "c"); got != "" {
		t.Errorf("HA1 unknown alg = %q", got)
	}
}

// TestNonceHMAC checks our hand-rolled HMAC against crypto/hmac.
func TestNonceHMAC(t *testing.T) {
	for _, secret := range [][]byte{testSecret, []byte(strings.Repeat("k", 100))} {
		c := newClock()
		d, err := NewDigest(secret, "sipedge.test", nil, 0, c.Now)
		if err != nil {
			t.Fatal(err)
		}
		n := d.newNonce(c.Now())
		if len(n) != nonceLen || strings.ContainsAny(n, `"\,`) {
			t.Fatalf("nonce %q", n)
		}
		raw, err := base64.RawURLEncoding.DecodeString(n)
		if err != nil {
			t.Fatal(err)
		}
		m := hmac.New(sha256.New, secret)
		m.Write(raw[:16])
		m.Write([]byte("sipedge.test"))
		if want := m.Sum(nil)[:nonceMACLen]; !hmac.Equal(want, raw[16:]) {
			t.Errorf("mac %x, crypto/hmac %x", raw[16:], want)
		}
	}
}

// client builds an Authorization header value the way a UA would,
// answering challenge ch.
type client struct {
	user, pass string
	uri        string
	nc         int
	cnonce     string
	noQop      bool
}

func (cl *client) answer(t testing.TB, method, ch string) string {
	t.Helper()
	_, p, err := parseAuthorization(ch)
	if err != nil {
		t.Fatalf("parse challenge %q: %v", ch, err)
	}
	a := parseAlg(p.v[pAlgorithm])
	realm, nonce := p.v[pRealm], p.v[pNonce]
	h := func(s string) string {
		if a == algSHA256 {
			return sha256hex(s)
		}
		return md5hex(s)
	}
	ha1 := h(cl.user + ":" + realm + ":" + cl.pass)
	ha2 := h(method + ":" + cl.uri)
	if cl.noQop {
		return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s`,
			cl.user, realm, nonce, cl.uri, h(ha1+":"+nonce+":"+ha2), a)
	}
	cl.nc++
	nc := fmt.Sprintf("%08x", cl.nc)
	resp := h(ha1 + ":" + nonce + ":" + nc + ":" + cl.cnonce + ":auth:" + ha2)
	return fmt.Sprintf(`Digest username="%s",realm="%s",nonce="%s",uri="%s",response="%s",algorithm=%s,cnonce="%s",qop=auth,nc=%s`,
		cl.user, realm, nonce, cl.uri, resp, a, cl.cnonce, nc)
}

func usersLookup(users ...User) func(string) (Credentials, bool) {
	return CredentialsFunc(NewMemUsers(users...), "sipedge.test")
}

func TestChallenges(t *testing.T) {
	c := newClock()
	d := newTestDigest(t, c)
	chs := d.Challenges(false)
	if len(chs) != 2 {
		t.Fatalf("%d challenges", len(chs))
	}
	for i, want := range []string{"SHA-256", "MD5"} {
		ch := chs[i]
		if !strings.HasPrefix(ch, `Digest realm="sipedge.test", nonce="`) ||
			!strings.HasSuffix(ch, `", algorithm=`+want+`, qop="auth"`) {
			t.Errorf("challenge %d = %s", i, ch)
		}
		if strings.Contains(ch, "stale") || strings.Contains(ch, "opaque") {
			t.Errorf("challenge %d = %s", i, ch)
		}
	}
	if chs[0][strings.Index(chs[0], "nonce="):][:45] != chs[1][strings.Index(chs[1], "nonce="):][:45] {
		t.Errorf("nonces differ between algorithms")
	}
	for _, ch := range d.Challenges(true) {
		if !strings.HasSuffix(ch, `qop="auth", stale=true`) {
			t.Errorf("stale challenge = %s", ch)
		}
	}
	// One nonce per second (stateless nonces: sharing changes nothing for
	// security and saves an HMAC per challenge); a new one the next second.
	a, b := d.Challenges(false)[0], d.Challenges(false)[0]
	if a != b {
		t.Errorf("two challenges in the same second got different nonces")
	}
	c.Advance(time.Second)
	if n := d.Challenges(false)[0]; n == a {
		t.Errorf("the nonce did not change after a second")
	}
	// ChallengesFor drops algorithms the user cannot answer.
	md5only := d.ChallengesFor(false, Credentials{HA1MD5: md5hex("x")})
	if len(md5only) != 1 || !strings.Contains(md5only[0], "algorithm=MD5") {
		t.Errorf("ChallengesFor md5-only = %q", md5only)
	}
	if got := d.ChallengesFor(false, Credentials{}); len(got) != 2 {
		t.Errorf("ChallengesFor unknown user = %q", got)
	}
	// Realm with characters needing escapes.
	q, err := NewDigest(testSecret, `a"b\c`, []string{"md5"}, 0, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	ch := q.Challenges(false)[0]
	if !strings.HasPrefix(ch, `Digest realm="a\"b\\c", nonce=`) {
		t.Errorf("escaped realm challenge = %s", ch)
	}
	_, p, err := parseAuthorization(ch)
	if err != nil || p.v[pRealm] != `a"b\c` {
		t.Errorf("realm round trip %q %v", p.v[pRealm], err)
	}
}

func TestNewDigestErrors(t *testing.T) {
	for name, f := range map[string]func() (*Digest, error){
		"short secret": func() (*Digest, error) { return NewDigest([]byte("short"), "r", nil, 0, nil) },
		"empty realm":  func() (*Digest, error) { return NewDigest(nil, "", nil, 0, nil) },
		"bad alg":      func() (*Digest, error) { return NewDigest(nil, "r", []string{"SHA-512"}, 0, nil) },
		"dup alg":      func() (*Digest, error) { return NewDigest(nil, "r", []string{"MD5", "md5"}, 0, nil) },
		"no alg":       func() (*Digest, error) { return NewDigest(nil, "r", []string{}, 0, nil) },
		"sess alg":     func() (*Digest, error) { return NewDigest(nil, "r", []string{"MD5-sess"}, 0, nil) },
		"negative ttl": func() (*Digest, error) { return NewDigest(nil, "r", nil, -time.Second, nil) },
	} {
		if _, err := f(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	d, err := NewDigest(nil, "r", nil, 0, nil)
	if err != nil || d.ttl != int64(DefaultNonceTTL) || d.Realm() != "r" {
		t.Errorf("defaults: %v %+v", err, d)
	}
}

func TestVerifyRoundTrip(t *testing.T) {
	alice := NewUser("alice", "sipedge.test", "s3cret", "")
	lookup := usersLookup(alice)
	for i, alg := range []string{"SHA-256", "MD5"} {
		for _, noQop := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/noqop=%v", alg, noQop), func(t *testing.T) {
				c := newClock()
				d := newTestDigest(t, c)
				ch := d.Challenges(false)[i]
				cl := &client{user: "alice", pass: "s3cret", uri: "sip:sipedge.test", cnonce: "abc123", noQop: noQop}
				for range 3 { // nonce reuse with increasing nc
					user, err := d.Verify("REGISTER", cl.answer(t, "REGISTER", ch), lookup)
					if err != nil || user != "alice" {
						t.Fatalf("Verify = %q, %v", user, err)
					}
					c.Advance(10 * time.Second)
				}
				// Method is part of HA2.
				if _, err := d.Verify("INVITE", cl.answer(t, "REGISTER", ch), lookup); !errors.Is(err, ErrBadResponse) {
					t.Errorf("other method: %v", err)
				}
			})
		}
	}
}

func TestVerifyUpperCaseResponse(t *testing.T) {
	c := newClock()
	d := newTestDigest(t, c)
	cl := &client{user: "alice", pass: "pw", uri: "sip:x", cnonce: "c"}
	h := cl.answer(t, "REGISTER", d.Challenges(false)[1])
	i := strings.Index(h, `response="`) + len(`response="`)
	h = h[:i] + strings.ToUpper(h[i:i+32]) + h[i+32:]
	if _, err := d.Verify("REGISTER", h, usersLookup(NewUser("alice", "sipedge.test", "pw", ""))); err != nil {
		t.Errorf("upper-case hex response: %v", err)
	}
}

func TestVerifyStale(t *testing.T) {
	c := newClock()
	d := newTestDigest(t, c)
	lookup := usersLookup(NewUser("alice", "sipedge.test", "pw", ""))
	ch := d.Challenges(false)[0]
	good := &client{user: "alice", pass: "pw", uri: "sip:x", cnonce: "c"}
	bad := &client{user: "alice", pass: "wrong", uri: "sip:x", cnonce: "c"}

	c.Advance(time.Minute) // exactly the TTL: still fresh
	if _, err := d.Verify("REGISTER", good.answer(t, "REGISTER", ch), lookup); err != nil {
		t.Fatalf("at TTL: %v", err)
	}
	c.Advance(time.Nanosecond)
	user, err := d.Verify("REGISTER", good.answer(t, "REGISTER", ch), lookup)
	if !errors.Is(err, ErrStale) || user != "alice" {
		t.Errorf("past TTL: %q %v", user, err)
	}
	// A stale nonce with a wrong password is a failure, not stale.
	if _, err := d.Verify("REGISTER", bad.answer(t, "REGISTER", ch), lookup); !errors.Is(err, ErrBadResponse) {
		t.Errorf("stale + wrong password: %v", err)
	}
	// A nonce from the future (clock stepped back) beyond the TTL is stale.
	c.Advance(-3 * time.Minute)
	if _, err := d.Verify("REGISTER", good.answer(t, "REGISTER", ch), lookup); !errors.Is(err, ErrStale) {
		t.Errorf("future nonce: %v", err)
	}
	// The new challenge marks stale and works.
	ch = d.Challenges(true)[0]
	if _, err := d.Verify("REGISTER", good.answer(t, "REGISTER", ch), lookup); err != nil {
		t.Errorf("after re-challenge: %v", err)
	}
}

func TestVerifyForgedNonce(t *testing.T) {
	c := newClock()
	d := newTestDigest(t, c)
	lookup := usersLookup(NewUser("alice", "sipedge.test", "pw", ""))
	cl := &client{user: "alice", pass: "pw", uri: "sip:x", cnonce: "c"}
	ch := d.Challenges(false)[0]
	i := strings.Index(ch, `nonce="`) + len(`nonce="`)
	nonce := ch[i : i+nonceLen]

	other, _ := NewDigest([]byte("another secret, 16+ bytes"), "sipedge.test", nil, time.Minute, c.Now)
	raw, _ := base64.RawURLEncoding.DecodeString(nonce)
	raw[0] ^= 1 // alter the timestamp, keep the MAC
	tampered := base64.RawURLEncoding.EncodeToString(raw)
	for name, forged := range map[string]string{
		"other secret":   other.newNonce(c.Now()),
		"tampered ts":    tampered,
		"wrong length":   nonce + "AA",
		"not base64":     strings.Repeat("!", nonceLen),
		"rfc nonce":      "dcd98b7102dd2f0e8b11d0f600bfb0c093",
		"non-canonical":  nonce[:nonceLen-1] + string(nonce[nonceLen-1]^1),
		"trailing space": nonce[:nonceLen-1] + " ",
	} {
		if forged == nonce {
			continue
		}
		h := cl.answer(t, "REGISTER", strings.Replace(ch, nonce, forged, 1))
		if user, err := d.Verify("REGISTER", h, lookup); !errors.Is(err, ErrBadNonce) || user != "alice" {
			t.Errorf("%s: %q %v", name, user, err)
		}
	}
	// Forged and old: still ErrBadNonce, never ErrStale.
	c.Advance(time.Hour)
	h := cl.answer(t, "REGISTER", strings.Replace(ch, nonce, other.newNonce(c.Now().Add(-time.Hour)), 1))
	if _, err := d.Verify("REGISTER", h, lookup); !errors.Is(err, ErrBadNonce) {
		t.Errorf("forged old nonce: %v", err)
	}
}

func TestVerifyErrors(t *testing.T) {
	c := newClock()
	d := newTestDigest(t, c)
	md5d := newTestDigest(t, c, "MD5")
	lookup := usersLookup(
		NewUser("alice", "sipedge.test", "pw", ""),
		User{Name: "old", HA1MD5: HA1("MD5", "old", "sipedge.test", "pw")},
	)
	ch := d.Challenges(false)[1] // MD5
	nonce := ch[strings.Index(ch, `nonce="`)+7:][:nonceLen]
	ok := (&client{user: "alice", pass: "pw", uri: "sip:x", cnonce: "c"}).answer(t, "REGISTER", ch)
	if _, err := d.Verify("REGISTER", ok, lookup); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	sha := (&client{user: "old", pass: "pw", uri: "sip:x", cnonce: "c"}).answer(t, "REGISTER", d.Challenges(false)[0])
	base := `Digest username="alice", realm="sipedge.test", nonce="` + nonce + `", uri="sip:x", response="00000000000000000000000000000000"`
	for _, tc := range []struct {
		name string
		d    *Digest
		h    string
		want error
	}{
		{"empty", d, "", ErrNoCredentials},
		{"blank", d, "  \t", ErrNoCredentials},
		{"basic", d, "Basic YWxhZGRpbjpvcGVuc2VzYW1l", ErrUnsupported},
		{"garbage", d, "Digest ,=,", ErrMalformed},
		{"no username", d, strings.Replace(ok, `username="alice",`, "", 1), ErrMalformed},
		{"empty username", d, strings.Replace(ok, `username="alice"`, `username=""`, 1), ErrMalformed},
		{"no uri", d, strings.Replace(ok, `uri="sip:x",`, "", 1), ErrMalformed},
		{"no nonce", d, strings.Replace(ok, `nonce="`+nonce+`",`, "", 1), ErrMalformed},
		{"no response", d, `Digest username="alice", realm="sipedge.test", nonce="` + nonce + `", uri="sip:x"`, ErrMalformed},
		{"no realm", d, strings.Replace(ok, `realm="sipedge.test",`, "", 1), ErrMalformed},
		{"wrong realm", d, strings.Replace(ok, `realm="sipedge.test"`, `realm="evil"`, 1), ErrRealm},
		{"realm case", d, strings.Replace(ok, `realm="sipedge.test"`, `realm="SIPEDGE.TEST"`, 1), ErrRealm},
		{"sess algorithm", d, strings.Replace(ok, "algorithm=MD5", "algorithm=MD5-sess", 1), ErrAlgorithm},
		{"unknown algorithm", d, strings.Replace(ok, "algorithm=MD5", "algorithm=SHA-512-256", 1), ErrAlgorithm},
		{"not offered", md5d, sha, ErrAlgorithm},
		{"absent = MD5 not offered", newTestDigest(t, c, "SHA-256"), base, ErrAlgorithm},
		{"user lacks sha256", d, sha, ErrAlgorithm},
		{"auth-int", d, strings.Replace(ok, "qop=auth", "qop=auth-int", 1), ErrUnsupported},
		{"qop unknown", d, strings.Replace(ok, "qop=auth", "qop=bogus", 1), ErrMalformed},
		{"qop no nc", d, strings.Replace(ok, ",nc=00000001", "", 1), ErrMalformed},
		{"qop bad nc", d, strings.Replace(ok, ",nc=00000001", ",nc=0000000g", 1), ErrMalformed},
		{"qop long nc", d, strings.Replace(ok, ",nc=00000001", ",nc=000000001", 1), ErrMalformed},
		{"qop no cnonce", d, strings.Replace(ok, `cnonce="c",`, "", 1), ErrMalformed},
		{"userhash", d, ok + ", userhash=true", ErrUnsupported},
		{"unknown user", d, strings.Replace(ok, `username="alice"`, `username="mallory"`, 1), ErrUnknownUser},
		{"wrong response", d, base, ErrBadResponse},
		{"short response", d, strings.Replace(base, `response="00000000000000000000000000000000"`, `response="00"`, 1), ErrBadResponse},
		{"non-hex response", d, strings.Replace(base, `response="00000000000000000000000000000000"`, `response="0000000000000000000000000000000z"`, 1), ErrBadResponse},
		{"duplicate username", d, ok + `, username="bob"`, ErrMalformed},
		{"uri changed", d, strings.Replace(ok, `uri="sip:x"`, `uri="sip:y"`, 1), ErrBadResponse},
	} {
		_, err := tc.d.Verify("REGISTER", tc.h, lookup)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// userhash=false is harmless.
	if _, err := d.Verify("REGISTER", ok+", userhash=false", lookup); err != nil {
		t.Errorf("userhash=false: %v", err)
	}
}

func TestVerifyEscapedUser(t *testing.T) {
	c := newClock()
	d := newTestDigest(t, c)
	name := `we"ird\name`
	lookup := func(u string) (Credentials, bool) {
		if u != name {
			return Credentials{}, false
		}
		return Credentials{HA1MD5: HA1("MD5", name, "sipedge.test", "pw")}, true
	}
	ch := d.Challenges(false)[1]
	_, p, _ := parseAuthorization(ch)
	ha1 := HA1("MD5", name, "sipedge.test", "pw")
	var buf [64]byte
	resp := response(algMD5, buf[:], ha1, p.v[pNonce], "00000001", "x", "auth", "REGISTER", "sip:a")
	h := `Digest username="we\"ird\\name", realm="sipedge.test", nonce="` + p.v[pNonce] +
		`", uri="sip:a", qop=auth, nc=00000001, cnonce="x", response="` + string(resp) + `"`
	if user, err := d.Verify("REGISTER", h, lookup); err != nil || user != name {
		t.Errorf("Verify = %q, %v", user, err)
	}
}

func TestVerifyAllocs(t *testing.T) {
	c := newClock()
	d := newTestDigest(t, c)
	lookup := usersLookup(NewUser("alice", "sipedge.test", "pw", ""))
	for i, ch := range d.Challenges(false) {
		h := (&client{user: "alice", pass: "pw", uri: "sip:sipedge.test", cnonce: "abcdef"}).answer(t, "REGISTER", ch)
		n := testing.AllocsPerRun(100, func() {
			if _, err := d.Verify("REGISTER", h, lookup); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("challenge %d: Verify allocates %v times", i, n)
		}
	}
}
