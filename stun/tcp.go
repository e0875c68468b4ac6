package stun

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
)

// Over TCP, STUN messages follow each other with no framing of their own:
// each is delimited by the length field of its header (RFC 8489 §6.2.2).

// MaxStreamMessage is the largest STUN message the TCP server and
// StreamConn accept. A Binding request with the longest USERNAME,
// SOFTWARE, both integrity attributes and FINGERPRINT is under 1500
// bytes.
const MaxStreamMessage = 2048

// Errors of a STUN byte stream; the stream cannot be resynchronised after
// either, so the connection must be closed.
var (
	ErrStreamNotSTUN  = errors.New("stun: TCP stream does not carry STUN messages")
	ErrStreamTooLarge = errors.New("stun: STUN message in TCP stream exceeds the size limit")
)

// frameLen looks at the start of a TCP byte stream, b, and returns the
// length of the first message when b holds all of it, 0 when more bytes
// are needed, or an error when b cannot start an RFC 5389/8489 message no
// longer than max bytes. It decides as early as it can: the first byte
// (top two bits zero), the length field (a multiple of 4, within max) and
// the magic cookie, each as soon as it has arrived, so garbage is refused
// before a whole header is read. Classic RFC 3489 messages (no cookie)
// are refused: they were never defined over TCP.
func frameLen(b []byte, max int) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if b[0]&0xC0 != 0 {
		return 0, ErrStreamNotSTUN
	}
	if len(b) < 4 {
		return 0, nil
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 {
		return 0, ErrStreamNotSTUN
	}
	if HeaderSize+n > max {
		return 0, ErrStreamTooLarge
	}
	var cookie [4]byte
	binary.BigEndian.PutUint32(cookie[:], MagicCookie)
	for i := 4; i < 8 && i < len(b); i++ {
		if b[i] != cookie[i-4] {
			return 0, ErrStreamNotSTUN
		}
	}
	if len(b) < HeaderSize+n {
		return 0, nil
	}
	return HeaderSize + n, nil
}

// frameReader splits a byte stream into STUN messages. Its buffer holds
// at most one message and never grows: a partial message is shorter than
// the buffer, so there is always room to read the rest.
type frameReader struct {
	r        io.Reader
	buf      []byte
	off, end int   // buffered bytes are buf[off:end]
	pending  error // a read error that came with data, returned once that data is used
	bad      error // ErrStreamNotSTUN or ErrStreamTooLarge: sticky
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{r: r, buf: make([]byte, max)}
}

// next returns the next whole message, valid until the following call.
// Errors: ErrStreamNotSTUN or ErrStreamTooLarge (for good), or the
// reader's error — io.EOF at a clean end of the stream, or
// io.ErrUnexpectedEOF when it ends inside a message. A read error such as
// a timeout does not lose buffered bytes: a later call goes on where this
// one stopped.
func (f *frameReader) next() ([]byte, error) {
	if f.bad != nil {
		return nil, f.bad
	}
	for {
		n, err := frameLen(f.buf[f.off:f.end], len(f.buf))
		if err != nil {
			f.bad = err
			return nil, err
		}
		if n > 0 {
			m := f.buf[f.off : f.off+n : f.off+n]
			f.off += n
			return m, nil
		}
		if err := f.pending; err != nil {
			f.pending = nil
			return nil, f.eof(err)
		}
		if f.off > 0 {
			f.end = copy(f.buf, f.buf[f.off:f.end])
			f.off = 0
		}
		m, err := f.r.Read(f.buf[f.end:])
		f.end += m
		switch {
		case err != nil && m > 0:
			f.pending = err
		case err != nil:
			return nil, f.eof(err)
		case m == 0:
			return nil, io.ErrNoProgress
		}
	}
}

// eof turns io.EOF inside a message into io.ErrUnexpectedEOF.
func (f *frameReader) eof(err error) error {
	if err == io.EOF && f.end > f.off {
		return io.ErrUnexpectedEOF
	}
	return err
}

// StreamConn adapts a stream connection to a STUN server (TCP, RFC 8489
// §6.2.2) to the net.PacketConn that Binding takes: writes go to the
// stream as they are, and each ReadFrom returns one whole message,
// reporting the connection's remote address as the source. A stream that
// does not carry STUN fails with ErrStreamNotSTUN.
//
// Over TCP a request is sent once and not retransmitted: run Binding with
// WithRetransmission(0, 1, rm) so that it waits rm initial RTOs (by
// default 16 × 500 ms) for the answer.
func StreamConn(c net.Conn) net.PacketConn {
	return &streamConn{Conn: c, fr: newFrameReader(c, MaxStreamMessage)}
}

type streamConn struct {
	net.Conn
	fr *frameReader
}

// ReadFrom implements net.PacketConn: it copies the next message into b,
// truncating it if b is too short.
func (s *streamConn) ReadFrom(b []byte) (int, net.Addr, error) {
	m, err := s.fr.next()
	if err != nil {
		return 0, nil, err
	}
	return copy(b, m), s.RemoteAddr(), nil
}

// WriteTo implements net.PacketConn; addr is ignored: a stream has one
// peer.
func (s *streamConn) WriteTo(b []byte, _ net.Addr) (int, error) { return s.Write(b) }
