package sipx

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// streamReader wraps s the way readTCP does.
func streamReader(s string) *bufio.Reader {
	return bufio.NewReaderSize(strings.NewReader(s), 8192)
}

const optsHead = "OPTIONS sip:bob@example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bK-a\r\n" +
	"From: <sip:alice@example.com>;tag=1\r\n" +
	"To: <sip:bob@example.com>\r\n" +
	"Call-ID: c1\r\n" +
	"CSeq: 1 OPTIONS\r\n"

func streamMsg(clHeader, body string) string {
	return optsHead + clHeader + "\r\n\r\n" + body
}

func TestReadStreamMessageBackToBack(t *testing.T) {
	m1 := streamMsg("Content-Length: 0", "")
	m2 := streamMsg("Content-Length: 11", "hello world")
	r := streamReader(m1 + m2)
	got1, err := readStreamMessage(r)
	if err != nil || string(got1) != m1 {
		t.Fatalf("first: %q, %v", got1, err)
	}
	got2, err := readStreamMessage(r)
	if err != nil || string(got2) != m2 {
		t.Fatalf("second: %q, %v", got2, err)
	}
	if _, err := readStreamMessage(r); !errors.Is(err, io.EOF) {
		t.Fatalf("after two messages: %v, want EOF", err)
	}
	for _, raw := range [][]byte{got1, got2} {
		if _, err := ParseMessage(raw); err != nil {
			t.Errorf("framed message does not parse: %v", err)
		}
	}
}

func TestReadStreamMessageBodyExact(t *testing.T) {
	body := "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\n"
	next := "INVITE sip:x SIP/2.0\r\n"
	r := streamReader(streamMsg("Content-Length: "+strconv.Itoa(len(body)), body) + next)
	raw, err := readStreamMessage(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(raw, []byte("\r\n\r\n"+body)) {
		t.Fatalf("body not at the end of %q", raw)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != next {
		t.Fatalf("reader left at %q, want %q", rest, next)
	}
	m, err := ParseMessage(raw)
	if err != nil || string(m.Body()) != body {
		t.Fatalf("parsed body %q, %v", m.Body(), err)
	}
}

func TestReadStreamMessageCompactAndSpacing(t *testing.T) {
	for _, h := range []string{"l: 5", "l:5", "L: 5", "content-length:5", "CONTENT-LENGTH :  5  ", "Content-Length: 5"} {
		in := streamMsg(h, "12345") + "XYZ"
		raw, err := readStreamMessage(streamReader(in))
		if err != nil {
			t.Errorf("%q: %v", h, err)
			continue
		}
		if !bytes.HasSuffix(raw, []byte("\r\n\r\n12345")) {
			t.Errorf("%q: framed %q", h, raw)
		}
	}
}

func TestReadStreamMessageErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		tooLong bool // want ErrTooLarge
	}{
		{"missing Content-Length", optsHead + "\r\n", false},
		{"negative", streamMsg("Content-Length: -1", ""), false},
		{"not a number", streamMsg("Content-Length: abc", ""), false},
		{"empty value", streamMsg("Content-Length:", ""), false},
		{"huge", streamMsg("Content-Length: 99999999999999999999999", ""), false},
		{"above max", streamMsg("Content-Length: 65536", ""), false},
		{"body over max", streamMsg("Content-Length: 65535", strings.Repeat("x", 65535)), true},
		{"headers over max", optsHead + strings.Repeat("X-Pad: "+strings.Repeat("p", 100)+"\r\n", 700) + "Content-Length: 0\r\n\r\n", true},
		{"header line over buffer", optsHead + "X-Long: " + strings.Repeat("a", 9000) + "\r\nContent-Length: 0\r\n\r\n", true},
	}
	for _, tc := range tests {
		raw, err := readStreamMessage(streamReader(tc.in))
		if err == nil {
			t.Errorf("%s: no error, framed %d bytes", tc.name, len(raw))
			continue
		}
		if tc.tooLong != errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: err = %v, ErrTooLarge wanted: %v", tc.name, err, tc.tooLong)
		}
	}
}

func TestReadStreamMessageTruncated(t *testing.T) {
	if _, err := readStreamMessage(streamReader(streamMsg("Content-Length: 10", "12345"))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short body: %v, want ErrUnexpectedEOF", err)
	}
	if _, err := readStreamMessage(streamReader(optsHead)); !errors.Is(err, io.EOF) {
		t.Errorf("no blank line: %v, want EOF", err)
	}
}

func TestReadStreamMessageMaxBoundary(t *testing.T) {
	head := streamMsg("Content-Length: 00000", "")
	n := MaxMessageSize - len(head)
	in := strings.Replace(head, "00000", strconv.Itoa(n), 1) + strings.Repeat("b", n)
	if len(in) != MaxMessageSize {
		t.Fatalf("setup: %d", len(in))
	}
	raw, err := readStreamMessage(streamReader(in))
	if err != nil || len(raw) != MaxMessageSize {
		t.Fatalf("exactly MaxMessageSize: %d, %v", len(raw), err)
	}
	in = strings.Replace(head, "00000", strconv.Itoa(n+1), 1) + strings.Repeat("b", n+1)
	if _, err := readStreamMessage(streamReader(in)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("MaxMessageSize+1: %v, want ErrTooLarge", err)
	}
}

// A line starting with SP/HTAB continues the previous header (RFC 3261
// §7.3.1), so " l: 20" folded into Subject is not a Content-Length. The
// framer takes it as one and swallows the first 20 bytes of the next
// message; the parser (which folds) drops them silently, and the next
// message is lost with the connection.
func TestReadStreamMessageFoldedLineIsNotContentLength(t *testing.T) {
	m1 := optsHead + "Content-Length: 0\r\nSubject: hello\r\n l: 20\r\n\r\n"
	m2 := streamMsg("Content-Length: 0", "")
	r := streamReader(m1 + m2)
	got, err := readStreamMessage(r)
	if err != nil || string(got) != m1 {
		t.Fatalf("first message framed as %q, %v; want %q", got, err, m1)
	}
	if got, err := readStreamMessage(r); err != nil || string(got) != m2 {
		t.Fatalf("second message framed as %q, %v", got, err)
	}
}

// headerEnd returns the length of the header section as readStreamMessage
// sees it (through the first line that is empty after trimming CR/LF).
func headerEnd(raw []byte) int {
	off := 0
	for off < len(raw) {
		i := bytes.IndexByte(raw[off:], '\n')
		if i < 0 {
			return -1
		}
		line := raw[off : off+i+1]
		off += i + 1
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return off
		}
	}
	return -1
}

func FuzzReadStreamMessage(f *testing.F) {
	f.Add([]byte(streamMsg("Content-Length: 0", "") + streamMsg("l: 3", "abc")))
	f.Add([]byte(streamMsg("Content-Length: 5", "12")))
	f.Add([]byte(optsHead + "\r\n"))
	f.Add([]byte("\r\n\r\n"))
	f.Add([]byte("a:\nl:0\n\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nSubject: a\r\n b\r\nl: 2\r\n\r\nab"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 8192)
		off := 0
		for i := 0; i < 64; i++ {
			raw, err := readStreamMessage(r)
			if err != nil {
				return
			}
			if len(raw) == 0 || len(raw) > MaxMessageSize {
				t.Fatalf("framed %d bytes", len(raw))
			}
			// Framing only cuts: the message is the next slice of input.
			if off+len(raw) > len(data) || !bytes.Equal(raw, data[off:off+len(raw)]) {
				t.Fatalf("framed bytes are not the input at offset %d", off)
			}
			off += len(raw)
			he := headerEnd(raw)
			if he < 0 {
				t.Fatalf("no header terminator in %q", raw)
			}
			// If the parser accepts the framed bytes, it must see the
			// same body: otherwise bytes are silently dropped.
			if m, err := ParseMessage(bytes.Clone(raw)); err == nil {
				if len(m.Body()) != len(raw)-he {
					t.Fatalf("framer body %d bytes, parser body %d bytes in %q", len(raw)-he, len(m.Body()), raw)
				}
			}
		}
	})
}
