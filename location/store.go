// Package location is the binding store: which flows and Contacts each
// address-of-record is registered at.
//
// The in-memory table is the source of truth. It is split into shards by a
// hash of the AOR, each guarded by its own lock, so registrations of
// different users rarely contend. A secondary index maps flows to AORs
// (FindByFlow). When the Store has a bbolt database, it persists write-behind:
// every change marks its AOR dirty and a flusher writes all dirty AORs in one
// bbolt transaction per FlushInterval; Open loads the bucket back, dropping
// expired bindings. A crash loses at most the changes of the last interval,
// which phones repair by re-registering.
package location

import (
	"cmp"
	"errors"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/sipedge/sipedge/sipx"
)

// Errors returned by the Store.
var (
	ErrClosed   = errors.New("location: store closed")
	ErrEmptyAOR = errors.New("location: empty AOR")
)

// DefaultFlushInterval is used when Options.FlushInterval is zero.
const DefaultFlushInterval = 100 * time.Millisecond

// Options configure a Store. The zero value is usable.
type Options struct {
	// FlushInterval is how often dirty AORs are written to the database.
	// If zero, DefaultFlushInterval.
	FlushInterval time.Duration
	// Now is the clock deciding expiry. If nil, time.Now.
	Now func() time.Time
	// Logger receives persistence errors (flush failures, corrupt records).
	// If nil, nothing is logged; Flush and Close still return errors.
	Logger *slog.Logger
}

const numShards = 64

// shard holds the AORs whose hash falls on it. Binding slices stored in m
// are never modified after being stored (copy on write), so readers may
// use a slice after releasing the lock.
type shard struct {
	mu    sync.RWMutex
	m     map[string][]Binding
	dirty map[string]struct{} // AORs changed since the last flush; nil without db
	// next is no later than the earliest Expires in m (zero if m is
	// empty); Expire skips the shard before then.
	next   time.Time
	intern interner
}

// Store is the binding table. All methods are safe for concurrent use.
type Store struct {
	db       *bbolt.DB
	now      func() time.Time
	interval time.Duration
	log      *slog.Logger

	shards [numShards]shard
	flows  flowIndex

	naors, nbindings atomic.Int64

	dirtyHint atomic.Bool // some shard may have dirty AORs
	flushMu   sync.Mutex  // serialises flushes so older snapshots never overwrite newer
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	done      chan struct{}
}

// Open returns a Store. With a nil db it is memory only. Otherwise it
// creates the bucket if needed, loads every stored binding that has not
// expired, and starts the flusher; Close stops it. The caller owns db and
// closes it after the Store. Opening db with bbolt.Options.InitialMmapSize
// of a few tens of MiB avoids repeated remaps when a large table is first
// written (see BenchmarkFlush100k).
func Open(db *bbolt.DB, opt Options) (*Store, error) {
	s := &Store{
		db:       db,
		now:      opt.Now,
		interval: opt.FlushInterval,
		log:      opt.Logger,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.interval <= 0 {
		s.interval = DefaultFlushInterval
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.flows.init()
	for i := range s.shards {
		s.shards[i].m = make(map[string][]Binding)
	}
	if db == nil {
		return s, nil
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	go s.flushLoop()
	return s, nil
}

// Close stops the flusher and writes what is still dirty. It does not close
// the database. After Close, Update and Flush return ErrClosed; the other
// methods keep working on the in-memory table, which is no longer persisted.
// Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.db == nil {
			return
		}
		close(s.stop)
		<-s.done
		s.closeErr = s.flush()
	})
	return s.closeErr
}

func (s *Store) shard(aor string) *shard {
	// FNV-1a, inline to avoid allocating.
	h := uint32(2166136261)
	for i := 0; i < len(aor); i++ {
		h ^= uint32(aor[i])
		h *= 16777619
	}
	return &s.shards[h%numShards]
}

// Lookup returns copies of the unexpired bindings of aor, highest q first
// (a missing q counts as 1.0), then most recently updated first, then by
// Contact.
func (s *Store) Lookup(aor string) []Binding {
	aor = NormalizeAOR(aor)
	sh := s.shard(aor)
	sh.mu.RLock()
	bs := sh.m[aor]
	sh.mu.RUnlock()
	out := liveCopies(bs, s.now())
	slices.SortFunc(out, compareBindings)
	return out
}

func compareBindings(a, b Binding) int {
	if c := cmp.Compare(b.priority(), a.priority()); c != 0 {
		return c
	}
	if c := b.Updated.Compare(a.Updated); c != 0 {
		return c
	}
	return strings.Compare(a.Contact, b.Contact)
}

// liveCopies returns deep copies of the bindings in bs unexpired at now,
// in order; nil if none.
func liveCopies(bs []Binding, now time.Time) []Binding {
	var out []Binding
	for i := range bs {
		if !bs[i].Expired(now) {
			if out == nil {
				out = make([]Binding, 0, len(bs)-i)
			}
			out = append(out, bs[i].clone())
		}
	}
	return out
}

// Update atomically reads, modifies and writes the bindings of one AOR,
// holding its shard's lock while fn runs; fn must not call the Store. fn
// gets copies of the unexpired bindings (nil if none) and returns the new
// set, which the registrar builds by RFC 3261 §10.3. Returned bindings that
// are already expired (e.g. "expires=0") are dropped; the rest are stored,
// with AOR set to the normalized aor and zero Registered/Updated set to the
// clock. An empty result deletes the AOR. If fn returns an error nothing
// changes and Update returns it. Otherwise Update returns copies of what was
// stored, in fn's order.
func (s *Store) Update(aor string, fn func(cur []Binding) ([]Binding, error)) ([]Binding, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	aor = NormalizeAOR(aor)
	if aor == "" {
		return nil, ErrEmptyAOR
	}
	sh := s.shard(aor)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.now()
	old := sh.m[aor]
	res, err := fn(liveCopies(old, now))
	if err != nil {
		return nil, err
	}
	if len(old) > 0 {
		aor = old[0].AOR // the key already in the map
	} else {
		aor = strings.Clone(aor) // do not pin the caller's buffer
	}
	var stored []Binding
	for i := range res {
		if res[i].Expired(now) {
			continue
		}
		if stored == nil {
			stored = make([]Binding, 0, len(res)-i)
		}
		stored = append(stored, sh.compact(res[i], aor, now))
	}
	if !equalBindings(old, stored) {
		s.replace(sh, aor, old, stored)
	}
	out := make([]Binding, len(stored))
	for i := range stored {
		out[i] = stored[i].clone()
	}
	return out, nil
}

// Remove deletes every binding of aor.
func (s *Store) Remove(aor string) {
	aor = NormalizeAOR(aor)
	sh := s.shard(aor)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[aor]; ok {
		s.replace(sh, old[0].AOR, old, nil)
	}
}

// All calls fn with a copy of every unexpired binding, in no particular
// order, until fn returns false. fn may call the Store. Changes made while
// All runs may or may not be seen.
func (s *Store) All(fn func(Binding) bool) {
	s.Each(func(b *Binding) bool { return fn(b.clone()) })
}

// Each is All without copies, for scans over every binding (the admin
// API's peer pages): fn must only read the binding and must not keep it.
func (s *Store) Each(fn func(b *Binding) bool) {
	now := s.now()
	var batch [][]Binding
	for i := range s.shards {
		sh := &s.shards[i]
		batch = batch[:0]
		sh.mu.RLock()
		for _, bs := range sh.m {
			batch = append(batch, bs) // copy on write: safe to read after unlocking
		}
		sh.mu.RUnlock()
		for _, bs := range batch {
			for j := range bs {
				if !bs[j].Expired(now) && !fn(&bs[j]) {
					return
				}
			}
		}
	}
}

// Count returns the number of AORs and bindings held. Bindings that have
// expired but not yet been removed by Expire are included.
func (s *Store) Count() (aors, bindings int) {
	return int(s.naors.Load()), int(s.nbindings.Load())
}

// Expire removes the bindings that have expired and returns how many. The
// server calls it every second; shards with nothing due are skipped
// without scanning.
func (s *Store) Expire() int {
	now := s.now()
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		due := !sh.next.IsZero() && !sh.next.After(now)
		sh.mu.RUnlock()
		if !due {
			continue
		}
		sh.mu.Lock()
		var next time.Time
		for aor, bs := range sh.m {
			var kept []Binding
			expired := 0
			for j := range bs {
				if bs[j].Expired(now) {
					expired++
					continue
				}
				if next.IsZero() || bs[j].Expires.Before(next) {
					next = bs[j].Expires
				}
			}
			if expired == 0 {
				continue
			}
			for j := range bs {
				if !bs[j].Expired(now) {
					kept = append(kept, bs[j])
				}
			}
			n += expired
			s.replace(sh, aor, bs, kept)
		}
		sh.next = next
		sh.mu.Unlock()
	}
	return n
}

// FindByFlow returns copies of the unexpired bindings registered over
// flow f (compared field by field, Flow ==), ordered by AOR. The zero Flow
// matches nothing.
func (s *Store) FindByFlow(f sipx.Flow) []Binding {
	if f.IsZero() {
		return nil
	}
	aors := s.flows.lookup(s.flows.hash(f))
	slices.Sort(aors)
	now := s.now()
	var out []Binding
	for _, aor := range aors {
		sh := s.shard(aor)
		sh.mu.RLock()
		bs := sh.m[aor]
		sh.mu.RUnlock()
		for i := range bs {
			if bs[i].Flow == f && !bs[i].Expired(now) {
				out = append(out, bs[i].clone())
			}
		}
	}
	return out
}

// EachByFlow calls fn for each unexpired binding registered over flow f,
// until fn returns false, without copying them: fn must only read the
// binding and must not keep it (the keepalive's per-ping check, which
// FindByFlow's copies made allocate).
func (s *Store) EachByFlow(f sipx.Flow, fn func(b *Binding) bool) {
	if f.IsZero() {
		return
	}
	now := s.now()
	for _, aor := range s.flows.lookup(s.flows.hash(f)) {
		sh := s.shard(aor)
		sh.mu.RLock()
		bs := sh.m[aor] // copy on write: safe to read after unlocking
		sh.mu.RUnlock()
		for i := range bs {
			if bs[i].Flow == f && !bs[i].Expired(now) && !fn(&bs[i]) {
				return
			}
		}
	}
}

// replace stores bs as the bindings of aor (deleting it when empty) in
// place of old, and keeps counters, the flow index, the dirty set and
// sh.next in step. sh.mu must be held for writing; aor must be the
// canonical key string.
func (s *Store) replace(sh *shard, aor string, old, bs []Binding) {
	if len(bs) == 0 {
		delete(sh.m, aor)
	} else {
		sh.m[aor] = bs
	}
	switch {
	case len(old) == 0 && len(bs) > 0:
		s.naors.Add(1)
	case len(old) > 0 && len(bs) == 0:
		s.naors.Add(-1)
	}
	s.nbindings.Add(int64(len(bs) - len(old)))
	s.reindex(aor, old, bs)
	for i := range bs {
		if sh.next.IsZero() || bs[i].Expires.Before(sh.next) {
			sh.next = bs[i].Expires
		}
	}
	if s.db != nil {
		if sh.dirty == nil {
			sh.dirty = make(map[string]struct{})
		}
		sh.dirty[aor] = struct{}{}
		s.dirtyHint.Store(true)
	}
}

// reindex updates the flow index for aor going from old to bs. The index
// is keyed by flow hash, so it adds and removes by hash: an AOR is listed
// under a hash exactly when one of its stored bindings has a flow with
// that hash.
func (s *Store) reindex(aor string, old, bs []Binding) {
	var oldBuf, newBuf [4]uint64
	oh := s.flowHashes(oldBuf[:0], old)
	nh := s.flowHashes(newBuf[:0], bs)
	for _, h := range oh {
		if !slices.Contains(nh, h) {
			s.flows.remove(h, aor)
		}
	}
	for _, h := range nh {
		if !slices.Contains(oh, h) {
			s.flows.add(h, aor)
		}
	}
}

// flowHashes appends the distinct hashes of the non-zero flows in bs.
func (s *Store) flowHashes(dst []uint64, bs []Binding) []uint64 {
	for i := range bs {
		if bs[i].Flow.IsZero() {
			continue
		}
		if h := s.flows.hash(bs[i].Flow); !slices.Contains(dst, h) {
			dst = append(dst, h)
		}
	}
	return dst
}

// equalBindings reports whether a and b hold the same bindings in the same
// order, so an Update that changes nothing writes nothing.
func equalBindings(a, b []Binding) bool {
	return slices.EqualFunc(a, b, func(x, y Binding) bool {
		return x.AOR == y.AOR && x.User == y.User && x.Contact == y.Contact &&
			x.ContactURI == y.ContactURI && x.CallID == y.CallID && x.UserAgent == y.UserAgent &&
			x.Instance == y.Instance && x.Flow == y.Flow && x.Expires.Equal(y.Expires) &&
			x.Registered.Equal(y.Registered) && x.Updated.Equal(y.Updated) &&
			slices.Equal(x.NATReasons, y.NATReasons) && slices.Equal(x.Path, y.Path) &&
			x.RegID == y.RegID && x.CSeq == y.CSeq && math.Float32bits(x.Q) == math.Float32bits(y.Q) && x.NAT == y.NAT
	})
}
