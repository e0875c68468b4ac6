package portmap

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Seeds: every recorded reply of its kind, plus the hand-made edge cases
// of the decode tests.
func recordedSeeds(f *testing.F, suffix string, read func(string) []byte) {
	names, err := filepath.Glob(filepath.Join(recorded, "*"+suffix))
	if err != nil || len(names) == 0 {
		f.Fatalf("no %s seeds: %v", suffix, err)
	}
	for _, n := range names {
		f.Add(read(filepath.Base(n)))
	}
}

func FuzzPCPReply(f *testing.F) {
	recordedSeeds(f, ".hex", func(n string) []byte { return readHexdump(f, n) })
	f.Add([]byte{2, 0x81, 0, 0})
	f.Add(append(readHexdump(f, "pcp-map.hex"), 1, 0, 0, 4, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePCPReply(b)
		if err == nil && r.HasMap && len(b) < pcpHeaderLen+pcpMapLen {
			t.Fatalf("MAP payload from %d bytes", len(b))
		}
	})
}

func FuzzNATPMPReply(f *testing.F) {
	recordedSeeds(f, ".hex", func(n string) []byte { return readHexdump(f, n) })
	f.Add([]byte{0, 128, 0, 3, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePMPReply(b)
		if err == nil && r.Result == PMPSuccess && r.Op == pmpOpExternal && !r.External.IsValid() {
			t.Fatal("success without an address")
		}
	})
}

func FuzzSSDPReply(f *testing.F) {
	rec, _ := os.ReadFile(filepath.Join(recorded, "ssdp-reply.txt"))
	f.Add(rec)
	f.Add([]byte("HTTP/1.1 200 OK\nlocation: http://192.168.1.1:1900/igd.xml\n\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nLOCATION: http://[fe80::1%25eth0]:80/d.xml\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseSSDPReply(b)
		if err == nil && (r.Location == nil || r.Location.Scheme != "http" || r.Location.Host == "") {
			t.Fatalf("accepted location %v", r.Location)
		}
	})
}

func FuzzParseDescription(f *testing.F) {
	rec, _ := os.ReadFile(filepath.Join(recorded, "rootDesc.xml"))
	f.Add(rec)
	for _, n := range []string{"fritzbox-igddesc.xml", "libupnp-gatedesc.xml", "miniupnpd-rootDesc.xml"} {
		b, _ := os.ReadFile(filepath.Join("portmaptest", "replies", n))
		f.Add(b)
	}
	f.Add([]byte(`<root><URLBase>http://[::1]:80/</URLBase><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>//evil/x</controlURL></service></serviceList></device></root>`))
	base, _ := url.Parse("http://192.168.1.1:5000/rootDesc.xml")
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseDescription(b)
		if err != nil {
			return
		}
		for _, s := range d.wanServices(base) {
			if s.Control == nil || s.Control.Scheme != "http" || s.Control.Host == "" {
				t.Fatalf("service %+v", s)
			}
		}
	})
}

func FuzzParseSOAP(f *testing.F) {
	names, _ := filepath.Glob(filepath.Join(recorded, "*.http"))
	for _, n := range names {
		_, body := readHTTPBody(f, filepath.Base(n))
		f.Add(body)
	}
	f.Add([]byte(`<SOAP-ENV:Envelope xmlns:SOAP-ENV="x"><SOAP-ENV:Body><m:XResponse><A>1</A></m:XResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseSOAP(b)
		if err == nil && r.Response == "" && !r.Fault {
			t.Fatal("accepted neither response nor fault")
		}
		if err == nil && r.Response != "" && !strings.HasSuffix(r.Response, "Response") {
			t.Fatalf("response %q", r.Response)
		}
	})
}
