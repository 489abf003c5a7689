// Package memstore is an in-memory apikey.Store for tests, examples and
// single-process servers that can lose their keys on restart.
//
// It keeps the same contract as apikey/sqlstore (package storetest checks both)
// but has no transactions: a caller that revokes and issues keys in several calls
// sees each take effect on its own. It implements apikey.Changes: watchers are
// called after each change, in the goroutine that made it, before the method
// returns.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/internal/keyprep"
	"github.com/releaseradar/tollgate/apikey/internal/watch"
)

var (
	_ apikey.Store   = (*Store)(nil)
	_ apikey.Changes = (*Store)(nil)
)

// errDuplicate reports a key whose ID or hash is already stored.
var errDuplicate = errors.New("apikey/memstore: a key with that ID or hash exists")

// Store keeps keys in memory behind one mutex. It is safe for concurrent use; the
// zero value is not usable, call New.
type Store struct {
	mu     sync.RWMutex
	byID   map[string]*apikey.Key
	byHash map[string]*apikey.Key
	// current maps a user ID to that user's active key that is not expiring,
	// expiring to the user's expiring keys (active, with an ExpiresAt).
	current  map[string]*apikey.Key
	expiring map[string]map[*apikey.Key]struct{}
	// watchers are called after a change, outside mu, so that they may call
	// the store.
	watchers watch.List
}

// New returns an empty store, ready for use.
func New() *Store {
	return &Store{
		byID:     make(map[string]*apikey.Key),
		byHash:   make(map[string]*apikey.Key),
		current:  make(map[string]*apikey.Key),
		expiring: make(map[string]map[*apikey.Key]struct{}),
	}
}

// Create implements apikey.Store.
func (s *Store) Create(ctx context.Context, k *apikey.Key) error {
	if err := keyprep.ForCreate(k); err != nil {
		return fmt.Errorf("apikey/memstore: create: %w", err)
	}
	s.mu.Lock()
	err := s.create(k)
	s.mu.Unlock()
	if err == nil {
		s.watchers.Notify([]string{k.Hash})
	}
	return err
}

// create stores k; s.mu is held for writing.
func (s *Store) create(k *apikey.Key) error {
	if k.Active() && !k.Expiring() && s.current[k.UserID] != nil {
		return apikey.ErrActiveExists
	}
	return s.insert(*k)
}

// Watch implements apikey.Changes.
func (s *Store) Watch(fn func(hashes []string)) (stop func()) { return s.watchers.Add(fn) }

// insert stores a copy of k; s.mu is held for writing.
func (s *Store) insert(k apikey.Key) error {
	if s.byID[k.ID] != nil || s.byHash[k.Hash] != nil {
		return errDuplicate
	}
	p := &k
	s.byID[k.ID] = p
	s.byHash[k.Hash] = p
	s.index(p)
	return nil
}

// index files the active key k under its user, as current or expiring; s.mu is
// held for writing.
func (s *Store) index(k *apikey.Key) {
	switch {
	case !k.Active():
	case k.Expiring():
		m := s.expiring[k.UserID]
		if m == nil {
			m = make(map[*apikey.Key]struct{})
			s.expiring[k.UserID] = m
		}
		m[k] = struct{}{}
	default:
		s.current[k.UserID] = k
	}
}

// unindex removes k from the user's active keys; s.mu is held for writing.
func (s *Store) unindex(k *apikey.Key) {
	if s.current[k.UserID] == k {
		delete(s.current, k.UserID)
	}
	if m := s.expiring[k.UserID]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(s.expiring, k.UserID)
		}
	}
}

// ByHash implements apikey.Store.
func (s *Store) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if k := s.byHash[hash]; k != nil {
		return *k, nil
	}
	return apikey.Key{}, apikey.ErrNotFound
}

// ByID implements apikey.Store.
func (s *Store) ByID(ctx context.Context, id string) (apikey.Key, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if k := s.byID[id]; k != nil {
		return *k, nil
	}
	return apikey.Key{}, apikey.ErrNotFound
}

// ListByUser implements apikey.Store. It scans every key, which is fine for the
// sizes a memory store holds.
func (s *Store) ListByUser(ctx context.Context, userID string) ([]apikey.Key, error) {
	s.mu.RLock()
	out := []apikey.Key{}
	for _, k := range s.byID {
		if k.UserID == userID {
			out = append(out, *k)
		}
	}
	s.mu.RUnlock()
	newestFirst(out)
	return out, nil
}

// Revoke implements apikey.Store.
func (s *Store) Revoke(ctx context.Context, id, reason string, now time.Time) error {
	s.mu.Lock()
	k := s.byID[id]
	if k == nil {
		s.mu.Unlock()
		return apikey.ErrNotFound
	}
	changed := s.revoke(k, reason, now)
	hash := k.Hash
	s.mu.Unlock()
	if changed {
		s.watchers.Notify([]string{hash})
	}
	return nil
}

// revoke revokes k if it is active and reports whether it was; s.mu is held for
// writing.
func (s *Store) revoke(k *apikey.Key, reason string, now time.Time) bool {
	if !k.Active() {
		return false
	}
	s.unindex(k)
	k.Status = apikey.StatusRevoked
	k.RevokedAt = keyprep.T(now)
	k.RevokeReason = reason
	return true
}

// RevokeUser implements apikey.Store: it revokes the user's current key and
// every expiring one.
func (s *Store) RevokeUser(ctx context.Context, userID, reason string, now time.Time) ([]apikey.Key, error) {
	s.mu.Lock()
	var active []*apikey.Key
	if k := s.current[userID]; k != nil {
		active = append(active, k)
	}
	for k := range s.expiring[userID] {
		active = append(active, k)
	}
	out := make([]apikey.Key, 0, len(active))
	for _, k := range active {
		s.revoke(k, reason, now)
		out = append(out, *k)
	}
	s.mu.Unlock()
	if len(out) == 0 {
		return out, nil
	}
	newestFirst(out)
	hashes := make([]string, len(out))
	for i, k := range out {
		hashes[i] = k.Hash
	}
	s.watchers.Notify(hashes)
	return out, nil
}

// newestFirst sorts keys as ListByUser returns them.
func newestFirst(keys []apikey.Key) {
	sort.Slice(keys, func(i, j int) bool {
		if !keys[i].CreatedAt.Equal(keys[j].CreatedAt) {
			return keys[i].CreatedAt.After(keys[j].CreatedAt)
		}
		return keys[i].ID > keys[j].ID
	})
}

// Retire implements apikey.Store.
func (s *Store) Retire(ctx context.Context, id, plan, quotaID string, expiresAt time.Time) error {
	if err := keyprep.CheckRetire(quotaID, expiresAt); err != nil {
		return fmt.Errorf("apikey/memstore: %w", err)
	}
	s.mu.Lock()
	k := s.byID[id]
	if k == nil {
		s.mu.Unlock()
		return apikey.ErrNotFound
	}
	if !k.Active() {
		s.mu.Unlock()
		return nil
	}
	retired, changed := keyprep.Retired(*k, plan, quotaID, expiresAt)
	if changed {
		s.unindex(k)
		*k = retired
		s.index(k)
	}
	hash := k.Hash
	s.mu.Unlock()
	if changed {
		s.watchers.Notify([]string{hash})
	}
	return nil
}

// Touch implements apikey.Store.
func (s *Store) Touch(ctx context.Context, used map[string]time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, at := range used {
		if k := s.byID[id]; k != nil && at.After(k.LastUsedAt) {
			k.LastUsedAt = keyprep.T(at)
		}
	}
	return nil
}

// Rotate implements apikey.Store. The successor keeps the old key's plan and
// QuotaID, so it spends the same quota. Rotations for one user run one after
// another under the store's lock: concurrent calls all succeed, each replacing the
// key the previous one created.
func (s *Store) Rotate(ctx context.Context, userID string, next *apikey.Key, now time.Time, grace time.Duration) (apikey.Key, error) {
	if err := keyprep.CheckNext(next, now, grace); err != nil {
		return apikey.Key{}, fmt.Errorf("apikey/memstore: rotate: %w", err)
	}
	s.mu.Lock()
	old, err := s.rotate(userID, next, now, grace)
	s.mu.Unlock()
	if err != nil {
		return apikey.Key{}, err
	}
	s.watchers.Notify([]string{old.Hash, next.Hash})
	return old, nil
}

// rotate does Rotate's work; s.mu is held for writing.
func (s *Store) rotate(userID string, next *apikey.Key, now time.Time, grace time.Duration) (apikey.Key, error) {
	cur := s.current[userID]
	if cur == nil {
		return apikey.Key{}, apikey.ErrNoActiveKey
	}
	keyprep.Successor(next, *cur, now)
	if s.byID[next.ID] != nil || s.byHash[next.Hash] != nil {
		return apikey.Key{}, errDuplicate
	}
	if grace > 0 {
		s.unindex(cur)
		cur.ExpiresAt = keyprep.Expiry(now, grace)
		s.index(cur)
	} else {
		s.revoke(cur, keyprep.RotateReason, now)
	}
	if err := s.insert(*next); err != nil {
		return apikey.Key{}, err // unreachable: checked above, under the same lock
	}
	return *cur, nil
}
