package calltrace

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Ladder is a call's ladder diagram: parties as columns, messages as
// arrows between them.
type Ladder struct {
	Columns []Column `json:"columns"` // left to right
	Arrows  []Arrow  `json:"arrows"`  // in time order, one per Message
}

// Column kinds.
const (
	KindPhone   = "phone"   // a NATed party, at the address it claims
	KindNAT     = "nat"     // the NAT in front of it, at the address observed
	KindSipedge = "sipedge" // us
	KindPeer    = "peer"    // a party not behind NAT: a trunk, a public phone
)

// Column is one party of the diagram.
type Column struct {
	ID    string `json:"id"`   // "caller-phone", "caller-nat", "sipedge", "callee-nat", "callee-phone", "callee", "peer2-nat", ...
	Kind  string `json:"kind"` // KindPhone, KindNAT, KindSipedge or KindPeer
	Label string `json:"label"`
	Addr  string `json:"addr"` // phone: claimed; nat and peer: observed; sipedge: its sockets
	Note  string `json:"note,omitempty"`
}

// Arrow is one message.
type Arrow struct {
	Seq            int     `json:"seq"`     // Message.Seq
	From           int     `json:"from"`    // column index
	To             int     `json:"to"`      // column index
	Through        int     `json:"through"` // the NAT column crossed, -1 if none
	Label          string  `json:"label"`   // "INVITE (SDP)", "180 Ringing", ...
	OffsetMS       float64 `json:"offset_ms"`
	Retransmission bool    `json:"retransmission,omitempty"`
	Fixes          []Fix   `json:"fixes,omitempty"`
}

// Fix kinds.
const (
	FixRport       = "rport"        // responses sent to the observed source, not to Via
	FixContact     = "contact"      // an unreachable Contact replaced by the flow
	FixSDP         = "sdp"          // media anchored at the relay
	FixRoute       = "route"        // a request sent to the flow, not to the Request-URI
	FixRecordRoute = "record-route" // sipedge stays in the path
	FixWarning     = "warning"      // a private SDP address passed on unchanged
)

// Fix is something sipedge did (or failed to do) about NAT to a message.
type Fix struct {
	Kind string `json:"kind"`
	Text string `json:"text"` // plain words for an admin, naming the addresses
}

// group is a remote party: every message to or from one observed address
// over one transport.
type group struct {
	key     string // transport and observed address
	remote  string // observed address, normalised
	name    string // caller, callee, peer2, ...
	claimed string // the address the party claims to have
	level   int    // how claimed was learnt: 3 Via, 2 Contact, 1 Request-URI
	phone   int    // column of the party
	nat     int    // column of its NAT, -1 if not NATed
}

// Analyze draws the ladder diagram of t and finds the NAT fixes on each
// message. It only reads t and never fails: missing or malformed headers
// give fewer fixes.
func Analyze(t Trace) Ladder {
	ms := make([]msg, len(t.Messages))
	for i := range t.Messages {
		ms[i] = parse(t.Messages[i].Text)
	}
	groups, of := findGroups(t, ms)
	l := Ladder{Arrows: make([]Arrow, 0, len(ms))}

	// Columns: the caller on the left, sipedge, everyone else on the right.
	add := func(g *group, left bool) {
		g.nat = -1
		if !differs(g.claimed, g.remote) {
			g.phone = len(l.Columns)
			l.Columns = append(l.Columns, Column{ID: g.name, Kind: KindPeer, Label: g.name,
				Addr: g.remote, Note: "as observed; not behind NAT"})
			return
		}
		note := "the address the phone claims"
		if ap, err := netip.ParseAddrPort(g.claimed); err == nil && isPrivate(ap.Addr().String()) {
			note = "private address, as the phone claims it"
		}
		phone := Column{ID: g.name + "-phone", Kind: KindPhone, Label: g.name + " phone", Addr: g.claimed, Note: note}
		nat := Column{ID: g.name + "-nat", Kind: KindNAT, Label: g.name + "'s NAT", Addr: g.remote,
			Note: "the NAT's public side, as observed"}
		g.phone, g.nat = len(l.Columns), len(l.Columns)+1
		if left {
			l.Columns = append(l.Columns, phone, nat)
		} else {
			g.phone, g.nat = g.nat, g.phone
			l.Columns = append(l.Columns, nat, phone)
		}
	}
	for _, g := range groups {
		if g.name == "caller" {
			add(g, true)
		}
	}
	edge := len(l.Columns)
	var locals []string
	for _, m := range t.Messages {
		if m.Local != "" && !slices.Contains(locals, m.Local) {
			locals = append(locals, m.Local)
		}
	}
	l.Columns = append(l.Columns, Column{ID: "sipedge", Kind: KindSipedge, Label: "sipedge", Addr: strings.Join(locals, ", ")})
	for _, g := range groups {
		if g.name == "callee" {
			add(g, false)
		}
	}
	for _, g := range groups {
		if g.name != "caller" && g.name != "callee" {
			add(g, false)
		}
	}

	seen := make(map[string]bool)
	for i, tm := range t.Messages {
		m, g := ms[i], of[i]
		a := Arrow{Seq: tm.Seq, From: g.phone, To: edge, Through: g.nat, Label: label(m), OffsetMS: tm.OffsetMS}
		if !tm.In {
			a.From, a.To = edge, g.phone
		}
		key := strings.Join([]string{strconv.FormatBool(tm.In), g.key, m.start, m.cseq, m.branch, m.toTag}, "\n")
		a.Retransmission = seen[key]
		seen[key] = true
		a.Fixes = fixes(t, ms, i)
		l.Arrows = append(l.Arrows, a)
	}
	return l
}

// findGroups groups the messages by observed address and transport, in
// order of appearance, and names the groups: the source of the first
// incoming INVITE is the caller, the target of the first outgoing INVITE
// to someone else the callee, the others peer2, peer3, ...
func findGroups(t Trace, ms []msg) (groups []*group, of []*group) {
	byKey := make(map[string]*group)
	of = make([]*group, len(ms))
	for i, tm := range t.Messages {
		remote := normAddr(tm.Remote)
		key := tm.Transport + " " + remote
		g := byKey[key]
		if g == nil {
			g = &group{key: key, remote: remote}
			byKey[key] = g
			groups = append(groups, g)
		}
		of[i] = g
	}
	var caller, callee *group
	for i, m := range ms {
		if t.Messages[i].In && m.request && m.method == "INVITE" {
			caller = of[i]
			break
		}
	}
	for i, m := range ms {
		if !t.Messages[i].In && m.request && m.method == "INVITE" && of[i] != caller {
			callee = of[i]
			break
		}
	}
	n := 2
	for _, g := range groups {
		switch g {
		case caller:
			g.name = "caller"
		case callee:
			g.name = "callee"
		default:
			g.name = "peer" + strconv.Itoa(n)
			n++
		}
	}

	// What a party claims to be: the sent-by of the Via of its requests,
	// else its Contact, else the Request-URI we sent it (its registered
	// Contact) if that is an IP address.
	for i, m := range ms {
		g, level, hp := of[i], 0, ""
		switch {
		case t.Messages[i].In && m.request && m.via != "":
			level = 3
			hp, _ = normHostPort(m.via, 5060)
		case t.Messages[i].In && m.contact != "":
			level = 2
			hp, _ = uriHostPort(m.contact)
		case !t.Messages[i].In && m.request:
			level = 1
			if h, ip := uriHostPort(m.ruri); ip {
				hp = h
			}
		}
		if hp != "" && level > g.level {
			g.claimed, g.level = hp, level
		}
	}
	return groups, of
}

// differs reports whether the address a party claims (normalised
// host:port) is not the one its packets come from. A host name could only
// be compared after a DNS lookup, so it is taken to match, unless it is a
// ".invalid" name, which never resolves (WebSocket clients, RFC 7118).
func differs(claimed, observed string) bool {
	host := claimed[:max(strings.LastIndexByte(claimed, ':'), 0)]
	if _, err := netip.ParseAddrPort(claimed); err != nil && !strings.HasSuffix(host, ".invalid") {
		return false
	}
	return claimed != observed
}

// label is an arrow's text: the method, or the status and reason.
func label(m msg) string {
	s := "(not SIP)"
	switch {
	case m.request:
		s = m.method
	case m.status != 0:
		s = strings.TrimSpace(strconv.Itoa(m.status) + " " + m.reason)
	}
	if m.sdp {
		s += " (SDP)"
	}
	return s
}

// fixes finds what sipedge did about NAT to message i: on an incoming
// message, what it learnt from the source address; on an outgoing one,
// what it changed compared with the message it forwards.
func fixes(t Trace, ms []msg, i int) []Fix {
	m, remote := ms[i], normAddr(t.Messages[i].Remote)
	var out []Fix
	add := func(kind, format string, args ...any) {
		out = append(out, Fix{Kind: kind, Text: fmt.Sprintf(format, args...)})
	}
	if t.Messages[i].In {
		if via, _ := normHostPort(m.via, 5060); m.request && via != "" && differs(via, remote) {
			add(FixRport, "Via says %s, the packet came from %s: responses go there (rport/received)", via, remote)
		}
		if c, _ := uriHostPort(m.contact); c != "" && differs(c, remote) {
			add(FixContact, "Contact %s cannot be reached from outside; requests in this call go to %s through the NAT", c, remote)
		}
		return out
	}

	// match finds the latest earlier incoming message of the same
	// transaction step: the same CSeq and what same says.
	match := func(same func(o msg) bool) int {
		for j := i - 1; j >= 0; j-- {
			if t.Messages[j].In && m.cseq != "" && ms[j].cseq == m.cseq && same(ms[j]) {
				return j
			}
		}
		return -1
	}
	if m.request {
		if uri, ip := uriHostPort(m.ruri); ip && uri != remote {
			if m.hasTag {
				add(FixRoute, "sent to the flow %s this call uses, not to its Contact %s", remote, uri)
			} else {
				add(FixRoute, "sent to the flow %s the phone registered from, not to its Contact %s", remote, uri)
			}
		}
		if len(m.rr) > 0 {
			j := match(func(o msg) bool { return o.request })
			if j < 0 || !slices.Contains(ms[j].rr, m.rr[0]) {
				add(FixRecordRoute, "sipedge put itself in the path (Record-Route), so in-dialog requests come back through it")
			}
		}
	}
	if m.sdpFound {
		j := match(func(o msg) bool {
			return o.request == m.request && o.method == m.method && o.status == m.status
		})
		if j >= 0 && ms[j].sdpFound {
			was, now := net.JoinHostPort(ms[j].sdpAddr, ms[j].sdpPort), net.JoinHostPort(m.sdpAddr, m.sdpPort)
			switch {
			case was != now:
				add(FixSDP, "SDP c=%s replaced by the relay %s: media is anchored", was, now)
			case isPrivate(ms[j].sdpAddr):
				add(FixWarning, "SDP offers private address %s and was passed on unchanged: expect one-way or no audio", was)
			}
		}
	}
	return out
}
