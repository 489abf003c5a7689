package storetest_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
)

// cachedStore is an apikey.Store of one's own: it keeps the keys that ByHash
// returned, the lookup every request makes, in front of another store, and drops
// them whenever a key is revoked, retired or rotated. Its test file checks it with
// the suite:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) apikey.Store {
//			return newCachedStore(memstore.New())
//		})
//	}
//
// The suite would catch a cache that kept serving a revoked key as active.
type cachedStore struct {
	apikey.Store
	mu      sync.Mutex
	byHash  map[string]apikey.Key
	gen     uint64 // bumped by every drop: a lookup that raced one is not kept
	lookups int    // lookups that reached the store beneath
}

func newCachedStore(s apikey.Store) *cachedStore {
	return &cachedStore{Store: s, byHash: make(map[string]apikey.Key)}
}

func (c *cachedStore) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	c.mu.Lock()
	k, ok := c.byHash[hash]
	gen := c.gen
	if !ok {
		c.lookups++
	}
	c.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := c.Store.ByHash(ctx, hash)
	if err != nil {
		return k, err
	}
	c.mu.Lock()
	if c.gen == gen {
		c.byHash[hash] = k
	}
	c.mu.Unlock()
	return k, nil
}

// drop forgets keys; with none, it forgets everything (the store failed, so what
// changed is unknown).
func (c *cachedStore) drop(keys ...apikey.Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if len(keys) == 0 {
		clear(c.byHash)
	}
	for _, k := range keys {
		delete(c.byHash, k.Hash)
	}
}

func (c *cachedStore) Revoke(ctx context.Context, id, reason string, now time.Time) error {
	k, err := c.Store.ByID(ctx, id) // a key's hash never changes: look it up first
	if err != nil {
		return err
	}
	defer c.drop(k)
	return c.Store.Revoke(ctx, id, reason, now)
}

func (c *cachedStore) RevokeUser(ctx context.Context, userID, reason string, now time.Time) ([]apikey.Key, error) {
	revoked, err := c.Store.RevokeUser(ctx, userID, reason, now)
	if err != nil {
		c.drop()
		return nil, err
	}
	if len(revoked) > 0 {
		c.drop(revoked...) // RevokeUser says which keys to forget
	}
	return revoked, nil
}

func (c *cachedStore) Rotate(ctx context.Context, userID string, next *apikey.Key, now time.Time, grace time.Duration) (apikey.Key, error) {
	old, err := c.Store.Rotate(ctx, userID, next, now, grace)
	if err != nil {
		c.drop()
		return old, err
	}
	c.drop(old) // revoked, or expiring: either way no longer what the cache holds
	return old, nil
}

func (c *cachedStore) Retire(ctx context.Context, id, plan, quotaID string, expiresAt time.Time) error {
	k, err := c.Store.ByID(ctx, id)
	if err != nil {
		return err
	}
	defer c.drop(k) // its plan, quota and expiry change
	return c.Store.Retire(ctx, id, plan, quotaID, expiresAt)
}

func Example() {
	ctx := context.Background()
	keys := newCachedStore(memstore.New())
	raw, k, _ := apikey.New("acme_", "user_42", "gold", time.Now())
	if err := keys.Create(ctx, &k); err != nil {
		panic(err)
	}
	// The Authenticator's own cache is off, so that every request reaches the
	// store (a store that does not implement apikey.Changes would leave a revoked
	// key in that cache for up to a FallbackTTL).
	auth := apikey.NewAuthenticator(keys, apikey.Config{Cache: apikey.CacheConfig{Size: -1}})
	for range 3 {
		p, err := auth.Authenticate(ctx, raw)
		fmt.Println(p.UserID, err)
	}
	fmt.Println("lookups:", keys.lookups)

	if _, err := keys.RevokeUser(ctx, "user_42", "account closed", time.Now()); err != nil {
		panic(err)
	}
	_, err := auth.Authenticate(ctx, raw)
	fmt.Println(err)
	// Output:
	// user_42 <nil>
	// user_42 <nil>
	// user_42 <nil>
	// lookups: 1
	// apikey: invalid or revoked API key: apikey: key revoked
}
