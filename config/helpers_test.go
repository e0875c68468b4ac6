package config

import (
	"errors"
	"strings"
	"testing"
)

// lines joins its arguments as the lines of a file: argument i is line i+1,
// which keeps expected line numbers readable in tests.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// errStrings flattens errors.Join trees into the messages of their leaves.
func errStrings(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		out = append(out, e.Error())
	}
	walk(err)
	return out
}

// leafErrors flattens errors.Join trees into their leaves.
func leafErrors(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		out = append(out, e)
	}
	walk(err)
	return out
}

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// withoutSource returns a copy of c without its source, for comparing a
// parsed config with one built in code.
func withoutSource(c *Config) *Config {
	n := c.Clone()
	n.src = nil
	return n
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func asConfigError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%v (%T) is not a *config.Error", err, err)
	}
	return e
}
