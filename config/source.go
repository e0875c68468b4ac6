package config

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// source remembers where each key of a decoded file was written.
//
// BurntSushi/toml keeps key positions private, and it records one position
// per dotted key, so the elements of [[listen]] share a single entry. We
// therefore scan the text ourselves (see scanKeys) and key positions by full
// path with array indices: "listen[1].transport".
type source struct {
	file  string
	text  string
	lines map[string]int // key path → 1-based line
}

// line returns the line of key or, if the file does not set key, of its
// closest parent that it does set ("listen[1]" for a missing
// "listen[1].transport"); 0 if none.
func (s *source) line(key string) int {
	if s == nil {
		return 0
	}
	for k := key; k != ""; k = parentKey(k) {
		if n, ok := s.lines[k]; ok {
			return n
		}
	}
	return 0
}

// has reports whether the file sets key itself.
func (s *source) has(key string) bool {
	if s == nil {
		return false
	}
	_, ok := s.lines[key]
	return ok
}

// keyLine is line for a key known to be in the file (the decoder found it).
// Should the scanner have missed it, it searches the text for the key's
// last segment followed by "=" before falling back to the parents.
func (s *source) keyLine(key string) int {
	if s == nil {
		return 0
	}
	if n, ok := s.lines[key]; ok {
		return n
	}
	if n := s.search(lastSegment(key)); n > 0 {
		return n
	}
	return s.line(key)
}

// search returns the first line outside comments where seg is written as a
// key (followed by "="), or 0.
func (s *source) search(seg string) int {
	if seg == "" {
		return 0
	}
	for i, l := range strings.Split(s.text, "\n") {
		if c := strings.IndexByte(l, '#'); c >= 0 {
			l = l[:c]
		}
		for off := 0; ; {
			j := strings.Index(l[off:], seg)
			if j < 0 {
				break
			}
			j += off
			before := j == 0 || strings.ContainsRune(" \t{,.", rune(l[j-1]))
			after := strings.TrimLeft(l[j+len(seg):], " \t")
			if before && (strings.HasPrefix(after, "=") || strings.HasPrefix(after, ".")) {
				return i + 1
			}
			off = j + len(seg)
		}
	}
	return 0
}

// Key paths. Segments are written as BurntSushi/toml writes keys (quoted
// when not bare), array elements as "[i]".

func joinKey(path, seg string) string {
	seg = toml.Key{seg}.String()
	if path == "" {
		return seg
	}
	return path + "." + seg
}

func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// splitKey splits a key path into its segments and "[i]" parts.
func splitKey(key string) []string {
	var parts []string
	for i := 0; i < len(key); {
		switch key[i] {
		case '.':
			i++
		case '[':
			j := strings.IndexByte(key[i:], ']')
			if j < 0 {
				return append(parts, key[i:])
			}
			parts = append(parts, key[i:i+j+1])
			i += j + 1
		case '"':
			j := i + 1
			for j < len(key) && key[j] != '"' {
				if key[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(key))
			parts = append(parts, key[i:j])
			i = j
		default:
			j := i
			for j < len(key) && key[j] != '.' && key[j] != '[' {
				j++
			}
			parts = append(parts, key[i:j])
			i = j
		}
	}
	return parts
}

// parentKey returns key without its last part: "listen[1].transport" →
// "listen[1]" → "listen" → "".
func parentKey(key string) string {
	parts := splitKey(key)
	if len(parts) == 0 {
		return ""
	}
	var b strings.Builder
	for i, p := range parts[:len(parts)-1] {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// lastSegment returns the last name in key, unquoted when it is simply
// quoted: "users[0].nat" → "nat".
func lastSegment(key string) string {
	parts := splitKey(key)
	for i := len(parts) - 1; i >= 0; i-- {
		if p := parts[i]; !strings.HasPrefix(p, "[") {
			if u, err := strconv.Unquote(p); err == nil {
				return u
			}
			return p
		}
	}
	return ""
}

// scanKeys returns the line of every key, table and array element of a TOML
// document, by key path. It is a tolerant scanner, not a parser: it is meant
// for documents BurntSushi/toml has accepted, and on anything else it
// recovers at the next line and never fails.
func scanKeys(text string) map[string]int {
	sc := &scanner{
		s:      text,
		line:   1,
		lines:  make(map[string]int),
		arrays: make(map[string]int),
	}
	sc.document()
	return sc.lines
}

// maxScanDepth bounds nesting of arrays and inline tables.
const maxScanDepth = 64

type scanner struct {
	s      string
	i      int
	line   int
	depth  int
	lines  map[string]int
	arrays map[string]int // array-of-tables path → number of elements so far
}

func (sc *scanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *scanner) peek() byte {
	if sc.i < len(sc.s) {
		return sc.s[sc.i]
	}
	return 0
}

// next consumes one byte, counting lines.
func (sc *scanner) next() {
	if sc.i < len(sc.s) {
		if sc.s[sc.i] == '\n' {
			sc.line++
		}
		sc.i++
	}
}

func (sc *scanner) record(path string, line int) {
	if _, ok := sc.lines[path]; !ok && path != "" {
		sc.lines[path] = line
	}
}

func (sc *scanner) skipSpace() {
	for sc.peek() == ' ' || sc.peek() == '\t' {
		sc.i++
	}
}

// skipBlank skips spaces, newlines and comments.
func (sc *scanner) skipBlank() {
	for !sc.eof() {
		switch sc.peek() {
		case ' ', '\t', '\r', '\n':
			sc.next()
		case '#':
			for !sc.eof() && sc.peek() != '\n' {
				sc.i++
			}
		default:
			return
		}
	}
}

// skipLine skips the rest of the line, newline included.
func (sc *scanner) skipLine() {
	for !sc.eof() && sc.peek() != '\n' {
		sc.i++
	}
	sc.next()
}

func (sc *scanner) document() {
	table := ""
	for !sc.eof() {
		start := sc.i
		sc.skipBlank()
		if sc.eof() {
			return
		}
		if sc.peek() == '[' {
			table = sc.header()
		} else {
			sc.keyValue(table)
		}
		sc.skipLine()
		if sc.i == start {
			sc.next()
		}
	}
}

// header reads "[a.b]" or "[[a.b]]" and returns the table's path.
func (sc *scanner) header() string {
	line := sc.line
	sc.i++
	array := sc.peek() == '['
	if array {
		sc.i++
	}
	segs, ok := sc.key()
	if !ok {
		return ""
	}
	path := sc.resolve("", segs[:len(segs)-1], line)
	path = joinKey(path, segs[len(segs)-1])
	if !array {
		path = sc.resolveArray(path)
		sc.record(path, line)
		return path
	}
	sc.record(path, line)
	n := sc.arrays[path]
	sc.arrays[path] = n + 1
	path = indexKey(path, n)
	sc.record(path, line)
	return path
}

// resolve appends segs to base, recording each intermediate table and
// stepping into the current element of arrays of tables.
func (sc *scanner) resolve(base string, segs []string, line int) string {
	path := base
	for _, seg := range segs {
		path = sc.resolveArray(joinKey(path, seg))
		sc.record(path, line)
	}
	return path
}

func (sc *scanner) resolveArray(path string) string {
	if n, ok := sc.arrays[path]; ok && n > 0 {
		return indexKey(path, n-1)
	}
	return path
}

func (sc *scanner) keyValue(table string) {
	line := sc.line
	segs, ok := sc.key()
	if !ok {
		return
	}
	sc.skipSpace()
	if sc.peek() != '=' {
		return
	}
	sc.i++
	sc.skipSpace()
	path := sc.resolve(table, segs[:len(segs)-1], line)
	path = joinKey(path, segs[len(segs)-1])
	sc.record(path, line)
	sc.value(path)
}

// key reads a dotted key: bare, "basic" or 'literal' segments.
func (sc *scanner) key() ([]string, bool) {
	var segs []string
	for {
		sc.skipSpace()
		seg, ok := sc.keySegment()
		if !ok {
			return nil, false
		}
		segs = append(segs, seg)
		sc.skipSpace()
		if sc.peek() != '.' {
			return segs, true
		}
		sc.i++
	}
}

func (sc *scanner) keySegment() (string, bool) {
	switch sc.peek() {
	case '"':
		start := sc.i
		if !sc.basicString() {
			return "", false
		}
		return unescapeBasic(sc.s[start+1 : sc.i-1]), true
	case '\'':
		start := sc.i
		if !sc.literalString() {
			return "", false
		}
		return sc.s[start+1 : sc.i-1], true
	}
	start := sc.i
	for !sc.eof() && isBare(sc.peek()) {
		sc.i++
	}
	return sc.s[start:sc.i], sc.i > start
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// basicString reads a one-line "..." string; it reports whether it was
// closed.
func (sc *scanner) basicString() bool {
	sc.i++
	for !sc.eof() {
		switch sc.peek() {
		case '\\':
			sc.i++
			if sc.peek() == '\n' {
				return false
			}
			sc.i++
		case '"':
			sc.i++
			return true
		case '\n':
			return false
		default:
			sc.i++
		}
	}
	return false
}

// literalString reads a one-line '...' string.
func (sc *scanner) literalString() bool {
	sc.i++
	for !sc.eof() {
		switch sc.peek() {
		case '\'':
			sc.i++
			return true
		case '\n':
			return false
		default:
			sc.i++
		}
	}
	return false
}

// multiString reads a multi-line string (basic or literal, by quote q),
// delimiters included.
func (sc *scanner) multiString(q byte) {
	sc.i += 3
	for !sc.eof() {
		c := sc.peek()
		switch {
		case c == '\\' && q == '"':
			sc.next()
			sc.next()
		case c == q && strings.HasPrefix(sc.s[sc.i:], strings.Repeat(string(q), 3)):
			sc.i += 3
			// Up to two more quotes belong to the content.
			for n := 0; n < 2 && sc.peek() == q; n++ {
				sc.i++
			}
			return
		default:
			sc.next()
		}
	}
}

func (sc *scanner) value(path string) {
	if sc.depth >= maxScanDepth {
		return
	}
	sc.depth++
	defer func() { sc.depth-- }()
	rest := sc.s[sc.i:]
	switch {
	case strings.HasPrefix(rest, `"""`):
		sc.multiString('"')
	case strings.HasPrefix(rest, `'''`):
		sc.multiString('\'')
	case sc.peek() == '"':
		sc.basicString()
	case sc.peek() == '\'':
		sc.literalString()
	case sc.peek() == '[':
		sc.array(path)
	case sc.peek() == '{':
		sc.inlineTable(path)
	default:
		sc.scalar()
	}
}

func (sc *scanner) array(path string) {
	sc.i++
	for idx := 0; ; idx++ {
		sc.skipBlank()
		if sc.eof() {
			return
		}
		if sc.peek() == ']' {
			sc.i++
			return
		}
		start := sc.i
		elem := indexKey(path, idx)
		sc.record(elem, sc.line)
		sc.value(elem)
		sc.skipBlank()
		switch {
		case sc.peek() == ',':
			sc.i++
		case sc.peek() == ']':
		default:
			if sc.i == start {
				return // not a value: let the caller recover
			}
		}
	}
}

func (sc *scanner) inlineTable(path string) {
	sc.i++
	for {
		sc.skipBlank()
		if sc.eof() {
			return
		}
		if sc.peek() == '}' {
			sc.i++
			return
		}
		line := sc.line
		segs, ok := sc.key()
		if !ok {
			return
		}
		sc.skipSpace()
		if sc.peek() != '=' {
			return
		}
		sc.i++
		sc.skipSpace()
		p := sc.resolve(path, segs[:len(segs)-1], line)
		p = joinKey(p, segs[len(segs)-1])
		sc.record(p, line)
		sc.value(p)
		sc.skipBlank()
		switch sc.peek() {
		case ',':
			sc.i++
		case '}':
		default:
			return
		}
	}
}

// scalar reads a number, boolean or date-time.
func (sc *scanner) scalar() {
	start := sc.i
	for !sc.eof() && !strings.ContainsRune(" \t\r\n,]}#", rune(sc.peek())) {
		sc.i++
	}
	// A date and a time may be separated by a space: 1979-05-27 07:32:00.
	if sc.i-start == 10 && sc.s[start+4] == '-' && sc.i+1 < len(sc.s) &&
		sc.s[sc.i] == ' ' && sc.s[sc.i+1] >= '0' && sc.s[sc.i+1] <= '9' {
		sc.i++
		sc.scalar()
	}
}

// unescapeBasic undoes the escapes of a TOML basic string; invalid escapes
// are kept as written.
func unescapeBasic(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'b':
			b.WriteByte('\b')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1b)
		case '"', '\\':
			b.WriteByte(e)
		case 'x', 'u', 'U':
			n := 2
			switch e {
			case 'u':
				n = 4
			case 'U':
				n = 8
			}
			if i+1+n <= len(s) {
				if r, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32); err == nil && utf8.ValidRune(rune(r)) {
					b.WriteRune(rune(r))
					i += n
					continue
				}
			}
			b.WriteByte('\\')
			b.WriteByte(e)
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String()
}
