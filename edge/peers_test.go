package edge_test

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/edge/edgetest"
	"github.com/sipedge/sipedge/uatest"
)

// TestPeersPages: every page of /api/v1/peers, with and without filters,
// is the matching slice of the full list, trunks sorted in among the
// registrations, and X-Total-Count is the number of matches.
func TestPeersPages(t *testing.T) {
	t.Parallel()
	trunk := uatest.New(t, uatest.Config{Name: "trunk", User: "trunk"})
	// "bob-carrier" sorts between bob's and carol's registrations.
	srv := edgetest.Start(t, edgetest.Base+fmt.Sprintf(`
[[routes]]
name = "bob-carrier"
to = "sip:%s"
keepalive = "30s"
`, trunk.Addr()))
	mustRegister(t, natPhone(t, srv, "alice", aliceLAN))
	mustRegister(t, natPhone(t, srv, "bob", bobLAN))
	mustRegister(t, srv.Phone(t, uatest.Config{Name: "carol", User: "carol"})) // not NATed
	mustRegister(t, natPhone(t, srv, "carol", "10.9.9.9"))                     // a second contact

	all := srv.Peers(t)
	var names []string
	for _, p := range all {
		names = append(names, p.AOR)
	}
	if fmt.Sprint(names) != "[alice@test.example bob-carrier bob@test.example carol@test.example carol@test.example]" &&
		fmt.Sprint(names) != "[alice@test.example bob@test.example bob-carrier carol@test.example carol@test.example]" {
		t.Fatalf("peers in order %v", names)
	}
	for _, filter := range []string{"", "nat=yes", "nat=no", "q=CAROL", "q=10.9.9", "status=none", "q=zzz"} {
		want, total := admin.FilterPeers(all, parseQuery(t, filter))
		var got []admin.Peer
		code := srv.GetJSON(t, "/api/v1/peers?"+filter, &got)
		if code != 200 || len(got) != len(want) || total != len(want) {
			t.Errorf("%s: %d, %d peers, want %d", filter, code, len(got), len(want))
			continue
		}
		for off := 0; off <= total+1; off++ {
			for lim := 0; lim <= total+1; lim++ {
				var page []admin.Peer
				q := fmt.Sprintf("/api/v1/peers?%s&offset=%d&limit=%d", filter, off, lim)
				if srv.GetJSON(t, q, &page); !samePeers(page, want[min(off, total):min(off+lim, total)]) {
					t.Errorf("%s: got %d peers %v, want %v", q, len(page), aors(page), aors(want[min(off, total):min(off+lim, total)]))
				}
			}
		}
	}
}

func parseQuery(t *testing.T, s string) admin.PeerQuery {
	q := admin.PeerQuery{Limit: -1}
	switch s {
	case "nat=yes":
		q.NAT = new(true)
	case "nat=no":
		q.NAT = new(false)
	case "status=none":
		q.Status = "none"
	case "":
	default:
		q.Q = map[string]string{"q=CAROL": "carol", "q=10.9.9": "10.9.9", "q=zzz": "zzz"}[s]
		if q.Q == "" {
			t.Fatalf("parseQuery %q", s)
		}
	}
	return q
}

func aors(ps []admin.Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.AOR+" "+p.Contact)
	}
	return out
}

// samePeers compares the identity of two lists (the keepalive state moves
// between requests).
func samePeers(a, b []admin.Peer) bool { return reflect.DeepEqual(aors(a), aors(b)) }
