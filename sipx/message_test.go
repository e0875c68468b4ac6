package sipx

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNewResponseHeaders(t *testing.T) {
	spec := newSpec("INVITE", "10.0.0.5:5060")
	spec.Extra = []string{
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-second",
		"Record-Route: <sip:p1.example.com;lr>",
		"Record-Route: <sip:p2.example.com;lr>",
		"Timestamp: 54",
	}
	req := mustParseReq(t, spec.String())
	StampReceived(req, Flow{Transport: UDP, Remote: netip.MustParseAddrPort("198.51.100.7:40512")})

	trying := NewResponse(req, 100, "Trying")
	if toTag(trying) != "" {
		t.Error("100 has a To tag")
	}
	if HeaderValue(trying, "Timestamp") != "54" {
		t.Error("100 lost Timestamp")
	}
	if len(trying.GetHeaders("Record-Route")) != 0 {
		t.Error("100 carries Record-Route")
	}

	ring := NewResponse(req, 180, "Ringing")
	vias := HeaderValues(ring, "Via")
	if len(vias) != 2 || !strings.Contains(vias[0], "received=198.51.100.7") || !strings.Contains(vias[0], "rport=40512") || !strings.Contains(vias[1], "z9hG4bK-second") {
		t.Errorf("Vias %q", vias)
	}
	if toTag(ring) == "" {
		t.Error("180 without To tag")
	}
	if rr := HeaderValues(ring, "Record-Route"); len(rr) != 2 || !strings.Contains(rr[0], "p1") {
		t.Errorf("Record-Route %q", rr)
	}
	if HeaderValue(ring, "Timestamp") != "" {
		t.Error("180 carries Timestamp")
	}
	if ring.CallID().Value() != spec.CallID || ring.From() == nil {
		t.Error("Call-ID/From not copied")
	}
	if n, m, _ := CSeqOf(ring); n != 1 || m != INVITE {
		t.Errorf("CSeq %d %s", n, m)
	}
	if len(ring.Body()) != 0 || ring.ContentLength() == nil || *ring.ContentLength() != 0 {
		t.Error("Content-Length not 0")
	}
	// Marshal parses back to the same thing.
	back, err := ParseMessage(Marshal(ring))
	if err != nil {
		t.Fatal(err)
	}
	if Branch(back) != spec.Branch || toTag(back) != toTag(ring) {
		t.Error("marshal round trip")
	}

	busy := NewResponse(req, 486, "Busy Here")
	if len(busy.GetHeaders("Record-Route")) != 0 {
		t.Error("486 carries Record-Route")
	}

	// An existing To tag is kept.
	inDialog := spec.derive("BYE", NewBranch(), "their-tag")
	bye := mustParseReq(t, inDialog.String())
	if got := toTag(NewResponse(bye, 200, "OK")); got != "their-tag" {
		t.Errorf("To tag %q, want their-tag", got)
	}
	reg := mustParseReq(t, strings.Replace(newSpec("REGISTER", "10.0.0.5:5060").String(), "CSeq:", "Record-Route: <sip:x;lr>\r\nCSeq:", 1))
	if len(NewResponse(reg, 200, "OK").GetHeaders("Record-Route")) != 0 {
		t.Error("REGISTER 200 carries Record-Route")
	}
}

func TestBranchesAndTags(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		b := NewBranch()
		if !strings.HasPrefix(b, MagicCookie) || seen[b] {
			t.Fatalf("branch %q", b)
		}
		seen[b] = true
		tg := NewTag()
		if tg == "" || seen[tg] {
			t.Fatalf("tag %q", tg)
		}
		seen[tg] = true
	}
	spec := newSpec("ACK", "10.0.0.5:5060")
	a1 := StatelessBranch(mustParseReq(t, spec.String()))
	a2 := StatelessBranch(mustParseReq(t, spec.String()))
	spec.Branch = NewBranch()
	a3 := StatelessBranch(mustParseReq(t, spec.String()))
	if a1 != a2 || a1 == a3 || !strings.HasPrefix(a1, MagicCookie) {
		t.Errorf("StatelessBranch %q %q %q", a1, a2, a3)
	}
	if Branch(mustParseReq(t, newSpec("OPTIONS", "h").String())) == "" {
		t.Error("Branch empty")
	}
	noBranch := newSpec("OPTIONS", "h")
	noBranch.Branch = ""
	if Branch(mustParseReq(t, noBranch.String())) != "" {
		t.Error("Branch of a 2543 request")
	}
}

func TestContactsAndHeaders(t *testing.T) {
	spec := newSpec("REGISTER", "10.0.0.5:5060")
	spec.Extra = []string{
		`Contact: "A" <sip:a@192.0.2.1:5060>;expires=60, <sip:b@192.0.2.2>;q=0.5`,
		"Contact: <sip:c@192.0.2.3;transport=tcp>",
		"X-A: 1",
		"X-A: 2",
	}
	req := mustParseReq(t, spec.String())
	cs := Contacts(req)
	if len(cs) != 3 {
		t.Fatalf("%d contacts", len(cs))
	}
	if cs[0].Address.User != "a" || cs[1].Address.User != "b" || cs[2].Address.User != "c" {
		t.Errorf("contacts %v %v %v", cs[0].Address, cs[1].Address, cs[2].Address)
	}
	if e, _ := cs[0].Params.Get("expires"); e != "60" {
		t.Errorf("expires %q", e)
	}
	if got := HeaderValues(req, "X-A"); len(got) != 2 || got[1] != "2" {
		t.Errorf("X-A %q", got)
	}
	RemoveHeaders(req, "X-A")
	if HeaderValue(req, "X-A") != "" || len(HeaderValues(req, "X-A")) != 0 {
		t.Error("RemoveHeaders")
	}

	star := newSpec("REGISTER", "10.0.0.5:5060")
	star.Extra = []string{"Contact: *", "Expires: 0"}
	cs = Contacts(mustParseReq(t, star.String()))
	if len(cs) != 1 || !cs[0].Address.Wildcard {
		t.Errorf("wildcard contact: %+v", cs)
	}
}
