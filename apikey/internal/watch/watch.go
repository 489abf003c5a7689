// Package watch keeps the watchers of a store's key changes, the part of
// apikey.Changes that every store implements alike.
package watch

import (
	"sync"
	"sync/atomic"
)

// List holds watchers. Notify reads it without a lock, Add and stop copy it. It is
// safe for concurrent use; the zero value is an empty list.
type List struct {
	mu  sync.Mutex
	fns atomic.Pointer[[]*watcher]
}

type watcher struct{ fn func(hashes []string) }

// Add adds fn to the list and returns the function that removes it. Calling stop
// more than once is harmless; once it returned, fn is not called again by a
// Notify that starts afterwards.
func (l *List) Add(fn func(hashes []string)) (stop func()) {
	w := &watcher{fn: fn}
	l.mu.Lock()
	defer l.mu.Unlock()
	var cur []*watcher
	if p := l.fns.Load(); p != nil {
		cur = *p
	}
	next := append(append(make([]*watcher, 0, len(cur)+1), cur...), w)
	l.fns.Store(&next)
	var once sync.Once
	return func() { once.Do(func() { l.remove(w) }) }
}

func (l *List) remove(w *watcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := *l.fns.Load()
	next := make([]*watcher, 0, len(cur))
	for _, x := range cur {
		if x != w {
			next = append(next, x)
		}
	}
	l.fns.Store(&next)
}

// Notify calls every watcher with hashes, one after another, in the caller's
// goroutine. It calls none when hashes is empty: a watcher's empty list would
// mean "everything changed".
func (l *List) Notify(hashes []string) {
	if len(hashes) == 0 {
		return
	}
	p := l.fns.Load()
	if p == nil {
		return
	}
	for _, w := range *p {
		w.fn(hashes)
	}
}
