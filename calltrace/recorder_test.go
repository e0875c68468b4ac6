package calltrace

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

const register = "REGISTER sip:example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr1;rport\r\n" +
	"From: <sip:alice@example.com>;tag=r1\r\nTo: <sip:alice@example.com>\r\n" +
	"Call-ID: reg-1@10.0.0.5\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@10.0.0.5:5060>\r\n" +
	"Expires: 3600\r\nContent-Length: 0\r\n\r\n"

func invite(callID string) []byte {
	return []byte(strings.Replace(natCall("x")[0].text, "Call-ID: x", "Call-ID: "+callID, 1))
}

func TestCallID(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID: abc@host\r\n\r\n", "abc@host"},
		{"SIP/2.0 180 Ringing\r\ncall-id: abc@host\r\n\r\n", "abc@host"},
		{"BYE sip:a@b SIP/2.0\r\ni: abc@host\r\n\r\n", "abc@host"},
		{"ACK sip:a@b SIP/2.0\r\nCALL-ID :  abc@host  \r\n\r\n", "abc@host"},
		{"ACK sip:a@b SIP/2.0\nI:abc@host\n\n", "abc@host"},
		{"ACK sip:a@b SIP/2.0\nI:abc@host", "abc@host"},
		{"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\ni: abc@host\r\n", ""}, // in the body
		{"INVITE sip:a@b SIP/2.0\r\nInfo: x\r\nCall-Info: y\r\n\r\n", ""},
		{"Call-ID: first-line\r\n\r\n", ""},
		{"", ""},
	} {
		if got := string(callID([]byte(tc.msg))); got != tc.want {
			t.Errorf("callID(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

func TestRecordStart(t *testing.T) {
	r := New(Config{Now: newClock().now})
	steps := natCall("c1")
	r.Record(true, flow(callerNAT), []byte(register))
	r.Record(false, flow(calleeNAT), []byte(steps[2].text)) // an outgoing INVITE starts nothing
	reinvite := strings.Replace(steps[0].text, "To: <sip:bob@example.com>", "To: <sip:bob@example.com>;tag=b1", 1)
	r.Record(true, flow(callerNAT), []byte(reinvite)) // nor does one with a To tag
	r.Record(true, flow(callerNAT), []byte(steps[1].text))
	if n := len(r.List()); n != 0 {
		t.Fatalf("%d traces before an initial INVITE, want 0", n)
	}

	play(r, steps[:3])
	r.Record(true, flow(callerNAT), []byte(register)) // another call: ignored
	r.Record(true, flow(callerNAT), []byte(strings.Replace(steps[0].text, "Call-ID: c1", "Call-ID: c2", 1)))
	compact := strings.Replace(steps[3].text, "Call-ID: c1", "i: c1", 1)
	r.Record(true, flow(calleeNAT), []byte(compact))

	list := r.List()
	if len(list) != 2 || list[0].CallID != "c2" || list[1].CallID != "c1" {
		t.Fatalf("List = %+v, want c2 then c1", list)
	}
	tr, ok := r.Get("c1")
	if !ok || len(tr.Messages) != 4 {
		t.Fatalf("Get(c1) = %d messages, %v; want 4", len(tr.Messages), ok)
	}
	if tr.From != "sip:alice@example.com" || tr.To != "sip:bob@example.com" || tr.State != StateRinging {
		t.Errorf("summary = %+v", tr.Summary)
	}
	if _, ok := r.Get("reg-1@10.0.0.5"); ok {
		t.Error("a REGISTER was traced")
	}
	if tr.MessageCount != 4 || tr.Bytes != len(tr.Messages[0].Text)+len(tr.Messages[1].Text)+len(tr.Messages[2].Text)+len(tr.Messages[3].Text) {
		t.Errorf("MessageCount %d, Bytes %d", tr.MessageCount, tr.Bytes)
	}
}

func TestMessageFields(t *testing.T) {
	steps := natCall("c1")
	tr := record(t, "c1", steps)
	want := []struct {
		in      bool
		remote  string
		method  string
		status  int
		summary string
	}{
		{true, callerNAT, "INVITE", 0, "INVITE sip:bob@example.com"},
		{false, callerNAT, "INVITE", 100, "100 Trying"},
		{false, calleeNAT, "INVITE", 0, "INVITE sip:bob@192.168.1.20:5060"},
	}
	for i, w := range want {
		m := tr.Messages[i]
		if m.Seq != i || m.In != w.in || m.Remote != w.remote || m.Local != edgeAddr || m.Transport != "udp" ||
			m.Method != w.method || m.Status != w.status || m.Summary != w.summary || m.Size != len(steps[i].text) {
			t.Errorf("message %d = %+v", i, m)
		}
		if m.OffsetMS != float64(10*i) {
			t.Errorf("message %d: offset %v ms, want %d", i, m.OffsetMS, 10*i)
		}
	}
	if !tr.Messages[0].Time.Equal(tr.Started) {
		t.Errorf("first message at %v, trace started %v", tr.Messages[0].Time, tr.Started)
	}
	// The JSON form is the admin API's.
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"call_id":"c1"`, `"state":"ended"`, `"messages":[{"seq":0,`, `"offset_ms":10,`, `"answered":"2026-`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestRedaction(t *testing.T) {
	const digest = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ name, header, want string }{
		{"quoted", `Proxy-Authorization: Digest username="alice", realm="example.com", nonce="n1", uri="sip:bob@example.com", response="` + digest + `", algorithm=MD5`,
			`Proxy-Authorization: Digest username="alice", realm="example.com", nonce="n1", uri="sip:bob@example.com", response="<redacted>", algorithm=MD5`},
		{"unquoted lower case", `authorization: Digest response=` + digest + `,username="alice"`,
			`authorization: Digest response="<redacted>",username="alice"`},
		{"blanks", `AUTHORIZATION: Digest username="alice" , RESPONSE = "` + digest + `"`,
			`AUTHORIZATION: Digest username="alice" , RESPONSE = "<redacted>"`},
		{"folded", "Authorization: Digest username=\"alice\",\r\n response=\"" + digest + "\"",
			"Authorization: Digest username=\"alice\",\r\n response=\"<redacted>\""},
		{"not a parameter", `Authorization: Digest username="response=` + digest + `"`,
			`Authorization: Digest username="response=` + digest + `"`},
		{"other header", `X-Note: response="` + digest + `"`, `X-Note: response="` + digest + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(Config{})
			text := strings.Replace(string(invite("red")), "Max-Forwards: 70", tc.header, 1)
			r.Record(true, flow(callerNAT), []byte(text))
			tr, _ := r.Get("red")
			if len(tr.Messages) != 1 {
				t.Fatal("not stored")
			}
			got := tr.Messages[0].Text
			if !strings.Contains(got, tc.want+"\r\n") {
				t.Errorf("stored\n%s\nwant the line\n%s", got, tc.want)
			}
			if strings.Contains(tc.want, "redacted") && strings.Contains(got, digest) {
				t.Error("the digest response was stored")
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	r := New(Config{MaxMessageBytes: 100})
	b := invite("long")
	r.Record(true, flow(callerNAT), b)
	tr, _ := r.Get("long")
	m := tr.Messages[0]
	if len(m.Text) != 100 || !m.Truncated || m.Size != len(b) || tr.Bytes != 100 || r.Bytes() != 100 {
		t.Errorf("stored %d bytes, truncated %v, size %d, trace bytes %d, recorder bytes %d",
			len(m.Text), m.Truncated, m.Size, tr.Bytes, r.Bytes())
	}
	if strings.Contains(string(b[:100]), "response=") {
		t.Fatal("test message too short for the test")
	}
}

// TestRecordState plays calls and checks the state they end in.
func TestRecordState(t *testing.T) {
	call := natCall("s")
	inv, trying, ringing, ok200, ack, bye := call[0], call[1], call[5], call[7], call[9], call[11]
	resp := func(code int, reason string) step {
		return step{false, callerNAT, strings.Replace(trying.text, "100 Trying", fmt.Sprintf("%d %s", code, reason), 1)}
	}
	cancel := step{true, callerNAT, strings.NewReplacer("INVITE sip", "CANCEL sip", "CSeq: 1 INVITE", "CSeq: 1 CANCEL").Replace(inv.text)}
	reinvite200 := step{false, callerNAT, strings.Replace(ok200.text, "CSeq: 1 INVITE", "CSeq: 2 INVITE", 1)}
	in486 := resp(486, "Busy Here")
	in486.in = true
	// After a 407 the caller sends the INVITE again with credentials.
	cseq2 := strings.NewReplacer("CSeq: 1 INVITE", "CSeq: 2 INVITE")
	inv2, ok2002 := step{true, callerNAT, cseq2.Replace(inv.text)}, step{false, callerNAT, cseq2.Replace(ok200.text)}
	resp2 := func(code int, reason string) step {
		s := resp(code, reason)
		s.text = cseq2.Replace(s.text)
		return s
	}

	for _, tc := range []struct {
		name     string
		steps    []step
		state    string
		status   int
		answered bool
		ended    bool
	}{
		{"ringing", []step{inv, trying, ringing}, StateRinging, 0, false, false},
		{"answered", []step{inv, trying, ringing, ok200, ack}, StateAnswered, 200, true, false},
		{"ended", call, StateEnded, 200, true, true},
		{"ended without 200 to BYE", []step{inv, ok200, bye}, StateEnded, 200, true, true},
		{"failed", []step{inv, trying, resp(486, "Busy Here")}, StateFailed, 486, false, false},
		{"not found", []step{inv, resp(404, "Not Found")}, StateFailed, 404, false, false},
		{"cancelled by CANCEL", []step{inv, ringing, cancel}, StateCancelled, 0, false, false},
		{"cancelled then 487", []step{inv, ringing, cancel, resp(487, "Request Terminated")}, StateCancelled, 487, false, false},
		{"487 only", []step{inv, resp(487, "Request Terminated")}, StateCancelled, 487, false, false},
		{"CANCEL crossed by 200", []step{inv, cancel, ok200}, StateAnswered, 200, true, false},
		{"CANCEL after answer", []step{inv, ok200, cancel}, StateAnswered, 200, true, false},
		{"BYE before answer", []step{inv, bye}, StateRinging, 0, false, false},
		{"first final response decides", []step{inv, ok200, resp(486, "Busy Here")}, StateAnswered, 200, true, false},
		{"re-INVITE answer", []step{inv, resp(480, "Temporarily Unavailable"), reinvite200}, StateFailed, 480, false, false},
		{"incoming final response", []step{inv, in486}, StateRinging, 0, false, false},
		{"fork: losing branch 487", forkedCall("s"), StateAnswered, 200, true, false},
		{"retry after 407", []step{inv, resp(407, "Proxy Authentication Required"), inv2, ok2002}, StateAnswered, 200, true, false},
		{"retry after 407 fails", []step{inv, resp(407, "Proxy Authentication Required"), inv2, resp2(486, "Busy Here")}, StateFailed, 486, false, false},
		{"retry without final response", []step{inv, resp(407, "Proxy Authentication Required"), inv2}, StateRinging, 0, false, false},
		{"late 200 to the challenged INVITE", []step{inv, resp(407, "Proxy Authentication Required"), inv2, ok200}, StateRinging, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := record(t, "s", tc.steps)
			if tr.State != tc.state || tr.Status != tc.status || tr.Answered.IsZero() == tc.answered || tr.Ended.IsZero() == tc.ended {
				t.Errorf("state %s, status %d, answered %v, ended %v; want %s, %d, %v, %v",
					tr.State, tr.Status, tr.Answered, tr.Ended, tc.state, tc.status, tc.answered, tc.ended)
			}
		})
	}

	// Times: answered at the 200 sent to the caller, ended at the BYE.
	tr := record(t, "s", call)
	if !tr.Answered.Equal(tr.Messages[7].Time) || !tr.Ended.Equal(tr.Messages[11].Time) {
		t.Errorf("answered %v, ended %v; want %v, %v", tr.Answered, tr.Ended, tr.Messages[7].Time, tr.Messages[11].Time)
	}
}

func TestPerCallBounds(t *testing.T) {
	call := natCall("b")
	t.Run("messages", func(t *testing.T) {
		r := New(Config{MaxMessages: 5})
		play(r, call)
		tr, _ := r.Get("b")
		if tr.MessageCount != 5 || len(tr.Messages) != 5 || tr.Dropped != len(call)-5 {
			t.Errorf("%d stored, %d dropped; want 5, %d", tr.MessageCount, tr.Dropped, len(call)-5)
		}
		if tr.State != StateEnded {
			t.Errorf("state %s: dropped messages must still move the state", tr.State)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		full := record(t, "b", call).Messages
		limit := len(full[0].Text) + len(full[1].Text) + len(full[2].Text) - 1 // room for two messages
		r := New(Config{MaxCallBytes: limit})
		play(r, call)
		tr, _ := r.Get("b")
		if tr.MessageCount != 2 || tr.Dropped != len(call)-2 || tr.Bytes > limit || r.Bytes() != tr.Bytes {
			t.Errorf("%d stored, %d dropped, %d bytes, recorder %d bytes; limit %d", tr.MessageCount, tr.Dropped, tr.Bytes, r.Bytes(), limit)
		}
		// Once full, a message that would fit is not stored either: the
		// stored messages are always the start of the call.
		for _, m := range tr.Messages {
			if m.Seq >= 2 {
				t.Errorf("message %d stored after the trace was full", m.Seq)
			}
		}
	})
}

func TestEviction(t *testing.T) {
	r := New(Config{Calls: 3})
	start := func(id string) { r.Record(true, flow(callerNAT), invite(id)) }
	ids := func() string {
		var s []string
		for _, c := range r.List() {
			s = append(s, c.CallID)
		}
		return strings.Join(s, " ")
	}
	start("c1")
	start("c2")
	start("c3")
	play(r, natCall("c2")[1:]) // c2 ends
	before := r.Bytes()
	start("c4")
	if got := ids(); got != "c4 c3 c1" {
		t.Fatalf("after c4: %q, want the ended c2 evicted", got)
	}
	if r.Bytes() >= before {
		t.Errorf("Bytes %d after evicting c2, was %d", r.Bytes(), before)
	}
	start("c5")
	if got := ids(); got != "c5 c4 c3" {
		t.Fatalf("after c5: %q, want the oldest (c1) evicted", got)
	}
	r.Record(true, flow(callerNAT), []byte(natCall("c1")[9].text)) // c1's ACK: no longer traced
	if _, ok := r.Get("c1"); ok {
		t.Error("an evicted call came back")
	}
	start("c3") // a retransmitted INVITE of a traced call starts nothing
	if got := ids(); got != "c5 c4 c3" {
		t.Errorf("after c3 again: %q", got)
	}
	if tr, _ := r.Get("c3"); len(tr.Messages) != 2 {
		t.Errorf("c3 has %d messages, want 2 (the INVITE twice)", len(tr.Messages))
	}
}

// TestMemoryBound records thousands of calls with big messages and checks
// that the stored text never exceeds Calls × MaxCallBytes.
func TestMemoryBound(t *testing.T) {
	const calls, maxCall = 20, 16 << 10
	r := New(Config{Calls: calls, MaxCallBytes: maxCall, MaxMessageBytes: 6 << 10})
	pad := "X-Pad: " + strings.Repeat("p", 5000) + "\r\n"
	for i := range 3000 {
		id := fmt.Sprintf("bound-%d", i)
		steps := natCall(id)
		if i%3 == 0 {
			steps = steps[:5] // some calls stay up
		}
		for j, s := range steps {
			text := strings.Replace(s.text, "\r\n\r\n", "\r\n"+strings.Repeat(pad, j%3)+"\r\n", 1)
			r.Record(s.in, flow(s.remote), []byte(text))
			if n := r.Bytes(); n > calls*maxCall {
				t.Fatalf("call %d message %d: %d bytes stored, bound %d", i, j, n, calls*maxCall)
			}
		}
	}
	list := r.List()
	total := 0
	for _, s := range list {
		total += s.Bytes
		if s.Bytes > maxCall {
			t.Errorf("%s: %d bytes", s.CallID, s.Bytes)
		}
	}
	if len(list) != calls || total != r.Bytes() {
		t.Errorf("%d calls holding %d bytes; Bytes() = %d", len(list), total, r.Bytes())
	}
}

func TestAttach(t *testing.T) {
	r := New(Config{Calls: 1})
	r.Attach("a1", "stats")
	if _, ok := r.Attached("a1"); ok {
		t.Error("attached to an untraced call")
	}
	r.Record(true, flow(callerNAT), invite("a1"))
	if _, ok := r.Attached("a1"); ok {
		t.Error("attached value before Attach")
	}
	r.Attach("a1", "stats")
	if v, ok := r.Attached("a1"); !ok || v != "stats" {
		t.Errorf("Attached = %v, %v", v, ok)
	}
	r.Record(true, flow(callerNAT), invite("a2")) // evicts a1
	if _, ok := r.Attached("a1"); ok {
		t.Error("attached value outlived its trace")
	}
}

// TestSummary: one call's summary is Get's without the messages.
func TestSummary(t *testing.T) {
	r := New(Config{})
	if _, ok := r.Summary("s"); ok {
		t.Error("summary of an untraced call")
	}
	play(r, natCall("s"))
	got, ok := r.Summary("s")
	tr, _ := r.Get("s")
	if !ok || got != tr.Summary || got.State != StateEnded {
		t.Errorf("Summary = %+v, %v; Get's is %+v", got, ok, tr.Summary)
	}
}

func TestDisabled(t *testing.T) {
	r := New(Config{Calls: -1})
	play(r, natCall("off"))
	if len(r.List()) != 0 || r.Bytes() != 0 {
		t.Error("recorded with Calls < 0")
	}
}

func TestGetCopy(t *testing.T) {
	r := New(Config{})
	play(r, natCall("g")[:2])
	tr, _ := r.Get("g")
	tr.Messages[0].Text = "changed"
	tr.Messages = append(tr.Messages, Message{})
	again, _ := r.Get("g")
	if len(again.Messages) != 2 || again.Messages[0].Text == "changed" {
		t.Error("Get returned shared state")
	}
}

// TestConcurrent records calls while listing and reading them; run it
// with -race.
func TestConcurrent(t *testing.T) {
	r := New(Config{Calls: 10, MaxMessages: 8})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				steps := natCall(fmt.Sprintf("g%d-%d", g, i%15))
				play(r, steps)
				r.Record(true, flow(callerNAT), []byte(register))
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, s := range r.List() {
				if tr, ok := r.Get(s.CallID); ok {
					_ = Analyze(tr)
				}
				r.Attach(s.CallID, s.State)
				r.Attached(s.CallID)
			}
			_ = r.Bytes()
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	if n := len(r.List()); n != 10 {
		t.Errorf("%d traces, want 10", n)
	}
}

func TestRecordMissAllocs(t *testing.T) {
	r := New(Config{})
	play(r, natCall("c1"))
	b := []byte(register)
	if n := testing.AllocsPerRun(100, func() { r.Record(true, flow(callerNAT), b) }); n != 0 {
		t.Errorf("a REGISTER costs %v allocations, want 0", n)
	}
}
