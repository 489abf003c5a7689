// Package quota counts calls against a limit per cycle (30 days by default),
// atomically, so that no quota is ever exceeded however many requests or replicas
// race.
//
// A quota has an ID (an API key's QuotaID), a limit, and a cycle that starts at its
// cycle start and lasts the store's cycle length. The first reservation at or after
// cycle start + cycle restarts the cycle at that moment with nothing used, in the
// same atomic step as the reservation itself.
//
// The pieces:
//   - Store is the counter contract: Put sets a quota, Reserve(n) grants up to n
//     calls in one step (Consume reserves one and turns a refusal into
//     ErrExceeded), Release gives granted calls back, Usage reads without counting.
//     A refused call is not counted.
//   - quota/memstore keeps quotas in one process; quota/sqlstore keeps them in a
//     table on PostgreSQL or SQLite (by default the api_keys table the key store
//     writes), shared by every replica; quota/storetest is the conformance suite
//     both pass.
//   - RetryAfter says how long a refused caller waits for the next cycle.
//
// quota knows nothing of API keys or HTTP: whether a key may spend (it is active)
// is decided before its quota is reserved, and the HTTP metering (headers, giving
// back a call the handler did not serve) is the root package tollgate's Gate.
//
// Every function takes the current time as an argument, so a 30-day cycle can be
// tested without waiting for it.
package quota

import (
	"context"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
)

// DefaultCycle is the length of a quota cycle when a store is given none: 30 days.
const DefaultCycle = 30 * 24 * time.Hour

// Sentinel errors, matched with errors.Is. Stores wrap backend errors with %w and
// their package name, so anything else is a failed backend.
var (
	// ErrExceeded is Consume's refusal: the quota has no calls left in this cycle.
	// It answers HTTP 429.
	ErrExceeded = problem.New(problem.QuotaExceeded, "quota: monthly API quota exceeded")
	// ErrNotFound: the store holds no quota with that ID. It answers HTTP 403 like
	// an invalid key, since a key without a quota can spend nothing.
	ErrNotFound = problem.New(problem.InvalidKey, "quota: no quota with that ID")
)

// Usage is a quota's state after a reservation, or as a reservation would find it.
// The zero value is a quota of no calls.
type Usage struct {
	Limit int64
	Used  int64
	// CycleStart is when the current cycle started; Release takes it back to tell
	// the cycle a grant belongs to.
	CycleStart time.Time
	// Reset is when the cycle ends: CycleStart plus the store's cycle length.
	Reset time.Time
}

// Remaining returns the calls left in the cycle, never below zero.
func (u Usage) Remaining() int64 { return max(u.Limit-u.Used, 0) }

// CycleEnd returns the end of the cycle of length cycle that starts at start; a
// cycle ≤ 0 means DefaultCycle.
func CycleEnd(start time.Time, cycle time.Duration) time.Time {
	if cycle <= 0 {
		cycle = DefaultCycle
	}
	return start.Add(cycle)
}

// Due reports whether the cycle that started at start is over at now, so the next
// reservation restarts it: now >= CycleEnd(start, cycle).
func Due(start, now time.Time, cycle time.Duration) bool {
	return !now.Before(CycleEnd(start, cycle))
}

// Store keeps quotas by ID. Implementations are safe for concurrent use by many
// goroutines and, for shared backends, by many processes; each method is one
// atomic step. Every instant is the caller's, so tests choose the time.
type Store interface {
	// Put sets the quota id: limit (≥ 0) calls a cycle, the cycle starting at
	// cycleStart, nothing used; it replaces an existing one. A limit of 0 grants
	// nothing until the next Put.
	Put(ctx context.Context, id string, limit int64, cycleStart time.Time) error

	// Reserve asks for n (≥ 1) calls of quota id at now. In one atomic step it
	// restarts the cycle at now if the cycle is due, then grants min(n, remaining)
	// calls and counts only those. It returns the number granted (0..n) and the
	// usage after the step. Granting nothing is not an error and writes nothing:
	// the caller decides (Consume turns it into ErrExceeded). An unknown id returns
	// ErrNotFound.
	Reserve(ctx context.Context, id string, n int64, now time.Time) (granted int64, u Usage, err error)

	// Release gives back n (≥ 1) calls that a Reserve granted quota id in the cycle
	// that started at cycleStart (the CycleStart of the Usage that Reserve
	// returned), in one atomic step. If the cycle has restarted since (or a Put
	// started another), it changes nothing: the old cycle's calls are gone with
	// it. Calls used never go below zero. An unknown id returns ErrNotFound.
	Release(ctx context.Context, id string, n int64, cycleStart time.Time) error

	// Usage returns quota id as a reservation at now would find it, before it
	// counts anything: a due cycle reads as a fresh one starting at now. It writes
	// nothing. An unknown id returns ErrNotFound.
	Usage(ctx context.Context, id string, now time.Time) (Usage, error)
}

// Consume reserves one call of quota id at now: it returns the usage after it, or
// ErrExceeded with the usage (for the response headers) when no call is left.
// Store errors are returned as they are, with whatever usage came with them.
func Consume(ctx context.Context, s Store, id string, now time.Time) (Usage, error) {
	granted, u, err := s.Reserve(ctx, id, 1, now)
	if err != nil {
		return u, err
	}
	if granted == 0 {
		return u, ErrExceeded
	}
	return u, nil
}

// RetryAfter returns the whole seconds from now until u's cycle ends (u.Reset),
// rounded up, and at least 1: the Retry-After of a refusal.
func RetryAfter(u Usage, now time.Time) int64 {
	d := u.Reset.Sub(now)
	secs := int64(d / time.Second)
	if d%time.Second > 0 {
		secs++
	}
	return max(secs, 1)
}
