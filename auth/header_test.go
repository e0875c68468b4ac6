package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseAuthorization(t *testing.T) {
	type kv = map[int]string
	for _, tc := range []struct {
		name   string
		in     string
		scheme string
		want   kv
		err    error
	}{
		{
			name:   "typical SIP phone",
			in:     `Digest username="1001",realm="pbx",nonce="abc",uri="sip:pbx",response="0123",algorithm=MD5`,
			scheme: "Digest",
			want:   kv{pUsername: "1001", pRealm: "pbx", pNonce: "abc", pURI: "sip:pbx", pResponse: "0123", pAlgorithm: "MD5"},
		},
		{
			name:   "whitespace everywhere, any order, name case",
			in:     "  digest\tNC = 00000001 ,  QOP=auth,\r\n CNonce = \"x y\" , UserName=\"bob\" ",
			scheme: "digest",
			want:   kv{pNC: "00000001", pQop: "auth", pCnonce: "x y", pUsername: "bob"},
		},
		{
			name:   "quoted escapes and commas inside quotes",
			in:     `Digest username="a\"b\\c", uri="sip:x;a=1,b", opaque=""`,
			scheme: "Digest",
			want:   kv{pUsername: `a"b\c`, pURI: "sip:x;a=1,b", pOpaque: ""},
		},
		{
			name:   "quoted token values and unquoted odd values",
			in:     `Digest qop="auth", algorithm="SHA-256", uri=sip:alice@example.com:5060;transport=udp`,
			scheme: "Digest",
			want:   kv{pQop: "auth", pAlgorithm: "SHA-256", pURI: "sip:alice@example.com:5060;transport=udp"},
		},
		{
			name:   "empty list elements and unknown params",
			in:     `Digest ,, foo="bar" ,username="u",, baz=1,`,
			scheme: "Digest",
			want:   kv{pUsername: "u"},
		},
		{
			name:   "utf-8 in quotes and tab",
			in:     "Digest username=\"j\u00f6rg\tx\"",
			scheme: "Digest",
			want:   kv{pUsername: "j\u00f6rg\tx"},
		},
		{name: "scheme only", in: "Digest", scheme: "Digest", want: kv{}},
		{name: "empty", in: "", err: ErrMalformed},
		{name: "no scheme", in: `="x"`, err: ErrMalformed},
		{name: "scheme glued", in: `Digest="x"`, err: ErrMalformed},
		{name: "unterminated quote", in: `Digest username="abc`, err: ErrMalformed},
		{name: "dangling escape", in: `Digest username="abc\`, err: ErrMalformed},
		{name: "no equals", in: `Digest username`, err: ErrMalformed},
		{name: "no value", in: `Digest username=`, err: ErrMalformed},
		{name: "empty unquoted value", in: `Digest username=,realm="r"`, err: ErrMalformed},
		{name: "junk after quoted", in: `Digest username="a"b`, err: ErrMalformed},
		{name: "junk after unquoted", in: `Digest nc=0001 0002`, err: ErrMalformed},
		{name: "quote in unquoted", in: `Digest nc=00"01"`, err: ErrMalformed},
		{name: "missing comma", in: `Digest username="a" realm="b"`, err: ErrMalformed},
		{name: "duplicate", in: `Digest realm="a", REALM="b"`, err: ErrMalformed},
		{name: "control char in quotes", in: "Digest username=\"a\x00b\"", err: ErrMalformed},
		{name: "CRLF in quotes", in: "Digest username=\"a\r\nb\"", err: ErrMalformed},
		{name: "control char unquoted", in: "Digest nc=00\x01", err: ErrMalformed},
		{name: "escaped CR", in: "Digest username=\"a\\\rb\"", err: ErrMalformed},
		{name: "bad name char", in: `Digest user(name)="a"`, err: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scheme, p, err := parseAuthorization(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if scheme != tc.scheme {
				t.Errorf("scheme = %q, want %q", scheme, tc.scheme)
			}
			for i := range nParams {
				want, ok := tc.want[i]
				if p.present(i) != ok || p.v[i] != want {
					t.Errorf("%s = %q (present %v), want %q (present %v)", paramName(i), p.v[i], p.present(i), want, ok)
				}
			}
		})
	}
}

func TestParseAuthorizationAllocs(t *testing.T) {
	h := `Digest username="alice", realm="sipedge.test", nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uri="sip:sipedge.test", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001`
	if n := testing.AllocsPerRun(100, func() { parseAuthorization(h) }); n != 0 {
		t.Errorf("parse allocates %v times", n)
	}
}

// serialise writes p back as a header value, every value quoted.
func serialise(scheme string, p authParams) string {
	b := append([]byte(scheme), ' ')
	first := true
	for i := range nParams {
		if !p.present(i) {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = append(b, paramName(i)...)
		b = append(b, '=')
		b = appendQuoted(b, p.v[i])
	}
	return string(b)
}

// FuzzParseAuthorization checks that the parser never panics, that what it
// accepts survives a serialise/parse round trip, and that Verify never
// panics on arbitrary input.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		`Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
		`Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"`,
		`digest USERNAME = "a\"b" ,, uri=sip:x;y=z`,
		`Digest username="abc\`,
		// @N@ is replaced by a valid nonce, to reach the response check.
		`Digest username="a", realm="testrealm@host.com", nonce="@N@", uri="sip:x", response="00000000000000000000000000000000"`,
		`Digest username="a", realm="testrealm@host.com", nonce="@N@", uri="sip:x", qop=auth, nc=1, cnonce=x, algorithm=sha-256, response="0000000000000000000000000000000000000000000000000000000000000000"`,
		`Basic Zm9vOmJhcg==`,
		"Digest username=\"\x00\"",
		``,
	} {
		f.Add(s)
	}
	c := newClock()
	d, err := NewDigest(testSecret, "testrealm@host.com", nil, time.Minute, c.Now)
	if err != nil {
		f.Fatal(err)
	}
	nonce := d.newNonce(c.Now())
	lookup := func(u string) (Credentials, bool) {
		return Credentials{HA1MD5: md5hex(u), HA1SHA256: sha256hex(u)}, u != ""
	}
	f.Fuzz(func(t *testing.T, in string) {
		scheme, p, err := parseAuthorization(in)
		d.Verify("REGISTER", strings.ReplaceAll(in, "@N@", nonce), lookup)
		if err != nil {
			return
		}
		out := serialise(scheme, p)
		scheme2, p2, err := parseAuthorization(out)
		if err != nil {
			t.Fatalf("reparse of %q (from %q): %v", out, in, err)
		}
		if scheme2 != scheme || p2 != p {
			t.Fatalf("round trip changed %q → %q:\n%+v\n%+v", in, out, p, p2)
		}
	})
}
