package stun

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// Errors from CheckFingerprint and CheckMessageIntegrity.
var (
	ErrNoFingerprint       = errors.New("stun: no FINGERPRINT attribute")
	ErrFingerprintNotLast  = errors.New("stun: FINGERPRINT is not the last attribute")
	ErrFingerprintMismatch = errors.New("stun: FINGERPRINT does not match the message")
	ErrNoIntegrity         = errors.New("stun: no MESSAGE-INTEGRITY attribute")
	ErrIntegrityMismatch   = errors.New("stun: MESSAGE-INTEGRITY does not match the message")
)

// CheckFingerprint verifies the FINGERPRINT attribute of the raw message b,
// which must be its last attribute (RFC 8489 §14.7). Structural problems
// are reported as *ParseError.
func CheckFingerprint(b []byte) error {
	if err := checkHeader(b); err != nil {
		return &ParseError{Err: err}
	}
	if at, err := checkFingerprint(b); err == ErrAttrTruncated {
		return &ParseError{Offset: at, Err: err}
	} else {
		return err
	}
}

// checkFingerprint is CheckFingerprint for a message whose header passed
// checkHeader, returning only sentinel errors (no allocation) and the
// offset of the attribute at fault.
func checkFingerprint(b []byte) (int, error) {
	it := newAttrIter(b)
	for {
		t, v, at, ok := it.next()
		switch {
		case !ok && it.err != nil:
			return at, it.err
		case !ok:
			return 0, ErrNoFingerprint
		case t != AttrFingerprint:
			continue
		case it.off != len(b):
			return at, ErrFingerprintNotLast
		case len(v) != 4 || crc32.ChecksumIEEE(b[:at])^fingerprintXOR != binary.BigEndian.Uint32(v):
			return at, ErrFingerprintMismatch
		}
		return at, nil
	}
}

// CheckMessageIntegrity verifies the first MESSAGE-INTEGRITY attribute of
// the raw message b with key: HMAC-SHA1 over the message up to that
// attribute, with the header's length field set to end just after it
// (RFC 8489 §14.5). For short-term credentials the key is the password.
// Attributes after MESSAGE-INTEGRITY (other than FINGERPRINT) are not
// protected and should be ignored by the caller.
func CheckMessageIntegrity(b []byte, key []byte) error {
	if err := checkHeader(b); err != nil {
		return &ParseError{Err: err}
	}
	it := newAttrIter(b)
	for {
		t, v, at, ok := it.next()
		if !ok {
			if it.err != nil {
				return &ParseError{Offset: at, Err: it.err}
			}
			return ErrNoIntegrity
		}
		if t != AttrMessageIntegrity {
			continue
		}
		if len(v) != sha1.Size {
			return ErrIntegrityMismatch
		}
		var hdr [HeaderSize]byte
		copy(hdr[:], b)
		binary.BigEndian.PutUint16(hdr[2:], uint16(at+4+sha1.Size-HeaderSize))
		mac := hmac.New(sha1.New, key)
		mac.Write(hdr[:])
		mac.Write(b[HeaderSize:at])
		if !hmac.Equal(mac.Sum(nil), v) {
			return ErrIntegrityMismatch
		}
		return nil
	}
}
