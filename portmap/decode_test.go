package portmap

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const recorded = "testdata/miniupnpd-2.3.1"

// readHexdump reads a `hexdump -C` style file: the hex columns between
// the offset and the |ascii| part.
func readHexdump(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recorded, name))
	if err != nil {
		t.Fatal(err)
	}
	return parseHexdump(t, string(b))
}

func parseHexdump(t testing.TB, s string) []byte {
	var out []byte
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "|"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		for _, h := range f[1:] {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != 1 {
				t.Fatalf("bad hexdump byte %q", h)
			}
			out = append(out, b[0])
		}
	}
	return out
}

// readHTTPBody returns the body of a recorded HTTP response.
func readHTTPBody(t testing.TB, name string) (status string, body []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recorded, name))
	if err != nil {
		t.Fatal(err)
	}
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("%s: no header end", name)
	}
	status, _, _ = strings.Cut(string(head), "\r\n")
	return status, body
}

var wan = netip.MustParseAddr("203.0.113.2")

func TestRecordedNATPMPReplies(t *testing.T) {
	type want struct {
		op       uint8
		result   uint16
		epoch    uint32
		external netip.Addr
		internal uint16
		mapped   uint16
		lifetime uint32
	}
	cases := map[string]want{
		"natpmp-external.hex":              {op: 0, epoch: 17, external: wan},
		"natpmp-map-udp.hex":               {op: 1, epoch: 17, internal: 5060, mapped: 5060, lifetime: 3600},
		"natpmp-unmap-udp.hex":             {op: 1, epoch: 17, internal: 5060},
		"natpmp-bad-opcode.hex":            {op: 9, result: PMPUnsupportedOpcode, epoch: 18},
		"reserved-wan-natpmp-external.hex": {op: 0, result: PMPNetworkFailure, epoch: 58},
		"reserved-wan-natpmp-map-udp.hex":  {op: 1, result: PMPNetworkFailure, epoch: 58},
	}
	for name, w := range cases {
		r, err := parsePMPReply(readHexdump(t, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got := want{r.Op, r.Result, r.Epoch, r.External, r.Internal, r.Mapped, r.Lifetime}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", name, got, w)
		}
	}
}

func TestRecordedPCPReplies(t *testing.T) {
	var nonce [12]byte
	copy(nonce[:], "sipedge-test")
	type want struct {
		op, result   uint8
		lifetime     uint32
		epoch        uint32
		hasMap       bool
		internal     uint16
		externalPort uint16
		externalIP   netip.Addr
	}
	zero := netip.IPv4Unspecified()
	cases := map[string]want{
		"pcp-map.hex":                {pcpOpMap, PCPSuccess, 3600, 18, true, 5060, 5060, wan},
		"pcp-unmap.hex":              {pcpOpMap, PCPSuccess, 0, 18, true, 5060, 5060, wan},
		"pcp-announce.hex":           {pcpOpAnnounce, PCPSuccess, 0, 18, false, 0, 0, netip.Addr{}},
		"pcp-address-mismatch.hex":   {pcpOpMap, PCPAddressMismatch, 0, 18, true, 5060, 5060, zero},
		"pcp-bad-version.hex":        {pcpOpMap, PCPUnsuppVersion, 0, 18, true, 0, 0, zero},
		"pcp-bad-opcode.hex":         {0x7f, PCPUnsuppOpcode, 0, 18, false, 0, 0, netip.Addr{}},
		"reserved-wan-pcp-map.hex":   {pcpOpMap, PCPNoResources, 30, 59, true, 5060, 5060, wan},
		"reserved-wan-pcp-unmap.hex": {pcpOpMap, PCPNoResources, 30, 59, true, 5060, 5060, wan},
	}
	for name, w := range cases {
		r, err := parsePCPReply(readHexdump(t, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got := want{r.Opcode, r.Result, r.Lifetime, r.Epoch, r.HasMap, r.InternalPort, r.ExternalPort, r.ExternalIP}
		if got != w {
			t.Errorf("%s: got %+v, want %+v", name, got, w)
		}
		if r.HasMap && r.Opcode == pcpOpMap && r.Nonce != nonce {
			t.Errorf("%s: nonce %q", name, r.Nonce[:])
		}
	}
}

// The version negotiation of RFC 6887 §9: each client recognises the
// other protocol's "unsupported version" answer and fails at once.
func TestVersionNegotiationReplies(t *testing.T) {
	pmpUnsupp := []byte{0, 129, 0, 1, 0, 0, 0, 5}
	if _, err := parsePCPReply(pmpUnsupp); !errors.Is(err, ErrUnsupported) {
		t.Errorf("PCP reading a NAT-PMP reply: %v", err)
	}
	pcpUnsupp := readHexdump(t, "pcp-bad-version.hex")
	if _, err := parsePMPReply(pcpUnsupp); !errors.Is(err, ErrUnsupported) {
		t.Errorf("NAT-PMP reading PCP UNSUPP_VERSION: %v", err)
	}
	// A server of PCP version 3 answering with its own version.
	v3 := append([]byte(nil), pcpUnsupp...)
	v3[0] = 3
	r, err := parsePCPReply(v3)
	if err != nil || r.Result != PCPUnsuppVersion {
		t.Errorf("version-3 UNSUPP_VERSION: %+v %v", r, err)
	}
}

func TestPCPReplyBounds(t *testing.T) {
	ok := readHexdump(t, "pcp-map.hex")
	withOpt := func(opt ...byte) []byte { return append(append([]byte(nil), ok...), opt...) }
	cases := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"recorded", ok, true},
		{"option THIRD_PARTY", withOpt(1, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1), true},
		{"option padded", withOpt(2, 0, 0, 1, 9, 0, 0, 0), true},
		{"option overruns", withOpt(1, 0, 0, 20, 0, 0, 0, 0), false},
		{"truncated option", append(ok[:len(ok):len(ok)], 1, 0, 0, 0, 0, 0, 0, 0)[:len(ok)+4], true},
		{"not a multiple of 4", ok[:59], false},
		{"short", ok[:20], false},
		{"too long", make([]byte, 1104), false},
		{"request", func() []byte { b := append([]byte(nil), ok...); b[1] = 1; return b }(), false},
		{"MAP success without payload", ok[:24], false},
	}
	for _, c := range cases {
		_, err := parsePCPReply(c.b)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestNATPMPReplyBounds(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"short", []byte{0, 128, 0, 0, 0, 0, 0}, false},
		{"external, 8 bytes", []byte{0, 128, 0, 0, 0, 0, 0, 1}, false},
		{"external error, 8 bytes", []byte{0, 128, 0, 3, 0, 0, 0, 1}, true},
		{"map, 12 bytes", []byte{0, 129, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1}, false},
		{"request", []byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 1}, false},
		{"version 1", []byte{1, 128, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, false},
	} {
		_, err := parsePMPReply(c.b)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// Our MAP request has the layout of RFC 6887 §7.1 and §11.1.
func TestBuildPCPMap(t *testing.T) {
	var nonce [12]byte
	copy(nonce[:], "sipedge-test")
	b := buildPCPMap(3600, netip.MustParseAddr("10.77.0.10"), nonce, pcpProtoUDP, 5060, 5060, netip.Addr{})
	want := parseHexdump(t, `
00000000  02 01 00 00 00 00 0e 10  00 00 00 00 00 00 00 00
00000010  00 00 ff ff 0a 4d 00 0a  73 69 70 65 64 67 65 2d
00000020  74 65 73 74 11 00 00 00  13 c4 13 c4 00 00 00 00
00000030  00 00 00 00 00 00 ff ff  00 00 00 00`)
	if !bytes.Equal(b, want) {
		t.Errorf("MAP request\n got %x\nwant %x", b, want)
	}
	a := buildPCPAnnounce(netip.MustParseAddr("10.77.0.10"))
	if len(a) != 24 || a[0] != 2 || a[1] != 0 || !bytes.Equal(a[8:24], want[8:24]) {
		t.Errorf("ANNOUNCE %x", a)
	}
	m := buildPMPMap(pmpOpMapTCP, 5060, 5062, 7200)
	if !bytes.Equal(m, []byte{0, 2, 0, 0, 0x13, 0xc4, 0x13, 0xc6, 0, 0, 0x1c, 0x20}) {
		t.Errorf("NAT-PMP map %x", m)
	}
}

func TestSSDPReply(t *testing.T) {
	rec, err := os.ReadFile(filepath.Join(recorded, "ssdp-reply.txt"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseSSDPReply(rec)
	if err != nil {
		t.Fatal(err)
	}
	if r.Location.String() != "http://10.77.0.1:5000/rootDesc.xml" || r.ST != igdSearchTargets[0] || !strings.Contains(r.Server, "MiniUPnPd/2.3.1") {
		t.Errorf("%+v", r)
	}
	for _, c := range []struct {
		name, msg string
		ok        bool
	}{
		{"bare LF, lower case", "HTTP/1.1 200 OK\nlocation:  http://192.168.1.1:1900/igd.xml \nst: upnp:rootdevice\n\n", true},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nLOCATION: http://192.168.1.1/\r\n\r\n", true},
		{"no location", "HTTP/1.1 200 OK\r\nST: x\r\n\r\n", false},
		{"https", "HTTP/1.1 200 OK\r\nLOCATION: https://192.168.1.1/d.xml\r\n\r\n", false},
		{"no host", "HTTP/1.1 200 OK\r\nLOCATION: http:///d.xml\r\n\r\n", false},
		{"bad port", "HTTP/1.1 200 OK\r\nLOCATION: http://192.168.1.1:99999/d.xml\r\n\r\n", false},
		{"404", "HTTP/1.1 404 Not Found\r\nLOCATION: http://192.168.1.1/d.xml\r\n\r\n", false},
		{"a NOTIFY", "NOTIFY * HTTP/1.1\r\nLOCATION: http://192.168.1.1/d.xml\r\n\r\n", false},
		{"an M-SEARCH", string(buildMSearch(SSDPMulticast, igdSearchTargets[0])), false},
	} {
		_, err := parseSSDPReply([]byte(c.msg))
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestParseRecordedDescription(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(recorded, "rootDesc.xml"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseDescription(b)
	if err != nil {
		t.Fatal(err)
	}
	loc, _ := url.Parse("http://10.77.0.1:5000/rootDesc.xml")
	svcs := d.wanServices(loc)
	if len(svcs) != 1 || svcs[0].Type != svcWANIP2 || svcs[0].Version != 2 || svcs[0].Control.String() != "http://10.77.0.1:5000/ctl/IPConn" {
		t.Fatalf("services %+v", svcs)
	}
	if d.Device.FriendlyName != "pmx lab router" {
		t.Errorf("friendly name %q", d.Device.FriendlyName)
	}
}

func TestParseDescriptionQuirks(t *testing.T) {
	// Latin-1, an unescaped '&', URLBase, relative URLs without a leading
	// slash and with blanks, a WANPPPConnection before a WANIPConnection:1
	// in another connection device, and an unknown version string.
	doc := "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<root xmlns=\"urn:schemas-upnp-org:device-1-0\"><URLBase>http://192.168.0.1:49152/</URLBase>" +
		"<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><friendlyName>Caf\xe9 & Bar Router</friendlyName>" +
		"<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><deviceList>" +
		"<device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>upnp/control/WANPPPConn1</controlURL></service></serviceList></device>" +
		"<device><serviceList><service><serviceType> urn:schemas-upnp-org:service:WANIPConnection:1 </serviceType><controlURL>\n upnp/control/WANIPConn1 \n</controlURL></service>" +
		"<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:x</serviceType><controlURL>/x</controlURL></service>" +
		"<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL></controlURL></service></serviceList></device>" +
		"</deviceList></device></deviceList></device></root>"
	d, err := parseDescription([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if d.Device.FriendlyName != "Café & Bar Router" {
		t.Errorf("friendly name %q", d.Device.FriendlyName)
	}
	loc, _ := url.Parse("http://192.168.0.1:1900/gatedesc.xml")
	svcs := d.wanServices(loc)
	if len(svcs) != 2 {
		t.Fatalf("services %+v", svcs)
	}
	if svcs[0].Type != svcWANIP1 || svcs[0].Control.String() != "http://192.168.0.1:49152/upnp/control/WANIPConn1" {
		t.Errorf("first %+v %s", svcs[0], svcs[0].Control)
	}
	if !svcs[1].PPP || svcs[1].Control.String() != "http://192.168.0.1:49152/upnp/control/WANPPPConn1" {
		t.Errorf("second %+v %s", svcs[1], svcs[1].Control)
	}
	if _, err := parseDescription([]byte("<?xml version=\"1.0\" encoding=\"EBCDIC\"?><root/>")); err == nil {
		t.Error("EBCDIC accepted")
	}
}

func TestParseRecordedSOAP(t *testing.T) {
	cases := []struct {
		file     string
		fault    bool
		response string
		args     map[string]string
	}{
		{"soap-GetExternalIPAddress.http", false, "GetExternalIPAddressResponse", map[string]string{"NewExternalIPAddress": "203.0.113.2"}},
		{"reserved-wan-soap-GetExternalIPAddress.http", false, "GetExternalIPAddressResponse", map[string]string{"NewExternalIPAddress": ""}},
		{"soap-AddPortMapping.http", false, "AddPortMappingResponse", nil},
		{"soap-AddAnyPortMapping.http", false, "AddAnyPortMappingResponse", map[string]string{"NewReservedPort": "5060"}},
		{"soap-DeletePortMapping.http", false, "DeletePortMappingResponse", nil},
		{"soap-GetSpecificPortMappingEntry.http", false, "GetSpecificPortMappingEntryResponse", map[string]string{
			"NewInternalPort": "5060", "NewInternalClient": "10.77.0.10", "NewEnabled": "1", "NewPortMappingDescription": "sipedge", "NewLeaseDuration": "3600"}},
		{"soap-GetStatusInfo.http", false, "GetStatusInfoResponse", map[string]string{"NewConnectionStatus": "Connected"}},
		{"soap-AddPortMapping-other-client.http", true, "", map[string]string{"errorCode": "718", "errorDescription": "ConflictInMappingEntry"}},
		{"soap-NoSuchAction.http", true, "", map[string]string{"errorCode": "401"}},
		{"reserved-wan-soap-AddPortMapping.http", true, "", map[string]string{"errorCode": "501", "errorDescription": "ActionFailed"}},
		{"reserved-wan-soap-AddAnyPortMapping.http", true, "", map[string]string{"errorCode": "501"}},
	}
	for _, c := range cases {
		_, body := readHTTPBody(t, c.file)
		r, err := parseSOAP(body)
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if r.Fault != c.fault || r.Response != c.response {
			t.Errorf("%s: fault %v response %q", c.file, r.Fault, r.Response)
		}
		for k, v := range c.args {
			if got, ok := r.Args[k]; !ok || got != v {
				t.Errorf("%s: %s = %q (present %v), want %q", c.file, k, got, ok, v)
			}
		}
	}
}

func TestParseSOAPQuirks(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		ok        bool
		arg       string
	}{
		{"SOAP-ENV and m:", `<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><m:GetExternalIPAddressResponse xmlns:m="urn:schemas-upnp-org:service:WANIPConnection:1"><NewExternalIPAddress>198.51.100.4</NewExternalIPAddress></m:GetExternalIPAddressResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>`, true, "198.51.100.4"},
		{"default namespace, newlines", "<?xml version=\"1.0\"?>\n<Envelope xmlns=\"http://schemas.xmlsoap.org/soap/envelope/\">\n<Body>\n<GetExternalIPAddressResponse xmlns=\"urn:schemas-upnp-org:service:WANIPConnection:1\">\n<NewExternalIPAddress>\n198.51.100.5\n</NewExternalIPAddress>\n</GetExternalIPAddressResponse>\n</Body>\n</Envelope>\n", true, "198.51.100.5"},
		{"trailing garbage", `<s:Envelope xmlns:s="x"><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>198.51.100.6</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>` + "\x00\x00", true, "198.51.100.6"},
		{"no envelope", `<html><body>404</body></html>`, false, ""},
		{"empty", ``, false, ""},
		{"envelope without body content", `<s:Envelope xmlns:s="x"><s:Body></s:Body></s:Envelope>`, false, ""},
	} {
		r, err := parseSOAP([]byte(c.doc))
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.name, err)
			continue
		}
		if c.ok && r.Args["NewExternalIPAddress"] != c.arg {
			t.Errorf("%s: %q", c.name, r.Args["NewExternalIPAddress"])
		}
	}
	deep := strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100)
	if _, err := parseSOAP([]byte(`<s:Envelope><s:Body>` + deep + `</s:Body></s:Envelope>`)); err == nil {
		t.Error("deep nesting accepted")
	}
}

func TestClassifyExternal(t *testing.T) {
	for a, private := range map[string]bool{
		"203.0.113.7": false, "198.51.100.1": false, "8.8.8.8": false, "2001:db8::1": false, "2a00:1450::1": false,
		"10.0.0.1": true, "172.16.5.4": true, "192.168.1.1": true, "100.64.0.1": true, "100.127.255.254": true,
		"192.0.0.2": true, "169.254.1.1": true, "127.0.0.1": true, "0.0.0.0": true, "0.1.2.3": true,
		"198.18.0.1": true, "240.0.0.1": true, "224.0.0.1": true, "fd00::1": true, "fe80::1": true, "::1": true,
		"::ffff:10.1.2.3": true,
	} {
		got, why := ClassifyExternal(netip.MustParseAddr(a))
		if got != private || (private && why == "") {
			t.Errorf("%s: private %v (%q), want %v", a, got, why, private)
		}
	}
	if p, _ := ClassifyExternal(netip.Addr{}); !p {
		t.Error("invalid address not private")
	}
	_, why := ClassifyExternal(netip.MustParseAddr("100.64.1.1"))
	if !strings.Contains(why, "carrier-grade") {
		t.Errorf("CGNAT: %q", why)
	}
	_, why = ClassifyExternal(netip.MustParseAddr("192.168.1.1"))
	if !strings.Contains(why, "double NAT") {
		t.Errorf("RFC 1918: %q", why)
	}
}

func TestParseProcRoute(t *testing.T) {
	const route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
		"eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
		"eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n" +
		"tun0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0\n" +
		"down0\t00000000\t0102A8C0\t0002\t0\t0\t10\t00000000\t0\t0\t0\n" +
		"junk\n"
	gw, iface, err := parseProcRoute(strings.NewReader(route))
	if err != nil || gw != netip.MustParseAddr("192.168.1.1") || iface != "eth0" {
		t.Fatalf("%v %s %v", gw, iface, err)
	}
	_, _, err = parseProcRoute(strings.NewReader("Iface\tDestination\n" + "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"))
	if !errors.Is(err, ErrNoGateway) {
		t.Errorf("no default route: %v", err)
	}

	dir := t.TempDir()
	p := filepath.Join(dir, "route")
	os.WriteFile(p, []byte("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"+
		"lo\t00000000\t0100007F\t0003\t0\t0\t0\t00000000\n"), 0o644)
	old := procRoute
	procRoute = p
	defer func() { procRoute = old }()
	gw, local, err := DefaultGateway()
	if err != nil || gw != netip.MustParseAddr("127.0.0.1") || !local.IsLoopback() {
		t.Errorf("DefaultGateway: %v %v %v", gw, local, err)
	}
}

func TestEpochTracker(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	var e epochTracker
	steps := []struct {
		server uint32
		after  time.Duration
		lost   bool
	}{
		{1000, 0, false},
		{1010, 10 * time.Second, false},
		{1010, 0, false},                      // parallel answers
		{1009, 100 * time.Millisecond, false}, // out of order by a second
		{1011, time.Second, false},
		{5, 2 * time.Second, true}, // went backwards: rebooted
		{65, time.Minute, false},
		{70, time.Hour, true}, // server clock stood still for an hour: rebooted meanwhile
		{3670, time.Hour, false},
		{20000, 10 * time.Second, true}, // jumped far ahead
	}
	now := t0
	for i, s := range steps {
		now = now.Add(s.after)
		if got := e.observe(s.server, now); got != s.lost {
			t.Errorf("step %d (%d after %v): lost %v, want %v", i, s.server, s.after, got, s.lost)
		}
	}
	if e.count() != 3 {
		t.Errorf("resets %d", e.count())
	}
}

func TestLeaseSeconds(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		max  uint32
		want uint32
	}{
		{0, 1 << 31, 7200}, {-time.Second, 1 << 31, 7200}, {1500 * time.Millisecond, 1 << 31, 2},
		{time.Hour, 1 << 31, 3600}, {30 * 24 * time.Hour, upnpMaxLease, upnpMaxLease},
	} {
		if got := leaseSeconds(c.d, DefaultLifetime, c.max); got != c.want {
			t.Errorf("%v: %d, want %d", c.d, got, c.want)
		}
	}
}
