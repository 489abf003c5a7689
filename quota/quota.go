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
//   - Leases spends calls from batches it reserves from a Store, so that the
//     store sees one write per batch rather than one per call (see Leases below).
//   - RetryAfter says how long a refused caller waits for the next cycle.
//
// quota knows nothing of API keys or HTTP: whether a key may spend (it is active)
// is decided before its quota is reserved, and the HTTP metering (headers, giving
// back a call the handler did not serve) is the root package tollgate's Gate.
//
// Every function takes the current time as an argument, so a 30-day cycle can be
// tested without waiting for it.
//
// # Leases
//
// Leases.Take spends one call from a lease: calls this process reserved from the
// store in one Reserve and keeps in memory. These are its promises.
//
// Batch size. A lease's size is the calls it holds right after a reservation. A
// quota's first lease is one call. Each later one scales the last to last Window
// (2 s) at the rate the last was spent, and at most doubles and at least halves
// it: a lease spent in less than Window makes the next larger (twice as large
// while traffic grows fast), one that lasted longer makes it smaller. The size is
// then at most MaxBatch (1,000) and at most ceil(limit × LimitFraction) (1% of the
// limit). A batch is what the lease lacks of its next size, at most half of what
// the store had left at this process's last reservation, and at least 1. Near
// the limit batches shrink to one call, reservations become per call, and several
// processes serve the limit to the last call between them. A lease of 4 calls or
// more is refilled ahead: the Take that brings it down to a quarter of its size,
// served already, reserves the next batch while the other Takes spend the rest,
// so that a hot quota does not stall while the store answers.
//
// Exactness. Every leased call is counted in the store when it is reserved, and
// Reserve is atomic, so the calls served by all processes together never exceed
// the limit: not one over. A refused Take leaves no lease behind.
//
// Crash bound. A process that dies without Close loses the unspent calls of its
// leases: they stay counted as used until the cycle ends (under-admission, never
// over-admission). That is at most one lease per quota (plus calls refunded into
// it since, and refunds not yet given back): at most ceil(limit × LimitFraction)
// and MaxBatch calls, and about Window of the quota's traffic at the rate its
// last lease was spent (when traffic falls sharply, a lease is still at least
// half the one before).
//
// Cycle boundary. A lease never carries calls across a cycle boundary: a Take at
// or after its cycle end discards the lease (its leftover is void: the cycle
// restarted, and a Release would change nothing) and reserves in the new cycle,
// which the store's Reserve opens. A refund for an ended cycle is dropped.
//
// Refunds. Refund gives a call that was not served back to the local lease with
// no I/O, so it works during a store outage, and the next Take spends it. Drop,
// Expire (for leases idle for IdleTimeout) and Close give leftovers back to the
// store, so that once they have run the store's count equals the calls served.
// When the store fails, Expire and Close keep the leftover, still spendable, for
// the next try; Take keeps serving held leases while the store is down.
//
// Faults mid-commit. A store may be unable to tell whether a reservation or a
// release took effect (its connection broke as the change committed:
// InDoubtError). Leases never spends the calls of a reservation in doubt; Expire
// and Close ask the store (Confirmer) once it answers again, give back a
// reservation that did take effect and repeat a release that did not, so even
// then no call stays charged unserved and none is given back twice.
//
// Concurrency. One Take per quota reserves at a time: the others spend what the
// lease still holds, or wait for the reservation and spend the batch it brings,
// or share its refusal or failure (no thundering herd of reservations). Quotas
// are spread over shards with a lock each, held only for memory work, never
// across a store call, so different quotas do not wait for each other. Take on a
// held lease takes one lock and allocates nothing.
//
// Remaining. The Usage a Take returns has Remaining() = the store's remainder as
// this process's last reservation saw it plus the lease's unspent calls: what this
// process can still spend at most. In one process it is exact. Across processes,
// other processes' spending since this process's last reservation is not
// subtracted yet, while their unspent leases already are (they count as used in
// the store). Expire re-reads (Store.Usage) each quota whose lease was spent from
// since, at most once a second, so the view is at most a second or one lease
// behind; a re-read that finds the quota replaced (another cycle start or limit,
// as a Put makes) discards the lease. The store's own Usage counts every unspent
// lease as used, so it runs ahead of the calls served by at most one lease per
// process and quota until the leases are given back.
//
// Between processes, a Take may be refused while another process still holds
// leased calls (its idea of what is left is as old as its last reservation): at
// most that process's lease, ceil(limit × LimitFraction) calls. That process's
// next Takes spend them, or its Expire gives them back once they idle for
// IdleTimeout, so the limit is still served to the last call.
package quota

import (
	"context"
	"fmt"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
)

// DefaultCycle is the length of a quota cycle when a store is given none: 30 days.
const DefaultCycle = 30 * 24 * time.Hour

// Sentinel errors, matched with errors.Is. Stores wrap backend errors with %w and
// their package name, so anything else is a failed backend.
var (
	// ErrExceeded is the refusal of Consume and Leases.Take: the quota has no
	// calls left in this cycle. It answers HTTP 429.
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

// InDoubtError is a Reserve's or a Release's error when the store cannot tell
// whether the change took effect: the connection to the database broke while it
// committed, and the store could not ask afterwards. A Confirmer tells later.
// Leases never spends calls of a reservation in doubt: once confirmed, they are
// given back; a release in doubt that did not happen is made again. So a fault
// that strikes mid-commit neither charges calls nobody was served nor gives back
// calls twice.
type InDoubtError struct {
	// Token names the change for Confirmer.Confirm.
	Token string
	// Calls is what the change would have granted (a reservation) or given back
	// (a release), in the cycle that started at CycleStart.
	Calls      int64
	CycleStart time.Time
	Release    bool
	Err        error
}

func (e *InDoubtError) Error() string {
	what := "reservation"
	if e.Release {
		what = "release"
	}
	return fmt.Sprintf("quota: %s of %d calls in doubt: %v", what, e.Calls, e.Err)
}

func (e *InDoubtError) Unwrap() error { return e.Err }

// Confirmer is implemented by stores whose Reserve and Release can end in doubt
// (InDoubtError): Confirm reports whether the change named by token took effect.
// It fails, changing nothing, while the store is unreachable.
type Confirmer interface {
	Confirm(ctx context.Context, token string) (applied bool, err error)
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
