package calltrace

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// Addresses of the test calls. The NATs' public sides are on loopback, as
// in sipedge's tests that run phones behind a simulated NAT.
const (
	edgeAddr   = "127.0.0.1:5060"  // sipedge
	callerNAT  = "127.0.0.1:40312" // the caller's NAT, public side
	calleeNAT  = "127.0.0.1:40400" // the callee's NAT, public side
	callee2NAT = "127.0.0.1:40500" // a second phone of the callee
	trunkAddr  = "203.0.113.9:5060"
)

// step is one message of a test call, as sipedge reads or writes it.
type step struct {
	in     bool
	remote string
	text   string
}

// sipMsg writes a SIP message with CRLF line ends from head (lines
// separated by '\n') and an optional SDP body.
func sipMsg(head, sdp string) string {
	head = strings.TrimSpace(head)
	body := ""
	if sdp != "" {
		body = strings.ReplaceAll(strings.TrimSpace(sdp), "\n", "\r\n") + "\r\n"
		head += "\nContent-Type: application/sdp"
	}
	head += fmt.Sprintf("\nContent-Length: %d", len(body))
	return strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body
}

func sdpBody(addr string, port int) string {
	return fmt.Sprintf("v=0\no=- 1 1 IN IP4 %s\ns=-\nc=IN IP4 %s\nt=0 0\nm=audio %d RTP/AVP 0 8\na=rtpmap:0 PCMU/8000", addr, addr, port)
}

// dialog headers of the test calls.
const (
	callerTo   = "From: \"Alice\" <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>"
	callerToB1 = "From: \"Alice\" <sip:alice@example.com>;tag=a1\nTo: <sip:bob@example.com>;tag=b1"
	calleeBYE  = "From: <sip:bob@example.com>;tag=b1\nTo: \"Alice\" <sip:alice@example.com>;tag=a1"
	viaA1      = "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa1;rport"
	viaA1Recv  = "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa1;rport=40312;received=127.0.0.1"
	rr         = "Record-Route: <sip:127.0.0.1:5060;lr;ftag=a1>"
)

// natCall is a call from a NATed phone (10.0.0.5 behind callerNAT) to a
// NATed phone (192.168.1.20 behind calleeNAT), with media anchored at the
// relay and the callee hanging up.
func natCall(callID string) []step {
	cid := "Call-ID: " + callID
	return []step{
		{true, callerNAT, sipMsg(`INVITE sip:bob@example.com SIP/2.0
`+viaA1+`
Max-Forwards: 70
`+callerTo+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:alice@10.0.0.5:5060>
Proxy-Authorization: Digest username="alice", realm="example.com", nonce="n1", uri="sip:bob@example.com", response="0123456789abcdef0123456789abcdef", algorithm=MD5`, sdpBody("10.0.0.5", 4000))},
		{false, callerNAT, sipMsg(`SIP/2.0 100 Trying
`+viaA1Recv+`
`+callerTo+`
`+cid+`
CSeq: 1 INVITE`, "")},
		{false, calleeNAT, sipMsg(`INVITE sip:bob@192.168.1.20:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKe1
`+viaA1Recv+`
`+rr+`
Max-Forwards: 69
`+callerTo+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:alice@10.0.0.5:5060>`, sdpBody("127.0.0.1", 30000))},
		{true, calleeNAT, sipMsg(`SIP/2.0 100 Trying
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKe1
`+viaA1Recv+`
`+callerTo+`
`+cid+`
CSeq: 1 INVITE`, "")},
		{true, calleeNAT, sipMsg(`SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKe1
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:bob@192.168.1.20:5060>`, "")},
		{false, callerNAT, sipMsg(`SIP/2.0 180 Ringing
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:bob@192.168.1.20:5060>`, "")},
		{true, calleeNAT, sipMsg(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKe1
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:bob@192.168.1.20:5060>`, sdpBody("192.168.1.20", 5000))},
		{false, callerNAT, sipMsg(`SIP/2.0 200 OK
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:bob@192.168.1.20:5060>`, sdpBody("127.0.0.1", 30002))},
		{false, callerNAT, sipMsg(`SIP/2.0 200 OK
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:bob@192.168.1.20:5060>`, sdpBody("127.0.0.1", 30002))},
		{true, callerNAT, sipMsg(`ACK sip:bob@192.168.1.20:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa2;rport
Route: <sip:127.0.0.1:5060;lr;ftag=a1>
Max-Forwards: 70
`+callerToB1+`
`+cid+`
CSeq: 1 ACK`, "")},
		{false, calleeNAT, sipMsg(`ACK sip:bob@192.168.1.20:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKe2
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa2;rport=40312;received=127.0.0.1
Max-Forwards: 69
`+callerToB1+`
`+cid+`
CSeq: 1 ACK`, "")},
		{true, calleeNAT, sipMsg(`BYE sip:alice@10.0.0.5:5060 SIP/2.0
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKb2;rport
Route: <sip:127.0.0.1:5060;lr;ftag=a1>
Max-Forwards: 70
`+calleeBYE+`
`+cid+`
CSeq: 7 BYE`, "")},
		{false, callerNAT, sipMsg(`BYE sip:alice@10.0.0.5:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKe3
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKb2;rport=40400;received=127.0.0.1
Max-Forwards: 69
`+calleeBYE+`
`+cid+`
CSeq: 7 BYE`, "")},
		{true, callerNAT, sipMsg(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKe3
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKb2;rport=40400;received=127.0.0.1
`+calleeBYE+`
`+cid+`
CSeq: 7 BYE`, "")},
		{false, calleeNAT, sipMsg(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKb2;rport=40400;received=127.0.0.1
`+calleeBYE+`
`+cid+`
CSeq: 7 BYE`, "")},
	}
}

// trunkCall is a call from the NATed caller to a trunk on a public
// address. anchored says whether sipedge relays the media; if not, the
// caller's private SDP address goes to the trunk unchanged.
func trunkCall(callID string, anchored bool) []step {
	cid := "Call-ID: " + callID
	relay := sdpBody("127.0.0.1", 30010)
	if !anchored {
		relay = sdpBody("10.0.0.5", 4000)
	}
	return []step{
		{true, callerNAT, sipMsg(`INVITE sip:+15551234@example.com SIP/2.0
`+viaA1+`
`+callerTo+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:alice@10.0.0.5:5060>`, sdpBody("10.0.0.5", 4000))},
		{false, trunkAddr, sipMsg(`INVITE sip:+15551234@203.0.113.9 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKt1
`+viaA1Recv+`
`+rr+`
`+callerTo+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:alice@10.0.0.5:5060>`, relay)},
		{true, trunkAddr, sipMsg(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKt1
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:+15551234@203.0.113.9:5060>`, sdpBody("203.0.113.9", 20000))},
		{false, callerNAT, sipMsg(`SIP/2.0 200 OK
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:+15551234@203.0.113.9:5060>`, sdpBody("127.0.0.1", 30012))},
	}
}

// forkedCall rings two phones of the callee, behind calleeNAT and
// callee2NAT; the first answers and sipedge cancels the second, which never
// sent a Contact.
func forkedCall(callID string) []step {
	cid := "Call-ID: " + callID
	inv := natCall(callID)[0]
	return []step{
		inv,
		{false, calleeNAT, sipMsg(`INVITE sip:bob@192.168.1.20:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf1
`+viaA1Recv+`
`+rr+`
`+callerTo+`
`+cid+`
CSeq: 1 INVITE`, sdpBody("127.0.0.1", 30000))},
		{false, callee2NAT, sipMsg(`INVITE sip:bob@192.168.1.30:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf2
`+viaA1Recv+`
`+rr+`
`+callerTo+`
`+cid+`
CSeq: 1 INVITE`, sdpBody("127.0.0.1", 30000))},
		{true, callee2NAT, sipMsg(`SIP/2.0 100 Trying
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf2
`+viaA1Recv+`
`+callerTo+`
`+cid+`
CSeq: 1 INVITE`, "")},
		{true, calleeNAT, sipMsg(`SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf1
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:bob@192.168.1.20:5060>`, sdpBody("192.168.1.20", 5000))},
		{false, callee2NAT, sipMsg(`CANCEL sip:bob@192.168.1.30:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf2
`+callerTo+`
`+cid+`
CSeq: 1 CANCEL`, "")},
		{false, callerNAT, sipMsg(`SIP/2.0 200 OK
`+viaA1Recv+`
`+rr+`
`+callerToB1+`
`+cid+`
CSeq: 1 INVITE
Contact: <sip:bob@192.168.1.20:5060>`, sdpBody("127.0.0.1", 30002))},
		{true, callee2NAT, sipMsg(`SIP/2.0 487 Request Terminated
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKf2
`+viaA1Recv+`
From: "Alice" <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=c1
`+cid+`
CSeq: 1 INVITE`, "")},
	}
}

// clock is a fake clock that moves 10 ms each time it is read.
type clock struct{ t time.Time }

func (c *clock) now() time.Time {
	c.t = c.t.Add(10 * time.Millisecond)
	return c.t
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func flow(remote string) sipx.Flow {
	return sipx.Flow{Transport: sipx.UDP, Local: netip.MustParseAddrPort(edgeAddr), Remote: netip.MustParseAddrPort(remote)}
}

// play feeds steps to r.
func play(r *Recorder, steps []step) {
	for _, s := range steps {
		r.Record(s.in, flow(s.remote), []byte(s.text))
	}
}

// record plays steps into a new Recorder and returns the trace of callID.
func record(t testing.TB, callID string, steps []step) Trace {
	t.Helper()
	r := New(Config{Now: newClock().now})
	play(r, steps)
	tr, ok := r.Get(callID)
	if !ok {
		t.Fatalf("call %q not traced", callID)
	}
	if len(tr.Messages) != len(steps) {
		t.Fatalf("%d messages stored, want %d", len(tr.Messages), len(steps))
	}
	return tr
}
