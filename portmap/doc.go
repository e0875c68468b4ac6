// Package portmap is what sipedge uses when it is itself behind a NAT
// router: it learns the router's external address and opens port
// mappings for the SIP ports and RTP, keeps them alive and removes them
// on shutdown. It speaks the three protocols home and small-office
// routers offer:
//
//   - PCP, the Port Control Protocol (RFC 6887): MAP requests over UDP to
//     the gateway's port 5351, with a nonce per mapping, the server's
//     epoch checked on every answer (§8.5) and ANNOUNCE used to ask for
//     it between renewals; result codes become [PCPError]s that say
//     what to do.
//   - NAT-PMP (RFC 6886): opcode 0 for the external address, 1 and 2 to
//     map UDP and TCP, lifetime 0 to delete, the epoch checked (§3.6),
//     retransmissions from 250 ms doubling (§3.1), bounded by the
//     context and a try count.
//   - UPnP IGD: SSDP M-SEARCH (to 239.255.255.250:1900 and to the
//     gateway's port 1900; the target is injectable for tests), the
//     device description, and SOAP to WANIPConnection:2
//     (AddAnyPortMapping, falling back to AddPortMapping),
//     WANIPConnection:1 or WANPPPConnection:1, handling 718
//     ConflictInMappingEntry, 724 SamePortValuesRequired and 725
//     OnlyPermanentLeasesSupported (retried with lease 0).
//
// The UPnP part is written here rather than taken from
// github.com/huin/goupnp: goupnp's discovery multicasts to a hard-coded
// 239.255.255.250:1900 from every interface (so a test could only point
// it at a fake gateway through a custom HTTPU client), waits a fixed 2 s
// plus MX of at least 1 s, logs through the standard logger, and brings
// some 900 KB of generated service code; the four actions needed here,
// a lenient SOAP reader and a description walker are a few hundred lines
// that are fuzzed and bounded by the caller's context.
//
// [Discover] runs all three against the default gateway in parallel and
// returns the client of the preferred one that answered (PCP > NAT-PMP >
// UPnP) within the caller's bound (start-up gives it ≤ 3 s; it returns as
// soon as the best answer is known, or 500 ms after a lesser one), plus a
// [Found] per protocol: external address, time taken, and whether that
// address is private or shared (double NAT, carrier-grade NAT: see
// [ClassifyExternal]). The RFC 5737 documentation blocks count as public
// here, since labs use them as "the internet" (miniupnpd, unlike this
// package, counts them as reserved).
//
// A [Manager] keeps a set of wanted mappings alive with one client:
// renews each at half its lease, retries failures with exponential
// backoff, notices a rebooted gateway (epoch going backwards for PCP and
// NAT-PMP, GetSpecificPortMappingEntry failing for UPnP) and re-creates
// everything, reports changes of the external address, and removes every
// mapping on Close.
//
// Gateways map single ports, one request each, and many limit how many a
// client may hold. [MapRange] and [Manager.AddRange] map a small RTP range
// port by port with a cap; when the range is bigger than the cap the edge
// maps per call instead ([Manager.Map] when a call needs a port,
// [Manager.Remove] when it ends).
//
// Package portmaptest is a fake gateway on 127.0.0.1 speaking all three,
// for tests; testdata/miniupnpd-2.3.1 holds replies recorded from a real
// miniupnpd.
package portmap
