//go:build browser

package browser

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/calltrace"
	"github.com/sipedge/sipedge/sipx"
)

// Hostile strings, as a scanner or a malicious phone would send them in
// SIP headers. The dashboard must show them as text and run none of them.
const (
	evilUA      = `<img src=x onerror=alert(1)><script>alert(2)</script>`
	evilContact = `sip:mallory@203.0.113.66:5060;x="><svg onload=alert(3)>`
	evilAOR     = "mallory@test.example"
)

// Call-IDs of the fake calls.
const (
	liveCallID   = "live-1@10.0.0.5"
	oneWayCallID = "oneway-2@192.168.7.9"
	endedCallID  = "ended/3 <b>x</b>@10.0.0.5" // '/', spaces and markup: must survive the URL
	busyCallID   = "busy-4@198.51.100.77"      // rejected: only its trace is kept
	edgeSocket   = "127.0.0.1:5060"
	aliceNAT     = "127.0.0.1:40312" // alice (10.0.0.5) as seen through her NAT
	bobNAT       = "127.0.0.1:40400" // bob (192.168.1.20) as seen through his NAT
	fakeVersion  = "v0.9.0-test"
	fakeNATed    = 3 // NATed registrations among fakePeers
	fakeRegs     = 4 // registrations (the trunk is not one)
	fakeLivePerS = 50
	fakeBulk     = 120 // public phones for paging
)

// fakeBackend is an admin.Backend with fixed peers, a live call whose
// counters grow on every look, a call with one-way audio, and an ended
// call with a recorded SIP trace.
type fakeBackend struct {
	started time.Time
	traces  *calltrace.Recorder

	mu    sync.Mutex
	polls uint64 // Calls() so far: the live counters grow with it
	ended bool   // the live call was hung up (EndCall)
}

func newFakeBackend() *fakeBackend {
	b := &fakeBackend{started: time.Now().Add(-26*time.Hour - 7*time.Minute)}
	// The trace clock: each message 40 ms after the one before, the
	// ended call three minutes ago, the live one 20 s ago.
	var clk time.Time
	b.traces = calltrace.New(calltrace.Config{Now: func() time.Time { clk = clk.Add(40 * time.Millisecond); return clk }})
	talk := func(d time.Duration) { clk = clk.Add(d) }
	clk = time.Now().Add(-3 * time.Minute)
	playCall(b.traces, endedCallID, talk, true)
	clk = time.Now().Add(-2 * time.Minute)
	playBusy(b.traces, busyCallID)
	clk = time.Now().Add(-20 * time.Second)
	playCall(b.traces, liveCallID, talk, false)
	return b
}

func (b *fakeBackend) Status() admin.Status {
	return admin.Status{
		Version:       fakeVersion,
		Started:       b.started,
		Uptime:        int64(time.Since(b.started).Seconds()),
		Listeners:     []string{"udp 0.0.0.0:5060", "tcp 0.0.0.0:5060", "admin 127.0.0.1:5080"},
		Domains:       []string{"test.example"},
		AORs:          4,
		Registrations: fakeRegs,
		NATed:         fakeNATed,
		Transactions:  map[string]int{"server": 3, "client": 2},
		Counters:      map[string]uint64{"sip_requests_total": 1234, "sip_responses_total": 1200, "nat_fixes_total": 77},
		HeapBytes:     23 << 20,
		External: &admin.External{Address: "198.51.100.10", Source: "pcp", Detail: "PCP on gateway 192.168.0.1",
			Learned: time.Now().Add(-42 * time.Minute), Changes: 1},
		PortMappings: []admin.PortMapping{
			{Protocol: "pcp", Transport: "udp", Internal: "192.168.0.10:5060", External: "198.51.100.10:5060", Expires: time.Now().Add(50 * time.Minute)},
			{Protocol: "pcp", Transport: "udp", Internal: "192.168.0.10:30000-39999", External: "198.51.100.10:30000-39999", Expires: time.Now().Add(50 * time.Minute)},
		},
	}
}

func (b *fakeBackend) Peers(q admin.PeerQuery) ([]admin.Peer, int) {
	return admin.FilterPeers(append(fakePeers(), bulkPeers()...), q)
}

// bulkPeers are enough public phones for a second page of peers; their
// AORs sort after fakePeers'.
func bulkPeers() []admin.Peer {
	var ps []admin.Peer
	for i := range fakeBulk {
		ps = append(ps, admin.Peer{Kind: "registration", AOR: fmt.Sprintf("zz-bulk-%03d@test.example", i),
			Contact: fmt.Sprintf("<sip:bulk%d@198.51.100.%d:5060>", i, 100+i), Transport: "udp",
			Remote: fmt.Sprintf("198.51.100.%d:5060", 100+i), Local: edgeSocket, ExpiresIn: 600,
			Expires: time.Now().Add(10 * time.Minute), UserAgent: "BulkPhone 1.0"})
	}
	return ps
}

// fakePeers are a NATed phone with a good keepalive, one lagging over TCP,
// a public phone, an unreachable one, a trunk, and a phone with hostile
// header values.
func fakePeers() []admin.Peer {
	now := time.Now()
	ka := func(status string, hist ...float64) *admin.Keepalive {
		k := &admin.Keepalive{Status: status, Method: "options", IntervalS: 25, HistoryMS: hist,
			Sent: uint64(len(hist)), NextPing: now.Add(12 * time.Second)}
		var sum float64
		for _, h := range hist {
			if h >= 0 {
				k.Answered++
				sum += h
				k.RTTms = h
				if k.MinRTTms == 0 || h < k.MinRTTms {
					k.MinRTTms = h
				}
			} else {
				k.Misses++
			}
		}
		if k.Answered > 0 {
			k.AvgRTTms = sum / float64(k.Answered)
		}
		return k
	}
	return []admin.Peer{
		{Kind: "registration", AOR: "alice@test.example", User: "alice", Contact: "<sip:alice@10.0.0.5:5060;ob>",
			Transport: "udp", Remote: aliceNAT, Local: edgeSocket, NAT: true,
			NATReasons: []string{"Via 10.0.0.5:5060 differs from source 127.0.0.1:40312", "private address 10.0.0.5 in Contact"},
			Expires:    now.Add(54 * time.Minute), ExpiresIn: 3240, UserAgent: "Yealink SIP-T46U 108.86.0.45",
			Registered: now.Add(-6 * time.Minute), Updated: now.Add(-6 * time.Minute), Status: "OK (23 ms)",
			Keepalive: ka("ok", 21, 23, 22, 30, 25, 23, 19, 23, 24, 22, 23, 23)},
		{Kind: "registration", AOR: "bob@test.example", User: "bob", Contact: "<sip:bob@192.168.1.20:5062>",
			Transport: "tcp", Remote: bobNAT, Local: edgeSocket, NAT: true,
			NATReasons: []string{"private address 192.168.1.20 in Via"},
			Expires:    now.Add(5 * time.Minute), ExpiresIn: 300, UserAgent: "Grandstream GXP2170 1.0.11.23",
			Registered: now.Add(-55 * time.Minute), Updated: now.Add(-1 * time.Minute), Status: "LAGGED (1450 ms)",
			Keepalive: ka("lagged", 40, 45, 300, 800, 1200, 1450)},
		{Kind: "registration", AOR: "carol@test.example", User: "carol", Contact: "<sip:carol@198.51.100.77:5060>",
			Transport: "udp", Remote: "198.51.100.77:5060", Local: edgeSocket, NAT: false,
			Expires: now.Add(40 * time.Minute), ExpiresIn: 2400, UserAgent: "Linphone 5.2.5 (public)",
			Registered: now.Add(-20 * time.Minute), Updated: now.Add(-20 * time.Minute)},
		{Kind: "registration", AOR: "dave@test.example", User: "dave", Contact: "<sip:dave@10.9.8.7:5060>",
			Transport: "udp", Remote: "127.0.0.1:41999", Local: edgeSocket, NAT: true,
			NATReasons: []string{"private address 10.9.8.7 in Contact"},
			Expires:    now.Add(20 * time.Minute), ExpiresIn: 1200, UserAgent: "Snom D785 10.1.141.13",
			Registered: now.Add(-40 * time.Minute), Updated: now.Add(-40 * time.Minute), Status: "UNREACHABLE",
			Keepalive: ka("unreachable", 30, 31, 29, -1, 35, -1, -1, -1)},
		{Kind: "trunk", AOR: "carrier", Contact: "sip:203.0.113.9:5060;transport=udp",
			Transport: "udp", Remote: "203.0.113.9:5060", Local: edgeSocket, Status: "OK (8 ms)",
			Keepalive: ka("ok", 8, 9, 8, 8, 10, 8)},
		{Kind: "registration", AOR: evilAOR, User: "mallory", Contact: evilContact,
			Transport: "udp", Remote: "203.0.113.66:5060", Local: edgeSocket,
			Expires: now.Add(59 * time.Minute), ExpiresIn: 3540, UserAgent: evilUA,
			Registered: now, Updated: now},
	}
}

func (b *fakeBackend) Users() ([]admin.User, error)                { return nil, nil }
func (b *fakeBackend) AddUser(name, password, nat string) error    { return nil }
func (b *fakeBackend) DeleteUser(name string) (bool, error)        { return false, nil }
func (b *fakeBackend) Bans() []admin.Ban                           { return nil }
func (b *fakeBackend) Unban(ip string) bool                        { return false }
func (b *fakeBackend) Metrics(w io.Writer)                         { fmt.Fprintln(w, "sipedge_up 1") }
func (b *fakeBackend) RecentCalls() []calltrace.Summary            { return b.traces.List() }
func (b *fakeBackend) CallTrace(id string) (calltrace.Trace, bool) { return b.traces.Get(id) }

func (b *fakeBackend) EndCall(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id != liveCallID || b.ended {
		return false
	}
	b.ended = true
	return true
}

// Calls returns the live calls; every call of it adds packets to the
// live call's both directions.
func (b *fakeBackend) Calls() []admin.Call {
	b.mu.Lock()
	b.polls++
	n, ended := b.polls, b.ended
	b.mu.Unlock()
	now := time.Now()
	var calls []admin.Call
	if !ended {
		st := stream(uint64(600+fakeLivePerS*n), uint64(590+fakeLivePerS*n))
		st.Legs[1].LossPercent, st.Legs[1].Lost, st.Legs[1].JitterMs = 0.4, 3, 4.2
		calls = append(calls, admin.Call{
			CallID: liveCallID, From: "sip:alice@test.example", To: "sip:bob@test.example",
			State: "answered", Started: now.Add(-20 * time.Second), Answered: now.Add(-18 * time.Second),
			Caller:  admin.CallLeg{Flow: "udp:" + aliceNAT + "->" + edgeSocket, NAT: true, Name: "alice@test.example"},
			Callee:  admin.CallLeg{Flow: "udp:" + bobNAT + "->" + edgeSocket, NAT: true, Name: "bob@test.example"},
			Relayed: true, MediaDecision: "relayed: both sides behind NAT",
			Streams: []admin.Stream{st},
		})
	}
	ow := stream(uint64(250+fakeLivePerS*n), 0)
	ow.Alarm = "no audio from the callee for 12 s: callee→caller is silent (its NAT may block inbound RTP)"
	ow.Legs[1].Latched = false
	calls = append(calls, admin.Call{
		CallID: oneWayCallID, From: `sip:"<b>carol</b>"@test.example`, To: "sip:+15551234567@carrier",
		State: "answered", Started: now.Add(-75 * time.Second), Answered: now.Add(-70 * time.Second),
		Caller:  admin.CallLeg{Flow: "udp:198.51.100.77:5060->" + edgeSocket, Name: "carol@test.example"},
		Callee:  admin.CallLeg{Flow: "udp:203.0.113.9:5060->" + edgeSocket, Name: "carrier"},
		Relayed: true, MediaDecision: "relayed: media = always for route carrier",
		Streams: []admin.Stream{ow},
		Alarms:  []string{"one-way audio: " + ow.Alarm},
	})
	return calls
}

func stream(fromCaller, fromCallee uint64) admin.Stream {
	leg := func(port int, ann, target string, pk uint64) admin.StreamLeg {
		l := admin.StreamLeg{RelayPort: port, Announced: ann, Target: target, Latched: pk > 0, Locked: pk > 4,
			Packets: pk, Bytes: pk * 172}
		if pk > 0 {
			l.LastSeen = time.Now()
		}
		return l
	}
	return admin.Stream{Index: 0, Media: "audio", Legs: [2]admin.StreamLeg{
		leg(30002, "10.0.0.5:4000", "127.0.0.1:40314", fromCaller),
		leg(30000, "192.168.1.20:5000", "127.0.0.1:40402", fromCallee),
	}}
}

// RecentCall is the ended call as it was when it ended.
func (b *fakeBackend) RecentCall(id string) (admin.Call, bool) {
	if id != endedCallID {
		return admin.Call{}, false
	}
	t, ok := b.traces.Get(id)
	if !ok {
		return admin.Call{}, false
	}
	st := stream(4100, 4080)
	st.Legs[0].LastSeen, st.Legs[1].LastSeen = t.Ended, t.Ended
	return admin.Call{CallID: id, From: t.From, To: t.To, State: "ended",
		Started: t.Started, Answered: t.Answered, Ended: t.Ended,
		Caller:  admin.CallLeg{Flow: "udp:" + aliceNAT + "->" + edgeSocket, NAT: true, Name: "alice@test.example"},
		Callee:  admin.CallLeg{Flow: "udp:" + bobNAT + "->" + edgeSocket, NAT: true, Name: "bob@test.example"},
		Relayed: true, MediaDecision: "relayed: both sides behind NAT", Streams: []admin.Stream{st}}, true
}

// sip writes a SIP message: the lines with CRLF, a Content-Length, and
// the SDP body if any.
func sip(sdp string, lines ...string) []byte {
	body := ""
	if sdp != "" {
		body = sdp
		lines = append(lines, "Content-Type: application/sdp")
	}
	lines = append(lines, fmt.Sprintf("Content-Length: %d", len(body)))
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n" + body)
}

func sdpOf(ip string, port int) string {
	return strings.Join([]string{"v=0", "o=- 4711 1 IN IP4 " + ip, "s=call", "c=IN IP4 " + ip, "t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0 101", port), "a=rtpmap:0 PCMU/8000", "a=sendrecv", ""}, "\r\n")
}

// playCall records a call from alice (10.0.0.5 behind aliceNAT) to bob
// (192.168.1.20 behind bobNAT) as sipedge saw it: the INVITE with its
// answer and ACK, a retransmitted 200, and if hangup, bob's BYE after
// talking for a while (talk moves the recorder's clock on).
func playCall(r *calltrace.Recorder, id string, talk func(time.Duration), hangup bool) {
	flow := func(remote string) sipx.Flow {
		return sipx.Flow{Transport: "UDP", Local: netip.MustParseAddrPort(edgeSocket), Remote: netip.MustParseAddrPort(remote)}
	}
	in := func(remote string, m []byte) { r.Record(true, flow(remote), m) }
	out := func(remote string, m []byte) { r.Record(false, flow(remote), m) }

	cid := "Call-ID: " + id
	fromA := `From: "Alice" <sip:alice@test.example>;tag=a7`
	toB := "To: <sip:bob@test.example>"
	toBt := "To: <sip:bob@test.example>;tag=b9"
	viaA := "Via: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK-a-1"
	viaAr := "Via: SIP/2.0/UDP 10.0.0.5:5060;rport=40312;received=127.0.0.1;branch=z9hG4bK-a-1"
	viaE := "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-e-1"
	rr := "Record-Route: <sip:u.127.0.0.1.40400.127.0.0.1.5060@127.0.0.1:5060;lr;ftag=a7>, <sip:u.127.0.0.1.40312.127.0.0.1.5060@127.0.0.1:5060;lr>"
	ctA := "Contact: <sip:alice@10.0.0.5:5060>"
	ctB := "Contact: <sip:bob@192.168.1.20:5060>"

	in(aliceNAT, sip(sdpOf("10.0.0.5", 4000), "INVITE sip:bob@test.example SIP/2.0", viaA, "Max-Forwards: 70", fromA, toB, cid,
		"CSeq: 2 INVITE", ctA, `User-Agent: <img src=x onerror=alert(5)>`, `Subject: </pre><script>alert(4)</script>`,
		`Proxy-Authorization: Digest username="alice", realm="test.example", nonce="abc", uri="sip:bob@test.example", response="00112233445566778899aabbccddeeff"`))
	out(aliceNAT, sip("", "SIP/2.0 100 Trying", viaAr, fromA, toB, cid, "CSeq: 2 INVITE"))
	out(bobNAT, sip(sdpOf("127.0.0.1", 30000), "INVITE sip:bob@192.168.1.20:5060 SIP/2.0", viaE, viaAr, rr, "Max-Forwards: 69",
		fromA, toB, cid, "CSeq: 2 INVITE", ctA))
	in(bobNAT, sip("", "SIP/2.0 180 Ringing", viaE, viaAr, rr, fromA, toBt, cid, "CSeq: 2 INVITE", ctB))
	out(aliceNAT, sip("", "SIP/2.0 180 Ringing", viaAr, rr, fromA, toBt, cid, "CSeq: 2 INVITE", ctB))
	in(bobNAT, sip(sdpOf("192.168.1.20", 5000), "SIP/2.0 200 OK", viaE, viaAr, rr, fromA, toBt, cid, "CSeq: 2 INVITE", ctB))
	out(aliceNAT, sip(sdpOf("127.0.0.1", 30002), "SIP/2.0 200 OK", viaAr, rr, fromA, toBt, cid, "CSeq: 2 INVITE", ctB))
	out(aliceNAT, sip(sdpOf("127.0.0.1", 30002), "SIP/2.0 200 OK", viaAr, rr, fromA, toBt, cid, "CSeq: 2 INVITE", ctB))
	in(aliceNAT, sip("", "ACK sip:bob@192.168.1.20:5060 SIP/2.0", "Via: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK-a-2",
		"Route: <sip:u.127.0.0.1.40312.127.0.0.1.5060@127.0.0.1:5060;lr>", "Max-Forwards: 70", fromA, toBt, cid, "CSeq: 2 ACK"))
	out(bobNAT, sip("", "ACK sip:bob@192.168.1.20:5060 SIP/2.0", "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-e-2",
		"Via: SIP/2.0/UDP 10.0.0.5:5060;rport=40312;received=127.0.0.1;branch=z9hG4bK-a-2", "Max-Forwards: 69", fromA, toBt, cid, "CSeq: 2 ACK"))
	if !hangup {
		return
	}
	talk(94 * time.Second)
	fromBt := "From: <sip:bob@test.example>;tag=b9"
	toAt := `To: "Alice" <sip:alice@test.example>;tag=a7`
	viaB := "Via: SIP/2.0/UDP 192.168.1.20:5060;rport;branch=z9hG4bK-b-1"
	viaBr := "Via: SIP/2.0/UDP 192.168.1.20:5060;rport=40400;received=127.0.0.1;branch=z9hG4bK-b-1"
	viaE2 := "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-e-3"
	in(bobNAT, sip("", "BYE sip:alice@10.0.0.5:5060 SIP/2.0", viaB, "Route: <sip:u.127.0.0.1.40400.127.0.0.1.5060@127.0.0.1:5060;lr>",
		"Max-Forwards: 70", fromBt, toAt, cid, "CSeq: 7 BYE", ctB))
	out(aliceNAT, sip("", "BYE sip:alice@10.0.0.5:5060 SIP/2.0", viaE2, viaBr, "Max-Forwards: 69", fromBt, toAt, cid, "CSeq: 7 BYE"))
	in(aliceNAT, sip("", "SIP/2.0 200 OK", viaE2, viaBr, fromBt, toAt, cid, "CSeq: 7 BYE"))
	out(bobNAT, sip("", "SIP/2.0 200 OK", viaBr, fromBt, toAt, cid, "CSeq: 7 BYE"))
}

// playBusy records a call from carol (public, 198.51.100.77) to dave
// (10.9.8.7 behind a NAT at 127.0.0.1:41999) that dave rejects.
func playBusy(r *calltrace.Recorder, id string) {
	const carol, dave = "198.51.100.77:5060", "127.0.0.1:41999"
	flow := func(remote string) sipx.Flow {
		return sipx.Flow{Transport: "UDP", Local: netip.MustParseAddrPort(edgeSocket), Remote: netip.MustParseAddrPort(remote)}
	}
	cid := "Call-ID: " + id
	from := "From: <sip:carol@test.example>;tag=c1"
	to := "To: <sip:dave@test.example>"
	toTag := to + ";tag=d1"
	viaC := "Via: SIP/2.0/UDP 198.51.100.77:5060;branch=z9hG4bK-c-1;rport=5060;received=198.51.100.77"
	viaE := "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-e-9"
	r.Record(true, flow(carol), sip(sdpOf("198.51.100.77", 7000), "INVITE sip:dave@test.example SIP/2.0",
		"Via: SIP/2.0/UDP 198.51.100.77:5060;branch=z9hG4bK-c-1;rport", from, to, cid, "CSeq: 1 INVITE", "Contact: <sip:carol@198.51.100.77:5060>"))
	r.Record(false, flow(carol), sip("", "SIP/2.0 100 Trying", viaC, from, to, cid, "CSeq: 1 INVITE"))
	r.Record(false, flow(dave), sip(sdpOf("198.51.100.77", 7000), "INVITE sip:dave@10.9.8.7:5060 SIP/2.0", viaE, viaC, from, to, cid, "CSeq: 1 INVITE"))
	r.Record(true, flow(dave), sip("", "SIP/2.0 486 Busy Here", viaE, viaC, from, toTag, cid, "CSeq: 1 INVITE"))
	r.Record(false, flow(dave), sip("", "ACK sip:dave@10.9.8.7:5060 SIP/2.0", viaE, from, toTag, cid, "CSeq: 1 ACK"))
	r.Record(false, flow(carol), sip("", "SIP/2.0 486 Busy Here", viaC, from, toTag, cid, "CSeq: 1 INVITE"))
	r.Record(true, flow(carol), sip("", "ACK sip:dave@test.example SIP/2.0", "Via: SIP/2.0/UDP 198.51.100.77:5060;branch=z9hG4bK-c-1;rport", from, toTag, cid, "CSeq: 1 ACK"))
}
