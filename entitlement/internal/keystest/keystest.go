// Package keystest is the entitlement.KeyIssuer that entitlement's tests issue keys
// with: it keeps the keys in an apikey.Store and remembers the monthly limit each
// key was issued with.
package keystest

import (
	"context"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
)

// Prefix starts every key the Issuer generates.
const Prefix = apikey.DefaultPrefix

var _ entitlement.KeyIssuer = (*Issuer)(nil)

// Issuer issues keys into an apikey.Store. Keys carry no limit (a quota store
// keeps it), so the Issuer records the limit of each key it issued, for the tests
// to check. Its key writes go through the context it is called with, so an
// apikey/sqlstore joins the transaction of an entitlement/sqlstore Update on the
// same database. It is safe for concurrent use.
type Issuer struct {
	keys apikey.Store

	mu     sync.Mutex
	limits map[string]int64 // key ID → limit
	graces []time.Duration  // of each Issue, in order
}

// New returns an Issuer on keys.
func New(keys apikey.Store) *Issuer {
	return &Issuer{keys: keys, limits: make(map[string]int64)}
}

// Keys returns the key store the Issuer writes to.
func (i *Issuer) Keys() apikey.Store { return i.keys }

// Issue implements entitlement.KeyIssuer as the gate does: it revokes the user's
// active keys (grace 0) or retires those not expired yet onto plan and the new
// key's quota until now+grace, and creates a new one, in the transaction ctx
// carries if the key store joins it. It records every grace it was given.
func (i *Issuer) Issue(ctx context.Context, userID, plan string, limit int64, reason string, grace time.Duration) (string, apikey.Key, error) {
	now := time.Now()
	raw, k, err := apikey.New(Prefix, userID, plan, now)
	if err != nil {
		return "", apikey.Key{}, err
	}
	k.ID = apikey.NewID()
	k.QuotaID = k.ID
	if grace == 0 {
		if _, err := i.keys.RevokeUser(ctx, userID, reason, now); err != nil {
			return "", apikey.Key{}, err
		}
	} else {
		keys, err := i.keys.ListByUser(ctx, userID)
		if err != nil {
			return "", apikey.Key{}, err
		}
		for _, old := range keys {
			if old.Active() && !old.Expired(now) {
				if err := i.keys.Retire(ctx, old.ID, plan, k.QuotaID, now.Add(grace)); err != nil {
					return "", apikey.Key{}, err
				}
			}
		}
	}
	if err := i.keys.Create(ctx, &k); err != nil {
		return "", apikey.Key{}, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.limits[k.ID] = limit
	i.graces = append(i.graces, grace)
	return raw, k, nil
}

// Graces returns the grace of every Issue that succeeded, in order.
func (i *Issuer) Graces() []time.Duration {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]time.Duration(nil), i.graces...)
}

// RevokeUser implements entitlement.KeyIssuer.
func (i *Issuer) RevokeUser(ctx context.Context, userID, reason string) (int, error) {
	keys, err := i.keys.RevokeUser(ctx, userID, reason, time.Now())
	return len(keys), err
}

// Key implements entitlement.KeyIssuer.
func (i *Issuer) Key(ctx context.Context, id string) (apikey.Key, error) {
	return i.keys.ByID(ctx, id)
}

// Limit returns the monthly limit the key was issued with, and false for a key
// this Issuer did not issue. A key whose transaction rolled back keeps its record,
// though the key itself is gone.
func (i *Issuer) Limit(keyID string) (int64, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	n, ok := i.limits[keyID]
	return n, ok
}
