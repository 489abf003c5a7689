package tollgate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
)

// The gate issues and revokes keys for billing (entitlement.Service) as well.
var _ entitlement.KeyIssuer = (*Gate)(nil)

// Issue revokes the user's active keys (recording reason) and issues a new active
// key on the named plan with a monthly quota of limit calls (0: the plan's
// MonthlyCallLimit), its cycle starting now. It returns the raw key, which exists
// nowhere else: show it to its owner once.
//
// On the SQL stores the revocation, the key and its quota commit together, in the
// transaction ctx carries if it carries one (entitlement/sqlstore's Update hands
// one over) or in one of their own; the memory stores apply them one after another.
// It returns entitlement.ErrUnknownPlan for a plan the catalog lacks or one with no
// monthly limit when limit is 0.
func (g *Gate) Issue(ctx context.Context, userID, planName string, limit int64, reason string, grace time.Duration) (string, apikey.Key, error) {
	if userID == "" {
		return "", apikey.Key{}, errors.New("tollgate: issue: empty user ID")
	}
	p, ok := g.catalog[planName]
	if !ok || limit < 0 || (limit == 0 && p.MonthlyCallLimit <= 0) {
		return "", apikey.Key{}, fmt.Errorf("%w %q", entitlement.ErrUnknownPlan, planName)
	}
	if limit == 0 {
		limit = p.MonthlyCallLimit
	}
	var (
		raw string
		k   apikey.Key
	)
	var revoked []apikey.Key
	err := g.atomic(ctx, func(ctx context.Context) error {
		now := g.now()
		var err error
		if revoked, err = g.keys.RevokeUser(ctx, userID, reason, now); err != nil {
			return err
		}
		if raw, k, err = apikey.New(g.prefix, userID, planName, now); err != nil {
			return err
		}
		if err := g.keys.Create(ctx, &k); err != nil {
			return err
		}
		return g.quotas.Put(ctx, k.QuotaID, limit, now)
	})
	if err != nil {
		return "", apikey.Key{}, fmt.Errorf("tollgate: issue: %w", err)
	}
	g.retire(ctx, revoked)
	return raw, k, nil
}

// retire gives the leased calls of revoked keys' quotas back to the quota store,
// once their revocation has committed. A failure keeps them for the background
// loop to give back.
func (g *Gate) retire(ctx context.Context, revoked []apikey.Key) {
	for _, k := range revoked {
		_ = g.leases.Drop(ctx, k.QuotaID)
	}
}

// Rotate replaces the user's active key with a new one on the same plan that keeps
// spending the same quota (its QuotaID), so rotating never resets usage; the old key
// is refused from then on. It returns the new raw key, to be shown once, and the new
// key; apikey.ErrNoActiveKey when the user has no active key.
func (g *Gate) Rotate(ctx context.Context, userID string, grace time.Duration) (string, apikey.Key, error) {
	now := g.now()
	raw, next, err := apikey.New(g.prefix, userID, "", now)
	if err != nil {
		return "", apikey.Key{}, err
	}
	if _, err := g.keys.Rotate(ctx, userID, &next, now); err != nil {
		return "", apikey.Key{}, fmt.Errorf("tollgate: rotate: %w", err)
	}
	return raw, next, nil
}

// RevokeUser revokes every active key of the user, recording reason, and returns
// how many it revoked.
func (g *Gate) RevokeUser(ctx context.Context, userID, reason string) (int, error) {
	revoked, err := g.keys.RevokeUser(ctx, userID, reason, g.now())
	if err != nil {
		return 0, fmt.Errorf("tollgate: revoke: %w", err)
	}
	g.retire(ctx, revoked)
	return len(revoked), nil
}

// Key returns the key with that ID, or apikey.ErrNotFound.
func (g *Gate) Key(ctx context.Context, id string) (apikey.Key, error) {
	return g.keys.ByID(ctx, id)
}

// atomic runs fn in one transaction when the key store can begin one (the SQL
// stores), and as it is otherwise.
func (g *Gate) atomic(ctx context.Context, fn func(ctx context.Context) error) error {
	if a, ok := g.keys.(interface {
		Atomic(ctx context.Context, fn func(ctx context.Context) error) error
	}); ok {
		return a.Atomic(ctx, fn)
	}
	return fn(ctx)
}
