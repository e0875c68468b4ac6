package location

import (
	"strings"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// Memory layout of stored bindings (measured by BenchmarkStore100k).
//
// A stored binding never references the caller's strings: they may be
// slices of a whole received SIP message, which would then stay alive as
// long as the registration. compact copies a binding's own strings into
// one allocation (its "arena") and shares what repeats:
//   - User is sliced from the AOR key when the AOR starts with "User@";
//   - ContactURI and Instance are sliced from Contact when they occur in it
//     (they usually do: the URI is inside <…>, +sip.instance is a Contact
//     parameter);
//   - Transport, UserAgent and NATReasons take few distinct values and are
//     interned per shard (bounded, see maxInterned).

// maxInterned bounds each shard's intern table so hostile User-Agent
// strings cannot grow it without limit; past it, values go to the arena.
const maxInterned = 256

// interner deduplicates low-cardinality strings and string lists. It is
// guarded by its shard's lock.
type interner struct {
	strs  map[string]string
	lists map[string][]string // key: elements joined by "\x00"
}

func (in *interner) str(s string) (string, bool) {
	if v, ok := in.strs[s]; ok {
		return v, true
	}
	if len(in.strs) >= maxInterned || len(s) > 256 {
		return "", false
	}
	if in.strs == nil {
		in.strs = make(map[string]string)
	}
	s = strings.Clone(s)
	in.strs[s] = s
	return s, true
}

func (in *interner) list(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	var buf [128]byte
	key := buf[:0]
	for i, s := range l {
		if i > 0 {
			key = append(key, 0)
		}
		key = append(key, s...)
	}
	if v, ok := in.lists[string(key)]; ok {
		return v
	}
	if len(in.lists) >= maxInterned || len(key) > 512 {
		return nil
	}
	if in.lists == nil {
		in.lists = make(map[string][]string)
	}
	v := make([]string, len(l))
	for i, s := range l {
		if v[i], _ = in.str(s); v[i] == "" && s != "" {
			v[i] = strings.Clone(s)
		}
	}
	in.lists[string(key)] = v
	return v
}

// internTransport returns the sipx constant for common transports, so
// flows decoded from disk or parsed from Via do not each carry a copy.
func internTransport(t string) (string, bool) {
	switch t {
	case sipx.UDP:
		return sipx.UDP, true
	case sipx.TCP:
		return sipx.TCP, true
	case "tls":
		return "tls", true
	case "ws":
		return "ws", true
	case "wss":
		return "wss", true
	}
	return t, t == ""
}

// compact returns b ready to be stored under aor: AOR set, zero times set
// to now, strings copied into one arena or interned, slices fresh.
func (sh *shard) compact(b Binding, aor string, now time.Time) Binding {
	b.AOR = aor
	if b.Registered.IsZero() {
		b.Registered = now
	}
	if b.Updated.IsZero() {
		b.Updated = now
	}

	// Fields that may go to the arena, and where each one ends up.
	type field struct {
		p      *string
		inside bool // taken from Contact, not appended
		off    int
	}
	var fields [16]field
	nf := 0
	total := len(b.Contact)
	add := func(p *string, fromContact bool) {
		if *p == "" {
			return
		}
		f := field{p: p}
		if fromContact {
			if i := strings.Index(b.Contact, *p); i >= 0 {
				f.inside, f.off = true, i
			}
		}
		if !f.inside {
			f.off = total
			total += len(*p)
		}
		fields[nf] = f
		nf++
	}

	if t, ok := internTransport(b.Flow.Transport); ok {
		b.Flow.Transport = t
	} else if t, ok := sh.intern.str(t); ok {
		b.Flow.Transport = t
	} else {
		add(&b.Flow.Transport, false)
	}
	if u, ok := sh.intern.str(b.UserAgent); ok {
		b.UserAgent = u
	} else {
		add(&b.UserAgent, false)
	}
	if len(b.User) < len(aor) && aor[len(b.User)] == '@' && strings.HasPrefix(aor, b.User) {
		b.User = aor[:len(b.User)]
	} else {
		add(&b.User, false)
	}
	add(&b.ContactURI, true)
	add(&b.Instance, true)
	add(&b.CallID, false)

	reasons := b.NATReasons
	b.NATReasons = sh.intern.list(reasons)
	if b.NATReasons == nil && len(reasons) > 0 {
		b.NATReasons = append([]string(nil), reasons...)
		for i := range b.NATReasons {
			if nf == len(fields) {
				b.NATReasons[i] = strings.Clone(b.NATReasons[i])
			} else {
				add(&b.NATReasons[i], false)
			}
		}
	}
	if len(b.Path) > 0 {
		b.Path = append([]string(nil), b.Path...)
		for i := range b.Path {
			if nf == len(fields) {
				b.Path[i] = strings.Clone(b.Path[i])
			} else {
				add(&b.Path[i], false)
			}
		}
	}
	if total == 0 {
		return b
	}

	var sb strings.Builder
	sb.Grow(total)
	sb.WriteString(b.Contact)
	for _, f := range fields[:nf] {
		if !f.inside {
			sb.WriteString(*f.p)
		}
	}
	arena := sb.String()
	b.Contact = arena[:len(b.Contact)]
	for _, f := range fields[:nf] {
		*f.p = arena[f.off : f.off+len(*f.p)]
	}
	return b
}
