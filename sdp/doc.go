// Package sdp reads and minimally rewrites SDP bodies (RFC 8866, formerly
// RFC 4566) for the media relay.
//
// Parse extracts what a relay needs to know about a session description:
// the origin, the connection addresses, and per m= line the port, protocol,
// formats, RTCP port, rtcp-mux, ICE use, direction and the first format's
// encoding and clock rate. Apply rewrites a body so that the far side sends
// its media to the relay.
//
// # Why the rewrite is minimal
//
// Apply does not parse the body into a structure and print it back. It
// copies the body byte for byte and changes only the fields that anchoring
// media requires: the address of c= lines, the port of m= lines, a=rtcp,
// the ICE attributes of streams whose ICE is removed, and, when asked, the
// o= version. Everything else -- line order, unknown lines, attribute
// spelling and case, extra spaces, CRLF or bare LF line endings per line,
// a missing final newline -- leaves the proxy exactly as it arrived, because:
//
//   - Phones, gateways and SBCs in the field have strict and often buggy SDP
//     parsers. Some depend on line order (RFC order v o s i u e p c b t r z
//     k a, and m i c b k a within a media description), some on attribute
//     order (a=rtpmap before a=fmtp, a=candidate after a=ice-ufrag), some
//     break on re-serialised whitespace, normalised case or changed line
//     endings. A re-serialiser reproduces only what it understood; anything
//     it did not model (vendor attributes, odd k= or r= lines, repeated t=)
//     is lost or reordered, and the call fails in ways that are hard to
//     trace back to the proxy.
//   - SDP can be covered by signatures or integrity checks (S/MIME bodies,
//     identity assertions, a=fingerprint bindings, re-offer comparison by
//     o= version and byte content). Changing bytes the relay does not need
//     to change breaks them needlessly; a small diff is also easy to audit
//     in a trace: every changed line is one the relay is responsible for.
//   - An answer or re-offer that differs from the previous one only where
//     the relay changed it lets the far side's offer/answer state machine
//     treat it as the same session (RFC 3264 section 8).
//
// Parsing is tolerant where real-world SDP is messy (unknown lines and
// attributes, b=, k=, several t= and r=, attributes with or without values,
// case-insensitive network and address types, encoding and attribute names,
// extra blanks between fields, blank lines) and strict where the relay would
// otherwise guess (no v= first, bad m= or a=rtcp ports, malformed c= or o=
// lines, two c= lines in one section): those are errors carrying the line
// number.
package sdp
