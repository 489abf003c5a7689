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
//   - A failure policy: a store error never panics. By default the request is
//     allowed without being counted (burst limits protect capacity; a monthly
//     quota, elsewhere, guards money); with Config.FailClosed it is refused. Either
//     way Result.Err reports the failure (it matches ErrUnavailable), the error is
//     logged at most once a second with the number of lines suppressed, and
//     Stats counts it. A request whose context is done when the store fails (or
//     while the breaker is open) is not a store failure: it is refused and
//     nothing is counted or logged.
//   - A breaker: after three consecutive store errors the Limiter stops asking the
//     store for a second and applies the policy at once, so an unreachable Redis
//     adds no latency; then one request probes the store, and a success resumes
//     counting.
//
// The package writes no HTTP response: the root tollgate package turns a Result
// into headers and answers, and maps ErrLimited (429) and ErrUnavailable (503)
// through its problem table. It imports neither Redis nor Prometheus: Stats
// reports the Limiter's counters for any metrics system.
package ratelimit

import (
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
	// whenever the store failed or was not asked because it kept failing.
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
	// Now is the clock of the deny cache, the breaker and the log throttle. It
	// must agree with the store's clock, which is the wall clock for memstore
	// and redisstore. nil means time.Now.
	Now func() time.Time
	// Logger receives store errors, at most one line a second (each line counts
	// the ones suppressed since the last). Lines name the bucket's kind (the
	// text before its first ':', such as "ak" or "ip") and the rate, never the
	// bucket itself. nil means slog.Default().
	Logger *slog.Logger
}

// Result is a decision of Allow.
//
//   - Allowed and no Err: the request is within the limit; Window is the
//     bucket's state with it counted.
//   - Neither Allowed nor Err: the bucket is exhausted; Window.Reached is set,
//     Remaining is 0 and Reset says when to retry. Local reports that the deny
//     cache answered, without asking the store.
//   - Err set: nothing was counted and Window holds only Limit. Either the store
//     failed or was not asked because it kept failing (Err matches
//     ErrUnavailable and wraps the store's error; Allowed is true unless
//     Config.FailClosed), or ctx was done when the store failed or would not be
//     asked (Err matches ctx's error; Allowed is false), or the rate was invalid
//     (Allowed is false).
type Result struct {
	Window
	Allowed bool
	Err     error
	Local   bool
}

// Stats are a Limiter's counters since New.
type Stats struct {
	// StoreErrors counts the requests decided by the failure policy: the store
	// failed, or was not asked while the breaker was open.
	StoreErrors uint64
	// LocalDenials counts the requests refused by the deny cache.
	LocalDenials uint64
	// DenyCacheEntries is the number of buckets the deny cache holds now,
	// including expired ones not swept yet.
	DenyCacheEntries int
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

	storeErrors  atomic.Uint64
	localDenials atomic.Uint64
	logNext      atomic.Int64 // unix nanoseconds before which store errors are not logged
	suppressed   atomic.Int64 // store error lines not logged since the last one
}

// New returns a Limiter counting in store with cfg's settings. It fails when
// store is nil.
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
	return l, nil
}

// Allow counts one request in bucket at rate and returns the decision (see
// Result). It is the hot path of every request: it allocates nothing beyond what
// the store's Take does (a store failure costs one error value).
func (l *Limiter) Allow(ctx context.Context, bucket string, rate Rate) Result {
	if !rate.valid() {
		return Result{Window: Window{Limit: rate.Limit}, Err: errInvalidRate}
	}
	now := l.now()
	if w, ok := l.deny.get(bucket, now); ok {
		l.localDenials.Add(1)
		return Result{Window: w, Local: true}
	}
	if !l.breaker.allow(now) {
		if cerr := ctx.Err(); cerr != nil {
			return gone(rate, cerr)
		}
		return l.failed(ctx, bucket, rate, errBreakerOpen, now)
	}
	w, err := l.store.Take(ctx, bucket, 1, rate)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			// The caller is gone: its request is neither served nor evidence
			// that the store is failing.
			if !errors.Is(err, cerr) {
				err = fmt.Errorf("%w (store: %w)", cerr, err)
			}
			return gone(rate, err)
		}
		l.breaker.failure(now)
		return l.failed(ctx, bucket, rate, fmt.Errorf("%w: %w", ErrUnavailable, err), now)
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
	return Stats{
		StoreErrors:      l.storeErrors.Load(),
		LocalDenials:     l.localDenials.Load(),
		DenyCacheEntries: l.deny.len(),
	}
}
