package location

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// ErrCorrupt is returned when a stored record cannot be decoded.
var ErrCorrupt = errors.New("location: corrupt record")

// recordV1 is the first byte of every stored value.
//
// Record format v1 (one bbolt value per AOR; the key is the AOR, so the
// AOR is not repeated): version byte, uvarint count, then per binding:
//
//	str User, Contact, ContactURI, CallID, UserAgent, Instance
//	flow:  str Transport, addrport Local, addrport Remote, uvarint ConnID
//	time Expires, Registered, Updated
//	uvarint len(NATReasons), str...; uvarint len(Path), str...
//	varint RegID, uvarint CSeq, 4 bytes Q (IEEE 754, little endian), byte NAT
//
// str is uvarint length + bytes; time is varint Unix seconds + uvarint
// nanoseconds (decoded as UTC); addrport is a kind byte (0 none, 4 IPv4, 6
// IPv6), the address bytes, for IPv6 a str zone, then 2 bytes port (big
// endian). For a typical NATed binding the hand-rolled format is 471 bytes
// against 836 for encoding/json, encodes in ~0.3 µs without allocating
// (json: ~9 µs) and decodes in ~1.1 µs (json: ~22 µs); see BenchmarkCodec.
// It also has no field names to drift.
const recordV1 = 1

// maxRecordBindings bounds the count read from a record so a corrupt
// length cannot make the decoder allocate wildly.
const maxRecordBindings = 1 << 16

func encodeBindings(dst []byte, bs []Binding) []byte {
	dst = append(dst, recordV1)
	dst = binary.AppendUvarint(dst, uint64(len(bs)))
	for i := range bs {
		b := &bs[i]
		dst = appendStr(dst, b.User)
		dst = appendStr(dst, b.Contact)
		dst = appendStr(dst, b.ContactURI)
		dst = appendStr(dst, b.CallID)
		dst = appendStr(dst, b.UserAgent)
		dst = appendStr(dst, b.Instance)
		dst = appendStr(dst, b.Flow.Transport)
		dst = appendAddrPort(dst, b.Flow.Local)
		dst = appendAddrPort(dst, b.Flow.Remote)
		dst = binary.AppendUvarint(dst, b.Flow.ConnID)
		dst = appendTime(dst, b.Expires)
		dst = appendTime(dst, b.Registered)
		dst = appendTime(dst, b.Updated)
		dst = appendStrs(dst, b.NATReasons)
		dst = appendStrs(dst, b.Path)
		dst = binary.AppendVarint(dst, int64(b.RegID))
		dst = binary.AppendUvarint(dst, uint64(b.CSeq))
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(b.Q))
		if b.NAT {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 0)
		}
	}
	return dst
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendStrs(dst []byte, ss []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ss)))
	for _, s := range ss {
		dst = appendStr(dst, s)
	}
	return dst
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

func appendAddrPort(dst []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		dst = append(dst, 0)
	case a.Is4():
		b := a.As4()
		dst = append(dst, 4)
		dst = append(dst, b[:]...)
	default:
		b := a.As16()
		dst = append(dst, 6)
		dst = append(dst, b[:]...)
		dst = appendStr(dst, a.Zone())
	}
	return binary.BigEndian.AppendUint16(dst, ap.Port())
}

// decoder reads a record; the first error sticks and later reads return
// zero values.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = ErrCorrupt
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if len(d.buf) < 1 {
		d.fail()
		return 0
	}
	c := d.buf[0]
	d.buf = d.buf[1:]
	return c
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || len(d.buf) < n {
		d.fail()
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail()
		return ""
	}
	return string(d.bytes(int(n)))
}

func (d *decoder) strs() []string {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	if n > uint64(len(d.buf)) { // each string takes at least one byte
		d.fail()
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str()
	}
	return ss
}

func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) addrPort() netip.AddrPort {
	var a netip.Addr
	switch d.byte() {
	case 0:
	case 4:
		b := d.bytes(4)
		if b == nil {
			return netip.AddrPort{}
		}
		a = netip.AddrFrom4([4]byte(b))
	case 6:
		b := d.bytes(16)
		if b == nil {
			return netip.AddrPort{}
		}
		a = netip.AddrFrom16([16]byte(b))
		if zone := d.str(); zone != "" {
			a = a.WithZone(zone)
		}
	default:
		d.fail()
	}
	p := d.bytes(2)
	if d.err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(p))
}

// decodeBindings parses a record written by encodeBindings. AOR is set on
// every binding.
func decodeBindings(aor string, data []byte) ([]Binding, error) {
	d := decoder{buf: data}
	if d.byte() != recordV1 {
		return nil, ErrCorrupt
	}
	n := d.uvarint()
	if d.err != nil || n > maxRecordBindings || n > uint64(len(d.buf)) {
		return nil, ErrCorrupt
	}
	bs := make([]Binding, n)
	for i := range bs {
		b := &bs[i]
		b.AOR = aor
		b.User = d.str()
		b.Contact = d.str()
		b.ContactURI = d.str()
		b.CallID = d.str()
		b.UserAgent = d.str()
		b.Instance = d.str()
		b.Flow = sipx.Flow{Transport: d.str()}
		b.Flow.Local = d.addrPort()
		b.Flow.Remote = d.addrPort()
		b.Flow.ConnID = d.uvarint()
		b.Expires = d.time()
		b.Registered = d.time()
		b.Updated = d.time()
		b.NATReasons = d.strs()
		b.Path = d.strs()
		b.RegID = int(d.varint())
		cseq := d.uvarint()
		if cseq > math.MaxUint32 {
			d.fail()
		}
		b.CSeq = uint32(cseq)
		if q := d.bytes(4); q != nil {
			b.Q = math.Float32frombits(binary.LittleEndian.Uint32(q))
		}
		switch d.byte() {
		case 0:
		case 1:
			b.NAT = true
		default:
			d.fail()
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	if len(d.buf) != 0 {
		return nil, ErrCorrupt
	}
	return bs, nil
}
