package auth

import "strings"

// Parameters of a Digest credentials header that we read. Others are
// skipped.
const (
	pUsername = iota
	pRealm
	pNonce
	pURI
	pResponse
	pAlgorithm
	pCnonce
	pOpaque
	pQop
	pNC
	pUserhash
	nParams
)

// paramName returns the lower-case name of parameter i (a p* constant).
func paramName(i int) string {
	switch i {
	case pUsername:
		return "username"
	case pRealm:
		return "realm"
	case pNonce:
		return "nonce"
	case pURI:
		return "uri"
	case pResponse:
		return "response"
	case pAlgorithm:
		return "algorithm"
	case pCnonce:
		return "cnonce"
	case pOpaque:
		return "opaque"
	case pQop:
		return "qop"
	case pNC:
		return "nc"
	case pUserhash:
		return "userhash"
	}
	return ""
}

// authParams holds the parsed parameters. Values alias the header string
// unless a quoted string held an escape (then they are unescaped copies).
type authParams struct {
	v   [nParams]string
	has uint16 // bit i set when parameter i was present (even if empty)
}

func (p *authParams) present(i int) bool { return p.has&(1<<i) != 0 }

// paramIndex maps a parameter name, case-insensitively, to its p* index,
// or -1 for parameters we do not read.
func paramIndex(name string) int {
	var cands [3]int
	n := 0
	switch len(name) {
	case 2:
		cands[0], n = pNC, 1
	case 3:
		cands[0], cands[1], n = pURI, pQop, 2
	case 5:
		cands[0], cands[1], n = pRealm, pNonce, 2
	case 6:
		cands[0], cands[1], n = pCnonce, pOpaque, 2
	case 8:
		cands[0], cands[1], cands[2], n = pUsername, pResponse, pUserhash, 3
	case 9:
		cands[0], n = pAlgorithm, 1
	}
	for _, c := range cands[:n] {
		if strings.EqualFold(name, paramName(c)) {
			return c
		}
	}
	return -1
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// isTokenChar reports RFC 3261 token characters.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

// isCtl reports control characters not allowed raw in a value (HTAB is
// allowed inside quoted strings).
func isCtl(c byte) bool { return c < 0x20 || c == 0x7f }

func skipWS(s string, i int) int {
	for i < len(s) && isWS(s[i]) {
		i++
	}
	return i
}

// parseAuthorization parses an Authorization or Proxy-Authorization header
// value: `scheme 1*WS #(name BWS "=" BWS (token / quoted-string))`.
// Names are case-insensitive and may come in any order; empty list
// elements are allowed; a parameter we read may appear only once; unquoted
// values are accepted leniently (any run of visible characters other than
// ',' and '"'), since UAs do not all quote what RFC 2617 says to quote.
// On a parameter error the scheme is still returned (when it parsed), so a
// caller can tell "not Digest" from "broken Digest". It allocates only for
// a quoted value that contains a backslash escape.
func parseAuthorization(h string) (scheme string, p authParams, err error) {
	i := skipWS(h, 0)
	start := i
	for i < len(h) && isTokenChar(h[i]) {
		i++
	}
	scheme = h[start:i]
	if scheme == "" {
		return "", p, ErrMalformed
	}
	if i < len(h) && !isWS(h[i]) {
		return "", p, ErrMalformed
	}
	for {
		// Skip whitespace and empty list elements.
		for i < len(h) && (isWS(h[i]) || h[i] == ',') {
			i++
		}
		if i == len(h) {
			return scheme, p, nil
		}
		start = i
		for i < len(h) && isTokenChar(h[i]) {
			i++
		}
		name := h[start:i]
		if name == "" {
			return scheme, p, ErrMalformed
		}
		i = skipWS(h, i)
		if i == len(h) || h[i] != '=' {
			return scheme, p, ErrMalformed
		}
		i = skipWS(h, i+1)
		if i == len(h) {
			return scheme, p, ErrMalformed
		}
		var val string
		if h[i] == '"' {
			val, i, err = readQuoted(h, i)
			if err != nil {
				return scheme, p, err
			}
		} else {
			start = i
			for i < len(h) && h[i] != ',' && h[i] != '"' && !isWS(h[i]) {
				if isCtl(h[i]) {
					return scheme, p, ErrMalformed
				}
				i++
			}
			val = h[start:i]
			if val == "" {
				return scheme, p, ErrMalformed
			}
		}
		i = skipWS(h, i)
		if i < len(h) && h[i] != ',' {
			return scheme, p, ErrMalformed
		}
		if k := paramIndex(name); k >= 0 {
			if p.present(k) {
				// A repeated parameter is ambiguous; which one a
				// downstream element would use is anyone's guess.
				return scheme, p, ErrMalformed
			}
			p.v[k] = val
			p.has |= 1 << k
		}
	}
}

// readQuoted reads the quoted string starting at h[i] == '"' and returns its
// unescaped value and the index after the closing quote.
func readQuoted(h string, i int) (string, int, error) {
	i++ // opening quote
	start := i
	escaped := false
	for i < len(h) {
		c := h[i]
		switch {
		case c == '"':
			v := h[start:i]
			if escaped {
				v = unescapeQuoted(v)
			}
			return v, i + 1, nil
		case c == '\\':
			if i+1 == len(h) || (isCtl(h[i+1]) && h[i+1] != '\t') {
				return "", 0, ErrMalformed
			}
			escaped = true
			i += 2
		case isCtl(c) && c != '\t':
			return "", 0, ErrMalformed
		default:
			i++
		}
	}
	return "", 0, ErrMalformed // unterminated
}

// unescapeQuoted removes quoted-pair backslashes from a validated body.
func unescapeQuoted(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// appendQuoted appends s as a quoted string, escaping '"' and '\'.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
