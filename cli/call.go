package cli

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/sipedge/sipedge/admin"
	"github.com/sipedge/sipedge/calltrace"
)

const callUsage = "sipedge call list|recent|show CALL-ID|trace CALL-ID [--raw]|hangup CALL-ID [--json]"

func callCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageErr(callUsage)
	}
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	var c common
	c.register(fs)
	raw := fs.Bool("raw", false, "trace: the messages in full after the ladder")
	rest, err := parse(fs, args[1:])
	if err != nil {
		return usageErr(callUsage)
	}
	verb := args[0]
	noID := verb == "list" || verb == "recent"
	if noID != (len(rest) == 0) || len(rest) > 1 {
		return usageErr(callUsage)
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		var calls []admin.Call
		if err := api.do("GET", "/api/v1/calls", nil, &calls); err != nil {
			return err
		}
		if c.jsonOut {
			return writeJSON(stdout, calls)
		}
		if len(calls) == 0 {
			fmt.Fprintln(stdout, "no calls")
			return nil
		}
		for i, call := range calls {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			writeCall(stdout, call, false)
		}
		return nil
	case "show":
		var call admin.Call
		if err := api.do("GET", "/api/v1/calls/"+url.PathEscape(rest[0]), nil, &call); err != nil {
			return err
		}
		if c.jsonOut {
			return writeJSON(stdout, call)
		}
		writeCall(stdout, call, true)
		return nil
	case "recent":
		var calls []calltrace.Summary
		if err := api.do("GET", "/api/v1/calls/recent", nil, &calls); err != nil {
			return err
		}
		if c.jsonOut {
			return writeJSON(stdout, calls)
		}
		return writeRecent(stdout, calls)
	case "trace":
		var t admin.CallTrace
		if err := api.do("GET", "/api/v1/calls/"+url.PathEscape(rest[0])+"/trace", nil, &t); err != nil {
			return err
		}
		if c.jsonOut {
			return writeJSON(stdout, t)
		}
		return writeTrace(stdout, t, *raw)
	case "hangup":
		if err := api.do("DELETE", "/api/v1/calls/"+url.PathEscape(rest[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "call %s ended\n", rest[0])
		return nil
	}
	return usageErr(callUsage)
}

// writeCall prints a call: a header line, then one line per stream and
// direction, then its alarms.
func writeCall(w io.Writer, c admin.Call, detail bool) {
	age := time.Since(c.Started).Truncate(time.Second)
	fmt.Fprintf(w, "%s  %s -> %s  %s %s\n", c.CallID, c.From, c.To, c.State, age)
	fmt.Fprintf(w, "  media: %s\n", c.MediaDecision)
	if detail {
		fmt.Fprintf(w, "  caller: %s nat=%v\n  callee: %s nat=%v %s\n", c.Caller.Flow, c.Caller.NAT, c.Callee.Flow, c.Callee.NAT, c.Callee.Name)
	}
	names := [2]string{"caller->callee", "callee->caller"}
	for _, s := range c.Streams {
		for i, l := range s.Legs {
			seen := "never"
			if !l.LastSeen.IsZero() {
				seen = time.Since(l.LastSeen).Truncate(time.Millisecond).String() + " ago"
			}
			fmt.Fprintf(w, "  %-5s %s: %d pkts %d bytes, loss %.1f%%, jitter %.1f ms, last %s",
				s.Media, names[i], l.Packets, l.Bytes, l.LossPercent, l.JitterMs, seen)
			if l.DroppedForeign > 0 {
				fmt.Fprintf(w, ", %d foreign dropped", l.DroppedForeign)
			}
			if l.Hold {
				fmt.Fprint(w, ", on hold")
			}
			if l.Kernel {
				fmt.Fprint(w, ", in kernel")
			}
			fmt.Fprintln(w)
			if detail {
				fmt.Fprintf(w, "        relay port %d, announced %s, sending to %s, latched=%v locked=%v rtcp-mux=%v, RTCP %d pkts (reports loss %.1f%%, jitter %.1f ms)\n",
					l.RelayPort, l.Announced, l.Target, l.Latched, l.Locked, l.RTCPMux, l.RTCPPackets, l.ReportedLossPercent, l.ReportedJitterMs)
			}
		}
	}
	for _, a := range c.Alarms {
		fmt.Fprintf(w, "  ALARM: %s\n", a)
	}
}

// writeRecent prints the recent calls, newest first.
func writeRecent(w io.Writer, calls []calltrace.Summary) error {
	if len(calls) == 0 {
		fmt.Fprintln(w, "no recent calls (admin.trace_calls = 0 turns the trace off)")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tCALL-ID\tFROM\tTO\tSTATE\tSTATUS\tDURATION\tMESSAGES")
	for _, s := range calls {
		dur := "-"
		if !s.Answered.IsZero() {
			end := s.Ended
			if end.IsZero() {
				end = time.Now()
			}
			dur = end.Sub(s.Answered).Truncate(time.Second).String()
		}
		status := "-"
		if s.Status != 0 {
			status = fmt.Sprint(s.Status)
		}
		msgs := fmt.Sprint(s.MessageCount)
		if s.Dropped > 0 {
			msgs += fmt.Sprintf(" (+%d not kept)", s.Dropped)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Started.Local().Format("15:04:05"), s.CallID, s.From, s.To, s.State, status, dur, msgs)
	}
	return tw.Flush()
}

// writeTrace prints a call's ladder and, with raw, every message.
func writeTrace(w io.Writer, t admin.CallTrace, raw bool) error {
	if err := calltrace.RenderText(w, t.Ladder, t.Trace); err != nil {
		return err
	}
	if t.Dropped > 0 {
		fmt.Fprintf(w, "\n%d later messages were not kept (the per-call bound)\n", t.Dropped)
	}
	if !raw {
		return nil
	}
	for _, m := range t.Messages {
		dir := "received from"
		if !m.In {
			dir = "sent to"
		}
		fmt.Fprintf(w, "\n#%d +%.1f ms %s %s %s (%s, %d bytes)\n%s", m.Seq, m.OffsetMS, dir, m.Transport, m.Remote, m.Local, m.Size, m.Text)
		if m.Truncated {
			fmt.Fprint(w, "\n[truncated]")
		}
		fmt.Fprintln(w)
	}
	return nil
}
