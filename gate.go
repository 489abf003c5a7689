package tollgate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/textproto"
	"sync"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/ratelimit"
	rlmem "github.com/releaseradar/tollgate/ratelimit/memstore"

	akmem "github.com/releaseradar/tollgate/apikey/memstore"
)

// DefaultHeader is the request header that carries the API key.
const DefaultHeader = "x-api-key"

// Stores are where the gate keeps its state. Keys and Quotas are required; a nil
// Counters counts burst limits in process (ratelimit/memstore), which suits one
// replica; several replicas share ratelimit/redisstore.
type Stores struct {
	Keys     apikey.Store
	Quotas   quota.Store
	Counters ratelimit.Store
}

// Config holds a Gate's optional settings; the zero value of each field is the
// default documented on it.
type Config struct {
	// Header is the request header that carries the key; "" means DefaultHeader.
	Header string
	// OmitHeaders names the families of rate limit and quota headers the gate
	// does not set; the zero value sets them all (see Headers). net/http spends
	// a few hundred nanoseconds on each header of an answer (docs/BENCHMARKS.md
	// measures the eight): an API whose clients read the IETF draft's pair,
	// which carries the burst limit and the quota both, can omit
	// HeadersXRateLimit|HeadersXQuota.
	OmitHeaders Headers
	// KeyPrefix starts every key Issue and Rotate generate; "" means
	// apikey.DefaultPrefix.
	KeyPrefix string
	// MaxKeyLength is the longest header value looked up; longer ones are invalid
	// keys. 0 means apikey's default (256).
	MaxKeyLength int
	// KeyCache sizes and times the cache of verified keys in front of the key
	// store (see apikey.CacheConfig: 30 s while a change channel is up, 1 s while
	// none is, unknown keys cached too). The zero value is the default cache.
	// With apikey/memstore every change is seen at once; with a shared store,
	// tell the gate when a channel of changes from every process is up
	// (SetKeyChannel: apikey/pqnotify on PostgreSQL).
	KeyCache apikey.CacheConfig
	// AnonymousPlan names the catalog plan whose burst rate applies per client
	// address: to routes behind Public and to requests whose key is missing or
	// unknown. "" means the catalog's lowest-ranked plan.
	AnonymousPlan string
	// TrustedProxies are the proxies whose X-Forwarded-For is believed when the
	// client address is worked out (walked right to left); empty trusts none.
	TrustedProxies []netip.Prefix
	// BurstFailClosed refuses requests with 503 when the burst counters' store
	// fails. false (the default) lets them through uncounted by the burst limiter
	// (the monthly quota still counts them).
	BurstFailClosed bool
	// DenyCacheSize bounds the burst limiter's cache of exhausted buckets (see
	// ratelimit.Config); 0 is its default, a negative value turns it off.
	DenyCacheSize int
	// BurstMaxBatch bounds how many hits the burst limiter takes from a remote
	// counter store (Redis) at once, to spend them locally (see
	// ratelimit.Config.MaxBatch); 0 is its default, 1 turns batching off.
	// Whatever it says, a batch is at most 2.5% of its window's limit.
	BurstMaxBatch int
	// Cycle is the quota cycle the quota store counts in; 0 means
	// quota.DefaultCycle. It only sets the headers' reset times and must agree
	// with the quota store's cycle.
	Cycle time.Duration
	// Charge reports whether the handler's answer with that status counts against
	// the monthly quota; a call that does not count is given back, in memory, once
	// the handler returns. nil charges statuses below 400.
	Charge func(status int) bool
	// Leases sets how the gate leases quota calls: it reserves them from the
	// quota store in batches and spends them in memory, so that the store sees
	// one write per batch rather than per call (see quota.Leases for the batch
	// sizes, the exactness and the crash bound). The zero value is the default.
	// Its Cycle is the gate's.
	Leases quota.LeaseConfig
	// Now is the clock of quota cycles and the quota headers; nil means time.Now.
	// Burst windows follow the counter store's clock, which is the wall clock for
	// the stores of package ratelimit.
	Now func() time.Time
	// OnError answers every request the gate refuses or cannot serve. err matches
	// (errors.Is) apikey.ErrMissing, apikey.ErrInvalid, apikey.ErrUpgradeRequired,
	// ratelimit.ErrLimited, quota.ErrExceeded, or is a failed dependency (which
	// wraps ErrUnavailable). The rate limit and quota headers, and Retry-After,
	// are already set. nil means WriteError.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// Observe, if set, is told every burst and quota decision (for metrics). It
	// must be fast and safe for concurrent use.
	Observe func(Decision)
	// Ledger, if set, receives the calls the gate served, per key and minute,
	// once a flush (the usage an account page shows and billing meters).
	Ledger entitlement.Ledger
	// FlushInterval is how often the gate writes what it records in memory (the
	// calls served, when each key was last used); 0 means DefaultFlushInterval.
	FlushInterval time.Duration
	// Logger receives the burst limiter's store errors (at most one line a
	// second) and failed background writes; nil means slog.Default().
	Logger *slog.Logger
}

// Decision is one step of the gate's answer to a request, as Config.Observe sees
// it. Its fields hold fixed words and plan names, never key material.
type Decision struct {
	// Step is "burst" or "quota".
	Step string
	// Bucket is, for a burst decision, "key" (an authenticated key's bucket) or
	// "ip" (a client address's bucket); "" for a quota decision.
	Bucket string
	// Plan is the plan whose limit applied.
	Plan string
	// Result is "allowed", "limited" (burst), "exceeded" (quota) or
	// "store_error" (the store failed; for burst, see Config.BurstFailClosed).
	Result string
}

// Decision steps and results.
const (
	StepBurst = "burst"
	StepQuota = "quota"

	ResultAllowed    = "allowed"
	ResultLimited    = "limited"
	ResultExceeded   = "exceeded"
	ResultStoreError = "store_error"
)

// ErrUnavailable marks a failed dependency: a key, quota or burst counter store
// that could not answer. Such a request is refused with 503 and Retry-After.
var ErrUnavailable = problem.New(problem.Unavailable, "tollgate: a store is unavailable")

// Gate is the whole chain: authentication, plan rank, burst limit and monthly
// quota in front of a handler. It is safe for concurrent use. It runs one
// background goroutine, which writes what it records in memory every
// Config.FlushInterval; Close stops it.
type Gate struct {
	keys    apikey.Store
	quotas  quota.Store
	leases  *quota.Leases
	auth    *apikey.Authenticator
	limiter *ratelimit.Limiter
	catalog entitlement.Catalog
	plans   map[string]*plan
	anon    *plan
	proxies []netip.Prefix
	header  string
	omit    Headers
	prefix  string
	cycle   time.Duration
	charge  func(status int) bool
	now     func() time.Time
	onError func(w http.ResponseWriter, r *http.Request, err error)
	observe func(Decision)
	log     *slog.Logger
	// wallClock: Config.Now is time.Now, so the burst limiter's reading of the
	// clock serves the quota too.
	wallClock bool

	usage     *recorder
	ledger    entitlement.Ledger
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the background loop has returned
	closeOnce sync.Once
}

// plan is what the hot path needs of a catalog plan, computed once.
type plan struct {
	name      string
	rank      int
	limited   bool // has a burst rate
	rate      ratelimit.Rate
	limit     string // X-RateLimit-Limit
	policy    string // RateLimit-Policy
	rlPrefix  string // `"name";r=`
	quotaName string // `"name-monthly"`: the quota's RateLimit entry
	keyPrefix string // burst bucket prefix of its keys: "ak:<name>:"
}

// New returns a gate on stores for the plans of catalog. It fails when a store is
// missing, the catalog is invalid or empty, a plan's rate does not parse, or a
// setting is malformed.
func New(stores Stores, catalog entitlement.Catalog, cfg Config) (*Gate, error) {
	if stores.Keys == nil || stores.Quotas == nil {
		return nil, errors.New("tollgate: Stores.Keys and Stores.Quotas are required")
	}
	if len(catalog) == 0 {
		return nil, errors.New("tollgate: the plan catalog is empty")
	}
	if err := catalog.Validate(); err != nil {
		return nil, fmt.Errorf("tollgate: %w", err)
	}
	if cfg.OmitHeaders&^(HeadersXRateLimit|HeadersXQuota|HeadersIETF) != 0 {
		return nil, fmt.Errorf("tollgate: Config.OmitHeaders %#x names no family of headers", uint8(cfg.OmitHeaders))
	}
	proxies, err := ratelimit.CheckProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("tollgate: Config.TrustedProxies: %w", err)
	}
	counters := stores.Counters
	if counters == nil {
		counters = rlmem.New()
	}
	limiter, err := ratelimit.New(counters, ratelimit.Config{
		FailClosed:    cfg.BurstFailClosed,
		DenyCacheSize: cfg.DenyCacheSize,
		MaxBatch:      cfg.BurstMaxBatch,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("tollgate: %w", err)
	}
	g := &Gate{
		keys:    stores.Keys,
		quotas:  stores.Quotas,
		auth:    apikey.NewAuthenticator(stores.Keys, apikey.Config{MaxKeyLength: cfg.MaxKeyLength, Cache: cfg.KeyCache, Now: cfg.Now}),
		limiter: limiter,
		catalog: catalog,
		plans:   make(map[string]*plan, len(catalog)),
		proxies: proxies,
		header:  cfg.Header,
		omit:    cfg.OmitHeaders,
		prefix:  cfg.KeyPrefix,
		cycle:   cfg.Cycle,
		charge:  cfg.Charge,
		now:     cfg.Now,
		onError: cfg.OnError,
		observe: cfg.Observe,
		log:     cfg.Logger,
		usage:   newRecorder(),
		ledger:  cfg.Ledger,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, name := range catalog.Names() {
		p, err := newPlan(catalog[name])
		if err != nil {
			return nil, err
		}
		g.plans[name] = p
	}
	anon := cfg.AnonymousPlan
	if anon == "" {
		anon = catalog.Names()[0]
	}
	if g.anon = g.plans[anon]; g.anon == nil {
		return nil, fmt.Errorf("tollgate: Config.AnonymousPlan %q is not a plan of the catalog", anon)
	}
	if _, local := stores.Keys.(*akmem.Store); local {
		g.auth.SetChannel(true) // this process makes every change, and hears of each
	}
	if g.header == "" {
		g.header = DefaultHeader
	}
	g.header = textproto.CanonicalMIMEHeaderKey(g.header)
	if g.cycle <= 0 {
		g.cycle = quota.DefaultCycle
	}
	lc := cfg.Leases
	lc.Cycle = g.cycle
	g.leases = quota.NewLeases(stores.Quotas, lc)
	if g.charge == nil {
		g.charge = func(status int) bool { return status < http.StatusBadRequest }
	}
	if g.now == nil {
		g.now, g.wallClock = time.Now, true
	}
	if g.onError == nil {
		g.onError = WriteError
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	interval := cfg.FlushInterval
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	go g.loop(interval)
	return g, nil
}

// burst returns the plan's burst rate as calls per window in seconds; zeros for a
// plan without one.
func (p *plan) burst() (limit, windowSeconds int64) {
	if p == nil || !p.limited {
		return 0, 0
	}
	return p.rate.Limit, int64(p.rate.Period / time.Second)
}

func newPlan(p entitlement.Plan) (*plan, error) {
	out := &plan{name: p.Name, rank: p.Rank, keyPrefix: ratelimit.KeyBucket(p.Name, "")}
	if p.Rate == "" {
		return out, nil
	}
	rate, err := ratelimit.ParseRate(p.Rate)
	if err != nil {
		return nil, fmt.Errorf("tollgate: plan %q: %w", p.Name, err)
	}
	out.limited = true
	out.rate = rate
	out.limit = fmt.Sprint(rate.Limit)
	out.policy = ratelimit.PolicyHeader(p.Name, rate)
	out.rlPrefix = fmt.Sprintf("%q;r=", p.Name)
	out.quotaName = string(appendQuotaName(nil, policyName(out.policy)))
	return out, nil
}

// Require returns middleware that lets a request reach next only when it passes
// the whole chain for a route of the named plan (see the package comment). It
// panics when the catalog has no such plan: a route's plan is fixed when the
// routes are wired, and a typo there must not leave a route open.
func (g *Gate) Require(planName string) func(http.Handler) http.Handler {
	p, ok := g.plans[planName]
	if !ok {
		panic(fmt.Sprintf("tollgate: Require(%q): no such plan in the catalog", planName))
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.serve(w, r, next, p.rank)
		})
	}
}

// Public returns middleware for routes anyone may call: each request spends its
// client address's budget of the anonymous plan (Config.AnonymousPlan), and only
// that.
func (g *Gate) Public() func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if g.allowAddr(w, r) {
				next.ServeHTTP(w, r)
			}
		})
	}
}

// SpendAddress counts r against its client address's budget of the anonymous plan,
// as a failed authentication does, and reports whether r may go on; when it may
// not, r has been answered (429 with Retry-After). Use it for other credentials a
// client may guess, such as a dashboard's session tokens.
func (g *Gate) SpendAddress(w http.ResponseWriter, r *http.Request) bool { return g.allowAddr(w, r) }

// ClientAddr returns the address of the client that sent r, as the burst limit of
// anonymous requests sees it (see Config.TrustedProxies).
func (g *Gate) ClientAddr(r *http.Request) netip.Addr { return ratelimit.ClientAddr(r, g.proxies) }

// Limiter returns the burst limiter, for its statistics.
func (g *Gate) Limiter() *ratelimit.Limiter { return g.limiter }

// Catalog returns the plan catalog the gate was built with.
func (g *Gate) Catalog() entitlement.Catalog { return g.catalog }

// serve runs the chain for a route whose plan has rank minRank.
func (g *Gate) serve(w http.ResponseWriter, r *http.Request, next http.Handler, minRank int) {
	ctx := r.Context()
	var key string
	if v := r.Header[g.header]; len(v) > 0 {
		key = v[0]
	}
	p, err := g.auth.Authenticate(ctx, key)
	if err != nil {
		if errors.Is(err, apikey.ErrMissing) || errors.Is(err, apikey.ErrInvalid) {
			// A missing or unknown key spends its address's anonymous budget,
			// so guessing keys is limited like any anonymous traffic.
			if !g.allowAddr(w, r) {
				return
			}
		} else {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		g.onError(w, r, err)
		return
	}
	r = r.WithContext(apikey.NewContext(ctx, p))
	pl := g.plans[p.Plan]
	if pl == nil || pl.rank < minRank {
		g.onError(w, r, apikey.ErrUpgradeRequired)
		return
	}
	if !p.ExpiresAt.IsZero() {
		// A key in its rotation grace says when it stops working (RFC 8594).
		w.Header().Set(hSunset, p.ExpiresAt.UTC().Format(http.TimeFormat))
	}
	s := &scratch{}
	s.now, s.omit = time.Now(), g.omit
	// The burst bucket is the quota's: the keys of one lineage (a key and its
	// successor during a rotation grace) share one burst budget as they share
	// one monthly quota.
	if pl.limited && !g.allow(w, r, s, pl.keyPrefix+p.QuotaID, "key", pl, true) {
		return
	}
	g.meter(w, r, s, next, p, pl)
}

// allowAddr counts r in its client address's bucket at the anonymous plan's rate
// and reports whether r may go on; when it may not, r has been answered.
func (g *Gate) allowAddr(w http.ResponseWriter, r *http.Request) bool {
	if !g.anon.limited {
		return true
	}
	return g.allow(w, r, &scratch{now: time.Now(), omit: g.omit}, ratelimit.AddrBucket(g.ClientAddr(r)), "ip", g.anon, false)
}

// allow applies p's burst limit to bucket and reports whether r may go on. When
// quotaNext is set and r may go on, the burst headers are left to the quota step
// (setHeaders), which must set them.
func (g *Gate) allow(w http.ResponseWriter, r *http.Request, s *scratch, bucket, kind string, p *plan, quotaNext bool) bool {
	res := g.limiter.Allow(r.Context(), bucket, p.rate)
	h := w.Header()
	switch {
	case res.Err != nil && res.Allowed: // the store failed; fail-open
		if gone(r) {
			return false // nobody to serve
		}
		s.setBurstPolicy(h, p)
		g.decide(StepBurst, kind, p.name, ResultStoreError)
		return true
	case res.Err != nil:
		if gone(r) {
			return false
		}
		s.setBurstPolicy(h, p)
		g.decide(StepBurst, kind, p.name, ResultStoreError)
		g.onError(w, r, fmt.Errorf("%w: %w", ErrUnavailable, res.Err))
		return false
	}
	t := s.countBurst(p, res.Window)
	if !res.Allowed || !quotaNext {
		g.setHeaders(s, h, nil)
	}
	if !res.Allowed {
		h.Set(hRetryAfter, itoa(max(t, 1)))
		g.decide(StepBurst, kind, p.name, ResultLimited)
		g.onError(w, r, ratelimit.ErrLimited)
		return false
	}
	g.decide(StepBurst, kind, p.name, ResultAllowed)
	return true
}

// gone reports whether r's client has gone away. A request whose deadline passed
// is still answered: its dependencies were too slow (503).
func gone(r *http.Request) bool { return errors.Is(r.Context().Err(), context.Canceled) }

func (g *Gate) decide(step, bucket, planName, result string) {
	if g.observe != nil {
		g.observe(Decision{Step: step, Bucket: bucket, Plan: planName, Result: result})
	}
}

// meter spends one call of the principal's quota, serves next, and gives the call
// back if next's answer does not count.
func (g *Gate) meter(w http.ResponseWriter, r *http.Request, s *scratch, next http.Handler, p apikey.Principal, pl *plan) {
	now := s.now // the wall clock, read once a request
	if !g.wallClock {
		now = g.now()
	}
	u, err := g.leases.Take(r.Context(), p.QuotaID, now)
	switch {
	case errors.Is(err, quota.ErrExceeded):
		h := w.Header()
		g.setHeaders(s, h, &u)
		h.Set(hRetryAfter, itoa(quota.RetryAfter(u, now)))
		g.decide(StepQuota, "", pl.name, ResultExceeded)
		g.onError(w, r, err)
		return
	case errors.Is(err, quota.ErrNotFound):
		// A key without a quota can spend nothing: it is as good as revoked.
		g.setHeaders(s, w.Header(), nil)
		g.onError(w, r, fmt.Errorf("%w: %w", apikey.ErrInvalid, err))
		return
	case err != nil:
		g.setHeaders(s, w.Header(), nil)
		g.decide(StepQuota, "", pl.name, ResultStoreError)
		g.onError(w, r, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	g.decide(StepQuota, "", pl.name, ResultAllowed)
	g.setHeaders(s, w.Header(), &u)
	m := &s.meter
	*m = meterWriter{ResponseWriter: w, g: g, s: s, u: u}
	next.ServeHTTP(m, r)
	if m.decide(http.StatusOK) {
		g.usage.note(p, now)
		return
	}
	// Given back to the lease in memory: nothing to fail during an outage, and
	// nothing that depends on the client still being connected.
	g.leases.Refund(p.QuotaID, u)
}

// Usage returns quota id's usage at now as served: the quota store's count less
// the calls this gate holds leased and unspent. Other replicas' unspent leases
// still count until they are spent or given back (within their idle timeout,
// 2 s by default), so across replicas the figure settles within seconds.
func (g *Gate) Usage(ctx context.Context, id string) (quota.Usage, error) {
	u, err := g.quotas.Usage(ctx, id, g.now())
	if err != nil {
		return u, err
	}
	u.Used = max(u.Used-g.leases.Unspent(id, u.CycleStart), 0)
	return u, nil
}

// ForgetKeys drops the verified-key cache's entries of the keys with those hashes
// (all of them with none), so that their next request asks the key store: what a
// change channel such as apikey/pqnotify calls when another process changed keys.
func (g *Gate) ForgetKeys(hashes ...string) { g.auth.Forget(hashes...) }

// SetKeyChannel tells the gate whether a channel that carries every process's key
// changes to ForgetKeys is up: while it is, verified keys are cached for the
// cache's TTL; while it is not, for its short FallbackTTL, which then bounds how
// long another process's revocation goes unseen.
func (g *Gate) SetKeyChannel(up bool) { g.auth.SetChannel(up) }

// KeyCacheStats returns the verified-key cache's counters.
func (g *Gate) KeyCacheStats() apikey.CacheStats { return g.auth.Stats() }

// Leases returns the gate's quota leases, for their statistics.
func (g *Gate) Leases() *quota.Leases { return g.leases }

// Bootstrap prepares the schema of every store the gate was given that keeps one
// (the SQL stores: keys first, then quotas, which may share the keys' table). It
// is idempotent and safe to run from several replicas at once.
func (g *Gate) Bootstrap(ctx context.Context) error {
	for _, s := range []any{g.keys, g.quotas} {
		if b, ok := s.(interface{ Bootstrap(context.Context) error }); ok {
			if err := b.Bootstrap(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// SQLiteDSN returns a modernc.org/sqlite DSN for the database file at path with the
// settings the SQL stores are built for: WAL (readers beside the one writer), a busy
// timeout for other processes' writes, synchronous=NORMAL (durable at every
// checkpoint; with WAL a crash loses at most the last transactions, never the
// file), foreign keys, and immediate write transactions. Open it with the driver
// name "sqlite".
func SQLiteDSN(path string) string { return sqldb.SQLiteDSN(path) }

// WriteError is the default Config.OnError: it answers err as an RFC 9457 problem
// from tollgate's one table of errors, so every package's refusals read alike (401
// "Missing x-api-key", 429 "Rate limit exceeded", …). An error that is in no row of
// the table is a failed dependency: 503 with Retry-After, and none of its text.
func WriteError(w http.ResponseWriter, _ *http.Request, err error) { problem.WriteError(w, err) }

// ProblemFor returns the status and the RFC 9457 detail WriteError answers err
// with, and whether err is a failed dependency (503) — for a server that logs and
// counts those before delegating to WriteError.
func ProblemFor(err error) (status int, detail string, dependency bool) { return problem.For(err) }
