package calltrace

import (
	"bytes"
	"cmp"
	"iter"
	"net/netip"
	"strconv"
	"strings"
)

// This file reads what the trace needs from raw SIP messages. It never
// fails: a missing or malformed header gives an empty field.

// callID returns the Call-ID header value of the raw message b ("Call-ID",
// any case, or the compact "i"), without a full parse and without
// allocating. It returns nil when there is none before the end of the
// headers. Folded header lines are not supported.
func callID(b []byte) []byte {
	i := bytes.IndexByte(b, '\n') + 1 // skip the start line
	if i == 0 {
		return nil
	}
	for i < len(b) {
		line := b[i:]
		if e := bytes.IndexByte(line, '\n'); e >= 0 {
			line, i = line[:e], i+e+1
		} else {
			i = len(b)
		}
		var k int
		switch {
		case len(line) == 0 || line[0] == '\r':
			return nil // end of headers
		case len(line) > 7 && (line[0] == 'c' || line[0] == 'C') && bytes.EqualFold(line[:7], []byte("call-id")):
			k = 7
		case line[0] == 'i' || line[0] == 'I':
			k = 1
		default:
			continue
		}
		for k < len(line) && (line[k] == ' ' || line[k] == '\t') {
			k++
		}
		if k >= len(line) || line[k] != ':' {
			continue
		}
		v := line[k+1:]
		if cr := bytes.IndexByte(v, '\r'); cr >= 0 {
			v = v[:cr]
		}
		return bytes.TrimSpace(v)
	}
	return nil
}

// msg is what the trace reads from one SIP message.
type msg struct {
	request bool
	method  string // request method, or the CSeq method of a response
	ruri    string // request-URI
	status  int    // response code; 0 for requests
	reason  string // response reason phrase
	start   string // the start line

	cseq    string // CSeq value with blanks collapsed: "1 INVITE"
	cseqNum uint64
	from    string // URI of From
	to      string // URI of To
	toTag   string
	hasTag  bool     // To has a tag parameter (maybe empty)
	via     string   // top Via sent-by, as written
	branch  string   // top Via branch
	contact string   // URI of the first Contact
	rr      []string // Record-Route entries, top first

	sdp      bool   // the body is SDP
	sdpAddr  string // c= address of the first stream (media level, else session level)
	sdpPort  string // port of the first m= line
	sdpFound bool
}

// field is one header field of a message: its name and its raw value
// (folded continuation lines included) starting at off.
type field struct {
	name, value string
	off         int
}

// fields iterates over the header fields of s, after the start line and up
// to the blank line that ends the headers.
func fields(s string) iter.Seq[field] {
	return func(yield func(field) bool) {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return
		}
		i++
		for i < len(s) {
			end := lineEnd(s, i)
			line := strings.TrimSuffix(s[i:end], "\r")
			if line == "" {
				return
			}
			next := min(end+1, len(s))
			// Continuation lines start with a blank and belong to this field.
			for next < len(s) && (s[next] == ' ' || s[next] == '\t') {
				end = lineEnd(s, next)
				next = min(end+1, len(s))
			}
			if c := strings.IndexByte(line, ':'); c > 0 && line[0] != ' ' && line[0] != '\t' {
				f := field{name: strings.TrimSpace(line[:c]), off: i + c + 1}
				f.value = s[f.off:end]
				if !yield(f) {
					return
				}
			}
			i = next
		}
	}
}

// lineEnd returns the index of the '\n' ending the line that starts at i,
// or len(s).
func lineEnd(s string, i int) int {
	if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(s)
}

// body returns the message body: what follows the first blank line.
func body(s string) string {
	for i := 0; i < len(s); {
		end := lineEnd(s, i)
		if i > 0 && (end == i || end == i+1 && s[i] == '\r') {
			return s[min(end+1, len(s)):]
		}
		i = end + 1
	}
	return ""
}

// is reports whether header name n is long (any case) or its compact form.
func is(n, long string, compact byte) bool {
	if len(n) == 1 {
		return compact != 0 && (n[0]|0x20) == compact
	}
	return strings.EqualFold(n, long)
}

// parse reads s leniently.
func parse(s string) msg {
	var m msg
	m.start = strings.TrimSpace(s[:lineEnd(s, 0)])
	f := strings.Fields(m.start)
	switch {
	case len(f) >= 2 && strings.HasPrefix(f[0], "SIP/"):
		if n, err := strconv.Atoi(f[1]); err == nil && n >= 100 && n <= 999 {
			m.status = n
			m.reason = strings.TrimSpace(m.start[len(f[0]):])
			m.reason = strings.TrimSpace(m.reason[len(f[1]):])
		}
	case len(f) >= 2:
		m.request, m.method, m.ruri = true, f[0], f[1]
	}
	var ctype string
	for h := range fields(s) {
		v := strings.TrimSpace(h.value)
		switch n := h.name; {
		case is(n, "cseq", 0) && m.cseq == "":
			if cf := strings.Fields(v); len(cf) >= 2 {
				m.cseq = cf[0] + " " + cf[1]
				m.cseqNum, _ = strconv.ParseUint(cf[0], 10, 32)
				if !m.request {
					m.method = cf[1]
				}
			}
		case is(n, "from", 'f') && m.from == "":
			m.from, _ = nameAddr(v)
		case is(n, "to", 't') && m.to == "":
			var params string
			m.to, params = nameAddr(v)
			m.toTag, m.hasTag = param(params, "tag")
		case is(n, "via", 'v') && m.via == "":
			m.via, m.branch = topVia(v)
		case is(n, "contact", 'm') && m.contact == "":
			m.contact, _ = nameAddr(v)
		case is(n, "record-route", 0):
			m.rr = append(m.rr, splitList(v)...)
		case is(n, "content-type", 'c'):
			ctype = v
		}
	}
	b := body(s)
	m.sdp = b != "" && (strings.Contains(strings.ToLower(ctype), "application/sdp") || ctype == "" && strings.HasPrefix(b, "v="))
	if m.sdp {
		m.sdpAddr, m.sdpPort, m.sdpFound = firstStream(b)
	}
	return m
}

// nameAddr splits a From/To/Contact value into the URI (inside <>, or the
// bare value up to its parameters) and the header parameters after it.
func nameAddr(v string) (uri, params string) {
	if lt := angleStart(v); lt >= 0 {
		rest := v[lt+1:]
		gt := strings.IndexByte(rest, '>')
		if gt < 0 {
			return strings.TrimSpace(rest), ""
		}
		return strings.TrimSpace(rest[:gt]), rest[gt+1:]
	}
	if i := strings.IndexAny(v, ";,"); i >= 0 {
		return strings.TrimSpace(v[:i]), v[i:]
	}
	return strings.TrimSpace(v), ""
}

// angleStart is the index of the '<' that opens a name-addr's URI,
// skipping a quoted display name (which may hold '<' and escaped quotes);
// -1 if there is none.
func angleStart(v string) int {
	quoted := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '<':
			return i
		}
	}
	return -1
}

// param finds the ";name=value" parameter in params.
func param(params, name string) (string, bool) {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// topVia returns the sent-by and branch of the first Via in v.
func topVia(v string) (sentBy, branch string) {
	v, _, _ = strings.Cut(v, ",")
	proto, params, _ := strings.Cut(v, ";")
	if f := strings.Fields(proto); len(f) >= 2 {
		sentBy = f[len(f)-1]
	}
	branch, _ = param(params, "branch")
	return sentBy, branch
}

// splitList splits a header value into its comma-separated entries,
// ignoring commas inside <> and quotes.
func splitList(v string) []string {
	var out []string
	depth, quoted, from := 0, false, 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == ',' && depth == 0 && !quoted {
			if e := strings.TrimSpace(v[from:i]); e != "" {
				out = append(out, e)
			}
			from = i + 1
			continue
		}
		switch v[i] {
		case '"':
			quoted = !quoted
		case '<':
			depth++
		case '>':
			depth = max(depth-1, 0)
		}
	}
	return out
}

// firstStream returns the connection address and port of the first media
// stream of an SDP body.
func firstStream(b string) (addr, port string, ok bool) {
	var session, media string
	seenM := false
	for line := range strings.Lines(b) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "m="):
			if seenM {
				return cmp.Or(media, session), port, true
			}
			seenM = true
			if f := strings.Fields(line[2:]); len(f) >= 2 {
				port, _, _ = strings.Cut(f[1], "/")
			}
		case strings.HasPrefix(line, "c="):
			a := ""
			if f := strings.Fields(line[2:]); len(f) >= 3 {
				a, _, _ = strings.Cut(f[2], "/")
			}
			if seenM {
				media = a
			} else {
				session = a
			}
		}
	}
	addr = cmp.Or(media, session)
	return addr, port, addr != "" || port != ""
}

// uriHostPort returns the host:port a SIP URI points at, normalised by
// normHostPort, and whether the host is an IP address. It returns "" for
// anything that is not a sip: or sips: URI.
func uriHostPort(uri string) (string, bool) {
	scheme, rest, ok := strings.Cut(uri, ":")
	def := 5060
	switch {
	case !ok:
		return "", false
	case strings.EqualFold(scheme, "sips"):
		def = 5061
	case !strings.EqualFold(scheme, "sip"):
		return "", false
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		rest = rest[at+1:]
	}
	if i := strings.IndexAny(rest, ";?>"); i >= 0 {
		rest = rest[:i]
	}
	return normHostPort(rest, def)
}

// normHostPort writes "host[:port]" in one form so that addresses can be
// compared with an observed ip:port: IP addresses as netip prints them,
// host names in lower case, a missing port as def. It reports whether host
// is an IP address.
func normHostPort(hp string, def int) (string, bool) {
	hp = strings.TrimSpace(hp)
	if hp == "" {
		return "", false
	}
	host, port := hp, ""
	if strings.HasPrefix(hp, "[") {
		if end := strings.IndexByte(hp, ']'); end > 0 {
			host, port = hp[1:end], strings.TrimPrefix(hp[end+1:], ":")
		}
	} else if strings.Count(hp, ":") == 1 {
		host, port, _ = strings.Cut(hp, ":")
	}
	p := def
	if port != "" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return strings.ToLower(hp), false
		}
		p = int(n)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.WithZone("").Unmap(), uint16(p)).String(), true
	}
	return strings.ToLower(host) + ":" + strconv.Itoa(p), false
}

// normAddr normalises an observed address the same way.
func normAddr(s string) string {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().WithZone("").Unmap(), ap.Port()).String()
	}
	return s
}

// isPrivate reports whether a is an address only reachable on a private
// network: RFC 1918, RFC 6598 (100.64/10), unique local (fc00::/7) or
// link-local.
func isPrivate(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	if a.IsPrivate() || a.IsLinkLocalUnicast() {
		return true
	}
	b := a.As16()
	return a.Is4() && b[12] == 100 && b[13]&0xc0 == 64
}

// redacted is what a digest response becomes in a stored message.
const redacted = `"<redacted>"`

// redact replaces the value of every digest response= parameter in
// Authorization and Proxy-Authorization headers with "<redacted>", so no
// credential is stored. It returns s itself when there is nothing to do.
func redact(s string) string {
	var out strings.Builder
	last := 0
	for h := range fields(s) {
		if !strings.EqualFold(h.name, "authorization") && !strings.EqualFold(h.name, "proxy-authorization") {
			continue
		}
		for start, end := range responseValues(h.value) {
			if last == 0 {
				out.Grow(len(s))
			}
			out.WriteString(s[last : h.off+start])
			out.WriteString(redacted)
			last = h.off + end
		}
	}
	if last == 0 {
		return s
	}
	out.WriteString(s[last:])
	return out.String()
}

// responseValues yields the spans of the response= parameter values in a
// credentials value: `Digest username="bob", response="6629fa..."`.
func responseValues(v string) iter.Seq2[int, int] {
	return func(yield func(int, int) bool) {
		blank := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
		i := 0
		for i < len(v) {
			for i < len(v) && (blank(v[i]) || v[i] == ',') {
				i++
			}
			name := i
			for i < len(v) && !blank(v[i]) && v[i] != '=' && v[i] != ',' {
				i++
			}
			key := v[name:i]
			for i < len(v) && blank(v[i]) {
				i++
			}
			if i >= len(v) || v[i] != '=' {
				continue // a scheme name ("Digest") or a bare token
			}
			i++
			for i < len(v) && blank(v[i]) {
				i++
			}
			start := i
			if i < len(v) && v[i] == '"' {
				for i++; i < len(v) && v[i] != '"'; i++ {
					if v[i] == '\\' {
						i++
					}
				}
				i = min(i+1, len(v))
			} else {
				for i < len(v) && !blank(v[i]) && v[i] != ',' {
					i++
				}
			}
			if strings.EqualFold(key, "response") && !yield(start, i) {
				return
			}
		}
	}
}
