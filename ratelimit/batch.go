package ratelimit

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// DefaultMaxBatch is the largest batch the Limiter takes from a BatchStore when
// Config.MaxBatch is 0 (see Batches in the package comment for the choice).
const DefaultMaxBatch = 256

// batchShare bounds a batch to 1/batchShare of its window's limit (2.5%, at
// least 1 hit): what one replica may hold back of a bucket, whatever MaxBatch.
const batchShare = 40

const (
	// batchQuick is the age at which a batch is spent "quickly": a bucket whose
	// batch lasted less doubles its next one, and every batchQuick it lasted
	// longer halves it.
	batchQuick = 100 * time.Millisecond
	// batchShards splits the batch table, so that buckets rarely share a lock.
	batchShards = 64
	// batchBuckets bounds the buckets with batch state (batchShards shards of
	// batchBuckets/batchShards each).
	batchBuckets = 1 << 16
)

// batcher is the Limiter's table of batches: per bucket, the hits taken from the
// store and not spent yet, and the takes in flight. Each shard's lock guards its
// map and every field of its entries and flights.
type batcher struct {
	store  BatchStore
	max    int64
	seed   maphash.Seed
	shards [batchShards]batchShard
}

type batchShard struct {
	mu        sync.Mutex
	m         map[string]*batchEntry
	nextSweep time.Time
	batched   uint64 // requests allowed from batches without a store call of their own
	_         [64]byte
}

// batchEntry is one bucket's batch state.
type batchEntry struct {
	rate Rate
	// w is the bucket's latest window as the store reported it, Remaining the
	// least reported for it; the zero Window before the first grant.
	w Window
	// tokens are hits taken and not spent, valid before expiry (no later than
	// the Reset of the window they were taken in).
	tokens int64
	expiry time.Time
	// size is the next batch's size before the bounds by what remains; lastGrant
	// is when the last take was answered.
	size      int64
	lastGrant time.Time
	// flights counts the takes in flight, and open is the latest of them while
	// it may still take claims.
	flights int
	open    *flight
	// wake, when not nil, is closed when a take in flight is answered: requests
	// that found the window exhausted wait on it for the hits those takes bring.
	wake chan struct{}
}

// flight is a TakeBatch in flight. The request that makes it (its taker) and up
// to n-1 others waiting for it hold claims; once it is answered, each waiting
// claimant gets one of the granted hits left for them, and the hits no claimant
// holds go to the entry's tokens.
type flight struct {
	done   chan struct{} // closed when answered
	n      int64         // hits asked for
	claims int64         // claims held, the taker's included
	over   bool          // answered
	left   int64         // granted hits kept for the waiting claimants
	err    error         // the take's error
	retry  bool          // err is the taker's ctx ending: the claimants ask again
}

func newBatcher(store BatchStore, max int64) *batcher {
	b := &batcher{store: store, max: max, seed: maphash.MakeSeed()}
	for i := range b.shards {
		b.shards[i].m = make(map[string]*batchEntry)
	}
	return b
}

func (b *batcher) shard(bucket string) *batchShard {
	return &b.shards[maphash.String(b.seed, bucket)%batchShards]
}

// add makes bucket's entry, sweeping the shard first when it is full or its
// sweep is due; nil when the shard is full of live entries.
func (sh *batchShard) add(bucket string, rate Rate, now time.Time) *batchEntry {
	if len(sh.m) >= batchBuckets/batchShards || !now.Before(sh.nextSweep) {
		sh.sweep(now)
		if len(sh.m) >= batchBuckets/batchShards {
			return nil
		}
	}
	e := &batchEntry{rate: rate}
	sh.m[bucket] = e
	return e
}

// sweep drops the entries whose window is over, with no hit held and nobody
// waiting on them.
func (sh *batchShard) sweep(now time.Time) {
	for k, e := range sh.m {
		if e.flights == 0 && e.wake == nil && !now.Before(e.w.Reset) && !(e.tokens > 0 && now.Before(e.expiry)) {
			delete(sh.m, k)
		}
	}
	sh.nextSweep = now.Add(time.Second)
}

// stats adds the table's counters to s.
func (b *batcher) stats(s *Stats, now time.Time) {
	if b == nil {
		return
	}
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		s.Batched += sh.batched
		s.BatchBuckets += len(sh.m)
		for _, e := range sh.m {
			if e.tokens > 0 && now.Before(e.expiry) {
				s.BatchHeld += e.tokens
			}
		}
		sh.mu.Unlock()
	}
}

// reset forgets what the entry holds: the bucket is taken at another rate than
// its batch was (which the Store contract forbids), so its hits are not spent.
func (e *batchEntry) reset(rate Rate) {
	e.rate, e.w, e.tokens, e.size = rate, Window{}, 0, 0
}

// exhausted reports whether the store said at the last answer that the bucket's
// current window has no hit left.
func (e *batchEntry) exhausted(now time.Time) bool {
	return e.w.Remaining == 0 && now.Before(e.w.Reset)
}

// window is the bucket's window as this process knows it: what the store had
// left at the last answer plus the hits held here.
func (e *batchEntry) window() Window {
	return Window{Limit: e.rate.Limit, Remaining: min(e.w.Remaining+e.tokens, e.rate.Limit), Reset: e.w.Reset}
}

// next returns the size of the take about to start at now and adapts the
// bucket's batch size: doubled when the last batch was spent quickly or another
// take is still in flight, halved for each batchQuick the last one lasted; then
// bounded by most, by 1/batchShare of the limit and by a quarter of what the
// window has left.
func (e *batchEntry) next(now time.Time, most int64) int64 {
	most = min(most, max(e.rate.Limit/batchShare, 1))
	switch since := now.Sub(e.lastGrant); {
	case e.flights > 0 || !e.lastGrant.IsZero() && since < batchQuick:
		if e.size <= most/2 {
			e.size *= 2
		} else {
			e.size = most
		}
	case e.lastGrant.IsZero():
		e.size = 1
	default:
		e.size >>= min(since/batchQuick, 62)
	}
	e.size = min(max(e.size, 1), most)
	left := e.rate.Limit
	if now.Before(e.w.Reset) {
		left = e.w.Remaining
	}
	return max(min(e.size, left/4), 1)
}

// merge records the store's answer w, given at now. Windows of a bucket do not
// overlap and start at least a period apart, so an answer whose Reset is more
// than half a period after the known one's is a later window; one within half a
// period is the same window, whose Remaining only falls and whose earliest
// Reset is kept (the safe one); an earlier one is a late answer and says nothing
// new.
func (e *batchEntry) merge(w Window, now time.Time) {
	e.lastGrant = now
	half := e.rate.Period / 2
	switch {
	case w.Reset.After(e.w.Reset.Add(half)):
		e.w = w
	case w.Reset.After(e.w.Reset.Add(-half)):
		e.w.Remaining = min(e.w.Remaining, w.Remaining)
		if w.Reset.Before(e.w.Reset) {
			e.w.Reset = w.Reset
		}
	}
	e.w.Reached = false
}

// hold keeps n granted hits, valid until until. Hits already held keep their
// own limit: the earlier of the two applies to all, so that no hit outlives its
// window.
func (e *batchEntry) hold(n int64, until, now time.Time) {
	if n <= 0 || !now.Before(until) {
		return
	}
	if e.tokens > 0 && now.Before(e.expiry) {
		e.tokens += n
		if until.Before(e.expiry) {
			e.expiry = until
		}
		return
	}
	e.tokens, e.expiry = n, until
}

// answered wakes the requests waiting on the entry's takes.
func (e *batchEntry) answered() {
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
}

// allowBatched decides a request over a BatchStore: from the hits held when
// there are some, else by joining the take in flight, else by taking a batch.
// A request is refused only when the window is known exhausted, no hit is held
// and no take is in flight, so a process never refuses while it holds hits.
func (l *Limiter) allowBatched(ctx context.Context, bucket string, rate Rate, now time.Time) Result {
	sh := l.batch.shard(bucket)
	waited := false  // the request has waited for the store: not Local
	var refused bool // its own take was granted nothing
	var refusal Window
	sh.mu.Lock()
	for {
		e := sh.m[bucket]
		if e == nil {
			if e = sh.add(bucket, rate, now); e == nil {
				sh.mu.Unlock()
				return l.allowOne(ctx, bucket, rate, now)
			}
		} else if e.rate != rate {
			e.reset(rate)
		}
		if e.tokens > 0 {
			if now.Before(e.expiry) {
				e.tokens--
				sh.batched++
				w := e.window()
				sh.mu.Unlock()
				return Result{Window: w, Allowed: true, Local: !waited}
			}
			e.tokens = 0
		}
		exhausted := refused || e.exhausted(now)
		var limited Window // the refusal of an exhausted window
		if exhausted {
			limited = Window{Limit: rate.Limit, Reset: e.w.Reset, Reached: true}
			if !e.exhausted(now) {
				limited = refusal
			}
		}
		if exhausted && e.flights == 0 {
			w := limited
			sh.mu.Unlock()
			l.deny.put(bucket, w, now)
			if !waited {
				l.localDenials.Add(1)
			}
			return Result{Window: w, Local: !waited}
		}
		if err := ctx.Err(); err != nil {
			sh.mu.Unlock()
			return gone(rate, err)
		}
		if f := e.open; f != nil && f.claims < f.n {
			f.claims++
			sh.mu.Unlock()
			waited = true
			if res, ok := l.await(ctx, sh, e, f, bucket, rate); ok {
				return res
			}
			now = l.now()
			continue
		}
		if exhausted {
			// Other takes are in flight: the hits they bring may serve this
			// one. The store has answered that the window is exhausted, so a
			// request that cannot wait longer is refused, not failed.
			if e.wake == nil {
				e.wake = make(chan struct{})
			}
			wake := e.wake
			sh.mu.Unlock()
			waited = true
			select {
			case <-wake:
			case <-ctx.Done():
				if err := ctx.Err(); errors.Is(err, context.Canceled) {
					return gone(rate, err)
				}
				l.deny.put(bucket, limited, now)
				return Result{Window: limited}
			}
			now = l.now()
			sh.mu.Lock()
			continue
		}
		if !l.breaker.allow(now) {
			sh.mu.Unlock()
			return l.failed(ctx, bucket, rate, errBreakerOpen, now)
		}
		res, ok, w := l.take(ctx, sh, e, bucket, rate, now)
		if ok {
			return res
		}
		waited, refused, refusal = true, true, w
		now = l.now()
	}
}

// take takes a batch for bucket, sh.mu held, and decides the request that takes
// it. When the store granted nothing, ok is false, sh.mu is held again and w is
// the store's refusal: the caller looks again at what other takes brought.
func (l *Limiter) take(ctx context.Context, sh *batchShard, e *batchEntry, bucket string, rate Rate, now time.Time) (res Result, ok bool, w Window) {
	n := e.next(now, l.batch.max)
	f := &flight{done: make(chan struct{}), n: n, claims: 1}
	e.open = f
	e.flights++
	sh.mu.Unlock()

	l.storeCalls.Add(1)
	granted, w, err := l.batch.store.TakeBatch(ctx, bucket, n, rate)
	at := l.now()

	sh.mu.Lock()
	e.flights--
	if e.open == f {
		e.open = nil
	}
	f.over = true
	if err != nil {
		f.err, f.retry = err, ctx.Err() != nil
		e.answered()
		close(f.done)
		sh.mu.Unlock()
		return l.storeFailed(ctx, bucket, rate, err, now, true), true, w
	}
	l.breaker.success()
	granted = min(max(granted, 0), n)
	e.merge(w, at)
	if granted > 0 {
		f.left = min(granted-1, f.claims-1)
		e.hold(granted-1-f.left, w.Reset, at)
	}
	e.answered()
	close(f.done)
	if granted == 0 {
		w.Remaining, w.Reached = 0, true
		return Result{}, false, w
	}
	res = Result{Window: e.window(), Allowed: true}
	sh.mu.Unlock()
	return res, true, w
}

// await waits for f, on which the caller holds a claim, and decides the request
// from its answer. When f brought nothing for it, ok is false and sh.mu is held:
// the caller looks again.
func (l *Limiter) await(ctx context.Context, sh *batchShard, e *batchEntry, f *flight, bucket string, rate Rate) (res Result, ok bool) {
	select {
	case <-f.done:
		sh.mu.Lock()
	case <-ctx.Done():
		sh.mu.Lock()
		if !f.over {
			f.claims-- // its hit, if granted, goes to the entry for the next request
			sh.mu.Unlock()
			return l.waitEnded(ctx, bucket, rate), true
		}
	}
	switch {
	case f.left > 0:
		f.left--
		sh.batched++
		res = Result{Window: e.window(), Allowed: true}
		sh.mu.Unlock()
		return res, true
	case f.err != nil && !f.retry:
		sh.mu.Unlock()
		return l.storeFailed(ctx, bucket, rate, f.err, l.now(), false), true
	}
	return Result{}, false
}
