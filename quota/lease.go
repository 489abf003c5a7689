package quota

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// LeaseConfig holds the settings of Leases. The zero value is the default: 30-day
// cycles, batches of at most 1,000 calls and 1% of the limit aiming at 2 s of a
// key's traffic, leases idle for 2 s given back.
type LeaseConfig struct {
	// Cycle is the length of a quota cycle; it must be the store's. Zero (or less)
	// means DefaultCycle. A lease ends at the earlier of the cycle end its
	// reservation reported and its cycle start plus Cycle.
	Cycle time.Duration
	// MaxBatch is the largest batch one reservation asks for. Zero (or less) means
	// 1,000.
	MaxBatch int64
	// LimitFraction bounds a batch to ceil(limit × LimitFraction) calls of the
	// quota's limit: the share of a quota that a crash may lose. Zero (or less)
	// means 0.01 (1%); above 1 means 1.
	LimitFraction float64
	// Window is how much of a key's observed traffic a batch aims at: the crash
	// bound in time. Zero (or less) means 2 s.
	Window time.Duration
	// IdleTimeout is how long a lease may go without a Take before Expire gives
	// its leftover back. Zero (or less) means 2 s.
	IdleTimeout time.Duration
}

// The defaults of LeaseConfig.
const (
	defaultMaxBatch      = 1000
	defaultLimitFraction = 0.01
	defaultWindow        = 2 * time.Second
	defaultIdleTimeout   = 2 * time.Second
)

// refreshEvery is how often Expire at most re-reads a quota whose lease is in use,
// so that Remaining counts other processes' spending.
const refreshEvery = time.Second

// leaseShards is a power of two well above the core counts Leases runs on.
const leaseShards = 64

// Leases spends quota calls from in-memory leases: batches reserved from a Store,
// so the store sees one write per batch rather than per call, and never more than
// the limit in all (Reserve is atomic in the store). The package documentation
// states its promises: batch sizes, exactness, the crash bound, the cycle
// boundary, refunds and Remaining.
//
// Take spends; Refund gives back a call that was not served; Drop gives a quota's
// leftover back at once; Expire, run periodically, gives back idle leftovers and
// refreshes what Remaining knows; Close gives everything back. A Leases is safe
// for concurrent use. The zero value is not usable; call NewLeases.
type Leases struct {
	store  Store
	cfg    LeaseConfig
	seed   maphash.Seed
	shards [leaseShards]leaseShard

	reservations, reserved atomic.Uint64
	releases, released     atomic.Uint64
	voided, refunds        atomic.Uint64

	// Reservations and releases in doubt (InDoubtError): never spent, settled by
	// Expire and Close once the store can tell. Rare; one lock for all.
	doubtMu sync.Mutex
	doubts  []doubt
}

// doubt is a reservation or release of n calls of quota id in the cycle
// [start, end) that may or may not have taken effect.
type doubt struct {
	id, token  string
	n          int64
	start, end time.Time
	release    bool
}

// addDoubt records d for Expire and Close to settle.
func (l *Leases) addDoubt(d doubt) {
	l.doubtMu.Lock()
	l.doubts = append(l.doubts, d)
	l.doubtMu.Unlock()
}

// settleDoubts asks the store about every change in doubt at now: a reservation
// that took effect and a release that did not are given back (the calls were
// never spent); what the store cannot answer yet stays in doubt. Doubts of cycles
// ended at now are dropped: their calls are gone with the cycle (a zero now
// drops none; the store ignores a release of an ended cycle anyway).
func (l *Leases) settleDoubts(ctx context.Context, now time.Time) error {
	l.doubtMu.Lock()
	doubts := l.doubts
	l.doubts = nil
	l.doubtMu.Unlock()
	c, ok := l.store.(Confirmer)
	if len(doubts) == 0 || !ok {
		return nil
	}
	var (
		back  []giveBack
		first error
	)
	for _, d := range doubts {
		if !now.IsZero() && !now.Before(d.end) {
			continue
		}
		applied, err := c.Confirm(ctx, d.token)
		switch {
		case err != nil:
			l.addDoubt(d)
			if first == nil {
				first = err
			}
		case applied != d.release: // granted but never spent, or not given back
			back = append(back, giveBack{id: d.id, n: d.n, start: d.start, reset: d.end, end: d.end})
		}
	}
	if err := l.release(ctx, back, false); err != nil && first == nil {
		first = err
	}
	if first != nil {
		return fmt.Errorf("quota: lease: changes in doubt not settled yet: %w", first)
	}
	return nil
}

// leaseShard is one lock and the leases it guards, padded to its own cache lines
// so that keys in neighbouring shards do not slow each other.
type leaseShard struct {
	mu     sync.Mutex
	leases map[string]*lease
	_      [128 - 16]byte // a sync.Mutex and a map pointer take 16 bytes
}

// lease is one quota's state in this process, guarded by its shard's lock.
type lease struct {
	// The lease: unspent calls of the cycle that started at start, spendable while
	// active and before end.
	active  bool
	unspent int64
	start   time.Time // the cycle start the store reported
	reset   time.Time // the cycle end the store reported (Usage.Reset)
	end     time.Time // when the lease is void: min(reset, start + Cycle)

	// The quota as the last reservation or refresh saw it. storeRem is what the
	// store had left then, this lease's calls counted as used.
	view     bool
	limit    int64
	storeRem int64

	// Sizing: the unspent calls right after the last reservation (the lease's
	// size) and when it was made (zero: no timing to go by); lowWater is the
	// quarter of the size at which a Take reserves the next batch ahead; noAhead
	// stops that after a failed or refused reservation, until the next grant.
	size     int64
	leasedAt time.Time
	lowWater int64
	noAhead  bool

	lastUsed    time.Time // the latest instant a Take gave
	touched     bool      // a Take spent from the lease since the last refresh
	refreshedAt time.Time // the last reservation or refresh
	gen         uint64    // changes whenever the store's count of this lease changes

	res  *reservation // the reservation in flight, if any
	owed []owed       // calls to give back to the store, not to spend
}

// owed is calls of the cycle that started at start that the store must get back:
// refunds that found no lease of their cycle, leftovers whose Drop failed.
type owed struct {
	start, end time.Time
	n          int64
}

// reservation is one Store.Reserve in flight; Takes on the same quota wait for it
// rather than reserve beside it.
type reservation struct {
	done    chan struct{}
	waiters int // Takes that began waiting for it, counted under the shard lock
	// After done: the usage and, when it failed or was refused, the error every
	// Take that waited for it answers (ErrExceeded, ErrNotFound, a store error).
	u   Usage
	err error
	// retry: the reserving Take's context ended, so the failure is its own; the
	// Takes that waited try again.
	retry bool
}

// NewLeases returns Leases spending the quotas of store, with cfg's defaults
// filled in.
func NewLeases(store Store, cfg LeaseConfig) *Leases {
	if cfg.Cycle <= 0 {
		cfg.Cycle = DefaultCycle
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = defaultMaxBatch
	}
	switch {
	case !(cfg.LimitFraction > 0): // also NaN
		cfg.LimitFraction = defaultLimitFraction
	case cfg.LimitFraction > 1:
		cfg.LimitFraction = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = defaultWindow
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	l := &Leases{store: store, cfg: cfg, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].leases = make(map[string]*lease)
	}
	return l
}

func (l *Leases) shard(id string) *leaseShard {
	return &l.shards[maphash.String(l.seed, id)%leaseShards]
}

// Take spends one call of quota id at now: from the local lease when it holds one
// for the current cycle, else by reserving a new batch. Usage is the quota as this
// process knows it (see the package documentation on Remaining). ErrExceeded
// (with the usage) when none is left; ErrNotFound; store errors wrapped.
//
// One Take per quota reserves at a time: the others wait for it and spend the
// batch it brings, or share its refusal or failure. Take on a held lease takes
// one shard lock and allocates nothing.
func (l *Leases) Take(ctx context.Context, id string, now time.Time) (Usage, error) {
	sh := l.shard(id)
	sh.mu.Lock()
	var last *reservation // the reservation this Take made or waited for
	for {
		e := sh.leases[id]
		if e == nil {
			e = &lease{}
			sh.leases[id] = e
		}
		if now.After(e.lastUsed) {
			e.lastUsed = now
		}
		if e.active && !now.Before(e.end) {
			l.endCycle(e)
		}
		if e.active && e.unspent > 0 {
			e.unspent--
			e.touched = true
			u := e.usage()
			if e.unspent > e.lowWater || e.unspent == 0 || e.res != nil || e.noAhead {
				sh.mu.Unlock()
				return u, nil
			}
			// The lease runs low: this Take, served already, reserves the next
			// batch while the others go on spending what is left.
			if n := l.size(e, now); n > 0 {
				l.reserve(ctx, sh, e, id, now, n)
			}
			sh.mu.Unlock()
			return u, nil
		}
		if last != nil && last.err != nil && !last.retry {
			sh.mu.Unlock()
			return last.u, last.err
		}
		if r := e.res; r != nil {
			r.waiters++
			sh.mu.Unlock()
			if err := wait(ctx, r); err != nil {
				return Usage{}, err
			}
			sh.mu.Lock()
			last = r
			continue
		}
		r := l.reserve(ctx, sh, e, id, now, l.size(e, now))
		if r.retry { // this Take's own context ended
			sh.mu.Unlock()
			return r.u, r.err
		}
		last = r
	}
}

// wait waits for r, or for ctx to end.
func wait(ctx context.Context, r *reservation) error {
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("quota: lease: %w", ctx.Err())
	}
}

// reserve reserves a batch of n calls for e, quota id, at now. It is called with
// sh locked, unlocks it for the store's call and returns with it locked again, r
// settled. Nothing removes e from its shard while e.res is set.
func (l *Leases) reserve(ctx context.Context, sh *leaseShard, e *lease, id string, now time.Time, n int64) *reservation {
	r := &reservation{done: make(chan struct{})}
	e.res = r
	sh.mu.Unlock()
	settled := false
	defer func() {
		if !settled { // the store panicked: free the quota for the next Take
			sh.mu.Lock()
			e.res = nil
			r.err, r.retry = errors.New("quota: lease: the store panicked"), true
			close(r.done)
			sh.mu.Unlock()
		}
	}()
	granted, u, err := l.store.Reserve(ctx, id, n, now)
	l.reservations.Add(1)
	sh.mu.Lock()
	settled = true
	e.res = nil
	l.settle(ctx, e, id, r, granted, u, err, now)
	close(r.done)
	return r
}

// settle records the outcome of a reservation at now in e and r.
func (l *Leases) settle(ctx context.Context, e *lease, id string, r *reservation, granted int64, u Usage, err error, now time.Time) {
	switch {
	case err != nil:
		e.noAhead = true
		r.u, r.err = u, err
		var doubtful *InDoubtError
		if errors.As(err, &doubtful) && !doubtful.Release && doubtful.Calls > 0 {
			start := doubtful.CycleStart
			l.addDoubt(doubt{id: id, token: doubtful.Token, n: doubtful.Calls, start: start,
				end: l.leaseEnd(Usage{CycleStart: start, Reset: CycleEnd(start, l.cfg.Cycle)})})
		}
		if errors.Is(err, ErrNotFound) {
			l.replaced(e)
		} else {
			r.err = fmt.Errorf("quota: lease: %w", err)
		}
		r.retry = ctx.Err() != nil
		return
	case granted <= 0:
		e.noAhead = true
		e.view, e.limit, e.storeRem = true, u.Limit, u.Remaining()
		r.u, r.err = u, ErrExceeded
		return
	}
	l.reserved.Add(uint64(granted))
	if e.active && !e.start.Equal(u.CycleStart) {
		l.endCycle(e)
	}
	if !e.active {
		e.active, e.unspent = true, 0
		e.start, e.reset, e.end = u.CycleStart, u.Reset, l.leaseEnd(u)
	}
	e.unspent += granted
	e.view, e.limit, e.storeRem = true, u.Limit, u.Remaining()
	e.size, e.leasedAt = e.unspent, now
	e.lowWater, e.noAhead = e.size/4, false
	e.refreshedAt = now
	e.gen++
}

// leaseEnd returns when a lease of u's cycle is void: u.Reset, or earlier if the
// configured cycle is shorter than the store's.
func (l *Leases) leaseEnd(u Usage) time.Time {
	end := CycleEnd(u.CycleStart, l.cfg.Cycle)
	if !u.Reset.IsZero() && u.Reset.Before(end) {
		end = u.Reset
	}
	return end
}

// size returns the batch the next reservation for e at now asks for (see the
// package documentation). The lease's next size is its last one scaled to last
// Window at the rate it was spent, within half and twice the last; at most
// MaxBatch and ceil(limit × LimitFraction). The batch is what the lease lacks of
// that size, at most half the store's remainder, and at least 1 when the lease is
// empty; 0 means a lease that is not empty has no room for more.
func (l *Leases) size(e *lease, now time.Time) int64 {
	total := int64(1)
	switch {
	case e.size > 0 && !e.leasedAt.IsZero():
		total = scale(e.size, e.size-e.unspent, now.Sub(e.leasedAt), l.cfg.Window)
	case e.size > 0: // a new cycle: the traffic has not changed
		total = e.size
	}
	total = min(total, l.cfg.MaxBatch)
	if e.view {
		total = min(total, ceilInt(float64(e.limit)*l.cfg.LimitFraction))
	}
	n := total - e.unspent
	if e.view {
		n = min(n, e.storeRem/2)
	}
	if e.unspent == 0 {
		n = max(n, 1)
	}
	return n
}

// scale returns the size of a lease that would last window at the rate that spent
// spent calls of the last one, of size last, in d: at most 2 × last and at least
// last/2 (and 1).
func scale(last, spent int64, d, window time.Duration) int64 {
	hi := 2 * float64(last)
	if d <= 0 {
		return ceilInt(hi)
	}
	target := float64(spent) * float64(window) / float64(d)
	return ceilInt(min(max(target, float64(max(last/2, 1))), hi))
}

// ceilInt returns f rounded up, as an int64 saturated at math.MaxInt64.
func ceilInt(f float64) int64 {
	f = math.Ceil(f)
	if f >= math.MaxInt64 { // 2⁶³ as a float64
		return math.MaxInt64
	}
	return int64(f)
}

// endCycle voids e's lease: its cycle is over, and its leftover with it. The
// store's remainder in the next cycle is the whole limit as far as e knows.
func (l *Leases) endCycle(e *lease) {
	if e.unspent > 0 {
		l.voided.Add(uint64(e.unspent))
	}
	e.active, e.unspent = false, 0
	e.storeRem = e.limit
	e.leasedAt = time.Time{}
	e.gen++
}

// replaced voids e's lease and forgets its sizing: the quota was replaced (a Put)
// or removed, so nothing of what e knew holds.
func (l *Leases) replaced(e *lease) {
	l.endCycle(e)
	e.view, e.size = false, 0
}

// usage returns the quota as this process knows it: the store's remainder at the
// last reservation or refresh plus the lease's unspent calls, never above the limit.
func (e *lease) usage() Usage {
	rem := e.limit
	if e.unspent <= e.limit-e.storeRem {
		rem = e.storeRem + e.unspent
	}
	return Usage{Limit: e.limit, Used: e.limit - rem, CycleStart: e.start, Reset: e.reset}
}

// owe records n calls of the cycle from start to end for the store to get back.
func (e *lease) owe(start, end time.Time, n int64) {
	for i := range e.owed {
		if e.owed[i].start.Equal(start) {
			e.owed[i].n += n
			return
		}
	}
	e.owed = append(e.owed, owed{start: start, end: end, n: n})
}

// Refund gives back one call that Take returned, in the cycle u.CycleStart, to the
// local lease — no I/O, so it cannot fail during an outage; the next Take spends
// it. A refund for a cycle that has ended is dropped (the old cycle's calls are
// gone with it). A refund that finds no lease of its cycle (Drop or Expire gave it
// back meanwhile) is given to the store by the next Expire, and is not spent.
func (l *Leases) Refund(id string, u Usage) {
	sh := l.shard(id)
	sh.mu.Lock()
	e := sh.leases[id]
	switch {
	case e != nil && !u.Reset.IsZero() && !e.lastUsed.Before(u.Reset):
		// A Take has seen u's cycle end: its calls are gone.
	case e != nil && e.start.After(u.CycleStart):
		// The lease is in a later cycle.
	case e != nil && e.active && e.start.Equal(u.CycleStart):
		e.unspent++
	default:
		if e == nil {
			e = &lease{}
			sh.leases[id] = e
		}
		e.owe(u.CycleStart, u.Reset, 1)
	}
	sh.mu.Unlock()
	l.refunds.Add(1)
}

// giveBack is calls that a Release gives back to the store: a lease's leftover
// (spendable again if the release fails) or owed calls.
type giveBack struct {
	id                string
	n                 int64
	start, reset, end time.Time
	spendable         bool
	// The lease as it was, to restore it when the release fails.
	limit, storeRem int64
	lastUsed        time.Time
}

// collect appends e's leftover and owed calls to back and leaves e holding none.
func (l *Leases) collect(e *lease, id string, back []giveBack) []giveBack {
	if e.active && e.unspent > 0 {
		back = append(back, giveBack{
			id: id, n: e.unspent, start: e.start, reset: e.reset, end: e.end, spendable: true,
			limit: e.limit, storeRem: e.storeRem, lastUsed: e.lastUsed,
		})
	}
	e.active, e.unspent = false, 0
	e.gen++
	return l.collectOwed(e, id, back)
}

// collectOwed appends e's owed calls to back and clears them.
func (l *Leases) collectOwed(e *lease, id string, back []giveBack) []giveBack {
	for _, o := range e.owed {
		back = append(back, giveBack{id: id, n: o.n, start: o.start, reset: o.end, end: o.end, lastUsed: e.lastUsed})
	}
	e.owed = nil
	return back
}

// release gives back to the store, one Release each, and restores what failed: a
// spendable leftover as a lease again if spendable is set, else as owed calls.
func (l *Leases) release(ctx context.Context, back []giveBack, spendable bool) error {
	var (
		failed int
		first  error
	)
	var d *InDoubtError
	for i, b := range back {
		if err := ctx.Err(); err != nil {
			for _, rest := range back[i:] {
				l.restore(rest, spendable)
			}
			failed += len(back) - i
			if first == nil {
				first = err
			}
			break
		}
		err := l.store.Release(ctx, b.id, b.n, b.start)
		switch {
		case err == nil:
			l.releases.Add(1)
			l.released.Add(uint64(b.n))
		case errors.Is(err, ErrNotFound):
			// The quota is gone, and its calls with it.
		case errors.As(err, &d):
			// Maybe given back, maybe not: settleDoubts finds out.
			l.addDoubt(doubt{id: b.id, token: d.Token, n: b.n, start: b.start, end: b.end, release: true})
			failed++
			if first == nil {
				first = err
			}
		default:
			l.restore(b, spendable)
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("quota: lease: %d of %d releases failed, kept for the next try: %w", failed, len(back), first)
	}
	return nil
}

// restore puts back what a failed release should have given the store.
func (l *Leases) restore(b giveBack, spendable bool) {
	sh := l.shard(b.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.leases[b.id]
	if e == nil {
		e = &lease{lastUsed: b.lastUsed}
		sh.leases[b.id] = e
	}
	spendable = spendable && b.spendable
	switch {
	case e.start.After(b.start):
		// The quota moved on to a later cycle: the calls are gone.
	case spendable && e.active && e.start.Equal(b.start):
		e.unspent += b.n
	case spendable && !e.active:
		e.active, e.unspent = true, b.n
		e.start, e.reset, e.end = b.start, b.reset, b.end
		e.view, e.limit, e.storeRem = true, b.limit, b.storeRem
		e.gen++
	default:
		e.owe(b.start, b.end, b.n)
	}
}

// Drop gives id's unspent leased calls back to the store now (revocation, plan
// change): it waits for a reservation in flight, then releases the leftover and
// any calls owed. The next Take reserves anew, from a batch of one. If the store
// fails, the calls are kept to be given back by the next Expire, and not spent.
func (l *Leases) Drop(ctx context.Context, id string) error {
	sh := l.shard(id)
	sh.mu.Lock()
	e := sh.leases[id]
	if e != nil && e.res != nil {
		r := e.res
		sh.mu.Unlock()
		if err := wait(ctx, r); err != nil {
			return err
		}
		sh.mu.Lock()
		e = sh.leases[id]
	}
	if e == nil {
		sh.mu.Unlock()
		return nil
	}
	back := l.collect(e, id, nil)
	e.view, e.size = false, 0
	if e.res == nil { // else a Take began reserving after Drop was called: keep it
		delete(sh.leases, id)
	}
	sh.mu.Unlock()
	return l.release(ctx, back, false)
}

// refreshing is a quota whose usage Expire re-reads, and its lease's gen then.
type refreshing struct {
	id  string
	gen uint64
}

// Expire gives back the leftovers of leases idle for IdleTimeout at now; the
// gate's loop calls it every flush. Errors keep the leftover for the next try.
//
// It also gives back owed calls (refunds that found no lease, failed Drops),
// discards leases whose cycle has ended, forgets quotas idle for IdleTimeout, and
// re-reads (Store.Usage) each quota whose lease was spent from since its last
// reservation or refresh, at most once a second, so that Remaining counts other
// processes' spending; a refresh that finds the quota replaced (another cycle
// start or limit: a Put) or gone voids the lease. ctx bounds the store calls.
func (l *Leases) Expire(ctx context.Context, now time.Time) error {
	var (
		back  []giveBack
		fresh []refreshing
	)
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for id, e := range sh.leases {
			if e.res != nil {
				continue
			}
			if e.active && !now.Before(e.end) {
				l.endCycle(e)
			}
			e.owed = dropEnded(e.owed, now)
			if !now.Before(e.lastUsed.Add(l.cfg.IdleTimeout)) {
				back = l.collect(e, id, back)
				delete(sh.leases, id)
				continue
			}
			back = l.collectOwed(e, id, back)
			if e.active && e.touched && !now.Before(e.refreshedAt.Add(refreshEvery)) {
				fresh = append(fresh, refreshing{id: id, gen: e.gen})
			}
		}
		sh.mu.Unlock()
	}
	return errors.Join(l.release(ctx, back, true), l.refresh(ctx, fresh, now), l.settleDoubts(ctx, now))
}

// dropEnded returns owed without the calls of cycles ended at now.
func dropEnded(owed []owed, now time.Time) []owed {
	kept := owed[:0]
	for _, o := range owed {
		if o.end.IsZero() || now.Before(o.end) {
			kept = append(kept, o)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return kept
}

// refresh re-reads the usage of the quotas in fresh at now and updates their
// leases, unless a reservation or release changed them meanwhile.
func (l *Leases) refresh(ctx context.Context, fresh []refreshing, now time.Time) error {
	var (
		failed int
		first  error
	)
	for _, f := range fresh {
		if ctx.Err() != nil {
			break // the next Expire tries again
		}
		u, err := l.store.Usage(ctx, f.id, now)
		if err != nil && !errors.Is(err, ErrNotFound) {
			failed++
			if first == nil {
				first = err
			}
			continue
		}
		sh := l.shard(f.id)
		sh.mu.Lock()
		e := sh.leases[f.id]
		if e != nil && e.gen == f.gen && e.res == nil && e.active {
			if err != nil || !u.CycleStart.Equal(e.start) || u.Limit != e.limit {
				l.replaced(e)
			} else {
				e.storeRem = u.Remaining()
			}
			e.touched, e.refreshedAt = false, now
		}
		sh.mu.Unlock()
	}
	if failed > 0 {
		return fmt.Errorf("quota: lease: %d of %d refreshes failed: %w", failed, len(fresh), first)
	}
	return nil
}

// Close gives back every lease's leftover (graceful shutdown): call it after the
// last Take has returned. What the store fails to take back is kept, spendable,
// and a later Close or Expire tries again. Leases remains usable after Close.
func (l *Leases) Close(ctx context.Context) error {
	var back []giveBack
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for id, e := range sh.leases {
			back = l.collect(e, id, back)
			if e.res == nil {
				delete(sh.leases, id)
			}
		}
		sh.mu.Unlock()
	}
	return errors.Join(l.release(ctx, back, true), l.settleDoubts(ctx, time.Time{}))
}

// Unspent returns the calls this process holds leased and unspent for quota id in
// the cycle that started at cycleStart: counted as used by the store, not served
// yet. A usage page subtracts them from the store's count to show what was served.
func (l *Leases) Unspent(id string, cycleStart time.Time) int64 {
	sh := l.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.leases[id]; e != nil && e.active && e.start.Equal(cycleStart) {
		return e.unspent
	}
	return 0
}

// LeaseStats counts what Leases holds and has done, for metrics.
type LeaseStats struct {
	Leases  int   // quotas holding a lease with unspent calls
	Unspent int64 // calls leased and not yet spent, over all leases
	Owed    int64 // calls waiting for Expire to give them back (refunds without a lease, failed Drops)
	InDoubt int64 // calls of reservations and releases whose outcome the store could not tell yet

	Reservations uint64 // Store.Reserve calls made
	Reserved     uint64 // calls they were granted
	Releases     uint64 // Store.Release calls that succeeded
	Released     uint64 // calls they gave back
	Voided       uint64 // leased calls discarded unspent: their cycle ended, or the quota was replaced
	Refunds      uint64 // Refund calls
}

// Stats returns the leases held, the calls leased and unspent, and the
// reservations and releases made so far.
func (l *Leases) Stats() LeaseStats {
	s := LeaseStats{
		Reservations: l.reservations.Load(),
		Reserved:     l.reserved.Load(),
		Releases:     l.releases.Load(),
		Released:     l.released.Load(),
		Voided:       l.voided.Load(),
		Refunds:      l.refunds.Load(),
	}
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for _, e := range sh.leases {
			if e.active && e.unspent > 0 {
				s.Leases++
				s.Unspent += e.unspent
			}
			for _, o := range e.owed {
				s.Owed += o.n
			}
		}
		sh.mu.Unlock()
	}
	l.doubtMu.Lock()
	for _, d := range l.doubts {
		s.InDoubt += d.n
	}
	l.doubtMu.Unlock()
	return s
}
