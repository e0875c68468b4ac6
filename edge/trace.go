package edge

import (
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/calltrace"
	"github.com/sipedge/sipedge/proxy"
)

// callEnded is the proxy's CallEnded hook: the call's final media
// counts are kept with its SIP trace, so a recent call can still be shown
// with what flowed each way (`sipedge call show`, the dashboard).
func (e *Edge) callEnded(c proxy.Call) {
	if e.trace == nil {
		return
	}
	ac := e.adminCall(c)
	ac.Ended = time.Now()
	e.trace.Attach(c.CallID, ac)
}

// RecentCalls implements admin.Backend.
func (e *Edge) RecentCalls() []calltrace.Summary {
	if e.trace == nil {
		return nil
	}
	return e.trace.List()
}

// RecentCall implements admin.Backend: an ended call as it was at its
// end, with the state its SIP trace gives (ended, failed or cancelled).
func (e *Edge) RecentCall(id string) (admin.Call, bool) {
	if e.trace == nil {
		return admin.Call{}, false
	}
	v, ok := e.trace.Attached(id)
	if !ok {
		return admin.Call{}, false
	}
	c := v.(admin.Call)
	c.State = calltrace.StateEnded
	if t, ok := e.trace.Summary(id); ok && (t.State == calltrace.StateFailed || t.State == calltrace.StateCancelled) {
		c.State = t.State
	}
	return c, true
}

// CallTrace implements admin.Backend.
func (e *Edge) CallTrace(id string) (calltrace.Trace, bool) {
	if e.trace == nil {
		return calltrace.Trace{}, false
	}
	return e.trace.Get(id)
}
