package stun

import (
	"bytes"
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
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, src := range srcs {
			for _, o := range opts {
				out, ok := Respond(nil, b, src, o)
				if !ok {
					if out != nil {
						t.Fatal("dst changed without a response")
					}
					continue
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
