// Package calltrace keeps the SIP messages of recent calls, so that an
// admin can see what happened to a call and which NAT fixes sipedge
// applied to it.
//
// A Recorder is fed every SIP message sipedge reads or writes (it is meant
// to be sipx.Config.Trace). A trace starts with an initial INVITE received
// by sipedge; from then on every message with that Call-ID, in either
// direction and on either leg, is kept (sipedge is a proxy, so both legs
// share the Call-ID). Messages of other calls, registrations and keepalives
// cost one scan for the Call-ID header and one map lookup, and no
// allocation. Credentials are never stored: digest responses are redacted
// before a message is kept.
//
// # Memory bound
//
// At most Config.Calls traces are kept; a new one evicts the oldest trace
// of a call that is over (ended, failed or cancelled), else the oldest
// trace. Each trace keeps at most Config.MaxMessages messages and
// Config.MaxCallBytes bytes of message text; a message longer than
// Config.MaxMessageBytes is truncated. Once a trace is full, further
// messages only update the call state and are counted as dropped. The
// stored text is therefore at most Calls × MaxCallBytes (Recorder.Bytes
// reports it), plus about 150 bytes of bookkeeping per stored message.
//
// # Ladder diagrams
//
// Analyze turns one trace into a ladder diagram: a column per party (a
// NATed phone gets two: the phone at the address it claims, and its NAT at
// the address its packets come from), one arrow per message, and on the
// arrows the NAT fixes sipedge applied (rport, Contact, routing to the
// flow, Record-Route, media anchoring) or failed to apply (a private SDP
// address passed on unchanged). The admin API serves it as JSON, the
// dashboard draws it, and RenderText prints it for the CLI.
package calltrace
