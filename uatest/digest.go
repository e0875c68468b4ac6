package uatest

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Digest algorithms.
const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// Challenge is one parsed WWW-Authenticate / Proxy-Authenticate value.
type Challenge struct {
	Scheme    string // "Digest"
	Realm     string
	Nonce     string
	Opaque    string
	Algorithm string // as sent; "" means MD5
	Qop       []string
	Stale     bool
	Params    map[string]string // every parameter, lower-case names, unquoted
}

// ParseChallenge parses a challenge header value.
func ParseChallenge(v string) (Challenge, error) {
	var c Challenge
	v = strings.TrimSpace(v)
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok {
		return c, fmt.Errorf("uatest: bad challenge %q", v)
	}
	c.Scheme = scheme
	c.Params = authParams(rest)
	c.Realm = c.Params["realm"]
	c.Nonce = c.Params["nonce"]
	c.Opaque = c.Params["opaque"]
	c.Algorithm = c.Params["algorithm"]
	c.Stale = strings.EqualFold(c.Params["stale"], "true")
	for _, q := range strings.Split(c.Params["qop"], ",") {
		if q = strings.TrimSpace(q); q != "" {
			c.Qop = append(c.Qop, q)
		}
	}
	if !strings.EqualFold(c.Scheme, "Digest") || c.Nonce == "" {
		return c, fmt.Errorf("uatest: unusable challenge %q", v)
	}
	return c, nil
}

// authParams parses `a="x, y", b=c` into a map with lower-case keys.
func authParams(s string) map[string]string {
	out := map[string]string{}
	for _, f := range splitOutsideQuotes(s, ',') {
		n, val, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = strings.ReplaceAll(val[1:len(val)-1], `\"`, `"`)
		}
		out[strings.ToLower(strings.TrimSpace(n))] = val
	}
	return out
}

// algorithm returns the normalised algorithm of c ("MD5" when absent) and
// whether we can compute it.
func (c Challenge) algorithm() (string, bool) {
	switch {
	case c.Algorithm == "" || strings.EqualFold(c.Algorithm, MD5):
		return MD5, true
	case strings.EqualFold(c.Algorithm, SHA256):
		return SHA256, true
	}
	return c.Algorithm, false
}

// PickChallenge chooses among the challenge values of a 401/407: the first
// with algorithm prefer (if prefer is set and offered), else the first we
// support, in the server's order (RFC 8760 §2.4).
func PickChallenge(values []string, prefer string) (Challenge, error) {
	var first *Challenge
	for _, v := range values {
		c, err := ParseChallenge(v)
		if err != nil {
			continue
		}
		alg, ok := c.algorithm()
		if !ok {
			continue
		}
		if prefer != "" && strings.EqualFold(alg, prefer) {
			return c, nil
		}
		if first == nil {
			cc := c
			first = &cc
		}
	}
	if first == nil {
		return Challenge{}, fmt.Errorf("uatest: no usable digest challenge in %q", values)
	}
	return *first, nil
}

func hasher(alg string) hash.Hash {
	if strings.EqualFold(alg, SHA256) {
		return sha256.New()
	}
	return md5.New()
}

// H is the digest hash of s in lower-case hex for alg.
func H(alg, s string) string {
	h := hasher(alg)
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// DigestResponse computes the response value (RFC 2617 / RFC 7616, qop
// "auth" or none).
func DigestResponse(alg, user, realm, password, method, uri, nonce, nc, cnonce, qop string) string {
	ha1 := H(alg, user+":"+realm+":"+password)
	ha2 := H(alg, method+":"+uri)
	if qop == "" {
		return H(alg, ha1+":"+nonce+":"+ha2)
	}
	return H(alg, ha1+":"+nonce+":"+nc+":"+cnonce+":"+qop+":"+ha2)
}

// Authorization builds an Authorization / Proxy-Authorization value
// answering c for method and uri.
func Authorization(c Challenge, user, password, method, uri string) string {
	alg, _ := c.algorithm()
	qop := ""
	for _, q := range c.Qop {
		if strings.EqualFold(q, "auth") {
			qop = "auth"
		}
	}
	var cn [8]byte
	_, _ = rand.Read(cn[:])
	cnonce := hex.EncodeToString(cn[:])
	nc := "00000001"
	resp := DigestResponse(alg, user, c.Realm, password, method, uri, c.Nonce, nc, cnonce, qop)
	var b strings.Builder
	fmt.Fprintf(&b, `Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s"`,
		user, c.Realm, c.Nonce, uri, resp)
	if c.Algorithm != "" {
		fmt.Fprintf(&b, ", algorithm=%s", alg)
	}
	if qop != "" {
		fmt.Fprintf(&b, `, qop=%s, nc=%s, cnonce="%s"`, qop, nc, cnonce)
	}
	if c.Opaque != "" {
		fmt.Fprintf(&b, `, opaque="%s"`, c.Opaque)
	}
	return b.String()
}
