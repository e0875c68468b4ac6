package bencode

import (
	"reflect"
	"testing"
)

func TestEncodeKnown(t *testing.T) {
	cases := []struct {
		in   any
		want string
	}{
		{"spam", "4:spam"},
		{"", "0:"},
		{42, "i42e"},
		{int64(-7), "i-7e"},
		{0, "i0e"},
		{[]string{"a", "bc"}, "l1:a2:bce"},
		{[]any{"x", 1, []any{}}, "l1:xi1elee"},
		// keys come out sorted bytewise, whatever the map order
		{map[string]any{"sdp": "v=0", "command": "offer", "call-id": "c1", "flags": []string{"trust-address"}},
			"d7:call-id2:c17:command5:offer5:flagsl13:trust-addresse3:sdp3:v=0e"},
		{map[string]any{"B": 1, "a": 2}, "d1:Bi1e1:ai2ee"},
	}
	for _, c := range cases {
		got, err := Encode(nil, c.in)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", c.in, err)
		}
		if string(got) != c.want {
			t.Errorf("Encode(%#v) = %q, want %q", c.in, got, c.want)
		}
	}
	if _, err := Encode(nil, 1.5); err == nil {
		t.Error("Encode(float) must fail")
	}
}

func TestRoundTrip(t *testing.T) {
	in := map[string]any{
		"result": "ok",
		"sdp":    "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 40000 RTP/AVP 0\r\n",
		"n":      int64(-12345),
		"list":   []any{"a", int64(3), map[string]any{"k": "v"}},
		"empty":  map[string]any{},
	}
	enc, err := Encode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(enc)
	if err != nil {
		t.Fatalf("Decode(%q): %v", enc, err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in  %#v\n out %#v", in, out)
	}
}

func TestDecodePrefixAndErrors(t *testing.T) {
	v, rest, err := DecodePrefix([]byte("4:pongXYZ"))
	if err != nil || v != "pong" || string(rest) != "XYZ" {
		t.Fatalf("DecodePrefix = %v, %q, %v", v, rest, err)
	}
	bad := []string{"", "i", "i12", "ie", "i-0e", "i03e", "5:abc", "l", "d1:a", "di1ei2ee", "x", "4spam", "02:ab", "i1ei2e"}
	for _, b := range bad {
		if _, err := Decode([]byte(b)); err == nil {
			t.Errorf("Decode(%q) succeeded, want error", b)
		}
	}
	deep := make([]byte, 0, 200)
	for i := 0; i < 100; i++ {
		deep = append(deep, 'l')
	}
	if _, err := Decode(deep); err == nil {
		t.Error("deep nesting must fail")
	}
}
