// Package memstore is a quota.Store in process memory, for tests, examples and
// single-process deployments.
//
// Quotas are spread over shards, each guarded by its own mutex, so reservations on
// different quotas rarely contend while every reservation on one quota is a single
// critical section: reset-if-due and increment-if-below-limit happen together.
// Nothing survives a restart, and several processes do not share quotas.
package memstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/quota"
)

// Config holds the optional settings of a Store.
type Config struct {
	// Cycle is the length of a quota cycle. Zero (or less) means
	// quota.DefaultCycle.
	Cycle time.Duration
}

// shardCount is a power of two well above the core counts the store runs on.
const shardCount = 64

// Store is an in-memory quota.Store. Set each quota with Put before reserving it.
// The zero value is not usable; call New. A Store is safe for concurrent use.
type Store struct {
	cycle  time.Duration
	seed   maphash.Seed
	shards [shardCount]shard
}

type shard struct {
	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	limit int64
	used  int64
	start time.Time
}

var _ quota.Store = (*Store)(nil)

// New returns an empty Store counting in cycles of cfg.Cycle.
func New(cfg Config) *Store {
	if cfg.Cycle <= 0 {
		cfg.Cycle = quota.DefaultCycle
	}
	s := &Store{cycle: cfg.Cycle, seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].keys = make(map[string]*entry)
	}
	return s
}

func (s *Store) shard(id string) *shard {
	return &s.shards[maphash.String(s.seed, id)%shardCount]
}

// Put implements quota.Store: it sets quota id to limit calls a cycle, the cycle
// starting at cycleStart, nothing used, replacing an existing one. A negative
// limit is an error.
func (s *Store) Put(ctx context.Context, id string, limit int64, cycleStart time.Time) error {
	if limit < 0 {
		return fmt.Errorf("quota/memstore: put %q: negative limit %d", id, limit)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("quota/memstore: put: %w", err)
	}
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.keys[id] = &entry{limit: limit, start: cycleStart}
	return nil
}

// Reserve implements quota.Store. A call that grants nothing changes nothing, so an
// exhausted quota whose cycle is due stays as it is until a call is granted.
func (s *Store) Reserve(ctx context.Context, id string, n int64, now time.Time) (int64, quota.Usage, error) {
	if n < 1 {
		return 0, quota.Usage{}, fmt.Errorf("quota/memstore: reserve %d calls: n must be at least 1", n)
	}
	if err := ctx.Err(); err != nil {
		return 0, quota.Usage{}, fmt.Errorf("quota/memstore: reserve: %w", err)
	}
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.keys[id]
	if !ok {
		return 0, quota.Usage{}, quota.ErrNotFound
	}
	start, used := s.current(e, now)
	granted := min(n, max(e.limit-used, 0))
	if granted > 0 {
		used += granted
		e.start, e.used = start, used
	}
	return granted, s.usage(e.limit, used, start), nil
}

// Release implements quota.Store: under the quota's lock it subtracts n from the
// calls used, down to zero, if the current cycle still starts at cycleStart.
func (s *Store) Release(ctx context.Context, id string, n int64, cycleStart time.Time) error {
	if n < 1 {
		return fmt.Errorf("quota/memstore: release %d calls: n must be at least 1", n)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("quota/memstore: release: %w", err)
	}
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.keys[id]
	switch {
	case !ok:
		return quota.ErrNotFound
	case !e.start.Equal(cycleStart):
		return nil
	}
	e.used = max(e.used-n, 0)
	return nil
}

// Usage implements quota.Store: the quota as a reservation at now would find it; a
// due cycle reads as a fresh one. It writes nothing.
func (s *Store) Usage(ctx context.Context, id string, now time.Time) (quota.Usage, error) {
	if err := ctx.Err(); err != nil {
		return quota.Usage{}, fmt.Errorf("quota/memstore: usage: %w", err)
	}
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.keys[id]
	if !ok {
		return quota.Usage{}, quota.ErrNotFound
	}
	start, used := s.current(e, now)
	return s.usage(e.limit, used, start), nil
}

// current returns the cycle start and calls used that a reservation at now works
// from: the stored ones, or a fresh cycle at now when the stored one is due.
func (s *Store) current(e *entry, now time.Time) (time.Time, int64) {
	if quota.Due(e.start, now, s.cycle) {
		return now, 0
	}
	return e.start, e.used
}

func (s *Store) usage(limit, used int64, start time.Time) quota.Usage {
	return quota.Usage{Limit: limit, Used: used, CycleStart: start, Reset: quota.CycleEnd(start, s.cycle)}
}
