package location

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// bucketName is the bbolt bucket holding one record per AOR (key: AOR,
// value: see recordV1).
var bucketName = []byte("location.bindings")

// load reads the bucket into the table. Expired bindings are dropped and
// their AORs marked dirty, so the next flush rewrites or deletes them.
// Records that fail to decode are logged and skipped (left on disk, to be
// overwritten when the AOR registers again).
func (s *Store) load() error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	})
	if err != nil {
		return fmt.Errorf("location: create bucket: %w", err)
	}
	now := s.now()
	return s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketName).ForEach(func(k, v []byte) error {
			aor := string(k)
			bs, err := decodeBindings(aor, v)
			if err != nil {
				s.log.Warn("location: skipping stored record", "aor", aor, "err", err)
				return nil
			}
			sh := s.shard(aor)
			sh.mu.Lock()
			defer sh.mu.Unlock()
			var kept []Binding
			for i := range bs {
				if !bs[i].Expired(now) {
					kept = append(kept, sh.compact(bs[i], aor, now))
				}
			}
			s.replace(sh, aor, nil, kept)
			if len(kept) == len(bs) {
				delete(sh.dirty, aor) // unchanged: nothing to write back
			}
			return nil
		})
	})
}

func (s *Store) flushLoop() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.flush(); err != nil {
				s.log.Error("location: flush failed", "err", err)
			}
		}
	}
}

// Flush writes every dirty AOR now, in one transaction. It returns nil at
// once for a memory-only Store, and ErrClosed after Close.
func (s *Store) Flush() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.flush()
}

type flushRec struct {
	aor string
	bs  []Binding // immutable snapshot; empty means delete
	end int       // end offset of the encoded value in the flush buffer
}

func (s *Store) flush() error {
	if s.db == nil {
		return nil
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if !s.dirtyHint.Swap(false) {
		return nil
	}
	var recs []flushRec
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for aor := range sh.dirty {
			recs = append(recs, flushRec{aor: aor, bs: sh.m[aor]})
		}
		sh.dirty = nil
		sh.mu.Unlock()
	}
	if len(recs) == 0 {
		return nil
	}
	// Sorted keys make bbolt's page writes mostly sequential.
	slices.SortFunc(recs, func(a, b flushRec) int { return strings.Compare(a.aor, b.aor) })
	var buf []byte
	for i := range recs {
		if len(recs[i].bs) > 0 {
			buf = encodeBindings(buf, recs[i].bs)
		}
		recs[i].end = len(buf)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return fmt.Errorf("bucket %s missing", bucketName)
		}
		start := 0
		for _, r := range recs {
			var err error
			if len(r.bs) == 0 {
				err = b.Delete([]byte(r.aor))
			} else {
				err = b.Put([]byte(r.aor), buf[start:r.end])
			}
			if err != nil {
				return err
			}
			start = r.end
		}
		return nil
	})
	if err != nil {
		s.redirty(recs)
		return fmt.Errorf("location: flush %d AORs: %w", len(recs), err)
	}
	return nil
}

// redirty marks recs dirty again after a failed flush so the next one
// retries them.
func (s *Store) redirty(recs []flushRec) {
	for _, r := range recs {
		sh := s.shard(r.aor)
		sh.mu.Lock()
		if sh.dirty == nil {
			sh.dirty = make(map[string]struct{})
		}
		sh.dirty[r.aor] = struct{}{}
		sh.mu.Unlock()
	}
	s.dirtyHint.Store(true)
}
