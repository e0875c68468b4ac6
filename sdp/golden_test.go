package sdp

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current Apply")

var (
	relay4 = netip.MustParseAddr("203.0.113.5")
	relay6 = netip.MustParseAddr("2001:db8::5")
)

// relayPorts is the fixed rewrite of the golden files: media i goes to
// 30000+2i / 30001+2i.
func relayPorts(n int, removeICE bool) []MediaRewrite {
	m := make([]MediaRewrite, n)
	for i := range m {
		m[i] = MediaRewrite{Port: 30000 + 2*i, RTCPPort: 30001 + 2*i, RemoveICE: removeICE}
	}
	return m
}

type goldenCase struct {
	name  string // testdata/<name>.golden
	input string // testdata/<input>.sdp
	rw    Rewrite
}

// goldenCases: every fixture with the default rewrite (relay 203.0.113.5,
// every m= line, ICE removed), plus variants.
func goldenCases(t testing.TB) []goldenCase {
	t.Helper()
	files, err := filepath.Glob("testdata/*.sdp")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var cases []goldenCase
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sdp")
		d, err := Parse(readFile(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cases = append(cases, goldenCase{name, name, Rewrite{Addr: relay4, Media: relayPorts(len(d.Media), true)}})
	}
	cases = append(cases,
		// ICE kept: only a=rtcp and c= change.
		goldenCase{"linphone.keepice", "linphone", Rewrite{Addr: relay4, Media: relayPorts(1, false)}},
		goldenCase{"webrtc.keepice", "webrtc", Rewrite{Addr: relay4, Media: relayPorts(2, false)}},
		// o= version bump with the rewrite.
		goldenCase{"freeswitch.version", "freeswitch", Rewrite{Addr: relay4, Media: relayPorts(1, true), Version: 1700012347}},
		// Only audio relayed: the session c= still serves video, so audio
		// gets its own c= right after m=.
		goldenCase{"bria_video.audio_only", "bria_video", Rewrite{Addr: relay4, Media: relayPorts(1, true)}},
		// Only video relayed: its c= goes after m= and i=.
		goldenCase{"rfc_fields.video_only", "rfc_fields", Rewrite{Addr: relay4, Media: []MediaRewrite{{}, {Port: 30002, RTCPPort: 30003}}}},
		// IPv6 relay for an IPv6 offer (the default case is IPv6 to IPv4).
		goldenCase{"ipv6.relay6", "ipv6", Rewrite{Addr: relay6, Media: relayPorts(1, true)}},
		// Only the second stream of a media-level-c= offer; IPv6 relay.
		goldenCase{"polycom_media_conn.video_relay6", "polycom_media_conn", Rewrite{Addr: relay6, Media: []MediaRewrite{{}, {Port: 40000, RTCPPort: 40001}}}},
	)
	return cases
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			in := readFile(t, filepath.Join("testdata", c.input+".sdp"))
			out, err := Apply(in, c.rw)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := readFile(t, golden)
			if !bytes.Equal(out, want) {
				t.Errorf("Apply output differs from %s\n got: %q\nwant: %q", golden, out, want)
			}
			if err := checkMinimalDiff(in, out, c.rw.Version != 0); err != nil {
				t.Errorf("not a minimal diff: %v", err)
			}
			checkSemantics(t, in, out, c.rw)
			// Applying the same rewrite again changes nothing more.
			again, err := Apply(out, c.rw)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("Apply is not idempotent (err %v):\n once: %q\ntwice: %q", err, out, again)
			}
		})
	}
}

// TestGoldenFilesUsed makes sure no stale golden file lingers unchecked.
func TestGoldenFilesUsed(t *testing.T) {
	want := map[string]bool{}
	for _, c := range goldenCases(t) {
		want[c.name+".golden"] = true
	}
	files, _ := filepath.Glob("testdata/*.golden")
	for _, f := range files {
		if !want[filepath.Base(f)] {
			t.Errorf("%s has no test case", f)
		}
	}
	if len(files) != len(want) {
		t.Errorf("%d golden files for %d cases (run go test ./sdp -update)", len(files), len(want))
	}
}

// rawLines splits b into lines that keep their terminators.
func rawLines(b []byte) []string {
	var ls []string
	for s := string(b); s != ""; {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			ls = append(ls, s)
			break
		}
		ls = append(ls, s[:i+1])
		s = s[i+1:]
	}
	return ls
}

func splitTerm(l string) (content, term string) {
	switch {
	case strings.HasSuffix(l, "\r\n"):
		return l[:len(l)-2], "\r\n"
	case strings.HasSuffix(l, "\n"):
		return l[:len(l)-1], "\n"
	}
	return l, ""
}

// Independent of the implementation: what kind of line may change.
var (
	reICE  = regexp.MustCompile(`(?i)^a=(candidate|remote-candidates|end-of-candidates|ice-ufrag|ice-pwd|ice-options|ice-mismatch|ice-pacing|ice-lite)(:|[ \t\r]*$)`)
	reRTCP = regexp.MustCompile(`(?i)^a=rtcp:`)
	reM    = regexp.MustCompile(`^(m=[ \t]*[^ \t]+[ \t]+)([0-9]+)(.*)$`)
	reO    = regexp.MustCompile(`^(o=.*[ \t])([0-9]+)([ \t]+[^ \t]+[ \t]+[^ \t]+[ \t]+[^ \t]+)$`)
)

type lineKind int

const (
	kOther lineKind = iota
	kConn
	kMedia
	kOrigin
	kRTCP
	kICE
	kInfo
)

func kindOf(content string) lineKind {
	c := strings.TrimLeft(content, " \t\r")
	switch {
	case strings.HasPrefix(c, "c="):
		return kConn
	case strings.HasPrefix(c, "m="):
		return kMedia
	case strings.HasPrefix(c, "o="):
		return kOrigin
	case strings.HasPrefix(c, "i="):
		return kInfo
	case reRTCP.MatchString(c):
		return kRTCP
	case reICE.MatchString(c):
		return kICE
	}
	return kOther
}

// checkMinimalDiff verifies that out is in with only these changes: c=
// lines rewritten, c= lines inserted right after an m= line (and its i=
// lines), m= ports changed (nothing else on the line), a=rtcp lines
// rewritten, ICE lines removed, and the o= version changed if version is
// set. Every other line is byte-identical, terminator included, and in the
// same order. The output ends in a newline exactly when the input does.
func checkMinimalDiff(in, out []byte, version bool) error {
	noFinal := len(in) > 0 && in[len(in)-1] != '\n'
	if noFinal != (len(out) > 0 && out[len(out)-1] != '\n') {
		return fmt.Errorf("final newline changed: input ends %q, output ends %q", tail(in), tail(out))
	}
	if noFinal {
		// Compare as if both ended in a newline. The last line of either
		// side may then differ in its terminator: a line inserted after the
		// input's last line needs a line break, and a dropped last line
		// takes the break before it along (and, with it, blank lines left
		// at the very end).
		in = append(slices.Clip(in), '\n')
		out = append(slices.Clip(out), '\n')
	}
	il, ol := rawLines(in), rawLines(out)
	termOK := func(i, j int, it, ot string) bool {
		return it == ot || noFinal && (i == len(il)-1 || j == len(ol)-1)
	}
	afterMedia := func(j int) bool { // out[j] may be an inserted c= line
		for k := j - 1; k >= 0; k-- {
			c, _ := splitTerm(ol[k])
			switch kindOf(c) {
			case kMedia:
				return true
			case kInfo:
				continue
			}
			return false
		}
		return false
	}
	i, j := 0, 0
	for i < len(il) {
		ic, it := splitTerm(il[i])
		ik := kindOf(ic)
		if j < len(ol) {
			oc, ot := splitTerm(ol[j])
			ok := kindOf(oc)
			switch {
			case ic == oc && termOK(i, j, it, ot):
				i, j = i+1, j+1
				continue
			case ok == kConn && ik != kConn && afterMedia(j):
				j++ // inserted c=
				continue
			case ik == kICE:
				i++ // removed
				continue
			case ik == ok && termOK(i, j, it, ot) && (ik == kConn || ik == kRTCP):
				i, j = i+1, j+1
				continue
			case ik == ok && termOK(i, j, it, ot) && ik == kMedia:
				im, om := matchLead(reM, ic), matchLead(reM, oc)
				if im == nil || om == nil || im[0] != om[0] || im[1] != om[1] || im[3] != om[3] {
					return fmt.Errorf("input line %d %q: m= line changed beyond its port: %q", i+1, ic, oc)
				}
				i, j = i+1, j+1
				continue
			case ik == ok && termOK(i, j, it, ot) && ik == kOrigin && version:
				io, oo := matchLead(reO, ic), matchLead(reO, oc)
				if io == nil || oo == nil || io[0] != oo[0] || io[1] != oo[1] || io[3] != oo[3] {
					return fmt.Errorf("input line %d %q: o= line changed beyond its version: %q", i+1, ic, oc)
				}
				i, j = i+1, j+1
				continue
			}
			return fmt.Errorf("input line %d %q became output line %d %q", i+1, il[i], j+1, ol[j])
		}
		if ik != kICE && !(noFinal && strings.Trim(ic, " \t\r") == "") {
			return fmt.Errorf("input line %d %q missing from the output", i+1, il[i])
		}
		i++
	}
	for ; j < len(ol); j++ {
		if oc, _ := splitTerm(ol[j]); kindOf(oc) != kConn || !afterMedia(j) {
			return fmt.Errorf("output line %d %q added", j+1, ol[j])
		}
	}
	return nil
}

// matchLead matches re against content without its leading and trailing
// blanks; element 0 of the result holds those blanks instead of the match.
func matchLead(re *regexp.Regexp, content string) []string {
	c := strings.TrimLeft(content, " \t\r")
	lead := content[:len(content)-len(c)]
	t := strings.TrimRight(c, " \t\r")
	m := re.FindStringSubmatch(t)
	if m != nil {
		m[0] = lead + "|" + c[len(t):]
	}
	return m
}

func tail(b []byte) []byte { return b[max(0, len(b)-8):] }

// TestCheckMinimalDiffFails shows that the byte-preservation check can fail:
// each mutation of a correct output must be caught.
func TestCheckMinimalDiffFails(t *testing.T) {
	in := readFile(t, "testdata/linphone.sdp")
	good, err := Apply(in, Rewrite{Addr: relay4, Media: relayPorts(1, true)})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkMinimalDiff(in, good, false); err != nil {
		t.Fatalf("good output rejected: %v", err)
	}
	s := string(good)
	mutations := map[string]string{
		"rtpmap changed":      strings.Replace(s, "opus/48000/2", "opus/48000", 1),
		"line ending changed": strings.Replace(s, "a=fmtp:96 useinbandfec=1\r\n", "a=fmtp:96 useinbandfec=1\n", 1),
		"line dropped":        strings.Replace(s, "a=record:off\r\n", "", 1),
		"lines swapped":       strings.Replace(s, "a=fmtp:97 vbr=on\r\na=rtpmap:98 speex/8000\r\n", "a=rtpmap:98 speex/8000\r\na=fmtp:97 vbr=on\r\n", 1),
		"m= proto changed":    strings.Replace(s, "RTP/AVP", "RTP/SAVP", 1),
		"c= inserted late":    strings.Replace(s, "a=rtcp-fb:* trr-int", "c=IN IP4 203.0.113.5\r\na=rtcp-fb:* trr-int", 1),
		"o= changed":          strings.Replace(s, "o=alice 2847 1903", "o=alice 2847 1904", 1),
		"final newline added": s + "\r\n",
		"line added":          s + "a=x-relay:1\r\n",
		"trailing space":      strings.Replace(s, "s=Talk\r\n", "s=Talk \r\n", 1),
	}
	for name, m := range mutations {
		if m == s {
			t.Fatalf("%s: mutation did not apply", name)
		}
		if err := checkMinimalDiff(in, []byte(m), false); err == nil {
			t.Errorf("%s: not detected", name)
		}
	}
}

// checkSemantics parses in and out and checks that out says what rw asked
// for: new ports and addresses where rewritten, the rest unchanged.
func checkSemantics(t testing.TB, in, out []byte, rw Rewrite) {
	t.Helper()
	din, err := Parse(in)
	if err != nil {
		t.Fatalf("input does not parse: %v", err)
	}
	dout, err := Parse(out)
	if err != nil {
		t.Fatalf("output does not parse: %v\n%q", err, out)
	}
	iinf, _ := parse(string(in), nil, nil)
	oinf, _ := parse(string(out), nil, nil)
	wantOrigin := din.Origin
	if rw.Version != 0 {
		wantOrigin.Version = rw.Version
	}
	if dout.Origin != wantOrigin {
		t.Errorf("origin %+v, want %+v", dout.Origin, wantOrigin)
	}
	if dout.Direction != din.Direction {
		t.Errorf("session direction %q, want %q", dout.Direction, din.Direction)
	}
	if len(dout.Media) != len(din.Media) {
		t.Fatalf("%d media, want %d", len(dout.Media), len(din.Media))
	}
	relay := rw.Addr.Unmap()
	for i, mi := range din.Media {
		mo := dout.Media[i]
		if mo.Type != mi.Type || mo.Proto != mi.Proto || mo.NumPorts != mi.NumPorts || !slices.Equal(mo.Formats, mi.Formats) ||
			mo.Direction != mi.Direction || mo.RTCPMux != mi.RTCPMux || mo.Encoding != mi.Encoding || mo.ClockRate != mi.ClockRate {
			t.Errorf("media %d changed beyond transport:\n in %+v\nout %+v", i, mi, mo)
		}
		eff := iinf.media[i].own.kind
		if eff == connNone {
			eff = iinf.sess.kind
		}
		var mr MediaRewrite
		if i < len(rw.Media) {
			mr = rw.Media[i]
		}
		if mr.Port == 0 || mi.Port == 0 || eff == connFixed {
			if mo.Port != mi.Port {
				t.Errorf("media %d: port %d, want it untouched (%d)", i, mo.Port, mi.Port)
			}
			if eff == connFixed && (mo.Conn != mi.Conn || mo.RTCP != mi.RTCP) {
				t.Errorf("media %d: fixed (multicast) connection changed: %v %v -> %v %v", i, mi.Conn, mi.RTCP, mo.Conn, mo.RTCP)
			}
			if mi.Port != 0 && iinf.media[i].ice && mo.ICE != mi.ICE {
				t.Errorf("media %d: left alone but its ICE changed", i)
			}
			continue
		}
		if mo.Port != mr.Port {
			t.Errorf("media %d: port %d, want %d", i, mo.Port, mr.Port)
		}
		if mo.Hold() != mi.Hold() {
			t.Errorf("media %d: hold %v, want %v", i, mo.Hold(), mi.Hold())
		}
		addrHold := mi.Conn.IsValid() && mi.Conn.IsUnspecified() && !mi.ICE
		if addrHold {
			if mo.Conn != mi.Conn {
				t.Errorf("media %d: held c= %v became %v", i, mi.Conn, mo.Conn)
			}
		} else if mo.Conn != relay {
			t.Errorf("media %d: c= %v, want relay %v", i, mo.Conn, relay)
		}
		wantRTCP := mr.RTCPPort
		if wantRTCP == 0 {
			wantRTCP = mr.Port + 1
		}
		switch {
		case iinf.media[i].rtcp < 0:
			if mo.RTCP != (netip.AddrPort{}) {
				t.Errorf("media %d: a=rtcp %v added", i, mo.RTCP)
			}
		case int(mo.RTCP.Port()) != wantRTCP:
			t.Errorf("media %d: a=rtcp port %d, want %d", i, mo.RTCP.Port(), wantRTCP)
		case !addrHold && mo.RTCP.Addr() != relay:
			t.Errorf("media %d: a=rtcp address %v, want relay %v", i, mo.RTCP.Addr(), relay)
		}
		if mr.RemoveICE && oinf.media[i].ice {
			t.Errorf("media %d: ICE lines left", i)
		}
		if !mr.RemoveICE && mo.ICE != mi.ICE {
			t.Errorf("media %d: ICE %v, want %v kept", i, mo.ICE, mi.ICE)
		}
	}
}
