// Package relay is sipedge's embedded RTP/RTCP relay ("media proxy").
//
// The SIP proxy sees each call's offer and answer. For every m= line it asks
// a [Session] for one local port pair per side ([Session.Leg]), rewrites the
// SDP so that both phones send to the relay, and tells the relay what each
// side announced ([Session.SetPeer]). A packet that arrives on the leg facing
// side A is sent out of the leg facing side B, so B always sees the relay port
// it was given in its SDP, and vice versa. RTCP follows the same path on the
// odd port, or on the RTP port when rtcp-mux (RFC 5761) was negotiated.
//
// # Why latching, and why it must be careful
//
// Phones behind NAT announce an address nobody can reach (a private IP, or a
// public IP with a port their NAT does not preserve). A relay therefore has
// to "latch": send a side's media to where that side's packets really come
// from. Done naively ("the last packet's source wins", or "the first packet
// wins" with no further checks) latching is the attack surface of RTP Bleed
// and RTP Inject: an attacker who sprays packets at a relay's port range gets
// latched and then receives the call's audio, or injects his own
// (Asterisk CVE-2017-14099, rtpengine CVE-2025-53399). Two further known
// failure modes shaped this package: after a re-INVITE a phone may send a
// single stray packet from its old port, and a relay that latches on any new
// source moves the call there and loses the audio (rtpengine issue #817); and
// a relay that trusts the SDP address until latched sends media to private
// addresses of NATed phones (rtpengine issue #1299, "trust address").
//
// # The latching policy
//
// The policy is a small pure state machine per leg (latch.go) and is applied
// to every RTP packet before anything is forwarded:
//
//   - A packet from exactly the announced RTP address (IP and port) is always
//     accepted and (re)latches immediately: what the SDP says is preferred,
//     which also makes a re-INVITE to a new address take effect at once.
//   - A packet from the currently latched source is accepted.
//   - Any other source can only be learned inside the learning window, and
//     only if its IP is the announced IP or the side's SIP signalling source
//     IP (the public address of its NAT), unless Config.LearnAnyIP is set.
//     Such a source is a candidate: it latches after Config.Probation
//     consecutive packets from the same IP:port with the same SSRC and
//     consecutive sequence numbers. Candidate packets are not forwarded, and
//     the previous latch stays valid until the new one is established, so a
//     single stray packet can never move the latch.
//   - The learning window opens at each SetPeer for that side and lasts
//     Config.Learning counted from the first packet from an eligible source
//     after that SetPeer (a phone that starts late can still latch), but ends
//     at the latest 30 s after the SetPeer. After that the leg is locked:
//     packets from any other source are dropped and counted as
//     dropped-foreign; they never reach the other phone, and they never
//     change where the relay sends.
//   - Phones behind one NAT share its IP, so during a learning window
//     another device behind the same NAT could become a candidate; the
//     short window, the probation and the preference for the announced
//     address keep that narrow, and LearnAnyIP (off by default) widens it
//     to everyone.
//   - RTCP is accepted from the latched RTP source IP (any port; the RTCP
//     target latches to that source) or from the announced RTCP address, and
//     dropped and counted otherwise.
//
// Before a side is latched its target is its announced address when the side
// is not behind NAT, and (SIP source IP, announced port) when it is: a
// port-preserving NAT then works from the first packet, and the relay never
// sends to the private address of a NATed phone. A side that announced
// 0.0.0.0 (hold) gets nothing until it sends. A packet for which the other
// side has no target is dropped and counted.
//
// Non-RTP data on an RTP port (STUN, ZRTP, DTLS, garbage) is dropped and
// counted; SRTP and SRTCP pass through (their headers are in clear), but no
// RTCP statistics are read from packets whose compound structure does not
// parse exactly.
//
// # Performance design
//
// The relay runs a fixed number of goroutines whatever the number of calls:
// Config.Workers I/O workers, each owning an epoll instance and all sockets of
// the sessions hashed to it, plus one housekeeping goroutine (timeouts and
// alarms, once a second). Sockets are raw non-blocking file descriptors;
// workers read with recvmmsg and forward in place from preallocated buffers
// with sendmmsg, so the forwarding path does not allocate. Control calls
// (Leg, SetPeer, Info, Delete) take a per-session mutex that the worker also
// takes once per received batch; sockets are closed only under that mutex,
// so a worker never touches a file descriptor number that was reused.
//
// # The in-kernel fast path
//
// With Config.Kernel (package relay/kernfwd, an eBPF program on the tc
// ingress hook) a leg's RTP is forwarded by the kernel once the leg is
// locked: latched, its learning window closed, its SSRC known, the other
// side's target known. The kernel forwards only packets from the locked
// source to the leg's port that carry the locked SSRC and a plausible
// sequence number, rewritten to come from the other leg's port, exactly as
// user space would send them. Everything else still reaches the leg's
// socket: foreign sources are dropped and counted here as before, RTCP is
// read here, and a new SSRC or a sequence jump makes user space take the
// leg back (it forwards that packet itself). A SetPeer on either side, the
// latch moving or the session ending remove the stream's entries before
// anything else happens, so the latching policy above is never bypassed.
// The housekeeping sweep installs entries and folds the kernel's counters
// (packets, bytes, last arrival, highest sequence, jitter) into the legs'
// statistics once a second and on every Info.
//
// The package needs Linux (epoll, recvmmsg, sendmmsg); on other systems New
// returns an error.
package relay
