package edge_test

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/calltrace"
	"github.com/sipedge/sipedge/cli"
	"github.com/sipedge/sipedge/config"
	"github.com/sipedge/sipedge/edge/edgetest"
)

// TestCallTraceAndRecent: after a relayed call between two NATed phones,
// the call is among the recent calls with its final media counts, its SIP
// trace draws the ladder through both NATs with the fixes sipedge applied,
// no digest response is kept, and the CLI prints all of it.
func TestCallTraceAndRecent(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base)
	mc := startMediaCall(t, srv)
	mc.aRTP.sendAsync(mc.aDst, 1000, 50)
	mc.bRTP.sendAsync(mc.bDst, 2000, 50)
	mc.bRTP.waitCount(0xA11CE, 40, 3*time.Second)
	mc.aRTP.waitCount(0xB0B, 40, 3*time.Second)
	id := mc.out.CallID

	// While the call lives, its trace is already there.
	var tr admin.CallTrace
	if code := srv.GetJSON(t, "/api/v1/calls/"+id+"/trace", &tr); code != 200 || tr.State != "answered" {
		t.Fatalf("trace of the live call: %d, state %q", code, tr.State)
	}
	hangup(t, mc.out, mc.in, "alice", "bob")

	var recent []calltrace.Summary
	deadline := time.Now().Add(3 * time.Second)
	for {
		recent = nil
		srv.GetJSON(t, "/api/v1/calls/recent", &recent)
		if len(recent) == 1 && recent[0].State == "ended" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(recent) != 1 || recent[0].CallID != id || recent[0].State != "ended" || recent[0].Status != 200 {
		t.Fatalf("recent calls %+v, want call %s ended with 200", recent, id)
	}

	// The ended call keeps its final counts.
	var call admin.Call
	if code := srv.GetJSON(t, "/api/v1/calls/"+id, &call); code != 200 {
		t.Fatalf("GET the ended call: %d", code)
	}
	if call.State != "ended" || call.Ended.IsZero() || len(call.Streams) != 1 ||
		call.Streams[0].Legs[0].Packets < 40 || call.Streams[0].Legs[1].Packets < 40 {
		t.Errorf("ended call %+v, want state ended, ended time, >= 40 packets each way", call)
	}
	if call.Caller.Name != "alice@test.example" || call.Callee.Name != "bob@test.example" {
		t.Errorf("caller %q, callee %q: want both named by their AOR", call.Caller.Name, call.Callee.Name)
	}

	tr = admin.CallTrace{}
	if code := srv.GetJSON(t, "/api/v1/calls/"+id+"/trace", &tr); code != 200 {
		t.Fatalf("GET trace: %d", code)
	}
	// Both phones claim private addresses: the ladder has each phone and
	// its NAT's public side, with sipedge in the middle.
	var kinds []string
	for _, c := range tr.Ladder.Columns {
		kinds = append(kinds, c.Kind)
	}
	if strings.Join(kinds, ",") != "phone,nat,sipedge,nat,phone" {
		t.Errorf("ladder columns %v, want phone,nat,sipedge,nat,phone", kinds)
	}
	if tr.Ladder.Columns[0].Addr != aliceLAN+":5060" && !strings.HasPrefix(tr.Ladder.Columns[0].Addr, aliceLAN) {
		t.Errorf("caller phone column %+v, want alice's private %s", tr.Ladder.Columns[0], aliceLAN)
	}
	fixes := map[string]bool{}
	var labels []string
	for _, a := range tr.Ladder.Arrows {
		labels = append(labels, a.Label)
		for _, f := range a.Fixes {
			fixes[f.Kind] = true
		}
	}
	for _, k := range []string{"rport", "contact", "sdp", "route", "record-route"} {
		if !fixes[k] {
			t.Errorf("no %q fix in the ladder; arrows %v", k, labels)
		}
	}
	all := strings.Join(labels, " ")
	for _, want := range []string{"INVITE", "407", "ACK", "BYE", "200 OK"} {
		if !strings.Contains(all, want) {
			t.Errorf("ladder lacks %q: %v", want, labels)
		}
	}
	// The caller authenticated: the trace keeps the header but never the
	// digest response.
	sawAuth := false
	for _, m := range tr.Messages {
		if strings.Contains(m.Text, "Proxy-Authorization:") {
			sawAuth = true
			if regexp.MustCompile(`response="?[0-9a-f]{32}`).MatchString(m.Text) {
				t.Errorf("trace keeps a digest response:\n%s", m.Text)
			}
		}
	}
	if !sawAuth {
		t.Error("no Proxy-Authorization in the trace: the test lost its point")
	}

	// The peers say what kind of NAT their messages show.
	for _, p := range srv.PeersOf(t, "alice") {
		if p.NATKind != "nat-port-changed" || !strings.Contains(p.NATExplain, "changes the address and the port") {
			t.Errorf("alice's NAT kind %q (%q), want nat-port-changed", p.NATKind, p.NATExplain)
		}
	}

	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args = append(args, "--admin", "http://"+srv.Admin, "--token", srv.Token)
		if rc := cli.Main(args, &out, &errb); rc != 0 {
			t.Fatalf("sipedge %v: exit %d: %s", args, rc, errb.String())
		}
		return out.String()
	}
	if out := run("call", "recent"); !strings.Contains(out, id) || !strings.Contains(out, "ended") {
		t.Errorf("sipedge call recent:\n%s", out)
	}
	if out := run("call", "show", id); !strings.Contains(out, "ended") || !strings.Contains(out, "audio caller->callee") {
		t.Errorf("sipedge call show (ended):\n%s", out)
	}
	out := run("call", "trace", id)
	for _, want := range []string{"INVITE", "BYE", "Via says", "relay"} {
		if !strings.Contains(out, want) {
			t.Errorf("sipedge call trace lacks %q:\n%s", want, out)
		}
	}
	if raw := run("call", "trace", id, "--raw"); !strings.Contains(raw, "Call-ID: "+id) && !strings.Contains(raw, "i: "+id) {
		t.Errorf("sipedge call trace --raw lacks the messages:\n%.2000s", raw)
	}

	// Transactions by method and class on /metrics.
	metrics := metricsText(t, srv)
	for _, want := range []string{
		`sipedge_sip_transactions_total{side="server",method="INVITE",class="2xx"} 1`,
		`sipedge_sip_transactions_total{side="server",method="INVITE",class="4xx"} 1`, // the 407
		`sipedge_sip_transactions_total{side="client",method="INVITE",class="2xx"} 1`,
		`sipedge_sip_transactions_total{side="client",method="BYE",class="2xx"} 1`,
		`sipedge_sip_transactions_total{side="server",method="REGISTER",class="2xx"}`,
		`sipedge_sip_requests_total{method="INVITE"} 2`,
		`sipedge_registrations_nated_ratio 1`,
		`sipedge_bans 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestCallTraceOff: admin.trace_calls = 0 keeps nothing.
func TestCallTraceOff(t *testing.T) {
	t.Parallel()
	srv := edgetest.Start(t, edgetest.Base, func(c *config.Config) { c.Admin.TraceCalls = 0 })
	mc := startMediaCall(t, srv)
	var recent []calltrace.Summary
	if code := srv.GetJSON(t, "/api/v1/calls/recent", &recent); code != 200 || len(recent) != 0 {
		t.Errorf("recent with trace_calls = 0: %d %+v", code, recent)
	}
	if code := srv.GetJSON(t, "/api/v1/calls/"+mc.out.CallID+"/trace", nil); code != 404 {
		t.Errorf("trace with trace_calls = 0: %d, want 404", code)
	}
	hangup(t, mc.out, mc.in, "alice", "bob")
}
