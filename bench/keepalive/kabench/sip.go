package main

import (
	"bytes"
	"strconv"

	"github.com/sipedge/sipedge/uatest"
)

// The phones' SIP: just enough to register with digest auth and to answer
// OPTIONS. Parsing works on the datagram in place (no allocation on the
// OPTIONS path); only the registration path allocates.

// msg is a parsed datagram; its byte slices point into the datagram.
type msg struct {
	request bool
	method  []byte // request method
	status  int    // response status code
	vias    [8][]byte
	nvia    int
	from    []byte
	to      []byte
	callID  []byte
	cseq    []byte // the whole CSeq value, "1 OPTIONS"
	cseqNum uint32
	cseqMth []byte
	auths   [4][]byte // WWW-Authenticate values (responses)
	nauth   int
}

// cutLine returns b's first line without its CRLF (or LF) and the rest.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func nameIs(name []byte, long string, compact byte) bool {
	if compact != 0 && len(name) == 1 && name[0]|0x20 == compact {
		return true
	}
	return len(name) == len(long) && bytes.EqualFold(name, []byte(long))
}

// parseMsg parses b's start line and the headers the phones use. It
// reports false for anything that is not a SIP message with Call-ID, CSeq
// and (requests) a Via.
func parseMsg(b []byte, m *msg) bool {
	*m = msg{}
	line, rest := cutLine(b)
	if bytes.HasPrefix(line, []byte("SIP/2.0 ")) {
		if len(line) < 11 {
			return false
		}
		n, err := strconv.Atoi(string(line[8:11]))
		if err != nil {
			return false
		}
		m.status = n
	} else {
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 || !bytes.HasSuffix(line, []byte(" SIP/2.0")) {
			return false
		}
		m.request, m.method = true, line[:sp]
	}
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break // end of headers
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		name, val := trimSpace(line[:c]), trimSpace(line[c+1:])
		switch {
		case nameIs(name, "Via", 'v'):
			if m.nvia < len(m.vias) {
				m.vias[m.nvia] = val
				m.nvia++
			}
		case nameIs(name, "From", 'f'):
			m.from = val
		case nameIs(name, "To", 't'):
			m.to = val
		case nameIs(name, "Call-ID", 'i'):
			m.callID = val
		case nameIs(name, "CSeq", 0):
			m.cseq = val
			num, mth, _ := bytes.Cut(val, []byte(" "))
			n, err := strconv.ParseUint(string(num), 10, 32)
			if err != nil {
				return false
			}
			m.cseqNum, m.cseqMth = uint32(n), trimSpace(mth)
		case nameIs(name, "WWW-Authenticate", 0):
			if m.nauth < len(m.auths) {
				m.auths[m.nauth] = val
				m.nauth++
			}
		}
	}
	if m.callID == nil || m.cseq == nil || m.from == nil || m.to == nil {
		return false
	}
	return !m.request || m.nvia > 0
}

// hasTag reports whether a From/To value carries a tag parameter (after
// the name-addr's '>' when there is one).
func hasTag(v []byte) bool {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for {
		i := bytes.IndexByte(v, ';')
		if i < 0 {
			return false
		}
		v = v[i+1:]
		name, _, _ := bytes.Cut(v, []byte("="))
		if j := bytes.IndexByte(name, ';'); j >= 0 {
			name = name[:j]
		}
		if bytes.EqualFold(trimSpace(name), []byte("tag")) {
			return true
		}
	}
}

// appendOptionsOK appends a 200 OK to the OPTIONS request m: every Via in
// order, From, To (with toTag added if it has none), Call-ID and CSeq
// copied, as RFC 3261 §8.2.6 says.
func appendOptionsOK(dst []byte, m *msg, toTag []byte) []byte {
	dst = append(dst, "SIP/2.0 200 OK\r\n"...)
	for i := 0; i < m.nvia; i++ {
		dst = append(dst, "Via: "...)
		dst = append(dst, m.vias[i]...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "From: "...)
	dst = append(dst, m.from...)
	dst = append(dst, "\r\nTo: "...)
	dst = append(dst, m.to...)
	if !hasTag(m.to) {
		dst = append(dst, ";tag="...)
		dst = append(dst, toTag...)
	}
	dst = append(dst, "\r\nCall-ID: "...)
	dst = append(dst, m.callID...)
	dst = append(dst, "\r\nCSeq: "...)
	dst = append(dst, m.cseq...)
	dst = append(dst, "\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"...)
	return dst
}

// regParams is what a phone's REGISTER says about it.
type regParams struct {
	user    string // also the AOR's user
	domain  string // Request-URI host, AOR domain and digest realm
	private string // the phone's own (private) address, "10.1.2.3"
	callID  string
	tag     string
	branch  string
	cseq    uint32
	expires int
	auth    string // Authorization value, "" for none
}

// appendRegister appends a REGISTER for p: Via and Contact carry the
// phone's private address, so a registrar that sees the packet come from
// elsewhere detects NAT.
func appendRegister(dst []byte, p *regParams) []byte {
	dst = append(dst, "REGISTER sip:"...)
	dst = append(dst, p.domain...)
	dst = append(dst, " SIP/2.0\r\nVia: SIP/2.0/UDP "...)
	dst = append(dst, p.private...)
	dst = append(dst, ":5060;rport;branch="...)
	dst = append(dst, p.branch...)
	dst = append(dst, "\r\nMax-Forwards: 70\r\nFrom: <sip:"...)
	dst = append(dst, p.user...)
	dst = append(dst, '@')
	dst = append(dst, p.domain...)
	dst = append(dst, ">;tag="...)
	dst = append(dst, p.tag...)
	dst = append(dst, "\r\nTo: <sip:"...)
	dst = append(dst, p.user...)
	dst = append(dst, '@')
	dst = append(dst, p.domain...)
	dst = append(dst, ">\r\nCall-ID: "...)
	dst = append(dst, p.callID...)
	dst = append(dst, "\r\nCSeq: "...)
	dst = strconv.AppendUint(dst, uint64(p.cseq), 10)
	dst = append(dst, " REGISTER\r\nContact: <sip:"...)
	dst = append(dst, p.user...)
	dst = append(dst, '@')
	dst = append(dst, p.private...)
	dst = append(dst, ":5060>\r\nExpires: "...)
	dst = strconv.AppendInt(dst, int64(p.expires), 10)
	dst = append(dst, "\r\nUser-Agent: kabench\r\n"...)
	if p.auth != "" {
		dst = append(dst, "Authorization: "...)
		dst = append(dst, p.auth...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Content-Length: 0\r\n\r\n"...)
	return dst
}

// pickChallenge returns the challenge of m the phone answers: the first
// it supports, in the server's order, as a UA picks (RFC 8760).
func pickChallenge(m *msg) (uatest.Challenge, bool) {
	vals := make([]string, m.nauth)
	for i := range vals {
		vals[i] = string(m.auths[i])
	}
	c, err := uatest.PickChallenge(vals, "")
	return c, err == nil
}
