package auth

import (
	"encoding/json"
	"fmt"
	"sync"

	"go.etcd.io/bbolt"
)

// usersBucket is the bbolt bucket holding users: key = name, value = the
// User as JSON (small, readable with bbolt tools, tolerant of new fields).
const usersBucket = "users"

// BoltUsers is a UserStore persisted in a bbolt bucket, with every user
// cached in memory: Get never touches the disk, Put and Delete write
// through (disk first, then cache).
type BoltUsers struct {
	db *bbolt.DB

	// wmu serialises writers so the cache is updated in disk order
	// without holding mu (and blocking Get) during the disk write.
	wmu   sync.Mutex
	mu    sync.RWMutex
	users map[string]User
}

// NewBoltUsers opens (creating if needed) the users bucket in db and loads
// it into memory. A record that does not decode or validate is an error:
// silently dropping a user would lock a phone out without explanation.
func NewBoltUsers(db *bbolt.DB) (*BoltUsers, error) {
	b := &BoltUsers{db: db, users: make(map[string]User)}
	err := db.Update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte(usersBucket))
		if err != nil {
			return err
		}
		return bk.ForEach(func(k, v []byte) error {
			var u User
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("%w: stored user %q: %v", ErrInvalidUser, k, err)
			}
			if u.Name != string(k) {
				return fmt.Errorf("%w: stored user %q has name %q", ErrInvalidUser, k, u.Name)
			}
			if err := u.Validate(); err != nil {
				return fmt.Errorf("stored user: %w", err)
			}
			b.users[u.Name] = u
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("auth: loading users: %w", err)
	}
	return b, nil
}

// Get returns the user called name from memory.
func (b *BoltUsers) Get(name string) (User, bool) {
	b.mu.RLock()
	u, ok := b.users[name]
	b.mu.RUnlock()
	return u, ok
}

// Put validates u, writes it to disk, then to the cache.
func (b *BoltUsers) Put(u User) error {
	if err := u.Validate(); err != nil {
		return err
	}
	v, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("auth: encoding user: %w", err)
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	err = b.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(usersBucket)).Put([]byte(u.Name), v)
	})
	if err != nil {
		return fmt.Errorf("auth: storing user %q: %w", u.Name, err)
	}
	b.mu.Lock()
	b.users[u.Name] = u
	b.mu.Unlock()
	return nil
}

// Delete removes the user called name from disk, then from the cache.
func (b *BoltUsers) Delete(name string) (bool, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	if _, ok := b.Get(name); !ok {
		return false, nil
	}
	err := b.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(usersBucket)).Delete([]byte(name))
	})
	if err != nil {
		return false, fmt.Errorf("auth: deleting user %q: %w", name, err)
	}
	b.mu.Lock()
	delete(b.users, name)
	b.mu.Unlock()
	return true, nil
}

// List returns all users sorted by name, from memory.
func (b *BoltUsers) List() ([]User, error) {
	b.mu.RLock()
	out := make([]User, 0, len(b.users))
	for _, u := range b.users {
		out = append(out, u)
	}
	b.mu.RUnlock()
	sortUsers(out)
	return out, nil
}
