// Package natprobe discovers, from where it runs, how the NAT in front of
// this host behaves, and what that means for SIP phones behind it. It is
// the client half of sipedge's STUN support (`sipedge probe`); the STUN
// client code it uses (package stun) is shared with the server-behind-NAT
// discovery.
//
// [Probe] runs these tests against one STUN server:
//
//   - Binding (RFC 5780 test I): the public (mapped) address; NAT present
//     when it differs from the local address; the server's alternate
//     address (OTHER-ADDRESS, or CHANGED-ADDRESS from an RFC 3489 server).
//   - Rewriting: MAPPED-ADDRESS against XOR-MAPPED-ADDRESS. A device that
//     rewrites addresses inside packets (typically a SIP ALG) rewrites the
//     plain one only. Requests carry no FINGERPRINT, so that a rewritten
//     answer still arrives instead of failing its checksum.
//   - Mapping (RFC 5780 §4.3): Binding requests from the same socket to
//     the alternate IP with the primary port (test II) and to the
//     alternate IP and port (test III); comparing the mapped addresses
//     gives endpoint-independent, address-dependent or
//     address-and-port-dependent mapping (RFC 4787 §4.1).
//   - Filtering (RFC 5780 §4.4): from a fresh socket that only ever sends
//     to the primary address, CHANGE-REQUEST asking for an answer from the
//     other IP and port (test II) and from the other port (test III). Which
//     answers get through gives the filtering (RFC 4787 §5). A missing
//     answer only counts when the alternate address is known to answer.
//   - Hairpinning (RFC 5780 §4.5): a second socket sends Binding requests
//     to the first socket's public address, after the first socket sent
//     one packet to the second's public address (as a phone's RTP would,
//     so that a filtering NAT is not mistaken for one without hairpinning).
//   - Binding lifetime (RFC 5780 §4.6, with Config.Lifetime): one socket
//     per idle time T gets a binding and stays silent for T; then another
//     socket asks the server to answer to the first one's public port
//     (RESPONSE-PORT). All idle times run in parallel, so the test takes
//     the longest of them, and stops at the first binding found expired.
//
// Independent tests run concurrently on separate sockets, with a
// shortened retransmission schedule (Config.RTO, Config.Tries), so a
// probe without the lifetime test takes a few seconds at most.
//
// [Classify] is the pure function from test outcomes to the classic RFC
// 3489 name and advice for SIP admins; [WriteText] prints a Report.
//
// The package natprobe/natsim is a STUN server on loopback that simulates
// NAT behaviours, for tests.
package natprobe
