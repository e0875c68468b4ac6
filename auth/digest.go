package auth

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Algorithm names as they appear in challenges and credentials.
const (
	AlgSHA256 = "SHA-256"
	AlgMD5    = "MD5"
)

// DefaultNonceTTL is the nonce lifetime when NewDigest is given zero.
const DefaultNonceTTL = 5 * time.Minute

type alg uint8

const (
	algNone alg = iota
	algMD5
	algSHA256
)

func parseAlg(s string) alg {
	switch {
	case strings.EqualFold(s, AlgMD5):
		return algMD5
	case strings.EqualFold(s, AlgSHA256):
		return algSHA256
	}
	return algNone
}

func (a alg) String() string {
	switch a {
	case algMD5:
		return AlgMD5
	case algSHA256:
		return AlgSHA256
	}
	return ""
}

// hexLen is the length of a hex digest for the algorithm.
func (a alg) hexLen() int {
	if a == algSHA256 {
		return 2 * sha256.Size
	}
	return 2 * md5.Size
}

// sum hashes b and writes the lower-case hex digest to dst, which must be
// at least a.hexLen() long; it returns the written part of dst.
func (a alg) sum(dst, b []byte) []byte {
	if a == algSHA256 {
		s := sha256.Sum256(b)
		hex.Encode(dst, s[:])
		return dst[:2*sha256.Size]
	}
	s := md5.Sum(b)
	hex.Encode(dst, s[:])
	return dst[:2*md5.Size]
}

// Credentials are a user's stored secrets as lower-case hex HA1 values,
// H(user:realm:password); either may be empty if unknown.
type Credentials struct {
	HA1MD5    string
	HA1SHA256 string
}

func (c Credentials) ha1(a alg) string {
	if a == algSHA256 {
		return c.HA1SHA256
	}
	return c.HA1MD5
}

// HA1 returns H(user:realm:password) in lower-case hex for alg ("MD5" or
// "SHA-256", case-insensitive), or "" for any other algorithm.
func HA1(alg, user, realm, password string) string {
	a := parseAlg(alg)
	if a == algNone {
		return ""
	}
	b := make([]byte, 0, len(user)+len(realm)+len(password)+2)
	b = append(b, user...)
	b = append(b, ':')
	b = append(b, realm...)
	b = append(b, ':')
	b = append(b, password...)
	var out [2 * sha256.Size]byte
	return string(a.sum(out[:], b))
}

// Nonce layout, before base64url (no padding):
//
//	issued  8 bytes  big-endian Unix nanoseconds
//	random  8 bytes  crypto/rand
//	mac    12 bytes  HMAC-SHA256(secret, issued|random|realm), truncated
//
// A nonce is validated from its own bytes; no server state is kept, so any
// node sharing the secret accepts it. 96 MAC bits make forging hopeless.
// The price of statelessness: a captured Authorization header can be
// replayed until its nonce goes stale (nc is not tracked). Keep the TTL
// short; stale nonces cost one extra round trip, no password prompt.
const (
	nonceTSLen   = 8
	nonceRandLen = 8
	nonceMACLen  = 12
	nonceRawLen  = nonceTSLen + nonceRandLen + nonceMACLen
	nonceLen     = (nonceRawLen*8 + 5) / 6 // base64 without padding: 38
)

// Digest issues challenges and verifies digest credentials for one realm.
// It holds no mutable state and is safe for concurrent use.
type Digest struct {
	realm string
	algs  []alg
	ttl   int64 // nanoseconds
	now   func() time.Time
	b64   *base64.Encoding // strict base64url, no padding

	// HMAC-SHA256 precomputation: the key padded and xored with ipad/opad.
	// inner is ipad-key | 16 bytes for issued|random | realm.
	inner []byte
	opad  [sha256.BlockSize]byte

	// Challenge text around the nonce, one suffix per algorithm;
	// staleSuffix adds ", stale=true".
	prefix      string
	suffix      []string
	staleSuffix []string

	// cur is the nonce handed out during the current second. Nonces are
	// stateless (a timestamp and an HMAC), so sharing one between the
	// challenges of one second changes nothing for security (any nonce is
	// replayable within its TTL, see the package doc), and saves the
	// random read and HMAC on every challenge under load.
	cur atomic.Pointer[secondNonce]
}

type secondNonce struct {
	sec   int64
	nonce string
}

// currentNonce returns the nonce of the current second, minting it once.
func (d *Digest) currentNonce() string {
	now := d.now()
	sec := now.Unix()
	if c := d.cur.Load(); c != nil && c.sec == sec {
		return c.nonce
	}
	n := d.newNonce(now)
	d.cur.Store(&secondNonce{sec: sec, nonce: n})
	return n
}

// NewDigest returns a Digest for realm offering algs (a subset of
// "SHA-256", "MD5", case-insensitive, in preference order; nil means
// SHA-256 then MD5, as RFC 8760 recommends). secret keys the nonce HMAC:
// give every node of a cluster the same secret and keep it across restarts,
// or clients' cached nonces fail (ErrBadNonce) after a restart. A nil
// secret draws a random one; a shorter secret than 16 bytes is refused.
// nonceTTL 0 means DefaultNonceTTL; now nil means time.Now.
func NewDigest(secret []byte, realm string, algs []string, nonceTTL time.Duration, now func() time.Time) (*Digest, error) {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret) // never fails (Go ≥ 1.24)
	} else if len(secret) < 16 {
		return nil, fmt.Errorf("%w: nonce secret shorter than 16 bytes", ErrConfig)
	}
	if realm == "" {
		return nil, fmt.Errorf("%w: empty realm", ErrConfig)
	}
	if nonceTTL < 0 {
		return nil, fmt.Errorf("%w: negative nonce TTL", ErrConfig)
	}
	if nonceTTL == 0 {
		nonceTTL = DefaultNonceTTL
	}
	if now == nil {
		now = time.Now
	}
	if algs == nil {
		algs = []string{AlgSHA256, AlgMD5}
	}
	d := &Digest{realm: realm, ttl: int64(nonceTTL), now: now, b64: base64.RawURLEncoding.Strict()}
	for _, s := range algs {
		a := parseAlg(s)
		if a == algNone {
			return nil, fmt.Errorf("%w: unknown digest algorithm %q", ErrConfig, s)
		}
		for _, have := range d.algs {
			if have == a {
				return nil, fmt.Errorf("%w: digest algorithm %q listed twice", ErrConfig, s)
			}
		}
		d.algs = append(d.algs, a)
	}
	if len(d.algs) == 0 {
		return nil, fmt.Errorf("%w: no digest algorithm", ErrConfig)
	}

	var key [sha256.BlockSize]byte
	if len(secret) > sha256.BlockSize {
		k := sha256.Sum256(secret)
		copy(key[:], k[:])
	} else {
		copy(key[:], secret)
	}
	d.inner = make([]byte, sha256.BlockSize+nonceTSLen+nonceRandLen, sha256.BlockSize+nonceTSLen+nonceRandLen+len(realm))
	for i, k := range key {
		d.inner[i] = k ^ 0x36
		d.opad[i] = k ^ 0x5c
	}
	d.inner = append(d.inner, realm...)

	d.prefix = string(appendQuoted([]byte(`Digest realm=`), realm)) + `, nonce="`
	for _, a := range d.algs {
		s := `", algorithm=` + a.String() + `, qop="auth"`
		d.suffix = append(d.suffix, s)
		d.staleSuffix = append(d.staleSuffix, s+", stale=true")
	}
	return d, nil
}

// Realm returns the realm the Digest was made for.
func (d *Digest) Realm() string { return d.realm }

// mac computes the truncated HMAC-SHA256 over issued|random|realm.
func (d *Digest) mac(tsRand []byte) [nonceMACLen]byte {
	var stack [256]byte
	b := append(stack[:0], d.inner...) // on the heap only for huge realms
	copy(b[sha256.BlockSize:], tsRand)
	in := sha256.Sum256(b)
	var ob [sha256.BlockSize + sha256.Size]byte
	copy(ob[:], d.opad[:])
	copy(ob[sha256.BlockSize:], in[:])
	out := sha256.Sum256(ob[:])
	var m [nonceMACLen]byte
	copy(m[:], out[:])
	return m
}

// newNonce issues a nonce stamped with t.
func (d *Digest) newNonce(t time.Time) string {
	var raw [nonceRawLen]byte
	binary.BigEndian.PutUint64(raw[:nonceTSLen], uint64(t.UnixNano()))
	rand.Read(raw[nonceTSLen : nonceTSLen+nonceRandLen])
	m := d.mac(raw[:nonceTSLen+nonceRandLen])
	copy(raw[nonceTSLen+nonceRandLen:], m[:])
	return d.b64.EncodeToString(raw[:])
}

// checkNonce returns ErrBadNonce for a nonce we did not issue, else whether
// it is stale: more than the TTL old, or (clock stepped back, or a cluster
// peer's clock is ahead) more than the TTL in the future.
func (d *Digest) checkNonce(nonce string, now time.Time) (stale bool, err error) {
	if len(nonce) != nonceLen {
		return false, ErrBadNonce
	}
	var enc [nonceLen]byte
	copy(enc[:], nonce)
	var raw [nonceRawLen + 2]byte // room for the decoder's last quantum
	n, err := d.b64.Decode(raw[:], enc[:])
	if err != nil || n != nonceRawLen {
		return false, ErrBadNonce
	}
	m := d.mac(raw[:nonceTSLen+nonceRandLen])
	if subtle.ConstantTimeCompare(m[:], raw[nonceTSLen+nonceRandLen:nonceRawLen]) != 1 {
		return false, ErrBadNonce
	}
	age := now.UnixNano() - int64(binary.BigEndian.Uint64(raw[:nonceTSLen]))
	return age > d.ttl || age < -d.ttl, nil
}

// Challenges returns one WWW-Authenticate / Proxy-Authenticate header value
// per offered algorithm, in preference order, all with the same fresh
// nonce, e.g.
//
//	Digest realm="example.org", nonce="…", algorithm=SHA-256, qop="auth"
//
// stale adds ", stale=true" (RFC 2617 §3.2.1: retry with the new nonce
// without asking the user again). No opaque is sent: the nonce already
// carries everything we need to check.
func (d *Digest) Challenges(stale bool) []string {
	return d.challenges(stale, Credentials{HA1MD5: "x", HA1SHA256: "x"})
}

// ChallengesFor is Challenges limited to the algorithms for which c has an
// HA1 (all offered ones if it has none). Use it when the user is known at
// challenge time (the To user of a REGISTER): a UA picks the first
// algorithm it supports, so offering SHA-256 to a user stored with only an
// MD5 HA1 would make authentication impossible.
func (d *Digest) ChallengesFor(stale bool, c Credentials) []string {
	if c.HA1MD5 == "" && c.HA1SHA256 == "" {
		c = Credentials{HA1MD5: "x", HA1SHA256: "x"}
	}
	return d.challenges(stale, c)
}

func (d *Digest) challenges(stale bool, c Credentials) []string {
	nonce := d.currentNonce()
	suffix := d.suffix
	if stale {
		suffix = d.staleSuffix
	}
	out := make([]string, 0, len(d.algs))
	for i, a := range d.algs {
		if c.ha1(a) == "" {
			continue
		}
		out = append(out, d.prefix+nonce+suffix[i])
	}
	if len(out) == 0 { // c has HA1s only for algorithms we do not offer
		for i := range d.algs {
			out = append(out, d.prefix+nonce+suffix[i])
		}
	}
	return out
}

// Verify checks a Digest Authorization / Proxy-Authorization header value
// for a request with the given method, using lookup to find the user's
// HA1. It returns the authenticated user name and nil, or an error from
// this package. On error, user is the claimed (unauthenticated) name when
// one was parsed, for logs only. The returned name aliases headerValue
// unless it contained escapes; strings.Clone it to keep it long.
//
// Checks, in order: the header parses and is Digest with username, realm,
// nonce, uri and response; realm is ours; algorithm (absent means MD5) is
// one we offer; qop is "auth" with nc and cnonce, or absent (RFC 2069);
// the nonce is ours (else ErrBadNonce); the user exists; the response
// matches (compared in constant time); then the nonce is fresh. A stale
// nonce is reported only with a correct response, as RFC 2617 §3.2.1
// says, so a stale nonce never hides a wrong password from the ban
// counter. The uri is hashed as sent and not compared with the
// Request-URI: SIP UAs vary in what they put there, and the nonce and
// response already bind the credentials to us.
func (d *Digest) Verify(method, headerValue string, lookup func(user string) (Credentials, bool)) (user string, err error) {
	if strings.TrimSpace(headerValue) == "" {
		return "", ErrNoCredentials
	}
	scheme, p, err := parseAuthorization(headerValue)
	if scheme != "" && !strings.EqualFold(scheme, "Digest") {
		return "", ErrUnsupported
	}
	if err != nil {
		return "", err
	}
	user = p.v[pUsername]
	for _, k := range [...]int{pUsername, pRealm, pNonce, pURI, pResponse} {
		if p.v[k] == "" {
			return user, ErrMalformed
		}
	}
	if p.v[pRealm] != d.realm {
		return user, ErrRealm
	}
	a := algMD5
	if p.present(pAlgorithm) {
		a = parseAlg(p.v[pAlgorithm])
	}
	if !d.offers(a) {
		return user, ErrAlgorithm
	}
	if p.present(pUserhash) && strings.EqualFold(p.v[pUserhash], "true") {
		// RFC 7616 §3.4.4: username would be H(user:realm); SIP UAs do
		// not use it and we do not offer it.
		return user, ErrUnsupported
	}
	qop := p.v[pQop]
	switch {
	case !p.present(pQop):
		// RFC 2069 compatibility: response = KD(HA1, nonce:HA2).
	case strings.EqualFold(qop, "auth"):
		if !validNC(p.v[pNC]) || p.v[pCnonce] == "" {
			return user, ErrMalformed
		}
	case strings.EqualFold(qop, "auth-int"):
		// auth-int hashes the message body into HA2. This package sees
		// only header values, not the body bytes as received; we never
		// offer it (our challenges say qop="auth"), and SIP UAs do not
		// use it for REGISTER. A client answering auth-int ignored our
		// challenge.
		return user, ErrUnsupported
	default:
		return user, ErrMalformed
	}

	now := d.now()
	stale, err := d.checkNonce(p.v[pNonce], now)
	if err != nil {
		return user, err
	}
	cred, ok := lookup(user)
	if !ok {
		return user, ErrUnknownUser
	}
	ha1 := cred.ha1(a)
	if len(ha1) != a.hexLen() {
		// The user has no usable secret for this algorithm: a store
		// problem, not the client's fault.
		return user, ErrAlgorithm
	}

	var want [2 * sha256.Size]byte
	exp := response(a, want[:], ha1, p.v[pNonce], p.v[pNC], p.v[pCnonce], qop, method, p.v[pURI])
	got := p.v[pResponse]
	if len(got) != len(exp) || !isHex(got) {
		return user, ErrBadResponse
	}
	// Case-fold the client's hex (some UAs send upper case) without
	// branching on secret data: OR-ing 0x20 maps A-F to a-f and leaves
	// digits alone.
	var diff byte
	for i := 0; i < len(exp); i++ {
		diff |= (got[i] | 0x20) ^ exp[i]
	}
	if subtle.ConstantTimeByteEq(diff, 0) != 1 {
		return user, ErrBadResponse
	}
	if stale {
		return user, ErrStale
	}
	return user, nil
}

func (d *Digest) offers(a alg) bool {
	for _, o := range d.algs {
		if o == a && a != algNone {
			return true
		}
	}
	return false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !('0' <= s[i] && s[i] <= '9') && !('a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// validNC accepts 1 to 8 hex digits (RFC 2617 sends exactly 8).
func validNC(s string) bool {
	return len(s) > 0 && len(s) <= 8 && isHex(s)
}

// response writes the expected lower-case hex response into dst and
// returns it:
//
//	HA2 = H(method:uri)
//	qop present: KD(HA1, nonce:nc:cnonce:qop:HA2)
//	qop absent:  KD(HA1, nonce:HA2)                (RFC 2069)
//	KD(secret, data) = H(secret:data)
//
// H is MD5 or SHA-256; every field is used exactly as the client sent it.
func response(a alg, dst []byte, ha1, nonce, nc, cnonce, qop, method, uri string) []byte {
	var stack [512]byte
	b := append(stack[:0], method...)
	b = append(b, ':')
	b = append(b, uri...)
	var ha2 [2 * sha256.Size]byte
	h2 := a.sum(ha2[:], b)

	b = append(stack[:0], ha1...)
	b = append(b, ':')
	b = append(b, nonce...)
	b = append(b, ':')
	if qop != "" {
		b = append(b, nc...)
		b = append(b, ':')
		b = append(b, cnonce...)
		b = append(b, ':')
		b = append(b, qop...)
		b = append(b, ':')
	}
	b = append(b, h2...)
	return a.sum(dst, b)
}
