package sdp

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

func TestApplyCases(t *testing.T) {
	const head = "v=0\no=- 1 2 IN IP4 192.0.2.1\ns=-\nt=0 0\n"
	r := func(ports ...int) []MediaRewrite { // pairs port/RTCP port, ICE removed
		var m []MediaRewrite
		for _, p := range ports {
			m = append(m, MediaRewrite{Port: p, RTCPPort: p + 1, RemoveICE: p != 0})
		}
		return m
	}
	tests := []struct {
		name    string
		in      string
		rw      Rewrite
		want    string
		noCRLF  bool // in and want are used as written, not with CRLF
		version bool // for the minimal-diff check
	}{
		{name: "c= inserted after a last m= line without newline",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0",
			rw:   Rewrite{Addr: relay4, Media: r(0, 30002)},
			want: head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nm=audio 30002 RTP/AVP 0\nc=IN IP4 203.0.113.5"},
		{name: "c= inserted after a last m= line with newline",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\n",
			rw:   Rewrite{Addr: relay4, Media: r(0, 30002)},
			want: head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nm=audio 30002 RTP/AVP 0\nc=IN IP4 203.0.113.5\n"},
		{name: "inserted c= takes the LF of its m= line", noCRLF: true,
			in:   "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\r\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 30000 RTP/AVP 0\nc=IN IP4 203.0.113.5\nm=audio 4002 RTP/AVP 0\r\n"},
		{name: "inserted c= after a last line without newline takes the body's first line ending", noCRLF: true,
			in:   "v=0\no=- 1 2 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0",
			rw:   Rewrite{Addr: relay4, Media: r(0, 30002)},
			want: "v=0\no=- 1 2 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 30002 RTP/AVP 0\nc=IN IP4 203.0.113.5"},
		{name: "c= inserted after i= lines that follow m=",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\ni=first\ni=second\nb=AS:64\nm=audio 4002 RTP/AVP 0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 192.0.2.1\nm=audio 30000 RTP/AVP 0\ni=first\ni=second\nc=IN IP4 203.0.113.5\nb=AS:64\nm=audio 4002 RTP/AVP 0\n"},
		{name: "c= inserted right after m= when i= comes out of order",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=ptime:20\ni=late\nm=audio 4002 RTP/AVP 0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 192.0.2.1\nm=audio 30000 RTP/AVP 0\nc=IN IP4 203.0.113.5\na=ptime:20\ni=late\nm=audio 4002 RTP/AVP 0\n"},
		{name: "c= inserted after the last i= line without newline",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\ni=last",
			rw:   Rewrite{Addr: relay4, Media: r(0, 30002)},
			want: head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nm=audio 30002 RTP/AVP 0\ni=last\nc=IN IP4 203.0.113.5"},
		{name: "no c= anywhere: one is inserted",
			in:   head + "m=audio 4000 RTP/AVP 0\na=sendrecv\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "m=audio 30000 RTP/AVP 0\nc=IN IP4 203.0.113.5\na=sendrecv\n"},
		{name: "session c= kept when only a media-level c= is relied on",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.9\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 192.0.2.1\nm=audio 30000 RTP/AVP 0\nc=IN IP4 203.0.113.5\n"},
		{name: "session c= rewritten when a rejected stream relies on it too",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nm=video 0 RTP/AVP 31\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000, 30002)},
			want: head + "c=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\nm=video 0 RTP/AVP 31\n"},
		{name: "hostname c= is rewritten",
			in:   head + "c=IN IP4 pbx.example.com\nm=audio 4000 RTP/AVP 0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\n"},
		{name: "RFC 2543 hold at session level: c= kept, port rewritten, a=rtcp address kept",
			in:   head + "c=IN IP4 0.0.0.0\nm=audio 4000 RTP/AVP 0\na=rtcp:4001 IN IP4 0.0.0.0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 0.0.0.0\nm=audio 30000 RTP/AVP 0\na=rtcp:30001 IN IP4 0.0.0.0\n"},
		{name: "IPv6 hold kept",
			in:   head + "m=audio 4000 RTP/AVP 0\nc=IN IP6 ::\n",
			rw:   Rewrite{Addr: relay6, Media: r(30000)},
			want: head + "m=audio 30000 RTP/AVP 0\nc=IN IP6 ::\n"},
		{name: "0.0.0.0 with ICE is a placeholder, not hold",
			in:   head + "c=IN IP4 0.0.0.0\nm=audio 9 RTP/AVP 0\na=ice-ufrag:x\na=ice-pwd:y\na=rtcp:9 IN IP4 0.0.0.0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\na=rtcp:30001 IN IP4 203.0.113.5\n"},
		{name: "0.0.0.0 session c= shared by a held stream and an ICE stream",
			in:   head + "c=IN IP4 0.0.0.0\nm=audio 4000 RTP/AVP 0\nm=audio 9 RTP/AVP 0\na=candidate:1 1 UDP 1 192.0.2.1 4002 typ host\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000, 30002)},
			want: head + "c=IN IP4 0.0.0.0\nm=audio 30000 RTP/AVP 0\nm=audio 30002 RTP/AVP 0\nc=IN IP4 203.0.113.5\n"},
		{name: "multicast media left alone, unicast media rewritten",
			in:   head + "m=audio 4000 RTP/AVP 0\nc=IN IP4 233.252.0.1/32\na=rtcp:4001\nm=audio 4002 RTP/AVP 0\nc=IN IP4 192.0.2.9\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000, 30002)},
			want: head + "m=audio 4000 RTP/AVP 0\nc=IN IP4 233.252.0.1/32\na=rtcp:4001\nm=audio 30002 RTP/AVP 0\nc=IN IP4 203.0.113.5\n"},
		{name: "IPv6 multicast without TTL left alone",
			in:   head + "c=IN IP6 ff15::101\nm=audio 4000 RTP/AVP 0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP6 ff15::101\nm=audio 4000 RTP/AVP 0\n"},
		{name: "unicast with TTL left alone",
			in:   head + "c=IN IP4 192.0.2.1/127\nm=audio 4000 RTP/AVP 0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 192.0.2.1/127\nm=audio 4000 RTP/AVP 0\n"},
		{name: "non-IN network type left alone",
			in:   head + "c=TN RFC2543 +1-212-555-0100\nm=audio 4000 RTP/AVP 0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=TN RFC2543 +1-212-555-0100\nm=audio 4000 RTP/AVP 0\n"},
		{name: "rewrite for a rejected stream is ignored",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 0 RTP/AVP 0\na=rtcp:4001\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 192.0.2.1\nm=audio 0 RTP/AVP 0\na=rtcp:4001\n"},
		{name: "port count, a=rtcp without address, RTCPPort 0 is Port+1",
			in:   head + "c=IN IP4 192.0.2.1\nm=video 4000/2 RTP/AVP 31\na=rtcp:4001\n",
			rw:   Rewrite{Addr: relay4, Media: []MediaRewrite{{Port: 30000}}},
			want: head + "c=IN IP4 203.0.113.5\nm=video 30000/2 RTP/AVP 31\na=rtcp:30001\n"},
		{name: "a=rtcp with hostname and odd spacing",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=rtcp:4001  in  ip4  rtcp.example.com \n",
			rw:   Rewrite{Addr: relay6, Media: r(30000)},
			want: head + "c=IN IP6 2001:db8::5\nm=audio 30000 RTP/AVP 0\na=rtcp:30001 IN IP6 2001:db8::5 \n"},
		{name: "IPv4-mapped relay address is IPv4",
			in:   head + "c=IN IP6 2001:db8::7\nm=audio 4000 RTP/AVP 0\n",
			rw:   Rewrite{Addr: netip.MustParseAddr("::ffff:203.0.113.5"), Media: r(30000)},
			want: head + "c=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\n"},
		{name: "session ICE kept while a stream left alone uses ICE",
			in:   head + "a=ice-ufrag:s\na=ice-pwd:p\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\nm=video 4002 RTP/AVP 31\na=candidate:1 1 UDP 1 192.0.2.1 4002 typ host\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "a=ice-ufrag:s\na=ice-pwd:p\nc=IN IP4 192.0.2.1\nm=audio 30000 RTP/AVP 0\nc=IN IP4 203.0.113.5\nm=video 4002 RTP/AVP 31\na=candidate:1 1 UDP 1 192.0.2.1 4002 typ host\n"},
		{name: "session ICE kept while a rewritten stream keeps ICE",
			in:   head + "a=ice-lite\na=ice-ufrag:s\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\nm=video 4002 RTP/AVP 31\na=candidate:1 1 UDP 1 192.0.2.1 4002 typ host\n",
			rw:   Rewrite{Addr: relay4, Media: []MediaRewrite{{Port: 30000, RemoveICE: true}, {Port: 30002}}},
			want: head + "a=ice-lite\na=ice-ufrag:s\nc=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\nm=video 30002 RTP/AVP 31\na=candidate:1 1 UDP 1 192.0.2.1 4002 typ host\n"},
		{name: "every ICE attribute removed, case-insensitively, session and media",
			in: head + "a=ice-lite\na=ICE-OPTIONS:trickle\na=end-of-candidates\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=ice-ufrag:u\na=ice-pwd:p\na=ice-mismatch\na=ice-pacing:50\n" +
				"a=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\na=remote-candidates:1 192.0.2.2 5000\na=end-of-candidates\na=ice-ufrag-not:kept\na=candidates:kept\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\na=ice-ufrag-not:kept\na=candidates:kept\n"},
		{name: "removing the last line keeps a missing final newline",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=sendrecv\na=end-of-candidates",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\na=sendrecv"},
		{name: "removing the last line drops blank lines before it too",
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=sendrecv \n\n \t\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\n\na=end-of-candidates",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: head + "c=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\na=sendrecv "},
		{name: "version with rewrite; o= username with spaces", version: true,
			in:   "v=0\no=Cisco SIP Phone 5 6 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n",
			rw:   Rewrite{Addr: relay4, Media: r(30000), Version: 18446744073709551615},
			want: "v=0\no=Cisco SIP Phone 5 18446744073709551615 IN IP4 192.0.2.1\nc=IN IP4 203.0.113.5\nm=audio 30000 RTP/AVP 0\n"},
		{name: "version only; relay address not needed", version: true,
			in:   head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n",
			rw:   Rewrite{Version: 3},
			want: "v=0\no=- 1 3 IN IP4 192.0.2.1\ns=-\nt=0 0\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n"},
		{name: "blank lines and trailing blanks kept",
			in:   "\n" + head + "c=IN IP4 192.0.2.1\t \n\nm=audio 4000 RTP/AVP 0  \n \n",
			rw:   Rewrite{Addr: relay4, Media: r(30000)},
			want: "\n" + head + "c=IN IP4 203.0.113.5\t \n\nm=audio 30000 RTP/AVP 0  \n \n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, le := range []string{"LF", "CRLF"} {
				in, want := []byte(tt.in), []byte(tt.want)
				if le == "CRLF" {
					if tt.noCRLF {
						continue
					}
					in, want = crlf(tt.in), crlf(tt.want)
				}
				got, err := Apply(in, tt.rw)
				if err != nil {
					t.Fatalf("%s: %v", le, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s:\n got %q\nwant %q", le, got, want)
				}
				if err := checkMinimalDiff(in, got, tt.version); err != nil {
					t.Errorf("%s: %v", le, err)
				}
				checkSemantics(t, in, got, tt.rw)
			}
		})
	}
}

func TestApplyRewriteErrors(t *testing.T) {
	body := []byte("v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n")
	tests := []struct {
		name string
		rw   Rewrite
		msg  string
	}{
		{"no relay address", Rewrite{Media: []MediaRewrite{{Port: 30000}}}, "relay address"},
		{"zoned relay address", Rewrite{Addr: netip.MustParseAddr("fe80::1%eth0"), Media: []MediaRewrite{{Port: 30000}}}, "relay address"},
		{"port too big", Rewrite{Addr: relay4, Media: []MediaRewrite{{Port: 65536}}}, "out of range"},
		{"negative port", Rewrite{Addr: relay4, Media: []MediaRewrite{{Port: -2}}}, "out of range"},
		{"RTCP port too big", Rewrite{Addr: relay4, Media: []MediaRewrite{{Port: 30000, RTCPPort: 70000}}}, "out of range"},
		{"no RTCP port after 65535", Rewrite{Addr: relay4, Media: []MediaRewrite{{Port: 65535}}}, "no RTCP port"},
		{"more media than m= lines", Rewrite{Addr: relay4, Media: []MediaRewrite{{Port: 30000}, {Port: 30002}}}, "1 m= lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Apply(body, tt.rw)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Apply = %q, %v; want error with %q", out, err, tt.msg)
			}
		})
	}
	// Extra entries that change nothing are fine.
	if _, err := Apply(body, Rewrite{Addr: relay4, Media: []MediaRewrite{{Port: 30000}, {}}}); err != nil {
		t.Errorf("trailing empty entry: %v", err)
	}
}

// Apply with an empty Rewrite returns the body byte for byte, for every
// fixture, and never returns the caller's buffer.
func TestApplyIdentity(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.sdp")
	for _, f := range files {
		in := readFile(t, f)
		out, err := Apply(in, Rewrite{})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !bytes.Equal(out, in) {
			t.Errorf("%s: Apply(Rewrite{}) changed the body:\n%q", f, out)
		}
		if len(out) > 0 && &out[0] == &in[0] {
			t.Errorf("%s: output aliases the input", f)
		}
	}
}

func TestSetVersion(t *testing.T) {
	in := readFile(t, "testdata/messy.sdp") // o= line ends in a bare LF
	for _, v := range []uint64{0, 1, 18446744073709551615} {
		out, err := SetVersion(in, v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkMinimalDiff(in, out, true); err != nil {
			t.Error(err)
		}
		d := mustParse(t, out)
		want := mustParse(t, in).Origin
		want.Version = v
		if d.Origin != want {
			t.Errorf("SetVersion(%d): origin %+v, want %+v", v, d.Origin, want)
		}
		if !bytes.Contains(out, []byte("o=MxSIP 0 "+itoa(v)+" IN IP4 10.0.0.99\n")) {
			t.Errorf("SetVersion(%d): %q", v, out)
		}
	}
	// Apply leaves a zero Version alone.
	out, _ := Apply(in, Rewrite{Version: 0})
	if !bytes.Equal(out, in) {
		t.Errorf("Apply with Version 0 changed the body")
	}
}

func itoa(v uint64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
		if v == 0 {
			return string(b)
		}
	}
}

// Apply reads the caller's buffer in place; nothing it returns may alias it.
func TestApplyErrorDoesNotAliasBody(t *testing.T) {
	body := []byte("v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:bogus\r\n")
	_, err := Apply(body, Rewrite{})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for i := range body {
		body[i] = 'X'
	}
	if err.Error() != msg || !strings.Contains(msg, `"bogus"`) {
		t.Errorf("error changed with the body: %q, was %q", err.Error(), msg)
	}
}
