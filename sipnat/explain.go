package sipnat

import "slices"

// NAT kinds as Explain names them.
const (
	KindNone       = "none"         // nothing seen
	KindForced     = "forced"       // policy only
	KindWebSocket  = "invalid-host" // .invalid host: reachable over its own connection only
	KindPortKept   = "nat"          // address translated, port kept
	KindPortChange = "nat-port-changed"
	KindPortOnly   = "port-changed-only"  // public address announced, other port: symmetric NAT defeats STUN
	KindPartial    = "via-ok-contact-not" // Via matches the source, Contact does not: an ALG or a half-configured phone
)

// Explain turns Detect's reasons into a NAT kind and a sentence an admin
// can act on. It only reads the reasons, so it says what the messages
// show, not what the NAT is (only `sipedge probe` from the phone's network
// can tell mapping and filtering behaviour).
func Explain(rs []Reason) (kind, text string) {
	has := func(r Reason) bool { return slices.Contains(rs, r) }
	addr := has(ReasonPrivateVia) || has(ReasonViaAddr) || has(ReasonPrivateContact) || has(ReasonContactAddr)
	viaAddr := has(ReasonPrivateVia) || has(ReasonViaAddr)
	contactAddr := has(ReasonPrivateContact) || has(ReasonContactAddr)
	port := has(ReasonViaPort) || has(ReasonContactPort)
	switch {
	case len(rs) == 0:
		return KindNone, "no NAT seen: the addresses in Via and Contact are where the packets come from"
	case has(ReasonInvalidHost):
		return KindWebSocket, "the client names itself with a .invalid host (WebRTC style): it is reached only over the connection it opened"
	case addr && !viaAddr && !has(ReasonViaPort) && contactAddr:
		return KindPartial, "the Via matches where the packets come from but the Contact does not: a SIP ALG in the router may be rewriting half the message (turn it off), or the phone learned its public address for the Via only; sipedge uses the observed address either way"
	case addr && port:
		return KindPortChange, "behind a NAT that changes the address and the port: sipedge answers and calls through the observed address, and the media goes through the relay"
	case addr:
		return KindPortKept, "behind a NAT that changes the address and keeps the port: sipedge answers and calls through the observed address, and the media goes through the relay"
	case port:
		return KindPortOnly, "the phone announces its public address (STUN or set by hand) but the NAT gave this flow another port: a symmetric NAT or a port-changing ALG, where STUN alone cannot work; sipedge uses the observed port"
	case has(ReasonForced):
		return KindForced, "treated as behind NAT because its policy says nat = \"force\""
	}
	return KindNone, "no NAT seen"
}
