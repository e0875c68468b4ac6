// Package stun is a small STUN implementation (RFC 8489, formerly RFC 5389,
// with the RFC 5780 behaviour-discovery attributes and read support for
// "classic" RFC 3489 messages) shared by sipedge's SIP port, its
// stand-alone STUN server and a NAT probe client.
//
// It has four parts:
//
//   - A codec. [Parse] and [Message.Unmarshal] decode a message with strict
//     bounds checks and never panic; [Builder] is an append-style encoder
//     that writes into a caller-supplied buffer without allocating;
//     [CheckFingerprint] and [CheckMessageIntegrity] verify FINGERPRINT and
//     short-term MESSAGE-INTEGRITY (HMAC-SHA1).
//
//   - A Binding responder, [Respond], which answers Binding requests (for
//     example RFC 5626 §8 keepalives arriving on the SIP UDP port) into a
//     reused buffer without allocating, and never sends a response much
//     larger than the request (see [MaxResponseGrowth]). [RespondTo]
//     also says where an RFC 5780 server sends the response: from which
//     of its addresses (CHANGE-REQUEST) and to which port (RESPONSE-PORT).
//
//   - A stand-alone [Server]: Binding over UDP and TCP (RFC 8489 §6.2.2
//     framing), per-source rate limiting, and, given a second IP address,
//     RFC 5780 NAT behaviour discovery on four sockets.
//
//   - A Binding client: [Binding] runs one transaction on a socket it reads
//     itself; [Transaction] runs one on a socket someone else reads and
//     demultiplexes, with RFC 8489 §6.2.1 retransmissions bounded by a
//     context. [StreamConn] lets Binding run over a TCP connection.
//
// Deliberately not implemented:
//
//   - TURN (RFC 8656) and ICE (RFC 8445) beyond knowing their attribute
//     numbers; ChannelData framing.
//   - Authentication on the server side. Respond holds no credentials: a
//     request carrying USERNAME / MESSAGE-INTEGRITY is answered like any
//     other, without MESSAGE-INTEGRITY, which is what a credential-less
//     server can do for a Binding request (the client learns only its
//     mapped address, which it could learn from any public server).
//   - Long-term credentials (REALM/NONCE, the MD5 key with SASLprep, 401/438
//     handling), MESSAGE-INTEGRITY-SHA256, USERHASH, PASSWORD-ALGORITHMS.
//     The attribute numbers are defined so messages using them parse.
//   - PADDING (RFC 5780 §7.6): a request carrying it gets a 420. Respond
//     and RespondTo only build bytes; acting on CHANGE-REQUEST and
//     RESPONSE-PORT is up to the caller, as Server does.
//   - TLS and DTLS, ALTERNATE-SERVER redirection, DNS discovery of
//     servers (RFC 8489 §8), RTO caching across transactions.
//
// Classic RFC 3489 messages have no magic cookie: their 16-byte transaction
// id is kept as [Message.Cookie] (first 4 bytes) and [Message.TID] (last
// 12), and [Message.Classic] reports them. They parse, and Respond answers
// classic Binding requests with MAPPED-ADDRESS (and SOURCE-ADDRESS /
// CHANGED-ADDRESS when configured), so old NAT-type tools work against a
// later full server.
package stun
