package portmap

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// UPnP IGD service types, in the order we prefer them.
const (
	svcWANIP2  = "urn:schemas-upnp-org:service:WANIPConnection:2"
	svcWANIP1  = "urn:schemas-upnp-org:service:WANIPConnection:1"
	svcWANPPP1 = "urn:schemas-upnp-org:service:WANPPPConnection:1"
)

// UPnP error codes (UPnP Device Architecture §3.2.2, IGD WANIPConnection
// v2 §2.4) that the client acts on.
const (
	UPnPInvalidAction          = 401
	UPnPInvalidArgs            = 402
	UPnPActionFailed           = 501
	UPnPNotImplemented         = 602 // optional action not implemented
	UPnPNotAuthorized          = 606
	UPnPNoSuchEntry            = 714 // NoSuchEntryInArray
	UPnPConflict               = 718 // ConflictInMappingEntry
	UPnPSamePortValuesRequired = 724
	UPnPOnlyPermanentLeases    = 725 // OnlyPermanentLeasesSupported
	UPnPNoPortMapsAvailable    = 728
	UPnPConflictWithOther      = 729 // ConflictWithOtherMechanisms
)

// upnpMaxLease is the longest lease IGD:2 allows (one week).
const upnpMaxLease = 604800

// UPnPError is a SOAP fault from the gateway, or an HTTP error without one.
type UPnPError struct {
	Action      string
	Code        int // UPnP errorCode; 0 when the gateway sent none
	Description string
	HTTPStatus  int
}

func (e *UPnPError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("upnp: %s: HTTP status %d", e.Action, e.HTTPStatus)
	}
	d := e.Description
	if d == "" {
		d = upnpErrorNames[e.Code]
	}
	return fmt.Sprintf("upnp: %s: error %d %s", e.Action, e.Code, d)
}

// Is lets errors.Is(err, ErrUnsupported) match a missing action.
func (e *UPnPError) Is(target error) bool {
	return target == ErrUnsupported && (e.Code == UPnPInvalidAction || e.Code == UPnPNotImplemented)
}

var upnpErrorNames = map[int]string{
	UPnPInvalidAction: "Invalid Action", UPnPInvalidArgs: "Invalid Args", UPnPActionFailed: "Action Failed",
	UPnPNotImplemented: "Optional Action Not Implemented", UPnPNotAuthorized: "Action not authorized",
	UPnPNoSuchEntry: "NoSuchEntryInArray", UPnPConflict: "ConflictInMappingEntry",
	UPnPSamePortValuesRequired: "SamePortValuesRequired", UPnPOnlyPermanentLeases: "OnlyPermanentLeasesSupported",
	UPnPNoPortMapsAvailable: "NoPortMapsAvailable", UPnPConflictWithOther: "ConflictWithOtherMechanisms",
}

func upnpCode(err error) int {
	var ue *UPnPError
	if errors.As(err, &ue) {
		return ue.Code
	}
	return 0
}

func defaultHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil, // a LAN router is never behind a proxy
			DialContext:            (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			ResponseHeaderTimeout:  5 * time.Second,
			MaxIdleConnsPerHost:    2,
			IdleConnTimeout:        30 * time.Second,
			MaxResponseHeaderBytes: 16 << 10,
			DisableCompression:     true,
		},
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// ---- device description ----

// description is the part of an IGD's device description (rootDesc.xml)
// that matters here.
type description struct {
	URLBase string     `xml:"URLBase"`
	Device  descDevice `xml:"device"`
}

type descDevice struct {
	DeviceType   string        `xml:"deviceType"`
	FriendlyName string        `xml:"friendlyName"`
	Manufacturer string        `xml:"manufacturer"`
	ModelName    string        `xml:"modelName"`
	ModelNumber  string        `xml:"modelNumber"`
	Services     []descService `xml:"serviceList>service"`
	Devices      []descDevice  `xml:"deviceList>device"`
}

type descService struct {
	ServiceType string `xml:"serviceType"`
	ServiceID   string `xml:"serviceId"`
	ControlURL  string `xml:"controlURL"`
}

// wanService is a WAN connection service found in a description.
type wanService struct {
	Type    string // as the description spells it (used in SOAPAction)
	Version int    // 1 or 2 (WANPPPConnection: 1)
	PPP     bool
	Control *url.URL
	rank    int
}

// newXMLDecoder is lenient the way router firmware needs: not strict
// (unescaped '&', unknown entities, unclosed tags), and Latin-1 /
// US-ASCII declared encodings accepted.
func newXMLDecoder(b []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	d.CharsetReader = func(charset string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(charset) {
		case "utf-8", "utf8", "us-ascii", "ascii":
			return in, nil
		case "iso-8859-1", "latin1", "latin-1", "windows-1252", "iso_8859-1":
			return latin1Reader{in}, nil
		}
		return nil, fmt.Errorf("unsupported charset %q", charset)
	}
	return d
}

type latin1Reader struct{ r io.Reader }

func (l latin1Reader) Read(p []byte) (int, error) {
	// Each input byte becomes at most 2 UTF-8 bytes.
	if len(p) < 2 {
		return 0, io.ErrShortBuffer
	}
	buf := make([]byte, len(p)/2)
	n, err := l.r.Read(buf)
	out := p[:0]
	for _, c := range buf[:n] {
		out = utf8.AppendRune(out, rune(c))
	}
	return len(out), err
}

// parseDescription decodes a device description.
func parseDescription(b []byte) (*description, error) {
	var d description
	if err := newXMLDecoder(b).Decode(&d); err != nil {
		return nil, fmt.Errorf("upnp: device description: %w", err)
	}
	return &d, nil
}

// wanServices lists the WAN connection services of d, best first, with
// their control URLs resolved against URLBase or base.
func (d *description) wanServices(base *url.URL) []wanService {
	if u, err := url.Parse(strings.TrimSpace(d.URLBase)); err == nil && u.Scheme == "http" && u.Host != "" {
		base = u
	}
	var out []wanService
	var walk func(dev *descDevice, depth int)
	walk = func(dev *descDevice, depth int) {
		if depth > 8 {
			return
		}
		for _, s := range dev.Services {
			st := strings.TrimSpace(s.ServiceType)
			ws := wanService{Type: st}
			switch {
			case strings.HasPrefix(st, "urn:schemas-upnp-org:service:WANIPConnection:"):
				v, err := strconv.Atoi(strings.TrimPrefix(st, "urn:schemas-upnp-org:service:WANIPConnection:"))
				if err != nil || v < 1 {
					continue
				}
				ws.Version = v
				ws.rank = 1
				if v >= 2 {
					ws.Version, ws.rank = 2, 0
				}
			case st == svcWANPPP1:
				ws.Version, ws.PPP, ws.rank = 1, true, 2
			default:
				continue
			}
			cu, err := url.Parse(strings.TrimSpace(s.ControlURL))
			if err != nil || strings.TrimSpace(s.ControlURL) == "" {
				continue
			}
			ws.Control = base.ResolveReference(cu)
			if ws.Control.Scheme != "http" || ws.Control.Host == "" {
				continue
			}
			out = append(out, ws)
		}
		for i := range dev.Devices {
			walk(&dev.Devices[i], depth+1)
		}
	}
	walk(&d.Device, 0)
	// Stable sort by rank (few elements).
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].rank < out[j-1].rank; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// ---- SOAP ----

// soapReply is a decoded SOAP envelope: the leaf elements of its body by
// local name (first occurrence wins), whatever the namespace prefixes.
type soapReply struct {
	Response string // local name of the body's response element, e.g. "AddPortMappingResponse"
	Fault    bool
	Args     map[string]string
}

// parseSOAP decodes a SOAP response leniently: routers use s:, SOAP-ENV:,
// m: or no prefix, upper- or lower-case envelope names, and some omit
// the XML declaration.
func parseSOAP(b []byte) (soapReply, error) {
	r := soapReply{Args: map[string]string{}}
	d := newXMLDecoder(b)
	var stack []string
	var text strings.Builder
	leaf := false
	inBody := false
	sawEnvelope := false
	for n := 0; n < 10000; n++ {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			if sawEnvelope && (r.Response != "" || r.Fault) && len(stack) == 0 {
				break
			}
			return r, fmt.Errorf("upnp: SOAP reply: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= 32 {
				return r, errors.New("upnp: SOAP reply nested too deep")
			}
			name := t.Name.Local
			switch {
			case strings.EqualFold(name, "Envelope"):
				sawEnvelope = true
			case strings.EqualFold(name, "Body"):
				inBody = true
			case strings.EqualFold(name, "Fault"):
				r.Fault = true
			case inBody && r.Response == "" && strings.HasSuffix(name, "Response"):
				r.Response = name
			}
			stack = append(stack, name)
			text.Reset()
			leaf = true
		case xml.CharData:
			if leaf && text.Len() < 4096 {
				text.Write(t)
			}
		case xml.EndElement:
			if len(stack) == 0 {
				continue
			}
			name := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if leaf && inBody {
				if _, dup := r.Args[name]; !dup {
					r.Args[name] = strings.TrimSpace(text.String())
				}
			}
			if strings.EqualFold(name, "Body") {
				inBody = false
			}
			leaf = false
		}
	}
	if !sawEnvelope {
		return r, errors.New("upnp: SOAP reply without an Envelope")
	}
	if r.Response == "" && !r.Fault {
		return r, errors.New("upnp: SOAP reply with neither a response nor a fault")
	}
	return r, nil
}

// ---- client ----

type upnpClient struct {
	svc   wanService
	desc  *description
	local netip.Addr
	o     options

	sem chan struct{} // bounds concurrent SOAP requests: routers have small listen backlogs

	mu        sync.Mutex
	external  netip.Addr
	permanent bool        // the router accepts only permanent leases (725)
	noAddAny  atomic.Bool // AddAnyPortMapping failed with "invalid action"
}

// NewUPnP finds the UPnP Internet Gateway Device by SSDP (M-SEARCH to
// 239.255.255.250:1900 and to the gateway's port 1900, or to
// WithSSDPAddr), reads its device description and picks its WAN
// connection service: WANIPConnection:2, then :1, then
// WANPPPConnection:1, the first whose GetExternalIPAddress answers. It
// returns within ctx; without a deadline it gives discovery 3 s.
func NewUPnP(ctx context.Context, opts ...Option) (Client, error) {
	o := buildOptions(opts)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
	}
	targets := o.ssdpAddrs
	if len(targets) == 0 {
		targets = []netip.AddrPort{SSDPMulticast}
		if !o.gateway.IsValid() {
			o.gateway, _, _ = DefaultGateway()
		}
		if o.gateway.IsValid() {
			targets = append(targets, netip.AddrPortFrom(o.gateway, 1900))
		}
	}
	var found *upnpClient
	var lastErr error
	err := ssdpSearch(ctx, targets, func(r ssdpReply, from netip.AddrPort) bool {
		c, err := newUPnPFromLocation(ctx, r.Location, o)
		if err != nil {
			lastErr = err
			// The default gateway's own IGD has answered: no need to
			// wait for another.
			h, herr := hostAddr(r.Location)
			return herr == nil && o.gateway.IsValid() && h == o.gateway.Unmap()
		}
		found = c
		return true
	})
	if found != nil {
		return found, nil
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if err != nil {
		return nil, fmt.Errorf("upnp: %w: %v", ErrNoIGD, err)
	}
	return nil, fmt.Errorf("upnp: %w (searched %v)", ErrNoIGD, targets)
}

// NewUPnPFromURL uses the device description at location directly, with
// no SSDP search.
func NewUPnPFromURL(ctx context.Context, location string, opts ...Option) (Client, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("upnp: description URL %q is not an http URL", location)
	}
	return newUPnPFromLocation(ctx, u, buildOptions(opts))
}

func newUPnPFromLocation(ctx context.Context, loc *url.URL, o options) (*upnpClient, error) {
	body, err := httpGet(ctx, o.httpClient, loc.String(), 256<<10)
	if err != nil {
		return nil, fmt.Errorf("upnp: device description %s: %w", loc, err)
	}
	desc, err := parseDescription(body)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, loc)
	}
	svcs := desc.wanServices(loc)
	if len(svcs) == 0 {
		return nil, fmt.Errorf("upnp: %s (%s) has no WANIPConnection or WANPPPConnection service", loc, desc.Device.FriendlyName)
	}
	var firstErr error
	for _, s := range svcs {
		c := &upnpClient{svc: s, desc: desc, o: o, local: o.local, sem: make(chan struct{}, 2)}
		if !c.local.IsValid() {
			if a, err := hostAddr(s.Control); err == nil {
				if l, err := localAddrTo(a); err == nil {
					c.local = l
				}
			}
		}
		ext, err := c.ExternalAddr(ctx)
		if err == nil && ext.IsValid() {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("upnp: %s: no WAN connection service answered: %w", loc, firstErr)
}

func hostAddr(u *url.URL) (netip.Addr, error) {
	a, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap(), nil
}

func httpGet(ctx context.Context, hc *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	return b, nil
}

func (c *upnpClient) Protocol() Protocol { return UPnP }

// Detail names the device and service, for reports.
func (c *upnpClient) Detail() string {
	d := c.desc.Device
	name := strings.TrimSpace(d.FriendlyName)
	if m := strings.TrimSpace(d.ModelName); m != "" && m != name {
		name += " (" + m + ")"
	}
	return fmt.Sprintf("%s, %s at %s", name, strings.TrimPrefix(c.svc.Type, "urn:schemas-upnp-org:service:"), c.svc.Control)
}

type soapArg struct{ name, value string }

// call runs one SOAP action and returns the reply's arguments.
func (c *upnpClient) call(ctx context.Context, action string, args ...soapArg) (map[string]string, error) {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\r\n" +
		`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`)
	fmt.Fprintf(&b, `<u:%s xmlns:u="%s">`, action, c.svc.Type)
	for _, a := range args {
		b.WriteString("<" + a.name + ">")
		xml.EscapeText(&b, []byte(a.value))
		b.WriteString("</" + a.name + ">")
	}
	fmt.Fprintf(&b, `</u:%s></s:Body></s:Envelope>`+"\r\n", action)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.svc.Control.String(), strings.NewReader(b.String()))
	if err != nil {
		return nil, fmt.Errorf("upnp: %s: %w", action, err)
	}
	req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	req.Header["SOAPAction"] = []string{`"` + c.svc.Type + "#" + action + `"`}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("upnp: %s: %w", action, ctx.Err())
	}
	resp, err := c.o.httpClient.Do(req)
	defer func() { <-c.sem }()
	if err != nil {
		return nil, fmt.Errorf("upnp: %s: %w", action, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("upnp: %s: %w", action, err)
	}
	r, perr := parseSOAP(body)
	if perr == nil && r.Fault {
		ue := &UPnPError{Action: action, HTTPStatus: resp.StatusCode, Description: r.Args["errorDescription"]}
		ue.Code, _ = strconv.Atoi(r.Args["errorCode"])
		if ue.Description == "" && ue.Code == 0 {
			ue.Description = r.Args["faultstring"]
		}
		return nil, ue
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &UPnPError{Action: action, HTTPStatus: resp.StatusCode}
	}
	if perr != nil {
		return nil, fmt.Errorf("upnp: %s: %w", action, perr)
	}
	return r.Args, nil
}

func (c *upnpClient) ExternalAddr(ctx context.Context) (netip.Addr, error) {
	args, err := c.call(ctx, "GetExternalIPAddress")
	if err != nil {
		return netip.Addr{}, err
	}
	s := args["NewExternalIPAddress"]
	a, err := netip.ParseAddr(s)
	if err != nil || a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("upnp: GetExternalIPAddress: %w (%q): its WAN side is down, or it refuses to map", ErrNoExternal, s)
	}
	a = a.Unmap()
	c.mu.Lock()
	c.external = a
	c.mu.Unlock()
	return a, nil
}

func upnpProto(transport string) (string, string, error) {
	t, err := normTransport(transport)
	if err != nil {
		return "", "", err
	}
	return strings.ToUpper(t), t, nil
}

func (c *upnpClient) internalClient(internal netip.AddrPort) (netip.AddrPort, error) {
	a := internal.Addr()
	if !a.IsValid() || a.IsUnspecified() {
		a = c.local
	}
	if !a.IsValid() {
		return netip.AddrPort{}, errors.New("upnp: our LAN address is unknown: set one (WithLocalAddr)")
	}
	return netip.AddrPortFrom(a.Unmap(), internal.Port()), nil
}

func (c *upnpClient) Map(ctx context.Context, transport string, internal netip.AddrPort, wantExternal uint16, lifetime time.Duration) (Mapping, error) {
	proto, t, err := upnpProto(transport)
	if err != nil {
		return Mapping{}, err
	}
	in, err := c.internalClient(internal)
	if err != nil {
		return Mapping{}, err
	}
	if in.Port() == 0 {
		return Mapping{}, fmt.Errorf("upnp: map %s: internal port 0", t)
	}
	ext := wantExternal
	if ext == 0 {
		ext = in.Port()
	}
	c.mu.Lock()
	permanent := c.permanent
	c.mu.Unlock()
	lease := leaseSeconds(lifetime, DefaultLifetime, upnpMaxLease)
	if permanent {
		lease = 0
	}
	add := func(action string, port uint16, lease uint32) (uint16, error) {
		args, err := c.call(ctx, action,
			soapArg{"NewRemoteHost", ""},
			soapArg{"NewExternalPort", strconv.Itoa(int(port))},
			soapArg{"NewProtocol", proto},
			soapArg{"NewInternalPort", strconv.Itoa(int(in.Port()))},
			soapArg{"NewInternalClient", in.Addr().String()},
			soapArg{"NewEnabled", "1"},
			soapArg{"NewPortMappingDescription", c.o.description},
			soapArg{"NewLeaseDuration", strconv.Itoa(int(lease))})
		if err != nil {
			return 0, err
		}
		if action == "AddAnyPortMapping" {
			p, err := strconv.Atoi(args["NewReservedPort"])
			if err != nil || p <= 0 || p > 65535 {
				return 0, fmt.Errorf("upnp: AddAnyPortMapping: bad NewReservedPort %q", args["NewReservedPort"])
			}
			return uint16(p), nil
		}
		return port, nil
	}
	// try runs action, retrying with lease 0 once if only permanent
	// leases are supported (725).
	try := func(action string, port uint16) (uint16, error) {
		got, err := add(action, port, lease)
		if upnpCode(err) == UPnPOnlyPermanentLeases && lease != 0 {
			c.mu.Lock()
			c.permanent = true
			c.mu.Unlock()
			lease = 0
			got, err = add(action, port, lease)
		}
		return got, err
	}
	var granted uint16
	err = errors.New("no attempt")
	if c.svc.Version >= 2 && !c.noAddAny.Load() {
		granted, err = try("AddAnyPortMapping", ext)
		if errors.Is(err, ErrUnsupported) {
			c.noAddAny.Store(true)
		} else if err != nil && ctx.Err() == nil && upnpCode(err) == 0 {
			// Not a SOAP fault (an HTTP error): AddPortMapping may still work.
			c.noAddAny.Store(true)
		}
	}
	if err != nil && (c.svc.Version < 2 || c.noAddAny.Load()) {
		granted, err = try("AddPortMapping", ext)
		switch upnpCode(err) {
		case UPnPSamePortValuesRequired:
			if ext != in.Port() {
				granted, err = try("AddPortMapping", in.Port())
			}
		case UPnPConflict, UPnPConflictWithOther:
			// Someone else holds the port: try up to 3 others from the
			// dynamic range.
			for i := 0; i < 3 && err != nil && ctx.Err() == nil; i++ {
				granted, err = try("AddPortMapping", uint16(49152+rand.IntN(16384)))
				if c := upnpCode(err); c != UPnPConflict && c != UPnPConflictWithOther {
					break
				}
			}
		}
	}
	if err != nil {
		return Mapping{}, err
	}
	c.mu.Lock()
	extIP := c.external
	c.mu.Unlock()
	if !extIP.IsValid() {
		if extIP, err = c.ExternalAddr(ctx); err != nil {
			return Mapping{}, err
		}
	}
	m := Mapping{
		Protocol:  UPnP,
		Transport: t,
		Internal:  in,
		External:  netip.AddrPortFrom(extIP, granted),
		Lifetime:  time.Duration(lease) * time.Second,
	}
	if lease > 0 {
		m.Expires = c.o.now().Add(m.Lifetime)
	}
	return m, nil
}

func (c *upnpClient) Unmap(ctx context.Context, m Mapping) error {
	proto, _, err := upnpProto(m.Transport)
	if err != nil {
		return err
	}
	_, err = c.call(ctx, "DeletePortMapping",
		soapArg{"NewRemoteHost", ""},
		soapArg{"NewExternalPort", strconv.Itoa(int(m.External.Port()))},
		soapArg{"NewProtocol", proto})
	if upnpCode(err) == UPnPNoSuchEntry {
		return nil
	}
	return err
}

// Check asks for the external address and looks up every mapping with
// GetSpecificPortMappingEntry: one the gateway no longer has (714), or
// has for another internal client, is lost.
func (c *upnpClient) Check(ctx context.Context, ms []Mapping) (CheckResult, error) {
	ext, err := c.ExternalAddr(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	res := CheckResult{External: ext}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			lost, err := c.lost(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if lost {
				res.Lost = append(res.Lost, m)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil && len(res.Lost) == 0 {
		return res, firstErr
	}
	return res, nil
}

func (c *upnpClient) lost(ctx context.Context, m Mapping) (bool, error) {
	proto, _, err := upnpProto(m.Transport)
	if err != nil {
		return false, err
	}
	args, err := c.call(ctx, "GetSpecificPortMappingEntry",
		soapArg{"NewRemoteHost", ""},
		soapArg{"NewExternalPort", strconv.Itoa(int(m.External.Port()))},
		soapArg{"NewProtocol", proto})
	switch code := upnpCode(err); {
	case code == UPnPNoSuchEntry || code == 713: // 713 SpecifiedArrayIndexInvalid on some old routers
		return true, nil
	case err != nil:
		return false, err
	}
	port, _ := strconv.Atoi(args["NewInternalPort"])
	client, perr := netip.ParseAddr(args["NewInternalClient"])
	if port != int(m.Internal.Port()) || (perr == nil && client.Unmap() != m.Internal.Addr().Unmap()) {
		return true, nil
	}
	return false, nil
}
