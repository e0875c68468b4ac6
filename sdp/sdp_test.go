package sdp

import (
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// crlf turns a test SDP written with \n into one with CRLF line endings.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func mustParse(t *testing.T, body []byte) *Desc {
	t.Helper()
	d, err := Parse(body)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, body)
	}
	return d
}

var (
	ip    = netip.MustParseAddr
	ipp   = netip.MustParseAddrPort
	noIP  netip.Addr
	noIPP netip.AddrPort
)

func TestParseFixtures(t *testing.T) {
	type media struct {
		Type      string
		Port      int
		Proto     string
		Conn      netip.Addr
		RTCP      netip.AddrPort
		RTCPMux   bool
		Direction string
		ICE       bool
		Hold      bool
		RTP       bool
		Encoding  string
		ClockRate int
	}
	tests := []struct {
		file    string
		origin  Origin
		conn    netip.Addr
		connRaw string
		dir     string
		lite    bool
		media   []media
	}{
		{"baresip", Origin{"-", "3908776812", 2264598301, "IN", "IP4", "192.168.1.34"}, ip("192.168.1.34"), "192.168.1.34", "", false, []media{
			{"audio", 10052, "RTP/AVP", ip("192.168.1.34"), noIPP, true, "sendrecv", false, false, true, "opus", 48000}}},
		{"linphone", Origin{"alice", "2847", 1903, "IN", "IP4", "192.168.1.50"}, ip("192.168.1.50"), "192.168.1.50", "", false, []media{
			{"audio", 7078, "RTP/AVP", ip("192.168.1.50"), ipp("192.168.1.50:7079"), false, "sendrecv", true, false, true, "opus", 48000}}},
		{"sipp", Origin{"user1", "53655765", 2353687637, "IN", "IP4", "10.0.0.10"}, ip("10.0.0.10"), "10.0.0.10", "", false, []media{
			{"audio", 6000, "RTP/AVP", ip("10.0.0.10"), noIPP, false, "sendrecv", false, false, true, "PCMA", 8000}}},
		{"asterisk", Origin{"-", "1918224361", 1918224361, "IN", "IP4", "10.10.0.5"}, ip("10.10.0.5"), "10.10.0.5", "", false, []media{
			{"audio", 14562, "RTP/AVP", ip("10.10.0.5"), noIPP, false, "sendrecv", false, false, true, "PCMU", 8000}}},
		{"freeswitch", Origin{"FreeSWITCH", "1700012345", 1700012346, "IN", "IP4", "10.20.0.6"}, ip("10.20.0.6"), "10.20.0.6", "", false, []media{
			{"audio", 24062, "RTP/AVP", ip("10.20.0.6"), ipp("10.20.0.6:24063"), false, "sendrecv", false, false, true, "opus", 48000}}},
		{"webrtc", Origin{"-", "4611731400430051336", 2, "IN", "IP4", "127.0.0.1"}, noIP, "", "", false, []media{
			{"audio", 53412, "UDP/TLS/RTP/SAVPF", ip("198.51.100.40"), ipp("0.0.0.0:9"), true, "sendrecv", true, false, true, "opus", 48000},
			{"video", 53412, "UDP/TLS/RTP/SAVPF", ip("198.51.100.40"), ipp("0.0.0.0:9"), true, "sendrecv", true, false, true, "VP8", 90000}}},
		// c=0.0.0.0 with ICE is a trickle placeholder, not hold.
		{"firefox_trickle", Origin{"mozilla...THIS_IS_SDPARTA-99.0", "6215925624823426211", 0, "IN", "IP4", "0.0.0.0"}, noIP, "", "", false, []media{
			{"audio", 9, "UDP/TLS/RTP/SAVPF", ip("0.0.0.0"), noIPP, true, "sendrecv", true, false, true, "opus", 48000}}},
		{"hold_sendonly", Origin{"-", "20023", 20024, "IN", "IP4", "192.168.1.77"}, ip("192.168.1.77"), "192.168.1.77", "", false, []media{
			{"audio", 11780, "RTP/AVP", ip("192.168.1.77"), noIPP, false, "sendonly", false, true, true, "PCMU", 8000}}},
		{"hold_rfc2543", Origin{"CiscoSystemsSIP-GW-UserAgent", "8712", 4322, "IN", "IP4", "10.1.1.20"}, ip("0.0.0.0"), "0.0.0.0", "", false, []media{
			{"audio", 17446, "RTP/AVP", ip("0.0.0.0"), noIPP, false, "sendrecv", false, true, true, "G729", 8000}}},
		// First audio format 9 has no rtpmap: the static table gives G722/8000.
		{"bria_video", Origin{"-", "13324981370231469", 1, "IN", "IP4", "192.168.0.42"}, ip("192.168.0.42"), "192.168.0.42", "", false, []media{
			{"audio", 55710, "RTP/AVP", ip("192.168.0.42"), noIPP, false, "sendrecv", false, false, true, "G722", 8000},
			{"video", 54842, "RTP/AVP", ip("192.168.0.42"), noIPP, false, "sendrecv", false, false, true, "H264", 90000}}},
		{"rejected", Origin{"-", "1918224361", 1918224362, "IN", "IP4", "10.10.0.5"}, ip("10.10.0.5"), "10.10.0.5", "", false, []media{
			{"audio", 18894, "RTP/AVP", ip("10.10.0.5"), noIPP, false, "sendrecv", false, false, true, "PCMU", 8000},
			{"video", 0, "RTP/AVP", ip("10.10.0.5"), noIPP, false, "sendrecv", false, false, true, "", 90000}}},
		{"ipv6", Origin{"root", "1474625375", 1474625375, "IN", "IP6", "2001:db8:85a3::8a2e:370:7334"}, ip("2001:db8:85a3::8a2e:370:7334"), "2001:db8:85a3::8a2e:370:7334", "", false, []media{
			{"audio", 52012, "RTP/AVP", ip("2001:db8:85a3::8a2e:370:7334"), ipp("[2001:db8:85a3::8a2e:370:7334]:52013"), false, "sendrecv", false, false, true, "G722", 8000}}},
		// Session-level a=recvonly applies to both streams.
		{"rfc_fields", Origin{"jdoe", "2890844526", 2890842807, "IN", "IP4", "10.47.16.5"}, ip("10.47.16.5"), "10.47.16.5", "recvonly", false, []media{
			{"audio", 49170, "RTP/AVP", ip("10.47.16.5"), noIPP, false, "recvonly", false, false, true, "PCMU", 8000},
			{"video", 51372, "RTP/AVP", ip("10.47.16.5"), noIPP, false, "recvonly", false, false, true, "h263-1998", 90000}}},
		{"polycom_media_conn", Origin{"-", "1700000000", 1700000000, "IN", "IP4", "172.16.5.21"}, noIP, "", "sendrecv", false, []media{
			{"audio", 2226, "RTP/AVP", ip("172.16.5.21"), noIPP, false, "sendrecv", false, false, true, "G722", 8000},
			{"video", 2228, "RTP/AVP", ip("172.16.5.21"), noIPP, false, "sendrecv", false, false, true, "H264", 90000}}},
		{"pjsip_ice", Origin{"-", "3908828473", 3908828473, "IN", "IP4", "192.168.1.9"}, noIP, "", "", false, []media{
			{"audio", 4000, "RTP/AVP", ip("192.168.1.9"), ipp("192.168.1.9:4001"), false, "sendrecv", true, false, true, "PCMA", 8000}}},
		{"t38", Origin{"-", "1918224361", 1918224363, "IN", "IP4", "10.10.0.5"}, ip("10.10.0.5"), "10.10.0.5", "", false, []media{
			{"audio", 0, "RTP/AVP", ip("10.10.0.5"), noIPP, false, "sendrecv", false, false, true, "PCMU", 8000},
			{"image", 4402, "udptl", ip("10.10.0.5"), noIPP, false, "sendrecv", false, false, false, "", 0}}},
		{"multicast", Origin{"jdoe", "2890844526", 2890842807, "IN", "IP4", "10.47.16.5"}, ip("224.2.17.12"), "224.2.17.12/127", "recvonly", false, []media{
			{"audio", 49170, "RTP/AVP", ip("224.2.17.12"), noIPP, false, "recvonly", false, false, true, "PCMU", 8000},
			{"video", 51372, "RTP/AVP", ip("224.2.17.12"), noIPP, false, "recvonly", false, false, true, "h263-1998", 90000}}},
		// Lower-case "in ip4", extra blanks, "a=RTCP: 5005", "a=SendOnly",
		// lower-case g729, a tab in c=, mixed line endings, a blank line.
		{"messy", Origin{"MxSIP", "0", 0, "IN", "IP4", "10.0.0.99"}, ip("10.0.0.99"), "10.0.0.99", "", false, []media{
			{"audio", 5004, "RTP/AVP", ip("10.0.0.99"), ipp("10.0.0.99:5005"), false, "sendonly", false, true, true, "g729", 8000},
			{"video", 5006, "RTP/AVP", ip("10.0.0.99"), noIPP, false, "sendrecv", false, false, true, "H263", 90000}}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			d := mustParse(t, readFile(t, "testdata/"+tt.file+".sdp"))
			if d.Origin != tt.origin {
				t.Errorf("Origin = %+v, want %+v", d.Origin, tt.origin)
			}
			if d.Conn != tt.conn || d.ConnRaw != tt.connRaw || d.Direction != tt.dir || d.ICELite != tt.lite {
				t.Errorf("session Conn %v %q Direction %q ICELite %v, want %v %q %q %v",
					d.Conn, d.ConnRaw, d.Direction, d.ICELite, tt.conn, tt.connRaw, tt.dir, tt.lite)
			}
			var got []media
			for _, m := range d.Media {
				got = append(got, media{m.Type, m.Port, m.Proto, m.Conn, m.RTCP, m.RTCPMux, m.Direction, m.ICE, m.Hold(), m.RTP(), m.Encoding, m.ClockRate})
				if m.NumPorts != 1 {
					t.Errorf("%s NumPorts = %d", m.Type, m.NumPorts)
				}
			}
			if !slices.Equal(got, tt.media) {
				t.Errorf("media:\n got %+v\nwant %+v", got, tt.media)
			}
		})
	}
	files, _ := filepath.Glob("testdata/*.sdp")
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".sdp"); !seen[name] {
			t.Errorf("fixture %s has no Parse expectations", f)
		}
	}
}

func TestParseFormats(t *testing.T) {
	d := mustParse(t, readFile(t, "testdata/linphone.sdp"))
	if want := []string{"96", "97", "98", "0", "8", "18", "101", "99", "100"}; !slices.Equal(d.Media[0].Formats, want) {
		t.Errorf("Formats = %q, want %q", d.Media[0].Formats, want)
	}
	d = mustParse(t, readFile(t, "testdata/t38.sdp"))
	if want := []string{"t38"}; !slices.Equal(d.Media[1].Formats, want) {
		t.Errorf("Formats = %q, want %q", d.Media[1].Formats, want)
	}
}

func TestParseCases(t *testing.T) {
	const head = "v=0\no=- 1 2 IN IP4 192.0.2.1\ns=-\nt=0 0\n"
	tests := []struct {
		name string
		sdp  string
		test func(t *testing.T, d *Desc)
	}{
		{"port count", head + "c=IN IP4 192.0.2.1\nm=video 49170/2 RTP/AVP 31\n", func(t *testing.T, d *Desc) {
			if m := d.Media[0]; m.Port != 49170 || m.NumPorts != 2 || m.Encoding != "H261" || m.ClockRate != 90000 {
				t.Errorf("%+v", m)
			}
		}},
		{"media c= overrides session c=", head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.9\nm=audio 4002 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if d.Media[0].Conn != ip("192.0.2.9") || d.Media[1].Conn != ip("192.0.2.1") {
				t.Errorf("Conn %v %v", d.Media[0].Conn, d.Media[1].Conn)
			}
		}},
		{"FQDN c=", head + "c=IN IP4 media.example.com\nm=audio 4000 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if d.Conn.IsValid() || d.ConnRaw != "media.example.com" || d.Media[0].Conn.IsValid() {
				t.Errorf("Conn %v %q, media %v", d.Conn, d.ConnRaw, d.Media[0].Conn)
			}
		}},
		{"media FQDN c= does not fall back", head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nc=IN IP4 media.example.com\n", func(t *testing.T, d *Desc) {
			if d.Media[0].Conn.IsValid() {
				t.Errorf("Conn %v", d.Media[0].Conn)
			}
		}},
		{"no c= at all", head + "m=audio 4000 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if d.Conn.IsValid() || d.ConnRaw != "" || d.Media[0].Conn.IsValid() || d.Media[0].Hold() {
				t.Errorf("%+v", d)
			}
		}},
		{"IPv4-mapped c= is unmapped", head + "c=IN IP6 ::ffff:192.0.2.7\nm=audio 4000 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if d.Conn != ip("192.0.2.7") {
				t.Errorf("Conn %v", d.Conn)
			}
		}},
		{"zone is not an address", head + "c=IN IP6 fe80::1%eth0\nm=audio 4000 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if d.Conn.IsValid() || d.ConnRaw != "fe80::1%eth0" {
				t.Errorf("Conn %v %q", d.Conn, d.ConnRaw)
			}
		}},
		{"IPv6 hold", head + "c=IN IP6 ::\nm=audio 4000 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if !d.Media[0].Hold() {
				t.Error("c=IN IP6 :: is not hold")
			}
		}},
		{"inactive is hold, recvonly is not", head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=inactive\nm=audio 4002 RTP/AVP 0\na=recvonly\n", func(t *testing.T, d *Desc) {
			if !d.Media[0].Hold() || d.Media[1].Hold() {
				t.Errorf("Hold %v %v", d.Media[0].Hold(), d.Media[1].Hold())
			}
		}},
		{"media direction overrides session", head + "a=sendonly\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=sendrecv\nm=audio 4002 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if d.Direction != "sendonly" || d.Media[0].Direction != "sendrecv" || d.Media[1].Direction != "sendonly" || d.Media[0].Hold() || !d.Media[1].Hold() {
				t.Errorf("%q %q %q", d.Direction, d.Media[0].Direction, d.Media[1].Direction)
			}
		}},
		{"rtcp without address defaults to media c=", head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.9\na=rtcp:4001\n", func(t *testing.T, d *Desc) {
			if d.Media[0].RTCP != ipp("192.0.2.9:4001") {
				t.Errorf("RTCP %v", d.Media[0].RTCP)
			}
		}},
		{"rtcp with hostname", head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\na=rtcp:4001 IN IP4 rtcp.example.com\n", func(t *testing.T, d *Desc) {
			if r := d.Media[0].RTCP; r.Addr().IsValid() || r.Port() != 4001 {
				t.Errorf("RTCP %v", r)
			}
		}},
		{"rtcp-mux and ICE at media level", head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/SAVPF 0\na=rtcp-mux\na=candidate:1 1 UDP 1 192.0.2.1 4000 typ host\nm=audio 4002 RTP/AVP 0\na=ice-ufrag:x\nm=audio 4004 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if !d.Media[0].RTCPMux || d.Media[1].RTCPMux || !d.Media[0].ICE || !d.Media[1].ICE || d.Media[2].ICE {
				t.Errorf("%+v", d.Media)
			}
		}},
		{"session ice-ufrag and ice-lite", head + "a=ice-lite\na=ice-ufrag:abcd\na=ice-pwd:secret\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if !d.ICELite || !d.Media[0].ICE {
				t.Errorf("ICELite %v ICE %v", d.ICELite, d.Media[0].ICE)
			}
		}},
		{"clock rates", head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 18\nm=audio 4002 RTP/AVP 9\nm=audio 4004 RTP/AVP 96\na=rtpmap:96 AMR-WB/16000/1\nm=video 4006 RTP/AVP 98\nm=audio 4008 RTP/AVP 97\nm=audio 4010 RTP/AVP 3\na=rtpmap:3 gsm/8000\n", func(t *testing.T, d *Desc) {
			got := [][2]any{}
			for _, m := range d.Media {
				got = append(got, [2]any{m.Encoding, m.ClockRate})
			}
			want := [][2]any{{"G729", 8000}, {"G722", 8000}, {"AMR-WB", 16000}, {"", 90000}, {"", 0}, {"gsm", 8000}}
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		}},
		{"rtpmap of another format does not count", head + "c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0 96\na=rtpmap:96 opus/48000/2\n", func(t *testing.T, d *Desc) {
			if m := d.Media[0]; m.Encoding != "PCMU" || m.ClockRate != 8000 {
				t.Errorf("%s/%d", m.Encoding, m.ClockRate)
			}
		}},
		{"non-RTP proto has no encoding", head + "c=IN IP4 192.0.2.1\nm=application 5000 UDP/DTLS/SCTP webrtc-datachannel\nm=audio 5002 TCP/RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			for _, m := range d.Media {
				if m.RTP() || m.Encoding != "" || m.ClockRate != 0 {
					t.Errorf("%+v", m)
				}
			}
		}},
		{"RTP protos in any case", head + "c=IN IP4 192.0.2.1\nm=audio 4000 rtp/avp 0\nm=audio 4002 RTP/AVPF 0\nm=audio 4004 RTP/SAVP 0\nm=audio 4006 UDP/TLS/RTP/SAVP 0\n", func(t *testing.T, d *Desc) {
			for _, m := range d.Media {
				if !m.RTP() {
					t.Errorf("%s is RTP", m.Proto)
				}
			}
		}},
		{"type lower-cased, proto as written", head + "c=IN IP4 192.0.2.1\nm=AUDIO 4000 RTP/avp 0\n", func(t *testing.T, d *Desc) {
			if d.Media[0].Type != "audio" || d.Media[0].Proto != "RTP/avp" {
				t.Errorf("%q %q", d.Media[0].Type, d.Media[0].Proto)
			}
		}},
		{"username with spaces", "v=0\no=Cisco SIP Phone 5 6 IN IP4 192.0.2.1\ns=-\nt=0 0\n", func(t *testing.T, d *Desc) {
			if d.Origin != (Origin{"Cisco SIP Phone", "5", 6, "IN", "IP4", "192.0.2.1"}) {
				t.Errorf("%+v", d.Origin)
			}
		}},
		{"no media", head + "c=IN IP4 192.0.2.1\n", func(t *testing.T, d *Desc) {
			if len(d.Media) != 0 {
				t.Errorf("%+v", d.Media)
			}
		}},
		{"unknown lines and attributes, blank lines, no final newline", "\r\nv=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nx=whatever\r\nt=0 0\r\nr=7d 1h 0 25h\r\nt=0 0\r\nb=AS:64\r\nk=clear:secret\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=\r\na=:\r\na=foo\r\na=bar:\r\n\r\n  \r\nm=video 0 RTP/AVP", func(t *testing.T, d *Desc) {
			if len(d.Media) != 2 || d.Media[1].Port != 0 || len(d.Media[1].Formats) != 0 {
				t.Errorf("%+v", d.Media)
			}
		}},
		{"multicast with TTL", head + "c=IN IP4 233.252.0.1/127/3\nm=audio 4000 RTP/AVP 0\n", func(t *testing.T, d *Desc) {
			if d.Conn != ip("233.252.0.1") || d.ConnRaw != "233.252.0.1/127/3" {
				t.Errorf("%v %q", d.Conn, d.ConnRaw)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.test(t, mustParse(t, []byte(tt.sdp)))
		})
	}
}

func TestParseErrors(t *testing.T) {
	const head = "v=0\no=- 1 2 IN IP4 192.0.2.1\ns=-\nt=0 0\n"
	tests := []struct {
		name, sdp string
		line      int
		msg       string // part of the error text
	}{
		{"empty", "", 0, "no v= line"},
		{"blank", "\r\n \r\n", 0, "no v= line"},
		{"not sdp", "hello world\n", 1, "expected v=0"},
		{"v= not first", "o=- 1 2 IN IP4 192.0.2.1\nv=0\n", 1, "expected v=0"},
		{"v=1", "v=1\n", 1, "unsupported SDP version"},
		{"second v=", head + "v=0\n", 5, "second v="},
		{"missing o=", "v=0\ns=-\nt=0 0\n", 0, "no o= line"},
		{"short o=", "v=0\no=- 1 IN IP4 192.0.2.1\n", 2, "o= line needs"},
		{"bad o= version", "v=0\no=- 1 x2 IN IP4 192.0.2.1\n", 2, "session version \"x2\""},
		{"o= version overflow", "v=0\no=- 1 18446744073709551616 IN IP4 192.0.2.1\n", 2, "session version"},
		{"second o=", head + "o=- 1 2 IN IP4 192.0.2.1\n", 5, "second o="},
		{"o= in media", head + "m=audio 4000 RTP/AVP 0\no=- 1 2 IN IP4 192.0.2.1\n", 6, "inside a media"},
		{"garbage line", head + "this is not sdp\n", 5, "not a <type>=<value> line"},
		{"no type", head + "=foo\n", 5, "not a <type>=<value> line"},
		{"digit type", head + "1=foo\n", 5, "not a <type>=<value> line"},
		{"m= bad port", head + "m=audio abc RTP/AVP 0\n", 5, "m= port \"abc\""},
		{"m= port too big", head + "m=audio 65536 RTP/AVP 0\n", 5, "m= port"},
		{"m= negative port", head + "m=audio -1 RTP/AVP 0\n", 5, "m= port"},
		{"m= bad count", head + "m=audio 4000/0 RTP/AVP 0\n", 5, "m= port \"4000/0\""},
		{"m= too short", head + "m=audio 4000\n", 5, "m= line needs"},
		{"c= too short", head + "c=IN IP4\n", 5, "c= line needs"},
		{"c= too long", head + "c=IN IP4 192.0.2.1 extra\n", 5, "c= line needs"},
		{"second session c=", head + "c=IN IP4 192.0.2.1\nc=IN IP4 192.0.2.2\n", 6, "second session-level c="},
		{"second media c=", head + "m=audio 4000 RTP/AVP 0\nc=IN IP4 192.0.2.1\nc=IN IP4 192.0.2.2\n", 7, "second c= line in media description 0"},
		{"a=rtcp bad port", head + "m=audio 4000 RTP/AVP 0\na=rtcp:x\n", 6, "a=rtcp port \"x\""},
		{"a=rtcp no value", head + "m=audio 4000 RTP/AVP 0\na=rtcp\n", 6, "a=rtcp port"},
		{"a=rtcp bad address", head + "m=audio 4000 RTP/AVP 0\na=rtcp:4001 IN IP4\n", 6, "a=rtcp address"},
		{"CRLF line numbers", "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\n\r\nm=audio x RTP/AVP 0\r\n", 4, "m= port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse([]byte(tt.sdp))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse = %+v, %v; want a *SyntaxError", d, err)
			}
			if se.Line != tt.line || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q (line %d), want line %d and %q", err, se.Line, tt.line, tt.msg)
			}
			if tt.line > 0 && !strings.Contains(err.Error(), "line ") {
				t.Errorf("error %q does not name the line", err)
			}
			// Apply and SetVersion reject the same bodies the same way.
			if _, aerr := Apply([]byte(tt.sdp), Rewrite{}); aerr == nil || aerr.Error() != err.Error() {
				t.Errorf("Apply error %v, want %v", aerr, err)
			}
			if _, serr := SetVersion([]byte(tt.sdp), 7); serr == nil || serr.Error() != err.Error() {
				t.Errorf("SetVersion error %v, want %v", serr, err)
			}
		})
	}
}

// Session-level a=rtcp (meaningless) is tolerated, even malformed.
func TestParseSessionRTCPIgnored(t *testing.T) {
	d := mustParse(t, []byte("v=0\no=- 1 2 IN IP4 192.0.2.1\na=rtcp:junk\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n"))
	if d.Media[0].RTCP != noIPP {
		t.Errorf("RTCP %v", d.Media[0].RTCP)
	}
}

// Parse's result does not alias the caller's buffer.
func TestParseCopiesBody(t *testing.T) {
	body := readFile(t, "testdata/sipp.sdp")
	d := mustParse(t, body)
	for i := range body {
		body[i] = 'X'
	}
	if d.Origin.Username != "user1" || d.ConnRaw != "10.0.0.10" || d.Media[0].Formats[0] != "8" {
		t.Errorf("Desc changed with the body: %+v", d)
	}
}
