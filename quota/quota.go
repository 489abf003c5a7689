// Package quota counts each API key's calls against a monthly limit over a rolling
// cycle, atomically, so that no key ever exceeds its limit however many requests or
// replicas race.
//
// A key's cycle starts at its cycle_start and lasts Cycle (30 days by default). The
// first reservation at or after cycle_start+Cycle restarts the cycle at that moment
// with nothing used, in the same atomic step as the reservation itself.
//
// The pieces:
//   - Store is the counter contract; Reserve(n) grants up to n calls in one step and
//     Consume reserves one; Release gives granted calls back. A refused call is not
//     counted; a revoked key consumes nothing.
//   - quota/memstore keeps counters in one process; quota/sqlstore keeps them in the
//     api_keys table on PostgreSQL or SQLite, shared by every replica;
//     quota/storetest is the conformance suite both pass.
//   - Middleware meters each authenticated request, gives the call back when the
//     handler does not serve it (a 4xx or 5xx answer), and sets the X-Quota-* headers;
//     WriteError answers refusals as RFC 9457 problems (429, 403, or 503 when the
//     store fails: the quota guards money, so it fails closed).
//
// Every function takes the current time as an argument or through Config.Now, so
// a 30-day cycle can be tested without waiting for it.
package quota

import (
	"context"
	"errors"
	"time"
)

// DefaultCycle is the length of a quota cycle: 30 days.
const DefaultCycle = 30 * 24 * time.Hour

// Sentinel errors, matched with errors.Is. Stores wrap backend errors with %w.
var (
	// ErrExceeded: the key has no calls left in this cycle (HTTP 429).
	ErrExceeded = errors.New("quota: monthly API quota exceeded")
	// ErrNotFound: the store holds no quota for that key ID.
	ErrNotFound = errors.New("quota: key not found")
	// ErrRevoked: the key is revoked and consumes nothing.
	ErrRevoked = errors.New("quota: key revoked")
)

// Usage is a key's quota after a reservation.
type Usage struct {
	Limit      int64
	Used       int64
	CycleStart time.Time
	// Reset is when the cycle ends: CycleStart plus the cycle length.
	Reset time.Time
}

// Remaining returns the calls left in the cycle, never below zero.
func (u Usage) Remaining() int64 { return max(u.Limit-u.Used, 0) }

// CycleEnd returns the end of the cycle that starts at start.
func CycleEnd(start time.Time, cycle time.Duration) time.Time {
	if cycle <= 0 {
		cycle = DefaultCycle
	}
	return start.Add(cycle)
}

// Due reports whether the cycle that started at start is over at now, so the next
// reservation restarts it: now >= start+cycle.
func Due(start, now time.Time, cycle time.Duration) bool {
	return !now.Before(CycleEnd(start, cycle))
}

// Store keeps per-key counters. Implementations are safe for concurrent use by many
// goroutines and, for shared backends, by many processes.
type Store interface {
	// Reserve asks for n (≥ 1) calls for the key with that ID at now. In one atomic
	// step it restarts the key's cycle at now if the cycle is due, then grants
	// min(n, remaining) calls and counts only those. It returns the number granted
	// (0..n) and the usage after the step. Granting nothing is not an error: the
	// caller decides (Consume turns it into ErrExceeded). A revoked key returns
	// ErrRevoked and an unknown one ErrNotFound, and neither counts anything.
	Reserve(ctx context.Context, keyID string, n int64, now time.Time) (granted int64, u Usage, err error)

	// Release gives back n (≥ 1) calls that a Reserve granted the key with that ID
	// in the cycle that started at cycleStart (the CycleStart of the Usage that
	// Reserve returned), in one atomic step. If the key's cycle has restarted since,
	// it changes nothing: the old cycle's calls are gone with it. calls used never
	// go below zero. A revoked key changes nothing and returns nil; an unknown key
	// returns ErrNotFound.
	Release(ctx context.Context, keyID string, n int64, cycleStart time.Time) error
}

// Consume reserves one call: it returns the usage after it, or ErrExceeded (with
// the usage, for the response headers) when the key has no calls left.
func Consume(ctx context.Context, s Store, keyID string, now time.Time) (Usage, error) {
	granted, u, err := s.Reserve(ctx, keyID, 1, now)
	if err != nil {
		return u, err
	}
	if granted == 0 {
		return u, ErrExceeded
	}
	return u, nil
}
