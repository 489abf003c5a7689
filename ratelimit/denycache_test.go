package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestDenyCacheExpiry(t *testing.T) {
	t.Parallel()
	c := newDenyCache(10)
	now := time.Unix(1000, 0)
	c.put("a", Window{Limit: 5, Remaining: 3, Reset: time.Unix(1010, 0)}, now)
	got, ok := c.get("a", now.Add(9*time.Second))
	if !ok || got.Remaining != 0 || !got.Reached || !got.Reset.Equal(time.Unix(1010, 0)) || got.Limit != 5 {
		t.Fatalf("get before reset = %+v, %v; want remaining 0, reached, reset 1010", got, ok)
	}
	if _, ok := c.get("a", time.Unix(1010, 0).Add(-time.Nanosecond)); !ok {
		t.Fatal("entry expired before its reset")
	}
	if _, ok := c.get("a", now.Add(10*time.Second)); ok {
		t.Fatal("entry still denies at its reset")
	}
	c.put("b", Window{Reset: time.Unix(1000, 0)}, now)
	if _, ok := c.get("b", now); ok || c.len() != 1 {
		t.Fatalf("an entry whose reset has passed was kept (len %d)", c.len())
	}
}

// TestDenyCacheBounded: the cache never holds more than max entries, sweeps
// expired ones first, and keeps the newest bucket.
func TestDenyCacheBounded(t *testing.T) {
	t.Parallel()
	c := newDenyCache(4)
	now := time.Unix(1000, 0)
	for i := range 4 {
		c.put(fmt.Sprint("short", i), Window{Reset: time.Unix(1002, 0)}, now)
	}
	// Full of live entries: one is evicted to make room.
	c.put("new", Window{Reset: time.Unix(1100, 0)}, now)
	if c.len() != 4 {
		t.Fatalf("len %d, want 4", c.len())
	}
	if _, ok := c.get("new", now); !ok {
		t.Fatal("the newest entry was not kept")
	}
	// Once the short entries expire, a sweep removes them all.
	later := now.Add(5 * time.Second)
	c.put("newer", Window{Reset: time.Unix(1100, 0)}, later)
	if c.len() != 2 {
		t.Fatalf("len %d after the sweep, want 2 (new, newer)", c.len())
	}
	for _, k := range []string{"new", "newer"} {
		if _, ok := c.get(k, later); !ok {
			t.Errorf("%s lost in the sweep", k)
		}
	}
}

func TestDenyCacheConcurrent(t *testing.T) {
	t.Parallel()
	c := newDenyCache(64)
	now := time.Unix(1000, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := fmt.Sprint(g, "-", i%100)
				c.put(k, Window{Reset: time.Unix(1000+int64(i%7), 0)}, now.Add(time.Duration(i)*time.Millisecond))
				c.get(k, now)
			}
		})
	}
	wg.Wait()
	if c.len() > 64 {
		t.Fatalf("len %d, max 64", c.len())
	}
}

// TestDenyCacheOff: a nil cache (DenyCacheSize < 0) remembers nothing.
func TestDenyCacheOff(t *testing.T) {
	t.Parallel()
	var c *denyCache
	c.put("a", Window{Reset: time.Unix(2000, 0)}, time.Unix(1000, 0))
	if _, ok := c.get("a", time.Unix(1000, 0)); ok || c.len() != 0 {
		t.Fatal("a nil cache denied")
	}
}
