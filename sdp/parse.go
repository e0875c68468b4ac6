package sdp

import (
	"fmt"
	"net/netip"
	"strings"
)

// The parser works on a string and byte offsets so that Apply can run it
// over the caller's body without copying it, and then copy the body to the
// output verbatim between the few spans it replaces.

// connKind classifies a c= line for the rewriter.
type connKind uint8

const (
	connNone   connKind = iota // no c= line
	connAddr                   // unicast IP literal: rewritable
	connHost                   // hostname or other non-literal: rewritable
	connUnspec                 // 0.0.0.0 or ::, RFC 2543 hold unless the stream uses ICE
	connFixed                  // multicast, /ttl or /count, non-IN network or unknown address type: never touched
)

// conn is one analysed c= line (or the address part of a=rtcp).
type conn struct {
	kind connKind
	addr netip.Addr // the IP literal, unmapped; invalid for hostnames
	raw  string     // the address as written
}

// mstate is what the parser records per m= line, plus Apply's plan for it.
type mstate struct {
	port     int
	own      conn // media-level c=; kind connNone if absent
	ice      bool // a=candidate or a=ice-ufrag in this media description
	rtcp     int  // a=rtcp port, -1 if none
	rtcpAddr conn // a=rtcp address part; kind connNone if absent

	// Filled by Apply's plan.
	rewrite   bool // m= port (and a=rtcp) rewritten
	needConn  bool // its effective c= must point at the relay
	insert    bool // gets a new media-level c= line
	removeICE bool // its ICE lines are dropped
	newPort   int
	newRTCP   int
}

// info is the result of parse that Apply needs.
type info struct {
	sess      conn // session-level c=
	sessUfrag bool // session-level a=ice-ufrag
	nConn     int  // number of c= lines
	nRTCP     int  // number of a=rtcp lines
	media     []mstate

	// Filled by Apply's plan.
	sessRewrite   bool // rewrite the session-level c=
	sessRemoveICE bool // drop the session-level ICE lines
}

// attr identifies the attributes the package cares about.
type attr uint8

const (
	aOther attr = iota
	aSendrecv
	aSendonly
	aRecvonly
	aInactive
	aRTCP
	aRTCPMux
	aRTPMap
	// ICE attributes (RFC 8839, RFC 8840); keep them last, see isICE.
	aCandidate
	aICEUfrag
	aICEPwd
	aICEOptions
	aICELite
	aICEMismatch
	aICEPacing
	aRemoteCandidates
	aEndOfCandidates
)

func (a attr) isICE() bool { return a >= aCandidate }

var attrNames = [...]struct {
	name string
	kind attr
}{
	{"sendrecv", aSendrecv},
	{"sendonly", aSendonly},
	{"recvonly", aRecvonly},
	{"inactive", aInactive},
	{"rtcp", aRTCP},
	{"rtcp-mux", aRTCPMux},
	{"rtpmap", aRTPMap},
	{"candidate", aCandidate},
	{"ice-ufrag", aICEUfrag},
	{"ice-pwd", aICEPwd},
	{"ice-options", aICEOptions},
	{"ice-lite", aICELite},
	{"ice-mismatch", aICEMismatch},
	{"ice-pacing", aICEPacing},
	{"remote-candidates", aRemoteCandidates},
	{"end-of-candidates", aEndOfCandidates},
}

// attrOf classifies an attribute name, ignoring case.
func attrOf(name string) attr {
	for _, a := range attrNames {
		if len(a.name) == len(name) && strings.EqualFold(a.name, name) {
			return a.kind
		}
	}
	return aOther
}

// splitAttr splits the value of an a= line (after "a=") into its name and
// the offset of its value (after the colon), or -1 if it has none.
func splitAttr(v string) (name string, val int) {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		return v[:i], i + 1
	}
	return v, -1
}

// lineAt returns the line starting at pos: its content is s[pos:end]
// (without the terminator), the terminator s[end:next] is "\r\n", "\n" or,
// for a last line without a newline, "".
func lineAt(s string, pos int) (end, next int) {
	i := strings.IndexByte(s[pos:], '\n')
	if i < 0 {
		return len(s), len(s)
	}
	end = pos + i
	next = end + 1
	if end > pos && s[end-1] == '\r' {
		end--
	}
	return end, next
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// trimSpan returns the span of ln without leading and trailing blanks.
func trimSpan(ln string) (int, int) {
	i, j := 0, len(ln)
	for i < j && isBlank(ln[i]) {
		i++
	}
	for j > i && isBlank(ln[j-1]) {
		j--
	}
	return i, j
}

func trim(s string) string {
	i, j := trimSpan(s)
	return s[i:j]
}

// nextField returns the span [i, j) of the first space- or tab-separated
// field of s at or after from; i == j == len(s) if there is none.
func nextField(s string, from int) (int, int) {
	i := from
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	j := i
	for j < len(s) && s[j] != ' ' && s[j] != '\t' {
		j++
	}
	return i, j
}

// countFields returns the number of fields of s.
func countFields(s string) int {
	n := 0
	for i := 0; ; n++ {
		a, b := nextField(s, i)
		if a == b {
			return n
		}
		i = b
	}
}

// fieldN returns the span of field k (0-based) of s; i == j if there is none.
func fieldN(s string, k int) (int, int) {
	i, j := nextField(s, 0)
	for ; k > 0 && i < j; k-- {
		i, j = nextField(s, j)
	}
	return i, j
}

func fieldStr(s string, k int) string {
	i, j := fieldN(s, k)
	return s[i:j]
}

// parseUint parses a non-empty decimal string of at most max.
func parseUint(s string, max uint64) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (max-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func parsePort(s string) (int, bool) {
	n, ok := parseUint(s, 65535)
	return int(n), ok
}

// classifyConn analyses the three fields of a c= line (or of the address
// part of a=rtcp).
func classifyConn(nettype, addrtype, addr string) conn {
	c := conn{raw: addr}
	slash := strings.IndexByte(addr, '/')
	lit := addr
	if slash >= 0 {
		lit = addr[:slash]
	}
	// Zones never make sense in SDP; leaving such addresses to the
	// hostname case also keeps netip from retaining any part of the body.
	if strings.IndexByte(lit, '%') < 0 {
		if a, err := netip.ParseAddr(lit); err == nil {
			c.addr = a.Unmap()
		}
	}
	switch {
	case !strings.EqualFold(nettype, "IN"):
		c.addr = netip.Addr{}
		c.kind = connFixed
	case !strings.EqualFold(addrtype, "IP4") && !strings.EqualFold(addrtype, "IP6"):
		c.kind = connFixed
	case slash >= 0 || c.addr.IsMulticast():
		c.kind = connFixed
	case !c.addr.IsValid():
		c.kind = connHost
	case c.addr.IsUnspecified():
		c.kind = connUnspec
	default:
		c.kind = connAddr
	}
	return c
}

// parseConnFields splits the value of a c= line into its three fields; ok
// is false unless there are exactly three. end is where the last one ends.
func parseConnFields(v string) (nettype, addrtype, addr string, end int, ok bool) {
	a, b := nextField(v, 0)
	c, d := nextField(v, b)
	e, f := nextField(v, d)
	if e == f {
		return "", "", "", 0, false
	}
	if g, h := nextField(v, f); g != h {
		return "", "", "", 0, false
	}
	return v[a:b], v[c:d], v[e:f], f, true
}

// parseRTCP parses the value of a=rtcp: "<port> [<nettype> <addrtype>
// <address>]". portStart/portEnd locate the port; addrEnd is where the
// address part ends (portEnd without one).
func parseRTCP(v string) (port int, addr conn, portStart, portEnd, addrEnd int, msg string) {
	portStart, portEnd = nextField(v, 0)
	port, ok := parsePort(v[portStart:portEnd])
	if !ok {
		return 0, conn{}, 0, 0, 0, fmt.Sprintf("a=rtcp port %s is not a port number", quote(v[portStart:portEnd]))
	}
	addrEnd = portEnd
	if i, _ := nextField(v, portEnd); i < len(v) {
		nt, at, a, end, ok := parseConnFields(v[portEnd:])
		if !ok {
			return 0, conn{}, 0, 0, 0, fmt.Sprintf("a=rtcp address %s is not <nettype> <addrtype> <address>", quote(v[portEnd:]))
		}
		addr = classifyConn(nt, at, a)
		addrEnd = portEnd + end
	}
	return port, addr, portStart, portEnd, addrEnd, ""
}

// parseMPort parses the port field of an m= line: "<port>[/<count>]".
func parseMPort(f string) (port, count int, ok bool) {
	p, n, hasCount := strings.Cut(f, "/")
	if port, ok = parsePort(p); !ok {
		return 0, 0, false
	}
	count = 1
	if hasCount {
		c, ok := parseUint(n, 65535)
		if !ok || c == 0 {
			return 0, 0, false
		}
		count = int(c)
	}
	return port, count, true
}

// quote quotes s for an error message, shortened if long.
func quote(s string) string {
	const max = 48
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

func syntaxErr(line int, format string, args ...any) error {
	return &SyntaxError{Line: line, Msg: fmt.Sprintf(format, args...)}
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

var directions = [...]string{aSendrecv: "sendrecv", aSendonly: "sendonly", aRecvonly: "recvonly", aInactive: "inactive"}

// parse checks s and analyses it. It fills d when d is not nil (Parse) and
// appends one mstate per m= line to media (Apply passes a stack buffer).
func parse(s string, d *Desc, media []mstate) (info, error) {
	inf := info{media: media[:0]}
	var (
		line     int
		seenV    bool
		seenO    bool
		cur      *mstate // current media description, nil at session level
		md       *Media  // its Desc counterpart when d != nil
		haveRTPM []bool  // per media: first format's a=rtpmap seen (d != nil)
	)
	for pos := 0; pos < len(s); {
		end, next := lineAt(s, pos)
		ln := trim(s[pos:end])
		pos = next
		line++
		if ln == "" {
			continue // blank lines are tolerated anywhere
		}
		if !seenV {
			if !strings.HasPrefix(ln, "v=") {
				return inf, syntaxErr(line, "expected v=0 as the first line, got %s", quote(ln))
			}
			if trim(ln[2:]) != "0" {
				return inf, syntaxErr(line, "unsupported SDP version %s", quote(ln))
			}
			seenV = true
			continue
		}
		if len(ln) < 2 || ln[1] != '=' || !isLetter(ln[0]) {
			return inf, syntaxErr(line, "not a <type>=<value> line: %s", quote(ln))
		}
		v := ln[2:]
		switch ln[0] {
		case 'v':
			return inf, syntaxErr(line, "second v= line")
		case 'o':
			if cur != nil {
				return inf, syntaxErr(line, "o= line inside a media description")
			}
			if seenO {
				return inf, syntaxErr(line, "second o= line")
			}
			seenO = true
			n := countFields(v)
			if n < 6 {
				return inf, syntaxErr(line, "o= line needs <username> <sess-id> <sess-version> <nettype> <addrtype> <address>: %s", quote(ln))
			}
			vs, ve := fieldN(v, n-4)
			ver, ok := parseUint(v[vs:ve], 1<<64-1)
			if !ok {
				return inf, syntaxErr(line, "o= session version %s is not a number", quote(v[vs:ve]))
			}
			if d != nil {
				us, _ := fieldN(v, 0)
				_, ue := fieldN(v, n-6)
				d.Origin = Origin{Username: v[us:ue], SessID: fieldStr(v, n-5), Version: ver,
					NetType: fieldStr(v, n-3), AddrType: fieldStr(v, n-2), Addr: fieldStr(v, n-1)}
			}
		case 'c':
			nt, at, a, _, ok := parseConnFields(v)
			if !ok {
				return inf, syntaxErr(line, "c= line needs <nettype> <addrtype> <address>: %s", quote(ln))
			}
			c := classifyConn(nt, at, a)
			inf.nConn++
			if cur == nil {
				if inf.sess.kind != connNone {
					return inf, syntaxErr(line, "second session-level c= line")
				}
				inf.sess = c
				if d != nil {
					d.Conn, d.ConnRaw = c.addr, c.raw
				}
			} else {
				if cur.own.kind != connNone {
					return inf, syntaxErr(line, "second c= line in media description %d", len(inf.media)-1)
				}
				cur.own = c
			}
		case 'm':
			ts, te := nextField(v, 0)
			ps, pe := nextField(v, te)
			rs, re := nextField(v, pe)
			if rs == re {
				return inf, syntaxErr(line, "m= line needs <media> <port> <proto> <fmt>...: %s", quote(ln))
			}
			port, count, ok := parseMPort(v[ps:pe])
			if !ok {
				return inf, syntaxErr(line, "m= port %s is not a port number", quote(v[ps:pe]))
			}
			inf.media = append(inf.media, mstate{port: port, rtcp: -1})
			cur = &inf.media[len(inf.media)-1]
			if d != nil {
				m := Media{Type: strings.ToLower(v[ts:te]), Port: port, NumPorts: count, Proto: v[rs:re]}
				for i, j := nextField(v, re); i < j; i, j = nextField(v, j) {
					m.Formats = append(m.Formats, v[i:j])
				}
				d.Media = append(d.Media, m)
				md = &d.Media[len(d.Media)-1]
				haveRTPM = append(haveRTPM, false)
			}
		case 'a':
			name, vi := splitAttr(v)
			val := ""
			if vi >= 0 {
				val = trim(v[vi:])
			}
			switch k := attrOf(name); k {
			case aSendrecv, aSendonly, aRecvonly, aInactive:
				if d != nil {
					if md != nil {
						md.Direction = directions[k]
					} else {
						d.Direction = directions[k]
					}
				}
			case aRTCP:
				inf.nRTCP++
				if cur == nil {
					break // only meaningful in a media description; left alone
				}
				rv := "" // exactly what Apply will parse again
				if vi >= 0 {
					rv = v[vi:]
				}
				port, addr, _, _, _, msg := parseRTCP(rv)
				if msg != "" {
					return inf, syntaxErr(line, "%s", msg)
				}
				if cur.rtcp < 0 {
					cur.rtcp, cur.rtcpAddr = port, addr
				}
			case aRTCPMux:
				if md != nil {
					md.RTCPMux = true
				}
			case aRTPMap:
				if md != nil && !haveRTPM[len(haveRTPM)-1] {
					haveRTPM[len(haveRTPM)-1] = rtpmap(md, val)
				}
			case aCandidate:
				if cur != nil {
					cur.ice = true
				}
			case aICEUfrag:
				if cur != nil {
					cur.ice = true
				} else {
					inf.sessUfrag = true
				}
			case aICELite:
				if cur == nil && d != nil {
					d.ICELite = true
				}
			}
		}
	}
	if !seenV {
		return inf, syntaxErr(0, "empty body: no v= line")
	}
	if !seenO {
		return inf, syntaxErr(0, "no o= line")
	}
	if d != nil {
		finish(d, &inf, haveRTPM)
	}
	return inf, nil
}

// rtpmap applies "a=rtpmap:<pt> <encoding>/<clock>[/<params>]" to m if it
// maps m's first format; it reports whether it did.
func rtpmap(m *Media, val string) bool {
	if len(m.Formats) == 0 || !isRTPProto(m.Proto) {
		return false
	}
	ps, pe := nextField(val, 0)
	if val[ps:pe] != m.Formats[0] {
		return false
	}
	es, ee := nextField(val, pe)
	enc := val[es:ee]
	slash := strings.IndexByte(enc, '/')
	if slash <= 0 {
		return false // malformed: tolerated, the static table may still know it
	}
	rate := enc[slash+1:]
	if i := strings.IndexByte(rate, '/'); i >= 0 {
		rate = rate[:i]
	}
	r, ok := parseUint(rate, 1<<31-1)
	if !ok {
		return false
	}
	m.Encoding, m.ClockRate = enc[:slash], int(r)
	return true
}

// staticPT is the RFC 3551 static payload type table.
var staticPT = [...]struct {
	enc  string
	rate int
}{
	0: {"PCMU", 8000}, 3: {"GSM", 8000}, 4: {"G723", 8000}, 5: {"DVI4", 8000},
	6: {"DVI4", 16000}, 7: {"LPC", 8000}, 8: {"PCMA", 8000}, 9: {"G722", 8000},
	10: {"L16", 44100}, 11: {"L16", 44100}, 12: {"QCELP", 8000}, 13: {"CN", 8000},
	14: {"MPA", 90000}, 15: {"G728", 8000}, 16: {"DVI4", 11025}, 17: {"DVI4", 22050},
	18: {"G729", 8000}, 25: {"CelB", 90000}, 26: {"JPEG", 90000}, 28: {"nv", 90000},
	31: {"H261", 90000}, 32: {"MPV", 90000}, 33: {"MP2T", 90000}, 34: {"H263", 90000},
}

// finish fills the effective per-media fields of d.
func finish(d *Desc, inf *info, haveRTPM []bool) {
	for i := range d.Media {
		m, st := &d.Media[i], &inf.media[i]
		if st.own.kind != connNone {
			m.Conn = st.own.addr
		} else {
			m.Conn = d.Conn
		}
		if m.Direction == "" {
			m.Direction = d.Direction
		}
		if m.Direction == "" {
			m.Direction = "sendrecv"
		}
		m.ICE = st.ice || inf.sessUfrag
		if st.rtcp >= 0 {
			a := m.Conn
			if st.rtcpAddr.kind != connNone {
				a = st.rtcpAddr.addr
			}
			m.RTCP = netip.AddrPortFrom(a, uint16(st.rtcp))
		}
		if !m.RTP() || len(m.Formats) == 0 {
			continue
		}
		if !haveRTPM[i] {
			if pt, ok := parseUint(m.Formats[0], uint64(len(staticPT)-1)); ok {
				m.Encoding, m.ClockRate = staticPT[pt].enc, staticPT[pt].rate
			}
		}
		if m.ClockRate == 0 && m.Type == "video" {
			m.ClockRate = 90000
		}
	}
}
