package portmaptest

import (
	"bytes"
	"embed"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/sipedge/sipedge/portmap"
)

//go:embed replies/*.xml
var replies embed.FS

const uuid = "3d3cec3a-8cf0-11e0-98ee-001a6bd2d07"

type paths struct {
	desc, descFile, control string
}

func (g *Gateway) paths() paths {
	kind := "IP"
	if g.cfg.PPP {
		kind = "PPP"
	}
	switch g.cfg.Flavor {
	case FlavorFritz:
		return paths{"/igddesc.xml", "replies/fritzbox-igddesc.xml", "/igdupnp/control/WAN" + kind + "Conn1"}
	case FlavorLibUPnP:
		// Relative to URLBase, without a leading slash.
		return paths{"/gatedesc.xml", "replies/libupnp-gatedesc.xml", "upnp/control/WAN" + kind + "Conn1"}
	}
	return paths{"/rootDesc.xml", "replies/miniupnpd-rootDesc.xml", "/ctl/" + kind + "Conn"}
}

// ServiceType is the WAN connection service the gateway offers.
func (g *Gateway) ServiceType() string {
	if g.cfg.PPP {
		return "urn:schemas-upnp-org:service:WANPPPConnection:1"
	}
	return fmt.Sprintf("urn:schemas-upnp-org:service:WANIPConnection:%d", g.cfg.UPnPVersion)
}

// serveSSDP answers M-SEARCH requests for the IGD (UDA 1.1 §1.3.3), in
// miniupnpd's format, when UPnP is on.
func (g *Gateway) serveSSDP() {
	defer g.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := g.ssdp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		g.mu.Lock()
		on := g.upnpOn
		g.mu.Unlock()
		if !on {
			continue
		}
		req := string(buf[:n])
		if !strings.HasPrefix(req, "M-SEARCH * HTTP/1.1") {
			continue
		}
		var st, man string
		for _, line := range strings.Split(req, "\r\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch strings.ToUpper(strings.TrimSpace(name)) {
			case "ST":
				st = strings.TrimSpace(value)
			case "MAN":
				man = strings.TrimSpace(value)
			}
		}
		if man != `"ssdp:discover"` || !g.answersST(st) {
			continue
		}
		if g.cfg.Delay > 0 {
			time.Sleep(g.cfg.Delay)
		}
		reply := "HTTP/1.1 200 OK\r\n" +
			"CACHE-CONTROL: max-age=120\r\n" +
			"ST: " + st + "\r\n" +
			"USN: uuid:" + uuid + "b::" + st + "\r\n" +
			"EXT:\r\n" +
			"SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n" +
			fmt.Sprintf("LOCATION: http://127.0.0.1:%d%s\r\n", g.httpPort, g.paths().desc) +
			"OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n" +
			"01-NLS: 1795526032\r\n" +
			"BOOTID.UPNP.ORG: 1795526032\r\n" +
			"CONFIGID.UPNP.ORG: 1337\r\n" +
			"\r\n"
		g.ssdp.WriteToUDPAddrPort([]byte(reply), from)
	}
}

func (g *Gateway) answersST(st string) bool {
	v := g.cfg.UPnPVersion
	if g.cfg.PPP {
		v = 1
	}
	switch st {
	case "ssdp:all", "upnp:rootdevice":
		return true
	}
	for _, prefix := range []string{"urn:schemas-upnp-org:device:InternetGatewayDevice:", "urn:schemas-upnp-org:device:WANDevice:", "urn:schemas-upnp-org:device:WANConnectionDevice:"} {
		if rest, ok := strings.CutPrefix(st, prefix); ok {
			n, err := strconv.Atoi(rest)
			return err == nil && n >= 1 && n <= v
		}
	}
	return st == g.ServiceType()
}

func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if g.cfg.Delay > 0 {
		time.Sleep(g.cfg.Delay)
	}
	p := g.paths()
	w.Header().Set("Server", "Debian/12 UPnP/1.1 MiniUPnPd/2.3.1")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == p.desc:
		t, err := template.ParseFS(replies, p.descFile)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		version := g.cfg.UPnPVersion
		if g.cfg.PPP {
			version = 1
		}
		w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
		t.Execute(w, map[string]any{
			"Version": version, "UUID": uuid, "ServiceType": g.ServiceType(),
			"Control": p.control, "Port": g.httpPort,
		})
	case r.Method == http.MethodPost && "/"+strings.TrimPrefix(p.control, "/") == r.URL.Path:
		g.serveSOAP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// soapArgs reads a SOAP request: the action element's local name and its
// argument elements.
func soapArgs(body []byte) (string, map[string]string) {
	d := xml.NewDecoder(bytes.NewReader(body))
	args := map[string]string{}
	action := ""
	depth := 0
	var cur string
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 3 {
				action = t.Name.Local
			}
			cur = t.Name.Local
			text.Reset()
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			if depth == 4 {
				args[cur] = strings.TrimSpace(text.String())
			}
			depth--
		}
	}
	return action, args
}

type upnpErr struct {
	code int
	desc string
}

func (g *Gateway) serveSOAP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	action, args := soapArgs(body)
	hdr := strings.Trim(r.Header.Get("SOAPAction"), `"`)
	svc, hdrAction, _ := strings.Cut(hdr, "#")
	if svc != g.ServiceType() || hdrAction != action {
		g.writeSOAP(w, action, nil, &upnpErr{401, "Invalid Action"})
		return
	}
	out, uerr := g.soapAction(action, args)
	g.writeSOAP(w, action, out, uerr)
}

type kv struct{ k, v string }

func (g *Gateway) soapAction(action string, args map[string]string) ([]kv, *upnpErr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked()
	transport := strings.ToLower(args["NewProtocol"])
	extPort, _ := strconv.Atoi(args["NewExternalPort"])
	intPort, _ := strconv.Atoi(args["NewInternalPort"])
	client, _ := netip.ParseAddr(args["NewInternalClient"])
	lease, _ := strconv.Atoi(args["NewLeaseDuration"])
	internal := netip.AddrPortFrom(client, uint16(intPort))
	op := Op{Protocol: portmap.UPnP, Action: action, Transport: transport, Internal: internal, External: uint16(extPort), Lifetime: time.Duration(lease) * time.Second}
	fail := func(code int, desc string) ([]kv, *upnpErr) {
		op.Result = strconv.Itoa(code)
		g.record(op)
		return nil, &upnpErr{code, desc}
	}
	ok := func(out []kv) ([]kv, *upnpErr) {
		op.Result = "ok"
		g.record(op)
		return out, nil
	}
	switch action {
	case "GetExternalIPAddress":
		if g.cfg.RefuseMappings {
			return ok([]kv{{"NewExternalIPAddress", ""}})
		}
		return ok([]kv{{"NewExternalIPAddress", g.external.String()}})
	case "GetStatusInfo":
		return ok([]kv{{"NewConnectionStatus", "Connected"}, {"NewLastConnectionError", "ERROR_NONE"}, {"NewUptime", strconv.Itoa(int(g.epochLocked()))}})
	case "AddPortMapping", "AddAnyPortMapping":
		if action == "AddAnyPortMapping" && (g.cfg.UPnPVersion < 2 || g.cfg.NoAddAny || g.cfg.PPP) {
			return fail(401, "Invalid Action")
		}
		if transport != "udp" && transport != "tcp" || intPort <= 0 || intPort > 65535 || !client.IsValid() || extPort < 0 || extPort > 65535 {
			return fail(402, "Invalid Args")
		}
		if extPort == 0 && action == "AddPortMapping" {
			return fail(716, "WildCardNotPermittedInExtPort")
		}
		if g.cfg.RefuseMappings {
			return fail(501, "ActionFailed")
		}
		if g.cfg.OnlyPermanent && lease != 0 {
			return fail(725, "OnlyPermanentLeasesSupported")
		}
		if g.failLocked() {
			return fail(501, "ActionFailed")
		}
		port := uint16(extPort)
		if g.takenLocked(transport, port, internal) {
			if action == "AddPortMapping" {
				return fail(718, "ConflictInMappingEntry")
			}
			port = g.freePortLocked(transport, port, internal)
		}
		// A new mapping of this internal endpoint replaces an older one.
		if old := g.findLocked(transport, internal); old != nil && old.External != port {
			delete(g.mappings, mkey{transport, old.External})
		}
		m := &Mapping{Protocol: portmap.UPnP, Transport: transport, Internal: internal, External: port, Description: args["NewPortMappingDescription"]}
		if lease > 0 {
			m.Lifetime = time.Duration(lease) * time.Second
			m.Expires = time.Now().Add(m.Lifetime)
		}
		g.mappings[mkey{transport, port}] = m
		op.External = port
		if action == "AddAnyPortMapping" {
			return ok([]kv{{"NewReservedPort", strconv.Itoa(int(port))}})
		}
		return ok(nil)
	case "DeletePortMapping":
		m := g.mappings[mkey{transport, uint16(extPort)}]
		if m == nil {
			return fail(714, "NoSuchEntryInArray")
		}
		delete(g.mappings, mkey{transport, uint16(extPort)})
		return ok(nil)
	case "GetSpecificPortMappingEntry":
		m := g.mappings[mkey{transport, uint16(extPort)}]
		if m == nil {
			return fail(714, "NoSuchEntryInArray")
		}
		left := 0
		if m.Lifetime > 0 {
			left = int(time.Until(m.Expires) / time.Second)
		}
		return ok([]kv{
			{"NewInternalPort", strconv.Itoa(int(m.Internal.Port()))},
			{"NewInternalClient", m.Internal.Addr().String()},
			{"NewEnabled", "1"},
			{"NewPortMappingDescription", m.Description},
			{"NewLeaseDuration", strconv.Itoa(left)},
		})
	}
	return fail(401, "Invalid Action")
}

// writeSOAP writes a response or fault in the flavour's style.
func (g *Gateway) writeSOAP(w http.ResponseWriter, action string, out []kv, uerr *upnpErr) {
	var b strings.Builder
	svc := g.ServiceType()
	switch g.cfg.Flavor {
	case FlavorFritz:
		b.WriteString("<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\">\n<s:Body>\n")
		if uerr != nil {
			fmt.Fprintf(&b, "<s:Fault>\n<faultcode>s:Client</faultcode>\n<faultstring>UPnPError</faultstring>\n<detail>\n<UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\">\n<errorCode>%d</errorCode>\n<errorDescription>%s</errorDescription>\n</UPnPError>\n</detail>\n</s:Fault>\n", uerr.code, uerr.desc)
		} else {
			fmt.Fprintf(&b, "<u:%sResponse xmlns:u=\"%s\">\n", action, svc)
			for _, a := range out {
				fmt.Fprintf(&b, "<%s>%s</%s>\n", a.k, escape(a.v), a.k)
			}
			fmt.Fprintf(&b, "</u:%sResponse>\n", action)
		}
		b.WriteString("</s:Body>\n</s:Envelope>\n")
	case FlavorLibUPnP:
		b.WriteString(`<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><SOAP-ENV:Body>`)
		if uerr != nil {
			fmt.Fprintf(&b, `<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>%s</errorDescription></UPnPError></detail></SOAP-ENV:Fault>`, uerr.code, uerr.desc)
		} else {
			fmt.Fprintf(&b, `<m:%sResponse xmlns:m="%s">`, action, svc)
			for _, a := range out {
				fmt.Fprintf(&b, "<%s>%s</%s>", a.k, escape(a.v), a.k)
			}
			fmt.Fprintf(&b, `</m:%sResponse>`, action)
		}
		b.WriteString("</SOAP-ENV:Body></SOAP-ENV:Envelope>")
	default: // miniupnpd 2.3.1, as recorded
		env := `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`
		if uerr != nil {
			b.WriteString(env)
			fmt.Fprintf(&b, `<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>%s</errorDescription></UPnPError></detail></s:Fault>`, uerr.code, uerr.desc)
			b.WriteString("</s:Body></s:Envelope>")
		} else {
			b.WriteString("<?xml version=\"1.0\"?>\r\n" + env)
			if action == "AddPortMapping" {
				fmt.Fprintf(&b, `<u:%sResponse xmlns:u="%s"/>`, action, svc)
			} else {
				fmt.Fprintf(&b, `<u:%sResponse xmlns:u="%s">`, action, svc)
				for _, a := range out {
					fmt.Fprintf(&b, "<%s>%s</%s>", a.k, escape(a.v), a.k)
				}
				fmt.Fprintf(&b, `</u:%sResponse>`, action)
			}
			b.WriteString("</s:Body></s:Envelope>\r\n")
		}
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.Header().Set("Ext", "")
	if uerr != nil {
		w.WriteHeader(http.StatusInternalServerError)
	}
	io.WriteString(w, b.String())
}

func escape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
