package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// DefaultDenyCacheSize bounds the local deny cache: the number of exhausted
// buckets remembered at once.
const DefaultDenyCacheSize = 1 << 16

// denyCache remembers exhausted buckets until their window resets, so that a
// flood against an exhausted bucket is refused without a store round trip. It
// holds at most max entries: expired entries are swept at most once a second and
// whenever the cache is full; if it is still full, an arbitrary entry makes room
// (that bucket merely goes back to asking the store). A nil cache remembers
// nothing. Safe for concurrent use.
type denyCache struct {
	max       int
	size      atomic.Int64 // len(entries), so that an empty cache costs get no lock
	mu        sync.RWMutex
	entries   map[string]Window
	nextSweep time.Time
}

func newDenyCache(max int) *denyCache {
	return &denyCache{max: max, entries: make(map[string]Window)}
}

// get returns the remembered window of bucket if it has not reset at now.
func (c *denyCache) get(bucket string, now time.Time) (Window, bool) {
	if c == nil || c.size.Load() == 0 {
		return Window{}, false
	}
	c.mu.RLock()
	w, ok := c.entries[bucket]
	c.mu.RUnlock()
	if !ok || !now.Before(w.Reset) {
		return Window{}, false
	}
	return w, true
}

// put remembers that bucket is exhausted until w.Reset. A window whose reset is
// not after now is not kept.
func (c *denyCache) put(bucket string, w Window, now time.Time) {
	if c == nil || !now.Before(w.Reset) {
		return
	}
	w.Remaining, w.Reached = 0, true
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[bucket]; !ok && (len(c.entries) >= c.max || !now.Before(c.nextSweep)) {
		c.sweep(now)
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[bucket] = w
	c.size.Store(int64(len(c.entries)))
}

// sweep drops expired entries; c.mu is held.
func (c *denyCache) sweep(now time.Time) {
	for k, w := range c.entries {
		if !now.Before(w.Reset) {
			delete(c.entries, k)
		}
	}
	c.nextSweep = now.Add(time.Second)
}

// len returns the number of entries held, expired or not.
func (c *denyCache) len() int {
	if c == nil {
		return 0
	}
	return int(c.size.Load())
}
