package config

import (
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// ErrUnknownKey is wrapped by the *Error for a key the config does not have.
var ErrUnknownKey = errors.New("config: unknown key")

// Error is one problem in a configuration, located where possible.
// Error() reads "FILE:LINE: KEY: MSG", e.g.
//
//	sipedge.toml:12: listen[1].transport: must be "udp" or "tcp"
//
// and for unknown keys `sipedge.toml:7: unknown key "listen[0].typo"`.
// File is empty for a config built in code and Line is 0 when unknown; the
// prefix shrinks accordingly.
type Error struct {
	File string
	Line int
	// Key is the full key path with array indices, e.g. "users[2].ha1_md5";
	// empty for TOML syntax errors.
	Key string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying error, if any: ErrUnknownKey, a
	// toml.ParseError, or the error from an UnmarshalText/UnmarshalTOML
	// method.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	switch {
	case errors.Is(e.Err, ErrUnknownKey):
		fmt.Fprintf(&b, "unknown key %q", e.Key)
	case e.Key != "":
		b.WriteString(e.Key + ": " + e.Msg)
	default:
		b.WriteString(e.Msg)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads the TOML file at path, decodes it with Parse and validates it.
// All problems found are returned together (errors.Join of *Error, in file
// order for decoding problems, then validation problems), each with
// path:line. A file that is not valid TOML stops at its first syntax error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, errs := decode(path, data)
	if c != nil {
		// Validate even when decoding failed: a value that did not decode
		// keeps its (valid) default, so this adds no noise, and the admin
		// sees every problem at once.
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Parse decodes TOML data over Default(). filename is used in error messages
// and remembered so that Validate can report lines too. Parse does not call
// Validate (Load does); call it yourself.
//
// Decoding is strict:
//   - a key the config does not have is an error (ErrUnknownKey), as is a
//     value of the wrong type; every such problem is reported (errors.Join
//     of *Error, in file order), each with filename:line;
//   - a key set in the file replaces the default, and an array replaces
//     the default array whole: one [[listen]] leaves exactly one listener,
//     with no field inherited from a default listener, and
//     scanner_user_agents = [] empties the list;
//   - durations are strings ("90s", "1h30m") or integers meaning seconds;
//   - admin.listen = "" keeps the default.
func Parse(filename string, data []byte) (*Config, error) {
	c, errs := decode(filename, data)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// decode returns the decoded config and every decoding problem. The config
// is nil only when data is not valid TOML.
func decode(filename string, data []byte) (*Config, []error) {
	text := string(data)
	// BurntSushi/toml parses; we map the result onto Config ourselves: its
	// own decoder stops at the first type error, merges arrays of tables
	// into existing elements, and cannot tell [[listen]] elements apart
	// when giving positions.
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		e := &Error{File: filename, Msg: err.Error(), Err: err}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line = pe.Position.Line
			e.Msg = pe.Message
		}
		return nil, []error{e}
	}
	c := Default()
	c.src = &source{file: filename, text: text, lines: scanKeys(text)}
	d := &decoder{src: c.src}
	d.table("", raw, reflect.ValueOf(c).Elem())
	if c.Admin.Listen == "" {
		c.Admin.Listen = defaultAdminListen
	}
	return c, d.errs
}

// decoder maps parsed TOML values onto Go values, collecting errors.
type decoder struct {
	src  *source
	errs []error
}

func (d *decoder) fail(key string, err error, format string, args ...any) {
	d.errs = append(d.errs, &Error{
		File: d.src.file,
		Line: d.src.keyLine(key),
		Key:  key,
		Msg:  fmt.Sprintf(format, args...),
		Err:  err,
	})
}

func (d *decoder) wrongType(key, want string, raw any) {
	d.fail(key, nil, "expected %s, found %s", want, tomlType(raw))
}

// table decodes the TOML table m at path into the struct v, key by key in
// file order.
func (d *decoder) table(path string, m map[string]any, v reflect.Value) {
	fields := tomlFields(v.Type())
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		la, lb := d.src.lines[joinKey(path, a)], d.src.lines[joinKey(path, b)]
		return cmp.Or(cmp.Compare(la, lb), cmp.Compare(a, b))
	})
	for _, k := range keys {
		key := joinKey(path, k)
		i, ok := fields[k]
		if !ok {
			d.fail(key, ErrUnknownKey, "unknown key")
			continue
		}
		d.value(key, m[k], v.Field(i))
	}
}

// tomlFields maps TOML keys to the indices of the exported fields of struct
// type t. Keys match exactly: "Level" is not "level".
func tomlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		fields[name] = i
	}
	return fields
}

var (
	tomlUnmarshaler = reflect.TypeFor[toml.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// value decodes raw into v, which must be settable. A pointer field is
// set only when the key is present, so nil means "not given" (a user's
// keepalive = "0s" is not the same as no keepalive key).
func (d *decoder) value(key string, raw any, v reflect.Value) {
	if v.Kind() == reflect.Pointer {
		p := reflect.New(v.Type().Elem())
		d.value(key, raw, p.Elem())
		v.Set(p)
		return
	}
	if pt := reflect.PointerTo(v.Type()); pt.Implements(tomlUnmarshaler) {
		if err := v.Addr().Interface().(toml.Unmarshaler).UnmarshalTOML(raw); err != nil {
			d.fail(key, err, "%v", err)
		}
		return
	} else if pt.Implements(textUnmarshaler) {
		s, ok := raw.(string)
		if !ok {
			d.wrongType(key, "a string", raw)
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			d.fail(key, err, "%v", err)
		}
		return
	}

	switch v.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			d.wrongType(key, "a string", raw)
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.wrongType(key, "true or false", raw)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(int64)
		if !ok {
			d.wrongType(key, "an integer", raw)
			return
		}
		if v.OverflowInt(n) {
			d.fail(key, nil, "%d is out of range", n)
			return
		}
		v.SetInt(n)
	case reflect.Float32, reflect.Float64:
		var f float64
		switch n := raw.(type) {
		case float64:
			f = n
		case int64:
			f = float64(n)
		default:
			d.wrongType(key, "a number", raw)
			return
		}
		if v.OverflowFloat(f) {
			d.fail(key, nil, "%s is out of range", strconv.FormatFloat(f, 'g', -1, 64))
			return
		}
		v.SetFloat(f)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.wrongType(key, "a table", raw)
			return
		}
		d.table(key, m, v)
	case reflect.Slice:
		var elems []any
		switch a := raw.(type) {
		case []any:
			elems = a
		case []map[string]any:
			elems = make([]any, len(a))
			for i, m := range a {
				elems[i] = m
			}
		default:
			want := "an array"
			if v.Type().Elem().Kind() == reflect.Struct && !reflect.PointerTo(v.Type().Elem()).Implements(textUnmarshaler) {
				want = fmt.Sprintf("an array of tables ([[%s]])", lastSegment(key))
			}
			d.wrongType(key, want, raw)
			return
		}
		// A new slice: the file's array replaces the default one whole.
		s := reflect.MakeSlice(v.Type(), len(elems), len(elems))
		for i, e := range elems {
			d.value(indexKey(key, i), e, s.Index(i))
		}
		v.Set(s)
	default:
		// Only reachable if a field of an unsupported type is added.
		d.fail(key, nil, "cannot decode into %s", v.Type())
	}
}

// isFinite reports whether f is neither NaN nor infinite.
func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
