package sipx

import (
	"bytes"
	"testing"
)

func stunBinding() []byte {
	b := []byte{
		0x00, 0x01, 0x00, 0x00, // Binding request, length 0
		0x21, 0x12, 0xA4, 0x42, // magic cookie
	}
	return append(b, []byte("txid12345678")...) // 12-byte transaction id
}

func TestClassify(t *testing.T) {
	stunNoCookie := stunBinding()
	stunNoCookie[4] = 0
	stunResp := stunBinding()
	stunResp[0], stunResp[1] = 0x01, 0x01 // Binding success response
	tests := []struct {
		name string
		in   []byte
		want kind
	}{
		{"empty", nil, kindJunk},
		{"empty slice", []byte{}, kindJunk},
		{"CRLF", []byte("\r\n"), kindKeepalive},
		{"CRLFCRLF", []byte("\r\n\r\n"), kindKeepalive},
		{"LF", []byte("\n"), kindKeepalive},
		{"NUL", []byte{0}, kindKeepalive},
		{"NULx4", []byte{0, 0, 0, 0}, kindKeepalive},
		{"STUN binding", stunBinding(), kindSTUN},
		{"STUN binding response", stunResp, kindSTUN},
		{"STUN with attrs", append(stunBinding(), 0x00, 0x06, 0x00, 0x00), kindSTUN},
		{"STUN without cookie", stunNoCookie, kindJunk},
		{"STUN short", stunBinding()[:19], kindJunk},
		{"RTP", []byte{0x80, 0x00, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef}, kindJunk},
		{"RTP marker PT 96", []byte{0x80, 0xE0, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1}, kindJunk},
		{"RTCP SR", []byte{0x81, 0xC8, 0x00, 0x06}, kindJunk},
		{"DTLS", []byte{0x16, 0xFE, 0xFD, 0, 0}, kindJunk},
		{"ZRTP", []byte{0x10, 0, 0, 0}, kindJunk},
		{"INVITE", []byte("INVITE sip:bob@example.com SIP/2.0\r\n"), kindSIP},
		{"REGISTER", []byte("REGISTER sip:example.com SIP/2.0\r\n"), kindSIP},
		{"OPTIONS", []byte("OPTIONS sip:x SIP/2.0\r\n"), kindSIP},
		{"ACK", []byte("ACK sip:x SIP/2.0\r\n"), kindSIP},
		{"CANCEL", []byte("CANCEL sip:x SIP/2.0\r\n"), kindSIP},
		{"BYE", []byte("BYE sip:x SIP/2.0\r\n"), kindSIP},
		{"lower case method", []byte("message sip:x SIP/2.0\r\n"), kindSIP},
		{"response", []byte("SIP/2.0 200 OK\r\n"), kindSIP},
		{"leading space", []byte(" INVITE sip:x SIP/2.0\r\n"), kindJunk},
		{"leading CRLF then SIP", []byte("\r\nINVITE sip:x SIP/2.0\r\n"), kindJunk}, // datagram: no CRLF skipping
		{"digit", []byte("200 OK"), kindJunk},
		{"brace", []byte("{\"json\":1}"), kindJunk},
		{"high byte", []byte{0xFF, 'A'}, kindJunk},
		{"NUL then SIP", []byte("\x00INVITE"), kindJunk},
		{"CRLF NUL mix", []byte("\r\x00\n"), kindKeepalive},
	}
	for _, tc := range tests {
		if got := classify(tc.in); got != tc.want {
			t.Errorf("%s: classify(%q) = %d, want %d", tc.name, tc.in, got, tc.want)
		}
	}
}

func FuzzClassify(f *testing.F) {
	f.Add([]byte("\r\n\r\n"))
	f.Add(stunBinding())
	f.Add([]byte{0x80, 0, 0, 0})
	f.Add([]byte("INVITE sip:x SIP/2.0\r\n\r\n"))
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		k := classify(b)
		switch k {
		case kindJunk:
		case kindKeepalive:
			if len(b) == 0 || len(bytes.Trim(b, "\r\n\x00")) != 0 {
				t.Fatalf("keepalive for %q", b)
			}
		case kindSTUN:
			if len(b) < 20 || b[0] >= 4 || !bytes.Equal(b[4:8], []byte{0x21, 0x12, 0xA4, 0x42}) {
				t.Fatalf("STUN for %q", b)
			}
		case kindSIP:
			c := b[0]
			if !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
				t.Fatalf("SIP for %q", b)
			}
		default:
			t.Fatalf("classify(%q) = %d: unknown kind", b, k)
		}
		// Deterministic and does not modify its input.
		c := bytes.Clone(b)
		if classify(c) != k || !bytes.Equal(c, b) {
			t.Fatal("classify not deterministic")
		}
	})
}
