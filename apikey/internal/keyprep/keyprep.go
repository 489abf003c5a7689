// Package keyprep validates and completes keys the way every apikey.Store does, so
// that the stores agree on what Create and Rotate store.
package keyprep

import (
	"errors"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

// RotateReason is the revoke reason Rotate records on the key it replaces.
const RotateReason = "rotated"

// T returns t in UTC truncated to microseconds, the precision the SQL stores keep.
// The zero time stays zero.
func T(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// ForCreate checks k and completes it as apikey.Store.Create documents: an empty
// ID gets apikey.NewID(), an empty QuotaID is the ID, an empty Status means active,
// and every time (ExpiresAt included) is truncated to T. It changes nothing when
// it returns an error.
func ForCreate(k *apikey.Key) error {
	switch {
	case k.UserID == "":
		return errors.New("apikey: key has no user ID")
	case k.Hash == "":
		return errors.New("apikey: key has no hash")
	case k.CreatedAt.IsZero():
		return errors.New("apikey: key has no creation time")
	}
	switch k.Status {
	case "":
		k.Status = apikey.StatusActive
	case apikey.StatusActive, apikey.StatusRevoked:
	default:
		return errors.New("apikey: unknown key status")
	}
	if k.ID == "" {
		k.ID = apikey.NewID()
	}
	if k.QuotaID == "" {
		k.QuotaID = k.ID
	}
	k.CreatedAt = T(k.CreatedAt)
	k.LastUsedAt = T(k.LastUsedAt)
	k.RevokedAt = T(k.RevokedAt)
	k.ExpiresAt = T(k.ExpiresAt)
	return nil
}

// CheckNext checks the arguments of Rotate before the store changes anything.
func CheckNext(next *apikey.Key, now time.Time, grace time.Duration) error {
	switch {
	case next.Hash == "":
		return errors.New("apikey: successor key has no hash")
	case now.IsZero():
		return errors.New("apikey: rotation has no time")
	case grace < 0:
		return errors.New("apikey: negative grace period")
	}
	return nil
}

// Expiry returns when a key replaced at now with grace expires, as stores keep
// it (T); grace is checked by CheckNext and positive.
func Expiry(now time.Time, grace time.Duration) time.Time { return T(now.Add(grace)) }

// CheckRetire checks the arguments of Retire before the store changes anything.
func CheckRetire(quotaID string, expiresAt time.Time) error {
	switch {
	case quotaID == "":
		return errors.New("apikey: retire: no quota ID")
	case expiresAt.IsZero():
		return errors.New("apikey: retire: no expiry")
	}
	return nil
}

// Retired returns k as Retire leaves it: on plan and quotaID, expiring at
// expiresAt (T) unless it expires earlier already; and whether that differs from
// k. k is active.
func Retired(k apikey.Key, plan, quotaID string, expiresAt time.Time) (apikey.Key, bool) {
	out := k
	out.Plan, out.QuotaID = plan, quotaID
	if at := T(expiresAt); k.ExpiresAt.IsZero() || at.Before(k.ExpiresAt) {
		out.ExpiresAt = at
	}
	return out, out.Plan != k.Plan || out.QuotaID != k.QuotaID || !out.ExpiresAt.Equal(k.ExpiresAt)
}

// Successor completes next, checked by CheckNext, as the key that replaces old at
// now: it keeps old's user, plan and quota (QuotaID, or old's ID if old has none),
// and is active, not expiring, created at now and never used. An empty ID gets a
// new one.
func Successor(next *apikey.Key, old apikey.Key, now time.Time) {
	if next.ID == "" {
		next.ID = apikey.NewID()
	}
	next.UserID = old.UserID
	next.Plan = old.Plan
	next.QuotaID = old.QuotaID
	if next.QuotaID == "" {
		next.QuotaID = old.ID
	}
	next.Status = apikey.StatusActive
	next.CreatedAt = T(now)
	next.LastUsedAt = time.Time{}
	next.RevokedAt = time.Time{}
	next.RevokeReason = ""
	next.ExpiresAt = time.Time{}
}
