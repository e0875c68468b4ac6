package calltrace

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

func FuzzCallID(f *testing.F) {
	for _, s := range natCall("fuzz@host") {
		f.Add([]byte(s.text))
	}
	f.Add([]byte(register))
	f.Add([]byte("X\ni\n"))
	f.Add([]byte("X\r\nCall-ID\t:\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id := callID(b)
		if len(id) > 0 && (!bytes.Contains(b, id) || bytes.ContainsAny(id, "\r\n") || bytes.TrimSpace(id) == nil) {
			t.Errorf("callID = %q", id)
		}
	})
}

// FuzzParse reads any message, and checks that redaction is stable and
// leaves no digest response behind.
func FuzzParse(f *testing.F) {
	for _, s := range natCall("fuzz@host") {
		f.Add(s.text)
	}
	f.Add("INVITE sip:x SIP/2.0\r\nAuthorization: Digest response=abc,\r\n response=\"a\\\"b\"\r\n\r\n")
	f.Add("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP [::1\r\nm: <sip:@>\r\nRecord-Route: \",<\r\n\r\nv=0\nc=IN IP4\nm=")
	f.Fuzz(func(t *testing.T, s string) {
		_ = parse(s)
		r := redact(s)
		if again := redact(r); again != r {
			t.Errorf("redact is not stable:\n%q\n%q", r, again)
		}
		for h := range fields(r) {
			if strings.EqualFold(h.name, "authorization") || strings.EqualFold(h.name, "proxy-authorization") {
				for start, end := range responseValues(h.value) {
					if h.value[start:end] != redacted {
						t.Errorf("response %q kept", h.value[start:end])
					}
				}
			}
		}
	})
}

// FuzzAnalyze builds a trace from messages separated by NUL bytes, the
// first byte of each choosing its direction and peer, and checks the
// ladder's shape.
func FuzzAnalyze(f *testing.F) {
	peers := []string{callerNAT, calleeNAT, callee2NAT, trunkAddr, "[2001:db8::1]:5060", "bogus"}
	join := func(steps []step) []byte {
		var b []byte
		for _, s := range steps {
			k := byte(0)
			if s.in {
				k = 1
			}
			for i, p := range peers {
				if p == s.remote {
					k |= byte(i) << 1
				}
			}
			b = append(append(append(b, k), s.text...), 0)
		}
		return b
	}
	f.Add(join(natCall("c")))
	f.Add(join(forkedCall("c")))
	f.Add(join(trunkCall("c", false)))
	f.Add([]byte("\x01INVITE sip:x SIP/2.0\r\nVia: a b\r\n\x00\x02SIP/2.0 200\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var tr Trace
		for i, part := range bytes.Split(data, []byte{0}) {
			if len(part) == 0 {
				continue
			}
			k := part[0]
			tr.Messages = append(tr.Messages, Message{Seq: i, In: k&1 == 1, Transport: "udp", Local: edgeAddr,
				Remote: peers[int(k>>1)%len(peers)], Text: string(part[1:])})
		}
		l := Analyze(tr)
		if len(l.Arrows) != len(tr.Messages) {
			t.Fatalf("%d arrows for %d messages", len(l.Arrows), len(tr.Messages))
		}
		edge := slices.IndexFunc(l.Columns, func(c Column) bool { return c.Kind == KindSipedge })
		for _, a := range l.Arrows {
			if a.From < 0 || a.To < 0 || a.From >= len(l.Columns) || a.To >= len(l.Columns) || (a.From != edge && a.To != edge) {
				t.Fatalf("arrow %+v", a)
			}
			if a.Through != -1 && l.Columns[a.Through].Kind != KindNAT {
				t.Fatalf("arrow %+v crosses a %s", a, l.Columns[a.Through].Kind)
			}
		}
		if err := RenderText(io.Discard, l, tr); err != nil {
			t.Fatal(err)
		}
	})
}
