package location

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sipedge/sipedge/sipx"
)

// TestConcurrent hammers one Store from several goroutines (run it with
// -race), then checks the flow index and counters against the table, and
// that what was persisted is what was in memory.
func TestConcurrent(t *testing.T) {
	c := newClock()
	db := openDB(t, filepath.Join(t.TempDir(), "loc.db"))
	s, err := Open(db, Options{Now: c.Now, FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	flows := make([]sipx.Flow, 12)
	for i := range flows {
		if i%3 == 0 {
			flows[i] = tcpFlow(fmt.Sprintf("203.0.113.%d:40000", i), uint64(i))
		} else {
			flows[i] = udpFlow(fmt.Sprintf("203.0.113.%d:%d", i%4, 5060+i))
		}
	}
	const workers, ops, naors = 8, 1500, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range ops {
				aor := fmt.Sprintf("u%d@example.com", r.IntN(naors))
				switch op := r.IntN(100); {
				case op < 40:
					_, err := s.Update(aor, func(cur []Binding) ([]Binding, error) {
						if len(cur) > 3 {
							cur = cur[1:]
						}
						b := binding(fmt.Sprintf("sip:c%d", r.IntN(5)), flows[r.IntN(len(flows))],
							c.Now().Add(time.Duration(1+r.IntN(30))*time.Second))
						return append(cur, b), nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				case op < 45:
					s.Remove(aor)
				case op < 60:
					for _, b := range s.Lookup(aor) {
						if b.AOR != aor {
							t.Errorf("Lookup(%s) returned %s", aor, b.AOR)
						}
					}
				case op < 75:
					f := flows[r.IntN(len(flows))]
					for _, b := range s.FindByFlow(f) {
						if b.Flow != f {
							t.Errorf("FindByFlow(%v) returned %v", f, b.Flow)
						}
					}
				case op < 80:
					s.All(func(Binding) bool { return r.IntN(50) != 0 })
				case op < 85:
					s.Count()
				case op < 90:
					s.Expire()
				case op < 93:
					if err := s.Flush(); err != nil {
						t.Error(err)
					}
				default:
					c.Advance(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.checkConsistency(); err != nil {
		t.Fatal(err)
	}
	s.Expire()
	if err := s.checkConsistency(); err != nil {
		t.Fatal(err)
	}
	// Every flow's FindByFlow equals a scan of All.
	byFlow := map[sipx.Flow][]string{}
	var before []string
	s.All(func(b Binding) bool {
		byFlow[b.Flow] = append(byFlow[b.Flow], b.AOR+" "+b.ContactURI)
		before = append(before, dump(b))
		return true
	})
	for _, f := range flows {
		var got []string
		for _, b := range s.FindByFlow(f) {
			got = append(got, b.AOR+" "+b.ContactURI)
		}
		want := byFlow[f]
		sort.Strings(got)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("FindByFlow(%v) = %v, All says %v", f, got, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(db, Options{Now: c.Now, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var after []string
	s2.All(func(b Binding) bool { after = append(after, dump(b)); return true })
	sort.Strings(before)
	sort.Strings(after)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("persisted state differs from memory:\n%v\n%v", before, after)
	}
	if err := s2.checkConsistency(); err != nil {
		t.Error(err)
	}
}

func dump(b Binding) string {
	return fmt.Sprintf("%s|%s|%v|%d|%d", b.AOR, b.Contact, b.Flow, b.Expires.UnixNano(), b.Updated.UnixNano())
}
