package stun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// MagicCookie is the fixed value of bytes 4..8 of every RFC 5389/8489
// message. Messages without it are classic RFC 3489 messages.
const MagicCookie = 0x2112A442

// HeaderSize is the size of the fixed STUN message header.
const HeaderSize = 20

// maxBody is the largest message length field: 16 bits, a multiple of 4.
const maxBody = 0xFFFC

// MethodBinding is the Binding method (RFC 8489 §18.2).
const MethodBinding = 0x001

// Class is the class of a STUN message: request, indication, success or
// error response.
type Class uint8

// The four STUN message classes.
const (
	ClassRequest    Class = 0
	ClassIndication Class = 1
	ClassSuccess    Class = 2
	ClassError      Class = 3
)

func (c Class) String() string {
	switch c {
	case ClassRequest:
		return "request"
	case ClassIndication:
		return "indication"
	case ClassSuccess:
		return "success response"
	case ClassError:
		return "error response"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// MessageType combines a 12-bit method and a class into the 14-bit message
// type of the header (RFC 8489 §5: the class bits are interleaved with the
// method bits). Higher method bits are ignored.
func MessageType(method uint16, c Class) uint16 {
	m := method & 0x0FFF
	return m&0x000F | (m&0x0070)<<1 | (m&0x0F80)<<2 |
		uint16(c&1)<<4 | uint16(c&2)<<7
}

// splitType is the inverse of MessageType.
func splitType(t uint16) (method uint16, c Class) {
	method = t&0x000F | (t&0x00E0)>>1 | (t&0x3E00)>>2
	c = Class((t>>4)&1 | (t>>7)&2)
	return method, c
}

// Attribute types. Types below 0x8000 are comprehension-required: an agent
// that does not understand one must reject the message (RFC 8489 §14).
const (
	AttrMappedAddress          = 0x0001 // RFC 8489
	AttrResponseAddress        = 0x0002 // RFC 3489, obsolete
	AttrChangeRequest          = 0x0003 // RFC 5780 (originally RFC 3489)
	AttrSourceAddress          = 0x0004 // RFC 3489, obsolete; RESPONSE-ORIGIN's ancestor
	AttrChangedAddress         = 0x0005 // RFC 3489, obsolete; OTHER-ADDRESS's ancestor
	AttrUsername               = 0x0006 // RFC 8489
	AttrPassword               = 0x0007 // RFC 3489, obsolete
	AttrMessageIntegrity       = 0x0008 // RFC 8489, HMAC-SHA1
	AttrErrorCode              = 0x0009 // RFC 8489
	AttrUnknownAttributes      = 0x000A // RFC 8489
	AttrReflectedFrom          = 0x000B // RFC 3489, obsolete
	AttrRealm                  = 0x0014 // RFC 8489
	AttrNonce                  = 0x0015 // RFC 8489
	AttrMessageIntegritySHA256 = 0x001C // RFC 8489
	AttrPasswordAlgorithm      = 0x001D // RFC 8489
	AttrUserhash               = 0x001E // RFC 8489
	AttrXORMappedAddress       = 0x0020 // RFC 8489
	AttrPriority               = 0x0024 // RFC 8445 (ICE)
	AttrUseCandidate           = 0x0025 // RFC 8445 (ICE)
	AttrPadding                = 0x0026 // RFC 5780
	AttrResponsePort           = 0x0027 // RFC 5780

	AttrPasswordAlgorithms = 0x8002 // RFC 8489
	AttrAlternateDomain    = 0x8003 // RFC 8489
	AttrSoftware           = 0x8022 // RFC 8489
	AttrAlternateServer    = 0x8023 // RFC 8489
	AttrFingerprint        = 0x8028 // RFC 8489
	AttrICEControlled      = 0x8029 // RFC 8445 (ICE)
	AttrICEControlling     = 0x802A // RFC 8445 (ICE)
	AttrResponseOrigin     = 0x802B // RFC 5780
	AttrOtherAddress       = 0x802C // RFC 5780
)

// AttrName returns the registered name of attribute type t, or its number
// in hex if this package does not know it.
func AttrName(t uint16) string {
	switch t {
	case AttrMappedAddress:
		return "MAPPED-ADDRESS"
	case AttrResponseAddress:
		return "RESPONSE-ADDRESS"
	case AttrChangeRequest:
		return "CHANGE-REQUEST"
	case AttrSourceAddress:
		return "SOURCE-ADDRESS"
	case AttrChangedAddress:
		return "CHANGED-ADDRESS"
	case AttrUsername:
		return "USERNAME"
	case AttrPassword:
		return "PASSWORD"
	case AttrMessageIntegrity:
		return "MESSAGE-INTEGRITY"
	case AttrErrorCode:
		return "ERROR-CODE"
	case AttrUnknownAttributes:
		return "UNKNOWN-ATTRIBUTES"
	case AttrReflectedFrom:
		return "REFLECTED-FROM"
	case AttrRealm:
		return "REALM"
	case AttrNonce:
		return "NONCE"
	case AttrMessageIntegritySHA256:
		return "MESSAGE-INTEGRITY-SHA256"
	case AttrPasswordAlgorithm:
		return "PASSWORD-ALGORITHM"
	case AttrUserhash:
		return "USERHASH"
	case AttrXORMappedAddress:
		return "XOR-MAPPED-ADDRESS"
	case AttrPriority:
		return "PRIORITY"
	case AttrUseCandidate:
		return "USE-CANDIDATE"
	case AttrPadding:
		return "PADDING"
	case AttrResponsePort:
		return "RESPONSE-PORT"
	case AttrPasswordAlgorithms:
		return "PASSWORD-ALGORITHMS"
	case AttrAlternateDomain:
		return "ALTERNATE-DOMAIN"
	case AttrSoftware:
		return "SOFTWARE"
	case AttrAlternateServer:
		return "ALTERNATE-SERVER"
	case AttrFingerprint:
		return "FINGERPRINT"
	case AttrICEControlled:
		return "ICE-CONTROLLED"
	case AttrICEControlling:
		return "ICE-CONTROLLING"
	case AttrResponseOrigin:
		return "RESPONSE-ORIGIN"
	case AttrOtherAddress:
		return "OTHER-ADDRESS"
	}
	return fmt.Sprintf("0x%04X", t)
}

// Message is a decoded STUN message.
type Message struct {
	Method uint16 // 12-bit method, e.g. MethodBinding
	Class  Class
	// Cookie is MagicCookie for RFC 5389/8489 messages; for a classic
	// RFC 3489 message it is the first 4 bytes of the 16-byte id.
	Cookie uint32
	// TID is the 96-bit transaction id (for a classic message: the last
	// 12 bytes of its 16-byte id).
	TID [12]byte
	// Attrs are the attributes in wire order, duplicates included. After
	// Parse or Unmarshal, Value slices alias the parsed buffer.
	Attrs []Attr
}

// Attr is one attribute: its type and its value without padding.
type Attr struct {
	Type  uint16
	Value []byte
}

// Classic reports whether m is an RFC 3489 message (no magic cookie).
func (m *Message) Classic() bool { return m.Cookie != MagicCookie }

// Errors from Parse, wrapped in a *ParseError that gives the offset.
var (
	ErrShort         = errors.New("stun: message shorter than the 20-byte header")
	ErrNotSTUN       = errors.New("stun: first two bits of the message are not zero")
	ErrUnaligned     = errors.New("stun: message length is not a multiple of 4")
	ErrLength        = errors.New("stun: message length field does not match the data")
	ErrAttrTruncated = errors.New("stun: attribute runs past the end of the message")
	ErrTooManyAttrs  = errors.New("stun: too many attributes")
)

// ParseError reports why and where Parse rejected a message.
type ParseError struct {
	Offset int   // byte offset of the header or attribute at fault
	Err    error // one of ErrShort, ErrNotSTUN, ErrUnaligned, ErrLength, ErrAttrTruncated, ErrTooManyAttrs
}

func (e *ParseError) Error() string {
	return e.Err.Error() + " (at byte " + strconv.Itoa(e.Offset) + ")"
}

func (e *ParseError) Unwrap() error { return e.Err }

// MaxAttrs bounds the number of attributes Parse accepts, so a message
// full of empty attributes cannot make it allocate much. A 1500-byte
// datagram holds at most 370 attributes.
const MaxAttrs = 512

// IsMessage is a cheap check that b looks like a whole RFC 5389/8489 STUN
// message: at least 20 bytes, top two bits zero, the magic cookie, and a
// length field that is a multiple of 4 and equals len(b)-20. It does not
// look at the attributes and is false for classic RFC 3489 messages.
func IsMessage(b []byte) bool {
	if len(b) < HeaderSize || b[0]&0xC0 != 0 {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	return n%4 == 0 && n == len(b)-HeaderSize &&
		binary.BigEndian.Uint32(b[4:8]) == MagicCookie
}

// checkHeader validates the fixed header against the size of b. It returns
// a sentinel error (no allocation) so that Respond can drop garbage cheaply.
func checkHeader(b []byte) error {
	if len(b) < HeaderSize {
		return ErrShort
	}
	if b[0]&0xC0 != 0 {
		return ErrNotSTUN
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n%4 != 0 {
		return ErrUnaligned
	}
	if n != len(b)-HeaderSize {
		return ErrLength
	}
	return nil
}

// attrIter walks the attributes of a message whose header passed
// checkHeader. off is the offset of the next attribute.
type attrIter struct {
	b   []byte
	off int
	err error
}

func newAttrIter(b []byte) attrIter { return attrIter{b: b, off: HeaderSize} }

// next returns the next attribute, its offset, and false at the end or on
// error (it.err is then set and it.off points at the bad attribute).
func (it *attrIter) next() (t uint16, v []byte, at int, ok bool) {
	if it.err != nil || it.off >= len(it.b) {
		return 0, nil, 0, false
	}
	at = it.off
	rest := len(it.b) - at
	if rest < 4 {
		it.err = ErrAttrTruncated
		return 0, nil, at, false
	}
	t = binary.BigEndian.Uint16(it.b[at:])
	n := int(binary.BigEndian.Uint16(it.b[at+2:]))
	padded := (n + 3) &^ 3
	if padded > rest-4 {
		it.err = ErrAttrTruncated
		return 0, nil, at, false
	}
	v = it.b[at+4 : at+4+n : at+4+n]
	it.off = at + 4 + padded
	return t, v, at, true
}

// Parse decodes one STUN message that must fill b exactly (one UDP
// datagram). It accepts RFC 5389/8489 and classic RFC 3489 messages and
// checks every length; it does not check FINGERPRINT, MESSAGE-INTEGRITY or
// attribute order (see CheckFingerprint, CheckMessageIntegrity). Errors
// are *ParseError. The returned attribute values alias b.
func Parse(b []byte) (*Message, error) {
	// Count first, so that the attributes take one allocation.
	n := 0
	if checkHeader(b) == nil {
		for it := newAttrIter(b); n < MaxAttrs; n++ {
			if _, _, _, ok := it.next(); !ok {
				break
			}
		}
	}
	m := &Message{Attrs: make([]Attr, 0, n)}
	if err := m.Unmarshal(b); err != nil {
		return nil, err
	}
	return m, nil
}

// Unmarshal is Parse into an existing Message, reusing the capacity of
// m.Attrs. On error m is left in an unspecified state.
func (m *Message) Unmarshal(b []byte) error {
	if err := checkHeader(b); err != nil {
		return &ParseError{Offset: 0, Err: err}
	}
	m.Method, m.Class = splitType(binary.BigEndian.Uint16(b[0:2]))
	m.Cookie = binary.BigEndian.Uint32(b[4:8])
	copy(m.TID[:], b[8:HeaderSize])
	m.Attrs = m.Attrs[:0]
	it := newAttrIter(b)
	for {
		t, v, at, ok := it.next()
		if !ok {
			if it.err != nil {
				return &ParseError{Offset: at, Err: it.err}
			}
			return nil
		}
		if len(m.Attrs) == MaxAttrs {
			return &ParseError{Offset: at, Err: ErrTooManyAttrs}
		}
		m.Attrs = append(m.Attrs, Attr{Type: t, Value: v})
	}
}

// Get returns the value of the first attribute of type t.
func (m *Message) Get(t uint16) ([]byte, bool) {
	for _, a := range m.Attrs {
		if a.Type == t {
			return a.Value, true
		}
	}
	return nil, false
}

// Errors from the attribute getters.
var (
	ErrNoAttr       = errors.New("stun: attribute not present")
	ErrBadAddress   = errors.New("stun: malformed address attribute")
	ErrBadErrorCode = errors.New("stun: malformed ERROR-CODE")
)

// Address families in address attributes.
const (
	familyIPv4 = 0x01
	familyIPv6 = 0x02
)

// Address decodes the plain (non-XOR) address attribute t: MAPPED-ADDRESS,
// OTHER-ADDRESS, RESPONSE-ORIGIN, ALTERNATE-SERVER, or the RFC 3489
// SOURCE-ADDRESS and CHANGED-ADDRESS. The value must be exactly 8 (IPv4)
// or 20 (IPv6) bytes.
func (m *Message) Address(t uint16) (netip.AddrPort, error) {
	v, ok := m.Get(t)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: %s", ErrNoAttr, AttrName(t))
	}
	ap, err := decodeAddress(v, nil)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %s", err, AttrName(t))
	}
	return ap, nil
}

// XORAddress decodes the XOR-encoded address attribute t (such as
// XOR-MAPPED-ADDRESS), XORed with the header's cookie and transaction id.
func (m *Message) XORAddress(t uint16) (netip.AddrPort, error) {
	v, ok := m.Get(t)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: %s", ErrNoAttr, AttrName(t))
	}
	var key [16]byte
	binary.BigEndian.PutUint32(key[:4], m.Cookie)
	copy(key[4:], m.TID[:])
	ap, err := decodeAddress(v, &key)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %s", err, AttrName(t))
	}
	return ap, nil
}

// XORMappedAddress decodes XOR-MAPPED-ADDRESS.
func (m *Message) XORMappedAddress() (netip.AddrPort, error) {
	return m.XORAddress(AttrXORMappedAddress)
}

// MappedAddress decodes MAPPED-ADDRESS.
func (m *Message) MappedAddress() (netip.AddrPort, error) {
	return m.Address(AttrMappedAddress)
}

// decodeAddress decodes an address value; key, if not nil, is the
// cookie||transaction id to XOR with (RFC 8489 §14.2).
func decodeAddress(v []byte, key *[16]byte) (netip.AddrPort, error) {
	if len(v) < 4 {
		return netip.AddrPort{}, ErrBadAddress
	}
	port := binary.BigEndian.Uint16(v[2:4])
	if key != nil {
		port ^= uint16(key[0])<<8 | uint16(key[1])
	}
	n := 0 // address length
	switch v[1] {
	case familyIPv4:
		n = 4
	case familyIPv6:
		n = 16
	default:
		return netip.AddrPort{}, fmt.Errorf("%w (unknown family 0x%02X)", ErrBadAddress, v[1])
	}
	if len(v) != 4+n {
		return netip.AddrPort{}, ErrBadAddress
	}
	var a [16]byte
	copy(a[:n], v[4:])
	if key != nil {
		for i := range n {
			a[i] ^= key[i]
		}
	}
	ip := netip.AddrFrom16(a)
	if n == 4 {
		ip = netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.AddrPortFrom(ip, port), nil
}

// CHANGE-REQUEST flag bits (RFC 5780 §7.2).
const (
	changeIPFlag   = 0x04
	changePortFlag = 0x02
)

// ChangeRequest decodes CHANGE-REQUEST. ok is false if the attribute is
// absent or not 4 bytes long.
func (m *Message) ChangeRequest() (changeIP, changePort, ok bool) {
	v, found := m.Get(AttrChangeRequest)
	if !found || len(v) != 4 {
		return false, false, false
	}
	return v[3]&changeIPFlag != 0, v[3]&changePortFlag != 0, true
}

// ErrorCode decodes ERROR-CODE: a code in 300..699 and its reason phrase.
func (m *Message) ErrorCode() (code int, reason string, err error) {
	v, ok := m.Get(AttrErrorCode)
	if !ok {
		return 0, "", fmt.Errorf("%w: ERROR-CODE", ErrNoAttr)
	}
	if len(v) < 4 {
		return 0, "", ErrBadErrorCode
	}
	class, number := int(v[2]&0x07), int(v[3])
	if class < 3 || class > 6 || number > 99 {
		return 0, "", fmt.Errorf("%w: class %d number %d", ErrBadErrorCode, class, number)
	}
	return class*100 + number, string(v[4:]), nil
}

// UnknownAttributes decodes UNKNOWN-ATTRIBUTES (nil if absent).
func (m *Message) UnknownAttributes() []uint16 {
	v, ok := m.Get(AttrUnknownAttributes)
	if !ok {
		return nil
	}
	ts := make([]uint16, 0, len(v)/2)
	for i := 0; i+2 <= len(v); i += 2 {
		ts = append(ts, binary.BigEndian.Uint16(v[i:]))
	}
	return ts
}

// Software returns the SOFTWARE value ("" if absent).
func (m *Message) Software() string {
	v, _ := m.Get(AttrSoftware)
	return string(v)
}

// Append encodes m (attributes in order, zero padding) and appends it to
// dst. It fails only if the message would exceed the 16-bit length field.
func (m *Message) Append(dst []byte) ([]byte, error) {
	var b Builder
	b.reset(dst, MessageType(m.Method, m.Class), m.Cookie, m.TID)
	for _, a := range m.Attrs {
		b.AddRaw(a.Type, a.Value)
	}
	if b.err != nil {
		return dst, b.err
	}
	return b.buf, nil
}
