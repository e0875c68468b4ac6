package portmap_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/sipedge/sipedge/portmap"
)

// How sipedge's start-up uses the package for external_address = "auto"
// (STUN runs beside it, in the edge): discover within 3 s, keep the SIP
// ports and a small RTP range mapped, per-call RTP mappings when the
// range is too big, everything removed on shutdown.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	best, found := portmap.Discover(ctx, portmap.DiscoverConfig{})
	cancel()
	for _, f := range found {
		slog.Info("gateway", "found", f.String(), "double_nat", f.PrivateWAN)
	}
	if best == nil {
		return // no port mapping: STUN or the configured address only
	}
	m := portmap.NewManager(best, portmap.ManagerConfig{
		OnExternalAddr: func(old, new netip.Addr) { fmt.Println("advertise", new) },
	})
	lan := netip.MustParseAddr("192.168.1.10")
	m.Add("udp", netip.AddrPortFrom(lan, 5060), 0)
	m.Add("tcp", netip.AddrPortFrom(lan, 5060), 0)
	perCall := errors.Is(m.AddRange("udp", lan, 10000, 20000, 64), portmap.ErrRangeTooBig)

	run, stop := context.WithCancel(context.Background())
	go m.Run(run)
	select { // start-up waits a bounded time for the first round
	case <-m.Ready():
	case <-time.After(3 * time.Second):
	}

	if perCall { // when a call needs RTP port 10002 (and 10003 for RTCP)
		rtp := netip.AddrPortFrom(lan, 10002)
		if mp, err := m.Map(context.Background(), "udp", rtp, 0); err == nil {
			fmt.Println("SDP gets", mp.External)
		}
		m.Remove("udp", rtp) // when the call ends
	}

	// On shutdown:
	stop()
	closeCtx, cancelClose := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelClose()
	m.Close(closeCtx)
}
