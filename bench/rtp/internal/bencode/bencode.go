// Package bencode encodes and decodes bencode, the serialisation of
// rtpengine's "ng" control protocol: integers i42e, byte strings 4:spam,
// lists l...e and dictionaries d...e with keys sorted as raw byte strings.
//
// Decoded values are int64, string, []any and map[string]any.
package bencode

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Encode appends the encoding of v to dst. Supported: string, []byte, int,
// int64, uint16, bool (as 0/1), []string, []any, map[string]any and
// map[string]string.
func Encode(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case []byte:
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...), nil
	case int:
		return appendInt(dst, int64(x)), nil
	case int64:
		return appendInt(dst, x), nil
	case uint16:
		return appendInt(dst, int64(x)), nil
	case bool:
		if x {
			return appendInt(dst, 1), nil
		}
		return appendInt(dst, 0), nil
	case []string:
		dst = append(dst, 'l')
		for _, e := range x {
			dst, _ = Encode(dst, e)
		}
		return append(dst, 'e'), nil
	case []any:
		dst = append(dst, 'l')
		for _, e := range x {
			var err error
			if dst, err = Encode(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, 'e'), nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = e
		}
		return Encode(dst, m)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys) // Go compares strings bytewise, as bencode wants
		dst = append(dst, 'd')
		for _, k := range keys {
			dst, _ = Encode(dst, k)
			var err error
			if dst, err = Encode(dst, x[k]); err != nil {
				return nil, fmt.Errorf("bencode: key %q: %w", k, err)
			}
		}
		return append(dst, 'e'), nil
	}
	return nil, fmt.Errorf("bencode: cannot encode %T", v)
}

func appendInt(dst []byte, v int64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, 'e')
}

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

// Decode parses exactly one value occupying all of b.
func Decode(b []byte) (any, error) {
	v, rest, err := decode(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("bencode: %d trailing bytes", len(rest))
	}
	return v, nil
}

// DecodePrefix parses one value at the start of b and returns the rest.
func DecodePrefix(b []byte) (any, []byte, error) { return decode(b, 0) }

var errShort = errors.New("bencode: unexpected end of input")

func decode(b []byte, depth int) (any, []byte, error) {
	if depth > maxDepth {
		return nil, nil, errors.New("bencode: nested too deeply")
	}
	if len(b) == 0 {
		return nil, nil, errShort
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, nil, errShort
		}
		s := string(b[1:end])
		if s == "" || s == "-0" || (len(s) > 1 && s[0] == '0') || (len(s) > 2 && s[0] == '-' && s[1] == '0') {
			return nil, nil, fmt.Errorf("bencode: bad integer %q", s)
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("bencode: bad integer %q", s)
		}
		return n, b[end+1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, nil, errShort
		}
		l, err := strconv.Atoi(string(b[:colon]))
		if err != nil || l < 0 || (colon > 1 && b[0] == '0') {
			return nil, nil, fmt.Errorf("bencode: bad string length %q", b[:colon])
		}
		if len(b)-colon-1 < l {
			return nil, nil, errShort
		}
		return string(b[colon+1 : colon+1+l]), b[colon+1+l:], nil
	case c == 'l':
		list := []any{}
		b = b[1:]
		for {
			if len(b) == 0 {
				return nil, nil, errShort
			}
			if b[0] == 'e' {
				return list, b[1:], nil
			}
			v, rest, err := decode(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			list = append(list, v)
			b = rest
		}
	case c == 'd':
		m := map[string]any{}
		b = b[1:]
		for {
			if len(b) == 0 {
				return nil, nil, errShort
			}
			if b[0] == 'e' {
				return m, b[1:], nil
			}
			k, rest, err := decode(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, nil, fmt.Errorf("bencode: dictionary key is %T, not a string", k)
			}
			v, rest, err := decode(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			m[ks] = v
			b = rest
		}
	default:
		return nil, nil, fmt.Errorf("bencode: unexpected byte %q", c)
	}
}
