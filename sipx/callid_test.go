package sipx

import "testing"

// TestCallIDHash: every spelling of one Call-ID lands on the same worker
// (so a call's messages stay in order), and a body line is not mistaken
// for the header.
func TestCallIDHash(t *testing.T) {
	base := callIDHash([]byte("INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID: abc@host\r\n\r\n"))
	if base == 0 {
		t.Fatal("no hash for a plain Call-ID")
	}
	same := []string{
		"SIP/2.0 180 Ringing\r\ncall-id: abc@host\r\n\r\n",
		"BYE sip:a@b SIP/2.0\r\ni: abc@host\r\n\r\n",
		"ACK sip:a@b SIP/2.0\r\nCALL-ID :  abc@host  \r\n\r\n",
		"ACK sip:a@b SIP/2.0\nI:abc@host\n\n",
	}
	for _, m := range same {
		if h := callIDHash([]byte(m)); h != base {
			t.Errorf("%q: hash %d, want %d", m, h, base)
		}
	}
	if h := callIDHash([]byte("INVITE sip:a@b SIP/2.0\r\nCall-ID: other\r\n\r\n")); h == base {
		t.Error("different Call-IDs hash alike")
	}
	if h := callIDHash([]byte("INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\ni: abc@host\r\n")); h != 0 {
		t.Error("a body line was taken for the Call-ID header")
	}
	if h := callIDHash([]byte("INVITE sip:a@b SIP/2.0\r\nInfo: x\r\n\r\n")); h != 0 {
		t.Error("an Info header was taken for the compact Call-ID")
	}
}

func FuzzCallIDHash(f *testing.F) {
	f.Add([]byte("INVITE sip:a@b SIP/2.0\r\nCall-ID: abc\r\n\r\n"))
	f.Add([]byte("\n\ni"))
	f.Fuzz(func(t *testing.T, b []byte) { _ = callIDHash(b) })
}
