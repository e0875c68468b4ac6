package sdp

import (
	"fmt"
	"net/netip"
	"strings"
)

// Desc is what a relay needs to know about one SDP body (read-only analysis).
type Desc struct {
	Origin Origin
	// Conn is the session-level c= address; invalid if there is no
	// session-level c= or it is not an IP literal (a hostname, or a network
	// type other than IN). A multicast c= with a TTL or address count
	// ("224.2.1.1/127") gives the address without the suffix.
	// IPv4-mapped IPv6 addresses are unmapped.
	Conn netip.Addr
	// ConnRaw is the session-level c= address text as written ("" if none),
	// including any /ttl or /count suffix.
	ConnRaw string
	// Direction is the session-level a=sendrecv, a=sendonly, a=recvonly or
	// a=inactive in lower case, "" if none.
	Direction string
	// ICELite is set by a session-level a=ice-lite.
	ICELite bool
	Media   []Media
}

// Origin is the o= line.
type Origin struct {
	// Username is everything before the last five fields, so a username
	// written with spaces (seen from some gateways) is kept whole.
	Username, SessID        string
	Version                 uint64
	NetType, AddrType, Addr string
}

// Media is one m= line with its media-level attributes.
type Media struct {
	Type     string // "audio", "video", "application", "image", ... (lower-cased)
	Port     int    // 0 = stream rejected/disabled
	NumPorts int    // from m=<type> <port>/<n>; 1 if absent
	Proto    string // "RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udptl", ... as written
	Formats  []string
	// Conn is the effective connection address: the media-level c= if
	// present, else the session-level one (invalid if none or not an IP
	// literal). IPv4-mapped IPv6 addresses are unmapped.
	Conn netip.Addr
	// RTCP is from a=rtcp:<port> [IN IP4|IP6 <addr>]; the address defaults to
	// Conn, and is invalid when it is a hostname (Port() is still the
	// a=rtcp port then). Zero if there is no a=rtcp line.
	RTCP    netip.AddrPort
	RTCPMux bool // a=rtcp-mux present
	// Direction is the effective direction: media-level, else
	// session-level, else "sendrecv".
	Direction string
	// ICE is set when the media description has a=candidate or
	// a=ice-ufrag lines, or the session level has a=ice-ufrag.
	ICE bool
	// ClockRate is the clock rate of the first format: from its a=rtpmap,
	// else from the RFC 3551 static payload type table (8000 for PT 0, 3, 4,
	// 8, 9 (G.722's RTP clock is 8000 though it samples at 16 kHz), 18, ...),
	// else 90000 for video (every RTP video format uses a 90 kHz clock);
	// 0 if unknown or the proto is not RTP.
	ClockRate int
	// Encoding is the encoding name of the first format as written in its
	// a=rtpmap ("PCMU", "opus", "H264"), or from the static payload type
	// table (0 PCMU, 3 GSM, 4 G723, 8 PCMA, 9 G722, 18 G729, ...); "" if
	// unknown or the proto is not RTP.
	Encoding string
}

// Hold reports whether this media line puts the stream on hold: direction
// sendonly or inactive, or connection address 0.0.0.0 / :: (RFC 2543 style).
// An unspecified address on a stream that uses ICE is not hold: trickle ICE
// (RFC 8840) and WebRTC write c=IN IP4 0.0.0.0 as a placeholder and carry
// the real addresses in candidates.
func (m Media) Hold() bool {
	if m.Direction == "sendonly" || m.Direction == "inactive" {
		return true
	}
	return m.Conn.IsValid() && m.Conn.IsUnspecified() && !m.ICE
}

// RTP reports whether the proto is RTP-based (RTP/AVP, RTP/AVPF, RTP/SAVP,
// RTP/SAVPF, UDP/TLS/RTP/SAVP, UDP/TLS/RTP/SAVPF, in any case), i.e.
// relayable by an RTP relay.
func (m Media) RTP() bool { return isRTPProto(m.Proto) }

func isRTPProto(p string) bool {
	for _, q := range [...]string{"RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF"} {
		if strings.EqualFold(p, q) {
			return true
		}
	}
	return false
}

// SyntaxError is returned by Parse, Apply and SetVersion for a body that is
// not a usable SDP.
type SyntaxError struct {
	Line int    // 1-based line number; 0 when the problem is the body as a whole
	Msg  string // what is wrong
}

func (e *SyntaxError) Error() string {
	if e.Line == 0 {
		return "sdp: " + e.Msg
	}
	return fmt.Sprintf("sdp: line %d: %s", e.Line, e.Msg)
}

// Parse analyses an SDP body. It never panics; a body that is not SDP, or
// whose lines the relay depends on are malformed, gives a *SyntaxError with
// the line number.
func Parse(body []byte) (*Desc, error) {
	d := new(Desc)
	// One copy of the body; every string in d is a substring of it.
	if _, err := parse(string(body), d, nil); err != nil {
		return nil, err
	}
	return d, nil
}
