package location

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

func TestBindingJSON(t *testing.T) {
	ts := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := Binding{
		AOR:        "alice@example.com",
		User:       "alice",
		Contact:    `<sip:alice@192.168.1.20:5060>;expires=3600`,
		ContactURI: "sip:alice@192.168.1.20:5060",
		Flow: sipx.Flow{Transport: sipx.UDP, Local: netip.MustParseAddrPort("198.51.100.10:5060"),
			Remote: netip.MustParseAddrPort("[2001:db8::9]:40512"), ConnID: 0},
		Expires:    ts.Add(time.Hour),
		Registered: ts,
		Updated:    ts,
		CallID:     "c1",
		CSeq:       7,
		UserAgent:  "Phone/1",
		NAT:        true,
		NATReasons: []string{"private-contact"},
		Q:          0.5,
		Instance:   "<urn:uuid:1>",
		RegID:      1,
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"aor":"alice@example.com","user":"alice","contact":"\u003csip:alice@192.168.1.20:5060\u003e;expires=3600",` +
		`"contact_uri":"sip:alice@192.168.1.20:5060","call_id":"c1","user_agent":"Phone/1","instance":"\u003curn:uuid:1\u003e",` +
		`"expires":"2026-03-01T13:00:00Z","registered":"2026-03-01T12:00:00Z","updated":"2026-03-01T12:00:00Z",` +
		`"nat_reasons":["private-contact"],"path":[],"reg_id":1,"cseq":7,"q":0.5,"nat":true,` +
		`"flow":{"transport":"udp","local":"198.51.100.10:5060","remote":"[2001:db8::9]:40512","conn_id":0}}`
	if string(data) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", data, want)
	}
	var back Binding
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	b.Path = []string{} // encoded as []
	if !reflect.DeepEqual(back, b) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back, b)
	}
	// Through a pointer and inside a slice, too.
	data2, _ := json.Marshal([]*Binding{&b})
	if !strings.Contains(string(data2), `"remote":"[2001:db8::9]:40512"`) {
		t.Errorf("pointer encoding lost the flow view: %s", data2)
	}
	// Unset flow.
	data3, _ := json.Marshal(Binding{})
	if !strings.Contains(string(data3), `"flow":{"transport":"","local":"","remote":"","conn_id":0}`) {
		t.Errorf("zero flow: %s", data3)
	}
	if err := json.Unmarshal([]byte(`{"flow":{"remote":"nope"}}`), &back); err == nil {
		t.Errorf("bad flow address accepted")
	}
}
