package location

import (
	"encoding/json"
	"net/netip"
	"strings"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// Binding is one registered Contact of an address-of-record, bound to the
// flow the REGISTER arrived on (RFC 3261 §10, RFC 5626 §6).
//
// JSON: field names are snake_case and stable (the admin API exposes them);
// see MarshalJSON for the shape of "flow". Every field is always present;
// nil slices encode as [].
type Binding struct {
	// AOR is the address-of-record, "user@domain" without scheme, domain
	// lower-cased (see NormalizeAOR). The store sets it to its key.
	AOR string `json:"aor"`
	// User is the user part of the AOR (authentication user as the
	// registrar sees it).
	User string `json:"user"`
	// Contact is the Contact header field value exactly as sent, e.g.
	// `"Alice" <sip:alice@192.168.1.20:5060;transport=udp>;+sip.instance="<urn:uuid:…>"`.
	Contact string `json:"contact"`
	// ContactURI is the URI inside Contact; the proxy uses it as
	// Request-URI when it forwards to this binding.
	ContactURI string `json:"contact_uri"`
	// CallID and CSeq are from the REGISTER that last refreshed the
	// binding (RFC 3261 §10.3 step 7).
	CallID string `json:"call_id"`
	// UserAgent is the User-Agent header of that REGISTER.
	UserAgent string `json:"user_agent"`
	// Instance is the +sip.instance Contact parameter (RFC 5626), "" if
	// none.
	Instance string `json:"instance"`
	// Flow is where the REGISTER came from; requests for this binding are
	// sent there.
	Flow sipx.Flow `json:"flow"`
	// Expires is when the binding lapses. A binding whose Expires is not
	// after the store's clock is expired and invisible.
	Expires time.Time `json:"expires"`
	// Registered is when this binding was first registered; Updated when
	// it was last refreshed. Zero values are set to the store's clock when
	// stored.
	Registered time.Time `json:"registered"`
	Updated    time.Time `json:"updated"`
	// NATReasons are the sipnat reasons found for the REGISTER.
	NATReasons []string `json:"nat_reasons"`
	// Path is the Path header field values to use when routing to this
	// binding (RFC 3327), in order.
	Path []string `json:"path"`
	// RegID is the reg-id Contact parameter (RFC 5626), 0 if none.
	RegID int `json:"reg_id"`
	// CSeq is the CSeq number of the last REGISTER for this binding.
	CSeq uint32 `json:"cseq"`
	// Q is the Contact q-value (RFC 3261 §20.10); 0 means the Contact had
	// none. Lookup orders a missing q like q=1.0 (the usual meaning of an
	// absent qvalue), so an explicit "q=0" cannot be told from "no q" here;
	// a registrar that must keep it can store 0.001, the smallest qvalue.
	Q float32 `json:"q"`
	// NAT reports whether the peer was detected as behind a NAT.
	NAT bool `json:"nat"`
}

// Expired reports whether b has lapsed at now.
func (b *Binding) Expired(now time.Time) bool { return !b.Expires.After(now) }

// priority is the q-value used for ordering: unset counts as 1.0.
func (b *Binding) priority() float32 {
	if b.Q == 0 {
		return 1
	}
	return b.Q
}

// FlowJSON is how a sipx.Flow appears in a Binding's JSON:
//
//	{"transport":"udp","local":"198.51.100.10:5060","remote":"203.0.113.9:40512","conn_id":0}
//
// Addresses are "ip:port" ("[v6]:port" for IPv6); an unset address is "".
type FlowJSON struct {
	Transport string `json:"transport"`
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	ConnID    uint64 `json:"conn_id"`
}

func flowToJSON(f sipx.Flow) FlowJSON {
	j := FlowJSON{Transport: f.Transport, ConnID: f.ConnID}
	if f.Local.IsValid() {
		j.Local = f.Local.String()
	}
	if f.Remote.IsValid() {
		j.Remote = f.Remote.String()
	}
	return j
}

func flowFromJSON(j FlowJSON) (sipx.Flow, error) {
	f := sipx.Flow{Transport: j.Transport, ConnID: j.ConnID}
	var err error
	if j.Local != "" {
		if f.Local, err = netip.ParseAddrPort(j.Local); err != nil {
			return f, err
		}
	}
	if j.Remote != "" {
		if f.Remote, err = netip.ParseAddrPort(j.Remote); err != nil {
			return f, err
		}
	}
	return f, nil
}

// bindingFields is Binding without methods, so the JSON methods can reuse
// the struct tags without recursing.
type bindingFields Binding

// MarshalJSON encodes b with its struct tags, except that "flow" is a
// FlowJSON object and nil slices are [].
func (b Binding) MarshalJSON() ([]byte, error) {
	v := struct {
		bindingFields
		Flow FlowJSON `json:"flow"` // shadows bindingFields.Flow
	}{bindingFields(b), flowToJSON(b.Flow)}
	if v.NATReasons == nil {
		v.NATReasons = []string{}
	}
	if v.Path == nil {
		v.Path = []string{}
	}
	return json.Marshal(v)
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (b *Binding) UnmarshalJSON(data []byte) error {
	var v struct {
		bindingFields
		Flow FlowJSON `json:"flow"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	f, err := flowFromJSON(v.Flow)
	if err != nil {
		return err
	}
	*b = Binding(v.bindingFields)
	b.Flow = f
	return nil
}

// NormalizeAOR returns aor with its domain (the part after the last '@',
// or all of it when there is no '@') lower-cased. The user part is case
// sensitive (RFC 3261 §19.1.4) and kept. The store normalizes every AOR it
// is given, so callers need not.
func NormalizeAOR(aor string) string {
	at := strings.LastIndexByte(aor, '@')
	dom := aor[at+1:]
	for i := 0; i < len(dom); i++ {
		if c := dom[i]; 'A' <= c && c <= 'Z' {
			return aor[:at+1] + strings.ToLower(dom)
		}
	}
	return aor
}

// clone returns a copy of b that shares no slices with it.
func (b Binding) clone() Binding {
	if b.NATReasons != nil {
		b.NATReasons = append([]string(nil), b.NATReasons...)
	}
	if b.Path != nil {
		b.Path = append([]string(nil), b.Path...)
	}
	return b
}
