package sdp

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"unsafe"
)

// Rewrite describes the changes to make.
type Rewrite struct {
	// Addr is the relay address for every c= line that is rewritten (IPv4
	// gives "IN IP4 a", IPv6 "IN IP6 a"; an IPv4-mapped IPv6 address counts
	// as IPv4). It must be valid, without a zone, when any media is
	// rewritten.
	Addr netip.Addr
	// Media is indexed by m= line; a missing entry or Port == 0 leaves that
	// m= line and its c= and a=rtcp untouched.
	Media []MediaRewrite
	// Version, if non-zero, replaces the o= version field (the lead handles
	// version bookkeeping across re-offers).
	Version uint64
}

// MediaRewrite is the change for one m= line.
type MediaRewrite struct {
	// Port is the new m= port (relay RTP port). Any /<count> after the
	// port is kept.
	Port int
	// RTCPPort is the new a=rtcp port (relay RTCP port); 0 means Port+1.
	// An existing a=rtcp line becomes "a=rtcp:<RTCPPort>", plus
	// " IN IP4|IP6 <Addr>" if it had an address part; without an a=rtcp
	// line nothing is added.
	RTCPPort int
	// RemoveICE removes this media's ICE lines: a=candidate,
	// a=remote-candidates, a=end-of-candidates, a=ice-ufrag, a=ice-pwd,
	// a=ice-options, a=ice-mismatch, a=ice-pacing. The session-level ICE
	// lines and a=ice-lite go too when every rewritten media has RemoveICE
	// and no media left alone has ICE lines of its own.
	RemoveICE bool
}

// Apply returns a copy of body rewritten as rw says, changing nothing else:
// every byte outside the changed fields, line order and each line's ending
// (CRLF or LF) are kept, and so is a missing final newline (when the last
// line is dropped, the line break before it goes with it).
//
// A media line is rewritten when rw.Media has an entry with a non-zero
// Port for it, its own port is not 0 (rejected streams are never
// rewritten) and its effective c= is not multicast, has no /ttl or /count
// and is "IN IP4" or "IN IP6" (otherwise it is left alone, without error).
// Its m= port and a=rtcp change, and its effective c= gets rw.Addr:
//
//   - its own c= line is rewritten;
//   - if it relies on the session-level c=, that line is rewritten when
//     every live (non-zero port) media line relying on it is rewritten;
//     otherwise the media line gets its own c=, inserted after m= and any
//     i= lines that follow it (the RFC 8866 order m i c b k a) with the
//     line ending of the line before it;
//   - a c= of 0.0.0.0 or :: (RFC 2543 hold) is kept as it is, and so is the
//     address of its a=rtcp, unless the stream uses ICE: then it is a
//     trickle-ICE placeholder, not hold, and points at the relay too.
//
// A session-level c= that no rewritten media line relies on is left alone.
//
// A body that Parse rejects gives the same error. Entries of rw.Media
// beyond the m= lines must have Port 0. For bodies with up to 16 m= lines
// Apply allocates only the returned buffer.
func Apply(body []byte, rw Rewrite) ([]byte, error) {
	return apply(body, rw, rw.Version != 0)
}

// SetVersion returns a copy of body with the o= session version set to v
// (also when v is 0), changing nothing else.
func SetVersion(body []byte, v uint64) ([]byte, error) {
	return apply(body, Rewrite{Version: v}, true)
}

// bodyString views body as a string without copying. Apply only reads it
// and copies from it into a new buffer; no string derived from it outlives
// the call (classifyConn never hands netip a zone, the one part of an
// address netip would keep).
func bodyString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func apply(body []byte, rw Rewrite, setVersion bool) ([]byte, error) {
	s := bodyString(body)
	var buf [16]mstate
	inf, err := parse(s, nil, buf[:0])
	if err != nil {
		return nil, err
	}
	relay := rw.Addr.Unmap()
	if err := plan(&inf, rw, relay); err != nil {
		return nil, err
	}

	// Worst-case growth: a replaced or inserted c= line is at most
	// "c=IN IP6 " + 39 + CRLF; a=rtcp grows by at most a port and such an
	// address; an m= port and the o= version by at most their digits.
	out := make([]byte, 0, len(s)+24+(len(inf.media)+inf.nConn+inf.nRTCP)*64)

	defTerm := "\r\n" // for a line inserted after a last line without one
	if _, next := lineAt(s, 0); next > 0 && s[next-1] == '\n' && (next < 2 || s[next-2] != '\r') {
		defTerm = "\n"
	}
	var (
		cur     *mstate
		sec     = -1
		pending bool   // cur needs a c= line, inserted before the next line other than i=
		insTerm string // terminator of the line the c= goes after
	)
	for pos := 0; pos < len(s); {
		end, next := lineAt(s, pos)
		ln, term := s[pos:end], s[end:next]
		raw := s[pos:next]
		pos = next
		ts, te := trimSpan(ln)
		if pending && (ts == te || ln[ts] != 'i') {
			out = appendConnLine(out, relay)
			out = append(out, insTerm...)
			pending = false
		}
		if ts == te {
			out = append(out, raw...)
			continue
		}
		lt := ln[:te] // without trailing blanks
		switch ln[ts] {
		case 'i':
			if pending {
				insTerm = term
			}
		case 'o':
			if setVersion {
				v := ts + 2
				n := countFields(lt[v:])
				vs, ve := fieldN(lt[v:], n-4)
				out = append(out, ln[:v+vs]...)
				out = strconv.AppendUint(out, rw.Version, 10)
				out = append(out, ln[v+ve:]...)
				out = append(out, term...)
				continue
			}
		case 'm':
			sec++
			cur = &inf.media[sec]
			if cur.insert {
				pending, insTerm = true, term
			}
			if cur.rewrite {
				_, te1 := nextField(lt, ts+2)
				ps, pe := nextField(lt, te1)
				de := ps // the port ends at "/<count>"
				for de < pe && lt[de] >= '0' && lt[de] <= '9' {
					de++
				}
				out = append(out, ln[:ps]...)
				out = strconv.AppendInt(out, int64(cur.newPort), 10)
				out = append(out, ln[de:]...)
				out = append(out, term...)
				continue
			}
		case 'c':
			if (cur == nil && inf.sessRewrite) || (cur != nil && cur.needConn) {
				_, _, _, ae, _ := parseConnFields(lt[ts+2:])
				out = append(out, ln[:ts]...)
				out = appendConnLine(out, relay)
				out = append(out, ln[ts+2+ae:]...)
				out = append(out, term...)
				continue
			}
		case 'a':
			v := lt[ts+2:]
			name, vi := splitAttr(v)
			k := attrOf(name)
			if k.isICE() && ((cur == nil && inf.sessRemoveICE) || (cur != nil && cur.removeICE)) {
				continue // dropped with its terminator
			}
			if k == aRTCP && cur != nil && cur.rewrite && vi >= 0 {
				_, addr, ps, pe, ae, _ := parseRTCP(v[vi:])
				off := ts + 2 + vi
				out = append(out, ln[:off+ps]...)
				out = strconv.AppendInt(out, int64(cur.newRTCP), 10)
				if addr.kind != connNone && cur.needConn {
					out = append(out, ' ')
					out = appendConnAddr(out, relay)
					out = append(out, ln[off+ae:]...)
				} else {
					out = append(out, ln[off+pe:]...)
				}
				out = append(out, term...)
				continue
			}
		}
		out = append(out, raw...)
	}
	if pending {
		if insTerm != "" {
			out = appendConnLine(out, relay)
			out = append(out, insTerm...)
		} else { // the m= or i= line was the last, without a newline
			if out[len(out)-1] == '\r' {
				out = append(out, '\n') // a CRLF cut short
			} else {
				out = append(out, defTerm...)
			}
			out = appendConnLine(out, relay)
		}
	}
	// Keep a missing final newline missing when the last line was dropped:
	// the line break before it goes too, and so do blank lines left at the
	// end (a blank last line without a line break would read as nothing).
	if n := len(s); n > 0 && s[n-1] != '\n' {
		for len(out) > 0 && out[len(out)-1] == '\n' {
			out = out[:len(out)-1]
			if len(out) > 0 && out[len(out)-1] == '\r' {
				out = out[:len(out)-1]
			}
			if ls := bytes.LastIndexByte(out, '\n') + 1; ls > 0 && isBlankLine(out[ls:]) {
				out = out[:ls]
			}
		}
	}
	return out, nil
}

func isBlankLine(b []byte) bool {
	for _, c := range b {
		if !isBlank(c) {
			return false
		}
	}
	return true
}

func appendConnAddr(out []byte, a netip.Addr) []byte {
	if a.Is4() {
		out = append(out, "IN IP4 "...)
	} else {
		out = append(out, "IN IP6 "...)
	}
	return a.AppendTo(out)
}

func appendConnLine(out []byte, a netip.Addr) []byte {
	return appendConnAddr(append(out, "c="...), a)
}

// plan decides what Apply changes; see Apply for the rules.
func plan(inf *info, rw Rewrite, relay netip.Addr) error {
	anyPort := false
	for i, mr := range rw.Media {
		if mr.Port < 0 || mr.Port > 65535 || mr.RTCPPort < 0 || mr.RTCPPort > 65535 {
			return fmt.Errorf("sdp: rewrite of media %d: port %d/%d out of range", i, mr.Port, mr.RTCPPort)
		}
		if mr.Port == 0 {
			continue
		}
		if mr.RTCPPort == 0 && mr.Port == 65535 {
			return fmt.Errorf("sdp: rewrite of media %d: no RTCP port after 65535", i)
		}
		if i >= len(inf.media) {
			return fmt.Errorf("sdp: rewrite of media %d, but the body has %d m= lines", i, len(inf.media))
		}
		anyPort = true
	}
	if anyPort && (!relay.IsValid() || relay.Zone() != "") {
		return fmt.Errorf("sdp: relay address %q is not usable in c=", rw.Addr)
	}

	var anyRewrite, allRemoveICE = false, true
	for i := range inf.media {
		m := &inf.media[i]
		var mr MediaRewrite
		if i < len(rw.Media) {
			mr = rw.Media[i]
		}
		eff := m.own.kind
		if eff == connNone {
			eff = inf.sess.kind
		}
		m.rewrite = mr.Port != 0 && m.port != 0 && eff != connFixed
		if !m.rewrite {
			continue
		}
		anyRewrite = true
		ice := m.ice || inf.sessUfrag
		m.needConn = !(eff == connUnspec && !ice)
		m.removeICE = mr.RemoveICE
		allRemoveICE = allRemoveICE && mr.RemoveICE
		m.newPort, m.newRTCP = mr.Port, mr.RTCPPort
		if m.newRTCP == 0 {
			m.newRTCP = mr.Port + 1
		}
	}

	// The session-level c= moves to the relay only if every live media line
	// that relies on it does (and at least one does); otherwise each such
	// rewritten line gets a c= of its own.
	relied, allRelying := false, true
	for i := range inf.media {
		m := &inf.media[i]
		if m.own.kind != connNone || m.port == 0 {
			continue
		}
		if m.needConn {
			relied = true
		} else {
			allRelying = false
		}
	}
	switch inf.sess.kind {
	case connAddr, connHost, connUnspec:
		inf.sessRewrite = relied && allRelying
	}
	for i := range inf.media {
		m := &inf.media[i]
		m.insert = m.needConn && m.own.kind == connNone && !inf.sessRewrite
	}

	// Session-level ICE lines go when no remaining stream can use them.
	inf.sessRemoveICE = anyRewrite && allRemoveICE
	for i := range inf.media {
		m := &inf.media[i]
		if !m.rewrite && m.port != 0 && m.ice {
			inf.sessRemoveICE = false
		}
	}
	return nil
}
