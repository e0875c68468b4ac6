package stun

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// chunkReader returns at most n bytes per Read, and with the last bytes
// io.EOF when eofWithData is set.
type chunkReader struct {
	b           []byte
	n           int
	eofWithData bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.n, len(r.b))
	copy(p, r.b[:k])
	r.b = r.b[k:]
	if len(r.b) == 0 && r.eofWithData {
		return k, io.EOF
	}
	return k, nil
}

// frames reads r to the end and returns the messages and the final error.
func frames(r io.Reader, max int) ([][]byte, error) {
	fr := newFrameReader(r, max)
	var out [][]byte
	for {
		m, err := fr.next()
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(m))
	}
}

func TestFrameReader(t *testing.T) {
	a, b := request(t, true, nil), request(t, false, func(bl *Builder) { bl.AddSoftware("x") })
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name string
		in   []byte
		n    int // messages before the error
		err  error
	}{
		{"empty", nil, 0, io.EOF},
		{"one", a, 1, io.EOF},
		{"back to back", cat(a, b, a), 3, io.EOF},
		{"truncated", cat(a, b[:len(b)-1]), 1, io.ErrUnexpectedEOF},
		{"half a header", cat(a, b[:3]), 1, io.ErrUnexpectedEOF},
		{"garbage after", cat(a, []byte("GET / HTTP/1.1\r\n")), 1, ErrStreamNotSTUN},
		{"top bits", []byte{0x80}, 0, ErrStreamNotSTUN},
		{"bad length", []byte{0, 1, 0, 5}, 0, ErrStreamNotSTUN},
		{"no cookie", classicRequest(t, nil), 0, ErrStreamNotSTUN},
		{"wrong cookie byte 6", []byte{0, 1, 0, 0, 0x21, 0x12, 0xA5}, 0, ErrStreamNotSTUN},
		{"too large", []byte{0, 1, 0x07, 0xF0}, 0, ErrStreamTooLarge}, // 20 + 2032 > 2048
		{"largest", cat([]byte{0, 1, 0x07, 0xEC, 0x21, 0x12, 0xA4, 0x42}, make([]byte, 12+2028)), 1, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{1, 3, 7, 1 << 20} {
				for _, eofWithData := range []bool{false, true} {
					ms, err := frames(&chunkReader{b: tc.in, n: chunk, eofWithData: eofWithData}, MaxStreamMessage)
					if len(ms) != tc.n || !errors.Is(err, tc.err) {
						t.Errorf("chunks of %d (EOF with data %v): %d messages, %v; want %d, %v", chunk, eofWithData, len(ms), err, tc.n, tc.err)
					}
				}
			}
		})
	}
}

// TestFrameReaderTimeout: a read error such as a timeout keeps buffered
// bytes; reading on completes the message.
func TestFrameReaderTimeout(t *testing.T) {
	a := request(t, true, nil)
	// TimeoutReader: the first Read (10 bytes) works, the second fails.
	tr := iotest.TimeoutReader(&chunkReader{b: a, n: 10})
	fr := newFrameReader(tr, MaxStreamMessage)
	if _, err := fr.next(); !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("first next: %v, want the timeout", err)
	}
	fr.r = &chunkReader{b: a[10:], n: 100}
	m, err := fr.next()
	if err != nil || !bytes.Equal(m, a) {
		t.Fatalf("after the timeout: %x %v, want %x", m, err, a)
	}
}
