package natprobe

import (
	"fmt"
	"math"
	"strconv"
)

// Outcomes are the results of the probe's tests, the input of Classify.
type Outcomes struct {
	// Answered: the server answered the first Binding request. false
	// means UDP is blocked (or the server is wrong); nothing else counts.
	Answered bool
	// NAT: the public address differs from the local one.
	NAT bool
	// RFC5780: the server gave an alternate address (OTHER-ADDRESS or
	// CHANGED-ADDRESS), so mapping and filtering could be tested.
	RFC5780   bool
	Mapping   Behaviour
	Filtering Behaviour
	// Rewriting: MAPPED-ADDRESS differed from XOR-MAPPED-ADDRESS; the two
	// addresses are the evidence quoted in the advice.
	Rewriting        Tri
	MappedAddress    string
	XORMappedAddress string
	Hairpinning      Tri
	// Lifetime is nil when it was not measured.
	Lifetime *Lifetime
}

// Classification is the verdict on Outcomes.
type Classification struct {
	RFC3489Name string
	Advice      []string
}

// Classify names the NAT in RFC 3489 terms and gives advice for SIP
// phones behind it. It is a pure function of o.
func Classify(o Outcomes) Classification {
	return Classification{RFC3489Name: RFC3489Name(o), Advice: Advice(o)}
}

// RFC3489Name gives the classic RFC 3489 §5 name for the outcomes. RFC
// 3489 knew only endpoint-independent mapping as "cone": any other
// mapping is "symmetric", whatever the filtering.
func RFC3489Name(o Outcomes) string {
	if !o.Answered {
		return NameUDPBlocked
	}
	if !o.NAT {
		switch o.Filtering {
		case EndpointIndependent:
			return NameOpenInternet
		case AddressDependent, AddressAndPortDependent:
			return NameSymmetricFirewall
		}
		return NameUnknown
	}
	switch o.Mapping {
	case AddressDependent, AddressAndPortDependent:
		return NameSymmetric
	case EndpointIndependent:
		switch o.Filtering {
		case EndpointIndependent:
			return NameFullCone
		case AddressDependent:
			return NameRestrictedCone
		case AddressAndPortDependent:
			return NamePortRestricted
		}
	}
	return NameUnknown
}

// DefaultKeepalive is sipedge's default keepalive interval
// ([keepalive] interval), which the lifetime advice compares against.
const DefaultKeepalive = 25

// Advice gives concrete advice for the admin of SIP phones behind the
// probed NAT, most urgent first.
func Advice(o Outcomes) []string {
	if !o.Answered {
		return []string{"no STUN answer over UDP: check the server address and port; if they are right, UDP is blocked here, so phones need SIP over TCP or TLS and calls will have no audio until UDP is allowed"}
	}
	var a []string
	if o.Rewriting == TriYes {
		a = append(a, fmt.Sprintf("a device rewrites addresses inside packets (MAPPED-ADDRESS %s, XOR-MAPPED-ADDRESS %s), most likely a SIP ALG: disable the router's SIP ALG (SIP helper / nf_conntrack_sip); it mangles REGISTERs and SDP and breaks calls through sipedge",
			orDash(o.MappedAddress), orDash(o.XORMappedAddress)))
	}
	firewall := false
	if !o.NAT {
		switch o.Filtering {
		case AddressDependent, AddressAndPortDependent:
			firewall = true
			a = append(a, "no NAT, but a stateful firewall drops unsolicited UDP (symmetric UDP firewall): sipedge sees these phones as not NATed and does not ping them, so set nat = \"force\" for their users (or [keepalive] all = true) to keep the firewall open for incoming calls")
		default:
			a = append(a, "no NAT: this host's address is public; phones here need no NAT traversal")
		}
	} else {
		switch o.Mapping {
		case AddressDependent, AddressAndPortDependent:
			a = append(a, "symmetric NAT ("+string(o.Mapping)+" mapping): phones need the relay (media = \"nat\" or \"always\"); STUN alone will not give them a usable address")
		case EndpointIndependent:
			a = append(a, "endpoint-independent mapping: the public address a phone learns with STUN is the one every peer sees")
		}
		switch o.Filtering {
		case AddressAndPortDependent:
			a = append(a, "address-and-port-dependent filtering: unsolicited packets are dropped, so INVITEs reach a phone only from the address and port it registered to, and only while keepalives hold the binding open")
		case AddressDependent:
			a = append(a, "address-dependent filtering: only hosts a phone has sent to can reach it; INVITEs from sipedge arrive while keepalives hold the binding, media from other hosts needs the phone to send first or the relay")
		case EndpointIndependent:
			a = append(a, "endpoint-independent filtering: anyone can reach a phone's public address while its binding lives (incoming calls work, and so do SIP scanners)")
		}
		switch o.Hairpinning {
		case TriNo:
			a = append(a, "no hairpinning: phones behind this NAT cannot reach each other via the public address: relay needed for calls between them (media = \"nat\" relays them)")
		case TriYes:
			a = append(a, "hairpinning works: phones behind this NAT can reach each other via their public addresses")
		}
	}
	if o.NAT || firewall {
		if s := lifetimeAdvice(o.Lifetime); s != "" {
			a = append(a, s)
		}
	}
	if !o.RFC5780 {
		a = append(a, "the server does not support RFC 5780 behaviour discovery (no OTHER-ADDRESS): only the public address, address rewriting and hairpinning were tested; probe an RFC 5780 server (such as sipedge's STUN server) to learn the NAT's mapping and filtering")
	} else {
		var open []string
		if o.NAT && o.Mapping == Unknown {
			open = append(open, "mapping")
		}
		if o.Filtering == Unknown {
			open = append(open, "filtering")
		}
		switch len(open) {
		case 1:
			a = append(a, "the "+open[0]+" behaviour could not be determined (the server's alternate address did not answer, or CHANGE-REQUEST was not honoured): see the tests")
		case 2:
			a = append(a, "the mapping and filtering behaviours could not be determined (the server's alternate address did not answer, or CHANGE-REQUEST was not honoured): see the tests")
		}
	}
	return a
}

// lifetimeAdvice turns a lifetime measurement into advice ("" for none).
func lifetimeAdvice(l *Lifetime) string {
	if l == nil {
		return ""
	}
	switch l.Status {
	case LifetimeMeasured:
		if l.LowerS <= 0 {
			return "binding lifetime under " + secs(l.UpperS) + " s: too short for UDP keepalives; use SIP over TCP or TLS for phones behind this NAT"
		}
		s := "binding lifetime between " + secs(l.LowerS) + " and " + secs(l.UpperS) + " s: keepalive interval must be under " + secs(l.LowerS) + " s"
		if !defaultKeepaliveOK(l.LowerS) {
			sug := SuggestKeepalive(l.LowerS)
			return s + fmt.Sprintf(" (suggest %d s: [keepalive] interval = \"%ds\"; sipedge's default of %d s is too long)", sug, sug, DefaultKeepalive)
		}
		return s + fmt.Sprintf("; sipedge's default of %d s is fine", DefaultKeepalive)
	case LifetimeLongerThan:
		if defaultKeepaliveOK(l.LowerS) {
			return "idle bindings survive more than " + secs(l.LowerS) + fmt.Sprintf(" s (the longest tested): sipedge's default keepalive of %d s is ample", DefaultKeepalive)
		}
		return "idle bindings survive at least " + secs(l.LowerS) + fmt.Sprintf(" s (the longest tested): probe with a longer --lifetime-max to check sipedge's default keepalive of %d s", DefaultKeepalive)
	case LifetimeUnsupported:
		return fmt.Sprintf("the server does not support RESPONSE-PORT, so the binding lifetime was not measured; keep sipedge's default keepalive of %d s (under the 30 s UDP timeout of many NATs)", DefaultKeepalive)
	}
	s := "the binding lifetime could not be measured"
	if l.Note != "" {
		s += " (" + l.Note + ")"
	}
	return s
}

// defaultKeepaliveOK: sipedge's default keepalive leaves a margin of at
// least 5 s under a binding known to survive lower seconds.
func defaultKeepaliveOK(lower float64) bool { return lower >= DefaultKeepalive+5 }

// SuggestKeepalive suggests a keepalive interval in whole seconds for a
// binding known to survive lower seconds of idleness: 80 % of it, so that
// a late or lost keepalive does not let the binding expire; at least 1.
func SuggestKeepalive(lower float64) int {
	s := int(math.Floor(lower * 0.8))
	if s < 1 {
		return 1
	}
	return s
}

// secs formats seconds without needless decimals.
func secs(s float64) string {
	return strconv.FormatFloat(s, 'f', -1, 64)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
