package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// SSDPMulticast is the SSDP group and port (UPnP Device Architecture §1.3).
var SSDPMulticast = netip.MustParseAddrPort("239.255.255.250:1900")

// igdSearchTargets are the search targets of an IGD search. An IGD:2
// must also answer a search for IGD:1, but not every one does.
var igdSearchTargets = []string{
	"urn:schemas-upnp-org:device:InternetGatewayDevice:1",
	"urn:schemas-upnp-org:device:InternetGatewayDevice:2",
}

// buildMSearch writes an M-SEARCH request for st to host. MX 1 keeps
// devices answering within a second (UDA 1.1 §1.3.2; the minimum).
func buildMSearch(host netip.AddrPort, st string) []byte {
	return []byte("M-SEARCH * HTTP/1.1\r\n" +
		"HOST: " + host.String() + "\r\n" +
		"MAN: \"ssdp:discover\"\r\n" +
		"MX: 1\r\n" +
		"ST: " + st + "\r\n" +
		"USER-AGENT: Linux UPnP/1.1 sipedge/1\r\n" +
		"\r\n")
}

// ssdpReply is the part of an M-SEARCH answer we use.
type ssdpReply struct {
	Location *url.URL
	ST       string
	USN      string
	Server   string
}

// parseSSDPReply decodes an M-SEARCH answer: "HTTP/1.1 200 OK" and
// headers, names case-insensitive, values trimmed, lines ended by CRLF
// or a bare LF (some devices). LOCATION must be an http URL with a host.
func parseSSDPReply(b []byte) (ssdpReply, error) {
	var r ssdpReply
	s := string(b)
	line, rest, _ := strings.Cut(s, "\n")
	line = strings.TrimRight(line, "\r")
	proto, status, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(strings.ToUpper(proto), "HTTP/1.") {
		return r, fmt.Errorf("ssdp: not an HTTP response: %.40q", line)
	}
	code, _, _ := strings.Cut(strings.TrimSpace(status), " ")
	if code != "200" {
		return r, fmt.Errorf("ssdp: status %.20q", code)
	}
	var loc string
	for n := 0; rest != "" && n < 64; n++ {
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.ToUpper(strings.TrimSpace(name)) {
		case "LOCATION":
			loc = value
		case "ST":
			r.ST = value
		case "USN":
			r.USN = value
		case "SERVER":
			r.Server = value
		}
	}
	if loc == "" {
		return r, errors.New("ssdp: answer without LOCATION")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return r, fmt.Errorf("ssdp: LOCATION %.80q: %v", loc, err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return r, fmt.Errorf("ssdp: LOCATION %.80q is not an http URL", loc)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return r, fmt.Errorf("ssdp: LOCATION %.80q has a bad port", loc)
		}
	}
	r.Location = u
	return r, nil
}

// ssdpWindow is how long ssdpSearch waits for answers: devices answer
// within MX (1 s) of a request, and the last request goes out at 1 s.
const ssdpWindow = 2 * time.Second

// ssdpSearch sends M-SEARCH requests for the IGD search targets to each
// of targets, repeating them after 0.3 and 1 s, and calls onReply for
// each answer with a new LOCATION until onReply returns true, ctx ends or
// ssdpWindow has passed.
// The multicast TTL is the kernel's default of 1: requests never leave
// the link.
func ssdpSearch(ctx context.Context, targets []netip.AddrPort, onReply func(ssdpReply, netip.AddrPort) bool) error {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return fmt.Errorf("ssdp: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, ssdpWindow)
	defer cancel()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var sendErr error
	sent := 0
	send := func() {
		for _, t := range targets {
			for _, st := range igdSearchTargets {
				if _, err := conn.WriteToUDPAddrPort(buildMSearch(t, st), t); err != nil {
					sendErr = err
				} else {
					sent++
				}
			}
		}
	}
	resend := []time.Duration{300 * time.Millisecond, 700 * time.Millisecond}
	seen := map[string]bool{}
	buf := make([]byte, 2048)
	send()
	next := time.Now()
	for {
		var wait time.Duration
		if len(resend) > 0 {
			wait, resend = resend[0], resend[1:]
			next = next.Add(wait)
		} else {
			next = time.Now().Add(time.Hour)
		}
		deadline := next
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		conn.SetReadDeadline(deadline)
		if ctx.Err() != nil {
			break
		}
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				return fmt.Errorf("ssdp: %w", err)
			}
			r, err := parseSSDPReply(buf[:n])
			if err != nil || seen[r.Location.String()] {
				continue
			}
			seen[r.Location.String()] = true
			if onReply(r, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())) {
				return nil
			}
			if ctx.Err() != nil {
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		send()
	}
	if sent == 0 && sendErr != nil {
		return fmt.Errorf("ssdp: sending M-SEARCH: %w", sendErr)
	}
	return nil
}
