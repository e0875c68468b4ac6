package auth

import (
	"encoding/json"
	"fmt"

	"go.etcd.io/bbolt"
)

// PutMany validates and stores many users in one transaction (bulk import:
// 100k users in one fsync instead of 100k).
func (b *BoltUsers) PutMany(us []User) error {
	vals := make([][]byte, len(us))
	for i, u := range us {
		if err := u.Validate(); err != nil {
			return err
		}
		v, err := json.Marshal(u)
		if err != nil {
			return fmt.Errorf("auth: encoding user: %w", err)
		}
		vals[i] = v
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	err := b.db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket([]byte(usersBucket))
		for i, u := range us {
			if err := bk.Put([]byte(u.Name), vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("auth: storing users: %w", err)
	}
	b.mu.Lock()
	for _, u := range us {
		b.users[u.Name] = u
	}
	b.mu.Unlock()
	return nil
}
