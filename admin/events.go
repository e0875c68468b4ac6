package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// maxStreams bounds the event streams open at once: each costs a
// snapshot of the calls every second.
const maxStreams = 16

// events serves GET /api/v1/events, a Server-Sent Events stream for the
// dashboard (and `curl -N`):
//
//	event: calls    the live calls (as GET /api/v1/calls), every second
//	event: status   the overview (as GET /api/v1/status), every 5 s
//	event: recent   the recent calls (as GET /api/v1/calls/recent), when
//	                that list changes
//
// Each kind is sent once at once, so a client has a full picture from the
// start. The browser's EventSource cannot send a bearer token, so the
// dashboard reads the stream with fetch.
type events struct {
	b    Backend
	open atomic.Int32
	// tick is the calls interval; 0 means 1 s (tests shorten it).
	tick time.Duration
}

func (ev *events) serve(w http.ResponseWriter, r *http.Request) {
	if ev.open.Add(1) > maxStreams {
		ev.open.Add(-1)
		writeJSON(w, 503, map[string]string{"error": "too many event streams open"})
		return
	}
	defer ev.open.Add(-1)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(200)
	tick := ev.tick
	if tick == 0 {
		tick = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var lastRecent []byte
	for n := 0; ; n++ {
		// The server's write timeout is for ordinary requests; a stream
		// gets a fresh deadline for each batch of events.
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err := send(w, "calls", nonNil(ev.b.Calls()))
		if err == nil && n%5 == 0 {
			err = send(w, "status", ev.b.Status())
		}
		if err == nil {
			rec, _ := json.Marshal(nonNil(ev.b.RecentCalls()))
			if !bytes.Equal(rec, lastRecent) {
				lastRecent = rec
				_, err = fmt.Fprintf(w, "event: recent\ndata: %s\n\n", rec)
			}
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// send writes one event; JSON has no raw newlines, so one data line.
func send(w http.ResponseWriter, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
	return err
}
