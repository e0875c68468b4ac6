package stun

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Errors recorded by a Builder.
var (
	ErrTooLong     = errors.New("stun: attribute or message too long for its length field")
	ErrBadValue    = errors.New("stun: value cannot be encoded")
	ErrNotReset    = errors.New("stun: Builder used before Reset")
	errNoAddrValid = fmt.Errorf("%w: invalid address", ErrBadValue)
)

// Builder encodes one message by appending to a caller-supplied buffer, so
// a server can build responses into a reused buffer without allocating.
//
//	var b stun.Builder
//	b.Reset(buf[:0], stun.MethodBinding, stun.ClassSuccess, tid)
//	b.AddXORMappedAddress(src)
//	b.AddFingerprint()
//	out := b.Bytes()
//
// The header's length field is kept current after every Add, so
// AddMessageIntegrity and AddFingerprint (which must come last, in that
// order) cover everything added before them. The first error (a value too
// long, an invalid address) is kept; later Adds are ignored and Err
// reports it. The zero Builder is ready for Reset.
type Builder struct {
	// Padding is the byte used to pad attribute values to a multiple of
	// 4. Receivers ignore it (RFC 8489 §14); it is 0 unless set, and
	// Reset keeps it. (The RFC 5769 test vectors pad with 0x20.)
	Padding byte

	buf   []byte
	start int // offset of the message in buf
	err   error
}

// Reset starts an RFC 5389/8489 message (with MagicCookie) appended to
// dst.
func (b *Builder) Reset(dst []byte, method uint16, c Class, tid [12]byte) {
	b.reset(dst, MessageType(method, c), MagicCookie, tid)
}

// ResetClassic starts a message whose 16-byte id is cookie followed by tid:
// with cookie != MagicCookie this is a classic RFC 3489 message, e.g. the
// answer to a classic request, which must echo its whole id.
func (b *Builder) ResetClassic(dst []byte, method uint16, c Class, cookie uint32, tid [12]byte) {
	b.reset(dst, MessageType(method, c), cookie, tid)
}

func (b *Builder) reset(dst []byte, typ uint16, cookie uint32, tid [12]byte) {
	b.buf, b.start, b.err = dst, len(dst), nil
	b.buf = binary.BigEndian.AppendUint16(b.buf, typ)
	b.buf = append(b.buf, 0, 0)
	b.buf = binary.BigEndian.AppendUint32(b.buf, cookie)
	b.buf = append(b.buf, tid[:]...)
}

// Bytes returns the buffer given to Reset with the message appended.
func (b *Builder) Bytes() []byte { return b.buf }

// Len returns the length of the message built so far.
func (b *Builder) Len() int { return len(b.buf) - b.start }

// Err returns the first error met while building, if any.
func (b *Builder) Err() error {
	if b.buf == nil && b.err == nil {
		return ErrNotReset
	}
	return b.err
}

func (b *Builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// begin appends an attribute header for a value of n bytes, checking that
// both length fields can hold the result. It reports whether to go on.
func (b *Builder) begin(t uint16, n int) bool {
	if b.err != nil {
		return false
	}
	if b.buf == nil {
		b.err = ErrNotReset
		return false
	}
	if n > 0xFFFF || b.Len()-HeaderSize+4+pad4(n) > maxBody {
		b.fail(fmt.Errorf("%w: %s with %d bytes", ErrTooLong, AttrName(t), n))
		return false
	}
	b.buf = binary.BigEndian.AppendUint16(b.buf, t)
	b.buf = binary.BigEndian.AppendUint16(b.buf, uint16(n))
	return true
}

// end pads the value of n bytes just appended and updates the header.
func (b *Builder) end(n int) {
	for i := n; i < pad4(n); i++ {
		b.buf = append(b.buf, b.Padding)
	}
	b.setLength(b.Len() - HeaderSize)
}

func (b *Builder) setLength(n int) {
	binary.BigEndian.PutUint16(b.buf[b.start+2:], uint16(n))
}

func pad4(n int) int { return (n + 3) &^ 3 }

// AddRaw adds attribute t with value v, padded.
func (b *Builder) AddRaw(t uint16, v []byte) {
	if b.begin(t, len(v)) {
		b.buf = append(b.buf, v...)
		b.end(len(v))
	}
}

// addString is AddRaw for a string, without converting it to a slice.
func (b *Builder) addString(t uint16, s string) {
	if b.begin(t, len(s)) {
		b.buf = append(b.buf, s...)
		b.end(len(s))
	}
}

// AddSoftware adds SOFTWARE. RFC 8489 limits it to 128 characters; that
// is the caller's business.
func (b *Builder) AddSoftware(s string) { b.addString(AttrSoftware, s) }

// AddUsername adds USERNAME.
func (b *Builder) AddUsername(s string) { b.addString(AttrUsername, s) }

// AddAddress adds a plain address attribute t (MAPPED-ADDRESS,
// OTHER-ADDRESS, RESPONSE-ORIGIN, ...). IPv4-mapped IPv6 addresses are
// encoded as IPv4.
func (b *Builder) AddAddress(t uint16, ap netip.AddrPort) { b.addAddress(t, ap, false) }

// AddXORAddress adds an XOR-encoded address attribute t, XORed with the
// cookie and transaction id given to Reset.
func (b *Builder) AddXORAddress(t uint16, ap netip.AddrPort) { b.addAddress(t, ap, true) }

// AddXORMappedAddress adds XOR-MAPPED-ADDRESS.
func (b *Builder) AddXORMappedAddress(ap netip.AddrPort) {
	b.addAddress(AttrXORMappedAddress, ap, true)
}

func addressLen(ap netip.AddrPort) int {
	if ap.Addr().Unmap().Is4() {
		return 8
	}
	return 20
}

func (b *Builder) addAddress(t uint16, ap netip.AddrPort, xor bool) {
	if b.err != nil {
		return
	}
	ip := ap.Addr().Unmap()
	if !ip.IsValid() {
		b.fail(fmt.Errorf("%w: %s", errNoAddrValid, AttrName(t)))
		return
	}
	n := addressLen(ap)
	if !b.begin(t, n) {
		return
	}
	family := byte(familyIPv6)
	if n == 8 {
		family = familyIPv4
	}
	port := ap.Port()
	at := len(b.buf)
	b.buf = append(b.buf, 0, family)
	b.buf = binary.BigEndian.AppendUint16(b.buf, port)
	if n == 8 {
		a := ip.As4()
		b.buf = append(b.buf, a[:]...)
	} else {
		a := ip.As16()
		b.buf = append(b.buf, a[:]...)
	}
	if xor {
		// The key is bytes 4..20 of the header: cookie, then transaction id.
		key := b.buf[b.start+4 : b.start+HeaderSize]
		b.buf[at+2] ^= key[0]
		b.buf[at+3] ^= key[1]
		for i := 0; i < n-4; i++ {
			b.buf[at+4+i] ^= key[i]
		}
	}
	b.end(n)
}

// AddErrorCode adds ERROR-CODE with a code in 300..699 and a reason
// phrase (RFC 8489 §14.8).
func (b *Builder) AddErrorCode(code int, reason string) {
	if code < 300 || code > 699 {
		b.fail(fmt.Errorf("%w: error code %d", ErrBadValue, code))
		return
	}
	if b.begin(AttrErrorCode, 4+len(reason)) {
		b.buf = append(b.buf, 0, 0, byte(code/100), byte(code%100))
		b.buf = append(b.buf, reason...)
		b.end(4 + len(reason))
	}
}

// AddUnknownAttributes adds UNKNOWN-ATTRIBUTES listing types. In a classic
// RFC 3489 message (cookie other than MagicCookie) an odd count is made
// even by repeating the last type, as RFC 3489 §11.2.9 requires.
func (b *Builder) AddUnknownAttributes(types []uint16) {
	n := 2 * len(types)
	odd := len(types)%2 == 1 && b.classic()
	if odd {
		n += 2
	}
	if !b.begin(AttrUnknownAttributes, n) {
		return
	}
	for _, t := range types {
		b.buf = binary.BigEndian.AppendUint16(b.buf, t)
	}
	if odd {
		b.buf = binary.BigEndian.AppendUint16(b.buf, types[len(types)-1])
	}
	b.end(n)
}

func (b *Builder) classic() bool {
	return b.buf != nil && binary.BigEndian.Uint32(b.buf[b.start+4:]) != MagicCookie
}

// AddChangeRequest adds CHANGE-REQUEST (RFC 5780 §7.2).
func (b *Builder) AddChangeRequest(changeIP, changePort bool) {
	var f byte
	if changeIP {
		f |= changeIPFlag
	}
	if changePort {
		f |= changePortFlag
	}
	if b.begin(AttrChangeRequest, 4) {
		b.buf = append(b.buf, 0, 0, 0, f)
		b.end(4)
	}
}

// AddMessageIntegrity adds MESSAGE-INTEGRITY: HMAC-SHA1 keyed with key
// (for short-term credentials, the password) over the message so far, with
// the length field covering the attribute itself (RFC 8489 §14.5). Only
// FINGERPRINT may follow.
func (b *Builder) AddMessageIntegrity(key []byte) {
	if !b.begin(AttrMessageIntegrity, sha1.Size) {
		return
	}
	b.setLength(b.Len() - HeaderSize + sha1.Size)
	mac := hmac.New(sha1.New, key)
	mac.Write(b.buf[b.start : len(b.buf)-4])
	b.buf = mac.Sum(b.buf)
	b.end(sha1.Size)
}

// fingerprintXOR is XORed into the CRC-32 of FINGERPRINT ("STUN").
const fingerprintXOR = 0x5354554E

// AddFingerprint adds FINGERPRINT (RFC 8489 §14.7). It must be last.
func (b *Builder) AddFingerprint() {
	if !b.begin(AttrFingerprint, 4) {
		return
	}
	b.setLength(b.Len() - HeaderSize + 4)
	crc := crc32.ChecksumIEEE(b.buf[b.start:len(b.buf)-4]) ^ fingerprintXOR
	b.buf = binary.BigEndian.AppendUint32(b.buf, crc)
	b.end(4)
}

// NewTransactionID returns a random 96-bit transaction id.
func NewTransactionID() [12]byte {
	var tid [12]byte
	rand.Read(tid[:]) // never fails (crypto/rand since Go 1.24)
	return tid
}
