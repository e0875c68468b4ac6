package sdp

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func addFixtureSeeds(f *testing.F, add func(body []byte)) {
	files, err := filepath.Glob("testdata/*.sdp")
	if err != nil || len(files) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, name := range files {
		add(readFile(f, name))
	}
	for _, s := range []string{
		"", "v=0", "v=0\r\n", "v=0\no=- 0 0 IN IP4 0.0.0.0",
		"v=0\no=- 1 2 IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nm=audio 4002 RTP/AVP 0\ni=x",
		"v=0\no=- 1 2 IN IP4 192.0.2.1\nc=IN IP4 0.0.0.0\nm=audio 9 RTP/AVP 0\na=ice-ufrag:x\na=rtcp:9 IN IP4 0.0.0.0\na=end-of-candidates",
		"v=0\no=- 1 2 IN IP4 192.0.2.1\nc=IN IP6 ff15::1/3\nm=audio 4000/2 RTP/AVP 0\nc=IN IP4 h.example\na=rtcp:4001 IN IP4 0.0.0.0\r\n",
	} {
		add([]byte(s))
	}
}

func FuzzParse(f *testing.F) {
	addFixtureSeeds(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Parse(body)
		same, aerr := Apply(body, Rewrite{})
		if (err == nil) != (aerr == nil) {
			t.Fatalf("Parse error %v but Apply error %v", err, aerr)
		}
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 0 || !strings.HasPrefix(err.Error(), "sdp: ") {
				t.Fatalf("bad error %#v", err)
			}
			if aerr.Error() != err.Error() {
				t.Fatalf("Apply error %q, Parse error %q", aerr, err)
			}
			return
		}
		if !bytes.Equal(same, body) {
			t.Fatalf("Apply(Rewrite{}) changed the body:\n in %q\nout %q", body, same)
		}
		for i, m := range d.Media {
			if m.Port < 0 || m.Port > 65535 || m.NumPorts < 1 || m.Type != strings.ToLower(m.Type) {
				t.Fatalf("media %d: %+v", i, m)
			}
			switch m.Direction {
			case "sendrecv", "sendonly", "recvonly", "inactive":
			default:
				t.Fatalf("media %d: direction %q", i, m.Direction)
			}
			if m.Conn.Is4In6() || m.Conn.Zone() != "" {
				t.Fatalf("media %d: conn %v", i, m.Conn)
			}
			if !m.RTP() && (m.Encoding != "" || m.ClockRate != 0) {
				t.Fatalf("media %d: non-RTP with encoding %+v", i, m)
			}
		}
		if d.Conn.IsValid() && d.ConnRaw == "" {
			t.Fatalf("Conn %v without ConnRaw", d.Conn)
		}
		// SetVersion changes the o= version and nothing else.
		v := uint64(len(body))*2654435761 + 1
		sv, err := SetVersion(body, v)
		if err != nil {
			t.Fatalf("SetVersion: %v", err)
		}
		if err := checkMinimalDiff(body, sv, true); err != nil {
			t.Fatalf("SetVersion: %v\n in %q\nout %q", err, body, sv)
		}
		d2, err := Parse(sv)
		if err != nil {
			t.Fatalf("SetVersion output does not parse: %v", err)
		}
		want := d.Origin
		want.Version = v
		if d2.Origin != want {
			t.Fatalf("SetVersion: origin %+v, want %+v", d2.Origin, want)
		}
	})
}

func FuzzApply(f *testing.F) {
	addFixtureSeeds(f, func(b []byte) {
		f.Add(b, false, uint16(30000), uint8(0xff), uint64(0))
		f.Add(b, true, uint16(65533), uint8(0x05), uint64(1))
	})
	f.Fuzz(func(t *testing.T, body []byte, v6 bool, base uint16, removeICE uint8, version uint64) {
		rw := Rewrite{Addr: relay4, Version: version}
		if v6 {
			rw.Addr = relay6
		}
		d, err := Parse(body)
		if err != nil {
			if _, aerr := Apply(body, rw); aerr == nil {
				t.Fatalf("Parse error %v, Apply no error", err)
			}
			return
		}
		for i := range d.Media {
			p := 1024 + (int(base)+2*i)%64510 // 1024..65533: room for RTCP
			rw.Media = append(rw.Media, MediaRewrite{Port: p, RTCPPort: p + 1, RemoveICE: removeICE&(1<<(i%8)) != 0})
		}
		out, err := Apply(body, rw)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if err := checkMinimalDiff(body, out, version != 0); err != nil {
			t.Fatalf("%v\n in %q\nout %q", err, body, out)
		}
		checkSemantics(t, body, out, rw)
		again, err := Apply(out, rw)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent (%v):\n once %q\ntwice %q", err, out, again)
		}
	})
}
