package tollgate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/problem"
)

// The gate issues and revokes keys for billing (entitlement.Service) as well.
var _ entitlement.KeyIssuer = (*Gate)(nil)

// MaxGrace is the longest grace period Rotate and Issue give the key they
// replace: apikey.MaxGrace, seven days.
const MaxGrace = apikey.MaxGrace

// ErrBadGrace: Rotate or Issue was given a grace period below zero or above
// MaxGrace (HTTP 400, its detail naming the request field grace_seconds, in
// which a dashboard takes it).
var ErrBadGrace error = badGrace{}

// errInvalidGrace is ErrBadGrace's row of the problem table.
var errInvalidGrace = problem.New(problem.Invalid, "tollgate: grace period out of range")

// badGrace is ErrBadGrace: an Invalid answer whose detail names the field.
type badGrace struct{}

func (badGrace) Error() string {
	return "tollgate: grace period must be from 0 to " + MaxGrace.String()
}

func (badGrace) Unwrap() error { return errInvalidGrace }

// ProblemDetail implements the problem table's per-instance detail.
func (badGrace) ProblemDetail() string {
	return `Invalid body field "grace_seconds": must be an integer from 0 to ` +
		strconv.FormatInt(int64(MaxGrace/time.Second), 10)
}

func checkGrace(grace time.Duration) error {
	if grace < 0 || grace > MaxGrace {
		return ErrBadGrace
	}
	return nil
}

// Issue issues a new active key on the named plan with a monthly quota of limit
// calls (0: the plan's MonthlyCallLimit), its cycle starting now, in place of the
// user's active keys. With grace 0 it revokes them (recording reason). With grace
// > 0 (a plan change that lets the customer deploy the new key first) it retires
// them instead: each keeps working until now+grace (or its own earlier expiry,
// if it was expiring already), on the new plan's limits and spending the new
// key's quota, so the two keys share one monthly allowance and the old key gains
// nothing by the change. It returns the raw key, which exists nowhere else: show
// it to its owner once.
//
// On the SQL stores the revocations or retirements, the key and its quota commit
// together, in the transaction ctx carries if it carries one (entitlement/sqlstore's
// Update hands one over) or in one of their own; the memory stores apply them one
// after another. Leases the gate held on the replaced keys' quotas are given back
// after the commit. It returns entitlement.ErrUnknownPlan for a plan the catalog
// lacks or one with no monthly limit when limit is 0, and ErrBadGrace for a grace
// outside 0 to MaxGrace.
func (g *Gate) Issue(ctx context.Context, userID, planName string, limit int64, reason string, grace time.Duration) (string, apikey.Key, error) {
	if userID == "" {
		return "", apikey.Key{}, errors.New("tollgate: issue: empty user ID")
	}
	p, ok := g.catalog[planName]
	if !ok || limit < 0 || (limit == 0 && p.MonthlyCallLimit <= 0) {
		return "", apikey.Key{}, fmt.Errorf("%w %q", entitlement.ErrUnknownPlan, planName)
	}
	if err := checkGrace(grace); err != nil {
		return "", apikey.Key{}, fmt.Errorf("tollgate: issue: %w", err)
	}
	if limit == 0 {
		limit = p.MonthlyCallLimit
	}
	var (
		raw      string
		k        apikey.Key
		replaced []apikey.Key
	)
	err := g.atomic(ctx, func(ctx context.Context) error {
		now := g.now()
		var err error
		if raw, k, err = apikey.New(g.prefix, userID, planName, now); err != nil {
			return err
		}
		// The new key's ID, and so its quota's, is known before it is stored:
		// the retired keys spend that quota.
		k.ID = apikey.NewID()
		k.QuotaID = k.ID
		if grace == 0 {
			replaced, err = g.keys.RevokeUser(ctx, userID, reason, now)
		} else {
			replaced, err = g.retireUser(ctx, userID, planName, k.QuotaID, now, grace)
		}
		if err != nil {
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
	g.dropLeases(ctx, replaced)
	return raw, k, nil
}

// retireUser retires every active key of the user that has not expired yet onto
// plan and quotaID until now+grace, and returns them as they were (their old
// quotas, whose leases the caller drops).
func (g *Gate) retireUser(ctx context.Context, userID, plan, quotaID string, now time.Time, grace time.Duration) ([]apikey.Key, error) {
	keys, err := g.keys.ListByUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	var retired []apikey.Key
	for _, old := range keys {
		if !old.Active() || old.Expired(now) {
			continue
		}
		if err := g.keys.Retire(ctx, old.ID, plan, quotaID, now.Add(grace)); err != nil {
			return nil, err
		}
		retired = append(retired, old)
	}
	return retired, nil
}

// dropLeases gives the leased calls of replaced keys' quotas back to the quota
// store, once their revocation or retirement has committed. A failure keeps them
// for the background loop to give back.
func (g *Gate) dropLeases(ctx context.Context, replaced []apikey.Key) {
	seen := make(map[string]bool, len(replaced))
	for _, k := range replaced {
		if !seen[k.QuotaID] {
			seen[k.QuotaID] = true
			_ = g.leases.Drop(ctx, k.QuotaID)
		}
	}
}

// Rotate replaces the user's current key (active, not expiring) with a new one
// on the same plan that keeps spending the same quota (its QuotaID), so rotating
// never resets usage. With grace 0 the old key is refused from then on; with
// grace > 0 it keeps working until now+grace beside the new one, both spending
// the one quota, and is refused from then on (by every replica: the key cache
// never serves it past that moment). Keys that were expiring already keep their
// own expiry. It returns the new raw key, to be shown once, and the new key;
// apikey.ErrNoActiveKey when the user has no current key, ErrBadGrace for a
// grace outside 0 to MaxGrace.
func (g *Gate) Rotate(ctx context.Context, userID string, grace time.Duration) (string, apikey.Key, error) {
	if err := checkGrace(grace); err != nil {
		return "", apikey.Key{}, fmt.Errorf("tollgate: rotate: %w", err)
	}
	now := g.now()
	raw, next, err := apikey.New(g.prefix, userID, "", now)
	if err != nil {
		return "", apikey.Key{}, err
	}
	if _, err := g.keys.Rotate(ctx, userID, &next, now, grace); err != nil {
		return "", apikey.Key{}, fmt.Errorf("tollgate: rotate: %w", err)
	}
	return raw, next, nil
}

// RevokeUser revokes every active key of the user, expiring ones included,
// recording reason, and returns how many it revoked.
func (g *Gate) RevokeUser(ctx context.Context, userID, reason string) (int, error) {
	revoked, err := g.keys.RevokeUser(ctx, userID, reason, g.now())
	if err != nil {
		return 0, fmt.Errorf("tollgate: revoke: %w", err)
	}
	g.dropLeases(ctx, revoked)
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
