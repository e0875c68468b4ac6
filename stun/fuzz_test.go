package stun

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	for _, v := range []string{rfc5769Request, rfc5769IPv4Response, rfc5769IPv6Response} {
		f.Add(unhex(f, v))
	}
	f.Add(request(f, false, nil))
	f.Add(request(f, true, func(b *Builder) { b.AddChangeRequest(true, true) }))
	f.Add(request(f, true, func(b *Builder) { b.AddRaw(0x0777, []byte{1, 2, 3}) }))
	f.Add(classicRequest(f, func(b *Builder) { b.AddChangeRequest(false, true) }))
	f.Add(request(f, false, func(b *Builder) { b.AddRaw(AttrResponsePort, []byte{0x13, 0x88, 0, 0}) }))
	f.Add(msg(0x0001, 4, MagicCookie, []byte{0x00, 0x06, 0x00, 0x08}))
}

// FuzzParse: Parse never panics, nor do the getters on what it returns;
// whatever parses re-encodes into a message that parses to the same
// header and attributes.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = IsMessage(b)
		_ = CheckFingerprint(b)
		_ = CheckMessageIntegrity(b, []byte(rfc5769Password))
		m, err := Parse(b)
		if err != nil {
			if m != nil {
				t.Fatal("message and error")
			}
			return
		}
		if IsMessage(b) == m.Classic() {
			t.Fatalf("IsMessage %v but Classic %v", IsMessage(b), m.Classic())
		}
		for _, a := range m.Attrs {
			_, _ = m.Address(a.Type)
			_, _ = m.XORAddress(a.Type)
		}
		_, _, _ = m.ChangeRequest()
		_, _, _ = m.ErrorCode()
		_ = m.UnknownAttributes()

		enc, err := m.Append(nil)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		// Only the padding bytes may differ from the input.
		if len(enc) != len(b) {
			t.Fatalf("re-encoded to %d bytes from %d", len(enc), len(b))
		}
		m2, err := Parse(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not parse: %v\n in %x\nout %x", err, b, enc)
		}
		if m2.Method != m.Method || m2.Class != m.Class || m2.Cookie != m.Cookie || m2.TID != m.TID {
			t.Fatalf("header changed: %+v -> %+v", m, m2)
		}
		if len(m2.Attrs) != len(m.Attrs) {
			t.Fatalf("%d attributes -> %d", len(m.Attrs), len(m2.Attrs))
		}
		for i := range m.Attrs {
			if m.Attrs[i].Type != m2.Attrs[i].Type || !bytes.Equal(m.Attrs[i].Value, m2.Attrs[i].Value) {
				t.Fatalf("attribute %d changed: %+v -> %+v", i, m.Attrs[i], m2.Attrs[i])
			}
		}
	})
}

// FuzzRespond: Respond never panics; a response, if any, parses, answers
// the request's transaction, stays within MaxResponseGrowth and reports
// the source address.
func FuzzRespond(f *testing.F) {
	fuzzSeeds(f)
	srcs := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:5060"),
		netip.MustParseAddrPort("[2001:db8::1]:5060"),
		netip.MustParseAddrPort("[::ffff:192.0.2.2]:1"),
	}
	opts := []*ResponderOptions{
		nil,
		{Software: "sipedge"},
		{
			Software:       "a rather long SOFTWARE value that will not always fit in the response",
			ResponseOrigin: netip.MustParseAddrPort("[2001:db8::10]:3478"),
			OtherAddress:   netip.MustParseAddrPort("[2001:db8::11]:3479"),
		},
		{
			Software:       "sipedge",
			ResponseOrigin: netip.MustParseAddrPort("[2001:db8::10]:3478"),
			OtherAddress:   netip.MustParseAddrPort("[2001:db8::11]:3479"),
			ResponsePort:   true,
		},
		{OtherAddress: netip.MustParseAddrPort("192.0.2.11:3479"), NoChange: true, ResponsePort: true},
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, src := range srcs {
			for _, o := range opts {
				out, d, ok := RespondTo(nil, b, src, o)
				if !ok {
					if out != nil {
						t.Fatal("dst changed without a response")
					}
					continue
				}
				if d.To.Addr() != src.Addr().Unmap() || d.To.Port() == 0 {
					t.Fatalf("delivery to %v for a request from %v", d.To, src)
				}
				if o == nil || !o.ResponsePort {
					if d.To.Port() != src.Port() {
						t.Fatalf("RESPONSE-PORT honoured without ResponsePort: %v", d.To)
					}
				}
				if (d.ChangeIP || d.ChangePort) && (o == nil || !o.OtherAddress.IsValid() || o.NoChange) {
					t.Fatalf("change %+v honoured by options %+v", d, o)
				}
				if len(out) > len(b)+MaxResponseGrowth {
					t.Fatalf("%d-byte response to %d bytes", len(out), len(b))
				}
				q, err := Parse(b)
				if err != nil || q.Method != MethodBinding || q.Class != ClassRequest {
					t.Fatalf("answered something that is not a Binding request (%v)", err)
				}
				m, err := Parse(out)
				if err != nil {
					t.Fatalf("response does not parse: %v", err)
				}
				if m.TID != q.TID || m.Cookie != q.Cookie || m.Method != MethodBinding {
					t.Fatal("response header does not match the request")
				}
				if _, fp := q.Get(AttrFingerprint); fp {
					if err := CheckFingerprint(out); err != nil {
						t.Fatalf("response FINGERPRINT: %v", err)
					}
				}
				want := netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
				switch m.Class {
				case ClassSuccess:
					got, err := m.XORMappedAddress()
					if m.Classic() {
						got, err = m.MappedAddress()
					}
					if err != nil || got != want {
						t.Fatalf("mapped address %v %v, want %v", got, err, want)
					}
				case ClassError:
					if code, _, err := m.ErrorCode(); err != nil || code != 420 || len(m.UnknownAttributes()) == 0 {
						t.Fatalf("error response %d %v", code, err)
					}
				default:
					t.Fatalf("response class %v", m.Class)
				}
			}
		}
	})
}

// FuzzFrameReader: splitting a TCP byte stream into STUN messages does not
// depend on how the stream is cut into reads; every message is whole and
// well framed, the messages are a prefix of the stream, and all of it at
// a clean end.
func FuzzFrameReader(f *testing.F) {
	a, b := request(f, true, nil), request(f, false, func(bl *Builder) { bl.AddSoftware("sipedge") })
	f.Add(append(append([]byte{}, a...), b...), uint8(1), uint16(MaxStreamMessage))
	f.Add(append(append([]byte{}, a...), b[:7]...), uint8(5), uint16(64))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), uint8(3), uint16(MaxStreamMessage))
	f.Add(append(append([]byte{}, a...), 0x00, 0x01, 0x7F, 0xF0), uint8(2), uint16(100))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, maxLen uint16) {
		limit := min(max(int(maxLen), HeaderSize), MaxStreamMessage)
		whole, wholeErr := frames(bytes.NewReader(data), limit)
		for _, r := range []io.Reader{
			&chunkReader{b: data, n: int(chunk%16) + 1},
			&chunkReader{b: data, n: int(chunk) + 1, eofWithData: true},
		} {
			got, err := frames(r, limit)
			if !errors.Is(err, wholeErr) && err != wholeErr || len(got) != len(whole) {
				t.Fatalf("chunked: %d messages, %v; whole: %d, %v", len(got), err, len(whole), wholeErr)
			}
			for i := range got {
				if !bytes.Equal(got[i], whole[i]) {
					t.Fatalf("message %d differs", i)
				}
			}
		}
		off := 0
		for _, m := range whole {
			if len(m) > limit || !IsMessage(m) || !bytes.Equal(m, data[off:off+len(m)]) {
				t.Fatalf("bad message %x at %d", m, off)
			}
			off += len(m)
		}
		switch {
		case wholeErr == io.EOF && off != len(data):
			t.Fatalf("clean end after %d of %d bytes", off, len(data))
		case wholeErr == io.ErrUnexpectedEOF && off == len(data):
			t.Fatal("unexpected EOF at a message boundary")
		case wholeErr != io.EOF && wholeErr != io.ErrUnexpectedEOF && wholeErr != ErrStreamNotSTUN && wholeErr != ErrStreamTooLarge:
			t.Fatalf("error %v", wholeErr)
		}
	})
}
