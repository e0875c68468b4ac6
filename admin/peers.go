package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// PeerQuery selects peers: the parameters of GET /api/v1/peers.
//
//	q=TEXT        substring (case-insensitive) of AOR, contact, observed
//	              address or user agent
//	nat=yes|no    NATed peers only, or only peers not behind NAT
//	status=S      keepalive status: ok|lagged|unreachable|unknown|
//	              unmonitored, or "none" (no keepalives)
//	offset=N      skip the first N matches (sorted by AOR, then contact)
//	limit=N       at most N peers
//
// The answer's X-Total-Count header says how many peers matched before
// offset and limit. A backend selects before it builds the page, so a
// dashboard page of 100 out of 100,000 registrations costs little.
type PeerQuery struct {
	Q      string // lower case
	NAT    *bool
	Status string
	Offset int
	Limit  int // < 0: no limit
}

// Matches reports whether a peer with these fields is selected. status
// is called only when the query asks for one (it may cost a lookup);
// remote (the observed address) is only looked at when the query has
// text, so a caller may pass "" otherwise.
func (q PeerQuery) Matches(aor, contact, remote, userAgent string, nat bool, status func() string) bool {
	if q.NAT != nil && nat != *q.NAT {
		return false
	}
	if q.Q != "" && !containsFold(aor, q.Q) && !containsFold(contact, q.Q) && !containsFold(userAgent, q.Q) &&
		!containsFold(remote, q.Q) {
		return false
	}
	return q.Status == "" || status() == q.Status
}

// Page returns the index range of the requested page among n selected
// peers (sorted with PeerLess).
func (q PeerQuery) Page(n int) (from, to int) {
	from = min(q.Offset, n)
	to = n
	if q.Limit >= 0 && from+q.Limit < n {
		to = from + q.Limit
	}
	return from, to
}

// PeerLess orders peers as the API lists them.
func PeerLess(aorA, contactA, aorB, contactB string) bool {
	if aorA != aorB {
		return aorA < aorB
	}
	return contactA < contactB
}

// FilterPeers applies q to a full list of peers: for backends (and
// tests) that have them all at hand anyway.
func FilterPeers(all []Peer, q PeerQuery) (page []Peer, total int) {
	var sel []Peer
	for _, p := range all {
		if q.Matches(p.AOR, p.Contact, p.Remote, p.UserAgent, p.NAT, func() string { return PeerStatus(p.Keepalive) }) {
			sel = append(sel, p)
		}
	}
	sort.Slice(sel, func(i, j int) bool { return PeerLess(sel[i].AOR, sel[i].Contact, sel[j].AOR, sel[j].Contact) })
	from, to := q.Page(len(sel))
	return sel[from:to], len(sel)
}

// PeerStatus is the status a PeerQuery matches: the keepalive status, or
// "none" without keepalives.
func PeerStatus(k *Keepalive) string {
	if k == nil {
		return "none"
	}
	return k.Status
}

func parsePeerQuery(r *http.Request) (PeerQuery, string) {
	qs := r.URL.Query()
	q := PeerQuery{Q: strings.ToLower(qs.Get("q")), Status: strings.ToLower(qs.Get("status"))}
	var err1, err2 error
	q.Offset, err1 = intParam(qs.Get("offset"), 0)
	q.Limit, err2 = intParam(qs.Get("limit"), -1)
	if err1 != nil || err2 != nil {
		return q, "offset and limit must be whole numbers ≥ 0"
	}
	switch qs.Get("nat") {
	case "":
	case "yes", "true", "1":
		q.NAT = new(true)
	case "no", "false", "0":
		q.NAT = new(false)
	default:
		return q, "nat must be yes or no"
	}
	switch q.Status {
	case "", "ok", "lagged", "unreachable", "unknown", "unmonitored", "none":
	default:
		return q, "status must be ok, lagged, unreachable, unknown, unmonitored or none"
	}
	return q, ""
}

// servePeers answers GET /api/v1/peers (see PeerQuery). The body is
// written peer by peer, never as one big buffer.
func servePeers(w http.ResponseWriter, r *http.Request, b Backend) {
	q, bad := parsePeerQuery(r)
	if bad != "" {
		writeJSON(w, 400, map[string]string{"error": bad})
		return
	}
	ps, total := b.Peers(q)
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	writeJSONArray(w, ps)
}

// containsFold reports whether s contains the lower-case sub, ignoring
// ASCII case, without allocating.
func containsFold(s, sub string) bool {
	if sub == "" {
		return true
	}
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

func intParam(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err == nil && n < 0 {
		err = strconv.ErrRange
	}
	return n, err
}

// writeJSONArray writes vs as an indented JSON array one element at a
// time, so a long list is never held as one buffer.
func writeJSONArray[T any](w http.ResponseWriter, vs []T) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	if len(vs) == 0 {
		_, _ = w.Write([]byte("[]\n"))
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("  ", "  ")
	enc.SetEscapeHTML(false)
	_, _ = w.Write([]byte("[\n  "))
	for i, v := range vs {
		if i > 0 {
			_, _ = w.Write([]byte(",\n  "))
		}
		buf.Reset()
		if enc.Encode(v) != nil {
			return
		}
		_, _ = w.Write(bytes.TrimRight(buf.Bytes(), "\n"))
	}
	_, _ = w.Write([]byte("\n]\n"))
}
