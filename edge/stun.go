package edge

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/sipedge/sipedge/stun"
)

// stunSoftware is the SOFTWARE value of the STUN server's responses.
const stunSoftware = "sipedge"

// startSTUN starts the stand-alone STUN server unless stun.listen is
// empty. The config has been validated: addresses parse, and RFC 5780
// mode has one concrete primary address.
func (e *Edge) startSTUN() error {
	c := e.cfg.STUN
	if len(c.Listen) == 0 {
		return nil
	}
	sc := stun.ServerConfig{RateLimit: c.RateLimit, RateBurst: c.RateBurst, Logger: e.log}
	for _, l := range c.Listen {
		ap, err := netip.ParseAddrPort(l)
		if err != nil {
			return fmt.Errorf("edge: stun.listen %q: %w", l, err)
		}
		sc.Listen = append(sc.Listen, ap)
	}
	if c.AlternateAddress != "" {
		ip, err := netip.ParseAddr(c.AlternateAddress)
		if err != nil {
			return fmt.Errorf("edge: stun.alternate_address %q: %w", c.AlternateAddress, err)
		}
		sc.AlternateIP = ip
		sc.AlternatePort = uint16(e.cfg.STUNAlternatePort())
	}
	if c.Software {
		sc.Software = stunSoftware
	}
	srv, err := stun.NewServer(sc)
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	e.stun = srv
	e.closers = append(e.closers, func() { _ = srv.Close() })
	return nil
}

// STUNListeners returns "stun-udp address" and "stun-tcp address" for
// each socket of the STUN server (none when it is off).
func (e *Edge) STUNListeners() []string {
	if e.stun == nil {
		return nil
	}
	var out []string
	for _, l := range e.stun.Listeners() {
		out = append(out, "stun-"+l.String())
	}
	return out
}

// STUNAddr returns the bound address of the STUN server's first socket
// of transport ("udp" or "tcp"); invalid when the server is off.
func (e *Edge) STUNAddr(transport string) netip.AddrPort {
	if e.stun == nil {
		return netip.AddrPort{}
	}
	for _, l := range e.stun.Listeners() {
		if l.Transport == transport {
			return l.Addr
		}
	}
	return netip.AddrPort{}
}

// stunStats returns the STUN server's counters (zero when it is off, so
// /metrics always has the same series).
func (e *Edge) stunStats() stun.ServerStats {
	if e.stun == nil {
		return stun.ServerStats{}
	}
	return e.stun.Stats()
}

// stunCounters adds the STUN server's main counters to the status
// counters; /metrics shows them as sipedge_stun_<name>_total.
func stunCounters(c map[string]uint64, st stun.ServerStats) {
	c["stun_requests"] = st.Requests
	c["stun_answered"] = st.Answered
	c["stun_error_responses"] = st.ErrorResponses
	c["stun_ignored"] = st.Ignored
	c["stun_rate_limited"] = st.RateLimited
	c["stun_tcp_connections"] = st.TCPAccepted
}

// stunMetrics writes the STUN server's errors by kind and its gauges.
func stunMetrics(w io.Writer, st stun.ServerStats) {
	fmt.Fprintf(w, "# TYPE sipedge_stun_errors_total counter\n")
	for _, k := range []struct {
		kind string
		n    uint64
	}{
		{"read", st.ReadErrors}, {"write", st.WriteErrors}, {"accept", st.AcceptErrors},
		{"tcp_refused", st.TCPRefused}, {"tcp_not_stun", st.TCPNotSTUN},
		{"tcp_too_large", st.TCPTooLarge}, {"tcp_idle", st.TCPIdle},
	} {
		fmt.Fprintf(w, "sipedge_stun_errors_total{kind=%q} %d\n", k.kind, k.n)
	}
	fmt.Fprintf(w, "# TYPE sipedge_stun_tcp_connections_open gauge\nsipedge_stun_tcp_connections_open %d\n", st.TCPOpen)
	fmt.Fprintf(w, "# TYPE sipedge_stun_rate_limit_sources gauge\nsipedge_stun_rate_limit_sources %d\n", st.Sources)
	fmt.Fprintf(w, "# TYPE sipedge_stun_rate_limit_evicted_total counter\nsipedge_stun_rate_limit_evicted_total %d\n", st.Evicted)
}
