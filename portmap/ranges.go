package portmap

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// RangeResult is what MapRange did.
type RangeResult struct {
	Mapped []Mapping        // sorted by internal port
	Failed map[uint16]error // by internal port
	// NotTried are the ports past Max, or left when the gateway ran out
	// of resources or ctx ended.
	NotTried []uint16
}

// RangeOptions bound MapRange.
type RangeOptions struct {
	Max      int // most mappings to make (default 64)
	Parallel int // requests at once (default 8)
}

// MapRange maps each internal port first..last of addr to the same
// external port, Parallel requests at a time, at most Max of them: a
// gateway maps single ports, one request each, and many cap how many a
// client may hold (miniupnpd has no cap by default; home routers often
// 32 to 128). It stops asking when the gateway says it is out of
// resources. A caller whose RTP range is bigger than Max maps per call
// instead (see Manager.AddRange and Manager.Map).
func MapRange(ctx context.Context, c Client, transport string, addr netip.Addr, first, last uint16, lifetime time.Duration, o RangeOptions) RangeResult {
	if o.Max <= 0 {
		o.Max = 64
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	res := RangeResult{Failed: map[uint16]error{}}
	if first == 0 || last < first {
		return res
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	tried := map[uint16]bool{}
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for p := int(first); p <= int(last) && p-int(first) < o.Max; p++ {
		port := uint16(p)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		mu.Lock()
		tried[port] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			m, err := c.Map(ctx, transport, netip.AddrPortFrom(addr, port), port, lifetime)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed[port] = err
				if outOfResources(err) {
					cancel()
				}
				return
			}
			res.Mapped = append(res.Mapped, m)
		}()
	}
	wg.Wait()
	for p := int(first); p <= int(last); p++ {
		if !tried[uint16(p)] {
			res.NotTried = append(res.NotTried, uint16(p))
		}
	}
	slices.SortFunc(res.Mapped, func(a, b Mapping) int { return int(a.Internal.Port()) - int(b.Internal.Port()) })
	return res
}

// outOfResources reports a gateway refusing more mappings.
func outOfResources(err error) bool {
	var pe *PCPError
	var ne *NATPMPError
	var ue *UPnPError
	switch {
	case errors.As(err, &pe):
		return pe.Code == PCPNoResources || pe.Code == PCPUserExQuota
	case errors.As(err, &ne):
		return ne.Code == PMPOutOfResources
	case errors.As(err, &ue):
		return ue.Code == UPnPNoPortMapsAvailable
	}
	return false
}
