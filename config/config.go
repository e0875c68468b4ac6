// Package config holds sipedge's canonical configuration: the structs, their
// documented defaults, strict TOML decoding (unknown keys are errors with
// file:line) and validation. Every default lives in Default(); a zero field in
// a decoded file means "use the default" only where the field says so.
package config

import (
	"net/netip"
	"time"
)

// Config is the whole sipedge configuration.
type Config struct {
	// DataDir holds the bbolt store (registrations, users) and the admin
	// token. Default "./sipedge-data".
	DataDir string `toml:"data_dir"`
	// Domains are the SIP domains sipedge is authoritative for. Requests to
	// these domains are routed to registered users. Default ["sipedge.local"]
	// plus, always, every listen/advertise address (a phone may use the IP).
	Domains []string `toml:"domains"`
	// LocalNets are networks whose peers are never NAT-handled (exempt from
	// NAT detection and fixes). Default none.
	LocalNets []Prefix `toml:"local_nets"`
	// ExternalAddress is sipedge's public address when it runs behind a
	// NAT: "" (none: sipedge is reachable at its own addresses), an IP, a
	// host name (resolved, and again at each refresh), "stun:host[:port]"
	// (asked from the SIP UDP socket), or "auto", "upnp", "natpmp", "pcp"
	// (asked from the gateway). Peers outside local_nets and sipedge's own
	// subnets see it in Via, Record-Route, Contact and SDP (split
	// horizon); a listener's own advertise wins. Default "".
	ExternalAddress string `toml:"external_address"`
	// ExternalSTUN is a STUN server ("host" or "host:port") that
	// external_address = "auto" asks too, in parallel with the router:
	// the address when no router answers, and a check for a NAT beyond
	// the router. Default "" (none).
	ExternalSTUN string `toml:"external_stun"`
	// ExternalRefresh is how often a learned external address is asked
	// again (failures are retried sooner, with backoff). Default 5m.
	ExternalRefresh Duration `toml:"external_refresh"`
	// Log controls logging.
	Log Log `toml:"log"`
	// Listen lists SIP listeners. Default one UDP and one TCP listener on
	// 0.0.0.0:5060.
	Listen []Listen `toml:"listen"`
	// NAT is the default NAT policy; users and routes may override it.
	NAT NAT `toml:"nat"`
	// Registrar controls REGISTER handling.
	Registrar Registrar `toml:"registrar"`
	// Auth controls digest authentication.
	Auth Auth `toml:"auth"`
	// Security controls flood protection and bans.
	Security Security `toml:"security"`
	// Proxy controls forwarding.
	Proxy Proxy `toml:"proxy"`
	// Admin controls the HTTP admin API.
	Admin Admin `toml:"admin"`
	// Media controls the embedded RTP/RTCP relay.
	Media Media `toml:"media"`
	// Portmap controls the port mappings sipedge asks its NAT router for
	// (external_address = "auto", "pcp", "natpmp" or "upnp").
	Portmap Portmap `toml:"portmap"`
	// Keepalive controls the pings that hold NAT bindings open and
	// measure each peer's round-trip time ("qualify").
	Keepalive Keepalive `toml:"keepalive"`
	// STUN controls the stand-alone STUN server.
	STUN STUN `toml:"stun"`
	// Users are users defined in the config file, in addition to those in
	// the embedded user store (`sipedge user add`). A config user wins over a
	// stored user of the same name.
	Users []User `toml:"users"`
	// Routes are static routes to trunks/gateways, tried in order for
	// requests that are not for a registered local user.
	Routes []Route `toml:"routes"`

	// src records where each key was written when the config was decoded
	// from a file, so Validate and Warnings can say FILE:LINE. Nil for a
	// config built in code.
	src *source
}

// Log controls logging.
type Log struct {
	// Level is debug|info|warn|error. Default "info".
	Level string `toml:"level"`
	// Format is text|json. Default "text".
	Format string `toml:"format"`
}

// Listen is one SIP listener.
type Listen struct {
	// Transport is "udp" or "tcp".
	Transport string `toml:"transport"`
	// Address is ip:port to bind, e.g. "0.0.0.0:5060".
	Address string `toml:"address"`
	// Advertise is the host (IP or name, optionally :port) put in Via and
	// Record-Route for messages sent from this listener. Default: the bound
	// IP, or the first non-loopback address of the host when bound to
	// 0.0.0.0.
	Advertise string `toml:"advertise"`
}

// NAT holds NAT policy defaults.
type NAT struct {
	// Mode is the default per-user policy: "auto" (detect), "force" (treat
	// every peer as NATed) or "never" (never apply NAT fixes). Default "auto".
	Mode string `toml:"mode"`
}

// Registrar controls REGISTER handling.
type Registrar struct {
	// MinExpires: shorter requested expiries get 423 Interval Too Brief.
	// Default 60s.
	MinExpires Duration `toml:"min_expires"`
	// MaxExpires caps the granted expiry. Default 3600s.
	MaxExpires Duration `toml:"max_expires"`
	// DefaultExpires is used when the request has no expiry. Default 3600s.
	DefaultExpires Duration `toml:"default_expires"`
	// MaxContacts per AOR; the oldest binding is dropped beyond it.
	// Default 10.
	MaxContacts int `toml:"max_contacts"`
	// FlushInterval is how often registrations are written to disk.
	// Default 100ms.
	FlushInterval Duration `toml:"flush_interval"`
}

// Auth controls digest authentication.
type Auth struct {
	// Realm in challenges. Default: the first domain.
	Realm string `toml:"realm"`
	// Algorithms offered in challenges, in order: "SHA-256", "MD5".
	// Default ["SHA-256", "MD5"] (RFC 8760: one challenge per algorithm).
	Algorithms []string `toml:"algorithms"`
	// NonceTTL is how long a nonce is accepted; an older one gets
	// stale=true. Default 5m.
	NonceTTL Duration `toml:"nonce_ttl"`
	// Secret keys nonces. Default: random per data dir (stored there).
	Secret string `toml:"secret"`
}

// Security controls flood protection and bans.
type Security struct {
	// RateLimit is the sustained packets/s accepted per source IP before
	// parsing; 0 disables. Default 200.
	RateLimit float64 `toml:"rate_limit"`
	// RateBurst is the bucket size. Default 400.
	RateBurst int `toml:"rate_burst"`
	// BanFailures failed authentications within BanWindow ban the source.
	// Default 10; 0 disables banning.
	BanFailures int `toml:"ban_failures"`
	// BanWindow default 5m.
	BanWindow Duration `toml:"ban_window"`
	// BanTime default 15m.
	BanTime Duration `toml:"ban_time"`
	// ScannerUserAgents are substrings (case-insensitive) of User-Agent
	// values whose requests are dropped silently. Default: a list of known
	// scanners (friendly-scanner, sipvicious, sipcli, ...). Set to [] to
	// disable.
	ScannerUserAgents []string `toml:"scanner_user_agents"`
	// Trusted networks are exempt from rate limits and bans.
	Trusted []Prefix `toml:"trusted"`
}

// Proxy controls forwarding.
type Proxy struct {
	// MaxForwards set on requests without one. Default 70.
	MaxForwards int `toml:"max_forwards"`
	// InviteTimeout ends an unanswered INVITE branch (408/480). Default 120s.
	InviteTimeout Duration `toml:"invite_timeout"`
	// MaxCallDuration ends a call that has lasted this long (BYE to both
	// sides) and forgets it: the safety net for calls whose BYE was lost,
	// which would otherwise be kept, and pinged, forever. Default 12h.
	MaxCallDuration Duration `toml:"max_call_duration"`
	// UDPMaxSize: over this size a request to a non-NATed peer that allows
	// TCP is sent over TCP (RFC 3261 §18.1.1). Default 1300.
	UDPMaxSize int `toml:"udp_max_size"`
}

// Admin controls the HTTP admin API.
type Admin struct {
	// Listen address. Default "127.0.0.1:5080". Empty string in the file
	// keeps the default; "off" disables the API.
	Listen string `toml:"listen"`
	// Token for bearer auth. Default: generated and stored in
	// DataDir/admin.token.
	Token string `toml:"token"`
	// TLSCert and TLSKey are PEM files; with both set the API and the
	// dashboard are served over HTTPS only. Default: plain HTTP.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// TraceCalls is how many recent calls keep their SIP messages, for
	// the dashboard's call ladder and `sipedge call trace` (at most
	// 64 KiB of messages each, so 100 calls hold at most 6.4 MiB).
	// Default 100; 0 turns the trace off.
	TraceCalls int `toml:"trace_calls"`
}

// Portmap controls the mappings sipedge keeps on its NAT router.
type Portmap struct {
	// CheckInterval: how often the router is asked whether it still holds
	// the mappings (a rebooted router has forgotten them) and what its
	// external address is. Default 60s.
	CheckInterval Duration `toml:"check_interval"`
	// RTPRangeMax: the media port range is mapped as a whole when it has
	// at most this many ports; a larger one (the default 30000-39999) is
	// mapped per call, each leg's RTP and RTCP port while the call lasts.
	// Default 64.
	RTPRangeMax int `toml:"rtp_range_max"`
}

// Keepalive controls keepalives: for every flow a registration or a call
// uses (NATed flows only, unless All), sipedge sends a ping from the
// socket the phone uses, so the NAT keeps the binding open and calls to
// the phone get through; an OPTIONS ping also measures the round-trip time
// and tells whether the phone is reachable.
type Keepalive struct {
	// Interval between pings of one flow; "0s" turns keepalives off.
	// Users and routes may override it. Default 25s (under the 30 s UDP
	// timeout of many NATs).
	Interval Duration `toml:"interval"`
	// Method: "options" (SIP OPTIONS; measures RTT and reachability) or
	// "crlf" (a 4-byte ping that only keeps the NAT open). Default
	// "options".
	Method string `toml:"method"`
	// Timeout: a ping not answered within this is missed. Default 5s.
	Timeout Duration `toml:"timeout"`
	// Lagged: an answer slower than this shows the peer as LAGGED.
	// Default 1s.
	Lagged Duration `toml:"lagged"`
	// Misses in a row make a peer UNREACHABLE. Default 3.
	Misses int `toml:"misses"`
	// RemoveUnreachable drops the registrations of an UNREACHABLE flow,
	// so calls go to the user's other devices or fail at once instead of
	// ringing nothing. Default false.
	RemoveUnreachable bool `toml:"remove_unreachable"`
	// All pings every registered flow, not only NATed ones (to see every
	// phone's status and RTT). Default false.
	All bool `toml:"all"`
}

// STUN controls the stand-alone STUN server (RFC 8489 Binding over UDP
// and TCP, with RFC 5780 NAT behaviour discovery when a second IP address
// is given). The SIP UDP ports answer STUN Binding requests whatever this
// says (RFC 5626 keepalives).
type STUN struct {
	// Listen lists the ip:port addresses to serve, each over UDP and TCP;
	// an empty list turns the server off. Default ["0.0.0.0:3478"].
	Listen []string `toml:"listen"`
	// AlternateAddress is a second IP address of this host: setting it
	// turns on RFC 5780 mode, which needs exactly one listen address with
	// a concrete IP (the primary). Default "": plain mode.
	AlternateAddress string `toml:"alternate_address"`
	// AlternatePort is the second port of RFC 5780 mode. Default 0: the
	// primary port + 1.
	AlternatePort int `toml:"alternate_port"`
	// RateLimit is the sustained number of requests per second accepted
	// from one source (IPv4 address or IPv6 /64); 0 disables. Default 20.
	RateLimit float64 `toml:"rate_limit"`
	// RateBurst is the bucket size. Default 40.
	RateBurst int `toml:"rate_burst"`
	// Software sends SOFTWARE "sipedge" in responses (when it fits under
	// the amplification bound). Default true.
	Software bool `toml:"software"`
}

// Media controls the embedded RTP/RTCP relay that anchors calls' audio
// and video.
type Media struct {
	// Mode is the default media policy; users and routes may override it:
	// "always" relays every call, "nat" relays calls with a NATed leg,
	// "never" leaves SDP untouched (phones send media to each other, which
	// fails across NAT: the classic one-way audio). Default "nat".
	Mode string `toml:"mode"`
	// Ports is the UDP port range for relay sockets, "min-max"; each
	// stream leg takes an even RTP port and the next odd one for RTCP.
	// Default "30000-39999".
	Ports string `toml:"ports"`
	// Address is the IP the relay binds to. Default: the IP of the SIP
	// listener the call arrived on (the wildcard when that is 0.0.0.0).
	Address string `toml:"address"`
	// Advertise is the IP put in rewritten SDP. Default: the SIP
	// listener's advertise address when it is an IP, else the relay's
	// bound address, else the local address that routes to the peer.
	Advertise string `toml:"advertise"`
	// Timeout: an answered call with no media in any direction for this
	// long is ended (BYE to both sides). Default 60s.
	Timeout Duration `toml:"timeout"`
	// HoldTimeout replaces Timeout while a side has put the call on hold.
	// Default 1h.
	HoldTimeout Duration `toml:"hold_timeout"`
	// Learning is the window after each offer/answer in which the relay
	// may latch to a new source address of a NATed phone. Default 3s.
	Learning Duration `toml:"learning"`
	// Probation is the number of consecutive, sequence-consistent packets
	// a new source must send before it is latched. Default 4.
	Probation int `toml:"probation"`
	// Kernel is the in-kernel fast path (eBPF on tc ingress, Linux 6.6+,
	// root): once a leg is locked its RTP is forwarded by the kernel.
	// "off" (default), "auto" (use it when the kernel allows, else warn
	// and stay in user space) or "on" (refuse to start without it).
	Kernel string `toml:"kernel"`
	// KernelInterfaces are the interfaces the fast path is attached to.
	// Default: every loopback or Ethernet-like interface that is up at start.
	KernelInterfaces []string `toml:"kernel_interfaces"`
}

// User is a SIP user defined in the config.
type User struct {
	Name string `toml:"name"`
	// Password in clear, or HA1 values for the realm. One of Password or
	// HA1MD5/HA1SHA256 is required.
	Password  string `toml:"password"`
	HA1MD5    string `toml:"ha1_md5"`
	HA1SHA256 string `toml:"ha1_sha256"`
	// NAT overrides NAT.Mode for this user: auto|force|never.
	NAT string `toml:"nat"`
	// Media overrides media.mode for calls of this user:
	// always|nat|never.
	Media string `toml:"media"`
	// Keepalive overrides keepalive.interval for this user's flows; "0s"
	// turns keepalives off for them.
	Keepalive *Duration `toml:"keepalive"`
}

// Route is a static route to a trunk or gateway.
type Route struct {
	// Name for logs and the admin view.
	Name string `toml:"name"`
	// User is a regular expression matched against the Request-URI user
	// part; empty matches any.
	User string `toml:"user"`
	// Domain is matched against the Request-URI host; empty matches any.
	Domain string `toml:"domain"`
	// To is the next hop SIP URI, e.g. "sip:198.51.100.20:5060;transport=udp".
	To string `toml:"to"`
	// NAT policy for this trunk: auto|force|never. Default "never".
	NAT string `toml:"nat"`
	// Media policy for calls over this trunk: always|nat|never. Default
	// media.mode.
	Media string `toml:"media"`
	// TCP allows falling back to TCP for large messages. Default false.
	TCP bool `toml:"tcp"`
	// Trusted: requests arriving from To's address are accepted without
	// digest auth (a trunk that does not authenticate). Default false.
	Trusted bool `toml:"trusted"`
	// Keepalive pings the trunk (SIP OPTIONS over UDP) at this interval
	// and shows its status and RTT with the peers. Default "0s": off.
	Keepalive Duration `toml:"keepalive"`
}

// Duration is a time.Duration that decodes from TOML strings like "30s"
// and from integers meaning seconds.
type Duration struct{ time.Duration }

// Prefix is a netip.Prefix that decodes from "10.0.0.0/8" or a single IP.
type Prefix struct{ netip.Prefix }
