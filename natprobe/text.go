package natprobe

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteText writes the report for people: aligned key/value lines in
// RFC 4787 and RFC 3489 terms, the advice, then every test.
func WriteText(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	kv := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }

	srv := r.Server.Address
	if r.Server.Name != "" && r.Server.Name != r.Server.Address {
		srv = r.Server.Name + " (" + r.Server.Address + ")"
	}
	if r.Server.Software != "" {
		srv += ", software " + strconv.Quote(r.Server.Software)
	}
	kv("STUN server", srv)
	switch {
	case r.PublicAddress == "":
		kv("RFC 5780 support", "unknown (no answer)")
	case r.Server.RFC5780:
		kv("RFC 5780 support", "yes, other address "+r.Server.OtherAddress)
	default:
		kv("RFC 5780 support", "no: only the public address, rewriting and hairpinning can be tested")
	}
	kv("local address", r.LocalAddress)
	switch {
	case r.PublicAddress == "":
		kv("public address", "unknown")
	case r.NATPresent:
		kv("public address", r.PublicAddress+" (NAT present)")
	default:
		kv("public address", r.PublicAddress+" (no NAT: same as the local address)")
	}
	kv("mapping (RFC 4787)", string(r.Mapping))
	kv("filtering (RFC 4787)", string(r.Filtering))
	kv("RFC 3489 name", r.RFC3489Name)
	switch r.Rewriting.Detected {
	case TriYes:
		kv("address rewriting", "DETECTED: "+r.Rewriting.Evidence)
	case TriNo:
		kv("address rewriting", "none seen ("+r.Rewriting.Evidence+"; an ALG that touches only SIP messages would not show here)")
	default:
		kv("address rewriting", "unknown: "+orDash(r.Rewriting.Evidence))
	}
	switch {
	case r.Hairpinning == TriYes:
		kv("hairpinning", "yes (arrived from "+r.HairpinSource+")")
	case r.Hairpinning == TriNo:
		kv("hairpinning", "no")
	case r.PublicAddress != "" && !r.NATPresent:
		kv("hairpinning", "not applicable (no NAT)")
	default:
		kv("hairpinning", "unknown")
	}
	kv("binding lifetime", lifetimeText(r.BindingLifetime))
	if r.Error != "" {
		kv("error", r.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	section := func(title string, lines []string) {
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, l := range lines {
			fmt.Fprintf(w, "  - %s\n", l)
		}
	}
	section("advice", r.Advice)
	section("server notes", r.Server.Notes)
	if l := r.BindingLifetime; l != nil && l.Note != "" && l.Status != LifetimeUnknown {
		section("lifetime notes", []string{r.BindingLifetime.Note})
	}

	if len(r.Tests) > 0 {
		fmt.Fprintf(w, "\ntests:\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TEST\tFROM\tTO\tREQUEST\tRESULT\tANSWER FROM\tMAPPED\tRTT")
		for _, t := range r.Tests {
			rtt := "-"
			if t.RTTMs > 0 {
				rtt = strconv.FormatFloat(t.RTTMs, 'f', 1, 64) + " ms"
			}
			out := t.Outcome
			if t.Note != "" {
				out += " (" + t.Note + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, orDash(t.From), orDash(t.To), orDash(t.Request),
				out, orDash(t.ResponseFrom), orDash(t.Mapped), rtt)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nprobe took %s s\n", strconv.FormatFloat(r.DurationS, 'f', 1, 64))
	return err
}

func lifetimeText(l *Lifetime) string {
	if l == nil {
		return "not measured (use --lifetime)"
	}
	switch l.Status {
	case LifetimeMeasured:
		if l.LowerS <= 0 {
			return "under " + secs(l.UpperS) + " s (a binding idle " + secs(l.UpperS) + " s was gone)"
		}
		return "between " + secs(l.LowerS) + " and " + secs(l.UpperS) + " s (a binding idle " + secs(l.LowerS) + " s survived, one idle " + secs(l.UpperS) + " s was gone)"
	case LifetimeLongerThan:
		return "more than " + secs(l.LowerS) + " s (every binding survived; longest idle time tested " + secs(l.LowerS) + " s)"
	case LifetimeUnsupported:
		return "not measurable: the server does not support RESPONSE-PORT"
	}
	s := "unknown"
	if l.Note != "" {
		s += ": " + l.Note
	}
	return strings.TrimSpace(s)
}
