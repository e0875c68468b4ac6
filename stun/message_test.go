package stun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestMessageType(t *testing.T) {
	for _, tc := range []struct {
		method uint16
		class  Class
		want   uint16
	}{
		{MethodBinding, ClassRequest, 0x0001},
		{MethodBinding, ClassIndication, 0x0011},
		{MethodBinding, ClassSuccess, 0x0101},
		{MethodBinding, ClassError, 0x0111},
		{0x003, ClassRequest, 0x0003},    // TURN Allocate
		{0x003, ClassSuccess, 0x0103},    // Allocate success
		{0x006, ClassIndication, 0x0016}, // TURN Send indication
		{0xFFF, ClassError, 0x3FFF},
	} {
		if got := MessageType(tc.method, tc.class); got != tc.want {
			t.Errorf("MessageType(%#x, %v) = %#04x, want %#04x", tc.method, tc.class, got, tc.want)
		}
	}
	// Every 14-bit type splits into a method and class that join back.
	for typ := uint16(0); typ < 0x4000; typ++ {
		m, c := splitType(typ)
		if got := MessageType(m, c); got != typ {
			t.Fatalf("type %#04x -> (%#x, %v) -> %#04x", typ, m, c, got)
		}
	}
}

// msg builds a header with the given length field and body.
func msg(typ uint16, length int, cookie uint32, body []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(body))
	binary.BigEndian.PutUint16(b, typ)
	binary.BigEndian.PutUint16(b[2:], uint16(length))
	binary.BigEndian.PutUint32(b[4:], cookie)
	copy(b[8:], "0123456789ab")
	return append(b, body...)
}

func TestParseErrors(t *testing.T) {
	many := make([]byte, 4*(MaxAttrs+1))
	for i := 0; i < len(many); i += 4 {
		binary.BigEndian.PutUint16(many[i:], 0x8001)
	}
	for _, tc := range []struct {
		name   string
		b      []byte
		want   error
		offset int
	}{
		{"empty", nil, ErrShort, 0},
		{"truncated header", msg(0x0001, 0, MagicCookie, nil)[:19], ErrShort, 0},
		{"top bits set", msg(0xC001, 0, MagicCookie, nil), ErrNotSTUN, 0},
		{"length not multiple of 4", msg(0x0001, 3, MagicCookie, []byte{1, 2, 3}), ErrUnaligned, 0},
		{"length beyond data", msg(0x0001, 8, MagicCookie, []byte{0, 1, 0, 0}), ErrLength, 0},
		{"trailing data", msg(0x0001, 0, MagicCookie, []byte{0, 0, 0, 0}), ErrLength, 0},
		{"attribute value overruns", msg(0x0001, 4, MagicCookie, []byte{0x80, 0x22, 0, 4}), ErrAttrTruncated, 20},
		{"padding missing", msg(0x0001, 8, MagicCookie, []byte{0x80, 0x22, 0, 5, 'a', 'b', 'c', 'd'}), ErrAttrTruncated, 20},
		{"second attribute overruns", msg(0x0001, 12, MagicCookie,
			[]byte{0x80, 0x22, 0, 1, 'a', 0, 0, 0, 0x00, 0x06, 0xff, 0xff}), ErrAttrTruncated, 28},
		{"huge attribute length", msg(0x0001, 8, MagicCookie, []byte{0x00, 0x01, 0xff, 0xfc, 0, 1, 0, 0}), ErrAttrTruncated, 20},
		{"too many attributes", msg(0x0001, len(many), MagicCookie, many), ErrTooManyAttrs, HeaderSize + 4*MaxAttrs},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.b)
			if err == nil {
				t.Fatalf("parsed: %+v", m)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if pe.Offset != tc.offset {
				t.Errorf("offset %d, want %d (%v)", pe.Offset, tc.offset, err)
			}
			if IsMessage(tc.b) && !errors.Is(err, ErrAttrTruncated) && !errors.Is(err, ErrTooManyAttrs) {
				t.Errorf("IsMessage accepts it")
			}
		})
	}
}

func TestParseClassic(t *testing.T) {
	b := msg(0x0001, 8, 0xDEADBEEF, []byte{0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0x06})
	if IsMessage(b) {
		t.Error("IsMessage true for a classic message")
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Classic() || m.Cookie != 0xDEADBEEF || string(m.TID[:]) != "0123456789ab" {
		t.Errorf("classic %v cookie %#x tid %q", m.Classic(), m.Cookie, m.TID[:])
	}
	ip, port, ok := m.ChangeRequest()
	if !ip || !port || !ok {
		t.Errorf("CHANGE-REQUEST = %v %v %v", ip, port, ok)
	}
	enc, err := m.Append(nil)
	if err != nil || !bytes.Equal(enc, b) {
		t.Errorf("re-encoded %x (%v), want %x", enc, err, b)
	}
}

func TestAddresses(t *testing.T) {
	addrs := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.1:5060"),
		netip.MustParseAddrPort("[2001:db8::1]:65535"),
		netip.MustParseAddrPort("0.0.0.0:0"),
	}
	types := []uint16{AttrMappedAddress, AttrOtherAddress, AttrResponseOrigin, AttrSourceAddress, AttrChangedAddress, AttrAlternateServer}
	for _, ap := range addrs {
		var b Builder
		tid := NewTransactionID()
		b.Reset(nil, MethodBinding, ClassSuccess, tid)
		b.AddXORMappedAddress(ap)
		for _, typ := range types {
			b.AddAddress(typ, ap)
		}
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		m, err := Parse(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if got, err := m.XORMappedAddress(); err != nil || got != ap {
			t.Errorf("XOR-MAPPED-ADDRESS %v, %v; want %v", got, err, ap)
		}
		v, _ := m.Get(AttrXORMappedAddress)
		if bytes.Contains(v, ap.Addr().AsSlice()) && !ap.Addr().IsUnspecified() {
			t.Errorf("XOR-MAPPED-ADDRESS value %x contains the address in clear", v)
		}
		for _, typ := range types {
			if got, err := m.Address(typ); err != nil || got != ap {
				t.Errorf("%s: %v, %v; want %v", AttrName(typ), got, err, ap)
			}
		}
	}

	// A v4-mapped IPv6 address is sent as IPv4.
	var b Builder
	b.Reset(nil, MethodBinding, ClassSuccess, NewTransactionID())
	b.AddAddress(AttrMappedAddress, netip.MustParseAddrPort("[::ffff:198.51.100.7]:1234"))
	m, _ := Parse(b.Bytes())
	if v, _ := m.Get(AttrMappedAddress); len(v) != 8 || v[1] != familyIPv4 {
		t.Errorf("v4-mapped address encoded as %x", v)
	}

	// An invalid address is an error, not a bogus attribute.
	b.Reset(nil, MethodBinding, ClassSuccess, NewTransactionID())
	b.AddXORMappedAddress(netip.AddrPort{})
	if b.Err() == nil {
		t.Error("no error for an invalid address")
	}
}

func TestAddressErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    []byte
	}{
		{"short", []byte{0, 1, 0}},
		{"unknown family", []byte{0, 3, 0, 80, 1, 2, 3, 4}},
		{"IPv4 too long", append([]byte{0, 1, 0, 80}, make([]byte, 16)...)},
		{"IPv4 too short", []byte{0, 1, 0, 80, 1, 2, 3}},
		{"IPv6 too short", []byte{0, 2, 0, 80, 1, 2, 3, 4}},
	} {
		m := &Message{Cookie: MagicCookie, Attrs: []Attr{{AttrMappedAddress, tc.v}, {AttrXORMappedAddress, tc.v}}}
		if ap, err := m.MappedAddress(); !errors.Is(err, ErrBadAddress) {
			t.Errorf("%s: MappedAddress = %v, %v", tc.name, ap, err)
		}
		if ap, err := m.XORMappedAddress(); !errors.Is(err, ErrBadAddress) {
			t.Errorf("%s: XORMappedAddress = %v, %v", tc.name, ap, err)
		}
	}
	m := &Message{}
	if _, err := m.Address(AttrOtherAddress); !errors.Is(err, ErrNoAttr) {
		t.Errorf("missing attribute: %v", err)
	}
}

func TestErrorCodeAndUnknown(t *testing.T) {
	for _, code := range []int{300, 400, 420, 438, 500, 699} {
		var b Builder
		b.Reset(nil, MethodBinding, ClassError, NewTransactionID())
		b.AddErrorCode(code, "some reason")
		b.AddUnknownAttributes([]uint16{0x0777, 0x1234, 0x0003})
		m, err := Parse(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		got, reason, err := m.ErrorCode()
		if err != nil || got != code || reason != "some reason" {
			t.Errorf("ErrorCode = %d %q %v, want %d", got, reason, err, code)
		}
		if u := m.UnknownAttributes(); !slices.Equal(u, []uint16{0x0777, 0x1234, 0x0003}) {
			t.Errorf("UNKNOWN-ATTRIBUTES %x", u)
		}
	}
	for _, v := range [][]byte{{0, 0, 2, 99}, {0, 0, 7, 0}, {0, 0, 4, 100}, {0, 0, 4}} {
		m := &Message{Attrs: []Attr{{AttrErrorCode, v}}}
		if c, _, err := m.ErrorCode(); !errors.Is(err, ErrBadErrorCode) {
			t.Errorf("ERROR-CODE %x decoded as %d, %v", v, c, err)
		}
	}
	var b Builder
	b.Reset(nil, MethodBinding, ClassError, NewTransactionID())
	b.AddErrorCode(200, "not an error")
	if b.Err() == nil {
		t.Error("AddErrorCode(200) accepted")
	}

	// Classic: an odd list is padded by repeating the last type.
	b.ResetClassic(nil, MethodBinding, ClassError, 0x01020304, NewTransactionID())
	b.AddUnknownAttributes([]uint16{0x0777})
	m, _ := Parse(b.Bytes())
	if u := m.UnknownAttributes(); !slices.Equal(u, []uint16{0x0777, 0x0777}) {
		t.Errorf("classic UNKNOWN-ATTRIBUTES %x", u)
	}
}

func TestChangeRequest(t *testing.T) {
	for _, tc := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		var b Builder
		b.Reset(nil, MethodBinding, ClassRequest, NewTransactionID())
		b.AddChangeRequest(tc[0], tc[1])
		m, err := Parse(b.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		ip, port, ok := m.ChangeRequest()
		if !ok || ip != tc[0] || port != tc[1] {
			t.Errorf("ChangeRequest(%v) = %v %v %v", tc, ip, port, ok)
		}
	}
	m := &Message{Attrs: []Attr{{AttrChangeRequest, []byte{0, 6}}}}
	if _, _, ok := m.ChangeRequest(); ok {
		t.Error("2-byte CHANGE-REQUEST accepted")
	}
	if _, _, ok := (&Message{}).ChangeRequest(); ok {
		t.Error("absent CHANGE-REQUEST reported")
	}
}

func TestBuilderAppendsAndLimits(t *testing.T) {
	prefix := []byte("prefix")
	var b Builder
	b.Reset(prefix, MethodBinding, ClassRequest, NewTransactionID())
	b.AddSoftware("abc")
	b.AddFingerprint()
	out := b.Bytes()
	if !bytes.HasPrefix(out, prefix) {
		t.Fatalf("prefix lost: %q", out)
	}
	if err := CheckFingerprint(out[len(prefix):]); err != nil {
		t.Errorf("FINGERPRINT after a prefix: %v", err)
	}
	if b.Len() != len(out)-len(prefix) {
		t.Errorf("Len %d, message %d", b.Len(), len(out)-len(prefix))
	}

	b.Reset(nil, MethodBinding, ClassRequest, NewTransactionID())
	b.AddRaw(0x8001, make([]byte, 0x10000))
	if !errors.Is(b.Err(), ErrTooLong) {
		t.Errorf("64 KiB value: %v", b.Err())
	}
	b.Reset(nil, MethodBinding, ClassRequest, NewTransactionID())
	b.AddRaw(0x8001, make([]byte, 0xFFF0))
	b.AddRaw(0x8001, make([]byte, 16))
	if !errors.Is(b.Err(), ErrTooLong) {
		t.Errorf("message over 64 KiB: %v", b.Err())
	}
	if m, err := Parse(b.Bytes()); err != nil || len(m.Attrs) != 1 {
		t.Errorf("after the error the message should still hold the first attribute: %v", err)
	}
	var zero Builder
	zero.AddSoftware("x")
	if !errors.Is(zero.Err(), ErrNotReset) {
		t.Errorf("unreset Builder: %v", zero.Err())
	}
}

func TestFingerprintAndIntegrityErrors(t *testing.T) {
	var b Builder
	b.Reset(nil, MethodBinding, ClassRequest, NewTransactionID())
	b.AddSoftware("x")
	plain := bytes.Clone(b.Bytes())
	if err := CheckFingerprint(plain); err != ErrNoFingerprint {
		t.Errorf("no FINGERPRINT: %v", err)
	}
	if err := CheckMessageIntegrity(plain, []byte("k")); err != ErrNoIntegrity {
		t.Errorf("no MESSAGE-INTEGRITY: %v", err)
	}
	b.AddFingerprint()
	b.AddSoftware("after")
	if err := CheckFingerprint(b.Bytes()); err != ErrFingerprintNotLast {
		t.Errorf("FINGERPRINT not last: %v", err)
	}
	var pe *ParseError
	if err := CheckFingerprint([]byte{1, 2, 3}); !errors.As(err, &pe) {
		t.Errorf("garbage: %v", err)
	}
	if err := CheckMessageIntegrity(nil, nil); !errors.As(err, &pe) {
		t.Errorf("garbage: %v", err)
	}

	// Attributes after MESSAGE-INTEGRITY do not affect it; FINGERPRINT
	// covers MESSAGE-INTEGRITY.
	key := []byte("secret")
	b.Reset(nil, MethodBinding, ClassRequest, NewTransactionID())
	b.AddUsername("alice")
	b.AddMessageIntegrity(key)
	b.AddFingerprint()
	if err := CheckMessageIntegrity(b.Bytes(), key); err != nil {
		t.Errorf("MESSAGE-INTEGRITY followed by FINGERPRINT: %v", err)
	}
	if err := CheckFingerprint(b.Bytes()); err != nil {
		t.Error(err)
	}
}
