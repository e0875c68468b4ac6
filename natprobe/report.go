package natprobe

import (
	"encoding/json"
	"fmt"
)

// Behaviour is a NAT mapping or filtering behaviour in RFC 4787 terms
// (§4.1 mapping, §5 filtering).
type Behaviour string

// The RFC 4787 behaviours, and Unknown when a test could not decide.
const (
	EndpointIndependent     Behaviour = "endpoint-independent"
	AddressDependent        Behaviour = "address-dependent"
	AddressAndPortDependent Behaviour = "address-and-port-dependent"
	Unknown                 Behaviour = "unknown"
)

// Classic RFC 3489 §5 NAT type names, as Report.RFC3489Name gives them.
const (
	NameOpenInternet      = "open internet"
	NameFullCone          = "full cone"
	NameRestrictedCone    = "restricted cone"
	NamePortRestricted    = "port-restricted cone"
	NameSymmetric         = "symmetric"
	NameUDPBlocked        = "UDP blocked"
	NameSymmetricFirewall = "symmetric UDP firewall"
	NameUnknown           = "unknown"
)

// Tri is a yes/no answer that a test may leave open. In JSON it is true,
// false, or null for unknown.
type Tri int8

// Tri values. The zero value is unknown.
const (
	TriUnknown Tri = iota
	TriNo
	TriYes
)

// TriOf converts a bool.
func TriOf(b bool) Tri {
	if b {
		return TriYes
	}
	return TriNo
}

func (t Tri) String() string {
	switch t {
	case TriYes:
		return "yes"
	case TriNo:
		return "no"
	}
	return "unknown"
}

// MarshalJSON encodes true, false or null.
func (t Tri) MarshalJSON() ([]byte, error) {
	switch t {
	case TriYes:
		return []byte("true"), nil
	case TriNo:
		return []byte("false"), nil
	}
	return []byte("null"), nil
}

// UnmarshalJSON decodes true, false or null.
func (t *Tri) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "true":
		*t = TriYes
	case "false":
		*t = TriNo
	case "null":
		*t = TriUnknown
	default:
		return fmt.Errorf("natprobe: %s is not true, false or null", b)
	}
	return nil
}

// Report is what a probe found. Its JSON field names are stable; fields
// are added, not renamed.
type Report struct {
	Server ServerInfo `json:"server"`
	// LocalAddress is the probe's main socket as this host sees it (with
	// the routed source IP when the socket is bound to the wildcard).
	LocalAddress string `json:"local_address"`
	// PublicAddress is the mapped (server-reflexive) address of that
	// socket: XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from an RFC 3489
	// server. Empty when the server did not answer.
	PublicAddress string `json:"public_address"`
	// NATPresent: the public address differs from the local one.
	NATPresent bool `json:"nat_present"`
	// Mapping and Filtering are the RFC 4787 behaviours (RFC 5780 §4.3,
	// §4.4); Unknown without an RFC 5780 server.
	Mapping   Behaviour `json:"mapping"`
	Filtering Behaviour `json:"filtering"`
	// RFC3489Name is the classic name: open internet, full cone,
	// restricted cone, port-restricted cone, symmetric, UDP blocked,
	// symmetric UDP firewall, or unknown.
	RFC3489Name string    `json:"rfc3489_name"`
	Rewriting   Rewriting `json:"rewriting"`
	// Hairpinning: whether a packet from a second socket behind the NAT to
	// the first socket's public address arrives (RFC 5780 §4.5). null
	// without a NAT or when the test could not run.
	Hairpinning Tri `json:"hairpinning"`
	// HairpinSource is where the hairpinned packet came from: the second
	// socket's public address (the NAT translated it, as RFC 4787 REQ-9
	// wants) or its private one.
	HairpinSource string `json:"hairpin_source,omitempty"`
	// BindingLifetime is null unless requested (Config.Lifetime).
	BindingLifetime *Lifetime `json:"binding_lifetime"`
	// Tests lists every exchange in a fixed order.
	Tests []Test `json:"tests"`
	// Advice is for the admin of SIP phones behind this NAT.
	Advice []string `json:"advice"`
	// DurationS is the wall time of the probe in seconds.
	DurationS float64 `json:"duration_s"`
	// Error is set when the probe could not complete (Probe also returns
	// it): for example no answer at all from the server.
	Error string `json:"error,omitempty"`
}

// ServerInfo describes the STUN server and what it can do.
type ServerInfo struct {
	Name           string `json:"name"`    // as given, with the default port added
	Address        string `json:"address"` // the resolved address probed
	Software       string `json:"software,omitempty"`
	OtherAddress   string `json:"other_address,omitempty"`   // OTHER-ADDRESS (CHANGED-ADDRESS)
	ResponseOrigin string `json:"response_origin,omitempty"` // RESPONSE-ORIGIN (SOURCE-ADDRESS)
	// RFC5780: the server gave an alternate address, so the mapping and
	// filtering tests could run. Without it only the public address,
	// rewriting and hairpinning are tested.
	RFC5780 bool `json:"rfc5780"`
	// ClassicRFC3489: the answer had no XOR-MAPPED-ADDRESS (an RFC 3489
	// server).
	ClassicRFC3489 bool `json:"classic_rfc3489"`
	// ChangeRequest: CHANGE-REQUEST was honoured (answers came from the
	// other address / port). ResponsePort: RESPONSE-PORT was honoured
	// (only tested with the lifetime test).
	ChangeRequest Tri      `json:"change_request"`
	ResponsePort  Tri      `json:"response_port"`
	Notes         []string `json:"notes,omitempty"`
}

// Rewriting is the check for a device that rewrites addresses inside
// packets (typically a SIP ALG): the plain MAPPED-ADDRESS is open to such
// rewriting, XOR-MAPPED-ADDRESS is not.
type Rewriting struct {
	Detected         Tri    `json:"detected"`
	MappedAddress    string `json:"mapped_address,omitempty"`     // MAPPED-ADDRESS as received
	XORMappedAddress string `json:"xor_mapped_address,omitempty"` // XOR-MAPPED-ADDRESS as received
	Evidence         string `json:"evidence"`
}

// Lifetime states for Lifetime.Status.
const (
	LifetimeMeasured    = "measured"        // a binding was gone after UpperS
	LifetimeLongerThan  = "longer-than-max" // every binding survived; LowerS is the longest tested
	LifetimeUnsupported = "unsupported"     // the server does not honour RESPONSE-PORT
	LifetimeUnknown     = "unknown"         // the test could not run; see Note
)

// Lifetime is the binding lifetime test (RFC 5780 §4.6): how long a
// binding lives without traffic.
type Lifetime struct {
	Status string `json:"status"`
	// Seconds is the conservative lifetime: the longest idle time a
	// binding was seen to survive (LowerS). Keepalives must come more
	// often than this.
	Seconds float64 `json:"seconds"`
	// LowerS survived, UpperS did not (0 when every binding survived):
	// the lifetime is in (LowerS, UpperS].
	LowerS float64        `json:"lower_s"`
	UpperS float64        `json:"upper_s"`
	MaxS   float64        `json:"max_s"`
	Steps  []LifetimeStep `json:"steps,omitempty"`
	Note   string         `json:"note,omitempty"`
}

// LifetimeStep is one binding left idle for IdleS seconds.
type LifetimeStep struct {
	IdleS    float64 `json:"idle_s"`   // nominal idle time
	Survived Tri     `json:"survived"` // null: not tested (skipped or failed)
	Note     string  `json:"note,omitempty"`
}

// Test is one exchange of the probe.
type Test struct {
	// Name is stable: binding, mapping-2, mapping-3, filtering-2,
	// filtering-3, hairpin-binding, hairpin, lifetime-binding-<T>,
	// lifetime-check, lifetime-<T>.
	Name    string `json:"name"`
	From    string `json:"from"`    // local socket
	To      string `json:"to"`      // destination
	Request string `json:"request"` // what was asked
	// Outcome: "answered", "no answer", "error: ...", "received",
	// "skipped: ...".
	Outcome      string  `json:"outcome"`
	ResponseFrom string  `json:"response_from,omitempty"`
	ReceivedOn   string  `json:"received_on,omitempty"` // local socket the answer arrived on
	Mapped       string  `json:"mapped,omitempty"`
	RTTMs        float64 `json:"rtt_ms,omitempty"`
	Sent         int     `json:"sent,omitempty"` // transmissions
	Note         string  `json:"note,omitempty"`
}

// String is the report as JSON (for logs).
func (r *Report) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}
