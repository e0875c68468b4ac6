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
	// to a classic RFC 3489 client). It must be the address the caller
	// will send the response from.
	ResponseOrigin netip.AddrPort

	// OtherAddress, if valid, is sent as OTHER-ADDRESS (CHANGED-ADDRESS to
	// a classic client). Setting it declares that the caller is an RFC 5780
	// server that honours CHANGE-REQUEST by choosing the socket the
	// response leaves from (see Message.ChangeRequest); without it, a
	// request asking for a change of address or port gets a 420 listing
	// CHANGE-REQUEST, which tells a NAT probe that this server cannot do
	// behaviour discovery.
	OtherAddress netip.AddrPort
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
//     attributes PRIORITY and USE-CANDIDATE, and CHANGE-REQUEST when it
//     asks for no change or o.OtherAddress is set. RESPONSE-PORT, PADDING
//     and RESPONSE-ADDRESS are not acted on, hence get a 420.
//   - Requests are answered without MESSAGE-INTEGRITY even when they carry
//     one: the responder holds no credentials and does not check it.
//   - Indications (such as keepalives), responses, other methods, and
//     anything that does not parse get nothing.
//
// The response is never longer than len(b)+MaxResponseGrowth.
func Respond(dst []byte, b []byte, src netip.AddrPort, o *ResponderOptions) ([]byte, bool) {
	if o == nil {
		o = &noOptions
	}
	ip := src.Addr().Unmap()
	if !ip.IsValid() || checkHeader(b) != nil {
		return dst, false
	}
	src = netip.AddrPortFrom(ip, src.Port())
	method, class := splitType(binary.BigEndian.Uint16(b))
	if method != MethodBinding || class != ClassRequest {
		return dst, false
	}
	cookie := binary.BigEndian.Uint32(b[4:])
	var tid [12]byte
	copy(tid[:], b[8:HeaderSize])

	var unknown [maxUnknown]uint16
	nUnknown := 0
	fingerprint := false
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
		case nUnknown < maxUnknown && !contains(unknown[:nUnknown], t):
			unknown[nUnknown] = t
			nUnknown++
		}
	}
	if it.err != nil {
		return dst, false
	}
	if fingerprint {
		if _, err := checkFingerprint(b); err != nil {
			return dst, false
		}
	}

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
		bl.ResetClassic(dst, MethodBinding, ClassSuccess, cookie, tid)
		mapped := 4 + addressLen(src)
		need := HeaderSize + mapped + fpSize
		if o.ResponseOrigin.IsValid() {
			need += 4 + addressLen(o.ResponseOrigin)
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
		if o.ResponseOrigin.IsValid() {
			bl.AddAddress(originType, o.ResponseOrigin)
		}
		if o.OtherAddress.IsValid() {
			bl.AddAddress(otherType, o.OtherAddress)
		}
	}
	if s := o.Software; s != "" && len(s) <= maxSoftware && bl.Len()+4+pad4(len(s))+fpSize <= bound {
		bl.AddSoftware(s)
	}
	if fingerprint {
		bl.AddFingerprint()
	}
	if bl.err != nil || bl.Len() > bound {
		return dst, false // cannot happen (see MaxResponseGrowth); never send more
	}
	return bl.Bytes(), true
}

// understood reports whether Respond may ignore the comprehension-required
// attribute t with value v.
func understood(t uint16, v []byte, o *ResponderOptions) bool {
	switch t {
	case AttrUsername, AttrMessageIntegrity, AttrMessageIntegritySHA256, AttrUserhash,
		AttrRealm, AttrNonce, AttrPriority, AttrUseCandidate:
		return true
	case AttrChangeRequest:
		return len(v) == 4 && (v[3]&(changeIPFlag|changePortFlag) == 0 || o.OtherAddress.IsValid())
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
