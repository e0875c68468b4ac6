package natprobe

import (
	"bytes"
	"strings"
	"testing"
)

func TestLifetimeText(t *testing.T) {
	for _, tc := range []struct {
		l    *Lifetime
		want string
	}{
		{nil, "not measured (use --lifetime)"},
		{&Lifetime{Status: LifetimeMeasured, LowerS: 25, UpperS: 30}, "between 25 and 30 s (a binding idle 25 s survived, one idle 30 s was gone)"},
		{&Lifetime{Status: LifetimeMeasured, LowerS: 0, UpperS: 5}, "under 5 s (a binding idle 5 s was gone)"},
		{&Lifetime{Status: LifetimeLongerThan, LowerS: 120}, "more than 120 s (every binding survived; longest idle time tested 120 s)"},
		{&Lifetime{Status: LifetimeUnsupported}, "not measurable: the server does not support RESPONSE-PORT"},
		{&Lifetime{Status: LifetimeUnknown, Note: "no answer"}, "unknown: no answer"},
	} {
		if got := lifetimeText(tc.l); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.l, got, tc.want)
		}
	}
}

func TestWriteTextUDPBlocked(t *testing.T) {
	o := Outcomes{}
	r := &Report{
		Server:       ServerInfo{Name: "stun.example.net:3478", Address: "192.0.2.1:3478"},
		LocalAddress: "10.0.0.2:40000", Mapping: Unknown, Filtering: Unknown,
		RFC3489Name: RFC3489Name(o), Advice: Advice(o),
		Error: "no STUN answer from stun.example.net:3478 within 2.8 s: UDP blocked or wrong server",
	}
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"STUN server           stun.example.net:3478 (192.0.2.1:3478)\n",
		"RFC 5780 support      unknown (no answer)\n",
		"public address        unknown\n",
		"RFC 3489 name         UDP blocked\n",
		"hairpinning           unknown\n",
		"error                 no STUN answer from stun.example.net:3478 within 2.8 s",
		"\nadvice:\n  - no STUN answer over UDP",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in\n%s", want, b.String())
		}
	}
}
