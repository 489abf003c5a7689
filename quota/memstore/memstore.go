// Package memstore keeps quota counters in process memory, for tests, examples and
// single-process deployments.
//
// Counters are spread over shards, each guarded by its own mutex, so reservations
// on different keys rarely contend while every reservation on one key is a single
// critical section: reset-if-due and increment-if-below-limit happen together.
// Nothing survives a restart, and several processes do not share counters.
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
	// Cycle is the length of a quota cycle. Zero means quota.DefaultCycle.
	Cycle time.Duration
}

// shardCount is a power of two well above the core counts the store runs on.
const shardCount = 64

// Store is an in-memory quota.Store. Register keys with Put before reserving. The
// zero value is not usable; call New. A Store is safe for concurrent use.
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
	limit   int64
	used    int64
	start   time.Time
	revoked bool
}

var _ quota.Store = (*Store)(nil)

// New returns an empty Store.
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

// Put registers the key with that ID, or replaces its quota: limit calls per cycle,
// the current cycle starting at cycleStart, nothing used, active. The application
// calls it when it issues a key.
func (s *Store) Put(id string, limit int64, cycleStart time.Time) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.keys[id] = &entry{limit: limit, start: cycleStart}
}

// Revoke marks the key revoked: later reservations return quota.ErrRevoked. An
// unknown ID is ignored.
func (s *Store) Revoke(id string) {
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.keys[id]; ok {
		e.revoked = true
	}
}

// Reserve implements quota.Store. A call that grants nothing changes nothing, so an
// exhausted key whose cycle is due stays as it is until a call is granted.
func (s *Store) Reserve(ctx context.Context, keyID string, n int64, now time.Time) (int64, quota.Usage, error) {
	if n < 1 {
		return 0, quota.Usage{}, fmt.Errorf("quota/memstore: reserve %d calls: n must be at least 1", n)
	}
	if err := ctx.Err(); err != nil {
		return 0, quota.Usage{}, fmt.Errorf("quota/memstore: reserve: %w", err)
	}
	sh := s.shard(keyID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, err := lookup(sh, keyID)
	if err != nil {
		return 0, quota.Usage{}, err
	}
	start, used := s.current(e, now)
	granted := min(n, max(e.limit-used, 0))
	if granted > 0 {
		used += granted
		e.start, e.used = start, used
	}
	return granted, s.usage(e.limit, used, start), nil
}

// Release implements quota.Store: under the key's lock it subtracts n from the calls
// used, down to zero, if the current cycle still starts at cycleStart.
func (s *Store) Release(ctx context.Context, keyID string, n int64, cycleStart time.Time) error {
	if n < 1 {
		return fmt.Errorf("quota/memstore: release %d calls: n must be at least 1", n)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("quota/memstore: release: %w", err)
	}
	sh := s.shard(keyID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.keys[keyID]
	switch {
	case !ok:
		return quota.ErrNotFound
	case e.revoked || !e.start.Equal(cycleStart):
		return nil
	}
	e.used = max(e.used-n, 0)
	return nil
}

// Usage returns the key's usage as a reservation at now would find it, before it
// counts anything: a due cycle reads as a fresh one. It writes nothing. An unknown
// key returns quota.ErrNotFound and a revoked one quota.ErrRevoked.
func (s *Store) Usage(ctx context.Context, keyID string, now time.Time) (quota.Usage, error) {
	if err := ctx.Err(); err != nil {
		return quota.Usage{}, fmt.Errorf("quota/memstore: usage: %w", err)
	}
	sh := s.shard(keyID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, err := lookup(sh, keyID)
	if err != nil {
		return quota.Usage{}, err
	}
	start, used := s.current(e, now)
	return s.usage(e.limit, used, start), nil
}

// lookup returns the key's entry; sh.mu must be held.
func lookup(sh *shard, id string) (*entry, error) {
	e, ok := sh.keys[id]
	switch {
	case !ok:
		return nil, quota.ErrNotFound
	case e.revoked:
		return nil, quota.ErrRevoked
	}
	return e, nil
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
