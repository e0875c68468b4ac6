package relay

import "encoding/binary"

// rtpHeader is the part of an RTP header (RFC 3550 5.1) the relay uses.
type rtpHeader struct {
	PT        uint8
	Marker    bool
	Seq       uint16
	Timestamp uint32
	SSRC      uint32
	HeaderLen int // fixed header + CSRCs + extension
}

// isRTCPMux tells RTCP from RTP on a multiplexed port (RFC 5761 4): the
// second byte of RTCP (its packet type) is in 192..223, which no RTP packet
// uses for marker+payload type when rtcp-mux is in effect.
func isRTCPMux(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}

// parseRTP validates and parses an RTP packet. It checks only what must hold
// for SRTP too (the header is in clear there): version 2, and that the CSRC
// list and the header extension fit. Padding is not checked: with SRTP the
// padding count lies in the encrypted part.
func parseRTP(b []byte) (h rtpHeader, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return h, false
	}
	n := 12 + 4*int(b[0]&0x0f)
	if n > len(b) {
		return h, false
	}
	if b[0]&0x10 != 0 {
		if n+4 > len(b) {
			return h, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
		if n > len(b) {
			return h, false
		}
	}
	h.Marker = b[1]&0x80 != 0
	h.PT = b[1] & 0x7f
	h.Seq = binary.BigEndian.Uint16(b[2:])
	h.Timestamp = binary.BigEndian.Uint32(b[4:])
	h.SSRC = binary.BigEndian.Uint32(b[8:])
	h.HeaderLen = n
	return h, true
}

// RTCP packet types used here (RFC 3550 12.1).
const (
	rtcpSR = 200
	rtcpRR = 201
)

// reportBlock is one SR/RR reception report block (RFC 3550 6.4.1).
type reportBlock struct {
	SSRC         uint32 // source this block reports on
	FractionLost uint8  // fixed point, /256
	CumLost      int32  // 24-bit signed
	HighestSeq   uint32
	Jitter       uint32 // RTP timestamp units
	LSR, DLSR    uint32
}

// rtcpSummary is what the relay reads from one compound RTCP packet.
type rtcpSummary struct {
	Packets  int    // RTCP packets in the compound
	Sender   uint32 // SSRC of the first SR/RR
	HasBlock bool
	Block    reportBlock // the block about the wanted SSRC, else the first one
}

// rtcpHeaderOK is the minimal check for forwarding an RTCP packet: the first
// header is version 2 with a packet type in 192..223 and a length that fits.
// It holds for SRTCP too, whose first header is in clear.
func rtcpHeaderOK(b []byte) bool {
	if len(b) < 8 || b[0]>>6 != 2 || b[1] < 192 || b[1] > 223 {
		return false
	}
	return 4*(int(binary.BigEndian.Uint16(b[2:]))+1) <= len(b)
}

// parseRTCP walks a compound RTCP packet and validates every length. It
// reports ok only if the packets exactly cover b (so SRTCP, with its
// encrypted body and trailer, normally does not parse: no statistics are
// taken from it). Unknown packet types are skipped. want selects which report
// block to return (0: the first).
func parseRTCP(b []byte, want uint32) (s rtcpSummary, ok bool) {
	for len(b) > 0 {
		if len(b) < 4 || b[0]>>6 != 2 {
			return s, false
		}
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			return s, false
		}
		p := b[:n]
		b = b[n:]
		s.Packets++
		pt := p[1]
		if pt < 192 || pt > 223 {
			return s, false
		}
		if pt != rtcpSR && pt != rtcpRR {
			continue
		}
		rc := int(p[0] & 0x1f)
		off := 8
		if pt == rtcpSR {
			off += 20
		}
		if len(p) < off+24*rc {
			return s, false
		}
		if s.Packets == 1 || s.Sender == 0 {
			s.Sender = binary.BigEndian.Uint32(p[4:])
		}
		for i := 0; i < rc; i++ {
			blk := parseReportBlock(p[off+24*i:])
			if !s.HasBlock || (want != 0 && blk.SSRC == want && s.Block.SSRC != want) {
				s.Block = blk
				s.HasBlock = true
			}
		}
	}
	return s, s.Packets > 0
}

func parseReportBlock(p []byte) reportBlock {
	_ = p[23]
	cum := int32(uint32(p[5])<<16|uint32(p[6])<<8|uint32(p[7])) << 8 >> 8
	return reportBlock{
		SSRC:         binary.BigEndian.Uint32(p[0:]),
		FractionLost: p[4],
		CumLost:      cum,
		HighestSeq:   binary.BigEndian.Uint32(p[8:]),
		Jitter:       binary.BigEndian.Uint32(p[12:]),
		LSR:          binary.BigEndian.Uint32(p[16:]),
		DLSR:         binary.BigEndian.Uint32(p[20:]),
	}
}
