package uatest

import (
	"sync"
	"time"
)

// queue is an append-only list of items that waiters take from, in order,
// each item at most once.
type queue[T any] struct {
	mu    sync.Mutex
	items []T
	taken []bool
	wake  chan struct{}
}

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.taken = append(q.taken, false)
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
	q.mu.Unlock()
}

// wait takes the first item not yet taken for which match is true (nil
// matches all), waiting up to timeout or until done is closed.
func (q *queue[T]) wait(done <-chan struct{}, timeout time.Duration, match func(T) bool) (T, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		q.mu.Lock()
		for i, v := range q.items {
			if !q.taken[i] && (match == nil || match(v)) {
				q.taken[i] = true
				q.mu.Unlock()
				return v, true
			}
		}
		if q.wake == nil {
			q.wake = make(chan struct{})
		}
		w := q.wake
		q.mu.Unlock()
		select {
		case <-w:
		case <-t.C:
			var zero T
			return zero, false
		case <-done:
			// One last look: the item may have arrived with the close.
			q.mu.Lock()
			for i, v := range q.items {
				if !q.taken[i] && (match == nil || match(v)) {
					q.taken[i] = true
					q.mu.Unlock()
					return v, true
				}
			}
			q.mu.Unlock()
			var zero T
			return zero, false
		}
	}
}

// all returns a copy of every item pushed so far.
func (q *queue[T]) all() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]T(nil), q.items...)
}
