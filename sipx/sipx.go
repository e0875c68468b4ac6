// Package sipx is sipedge's SIP transport and transaction layer, and the only
// package that imports sipgo. It uses sipgo's message model and parser (well
// tested against RFC 4475), but owns the sockets, the flows and the
// transactions itself, because an edge proxy needs what sipgo's layers do not
// give it:
//
//   - messages from one socket are handled in order, in the reading
//     goroutine (sipgo spawns a goroutine per message, so a 180 and a 200
//     sent back to back can be reordered);
//   - every request is stamped with received/rport, and responses always go
//     back to the observed source (NAT), whether or not the client asked;
//   - requests to a peer leave from the socket the peer's flow arrived on,
//     never from a fresh ephemeral port;
//   - the handler decides whether a request gets a server transaction: a
//     registrar answers statelessly and keeps no 32 s transaction per
//     REGISTER;
//   - nothing logs raw packets above debug level (they carry credentials).
//
// Other packages use the aliases below instead of importing sipgo.
package sipx

import (
	"github.com/emiago/sipgo/sip"
)

// Aliases so that the rest of sipedge never imports sipgo directly.
type (
	Message       = sip.Message
	Request       = sip.Request
	Response      = sip.Response
	Header        = sip.Header
	Uri           = sip.Uri
	ViaHeader     = sip.ViaHeader
	ContactHeader = sip.ContactHeader
	HeaderParams  = sip.HeaderParams
	RequestMethod = sip.RequestMethod
	RouteHeader   = sip.RouteHeader
	RecordRoute   = sip.RecordRouteHeader
	CSeqHeader    = sip.CSeqHeader
	ExpiresHeader = sip.ExpiresHeader
	MaxForwards   = sip.MaxForwardsHeader
)

// Methods.
const (
	INVITE    = sip.INVITE
	ACK       = sip.ACK
	CANCEL    = sip.CANCEL
	BYE       = sip.BYE
	REGISTER  = sip.REGISTER
	OPTIONS   = sip.OPTIONS
	SUBSCRIBE = sip.SUBSCRIBE
	NOTIFY    = sip.NOTIFY
	PUBLISH   = sip.PUBLISH
	INFO      = sip.INFO
	PRACK     = sip.PRACK
	UPDATE    = sip.UPDATE
	MESSAGE   = sip.MESSAGE
	REFER     = sip.REFER
)

// ParseUri parses a SIP URI.
func ParseUri(s string, u *Uri) error { return sip.ParseUri(s, u) }

// ParseAddressValue parses a name-addr/addr-spec header value (Contact,
// Route, From...) into its URI and header parameters.
func ParseAddressValue(s string, u *Uri, params *HeaderParams) (string, error) {
	return sip.ParseAddressValue(s, u, params)
}

// NewHeader returns a generic header.
func NewHeader(name, value string) Header { return sip.NewHeader(name, value) }

// NewParams returns empty header params.
func NewParams() HeaderParams { return sip.NewParams() }

// NewRequest returns a request with no headers.
func NewRequest(method RequestMethod, ruri Uri) *Request { return sip.NewRequest(method, ruri) }

// ParseMessage parses one SIP message from a datagram.
func ParseMessage(b []byte) (Message, error) { return sip.ParseMessage(b) }
