package uatest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Header is one header field as written on the wire.
type Header struct {
	Name  string
	Value string
}

// Msg is a SIP message kept as text: a start line, the header fields in
// order and a body. It is deliberately simple and independent of any SIP
// library, so that it sees exactly what the server put on the wire.
type Msg struct {
	// Requests: Method and Request-URI. Responses: Code and Reason.
	Method string
	URI    string
	Code   int
	Reason string

	Headers []Header
	Body    []byte

	// Set on received messages.
	Src       netip.AddrPort // real source address
	Transport string         // "udp" or "tcp"
	At        time.Time
	Raw       []byte // bytes as received
}

// IsRequest reports whether m is a request.
func (m *Msg) IsRequest() bool { return m.Method != "" }

// compact maps RFC 3261 §7.3.3 compact header names to full names.
var compact = map[string]string{
	"v": "Via", "f": "From", "t": "To", "i": "Call-ID", "m": "Contact",
	"l": "Content-Length", "c": "Content-Type", "k": "Supported", "s": "Subject",
	"e": "Content-Encoding", "o": "Event", "r": "Refer-To", "b": "Referred-By",
	"x": "Session-Expires", "u": "Allow-Events", "a": "Accept-Contact",
	"j": "Reject-Contact", "d": "Request-Disposition", "y": "Identity", "n": "Identity-Info",
}

// canonical returns the full name of a header name (compact forms expanded).
func canonical(name string) string {
	if full, ok := compact[strings.ToLower(name)]; ok {
		return full
	}
	return name
}

func sameName(a, b string) bool { return strings.EqualFold(canonical(a), canonical(b)) }

// listHeaders may carry several comma-separated values in one field.
var listHeaders = map[string]bool{
	"via": true, "route": true, "record-route": true, "contact": true, "path": true,
	"allow": true, "supported": true, "require": true, "proxy-require": true, "unsupported": true,
}

// Get returns the value of the first header named name ("" if none).
// Compact and full names are the same header.
func (m *Msg) Get(name string) string {
	for _, h := range m.Headers {
		if sameName(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// Has reports whether a header named name is present.
func (m *Msg) Has(name string) bool {
	for _, h := range m.Headers {
		if sameName(h.Name, name) {
			return true
		}
	}
	return false
}

// Values returns every value of header name, in order. For headers that are
// comma-separated lists (Via, Route, Record-Route, Contact, ...) the fields
// are split into single values.
func (m *Msg) Values(name string) []string {
	var out []string
	split := listHeaders[strings.ToLower(canonical(name))]
	for _, h := range m.Headers {
		if !sameName(h.Name, name) {
			continue
		}
		if split {
			out = append(out, SplitList(h.Value)...)
		} else {
			out = append(out, h.Value)
		}
	}
	return out
}

// Add appends a header.
func (m *Msg) Add(name, value string) *Msg {
	m.Headers = append(m.Headers, Header{name, value})
	return m
}

// Set replaces every header named name by one with value (appended where
// the first one was, or at the end).
func (m *Msg) Set(name, value string) *Msg {
	out := m.Headers[:0:0]
	done := false
	for _, h := range m.Headers {
		if sameName(h.Name, name) {
			if !done {
				out = append(out, Header{name, value})
				done = true
			}
			continue
		}
		out = append(out, h)
	}
	if !done {
		out = append(out, Header{name, value})
	}
	m.Headers = out
	return m
}

// Del removes every header named name.
func (m *Msg) Del(name string) *Msg {
	out := m.Headers[:0:0]
	for _, h := range m.Headers {
		if !sameName(h.Name, name) {
			out = append(out, h)
		}
	}
	m.Headers = out
	return m
}

// Prepend inserts a header before all others.
func (m *Msg) Prepend(name, value string) *Msg {
	m.Headers = append([]Header{{name, value}}, m.Headers...)
	return m
}

// CSeq returns the CSeq number and method.
func (m *Msg) CSeq() (int, string) {
	f := strings.Fields(m.Get("CSeq"))
	if len(f) != 2 {
		return 0, ""
	}
	n, _ := strconv.Atoi(f[0])
	return n, f[1]
}

// CallID returns the Call-ID.
func (m *Msg) CallID() string { return strings.TrimSpace(m.Get("Call-ID")) }

// TopVia returns the first Via value, parsed.
func (m *Msg) TopVia() (Via, error) {
	vs := m.Values("Via")
	if len(vs) == 0 {
		return Via{}, errors.New("uatest: no Via")
	}
	return ParseVia(vs[0])
}

// Branch returns the branch of the top Via.
func (m *Msg) Branch() string {
	v, err := m.TopVia()
	if err != nil {
		return ""
	}
	b, _ := v.Params.Get("branch")
	return b
}

// Tag returns the tag parameter of the From or To header.
func (m *Msg) Tag(header string) string {
	na, err := ParseNameAddr(m.Get(header))
	if err != nil {
		return ""
	}
	t, _ := na.Params.Get("tag")
	return t
}

// Bytes serialises m with a Content-Length matching the body.
func (m *Msg) Bytes() []byte {
	var b bytes.Buffer
	if m.IsRequest() {
		fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", m.Method, m.URI)
	} else {
		fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", m.Code, m.Reason)
	}
	for _, h := range m.Headers {
		if sameName(h.Name, "Content-Length") {
			continue
		}
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
		b.WriteString("\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(m.Body))
	b.Write(m.Body)
	return b.Bytes()
}

// String is the message as text (for failure messages).
func (m *Msg) String() string {
	if m.Raw != nil {
		return string(m.Raw)
	}
	return string(m.Bytes())
}

// Summary is a one-line description: "INVITE sip:bob@x" or "180 Ringing
// (INVITE)".
func (m *Msg) Summary() string {
	if m.IsRequest() {
		return m.Method + " " + m.URI
	}
	_, meth := m.CSeq()
	return strconv.Itoa(m.Code) + " " + m.Reason + " (" + meth + ")"
}

// Parse parses one SIP message. For datagrams, the body is the rest of the
// packet; a Content-Length larger than the rest is an error (truncated
// message), a smaller one cuts the body.
func Parse(b []byte) (*Msg, error) {
	raw := b
	end := bytes.Index(b, []byte("\r\n\r\n"))
	sep := 4
	if end < 0 {
		if end = bytes.Index(b, []byte("\n\n")); end < 0 {
			return nil, errors.New("uatest: no end of headers")
		}
		sep = 2
	}
	head := strings.ReplaceAll(string(b[:end]), "\r\n", "\n")
	body := b[end+sep:]
	lines := strings.Split(head, "\n")
	m := &Msg{Raw: raw}
	start := lines[0]
	switch {
	case strings.HasPrefix(start, "SIP/2.0 "):
		rest := start[len("SIP/2.0 "):]
		code, reason, _ := strings.Cut(rest, " ")
		n, err := strconv.Atoi(code)
		if err != nil || n < 100 || n > 699 {
			return nil, fmt.Errorf("uatest: bad status line %q", start)
		}
		m.Code, m.Reason = n, reason
	default:
		f := strings.SplitN(start, " ", 3)
		if len(f) != 3 || f[2] != "SIP/2.0" {
			return nil, fmt.Errorf("uatest: bad request line %q", start)
		}
		m.Method, m.URI = f[0], f[1]
	}
	for _, l := range lines[1:] {
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(m.Headers) > 0 {
			m.Headers[len(m.Headers)-1].Value += " " + strings.TrimSpace(l)
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("uatest: bad header line %q", l)
		}
		m.Headers = append(m.Headers, Header{strings.TrimSpace(name), strings.TrimSpace(value)})
	}
	if cl := m.Get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(strings.TrimSpace(cl))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("uatest: bad Content-Length %q", cl)
		}
		if n > len(body) {
			return nil, fmt.Errorf("uatest: truncated body: Content-Length %d, have %d bytes", n, len(body))
		}
		body = body[:n]
	}
	m.Body = bytes.Clone(body)
	return m, nil
}

// SplitList splits a header value at commas that are outside quotes and
// angle brackets.
func SplitList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// Param is one ;name=value parameter. Value is "" for a flag (;lr).
type Param struct {
	Name, Value string
}

// Params is an ordered parameter list.
type Params []Param

// Get returns the value of parameter name (case-insensitive) and whether
// it is present.
func (ps Params) Get(name string) (string, bool) {
	for _, p := range ps {
		if strings.EqualFold(p.Name, name) {
			return p.Value, true
		}
	}
	return "", false
}

// Has reports whether parameter name is present.
func (ps Params) Has(name string) bool {
	_, ok := ps.Get(name)
	return ok
}

// String renders ";a=b;c".
func (ps Params) String() string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteByte(';')
		b.WriteString(p.Name)
		if p.Value != "" {
			b.WriteByte('=')
			b.WriteString(p.Value)
		}
	}
	return b.String()
}

// parseParams parses "a=b;c;d=e" (without a leading ';').
func parseParams(s string) Params {
	var ps Params
	for _, f := range splitOutsideQuotes(s, ';') {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, v, _ := strings.Cut(f, "=")
		ps = append(ps, Param{strings.TrimSpace(n), strings.TrimSpace(v)})
	}
	return ps
}

func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case sep:
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// URI is a sip: or sips: URI.
type URI struct {
	Scheme string // "sip"
	User   string
	Host   string // as written; IPv6 with brackets
	Port   int    // 0 if absent
	Params Params
	// Headers is the ?... part, unparsed.
	Headers string
}

// ParseURI parses a SIP URI.
func ParseURI(s string) (URI, error) {
	var u URI
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || (!strings.EqualFold(scheme, "sip") && !strings.EqualFold(scheme, "sips")) {
		return u, fmt.Errorf("uatest: not a SIP URI: %q", s)
	}
	u.Scheme = strings.ToLower(scheme)
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, u.Headers = rest[:i], rest[i+1:]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		u.User, rest = rest[:i], rest[i+1:]
	}
	hostport, params, _ := strings.Cut(rest, ";")
	u.Params = parseParams(params)
	host, port, err := splitHostPort(hostport)
	if err != nil {
		return u, fmt.Errorf("uatest: URI %q: %w", s, err)
	}
	u.Host, u.Port = host, port
	if u.Host == "" {
		return u, fmt.Errorf("uatest: URI %q has no host", s)
	}
	return u, nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostPort(s string) (string, int, error) {
	if strings.HasPrefix(s, "[") {
		i := strings.IndexByte(s, ']')
		if i < 0 {
			return "", 0, errors.New("unterminated IPv6 reference")
		}
		host, rest := s[:i+1], s[i+1:]
		if rest == "" {
			return host, 0, nil
		}
		if rest[0] != ':' {
			return "", 0, fmt.Errorf("junk after IPv6 reference %q", rest)
		}
		p, err := strconv.Atoi(rest[1:])
		if err != nil || p <= 0 || p > 65535 {
			return "", 0, fmt.Errorf("bad port %q", rest[1:])
		}
		return host, p, nil
	}
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return s, 0, nil
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	return host, p, nil
}

// String renders the URI.
func (u URI) String() string {
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteByte(':')
	if u.User != "" {
		b.WriteString(u.User)
		b.WriteByte('@')
	}
	b.WriteString(u.Host)
	if u.Port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(u.Port))
	}
	b.WriteString(u.Params.String())
	if u.Headers != "" {
		b.WriteByte('?')
		b.WriteString(u.Headers)
	}
	return b.String()
}

// AddrPort returns the URI's host and port (default 5060) when the host is
// an IP literal.
func (u URI) AddrPort() (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(strings.Trim(u.Host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	p := u.Port
	if p == 0 {
		p = 5060
	}
	return netip.AddrPortFrom(a, uint16(p)), true
}

// NameAddr is a From/To/Contact/Route value: an optional display name, a
// URI and header parameters.
type NameAddr struct {
	Display string
	URI     URI
	Params  Params
	// Wildcard is Contact: *.
	Wildcard bool
}

// ParseNameAddr parses `"Name" <sip:...>;p=v` or `sip:...;p=v` (in the
// addr-spec form, parameters belong to the header, RFC 3261 §20).
func ParseNameAddr(s string) (NameAddr, error) {
	var na NameAddr
	s = strings.TrimSpace(s)
	if s == "*" {
		na.Wildcard = true
		return na, nil
	}
	if i := strings.IndexByte(s, '<'); i >= 0 {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return na, fmt.Errorf("uatest: unterminated <> in %q", s)
		}
		na.Display = strings.Trim(strings.TrimSpace(s[:i]), `"`)
		u, err := ParseURI(s[i+1 : i+j])
		if err != nil {
			return na, err
		}
		na.URI = u
		rest := strings.TrimSpace(s[i+j+1:])
		na.Params = parseParams(strings.TrimPrefix(rest, ";"))
		return na, nil
	}
	uri, params, _ := strings.Cut(s, ";")
	u, err := ParseURI(uri)
	if err != nil {
		return na, err
	}
	na.URI = u
	na.Params = parseParams(params)
	return na, nil
}

// String renders `<uri>;params` (with a display name if set).
func (na NameAddr) String() string {
	if na.Wildcard {
		return "*"
	}
	s := "<" + na.URI.String() + ">" + na.Params.String()
	if na.Display != "" {
		s = `"` + na.Display + `" ` + s
	}
	return s
}

// Via is one Via value.
type Via struct {
	Transport string // "UDP"
	Host      string
	Port      int // 0 if absent
	Params    Params
}

// ParseVia parses "SIP/2.0/UDP host:port;params".
func ParseVia(s string) (Via, error) {
	var v Via
	s = strings.TrimSpace(s)
	proto, rest, ok := strings.Cut(s, " ")
	parts := strings.Split(proto, "/")
	if !ok || len(parts) != 3 || parts[0] != "SIP" || parts[1] != "2.0" {
		return v, fmt.Errorf("uatest: bad Via %q", s)
	}
	v.Transport = strings.ToUpper(parts[2])
	rest = strings.TrimSpace(rest)
	hp, params, _ := strings.Cut(rest, ";")
	host, port, err := splitHostPort(strings.TrimSpace(hp))
	if err != nil {
		return v, fmt.Errorf("uatest: Via %q: %w", s, err)
	}
	v.Host, v.Port = host, port
	v.Params = parseParams(params)
	return v, nil
}

// String renders the Via value.
func (v Via) String() string {
	s := "SIP/2.0/" + v.Transport + " " + v.Host
	if v.Port != 0 {
		s += ":" + strconv.Itoa(v.Port)
	}
	return s + v.Params.String()
}
