package stun

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// RFC 5769 test vectors, typed from the RFC text. The padding of SOFTWARE
// and USERNAME is 0x20 in the RFC, on purpose.
const (
	rfc5769Password = "VOkJxbRl1RmTxUk/WvJxBt"

	// §2.1 Sample Request.
	rfc5769Request = `
		00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
		80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
		00 24 00 04 6e 00 01 ff
		80 29 00 08 93 2f f9 b1 51 26 3b 36
		00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
		00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
		80 28 00 04 e5 7a 3b cf`

	// §2.2 Sample IPv4 Response.
	rfc5769IPv4Response = `
		01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
		80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
		00 20 00 08 00 01 a1 47 e1 12 a6 43
		00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
		80 28 00 04 c0 7d 4c 96`

	// §2.3 Sample IPv6 Response.
	rfc5769IPv6Response = `
		01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
		80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
		00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
		00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
		80 28 00 04 c8 fb 0b 4c`
)

var rfc5769TID = [12]byte{0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestRFC5769Request(t *testing.T) {
	b := unhex(t, rfc5769Request)
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Method != MethodBinding || m.Class != ClassRequest || m.Classic() || m.TID != rfc5769TID {
		t.Fatalf("header: method %#x class %v classic %v tid %x", m.Method, m.Class, m.Classic(), m.TID)
	}
	wantTypes := []uint16{AttrSoftware, AttrPriority, AttrICEControlled, AttrUsername, AttrMessageIntegrity, AttrFingerprint}
	if len(m.Attrs) != len(wantTypes) {
		t.Fatalf("%d attributes, want %d", len(m.Attrs), len(wantTypes))
	}
	for i, a := range m.Attrs {
		if a.Type != wantTypes[i] {
			t.Errorf("attribute %d is %s, want %s", i, AttrName(a.Type), AttrName(wantTypes[i]))
		}
	}
	if s := m.Software(); s != "STUN test client" {
		t.Errorf("SOFTWARE %q", s)
	}
	if u, _ := m.Get(AttrUsername); string(u) != "evtj:h6vY" {
		t.Errorf("USERNAME %q (padding must not be part of the value)", u)
	}
	if err := CheckFingerprint(b); err != nil {
		t.Errorf("FINGERPRINT: %v", err)
	}
	if err := CheckMessageIntegrity(b, []byte(rfc5769Password)); err != nil {
		t.Errorf("MESSAGE-INTEGRITY: %v", err)
	}
	if err := CheckMessageIntegrity(b, []byte("wrong password")); err != ErrIntegrityMismatch {
		t.Errorf("MESSAGE-INTEGRITY with a wrong key: %v", err)
	}

	// Rebuilt from its parts (with the RFC's 0x20 padding), the request
	// comes out byte for byte, MESSAGE-INTEGRITY and FINGERPRINT included.
	bl := Builder{Padding: 0x20}
	bl.Reset(nil, MethodBinding, ClassRequest, m.TID)
	bl.AddSoftware("STUN test client")
	for _, typ := range []uint16{AttrPriority, AttrICEControlled} {
		v, _ := m.Get(typ)
		bl.AddRaw(typ, v)
	}
	bl.AddUsername("evtj:h6vY")
	bl.AddMessageIntegrity([]byte(rfc5769Password))
	bl.AddFingerprint()
	if err := bl.Err(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bl.Bytes(), b) {
		t.Errorf("rebuilt request differs:\n got %x\nwant %x", bl.Bytes(), b)
	}
}

func TestRFC5769Responses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		vector string
		addr   netip.AddrPort
	}{
		{"IPv4", rfc5769IPv4Response, netip.MustParseAddrPort("192.0.2.1:32853")},
		{"IPv6", rfc5769IPv6Response, netip.MustParseAddrPort("[2001:db8:1234:5678:11:2233:4455:6677]:32853")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := unhex(t, tc.vector)
			m, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if m.Method != MethodBinding || m.Class != ClassSuccess || m.TID != rfc5769TID {
				t.Fatalf("header: method %#x class %v tid %x", m.Method, m.Class, m.TID)
			}
			got, err := m.XORMappedAddress()
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.addr {
				t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", got, tc.addr)
			}
			if s := m.Software(); s != "test vector" {
				t.Errorf("SOFTWARE %q", s)
			}
			if err := CheckFingerprint(b); err != nil {
				t.Errorf("FINGERPRINT: %v", err)
			}
			if err := CheckMessageIntegrity(b, []byte(rfc5769Password)); err != nil {
				t.Errorf("MESSAGE-INTEGRITY: %v", err)
			}

			bl := Builder{Padding: 0x20}
			bl.Reset(nil, MethodBinding, ClassSuccess, rfc5769TID)
			bl.AddSoftware("test vector")
			bl.AddXORMappedAddress(tc.addr)
			bl.AddMessageIntegrity([]byte(rfc5769Password))
			bl.AddFingerprint()
			if err := bl.Err(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bl.Bytes(), b) {
				t.Errorf("Builder output differs from the RFC:\n got %x\nwant %x", bl.Bytes(), b)
			}

			// Any change to a covered byte breaks both checks.
			for _, i := range []int{0, 3, 9, 20, len(b) - 30} {
				c := bytes.Clone(b)
				c[i] ^= 0x01
				if CheckFingerprint(c) == nil {
					t.Errorf("FINGERPRINT still verifies with byte %d flipped", i)
				}
				if i >= 2 && i < 4 { // the length field: no longer parses
					continue
				}
				if CheckMessageIntegrity(c, []byte(rfc5769Password)) == nil {
					t.Errorf("MESSAGE-INTEGRITY still verifies with byte %d flipped", i)
				}
			}
		})
	}
}
