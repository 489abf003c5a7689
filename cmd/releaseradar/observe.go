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

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/internal/problem"
)

// observer writes the access log and keeps the HTTP metrics. Labels hold route
// templates, methods, statuses, plan names and webhook event types from fixed
// lists: never a raw path, a key or a hash.
type observer struct {
	log           *slog.Logger
	plans         map[string]bool // plan names that may appear as labels
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	quotaRefused  *prometheus.CounterVec
	webhookEvents *prometheus.CounterVec
}

// webhookTypes are the Stripe event types that get their own label value.
var webhookTypes = map[string]bool{
	"checkout.session.completed":    true,
	"customer.subscription.created": true,
	"customer.subscription.updated": true,
	"customer.subscription.deleted": true,
	"invoice.paid":                  true,
	"invoice.payment_failed":        true,
}

func newObserver(log *slog.Logger, plans []string, reg prometheus.Registerer) *observer {
	o := &observer{
		log:   log,
		plans: make(map[string]bool, len(plans)),
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
	}
	for _, p := range plans {
		o.plans[p] = true
		o.quotaRefused.WithLabelValues(p)
	}
	reg.MustRegister(o.requests, o.latency, o.quotaRefused, o.webhookEvents,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return o
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

// quotaRefusal counts a request refused for its monthly quota.
func (o *observer) quotaRefusal(plan string) { o.quotaRefused.WithLabelValues(o.planLabel(plan)).Inc() }

// reqInfo collects what inner handlers learn about a request for the access log.
type reqInfo struct {
	route   string // mux path template
	plan    string
	keyHash string // the key's hash; only its first 8 characters are logged
}

type infoKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(infoKey{}).(*reqInfo)
	return ri
}

// setPlan records an anonymous caller's plan.
func setPlan(r *http.Request, plan string) {
	if ri := infoFrom(r.Context()); ri != nil {
		ri.plan = plan
	}
}

// Handle wraps the whole server: it times each request, writes one access log
// line and counts it.
func (o *observer) Handle(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{}
		rec := &statusRecorder{ResponseWriter: w}
		o.serve(next, rec, r.WithContext(context.WithValue(r.Context(), infoKey{}, ri)))
		elapsed := time.Since(start)
		status := rec.code()

		route := ri.route
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
		o.requests.WithLabelValues(route, method, statusLabel(status), o.planLabel(ri.plan)).Inc()
		o.latency.WithLabelValues(route, method).Observe(elapsed.Seconds())

		key := "-"
		if len(ri.keyHash) >= 8 {
			key = ri.keyHash[:8]
		}
		plan := ri.plan
		if plan == "" {
			plan = "-"
		}
		o.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", logPath(r.URL.Path)),
			slog.Int("status", status),
			slog.Float64("ms", float64(elapsed.Microseconds())/1000),
			slog.String("plan", plan),
			slog.String("key", key),
		)
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
			problem.Write(w, http.StatusInternalServerError, "Internal server error")
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
	if i := strings.Index(p, apikey.Prefix); i >= 0 {
		end := strings.IndexByte(p[i:], '/')
		if end < 0 {
			end = len(p) - i
		}
		p = p[:i] + apikey.Prefix + "[redacted]" + p[i+end:]
	}
	const maxLen = 256
	if len(p) > maxLen {
		p = p[:maxLen] + "…"
	}
	return p
}

// noteRoute records the matched route's template; it runs as mux middleware.
func noteRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ri := infoFrom(r.Context()); ri != nil {
			if route := mux.CurrentRoute(r); route != nil {
				if tmpl, err := route.GetPathTemplate(); err == nil {
					ri.route = tmpl
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// notePrincipal records the authenticated key's plan and hash; it runs right
// after authentication.
func notePrincipal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		noteKey(r)
		next.ServeHTTP(w, r)
	})
}

// noteKey records the plan and hash of the key in r's context, if any.
func noteKey(r *http.Request) {
	if p, ok := apikey.FromContext(r.Context()); ok {
		if ri := infoFrom(r.Context()); ri != nil {
			ri.plan, ri.keyHash = p.Plan, p.Hash
		}
	}
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
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
