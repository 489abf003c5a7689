package ratelimit

import (
	"sync"
	"time"

	"github.com/ulule/limiter/v3"
)

// DefaultDenyCacheSize bounds the local deny cache: the number of exhausted
// buckets remembered at once.
const DefaultDenyCacheSize = 1 << 16

// denyCache remembers exhausted buckets until their window resets, so that a
// flood against an exhausted bucket is refused without a store round trip. It
// holds at most max entries: expired entries are swept at most once a second and
// whenever the cache is full; if it is still full, an arbitrary entry makes room
// (that bucket merely goes back to asking the store). Safe for concurrent use.
type denyCache struct {
	max       int
	mu        sync.RWMutex
	entries   map[string]limiter.Context
	nextSweep time.Time
}

func newDenyCache(max int) *denyCache {
	return &denyCache{max: max, entries: make(map[string]limiter.Context)}
}

// get returns the remembered state of bucket if its window has not reset at now.
func (c *denyCache) get(bucket string, now time.Time) (limiter.Context, bool) {
	if c == nil {
		return limiter.Context{}, false
	}
	c.mu.RLock()
	lctx, ok := c.entries[bucket]
	c.mu.RUnlock()
	if !ok || now.Unix() >= lctx.Reset {
		return limiter.Context{}, false
	}
	return lctx, true
}

// put remembers that bucket is exhausted until lctx.Reset (unix seconds). Entries
// whose reset is not in the future are not kept.
func (c *denyCache) put(bucket string, lctx limiter.Context, now time.Time) {
	if c == nil || now.Unix() >= lctx.Reset {
		return
	}
	lctx.Remaining, lctx.Reached = 0, true
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
	c.entries[bucket] = lctx
}

// sweep drops expired entries; c.mu is held.
func (c *denyCache) sweep(now time.Time) {
	for k, e := range c.entries {
		if now.Unix() >= e.Reset {
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
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
