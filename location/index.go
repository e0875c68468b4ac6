package location

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/sipedge/sipedge/sipx"
)

// flowIndex maps a flow, by hash, to the AORs that have a binding on a flow
// with that hash. Keying by a 64-bit hash keeps an entry small (8-byte key,
// usually one AOR string sharing the table's key); FindByFlow checks the
// real flow, so collisions cost only a little extra work. It is sharded like
// the table; its locks are taken after (never before) a table shard's lock.
type flowIndex struct {
	seed   maphash.Seed
	shards [numShards]struct {
		mu sync.Mutex
		m  map[uint64][]string
	}
}

func (x *flowIndex) init() {
	x.seed = maphash.MakeSeed()
	for i := range x.shards {
		x.shards[i].m = make(map[uint64][]string)
	}
}

// hash covers every field of the flow except an IPv6 zone.
func (x *flowIndex) hash(f sipx.Flow) uint64 {
	var buf [64]byte
	b := buf[:0]
	if len(f.Transport) <= 8 {
		b = append(b, f.Transport...)
	}
	r, l := f.Remote.Addr().As16(), f.Local.Addr().As16()
	b = append(b, r[:]...)
	b = binary.BigEndian.AppendUint16(b, f.Remote.Port())
	b = append(b, l[:]...)
	b = binary.BigEndian.AppendUint16(b, f.Local.Port())
	b = binary.BigEndian.AppendUint64(b, f.ConnID)
	return maphash.Bytes(x.seed, b)
}

func (x *flowIndex) add(h uint64, aor string) {
	sh := &x.shards[h%numShards]
	sh.mu.Lock()
	sh.m[h] = append(sh.m[h], aor)
	sh.mu.Unlock()
}

func (x *flowIndex) remove(h uint64, aor string) {
	sh := &x.shards[h%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l := sh.m[h]
	i := slices.Index(l, aor)
	if i < 0 {
		return
	}
	if len(l) == 1 {
		delete(sh.m, h)
		return
	}
	sh.m[h] = slices.Delete(l, i, i+1) // lookup hands out copies only
}

// lookup returns a copy of the AORs listed under h.
func (x *flowIndex) lookup(h uint64) []string {
	sh := &x.shards[h%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return slices.Clone(sh.m[h])
}

// len returns the number of (hash, AOR) entries; for tests.
func (x *flowIndex) len() int {
	n := 0
	for i := range x.shards {
		sh := &x.shards[i]
		sh.mu.Lock()
		for _, l := range sh.m {
			n += len(l)
		}
		sh.mu.Unlock()
	}
	return n
}
