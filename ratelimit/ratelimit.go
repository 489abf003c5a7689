// Package ratelimit limits bursts: it counts requests per bucket in fixed windows
// and decides, for each, whether it may go on.
//
// # Buckets and rates
//
// A bucket is a string naming what is counted. KeyBucket names an API key's
// bucket on a plan ("ak:<plan>:<key hash>") and AddrBucket a client address's
// ("ip:<address>", IPv6 grouped by /64), so plans and addresses never share a
// counter. ClientAddr works out the client address from the peer and, behind the
// proxies CheckProxies accepts, the rightmost untrusted X-Forwarded-For entry;
// entries a client can forge are never read. The caller chooses a bucket's Rate
// (ParseRate reads ulule's "100-M" format, ParseRates a list of named rates) and
// always counts one bucket at the same rate. The package knows no plan of its own:
// names and rates are the caller's data.
//
// # Stores
//
// A Store counts: memstore (github.com/releaseradar/tollgate/ratelimit/memstore)
// in this process, redisstore (…/ratelimit/redisstore) in Redis, shared by
// replicas. Both are built on github.com/ulule/limiter/v3 and count in fixed
// windows: a bucket's window opens with its first request, its counter expires
// with it, and a client can therefore pass up to twice the limit within one
// window's length across a window edge (the whole limit at the end of one window
// and again at the start of the next). The package adds no second window. Every
// Store passes the suite in …/ratelimit/storetest.
//
// # The Limiter
//
// Limiter.Allow counts one request in a bucket and returns a Result: allowed or
// not, and the bucket's Window (limit, remaining, reset) for the caller's
// response headers. Around the store it keeps:
//
//   - A local deny cache: once a bucket is exhausted, the Limiter refuses it by
//     itself until the reset the store reported, so a flood from one key costs
//     each replica one store call a window, not one a request. The cache holds
//     at most Config.DenyCacheSize buckets and drops expired ones.
//   - Batches, over a remote store (a BatchStore such as redisstore): the hits of
//     a busy bucket are taken from the store several at a time and spent in
//     memory, so a hot key costs a round trip per batch, not per request (see
//     Batches below).
//   - A failure policy: a store error never panics. By default the request is
//     allowed without being counted (burst limits protect capacity; a monthly
//     quota, elsewhere, guards money); with Config.FailClosed it is refused. Either
//     way Result.Err reports the failure (it matches ErrUnavailable), the error is
//     logged at most once a second with the number of lines suppressed, and
//     Stats counts it. A request whose deadline passes while it waits for the
//     store is such a failure: the store was too slow for it (Err then matches
//     context.DeadlineExceeded too, and a caller answers 503). A request whose
//     context is canceled (its client left) is not: it is refused, nothing is
//     counted or logged, and the breaker does not hear of it. Neither is a
//     request whose context is already done when the store would be asked: it is
//     refused with the context's error without asking.
//   - A breaker: after three consecutive store errors the Limiter stops asking the
//     store for a second and applies the policy at once, so an unreachable Redis
//     adds no latency; then one request probes the store, and a success resumes
//     counting.
//
// # Batches
//
// Over a BatchStore the Limiter does not ask the store once a request. For each
// bucket it takes k hits with one TakeBatch, which counts all k in the store at
// once, allows the request that asked, and allows the bucket's next requests in
// this process from the k-1 it holds. Requests that arrive while a batch is being
// taken wait for it (as many as it will hold) rather than ask the store
// themselves; one whose deadline passes meanwhile is a store failure, as if it
// had asked. (A request that finds the window exhausted while other takes are
// in flight waits for the hits they may bring; if it cannot wait, it is refused
// as limited: the store has already answered.) The rules:
//
//   - Never more than the limit. Every hit is counted in the store when it is
//     taken, before it is spent, and the store grants a batch only as far as the
//     window has room (a batch larger than what remains is granted in part), so
//     the sum over every process of the hits allowed in a window never exceeds its
//     limit. A batch is spent only before the Reset of the window it was taken in,
//     which a BatchStore reports no later than the window's real end; what is left
//     then is dropped, never carried into the next window.
//   - Adaptive size. k starts at 1 and doubles each time a batch was spent within
//     100ms of arriving (or demand outran it: a request found the last batch
//     still on its way); it halves for each 100ms a batch lasted longer. k is at
//     most Config.MaxBatch, at most 1/40 of the window's limit (2.5%, at least
//     1) and at most a quarter of what the window had left at the bucket's last
//     take (at least 1), so as a bucket nears its limit its batches shrink to
//     single hits and the replicas share the last hits one request at a time.
//   - Under-admission, bounded. Hits taken and not spent before their window
//     ends were counted but never allowed. A process refuses a request only when
//     it holds no hit of the bucket and none is on its way, so one process alone
//     still serves its limit to the last hit. Across processes, a replica may
//     refuse a bucket while another holds some of the bucket's hits: at most one
//     batch per bucket and process less the hit that took it, that is under 2.5%
//     of the limit, at most MaxBatch-1 hits and no more than a quarter of what
//     remained when the batch was taken (plus, rarely, the hit of a request that
//     gave up waiting for a batch). The same is lost, for one window, when a
//     process exits or crashes.
//   - Remaining is this process's view: what the store had left at the bucket's
//     last take, plus the hits this process holds. The hits other processes hold
//     are already subtracted (they are counted in the store); what they spent
//     since this process's last take is not yet, so a replica's Remaining may be
//     high by up to that much, never above the limit.
//
// The share of the limit bounds what a replica holds back, so it is the bound
// that matters at the usual burst rates: a 600-per-minute bucket's batches stop
// at 15 hits, a 3,000-per-minute one's at 75, and a bucket of fewer than 80 a
// window (30 per minute, say) is counted one request at a time; once it is
// exhausted the deny cache answers it without the store. DefaultMaxBatch, 256,
// bounds only buckets of more than 10,240 a window, where 255 hits are under
// 2.5%: on such a hot bucket a request costs 1/256 of a round trip where
// batches of 16 cost 1/16, and the gate on PostgreSQL + Redis over a no-op
// handler (64 such buckets) kept 0.65 of a bare handler's throughput against
// 0.62 with batches of 16, in one run (docs/BENCHMARKS.md). MaxBatch 1 turns
// batching off; memstore is never batched (its Take costs less than a batch's
// bookkeeping).
//
// The package writes no HTTP response: the root tollgate package turns a Result
// into headers and answers, and maps ErrLimited (429) and ErrUnavailable (503)
// through its problem table. It imports neither Redis nor Prometheus: Stats
// reports the Limiter's counters for any metrics system.
package ratelimit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrLimited is the answer to a request whose bucket is exhausted (HTTP 429).
	// Allow reports a refusal as a Result, not as an error; callers answer it
	// with ErrLimited.
	ErrLimited = problem.New(problem.RateLimited, "ratelimit: rate limit exceeded")
	// ErrUnavailable marks a store failure (HTTP 503): Result.Err matches it
	// whenever the store failed, was too slow for the request's deadline, or
	// was not asked because it kept failing.
	ErrUnavailable = problem.New(problem.Unavailable, "ratelimit: limiter store unavailable")
)

// errInvalidRate is the Result.Err of a request counted at an invalid Rate.
var errInvalidRate = errors.New("ratelimit: invalid rate: the limit must be at least 1 and the period at least 1ms")

// Window is a bucket's state after a Take: the limit of its window, what remains
// of it, and when it resets.
type Window struct {
	// Limit is the rate's limit.
	Limit int64
	// Remaining is how many more hits the window allows, never negative: 0
	// once Reached.
	Remaining int64
	// Reset is when the window ends and the bucket's count starts again from 0.
	// A store may report it truncated to the second (ulule's Redis store does),
	// so the window really ends at Reset or within the second after it.
	Reset time.Time
	// Reached reports that the count, with this Take's, exceeds Limit: the Take
	// is refused.
	Reached bool
}

// Store counts hits per bucket in fixed windows. Implementations must be safe
// for concurrent use, and a store shared by several processes (such as
// redisstore) must count exactly across them.
type Store interface {
	// Take adds n hits to bucket's count in its current window and returns the
	// window as it is afterwards. When the bucket has no open window (first
	// use, or the last window has ended), Take opens one of rate.Period and the
	// count starts from 0. The count is exact under concurrency: of Takes of 1
	// on a fresh bucket, exactly rate.Limit are not Reached.
	//
	// Reached is set when the count after adding n exceeds rate.Limit. As in
	// ulule's stores, a refused Take still counts: its hits stay in the count
	// until the window ends (a Take of n larger than what remains is refused
	// whole, and the bucket stays exhausted for the rest of the window). A Take
	// of more than rate.Limit may count as rate.Limit+1 (the stores here do),
	// so that counts cannot overflow. Refused Takes never lengthen a window.
	//
	// A bucket is taken at one rate: the window's length is fixed when it
	// opens. Take fails, counting nothing, when n < 1 or the rate is invalid
	// (see Rate). It may fail with ctx's error once ctx is done.
	Take(ctx context.Context, bucket string, n int64, rate Rate) (Window, error)
}

// BatchStore is a Store far enough away that the Limiter takes hits from it in
// batches (see Batches in the package comment and Config.MaxBatch): one whose
// every Take is a round trip, such as redisstore. memstore is not one.
type BatchStore interface {
	Store
	// TakeBatch adds n hits to bucket's count as Take does and reports how many
	// of them fit within the limit: all n when the count after adding them is at
	// most rate.Limit, else what remained before them (0 when nothing did). The
	// hits that did not fit count as a refused Take's do. w is the window as Take
	// reports it, except that Reset must not be after the window's real end (a
	// store may report it earlier): the Limiter spends the granted hits only
	// before Reset. It fails, counting nothing, when Take would.
	TakeBatch(ctx context.Context, bucket string, n int64, rate Rate) (granted int64, w Window, err error)
}

// Config holds a Limiter's optional settings; the zero value of each field is the
// default documented on it.
type Config struct {
	// FailClosed refuses requests when the store fails. false (the default)
	// lets them through, uncounted.
	FailClosed bool
	// DenyCacheSize bounds the local deny cache (the number of exhausted
	// buckets remembered at once). 0 means DefaultDenyCacheSize; a negative
	// value turns the cache off.
	DenyCacheSize int
	// Now is the clock of the deny cache, the breaker, the log throttle and
	// batches. It must agree with the store's clock, which is the wall clock for
	// memstore and redisstore. nil means time.Now.
	Now func() time.Time
	// Logger receives store errors, at most one line a second (each line counts
	// the ones suppressed since the last). Lines name the bucket's kind (the
	// text before its first ':', such as "ak" or "ip") and the rate, never the
	// bucket itself. nil means slog.Default().
	Logger *slog.Logger
	// MaxBatch bounds the batches the Limiter takes from a BatchStore (such as
	// redisstore) to spare round trips: up to MaxBatch hits of a bucket taken at
	// once and spent in memory (see Batches in the package comment). 0 means
	// DefaultMaxBatch; 1 or a negative value turns batching off. A Store that is
	// not a BatchStore (memstore) is asked once a request whatever MaxBatch says.
	// At most 65,536 buckets hold batches at a time; beyond that (more than as
	// many busy buckets) a bucket is counted one request at a time.
	MaxBatch int
}

// Result is a decision of Allow.
//
//   - Allowed and no Err: the request is within the limit; Window is the
//     bucket's state with it counted (with batches, as this process knows it:
//     see Batches in the package comment).
//   - Neither Allowed nor Err: the bucket is exhausted; Window.Reached is set,
//     Remaining is 0 and Reset says when to retry.
//   - Err set: nothing was counted and Window holds only Limit. Either the store
//     failed, was too slow for ctx's deadline, or was not asked because it kept
//     failing (Err matches ErrUnavailable and wraps the store's error, and
//     context.DeadlineExceeded when the deadline passed while the request
//     waited; Allowed is true unless Config.FailClosed), or ctx was canceled
//     while the store was asked, or done before it would be (Err matches ctx's
//     error; Allowed is false), or the rate was invalid (Allowed is false).
//
// Local reports a decision made in memory, without waiting for the store: a
// refusal by the deny cache or by a batch that found the window exhausted, or a
// request allowed from a batch taken earlier.
type Result struct {
	Window
	Allowed bool
	Err     error
	Local   bool
}

// Stats are a Limiter's counters since New.
type Stats struct {
	// StoreErrors counts the requests decided by the failure policy: the store
	// failed or was too slow, or was not asked while the breaker was open.
	StoreErrors uint64
	// LocalDenials counts the requests refused in memory, without waiting for
	// the store (by the deny cache, or by a batch that knew the window
	// exhausted).
	LocalDenials uint64
	// DenyCacheEntries is the number of buckets the deny cache holds now,
	// including expired ones not swept yet.
	DenyCacheEntries int
	// StoreCalls counts the calls to the store (Take or TakeBatch): a round trip
	// each to a remote store. StoreCalls over the requests decided is the round
	// trips per request.
	StoreCalls uint64
	// Batched counts the requests allowed from batches without a store call of
	// their own: from hits held, or from a batch another request was taking.
	Batched uint64
	// BatchBuckets is the number of buckets with batch state now, and BatchHeld
	// the hits they hold, taken and not spent yet (lost if their window ends
	// first).
	BatchBuckets int
	BatchHeld    int64
}

// Limiter decides, request by request, whether a bucket's burst limit allows
// one more (see the package comment). Build it with New; it is safe for
// concurrent use.
type Limiter struct {
	store      Store
	failClosed bool
	now        func() time.Time
	logger     *slog.Logger
	deny       *denyCache
	breaker    breaker
	batch      *batcher // nil: the store is asked once a request

	storeCalls   atomic.Uint64
	storeErrors  atomic.Uint64
	localDenials atomic.Uint64
	logNext      atomic.Int64 // unix nanoseconds before which store errors are not logged
	suppressed   atomic.Int64 // store error lines not logged since the last one
}

// New returns a Limiter counting in store with cfg's settings, in batches when
// store is a BatchStore (unless cfg.MaxBatch turns them off). It fails when store
// is nil.
func New(store Store, cfg Config) (*Limiter, error) {
	if store == nil {
		return nil, errors.New("ratelimit: nil store")
	}
	l := &Limiter{
		store:      store,
		failClosed: cfg.FailClosed,
		now:        cfg.Now,
		logger:     cfg.Logger,
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	switch {
	case cfg.DenyCacheSize == 0:
		l.deny = newDenyCache(DefaultDenyCacheSize)
	case cfg.DenyCacheSize > 0:
		l.deny = newDenyCache(cfg.DenyCacheSize)
	}
	if bs, ok := store.(BatchStore); ok {
		maxBatch := cfg.MaxBatch
		if maxBatch == 0 {
			maxBatch = DefaultMaxBatch
		}
		if maxBatch > 1 {
			l.batch = newBatcher(bs, int64(maxBatch))
		}
	}
	return l, nil
}

// Allow counts one request in bucket at rate and returns the decision (see
// Result). It is the hot path of every request: it allocates nothing beyond what
// the store's Take does (a store failure costs one error value), and nothing at
// all when a batch held in memory answers.
func (l *Limiter) Allow(ctx context.Context, bucket string, rate Rate) Result {
	if !rate.valid() {
		return Result{Window: Window{Limit: rate.Limit}, Err: errInvalidRate}
	}
	now := l.now()
	if w, ok := l.deny.get(bucket, now); ok {
		l.localDenials.Add(1)
		return Result{Window: w, Local: true}
	}
	if l.batch != nil {
		return l.allowBatched(ctx, bucket, rate, now)
	}
	return l.allowOne(ctx, bucket, rate, now)
}

// allowOne decides a request with a Take of its own.
func (l *Limiter) allowOne(ctx context.Context, bucket string, rate Rate, now time.Time) Result {
	if err := ctx.Err(); err != nil {
		return gone(rate, err)
	}
	if !l.breaker.allow(now) {
		return l.failed(ctx, bucket, rate, errBreakerOpen, now)
	}
	l.storeCalls.Add(1)
	w, err := l.store.Take(ctx, bucket, 1, rate)
	if err != nil {
		return l.storeFailed(ctx, bucket, rate, err, now, true)
	}
	l.breaker.success()
	if w.Reached {
		w.Remaining = 0
		l.deny.put(bucket, w, now)
		return Result{Window: w}
	}
	return Result{Window: w, Allowed: true}
}

// gone is the Result of a request whose ctx is done, with err matching ctx's
// error: refused, and not a store failure.
func gone(rate Rate, err error) Result {
	return Result{Window: Window{Limit: rate.Limit}, Err: err}
}

// storeFailed decides a request whose store call failed with err: a request
// whose ctx was canceled meanwhile is gone (its client left: nothing is counted
// or logged); any other, a deadline that passed included, is a store failure,
// which trips the breaker when trip is set (the request made the call itself).
func (l *Limiter) storeFailed(ctx context.Context, bucket string, rate Rate, err error, now time.Time, trip bool) Result {
	cerr := ctx.Err()
	if errors.Is(cerr, context.Canceled) {
		if !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (store: %w)", cerr, err)
		}
		return gone(rate, err)
	}
	if trip {
		l.breaker.failure(now)
	}
	if cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", err, cerr)
	}
	return l.failed(ctx, bucket, rate, fmt.Errorf("%w: %w", ErrUnavailable, err), now)
}

// waitEnded decides a request whose ctx ended while it waited for another
// request's store call: gone when canceled, else (its deadline passed: the
// store was too slow for it) a store failure. The breaker hears of the call's
// outcome from the request that made it.
func (l *Limiter) waitEnded(ctx context.Context, bucket string, rate Rate) Result {
	cerr := ctx.Err()
	if cerr == nil || errors.Is(cerr, context.Canceled) {
		return gone(rate, cmp.Or(cerr, context.Canceled))
	}
	return l.failed(ctx, bucket, rate, fmt.Errorf("%w: waiting for the store: %w", ErrUnavailable, cerr), l.now())
}

// failed applies the failure policy to a request whose store failed with err.
func (l *Limiter) failed(ctx context.Context, bucket string, rate Rate, err error, now time.Time) Result {
	l.storeErrors.Add(1)
	l.logStoreError(ctx, bucket, rate, err, now)
	return Result{Window: Window{Limit: rate.Limit}, Allowed: !l.failClosed, Err: err}
}

// logStoreError logs a store error unless one was logged less than a second ago;
// the line counts the errors not logged since the previous one.
func (l *Limiter) logStoreError(ctx context.Context, bucket string, rate Rate, err error, now time.Time) {
	next := l.logNext.Load()
	if now.UnixNano() < next || !l.logNext.CompareAndSwap(next, now.Add(time.Second).UnixNano()) {
		l.suppressed.Add(1)
		return
	}
	outcome := "allowed"
	if l.failClosed {
		outcome = "rejected"
	}
	l.logger.LogAttrs(ctx, slog.LevelError, "ratelimit: limiter store failed",
		slog.String("outcome", outcome),
		slog.String("kind", bucketKind(bucket)),
		slog.String("rate", rate.String()),
		slog.Int64("suppressed", l.suppressed.Swap(0)),
		slog.String("err", err.Error()),
	)
}

// bucketKind returns the text before bucket's first ':' ("ak", "ip"), short and
// free of key material, or "other".
func bucketKind(bucket string) string {
	if i := strings.IndexByte(bucket, ':'); i > 0 && i <= 8 {
		return bucket[:i]
	}
	return "other"
}

// Stats returns the Limiter's counters.
func (l *Limiter) Stats() Stats {
	s := Stats{
		StoreErrors:      l.storeErrors.Load(),
		LocalDenials:     l.localDenials.Load(),
		DenyCacheEntries: l.deny.len(),
		StoreCalls:       l.storeCalls.Load(),
	}
	l.batch.stats(&s, l.now())
	return s
}
