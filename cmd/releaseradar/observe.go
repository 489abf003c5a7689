package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/ratelimit"
)

// observer writes the access log and keeps the HTTP metrics. Labels hold route
// templates, methods, statuses, plan names and webhook event types from fixed
// lists: never a raw path, a key or a hash.
type observer struct {
	log       *slog.Logger
	plans     map[string]bool // plan names that may appear as labels
	anonymous string          // the plan of requests without a key on API routes
	// apiRoutes are the route templates behind the gate, whose keyless requests
	// spend the anonymous plan's budget.
	apiRoutes     map[string]bool
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	quotaRefused  *prometheus.CounterVec
	webhookEvents *prometheus.CounterVec
	dependencies  *prometheus.CounterVec
	channelUp     prometheus.Gauge
	channelDowns  prometheus.Counter
	// burst holds the gate's burst decision counters, one per bucket kind, plan
	// and result, created up front so the hot path only looks one up.
	burst map[burstLabels]prometheus.Counter
}

type burstLabels struct{ kind, plan, result string }

// webhookTypes are the Stripe event types that get their own label value.
var webhookTypes = map[string]bool{
	"checkout.session.completed":    true,
	"customer.subscription.created": true,
	"customer.subscription.updated": true,
	"customer.subscription.deleted": true,
	"invoice.paid":                  true,
	"invoice.payment_failed":        true,
}

func newObserver(log *slog.Logger, plans []string, anonymous string, reg prometheus.Registerer) *observer {
	o := &observer{
		log:       log,
		plans:     make(map[string]bool, len(plans)),
		anonymous: anonymous,
		apiRoutes: make(map[string]bool),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "releaseradar_http_requests_total",
			Help: "HTTP requests by route template, method, status and plan.",
		}, []string{"route", "method", "status", "plan"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "releaseradar_http_request_duration_seconds",
			Help:    "HTTP request latency by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		quotaRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "releaseradar_quota_refusals_total",
			Help: "Requests refused because the key's monthly quota was spent, by plan.",
		}, []string{"plan"}),
		webhookEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "releaseradar_webhook_events_total",
			Help: "Stripe webhook events by type and outcome.",
		}, []string{"type", "outcome"}),
		dependencies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "releaseradar_dependency_errors_total",
			Help: "Failures of a dependency (database, redis, stripe) seen while serving, by dependency.",
		}, []string{"dependency"}),
		channelUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_keys_channel_up",
			Help: "1 while the channel of key changes from every replica (LISTEN/NOTIFY) is up; 0 while cached keys fall back to a 1 s life.",
		}),
		channelDowns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_keys_channel_downs_total",
			Help: "Times the channel of key changes went down.",
		}),
		burst: make(map[burstLabels]prometheus.Counter),
	}
	for _, d := range []string{depDatabase, depRedis, depStripe} {
		o.dependencies.WithLabelValues(d)
	}
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_ratelimit_decisions_total",
		Help: "Burst limit decisions by bucket kind (key, ip), plan and result (allowed, limited, store_error).",
	}, []string{"kind", "plan", "result"})
	for _, p := range plans {
		o.plans[p] = true
		o.quotaRefused.WithLabelValues(p)
		for _, kind := range []string{"key", "ip"} {
			for _, result := range []string{tollgate.ResultAllowed, tollgate.ResultLimited, tollgate.ResultStoreError} {
				o.burst[burstLabels{kind, p, result}] = decisions.WithLabelValues(kind, p, result)
			}
		}
	}
	reg.MustRegister(o.requests, o.latency, o.quotaRefused, o.webhookEvents, o.dependencies, o.channelUp, o.channelDowns, decisions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return o
}

// decision counts one of the gate's decisions; it is the gate's Config.Observe.
func (o *observer) decision(d tollgate.Decision) {
	switch d.Step {
	case tollgate.StepBurst:
		if c := o.burst[burstLabels{d.Bucket, d.Plan, d.Result}]; c != nil {
			c.Inc()
		}
		if d.Result == tollgate.ResultStoreError {
			o.dependencyFailed(depRedis)
		}
	case tollgate.StepQuota:
		if d.Result == tollgate.ResultExceeded {
			o.quotaRefused.WithLabelValues(o.planLabel(d.Plan)).Inc()
		}
	}
}

// keyChannel records the state of the channel of key changes.
func (o *observer) keyChannel(up bool) {
	if up {
		o.channelUp.Set(1)
		return
	}
	o.channelUp.Set(0)
	o.channelDowns.Inc()
}

// gateMetrics exports the gate's key cache and quota lease counters.
func gateMetrics(g *tollgate.Gate, _ *observer) []prometheus.Collector {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	return []prometheus.Collector{
		counter("tollgate_keys_cache_hits_total", "Keys authenticated from the verified-key cache.", func() uint64 { return g.KeyCacheStats().Hits }),
		counter("tollgate_keys_cache_negative_hits_total", "Unknown or revoked keys refused from the cache.", func() uint64 { return g.KeyCacheStats().NegativeHits }),
		counter("tollgate_keys_cache_lookups_total", "Key store lookups the cache made.", func() uint64 { return g.KeyCacheStats().Lookups }),
		gauge("tollgate_keys_cache_entries", "Entries the verified-key cache holds.", func() int64 { return int64(g.KeyCacheStats().Entries) }),
		counter("tollgate_quota_reservations_total", "Reservations of quota calls made from the quota store (one per lease batch).", func() uint64 { return g.Leases().Stats().Reservations }),
		counter("tollgate_quota_reserved_calls_total", "Calls those reservations were granted.", func() uint64 { return g.Leases().Stats().Reserved }),
		counter("tollgate_quota_released_calls_total", "Unspent leased calls given back to the quota store.", func() uint64 { return g.Leases().Stats().Released }),
		gauge("tollgate_quota_leased_unspent", "Calls held in leases and not spent yet.", func() int64 { return g.Leases().Stats().Unspent }),
		gauge("tollgate_quota_in_doubt", "Calls of reservations and releases whose outcome the database could not tell yet.", func() int64 { return g.Leases().Stats().InDoubt }),
	}
}

// dependencyFailed counts a failure of the named dependency.
func (o *observer) dependencyFailed(dep string) { o.dependencies.WithLabelValues(dep).Inc() }

// limiterMetrics exports the burst limiter's own counters.
func limiterMetrics(l *ratelimit.Limiter) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_ratelimit_store_errors_total",
			Help: "Burst counter store errors (the request then went on uncounted: the limiter fails open).",
		}, func() float64 { return float64(l.Stats().StoreErrors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_ratelimit_local_denials_total",
			Help: "Requests refused from the local deny cache without asking the store.",
		}, func() float64 { return float64(l.Stats().LocalDenials) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_ratelimit_deny_cache_entries",
			Help: "Exhausted buckets held in the local deny cache.",
		}, func() float64 { return float64(l.Stats().DenyCacheEntries) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_ratelimit_store_calls_total",
			Help: "Round trips to the burst counter store.",
		}, func() float64 { return float64(l.Stats().StoreCalls) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tollgate_ratelimit_batched_total",
			Help: "Requests allowed from hits taken in a batch, without a store call of their own.",
		}, func() float64 { return float64(l.Stats().Batched) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_ratelimit_batch_held",
			Help: "Hits taken from the store in batches and not spent yet.",
		}, func() float64 { return float64(l.Stats().BatchHeld) }),
	}
}

// planLabel keeps label values to known plans: "none" before authentication,
// "other" for a plan the catalog does not know.
func (o *observer) planLabel(plan string) string {
	switch {
	case plan == "":
		return "none"
	case o.plans[plan]:
		return plan
	default:
		return "other"
	}
}

// webhookEvent counts one webhook event; it is entitlement's Config.Observe.
func (o *observer) webhookEvent(eventType, outcome string) {
	if !webhookTypes[eventType] {
		eventType = "other"
	}
	o.webhookEvents.WithLabelValues(eventType, outcome).Inc()
}

// routeKey is the context key of the request's *statusRecorder, where the
// matched route's handler records its template for the access log and the
// metrics, which wrap the router. Identity is not kept there: it is read with
// apikey.FromContext.
type routeKey struct{}

// Handle wraps the whole server: it bounds each request's context by timeout (a
// slow database or Redis then fails the request with 503, from the error table,
// within timeout instead of piling up; 0 means no bound), times the request,
// writes one access log line and counts it. One request copy carries all of it.
func (o *observer) Handle(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		ctx := context.WithValue(apikey.Capture(r.Context()), routeKey{}, rec)
		if timeout > 0 {
			// Armed only if the request waits on something (see lazyDeadline).
			lazy, end := withLazyDeadline(ctx, start.Add(timeout))
			defer end()
			ctx = lazy
		}
		o.serve(next, rec, r.WithContext(ctx))
		now := time.Now()
		elapsed := now.Sub(start)
		status := rec.code()

		route := rec.route
		if route == "" {
			route = "unmatched"
			if r.Method == http.MethodOptions {
				route = "preflight"
			}
		}
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodOptions:
		default:
			method = "other"
		}
		plan, key := "", "-"
		if p, ok := apikey.FromContext(ctx); ok {
			plan = p.Plan
			if len(p.Hash) >= 8 {
				key = p.Hash[:8]
			}
		} else if o.apiRoutes[route] {
			plan = o.anonymous
		}
		o.requests.WithLabelValues(route, method, statusLabel(status), o.planLabel(plan)).Inc()
		o.latency.WithLabelValues(route, method).Observe(elapsed.Seconds())
		if plan == "" {
			plan = "-"
		}
		// The record goes to the handler directly: Logger.LogAttrs would also
		// capture the caller's program counter, for a source location the
		// access log never shows.
		if h := o.log.Handler(); h.Enabled(r.Context(), slog.LevelInfo) {
			record := slog.NewRecord(now, slog.LevelInfo, "request", 0)
			record.AddAttrs(
				slog.String("method", r.Method),
				slog.String("path", logPath(r.URL.Path)),
				slog.Int("status", status),
				slog.Float64("ms", float64(elapsed.Microseconds())/1000),
				slog.String("plan", plan),
				slog.String("key", key),
			)
			_ = h.Handle(r.Context(), record)
		}
	})
}

// serve runs next and turns a panic into a logged 500, so that one bad request
// neither drops its connection silently nor escapes the access log.
func (o *observer) serve(next http.Handler, w *statusRecorder, r *http.Request) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler {
			panic(v)
		}
		o.log.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
			slog.String("method", r.Method),
			slog.String("path", logPath(r.URL.Path)),
			slog.String("panic", fmt.Sprint(v)),
			slog.String("stack", string(debug.Stack())))
		if w.status == 0 {
			problem.WriteError(w, errInternal)
		}
	}()
	next.ServeHTTP(w, r)
}

// statusLabel turns a status into a label value.
func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// logPath returns the path fit for a log: a segment that looks like a raw key (a
// client that put its key in the URL) is cut to its prefix, and very long paths
// are shortened.
func logPath(p string) string {
	if i := strings.Index(p, keyPrefix); i >= 0 {
		end := strings.IndexByte(p[i:], '/')
		if end < 0 {
			end = len(p) - i
		}
		p = p[:i] + keyPrefix + "[redacted]" + p[i+end:]
	}
	const maxLen = 256
	if len(p) > maxLen {
		p = p[:maxLen] + "…"
	}
	return p
}

// named wraps the handler of the route with template tmpl so that the access log
// and the metrics see the template (never the raw path).
func named(tmpl string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := r.Context().Value(routeKey{}).(*statusRecorder); ok {
			rec.route = tmpl
		}
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status a handler wrote and the template of the
// route that served it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	route  string
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
