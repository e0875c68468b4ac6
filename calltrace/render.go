package calltrace

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// RenderText writes l, the ladder of t, as plain ASCII for a terminal: a
// title, a header row with the column labels and one with their
// addresses, then a line per arrow with its offset in milliseconds, and
// the arrow's fixes indented under it. A '#' on an arrow marks where the
// message crosses a NAT. The output depends only on l and t.
func RenderText(w io.Writer, l Ladder, t Trace) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "call %s: %s -> %s, %s", clean(t.CallID), clean(t.From), clean(t.To), clean(t.State))
	if t.Status != 0 {
		fmt.Fprintf(&b, ", status %d", t.Status)
	}
	b.WriteString("\n\n")

	// Every column is as wide as the widest text that goes in or between
	// columns; the offsets go in a margin on the left.
	width := 14
	for _, c := range l.Columns {
		width = max(width, len(clip(c.Label))+2, len(clip(c.Addr))+2)
	}
	for _, a := range l.Arrows {
		width = max(width, len(clip(a.Label))+6)
	}
	margin := len("ms")
	times := make([]string, len(l.Arrows))
	for i, a := range l.Arrows {
		times[i] = strconv.FormatFloat(a.OffsetMS, 'f', 1, 64)
		margin = max(margin, len(times[i]))
	}
	ncol := len(l.Columns)
	valid := func(c int) bool { return c >= 0 && c < ncol }
	center := func(c int) int { return margin + 1 + c*width + width/2 }
	row := func() []byte {
		r := bytes.Repeat([]byte(" "), margin+1+ncol*width)
		for c := range ncol {
			r[center(c)] = '|'
		}
		return r
	}
	put := func(r []byte, at int, s string) {
		for i := range len(s) {
			if at+i >= 0 && at+i < len(r) {
				r[at+i] = s[i]
			}
		}
	}
	line := func(r []byte, suffix string) {
		b.Write(bytes.TrimRight(r, " "))
		b.WriteString(suffix)
		b.WriteByte('\n')
	}

	labels, addrs := bytes.Repeat([]byte(" "), len(row())), bytes.Repeat([]byte(" "), len(row()))
	for c, col := range l.Columns {
		put(labels, center(c)-len(clip(col.Label))/2, clip(col.Label))
		put(addrs, center(c)-len(clip(col.Addr))/2, clip(col.Addr))
	}
	line(labels, "")
	line(addrs, "")
	axis := row()
	put(axis, margin-len("ms"), "ms")
	line(axis, "")

	for i, a := range l.Arrows {
		r := row()
		put(r, margin-len(times[i]), times[i])
		label := clip(a.Label)
		if valid(a.From) && valid(a.To) && a.From != a.To {
			lo, hi := center(min(a.From, a.To)), center(max(a.From, a.To))
			for x := lo + 1; x < hi; x++ {
				r[x] = '-'
			}
			// The label goes on the part of the arrow next to the sender,
			// up to the NAT mark if there is one.
			from, to := lo+1, hi-1
			if a.From < a.To {
				r[hi-1] = '>'
			} else {
				r[lo+1] = '<'
			}
			if valid(a.Through) && center(a.Through) > lo && center(a.Through) < hi {
				x := center(a.Through)
				r[x] = '#'
				if a.From < a.To {
					to = x - 1
				} else {
					from = x + 1
				}
			}
			put(r, from+1+(to-from-1-len(label))/2, label)
		} else {
			put(r, margin+1, label)
		}
		suffix := ""
		if a.Retransmission {
			suffix = "  (retransmission)"
		}
		line(r, suffix)
		for _, f := range a.Fixes {
			text := clean(f.Text)
			if f.Kind == FixWarning {
				text = "warning: " + text
			}
			fmt.Fprintf(&b, "%s  * %s\n", strings.Repeat(" ", margin+1), text)
		}
	}
	if slices.ContainsFunc(l.Columns, func(c Column) bool { return c.Kind == KindNAT }) {
		b.WriteString("\n# marks where a message crosses a NAT.\n")
	}
	switch {
	case t.Dropped == 1:
		b.WriteString("1 more message was not stored: the trace was full.\n")
	case t.Dropped > 1:
		fmt.Fprintf(&b, "%d more messages were not stored: the trace was full.\n", t.Dropped)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// clean makes s printable ASCII.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// clip cleans s and shortens it to fit in a column.
func clip(s string) string {
	const most = 48
	s = clean(s)
	if len(s) > most {
		s = s[:most-3] + "..."
	}
	return s
}
