package location

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sipedge/sipedge/sipx"
)

func openDB(t testing.TB, path string) *bbolt.DB {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openStore(t testing.TB, db *bbolt.DB, c *clock) *Store {
	t.Helper()
	s, err := Open(db, Options{Now: c.Now, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storedKeys lists the AORs present in the bucket.
func storedKeys(t *testing.T, db *bbolt.DB) []string {
	t.Helper()
	var keys []string
	err := db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketName).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func fullBinding(now time.Time) Binding {
	return Binding{
		User:       "alice",
		Contact:    `"Alice" <sip:alice@[fd00::20]:5060;ob>;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=2`,
		ContactURI: "sip:alice@[fd00::20]:5060;ob",
		Flow: sipx.Flow{Transport: sipx.TCP, Local: netip.MustParseAddrPort("[2001:db8::10]:5060"),
			Remote: netip.MustParseAddrPort("[2001:db8::9]:49152"), ConnID: 1<<40 + 3},
		Expires:    now.Add(time.Hour).Add(123456789),
		Registered: now.Add(-time.Hour),
		Updated:    now,
		CallID:     "a84b4c76e66710@pc33.atlanta.example.com",
		CSeq:       314159,
		UserAgent:  "Softphone 9.1",
		NAT:        true,
		NATReasons: []string{"via-address!=source", "private-contact"},
		Q:          0.7,
		Instance:   "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>",
		RegID:      2,
		Path:       []string{"<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"},
	}
}

func TestPersistenceRoundTrip(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "loc.db")
	db := openDB(t, path)
	s := openStore(t, db, c)
	now := c.Now()

	full := fullBinding(now)
	short := binding("sip:bob@10.0.0.2", udpFlow("203.0.113.5:1024"), now.Add(30*time.Second))
	mustUpdate(t, s, "alice@example.com", full)
	mustUpdate(t, s, "bob@example.com", short)
	mustUpdate(t, s, "carol@example.com", binding("sip:carol@10.0.0.3", udpFlow("203.0.113.6:1024"), now.Add(time.Hour)),
		binding("sip:carol@10.0.0.4", udpFlow("203.0.113.6:1025"), now.Add(10*time.Second)))
	mustUpdate(t, s, "gone@example.com", binding("sip:gone", udpFlow("203.0.113.7:1"), now.Add(time.Hour)))
	s.Remove("gone@example.com") // never reaches disk as a live record
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := storedKeys(t, db); !reflect.DeepEqual(got, []string{"alice@example.com", "bob@example.com", "carol@example.com"}) {
		t.Errorf("stored keys = %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	c.Advance(time.Minute) // bob and one of carol's contacts expire while we are down
	db = openDB(t, path)
	s = openStore(t, db, c)
	defer s.Close()

	got := s.Lookup("alice@example.com")
	want := full
	want.AOR = "alice@example.com"
	if len(got) != 1 || !equalBindings(got, []Binding{want}) {
		t.Fatalf("alice after reopen:\n%+v\nwant\n%+v", got, want)
	}
	if got[0].Flow != full.Flow {
		t.Errorf("flow = %v, want %v", got[0].Flow, full.Flow)
	}
	if l := s.Lookup("bob@example.com"); l != nil {
		t.Errorf("expired bob came back: %v", l)
	}
	if l := s.Lookup("carol@example.com"); len(l) != 1 || l[0].ContactURI != "sip:carol@10.0.0.3" {
		t.Errorf("carol = %v", contacts(l))
	}
	if a, b := s.Count(); a != 2 || b != 2 {
		t.Errorf("Count = %d, %d; want 2, 2", a, b)
	}
	if f := s.FindByFlow(full.Flow); len(f) != 1 || f[0].AOR != "alice@example.com" {
		t.Errorf("FindByFlow after reload = %v", f)
	}
	if err := s.checkConsistency(); err != nil {
		t.Error(err)
	}
	// Load marked what it dropped dirty; the next flush cleans the file.
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := storedKeys(t, db); !reflect.DeepEqual(got, []string{"alice@example.com", "carol@example.com"}) {
		t.Errorf("stored keys after cleanup flush = %v", got)
	}
}

func mustUpdate(t testing.TB, s *Store, aor string, bs ...Binding) {
	t.Helper()
	if _, err := s.Update(aor, set(bs...)); err != nil {
		t.Fatal(err)
	}
}

// TestCrash: data flushed before a crash is there after restart, without
// Close. bbolt holds a lock on the open file, so the "restarted" process
// opens a copy taken right after the flush.
func TestCrash(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "loc.db")
	db := openDB(t, path)
	s := openStore(t, db, c)
	defer s.Close()
	now := c.Now()
	for i := range 50 {
		mustUpdate(t, s, fmt.Sprintf("u%d@example.com", i),
			binding(fmt.Sprintf("sip:u%d@10.0.0.%d", i, i), udpFlow(fmt.Sprintf("203.0.113.1:%d", 2000+i)), now.Add(time.Hour)))
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// Not flushed: lost in the crash, as documented.
	mustUpdate(t, s, "late@example.com", binding("sip:late", udpFlow("203.0.113.2:1"), now.Add(time.Hour)))

	crashed := filepath.Join(dir, "crashed.db")
	copyFile(t, path, crashed)

	db2 := openDB(t, crashed)
	s2 := openStore(t, db2, c)
	defer s2.Close()
	if a, b := s2.Count(); a != 50 || b != 50 {
		t.Errorf("after crash Count = %d, %d; want 50, 50", a, b)
	}
	if l := s2.Lookup("u7@example.com"); len(l) != 1 || l[0].Flow != udpFlow("203.0.113.1:2007") {
		t.Errorf("u7 after crash = %+v", l)
	}
	if l := s2.Lookup("late@example.com"); l != nil {
		t.Errorf("unflushed binding survived: %v", l)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBackgroundFlushAndClose(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "loc.db")
	db := openDB(t, path)
	s, err := Open(db, Options{Now: c.Now, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, "a@x", binding("sip:a", udpFlow("203.0.113.1:1"), c.Now().Add(time.Hour)))
	deadline := time.Now().Add(5 * time.Second)
	for len(storedKeys(t, db)) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("flusher did not write within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Close flushes what is left.
	s.Remove("a@x")
	mustUpdate(t, s, "b@x", binding("sip:b", udpFlow("203.0.113.1:2"), c.Now().Add(time.Hour)))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := storedKeys(t, db); !reflect.DeepEqual(got, []string{"b@x"}) {
		t.Errorf("after Close keys = %v", got)
	}
}

func TestFlushFailureRetries(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "loc.db"))
	s := openStore(t, db, c)
	defer s.Close()
	mustUpdate(t, s, "a@x", binding("sip:a", udpFlow("203.0.113.1:1"), c.Now().Add(time.Hour)))
	// Make the next transaction fail: remove the bucket behind the store's back.
	if err := db.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketName) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err == nil {
		t.Fatal("Flush succeeded without bucket")
	}
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket(bucketName); return err }); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := storedKeys(t, db); !reflect.DeepEqual(got, []string{"a@x"}) {
		t.Errorf("after retry keys = %v", got)
	}
}

func TestUnchangedUpdateWritesNothing(t *testing.T) {
	c := newClock()
	db := openDB(t, filepath.Join(t.TempDir(), "loc.db"))
	s := openStore(t, db, c)
	defer s.Close()
	mustUpdate(t, s, "a@x", binding("sip:a", udpFlow("203.0.113.1:1"), c.Now().Add(time.Hour)))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update("a@x", func(cur []Binding) ([]Binding, error) { return cur, nil }); err != nil {
		t.Fatal(err)
	}
	if s.dirtyHint.Load() {
		t.Errorf("identity Update marked the store dirty")
	}
}

func TestLoadSkipsCorruptRecord(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "loc.db")
	db := openDB(t, path)
	s := openStore(t, db, c)
	mustUpdate(t, s, "good@x", binding("sip:g", udpFlow("203.0.113.1:1"), c.Now().Add(time.Hour)))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketName).Put([]byte("bad@x"), []byte{recordV1, 5, 1, 2})
	})
	if err != nil {
		t.Fatal(err)
	}
	s = openStore(t, db, c)
	defer s.Close()
	if a, _ := s.Count(); a != 1 || s.Lookup("good@x") == nil {
		t.Errorf("load with a corrupt record: Count=%d", a)
	}
}
