// Package ratelimit enforces per-plan burst limits on HTTP requests with
// github.com/ulule/limiter/v3, counting in memory for one process or in Redis for
// several replicas.
//
// # Plans and buckets
//
// Each plan has a rate in ulule's format ("600-M": 600 requests a minute);
// DefaultRates gives public 30-M, pro 600-M and team 3000-M, Config.Rates
// overrides any of them and Config.DefaultRate (60-M) covers every other plan. One
// ulule store holds every counter, and the rate is chosen per request from the
// plan that Config.Identify reports. The package imports no other domain package:
// the server tells it who the caller is through Identify.
//
// An authenticated request counts in its key's bucket, "ak:<plan>:<key hash>"
// ("ak:default:<key hash>" for a plan without a rate of its own); any
// other request counts in its client's bucket, "ip:<address>" (IPv6 grouped by
// /64), at the rate of Config.AnonymousPlan. Plans and addresses never share a
// counter. A request whose key fails authentication must never get a bucket of
// its own: the server calls AllowAnonymous for it, so a flood of random keys
// counts against the sender's address.
//
// The client address is the peer address, or, behind Config.TrustedProxies, the
// rightmost untrusted X-Forwarded-For entry (see Limiter.ClientIP). ulule's own
// address helper, which believes the leftmost entry a client can forge, is not used.
//
// # Responses
//
// Every counted response carries X-RateLimit-Limit, X-RateLimit-Remaining,
// X-RateLimit-Reset (unix seconds) and the IETF draft's RateLimit-Policy
// (`"pro";q=600;w=60`) and RateLimit (`"pro";r=<remaining>;t=<seconds to reset>`),
// each set once, never added. A refused request gets Retry-After (whole seconds,
// at least 1) and, through Config.OnError, ErrLimited, which WriteError answers
// with 429 and the problem detail "Rate limit exceeded". In the server's chain the
// limiter runs after authentication and before the monthly quota, so a request
// refused for bursting spends no quota.
//
// # Store failures
//
// A store error never panics (ulule's own middleware does by default). With the
// default fail-open policy the request goes through without counting: burst limits
// protect capacity, the quota guards money. The error is logged (at most one line
// a second, with the number of lines suppressed) and counted in
// tollgate_ratelimit_store_errors_total{outcome="allowed"}. With Config.FailClosed
// the request gets ErrUnavailable (503) and outcome="rejected". After three
// consecutive store errors the Limiter stops asking the store for a second and
// applies the policy at once, so an unreachable Redis adds no latency; then one
// request probes the store, and a success resumes counting.
//
// # Local deny cache
//
// Once a bucket is exhausted, the Limiter remembers it until the reset the store
// reported (whole seconds, so at most a second before the window really ends) and
// refuses further requests itself, with the same headers (Remaining 0, the same
// Reset), so a flood from one key costs each replica one store call a window, not
// one a request. The cache holds at most Config.DenyCacheSize buckets and drops
// expired ones.
//
// # Fixed windows
//
// ulule counts in fixed windows: a bucket's window opens with its first request
// and its counter expires with it. A client can therefore pass up to twice the
// limit within one window's length across a window edge: the whole limit at the
// end of one window and again at the start of the next. The limiter adds no
// second window; the bound it keeps is the limit per window (so at most 2× the
// limit in any span of one window), and the quota bounds the monthly total.
//
// # Metrics
//
// A Limiter is a prometheus.Collector: tollgate_ratelimit_decisions_total{kind,
// plan, result} (kind key or ip; result allowed, limited or store_error),
// tollgate_ratelimit_store_errors_total{outcome} (allowed or rejected),
// tollgate_ratelimit_local_denials_total and tollgate_ratelimit_deny_cache_entries.
// Labels carry plan names (plans without a rate of their own as "default") and
// fixed words, never key material.
//
// A Limiter is safe for concurrent use.
package ratelimit

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ulule/limiter/v3"

	"github.com/releaseradar/tollgate/internal/problem"
)

// Sentinel errors handed to Config.OnError, matched with errors.Is.
var (
	// ErrLimited: the request's bucket is exhausted (HTTP 429).
	ErrLimited = errors.New("ratelimit: rate limit exceeded")
	// ErrUnavailable: the store failed and Config.FailClosed is set (HTTP 503). The
	// error handed to OnError wraps the store's error too.
	ErrUnavailable = errors.New("ratelimit: limiter store unavailable")
)

// Problem details written by WriteError.
const (
	DetailLimited     = "Rate limit exceeded"
	DetailUnavailable = "Service temporarily unavailable"
)

// Config holds a Limiter's optional settings; the zero value of each field is the
// default documented on it.
type Config struct {
	// Rates maps plan names to ulule formatted rates ("600-M"), merged over
	// DefaultRates. Plan names are letters, digits, '_', '-' and '.'.
	Rates map[string]string
	// DefaultRate is the rate of any plan not in the merged table; "" means
	// DefaultRate ("60-M").
	DefaultRate string
	// AnonymousPlan is the plan whose rate applies to client address buckets:
	// unauthenticated requests and failed authentications. "" means "public".
	AnonymousPlan string
	// TrustedProxies are the proxies whose X-Forwarded-For is believed, walked
	// right to left. Empty means the peer address alone decides.
	TrustedProxies []netip.Prefix
	// FailClosed refuses requests with ErrUnavailable (503) when the store fails.
	// false (the default) lets them through, logs and counts the error.
	FailClosed bool
	// Identify reports the plan and key hash of an authenticated request; ok is
	// false for any other request, which then counts by client address (as does
	// ok with an empty hash). nil means every request is anonymous. Handle calls
	// it once per request; for a gated route it reads what authentication put in
	// the request context.
	Identify func(r *http.Request) (plan, keyHash string, ok bool)
	// OnError answers a refused request with ErrLimited or ErrUnavailable (which
	// errors.Is matches). The rate limit headers, and Retry-After for ErrLimited,
	// are already set. nil means WriteError.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives store error lines. nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock of the deny cache and of the relative header values
	// (RateLimit t=, Retry-After). It must agree with the store's clock, which is
	// the wall clock for both ulule stores. nil means time.Now.
	Now func() time.Time
	// DenyCacheSize bounds the local deny cache. 0 means DefaultDenyCacheSize;
	// a negative value turns the cache off.
	DenyCacheSize int
}

// Limiter is burst limiting middleware over one ulule store. Build it with New.
type Limiter struct {
	store      limiter.Store
	plans      map[string]*policy
	fallback   *policy
	anonymous  *policy
	proxies    []netip.Prefix
	failClosed bool
	identify   func(r *http.Request) (plan, keyHash string, ok bool)
	onError    func(w http.ResponseWriter, r *http.Request, err error)
	logger     *slog.Logger
	now        func() time.Time
	deny       *denyCache
	breaker    breaker
	metrics    *metrics

	logNext    atomic.Int64 // unix nanoseconds before which store errors are not logged
	suppressed atomic.Int64 // store error lines not logged since the last one
}

// New returns a Limiter counting in store (see NewStore) with cfg's settings. It
// fails when a rate, a plan name or a trusted proxy prefix is invalid.
func New(store limiter.Store, cfg Config) (*Limiter, error) {
	if store == nil {
		return nil, errors.New("ratelimit: nil store")
	}
	plans, fallback, err := policies(cfg.Rates, cfg.DefaultRate)
	if err != nil {
		return nil, err
	}
	l := &Limiter{
		store:      store,
		plans:      plans,
		fallback:   fallback,
		failClosed: cfg.FailClosed,
		identify:   cfg.Identify,
		onError:    cfg.OnError,
		logger:     cfg.Logger,
		now:        cfg.Now,
	}
	anonymous := cfg.AnonymousPlan
	if anonymous == "" {
		anonymous = "public"
	}
	l.anonymous = l.policyFor(anonymous)
	for _, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("ratelimit: Config.TrustedProxies: invalid prefix %v", p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		l.proxies = append(l.proxies, p.Masked())
	}
	if l.onError == nil {
		l.onError = WriteError
	}
	if l.logger == nil {
		l.logger = slog.Default()
	}
	if l.now == nil {
		l.now = time.Now
	}
	switch {
	case cfg.DenyCacheSize == 0:
		l.deny = newDenyCache(DefaultDenyCacheSize)
	case cfg.DenyCacheSize > 0:
		l.deny = newDenyCache(cfg.DenyCacheSize)
	}
	l.metrics = newMetrics(l.deny)
	for _, p := range plans {
		l.metrics.register(p)
	}
	l.metrics.register(fallback)
	return l, nil
}

// policyFor returns the plan's policy, or the default policy for a plan without a
// rate of its own.
func (l *Limiter) policyFor(plan string) *policy {
	if p, ok := l.plans[plan]; ok {
		return p
	}
	return l.fallback
}

// Handle returns middleware that counts each request in its bucket (see the
// package comment), sets the rate limit headers, and calls next only when the
// request is within its plan's limit or the store failed under the fail-open
// policy (then only X-RateLimit-Limit and RateLimit-Policy are set, as nothing
// was counted). Refused requests are answered by Config.OnError. A request
// whose client has gone away while the store failed is dropped unanswered.
func (l *Limiter) Handle(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.identify != nil {
			if plan, keyHash, ok := l.identify(r); ok && keyHash != "" {
				p := l.policyFor(plan)
				if l.allow(w, r, keyBucket(p, keyHash), kindKey, p) {
					next.ServeHTTP(w, r)
				}
				return
			}
		}
		if l.AllowAnonymous(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// AllowAnonymous counts r in its client address bucket at the anonymous plan's
// rate and sets the rate limit headers. It reports whether r may go on; when it
// may not, it has answered r through Config.OnError. The server calls it when
// authentication fails, before answering 401 or 403, so that invalid keys count
// against the sender's address and never get buckets of their own.
func (l *Limiter) AllowAnonymous(w http.ResponseWriter, r *http.Request) bool {
	return l.allow(w, r, ipBucket(l.ClientIP(r)), kindIP, l.anonymous)
}

// allow counts r in bucket at p's rate and reports whether r may go on.
func (l *Limiter) allow(w http.ResponseWriter, r *http.Request, bucket string, kind int, p *policy) bool {
	now := l.now()
	if lctx, ok := l.deny.get(bucket, now); ok {
		l.metrics.localDenials.Inc()
		return l.refuse(w, r, kind, p, lctx, now)
	}
	if !l.breaker.allow(now) {
		return l.storeFailed(w, r, kind, p, errBreakerOpen, now)
	}
	lctx, err := l.store.Get(r.Context(), bucket, p.rate)
	if err != nil {
		if r.Context().Err() == nil {
			l.breaker.failure(now)
		}
		return l.storeFailed(w, r, kind, p, err, now)
	}
	l.breaker.success()
	if lctx.Reached {
		l.deny.put(bucket, lctx, now)
		return l.refuse(w, r, kind, p, lctx, now)
	}
	setHeaders(w.Header(), p, lctx, now)
	p.counters[kind][resultAllowed].Inc()
	return true
}

// refuse answers r with ErrLimited.
func (l *Limiter) refuse(w http.ResponseWriter, r *http.Request, kind int, p *policy, lctx limiter.Context, now time.Time) bool {
	lctx.Remaining = 0
	t := setHeaders(w.Header(), p, lctx, now)
	w.Header().Set(hRetryAfter, strconv.FormatInt(max(t, 1), 10))
	p.counters[kind][resultLimited].Inc()
	l.onError(w, r, ErrLimited)
	return false
}

// storeFailed applies the store error policy to r and reports whether r may go on.
func (l *Limiter) storeFailed(w http.ResponseWriter, r *http.Request, kind int, p *policy, err error, now time.Time) bool {
	if r.Context().Err() != nil {
		// The client is gone; its request is neither served nor a store failure.
		return false
	}
	p.counters[kind][resultStoreError].Inc()
	h := w.Header()
	h.Set(hLimit, p.limit)
	h.Set(hPolicy, p.header)
	outcome := outcomeAllowed
	if l.failClosed {
		outcome = outcomeRejected
	}
	l.metrics.storeErrors.WithLabelValues(outcome).Inc()
	l.logStoreError(r, kindNames[kind], p.name, outcome, err, now)
	if l.failClosed {
		l.onError(w, r, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return false
	}
	return true
}

// logStoreError logs a store error unless one was logged less than a second ago;
// the line counts the errors not logged since the previous one.
func (l *Limiter) logStoreError(r *http.Request, kind, plan, outcome string, err error, now time.Time) {
	next := l.logNext.Load()
	if now.UnixNano() < next || !l.logNext.CompareAndSwap(next, now.Add(time.Second).UnixNano()) {
		l.suppressed.Add(1)
		return
	}
	l.logger.LogAttrs(r.Context(), slog.LevelError, "ratelimit: limiter store failed",
		slog.String("outcome", outcome),
		slog.String("kind", kind),
		slog.String("plan", plan),
		slog.Int64("suppressed", l.suppressed.Swap(0)),
		slog.String("err", err.Error()),
	)
}

// Header names in canonical form (what Header.Set would make of
// "X-RateLimit-Limit"), so that setting them does not allocate a canonical copy.
const (
	hLimit      = "X-Ratelimit-Limit"
	hRemaining  = "X-Ratelimit-Remaining"
	hReset      = "X-Ratelimit-Reset"
	hPolicy     = "Ratelimit-Policy"
	hRateLimit  = "Ratelimit"
	hRetryAfter = "Retry-After"
)

// setHeaders sets the rate limit headers for lctx and returns the whole seconds
// until the window resets (never negative).
func setHeaders(h http.Header, p *policy, lctx limiter.Context, now time.Time) int64 {
	t := max(lctx.Reset-now.Unix(), 0)
	remaining := strconv.FormatInt(lctx.Remaining, 10)
	h.Set(hLimit, p.limit)
	h.Set(hRemaining, remaining)
	h.Set(hReset, strconv.FormatInt(lctx.Reset, 10))
	h.Set(hPolicy, p.header)
	h.Set(hRateLimit, p.prefix+remaining+";t="+strconv.FormatInt(t, 10))
	return t
}

// WriteError is the default Config.OnError: 429 with the detail "Rate limit
// exceeded" for ErrLimited, 503 "Service temporarily unavailable" for
// ErrUnavailable, 500 for anything else, as application/problem+json.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrLimited):
		problem.Write(w, http.StatusTooManyRequests, DetailLimited)
	case errors.Is(err, ErrUnavailable):
		problem.Write(w, http.StatusServiceUnavailable, DetailUnavailable)
	default:
		problem.Write(w, http.StatusInternalServerError, "Internal server error")
	}
}
