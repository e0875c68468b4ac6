package stun

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// request builds a Binding request; add adds attributes before the
// optional FINGERPRINT.
func request(tb testing.TB, fingerprint bool, add func(b *Builder)) []byte {
	tb.Helper()
	var b Builder
	b.Reset(nil, MethodBinding, ClassRequest, NewTransactionID())
	if add != nil {
		add(&b)
	}
	if fingerprint {
		b.AddFingerprint()
	}
	if err := b.Err(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func classicRequest(tb testing.TB, add func(b *Builder)) []byte {
	tb.Helper()
	var b Builder
	b.ResetClassic(nil, MethodBinding, ClassRequest, 0x0badcafe, NewTransactionID())
	if add != nil {
		add(&b)
	}
	return b.Bytes()
}

// respond calls Respond and parses the answer, checking what every
// response must satisfy: same transaction id, the amplification bound,
// FINGERPRINT if and only if the request had one.
func respond(t *testing.T, req []byte, src netip.AddrPort, o *ResponderOptions) *Message {
	t.Helper()
	out, ok := Respond(nil, req, src, o)
	if !ok {
		t.Fatalf("no response to %x", req)
	}
	if len(out) > len(req)+MaxResponseGrowth {
		t.Errorf("response of %d bytes to a request of %d exceeds the bound", len(out), len(req))
	}
	m, err := Parse(out)
	if err != nil {
		t.Fatalf("response does not parse: %v", err)
	}
	q, _ := Parse(req)
	if m.TID != q.TID || m.Cookie != q.Cookie || m.Method != MethodBinding {
		t.Errorf("response header does not match the request")
	}
	if _, reqFP := q.Get(AttrFingerprint); reqFP {
		if err := CheckFingerprint(out); err != nil {
			t.Errorf("response FINGERPRINT: %v", err)
		}
	} else if _, ok := m.Get(AttrFingerprint); ok {
		t.Errorf("FINGERPRINT in response to a request without one")
	}
	if _, ok := m.Get(AttrMessageIntegrity); ok {
		t.Errorf("response carries MESSAGE-INTEGRITY")
	}
	return m
}

func TestRespondBinding(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want string
	}{
		{"IPv4", "198.51.100.7:40512", "198.51.100.7:40512"},
		{"IPv6", "[2001:db8::42]:5062", "[2001:db8::42]:5062"},
		{"v4-mapped IPv6", "[::ffff:198.51.100.8]:1024", "198.51.100.8:1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, want := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.want)
			m := respond(t, request(t, false, nil), src, &ResponderOptions{Software: "sipedge"})
			if m.Class != ClassSuccess || m.Classic() {
				t.Fatalf("class %v classic %v", m.Class, m.Classic())
			}
			if got, err := m.XORMappedAddress(); err != nil || got != want {
				t.Errorf("XOR-MAPPED-ADDRESS %v %v, want %v", got, err, want)
			}
			if got, err := m.MappedAddress(); err != nil || got != want {
				t.Errorf("MAPPED-ADDRESS %v %v, want %v", got, err, want)
			}
			if s := m.Software(); s != "sipedge" {
				t.Errorf("SOFTWARE %q", s)
			}
			for _, typ := range []uint16{AttrOtherAddress, AttrResponseOrigin} {
				if _, ok := m.Get(typ); ok {
					t.Errorf("unexpected %s", AttrName(typ))
				}
			}
		})
	}
}

func TestRespondClassic(t *testing.T) {
	src := netip.MustParseAddrPort("203.0.113.9:3478")
	req := classicRequest(t, func(b *Builder) { b.AddChangeRequest(false, false) })
	m := respond(t, req, src, &ResponderOptions{Software: "sipedge"})
	if !m.Classic() || m.Class != ClassSuccess {
		t.Fatalf("classic %v class %v", m.Classic(), m.Class)
	}
	// Every attribute length a multiple of 4 (RFC 3489 §11.1): no SOFTWARE
	// "sipedge" (7 bytes), which Vovida-based clients reject.
	for _, a := range m.Attrs {
		if len(a.Value)%4 != 0 {
			t.Errorf("attribute %s has length %d, not a multiple of 4: classic parsers drop the answer", AttrName(a.Type), len(a.Value))
		}
	}
	if got, err := m.MappedAddress(); err != nil || got != src {
		t.Errorf("MAPPED-ADDRESS %v %v", got, err)
	}
	if _, ok := m.Get(AttrXORMappedAddress); ok {
		t.Error("XOR-MAPPED-ADDRESS sent to a classic client")
	}

	// With RFC 5780 addresses configured, a classic client gets their
	// RFC 3489 names.
	o := &ResponderOptions{
		ResponseOrigin: netip.MustParseAddrPort("192.0.2.10:3478"),
		OtherAddress:   netip.MustParseAddrPort("192.0.2.11:3479"),
	}
	m = respond(t, classicRequest(t, func(b *Builder) { b.AddChangeRequest(true, true) }), src, o)
	// Asked to change both, the response leaves from the other address,
	// which SOURCE-ADDRESS names (RFC 5780 Table 1).
	if got, _ := m.Address(AttrSourceAddress); got != o.OtherAddress {
		t.Errorf("SOURCE-ADDRESS %v", got)
	}
	if got, _ := m.Address(AttrChangedAddress); got != o.OtherAddress {
		t.Errorf("CHANGED-ADDRESS %v", got)
	}
	if _, ok := m.Get(AttrOtherAddress); ok {
		t.Error("OTHER-ADDRESS sent to a classic client")
	}
}

func TestRespondFingerprint(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.77:5060")
	m := respond(t, request(t, true, nil), src, &ResponderOptions{Software: "sipedge"})
	if m.Attrs[len(m.Attrs)-1].Type != AttrFingerprint {
		t.Error("FINGERPRINT is not last")
	}

	// The RFC 5769 request (USERNAME, MESSAGE-INTEGRITY, ICE attributes,
	// FINGERPRINT) is answered, without integrity, with a FINGERPRINT.
	m = respond(t, unhex(t, rfc5769Request), src, nil)
	if m.Class != ClassSuccess || m.TID != rfc5769TID {
		t.Fatalf("class %v", m.Class)
	}
	if got, _ := m.XORMappedAddress(); got != src {
		t.Errorf("XOR-MAPPED-ADDRESS %v", got)
	}

	// A wrong FINGERPRINT means "not STUN": no answer.
	bad := unhex(t, rfc5769Request)
	bad[len(bad)-1] ^= 0xFF
	if out, ok := Respond(nil, bad, src, nil); ok {
		t.Errorf("answered a request with a bad FINGERPRINT: %x", out)
	}
	notLast := request(t, true, nil)
	notLast = append(notLast, 0x80, 0x22, 0, 0) // empty SOFTWARE after FINGERPRINT
	notLast[3] += 4
	if _, ok := Respond(nil, notLast, src, nil); ok {
		t.Error("answered a request whose FINGERPRINT is not last")
	}
}

func TestRespond420(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.1:1000")
	for _, tc := range []struct {
		name    string
		req     []byte
		o       *ResponderOptions
		unknown []uint16 // nil: success expected
	}{
		{"unknown comprehension-required", request(t, true, func(b *Builder) {
			b.AddRaw(0x0777, []byte{1})
			b.AddRaw(0x8777, []byte{2}) // optional: ignored
			b.AddRaw(0x0777, []byte{3}) // listed once
			b.AddRaw(AttrResponsePort, []byte{0x13, 0x88, 0, 0})
		}), nil, []uint16{0x0777, AttrResponsePort}},
		{"padding", request(t, false, func(b *Builder) { b.AddRaw(AttrPadding, make([]byte, 8)) }), nil, []uint16{AttrPadding}},
		{"change IP without other address", request(t, false, func(b *Builder) { b.AddChangeRequest(true, false) }), nil, []uint16{AttrChangeRequest}},
		{"malformed change request", request(t, false, func(b *Builder) { b.AddRaw(AttrChangeRequest, []byte{0}) }), nil, []uint16{AttrChangeRequest}},
		{"no change requested", request(t, false, func(b *Builder) { b.AddChangeRequest(false, false) }), nil, nil},
		{"change with other address", request(t, false, func(b *Builder) { b.AddChangeRequest(true, true) }),
			&ResponderOptions{OtherAddress: netip.MustParseAddrPort("192.0.2.2:3479")}, nil},
		{"credentials and ICE are ignored", request(t, false, func(b *Builder) {
			b.AddUsername("a:b")
			b.AddRaw(AttrPriority, []byte{1, 2, 3, 4})
			b.AddRaw(AttrUseCandidate, nil)
			b.AddRaw(AttrRealm, []byte("example.org"))
			b.AddRaw(AttrNonce, []byte("n"))
			b.AddMessageIntegrity([]byte("pw"))
		}), nil, nil},
		{"many unknowns", request(t, false, func(b *Builder) {
			for i := range 40 {
				b.AddRaw(uint16(0x0100+i), nil)
			}
		}), &ResponderOptions{Software: strings.Repeat("s", 100)}, nil /* checked below */},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := respond(t, tc.req, src, tc.o)
			if tc.name == "many unknowns" {
				if m.Class != ClassError || len(m.UnknownAttributes()) != maxUnknown {
					t.Errorf("class %v, %d unknown listed", m.Class, len(m.UnknownAttributes()))
				}
				return
			}
			if tc.unknown == nil {
				if m.Class != ClassSuccess {
					code, reason, _ := m.ErrorCode()
					t.Fatalf("got %v %d %s", m.Class, code, reason)
				}
				return
			}
			if m.Class != ClassError {
				t.Fatalf("class %v, want error", m.Class)
			}
			code, reason, err := m.ErrorCode()
			if err != nil || code != 420 || reason == "" {
				t.Errorf("ERROR-CODE %d %q %v", code, reason, err)
			}
			if u := m.UnknownAttributes(); !slices.Equal(u, tc.unknown) {
				t.Errorf("UNKNOWN-ATTRIBUTES %04x, want %04x", u, tc.unknown)
			}
			if _, ok := m.Get(AttrXORMappedAddress); ok {
				t.Error("error response carries XOR-MAPPED-ADDRESS")
			}
		})
	}
}

func TestRespondNothing(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.1:1000")
	ind := func() []byte {
		var b Builder
		b.Reset(nil, MethodBinding, ClassIndication, NewTransactionID())
		b.AddFingerprint()
		return b.Bytes()
	}
	other := func(method uint16, c Class) []byte {
		var b Builder
		b.Reset(nil, method, c, NewTransactionID())
		return b.Bytes()
	}
	good := request(t, false, nil)
	for _, tc := range []struct {
		name string
		b    []byte
		src  netip.AddrPort
	}{
		{"binding indication (keepalive)", ind(), src},
		{"success response", other(MethodBinding, ClassSuccess), src},
		{"error response", other(MethodBinding, ClassError), src},
		{"allocate request", other(0x003, ClassRequest), src},
		{"the RFC 5769 response", unhex(t, rfc5769IPv4Response), src},
		{"empty", nil, src},
		{"CRLF keepalive", []byte("\r\n\r\n"), src},
		{"SIP", []byte("OPTIONS sip:x SIP/2.0\r\n\r\n"), src},
		{"truncated", good[:len(good)-1], src},
		{"extra bytes", append(bytes.Clone(good), 0, 0, 0, 0), src},
		{"attribute overruns", msg(0x0001, 4, MagicCookie, []byte{0x00, 0x06, 0x00, 0x08}), src},
		{"invalid source", good, netip.AddrPort{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte("keep")
			out, ok := Respond(dst, tc.b, tc.src, nil)
			if ok || string(out) != "keep" {
				t.Errorf("answered: %x", out)
			}
		})
	}
}

func TestRespondAppends(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.1:1000")
	dst := make([]byte, 3, 256)
	copy(dst, "abc")
	out, ok := Respond(dst, request(t, true, nil), src, nil)
	if !ok || string(out[:3]) != "abc" {
		t.Fatalf("prefix lost: %q", out)
	}
	if &out[0] != &dst[0] {
		t.Error("reallocated although dst had room")
	}
	if err := CheckFingerprint(out[3:]); err != nil {
		t.Error(err)
	}
}

func TestRespondAmplification(t *testing.T) {
	v4 := netip.MustParseAddrPort("198.51.100.7:5060")
	v6 := netip.MustParseAddrPort("[2001:db8::7]:5060")
	v6o := netip.MustParseAddrPort("[2001:db8::1]:3478")
	v6x := netip.MustParseAddrPort("[2001:db8::2]:3479")
	long := strings.Repeat("sipedge ", 30) // 240 bytes
	for _, tc := range []struct {
		name                     string
		req                      []byte
		src                      netip.AddrPort
		o                        ResponderOptions
		wantMapped, wantSoftware bool
	}{
		{"v4 minimal", request(t, false, nil), v4, ResponderOptions{Software: "sipedge 1.0"}, true, true},
		{"v6 minimal", request(t, false, nil), v6, ResponderOptions{Software: "sipedge 1.0"}, true, true},
		{"v4 long software", request(t, false, nil), v4, ResponderOptions{Software: long}, true, false},
		{"v6 with fingerprint", request(t, true, nil), v6, ResponderOptions{Software: "sipedge"}, true, true},
		// 20 + XOR 24 + OTHER 24 = 68; MAPPED fits exactly (92), SOFTWARE not.
		{"v6 other address", request(t, false, nil), v6, ResponderOptions{Software: "x", OtherAddress: v6x}, true, false},
		// The three required addresses take the whole allowance.
		{"v6 full RFC 5780", request(t, false, nil), v6,
			ResponderOptions{Software: "x", OtherAddress: v6x, ResponseOrigin: v6o}, false, false},
		{"v6 full RFC 5780, fingerprint", request(t, true, nil), v6,
			ResponderOptions{Software: "x", OtherAddress: v6x, ResponseOrigin: v6o}, false, false},
		// A larger request buys room for the optional attributes.
		{"v6 full RFC 5780, padded request", request(t, false, func(b *Builder) { b.AddRaw(0x8FFF, make([]byte, 60)) }), v6,
			ResponderOptions{Software: "sipedge", OtherAddress: v6x, ResponseOrigin: v6o}, true, true},
		{"v4 long software, long request", request(t, false, func(b *Builder) { b.AddSoftware(long) }), v4,
			ResponderOptions{Software: long}, true, true},
		{"classic", classicRequest(t, nil), v4, ResponderOptions{Software: "sipedge"}, true, false}, // no SOFTWARE to classic clients
		{"classic full", classicRequest(t, nil), v6,
			ResponderOptions{Software: "sipedge", OtherAddress: v6x, ResponseOrigin: v6o}, true, false},
		{"rfc5769 request", unhex(t, rfc5769Request), v6,
			ResponderOptions{Software: long, OtherAddress: v6x, ResponseOrigin: v6o}, true, false},
		{"420 one unknown", request(t, false, func(b *Builder) { b.AddRaw(0x0777, nil) }), v6,
			ResponderOptions{Software: long, OtherAddress: v6x, ResponseOrigin: v6o}, false, false},
		{"420 one unknown, short software", request(t, true, func(b *Builder) { b.AddRaw(0x0777, nil) }), v6,
			ResponderOptions{Software: "sipedge"}, false, true},
		{"420 classic", classicRequest(t, func(b *Builder) { b.AddRaw(0x0777, nil) }), v4,
			ResponderOptions{Software: long}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := respond(t, tc.req, tc.src, &tc.o)
			if m.Class == ClassSuccess {
				typ := uint16(AttrXORMappedAddress)
				if m.Classic() {
					typ = AttrMappedAddress
				}
				if _, ok := m.Get(typ); !ok {
					t.Errorf("required %s dropped", AttrName(typ))
				}
				origin, other := uint16(AttrResponseOrigin), uint16(AttrOtherAddress)
				if m.Classic() {
					origin, other = AttrSourceAddress, AttrChangedAddress
				}
				if _, ok := m.Get(origin); ok != tc.o.ResponseOrigin.IsValid() {
					t.Errorf("%s present: %v", AttrName(origin), ok)
				}
				if _, ok := m.Get(other); ok != tc.o.OtherAddress.IsValid() {
					t.Errorf("%s present: %v", AttrName(other), ok)
				}
				if _, ok := m.Get(AttrMappedAddress); ok != tc.wantMapped {
					t.Errorf("MAPPED-ADDRESS present: %v, want %v", ok, tc.wantMapped)
				}
			}
			if _, ok := m.Get(AttrSoftware); ok != tc.wantSoftware {
				t.Errorf("SOFTWARE present: %v, want %v", ok, tc.wantSoftware)
			}
		})
	}
}

// respondTo is respond for RespondTo: it also returns the Delivery.
func respondTo(t *testing.T, req []byte, src netip.AddrPort, o *ResponderOptions) (*Message, Delivery) {
	t.Helper()
	out, d, ok := RespondTo(nil, req, src, o)
	if !ok {
		t.Fatalf("no response to %x", req)
	}
	if len(out) > len(req)+MaxResponseGrowth {
		t.Errorf("response of %d bytes to a request of %d exceeds the bound", len(out), len(req))
	}
	m, err := Parse(out)
	if err != nil {
		t.Fatalf("response does not parse: %v", err)
	}
	return m, d
}

// TestRespondToChangeRequest checks RFC 5780 Table 1: the socket the
// response must leave from, and RESPONSE-ORIGIN naming it, for each
// combination of CHANGE-REQUEST flags; OTHER-ADDRESS is always Ca:Cp.
func TestRespondToChangeRequest(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	da := netip.MustParseAddrPort("192.0.2.1:3478") // where the request arrived
	ca := netip.MustParseAddrPort("192.0.2.2:3479") // the opposite address
	o := &ResponderOptions{ResponseOrigin: da, OtherAddress: ca, Software: "sipedge"}
	for _, tc := range []struct {
		name         string
		req          []byte
		changeIP     bool
		changePort   bool
		wantOrigin   string
		wantOriginCl string // classic: SOURCE-ADDRESS
	}{
		{"no attribute", request(t, true, nil), false, false, "192.0.2.1:3478", ""},
		{"no change", request(t, true, func(b *Builder) { b.AddChangeRequest(false, false) }), false, false, "192.0.2.1:3478", ""},
		{"change IP", request(t, true, func(b *Builder) { b.AddChangeRequest(true, false) }), true, false, "192.0.2.2:3478", ""},
		{"change port", request(t, false, func(b *Builder) { b.AddChangeRequest(false, true) }), false, true, "192.0.2.1:3479", ""},
		{"change both", request(t, false, func(b *Builder) { b.AddChangeRequest(true, true) }), true, true, "192.0.2.2:3479", ""},
		{"first CHANGE-REQUEST counts", request(t, false, func(b *Builder) {
			b.AddChangeRequest(false, true)
			b.AddChangeRequest(true, false)
		}), false, true, "192.0.2.1:3479", ""},
		{"classic change both", classicRequest(t, func(b *Builder) { b.AddChangeRequest(true, true) }), true, true, "", "192.0.2.2:3479"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, d := respondTo(t, tc.req, src, o)
			if m.Class != ClassSuccess {
				t.Fatalf("class %v", m.Class)
			}
			if d.ChangeIP != tc.changeIP || d.ChangePort != tc.changePort || d.To != src {
				t.Errorf("delivery %+v, want change IP %v port %v to %v", d, tc.changeIP, tc.changePort, src)
			}
			originType, otherType, want := uint16(AttrResponseOrigin), uint16(AttrOtherAddress), tc.wantOrigin
			if m.Classic() {
				originType, otherType, want = AttrSourceAddress, AttrChangedAddress, tc.wantOriginCl
			}
			if got, err := m.Address(originType); err != nil || got.String() != want {
				t.Errorf("%s %v %v, want %s", AttrName(originType), got, err, want)
			}
			if got, err := m.Address(otherType); err != nil || got != ca {
				t.Errorf("%s %v %v, want %v", AttrName(otherType), got, err, ca)
			}
		})
	}

	// A caller that cannot change (TCP) still advertises OTHER-ADDRESS but
	// refuses a change with 420; a request asking for none is answered.
	tcp := &ResponderOptions{ResponseOrigin: da, OtherAddress: ca, NoChange: true}
	m, d := respondTo(t, request(t, false, func(b *Builder) { b.AddChangeRequest(false, true) }), src, tcp)
	if code, _, _ := m.ErrorCode(); m.Class != ClassError || code != 420 || !slices.Equal(m.UnknownAttributes(), []uint16{AttrChangeRequest}) {
		t.Errorf("NoChange: class %v code %d unknown %04x", m.Class, code, m.UnknownAttributes())
	}
	if d.ChangeIP || d.ChangePort || d.To != src {
		t.Errorf("error response delivery %+v", d)
	}
	m, d = respondTo(t, request(t, false, func(b *Builder) { b.AddChangeRequest(false, false) }), src, tcp)
	if got, _ := m.Address(AttrOtherAddress); m.Class != ClassSuccess || got != ca || d.ChangeIP || d.ChangePort {
		t.Errorf("NoChange, no change asked: class %v OTHER-ADDRESS %v delivery %+v", m.Class, got, d)
	}
}

func responsePort(p uint16) func(b *Builder) {
	return func(b *Builder) { b.AddRaw(AttrResponsePort, []byte{byte(p >> 8), byte(p), 0, 0}) }
}

func TestRespondToResponsePort(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.7:40000")
	v6 := netip.MustParseAddrPort("[2001:db8::7]:40000")
	on := &ResponderOptions{ResponsePort: true, Software: "sipedge"}
	for _, tc := range []struct {
		name    string
		req     []byte
		src     netip.AddrPort
		o       *ResponderOptions
		to      string   // success expected: the destination
		unknown []uint16 // else: 420 listing these
	}{
		{"honoured", request(t, true, responsePort(5000)), src, on, "198.51.100.7:5000", nil},
		{"honoured, IPv6", request(t, false, responsePort(65535)), v6, on, "[2001:db8::7]:65535", nil},
		{"honoured, v4-mapped source", request(t, false, responsePort(7)),
			netip.MustParseAddrPort("[::ffff:198.51.100.9]:1"), on, "198.51.100.9:7", nil},
		{"classic", classicRequest(t, responsePort(5001)), src, on, "198.51.100.7:5001", nil},
		{"first one counts", request(t, false, func(b *Builder) {
			responsePort(5002)(b)
			responsePort(5003)(b)
		}), src, on, "198.51.100.7:5002", nil},
		{"with change request", request(t, false, func(b *Builder) {
			b.AddChangeRequest(false, true)
			responsePort(5004)(b)
		}), src, &ResponderOptions{ResponsePort: true, OtherAddress: netip.MustParseAddrPort("192.0.2.2:3479")}, "198.51.100.7:5004", nil},
		{"absent", request(t, false, nil), src, on, "198.51.100.7:40000", nil},
		{"not supported", request(t, false, responsePort(5000)), src, nil, "", []uint16{AttrResponsePort}},
		{"port 0", request(t, false, responsePort(0)), src, on, "", []uint16{AttrResponsePort}},
		{"short value", request(t, false, func(b *Builder) { b.AddRaw(AttrResponsePort, []byte{0x13, 0x88}) }), src, on, "", []uint16{AttrResponsePort}},
		// RFC 5780 §7.5: never process RESPONSE-PORT with PADDING; PADDING
		// is not supported, so the request is refused, to its source.
		{"with padding", request(t, false, func(b *Builder) {
			responsePort(5000)(b)
			b.AddRaw(AttrPadding, make([]byte, 16))
		}), src, on, "", []uint16{AttrPadding}},
		{"with an unknown attribute", request(t, false, func(b *Builder) {
			responsePort(5000)(b)
			b.AddRaw(0x0777, nil)
		}), src, on, "", []uint16{0x0777}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, d := respondTo(t, tc.req, tc.src, tc.o)
			if tc.unknown != nil {
				if m.Class != ClassError || !slices.Equal(m.UnknownAttributes(), tc.unknown) {
					t.Fatalf("class %v unknown %04x, want 420 %04x", m.Class, m.UnknownAttributes(), tc.unknown)
				}
				want := netip.AddrPortFrom(tc.src.Addr().Unmap(), tc.src.Port())
				if d.To != want || d.ChangeIP || d.ChangePort {
					t.Errorf("error response delivery %+v, want to the source %v", d, want)
				}
				return
			}
			if m.Class != ClassSuccess {
				t.Fatalf("class %v", m.Class)
			}
			if d.To.String() != tc.to {
				t.Errorf("to %v, want %s", d.To, tc.to)
			}
			// The mapped address is still the request's source.
			got, _ := m.XORMappedAddress()
			if m.Classic() {
				got, _ = m.MappedAddress()
			}
			if want := netip.AddrPortFrom(tc.src.Addr().Unmap(), tc.src.Port()); got != want {
				t.Errorf("mapped %v, want %v", got, want)
			}
		})
	}
}

// TestRespondToAmplification: acting on CHANGE-REQUEST and RESPONSE-PORT
// never makes a response larger than MaxResponseGrowth allows, even when
// the changed origin is an IPv6 address.
func TestRespondToAmplification(t *testing.T) {
	v6 := netip.MustParseAddrPort("[2001:db8::7]:5060")
	o := &ResponderOptions{
		Software:       strings.Repeat("s", 200),
		ResponseOrigin: netip.MustParseAddrPort("[2001:db8::1]:3478"),
		OtherAddress:   netip.MustParseAddrPort("[2001:db8::2]:3479"),
		ResponsePort:   true,
	}
	for _, req := range [][]byte{
		request(t, false, func(b *Builder) { b.AddChangeRequest(true, true) }),
		request(t, true, func(b *Builder) { b.AddChangeRequest(true, false); responsePort(9)(b) }),
		request(t, false, responsePort(9)),
		classicRequest(t, func(b *Builder) { b.AddChangeRequest(false, true) }),
	} {
		out, d, ok := RespondTo(nil, req, v6, o)
		if !ok || len(out) > len(req)+MaxResponseGrowth {
			t.Errorf("%d-byte response to %d bytes (ok %v, %+v)", len(out), len(req), ok, d)
		}
	}
}
