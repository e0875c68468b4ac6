package calltrace

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// col and arrow describe columns and arrows in one line each, so a test
// table can list them.
func col(c Column) string { return c.ID + " " + c.Kind + " " + c.Addr }

func arrow(a Arrow) string {
	var kinds []string
	for _, f := range a.Fixes {
		kinds = append(kinds, f.Kind)
	}
	s := fmt.Sprintf("%d>%d/%d %s [%s]", a.From, a.To, a.Through, a.Label, strings.Join(kinds, " "))
	if a.Retransmission {
		s += " again"
	}
	return s
}

func TestAnalyze(t *testing.T) {
	for _, tc := range []struct {
		name    string
		steps   []step
		columns []string
		arrows  []string
	}{
		{
			name:  "NATed caller to NATed callee",
			steps: natCall("c"),
			columns: []string{
				"caller-phone phone 10.0.0.5:5060",
				"caller-nat nat 127.0.0.1:40312",
				"sipedge sipedge 127.0.0.1:5060",
				"callee-nat nat 127.0.0.1:40400",
				"callee-phone phone 192.168.1.20:5060",
			},
			arrows: []string{
				"0>2/1 INVITE (SDP) [rport contact]",
				"2>0/1 100 Trying []",
				"2>4/3 INVITE (SDP) [route record-route sdp]",
				"4>2/3 100 Trying []",
				"4>2/3 180 Ringing [contact]",
				"2>0/1 180 Ringing []",
				"4>2/3 200 OK (SDP) [contact]",
				"2>0/1 200 OK (SDP) [sdp]",
				"2>0/1 200 OK (SDP) [sdp] again",
				"0>2/1 ACK [rport]",
				"2>4/3 ACK [route]",
				"4>2/3 BYE [rport]",
				"2>0/1 BYE [route]",
				"0>2/1 200 OK []",
				"2>4/3 200 OK []",
			},
		},
		{
			name:  "trunk callee without NAT",
			steps: trunkCall("c", true),
			columns: []string{
				"caller-phone phone 10.0.0.5:5060",
				"caller-nat nat 127.0.0.1:40312",
				"sipedge sipedge 127.0.0.1:5060",
				"callee peer 203.0.113.9:5060",
			},
			arrows: []string{
				"0>2/1 INVITE (SDP) [rport contact]",
				"2>3/-1 INVITE (SDP) [record-route sdp]",
				"3>2/-1 200 OK (SDP) []",
				"2>0/1 200 OK (SDP) [sdp]",
			},
		},
		{
			name:  "private SDP passed on",
			steps: trunkCall("c", false),
			columns: []string{
				"caller-phone phone 10.0.0.5:5060",
				"caller-nat nat 127.0.0.1:40312",
				"sipedge sipedge 127.0.0.1:5060",
				"callee peer 203.0.113.9:5060",
			},
			arrows: []string{
				"0>2/1 INVITE (SDP) [rport contact]",
				"2>3/-1 INVITE (SDP) [record-route warning]",
				"3>2/-1 200 OK (SDP) []",
				"2>0/1 200 OK (SDP) [sdp]",
			},
		},
		{
			name:  "forked to two flows",
			steps: forkedCall("c"),
			columns: []string{
				"caller-phone phone 10.0.0.5:5060",
				"caller-nat nat 127.0.0.1:40312",
				"sipedge sipedge 127.0.0.1:5060",
				"callee-nat nat 127.0.0.1:40400",
				"callee-phone phone 192.168.1.20:5060",
				"peer2-nat nat 127.0.0.1:40500",
				"peer2-phone phone 192.168.1.30:5060", // from the Request-URI: it sent no Contact
			},
			arrows: []string{
				"0>2/1 INVITE (SDP) [rport contact]",
				"2>4/3 INVITE (SDP) [route record-route sdp]",
				"2>6/5 INVITE (SDP) [route record-route sdp]",
				"6>2/5 100 Trying []",
				"4>2/3 200 OK (SDP) [contact]",
				"2>6/5 CANCEL [route]",
				"2>0/1 200 OK (SDP) [sdp]",
				"6>2/5 487 Request Terminated []",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := Analyze(record(t, "c", tc.steps))
			var cols, arrows []string
			for _, c := range l.Columns {
				cols = append(cols, col(c))
			}
			for i, a := range l.Arrows {
				arrows = append(arrows, arrow(a))
				if a.Seq != i || a.OffsetMS != float64(10*i) {
					t.Errorf("arrow %d: seq %d, offset %v", i, a.Seq, a.OffsetMS)
				}
			}
			if !slices.Equal(cols, tc.columns) {
				t.Errorf("columns:\n%s\nwant:\n%s", strings.Join(cols, "\n"), strings.Join(tc.columns, "\n"))
			}
			if !slices.Equal(arrows, tc.arrows) {
				t.Errorf("arrows:\n%s\nwant:\n%s", strings.Join(arrows, "\n"), strings.Join(tc.arrows, "\n"))
			}
		})
	}
}

// TestFixTexts checks the words an admin reads on the NATed call.
func TestFixTexts(t *testing.T) {
	l := Analyze(record(t, "n", natCall("n")))
	want := map[int][]string{
		0: {"Via says 10.0.0.5:5060, the packet came from 127.0.0.1:40312: responses go there (rport/received)",
			"Contact 10.0.0.5:5060 cannot be reached from outside; requests in this call go to 127.0.0.1:40312 through the NAT"},
		2: {"sent to the flow 127.0.0.1:40400 the phone registered from, not to its Contact 192.168.1.20:5060",
			"sipedge put itself in the path (Record-Route), so in-dialog requests come back through it",
			"SDP c=10.0.0.5:4000 replaced by the relay 127.0.0.1:30000: media is anchored"},
		7:  {"SDP c=192.168.1.20:5000 replaced by the relay 127.0.0.1:30002: media is anchored"},
		12: {"sent to the flow 127.0.0.1:40312 this call uses, not to its Contact 10.0.0.5:5060"},
	}
	for i, texts := range want {
		var got []string
		for _, f := range l.Arrows[i].Fixes {
			got = append(got, f.Text)
		}
		if !slices.Equal(got, texts) {
			t.Errorf("arrow %d fixes:\n%s\nwant:\n%s", i, strings.Join(got, "\n"), strings.Join(texts, "\n"))
		}
	}
	w := Analyze(record(t, "w", trunkCall("w", false))).Arrows[1].Fixes[1]
	if w.Text != "SDP offers private address 10.0.0.5:4000 and was passed on unchanged: expect one-way or no audio" {
		t.Errorf("warning: %q", w.Text)
	}
	if c := Analyze(record(t, "n", natCall("n"))).Columns; c[0].Note != "private address, as the phone claims it" ||
		c[1].Note != "the NAT's public side, as observed" || c[0].Label != "caller phone" || c[1].Label != "caller's NAT" ||
		c[3].Label != "callee's NAT" || c[4].Label != "callee phone" {
		t.Errorf("columns: %+v", c)
	}
}

// TestAnalyzeGarbage: malformed messages give no fixes and no panic.
func TestAnalyzeGarbage(t *testing.T) {
	tr := Trace{Messages: []Message{
		{In: true, Transport: "udp", Remote: "198.51.100.1:1", Local: edgeAddr, Text: "garbage\r\n\r\n"},
		{In: true, Transport: "udp", Remote: "198.51.100.2:2", Local: edgeAddr, Text: "INVITE sip:x SIP/2.0\r\nVia: \r\nContact: <\r\nCSeq:\r\nTo: <sip:x;tag=1\r\n\r\nv=0\r\nc=IN\r\nm=audio\r\n"},
		{In: false, Transport: "udp", Remote: "198.51.100.3:3", Local: "[::1]:5060", Text: "SIP/2.0 999\r\nCSeq: x\r\nRecord-Route: ,,<,\r\n"},
		{In: true, Transport: "tcp", Remote: "not an address", Text: ""},
		{In: false, Transport: "udp", Remote: "198.51.100.2:2", Text: "BYE sip:a@[::1 SIP/2.0\r\nVia: SIP/2.0/UDP [::1:99999\r\nContact: sip:@:\r\n\r\n"},
		{In: true, Transport: "udp", Remote: "198.51.100.2:2", Text: "ACK sip:x SIP/2.0\r\nVia: SIP/2.0/UDP x.invalid;branch=1\r\nv: SIP/2.0/UDP 10.0.0.1\r\n\r\n"},
	}}
	l := Analyze(tr)
	var cols []string
	for _, c := range l.Columns {
		cols = append(cols, col(c))
	}
	want := []string{
		"caller-phone phone x.invalid:5060", // a Via host that never resolves
		"caller-nat nat 198.51.100.2:2",
		"sipedge sipedge 127.0.0.1:5060, [::1]:5060",
		"peer2 peer 198.51.100.1:1",
		"peer3 peer 198.51.100.3:3",
		"peer4 peer not an address",
	}
	if !slices.Equal(cols, want) {
		t.Errorf("columns:\n%s\nwant:\n%s", strings.Join(cols, "\n"), strings.Join(want, "\n"))
	}
	var arrows []string
	for _, a := range l.Arrows {
		arrows = append(arrows, arrow(a))
	}
	wantArrows := []string{
		"3>2/-1 (not SIP) []",
		"0>2/1 INVITE (SDP) []",
		"2>4/-1 999 []",
		"5>2/-1 (not SIP) []",
		"2>0/1 BYE []",
		"0>2/1 ACK [rport]",
	}
	if !slices.Equal(arrows, wantArrows) {
		t.Errorf("arrows:\n%s\nwant:\n%s", strings.Join(arrows, "\n"), strings.Join(wantArrows, "\n"))
	}
	if l := Analyze(Trace{}); len(l.Columns) != 1 || l.Arrows == nil {
		t.Errorf("empty trace: %+v", l)
	}
}

func TestParse(t *testing.T) {
	m := parse("SIP/2.0 183 Session Progress\r\n" +
		"v: SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK9 , SIP/2.0/UDP 10.0.0.9\r\n" +
		"t: \"Bob, Jr\" <sip:bob@example.com;user=phone>;Tag=xyz\r\n" +
		"f: sip:alice@example.com;tag=a\r\n" +
		"m: <sips:bob@[2001:db8::2]>;expires=60\r\n" +
		"CSeq:  42   INVITE\r\n" +
		"Record-Route: <sip:p1;lr>, \"x,y\" <sip:p2;lr>\r\nRecord-Route: <sip:p3>\r\n" +
		"c: Application/SDP\r\n\r\n" +
		"v=0\r\nc=IN IP6 2001:db8::5\r\nm=audio 7000/2 RTP/AVP 0\r\nc=IN IP4 10.1.1.1/127\r\nm=video 7002 RTP/AVP 96\r\nc=IN IP4 10.9.9.9\r\n")
	got := fmt.Sprintf("%v %q %d %q %q %d %q %q %q %v %q %q %q %q %v %q %q",
		m.request, m.method, m.status, m.reason, m.cseq, m.cseqNum, m.from, m.to, m.toTag, m.hasTag,
		m.via, m.branch, m.contact, m.rr, m.sdp, m.sdpAddr, m.sdpPort)
	want := `false "INVITE" 183 "Session Progress" "42 INVITE" 42 "sip:alice@example.com" "sip:bob@example.com;user=phone" "xyz" true ` +
		`"[2001:db8::1]:5070" "z9hG4bK9" "sips:bob@[2001:db8::2]" ["<sip:p1;lr>" "\"x,y\" <sip:p2;lr>" "<sip:p3>"] true "10.1.1.1" "7000"`
	if got != want {
		t.Errorf("parse:\n%s\nwant:\n%s", got, want)
	}
	for _, tc := range []struct{ uri, want string }{
		{"sip:alice@10.0.0.5", "10.0.0.5:5060"},
		{"sips:bob@[2001:db8::2]", "[2001:db8::2]:5061"},
		{"sip:+1;npdi@192.0.2.1:5080;user=phone", "192.0.2.1:5080"},
		{"SIP:Host.Example.COM:5062?subject=x", "host.example.com:5062"},
		{"tel:+15551234", ""},
		{"sip:a@b:notaport", "b:notaport"},
		{"garbage", ""},
	} {
		if got, _ := uriHostPort(tc.uri); got != tc.want {
			t.Errorf("uriHostPort(%q) = %q, want %q", tc.uri, got, tc.want)
		}
	}
}

// TestNameAddr: a display name may hold '<' and escaped quotes; the URI is
// the one in the first unquoted angle brackets.
func TestNameAddr(t *testing.T) {
	for _, tt := range []struct{ in, uri, params string }{
		{`"Alice <script>x</script>" <sip:alice@example.com>;tag=1`, "sip:alice@example.com", ";tag=1"},
		{`"A \"<b>\" c" <sip:a@b>`, "sip:a@b", ""},
		{`<sip:bob@example.com>;tag=2`, "sip:bob@example.com", ";tag=2"},
		{`sip:carol@example.com;tag=3`, "sip:carol@example.com", ";tag=3"},
	} {
		uri, params := nameAddr(tt.in)
		if uri != tt.uri || params != tt.params {
			t.Errorf("nameAddr(%q) = %q, %q; want %q, %q", tt.in, uri, params, tt.uri, tt.params)
		}
	}
}
