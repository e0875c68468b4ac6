package stun

import (
	"encoding/binary"
	"net/netip"
)

// MaxResponseGrowth is the amplification bound of Respond: a response is
// never more than MaxResponseGrowth bytes longer than the request it
// answers (a minimal 20-byte request gets at most 92 bytes back).
//
// 72 bytes is exactly the room needed by the attributes a response must
// carry in the worst case: XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN and
// OTHER-ADDRESS, each 24 bytes for IPv6. FINGERPRINT is only sent when the
// request carried one, so the request's own 8 bytes pay for it, and a 420
// response is always smaller than the unknown attributes that caused it.
// So nothing required is ever dropped; the optional attributes are, in
// this order, when they would cross the bound: SOFTWARE first, then the
// MAPPED-ADDRESS copy sent to RFC 5389+ clients for old NAT-type tools.
const MaxResponseGrowth = 72

// maxSoftware is the largest SOFTWARE value Respond sends (RFC 8489
// §14.14: fewer than 128 characters, at most 763 bytes).
const maxSoftware = 763

// maxUnknown bounds how many distinct unknown attribute types a 420
// response lists.
const maxUnknown = 16

// reason420 is the reason phrase of 420 responses.
const reason420 = "Unknown Attribute"

// ResponderOptions configures Respond. The zero value (or nil) is what the
// SIP port wants: no SOFTWARE, no RFC 5780 attributes.
type ResponderOptions struct {
	// Software is the SOFTWARE value to send, "" for none. It is dropped
	// when it does not fit under MaxResponseGrowth, or exceeds 763 bytes.
	Software string

	// ResponseOrigin, if valid, is sent as RESPONSE-ORIGIN (SOURCE-ADDRESS
	// to a classic RFC 3489 client). It must be the address the request
	// arrived on, which the response leaves from unless a CHANGE-REQUEST
	// honoured with OtherAddress moves it (see below).
	ResponseOrigin netip.AddrPort

	// OtherAddress, if valid, is sent as OTHER-ADDRESS (CHANGED-ADDRESS to
	// a classic client). Setting it declares that the caller is an RFC 5780
	// server that honours CHANGE-REQUEST by choosing the socket the
	// response leaves from (see RespondTo and Delivery); without it, a
	// request asking for a change of address or port gets a 420 listing
	// CHANGE-REQUEST, which tells a NAT probe that this server cannot do
	// behaviour discovery.
	//
	// With both addresses set, ResponseOrigin is the address the request
	// arrived on (Da:Dp in RFC 5780 §6.1) and OtherAddress its opposite
	// (Ca:Cp); RESPONSE-ORIGIN then follows RFC 5780 Table 1: the IP of
	// OtherAddress replaces that of ResponseOrigin when "change IP" is
	// asked, its port when "change port" is.
	OtherAddress netip.AddrPort

	// NoChange declares that the caller cannot send from another address
	// even though it has one (a TCP connection answers on itself): a
	// request asking for a change gets a 420 listing CHANGE-REQUEST while
	// OTHER-ADDRESS is still sent.
	NoChange bool

	// ResponsePort declares that the caller honours RESPONSE-PORT (RFC
	// 5780 §7.5): a request carrying a well-formed RESPONSE-PORT is then
	// answered, and RespondTo reports the port in Delivery.To, where the
	// caller must send the response (the request's source IP at that
	// port). Without it such a request gets a 420. Only RespondTo can
	// report the port: do not set it with Respond.
	ResponsePort bool
}

// Delivery says how to send a response built by RespondTo.
type Delivery struct {
	// ChangeIP and ChangePort are the CHANGE-REQUEST flags the response
	// honours: the caller sends it from its other IP address and/or port
	// (RFC 5780 Table 1), the address RESPONSE-ORIGIN names. Both are false
	// for an error response and when o.OtherAddress is not set.
	ChangeIP, ChangePort bool
	// To is the destination: the request's source, or, for a success
	// response to a request with RESPONSE-PORT (and o.ResponsePort set),
	// the source's IP at that port.
	To netip.AddrPort
}

var noOptions ResponderOptions

// Respond answers the STUN message b, received from src, appending the
// response to dst. It reports whether there is anything to send; when
// there is not, dst is returned unchanged. b is not retained. With a dst
// of sufficient capacity, Respond does not allocate.
//
// Only Binding requests are answered:
//
//   - An RFC 5389+ request gets a success response with
//     XOR-MAPPED-ADDRESS and, room permitting, MAPPED-ADDRESS; a classic
//     RFC 3489 request (no magic cookie) gets MAPPED-ADDRESS and its
//     16-byte id echoed. RESPONSE-ORIGIN / OTHER-ADDRESS (or SOURCE-ADDRESS
//     / CHANGED-ADDRESS) and SOFTWARE follow from o.
//   - FINGERPRINT is added when the request carried one. A request whose
//     FINGERPRINT is wrong or not last is not STUN by RFC 8489 §7.3 and
//     gets no response.
//   - A request with comprehension-required attributes (type < 0x8000)
//     that Respond does not understand gets a 420 error response listing
//     them in UNKNOWN-ATTRIBUTES. Understood, and ignored, are USERNAME,
//     MESSAGE-INTEGRITY(-SHA256), USERHASH, REALM, NONCE, the ICE
//     attributes PRIORITY and USE-CANDIDATE; understood and acted on (see
//     RespondTo) are CHANGE-REQUEST when it asks for no change or
//     o.OtherAddress is set (and o.NoChange is not), and RESPONSE-PORT
//     when o.ResponsePort is set and its value is 4 bytes with a non-zero
//     port. PADDING and RESPONSE-ADDRESS are not acted on, hence get a
//     420, as does a malformed CHANGE-REQUEST or RESPONSE-PORT.
//   - Requests are answered without MESSAGE-INTEGRITY even when they carry
//     one: the responder holds no credentials and does not check it.
//   - Indications (such as keepalives), responses, other methods, and
//     anything that does not parse get nothing.
//
// The response is never longer than len(b)+MaxResponseGrowth.
//
// Respond always sends from the receiving socket to src; a server that
// acts on CHANGE-REQUEST or RESPONSE-PORT uses RespondTo.
func Respond(dst []byte, b []byte, src netip.AddrPort, o *ResponderOptions) ([]byte, bool) {
	out, _, ok := RespondTo(dst, b, src, o)
	return out, ok
}

// RespondTo is Respond for an RFC 5780 server: it also returns how to
// send the response, from which of the caller's addresses (when
// CHANGE-REQUEST asks for a change that o allows) and to which address
// (the source, or RESPONSE-PORT when o.ResponsePort allows it). Neither
// changes the size of the response, so the bound of MaxResponseGrowth
// holds, and RespondTo does not allocate either.
func RespondTo(dst []byte, b []byte, src netip.AddrPort, o *ResponderOptions) ([]byte, Delivery, bool) {
	if o == nil {
		o = &noOptions
	}
	ip := src.Addr().Unmap()
	if !ip.IsValid() || checkHeader(b) != nil {
		return dst, Delivery{}, false
	}
	src = netip.AddrPortFrom(ip, src.Port())
	method, class := splitType(binary.BigEndian.Uint16(b))
	if method != MethodBinding || class != ClassRequest {
		return dst, Delivery{}, false
	}
	cookie := binary.BigEndian.Uint32(b[4:])
	var tid [12]byte
	copy(tid[:], b[8:HeaderSize])

	var unknown [maxUnknown]uint16
	nUnknown := 0
	fingerprint := false
	seenChange, seenPort := false, false
	var change byte     // CHANGE-REQUEST flags of the first CHANGE-REQUEST
	var respPort uint16 // value of the first RESPONSE-PORT, 0 if none
	it := newAttrIter(b)
	for {
		t, v, _, ok := it.next()
		if !ok {
			break
		}
		switch {
		case t == AttrFingerprint:
			fingerprint = true
		case t >= 0x8000 || understood(t, v, o):
			// The first occurrence counts, as for Message.Get.
			if t == AttrChangeRequest && !seenChange {
				seenChange, change = true, v[3]&(changeIPFlag|changePortFlag)
			}
			if t == AttrResponsePort && !seenPort {
				seenPort, respPort = true, binary.BigEndian.Uint16(v)
			}
		case nUnknown < maxUnknown && !contains(unknown[:nUnknown], t):
			unknown[nUnknown] = t
			nUnknown++
		}
	}
	if it.err != nil {
		return dst, Delivery{}, false
	}
	if fingerprint {
		if _, err := checkFingerprint(b); err != nil {
			return dst, Delivery{}, false
		}
	}
	d := Delivery{To: src}

	bound := len(b) + MaxResponseGrowth
	fpSize := 0
	if fingerprint {
		fpSize = 8
	}
	var bl Builder
	if nUnknown > 0 {
		bl.ResetClassic(dst, MethodBinding, ClassError, cookie, tid)
		bl.AddErrorCode(420, reason420)
		bl.AddUnknownAttributes(unknown[:nUnknown])
	} else {
		// understood() let a change through only if o allows it.
		d.ChangeIP, d.ChangePort = change&changeIPFlag != 0, change&changePortFlag != 0
		if respPort != 0 {
			d.To = netip.AddrPortFrom(ip, respPort)
		}
		origin := o.ResponseOrigin
		if origin.IsValid() && d.ChangeIP {
			origin = netip.AddrPortFrom(o.OtherAddress.Addr(), origin.Port())
		}
		if origin.IsValid() && d.ChangePort {
			origin = netip.AddrPortFrom(origin.Addr(), o.OtherAddress.Port())
		}
		bl.ResetClassic(dst, MethodBinding, ClassSuccess, cookie, tid)
		mapped := 4 + addressLen(src)
		need := HeaderSize + mapped + fpSize
		if origin.IsValid() {
			need += 4 + addressLen(origin)
		}
		if o.OtherAddress.IsValid() {
			need += 4 + addressLen(o.OtherAddress)
		}
		originType, otherType := uint16(AttrResponseOrigin), uint16(AttrOtherAddress)
		if cookie != MagicCookie {
			bl.AddAddress(AttrMappedAddress, src)
			originType, otherType = AttrSourceAddress, AttrChangedAddress
		} else {
			bl.AddXORMappedAddress(src)
			if need+mapped <= bound {
				bl.AddAddress(AttrMappedAddress, src)
			}
		}
		if origin.IsValid() {
			bl.AddAddress(originType, origin)
		}
		if o.OtherAddress.IsValid() {
			bl.AddAddress(otherType, o.OtherAddress)
		}
	}
	// No SOFTWARE to classic clients: RFC 3489 parsers (Vovida's, used by
	// stund, the stun client and many old phones) reject an attribute
	// whose length is not a multiple of 4, and with it the whole answer.
	if s := o.Software; s != "" && cookie == MagicCookie && len(s) <= maxSoftware && bl.Len()+4+pad4(len(s))+fpSize <= bound {
		bl.AddSoftware(s)
	}
	if fingerprint {
		bl.AddFingerprint()
	}
	if bl.err != nil || bl.Len() > bound {
		return dst, Delivery{}, false // cannot happen (see MaxResponseGrowth); never send more
	}
	return bl.Bytes(), d, true
}

// understood reports whether Respond may ignore the comprehension-required
// attribute t with value v.
func understood(t uint16, v []byte, o *ResponderOptions) bool {
	switch t {
	case AttrUsername, AttrMessageIntegrity, AttrMessageIntegritySHA256, AttrUserhash,
		AttrRealm, AttrNonce, AttrPriority, AttrUseCandidate:
		return true
	case AttrChangeRequest:
		return len(v) == 4 && (v[3]&(changeIPFlag|changePortFlag) == 0 || o.OtherAddress.IsValid() && !o.NoChange)
	case AttrResponsePort:
		return o.ResponsePort && len(v) == 4 && (v[0] != 0 || v[1] != 0)
	}
	return false
}

func contains(ts []uint16, t uint16) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}
