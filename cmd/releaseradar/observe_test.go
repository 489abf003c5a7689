package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/session"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/ratelimit"
)

func newTestObserver(t *testing.T, format string) (*observer, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	return newObserver(newLogger(&buf, format), defaultCatalog().Names(), planPublic, prometheus.NewRegistry()), &buf
}

func TestAccessLogLine(t *testing.T) {
	t.Parallel()
	raw, k, err := apikey.New(keyPrefix, "u1", "pro", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			o, buf := newTestObserver(t, format)
			r := mux.NewRouter()
			// Stand-in for the authenticator: it puts the key's principal in the context.
			auth := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					p := apikey.Principal{KeyID: "key_1", UserID: "u1", Hash: k.Hash, Plan: "pro", QuotaID: "key_1"}
					next.ServeHTTP(w, r.WithContext(apikey.NewContext(r.Context(), p)))
				})
			}
			r.Handle("/things/{id}", named("/things/{id}", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusCreated)
			}))))
			h := o.Handle(r, 0)

			req := httptest.NewRequest(http.MethodGet, "/things/42?api_key="+raw, nil)
			req.Header.Set("x-api-key", raw)
			h.ServeHTTP(httptest.NewRecorder(), req)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/nowhere/"+raw, nil))

			log := buf.String()
			if strings.Contains(log, raw) || strings.Contains(log, k.Hash) {
				t.Fatalf("the log holds the raw key or the whole hash:\n%s", log)
			}
			lines := strings.Split(strings.TrimSpace(log), "\n")
			if len(lines) != 2 {
				t.Fatalf("%d log lines, want 2:\n%s", len(lines), log)
			}
			if format == "json" {
				var rec map[string]any
				if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
					t.Fatal(err)
				}
				want := map[string]any{"msg": "request", "method": "GET", "path": "/things/42", "status": 201.0, "plan": "pro", "key": k.Hash[:8]}
				for f, v := range want {
					if rec[f] != v {
						t.Errorf("%s = %v, want %v", f, rec[f], v)
					}
				}
				if _, ok := rec["ms"].(float64); !ok {
					t.Errorf("ms = %v", rec["ms"])
				}
			} else {
				for _, part := range []string{"method=GET", "path=/things/42", "status=201", "plan=pro", "key=" + k.Hash[:8], "ms="} {
					if !strings.Contains(lines[0], part) {
						t.Errorf("line %q lacks %q", lines[0], part)
					}
				}
			}
			if !strings.Contains(lines[1], "rr_live_[redacted]") || !strings.Contains(lines[1], "404") {
				t.Errorf("unmatched line %q", lines[1])
			}
			if got := testutil.ToFloat64(o.requests.WithLabelValues("/things/{id}", "GET", "201", "pro")); got != 1 {
				t.Errorf("requests{route=/things/{id}} = %v, want 1", got)
			}
			if got := testutil.ToFloat64(o.requests.WithLabelValues("unmatched", "GET", "404", "none")); got != 1 {
				t.Errorf("requests{route=unmatched} = %v, want 1", got)
			}
		})
	}
}

func TestLogPath(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"/events/search":                 "/events/search",
		"/events/rr_live_abcdef/x":       "/events/rr_live_[redacted]/x",
		"/rr_live_abcdef":                "/rr_live_[redacted]",
		"/" + strings.Repeat("a", 300):   "/" + strings.Repeat("a", 255) + "…",
		"/companies/%3Cscript%3E/impact": "/companies/%3Cscript%3E/impact",
	}
	for in, want := range tests {
		if got := logPath(in); got != want {
			t.Errorf("logPath(%.40q) = %.40q, want %.40q", in, got, want)
		}
	}
}

// TestErrorWriter checks the server's error writer: every answer comes from the
// one error table, a failed dependency is logged (and answered 503 without its
// cause), a refusal is not, and a canceled request is not a failure.
func TestErrorWriter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		status int
		detail string
		logged bool
	}{
		{apikey.ErrMissing, 401, "Missing x-api-key", false},
		{errNoSession, 401, "Missing dashboard token", false},
		{session.ErrInvalid, 401, "Invalid or expired dashboard token", false},
		{errNoRoute, 404, "No such route", false},
		{errMethod, 405, "Method not allowed on this route", false},
		{errBodyTooLarge, 413, "Request body too large", false},
		{&market.InputError{Param: "limit", Reason: "must be an integer from 1 to 100"}, 400, `Invalid parameter "limit": must be an integer from 1 to 100`, false},
		{fmt.Errorf("%w: %w", context.Canceled, &market.InputError{Param: "ticker", Reason: "must be a ticker symbol"}), 400, `Invalid parameter "ticker": must be a ticker symbol`, false},
		{fmt.Errorf("wrapped: %w", &market.NotFoundError{What: "Company"}), 404, "Company not found", false},
		{market.ErrNotFound, 404, "Not found", false},
		{fmt.Errorf("market: search: %w", errors.New(`pq: syntax error at or near "ORDER"`)), 503, "Service temporarily unavailable", true},
		{fmt.Errorf("%w: %w", tollgate.ErrUnavailable, errors.New("redis: connection refused")), 503, "Service temporarily unavailable", true},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			e := &errorWriter{log: newLogger(&buf, "text")}
			w := httptest.NewRecorder()
			e.write(w, httptest.NewRequest(http.MethodGet, "/events/search", nil), tc.err)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			var p struct{ Detail string }
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Detail != tc.detail {
				t.Fatalf("detail %q (%v), want %q", p.Detail, err, tc.detail)
			}
			if strings.Contains(w.Body.String(), "pq:") || strings.Contains(w.Body.String(), "redis") {
				t.Fatalf("the body leaks the cause: %s", w.Body)
			}
			if tc.status == 503 && w.Header().Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			if logged := strings.Contains(buf.String(), "a dependency is unavailable"); logged != tc.logged {
				t.Fatalf("logged = %v, want %v: %q", logged, tc.logged, buf.String())
			}
		})
	}

	// A dependency error of a request whose client has gone is no failure.
	var buf bytes.Buffer
	e := &errorWriter{log: newLogger(&buf, "text")}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := httptest.NewRecorder()
	e.write(w, httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx), fmt.Errorf("%w: %w", tollgate.ErrUnavailable, context.Canceled))
	if w.Code != 503 || buf.Len() != 0 {
		t.Errorf("canceled request: %d, log %q", w.Code, buf.String())
	}
}

// The gate's decisions become the limiter and quota metrics.
func TestDecisionMetrics(t *testing.T) {
	t.Parallel()
	o, _ := newTestObserver(t, "text")
	o.decision(tollgate.Decision{Step: tollgate.StepBurst, Bucket: "key", Plan: planPro, Result: tollgate.ResultLimited})
	o.decision(tollgate.Decision{Step: tollgate.StepBurst, Bucket: "ip", Plan: planPublic, Result: tollgate.ResultAllowed})
	o.decision(tollgate.Decision{Step: tollgate.StepQuota, Plan: planTeam, Result: tollgate.ResultExceeded})
	o.decision(tollgate.Decision{Step: tollgate.StepQuota, Plan: planTeam, Result: tollgate.ResultAllowed})
	o.decision(tollgate.Decision{Step: tollgate.StepBurst, Bucket: "key", Plan: "unknown", Result: tollgate.ResultAllowed})
	if got := testutil.ToFloat64(o.burst[burstLabels{"key", planPro, tollgate.ResultLimited}]); got != 1 {
		t.Errorf("limited pro keys = %v", got)
	}
	if got := testutil.ToFloat64(o.burst[burstLabels{"ip", planPublic, tollgate.ResultAllowed}]); got != 1 {
		t.Errorf("allowed public addresses = %v", got)
	}
	if got := testutil.ToFloat64(o.quotaRefused.WithLabelValues(planTeam)); got != 1 {
		t.Errorf("team quota refusals = %v", got)
	}
}

func TestWebhookLabelsAreBounded(t *testing.T) {
	t.Parallel()
	o, _ := newTestObserver(t, "text")
	o.webhookEvent("invoice.paid", "granted")
	o.webhookEvent("made.up.type.rr_live_x", "ignored")
	if got := testutil.ToFloat64(o.webhookEvents.WithLabelValues("invoice.paid", "granted")); got != 1 {
		t.Errorf("invoice.paid = %v", got)
	}
	if got := testutil.ToFloat64(o.webhookEvents.WithLabelValues("other", "ignored")); got != 1 {
		t.Errorf("other = %v", got)
	}
	if n := testutil.CollectAndCount(o.webhookEvents); n != 2 {
		t.Errorf("%d series, want 2", n)
	}
}

func TestPanicBecomesLogged500(t *testing.T) {
	t.Parallel()
	o, buf := newTestObserver(t, "json")
	h := o.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }), 0)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/x", nil))
	if w.Code != 500 || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("status %d, Content-Type %q", w.Code, w.Header().Get("Content-Type"))
	}
	log := buf.String()
	if !strings.Contains(log, `"msg":"handler panicked"`) || !strings.Contains(log, `"panic":"boom"`) || !strings.Contains(log, `"status":500`) {
		t.Fatalf("log %s", log)
	}
}

// Each failure is counted against the dependency it waited on.
func TestDependencyOf(t *testing.T) {
	t.Parallel()
	for err, want := range map[error]string{
		fmt.Errorf("%w: %w", tollgate.ErrUnavailable, ratelimit.ErrUnavailable): depRedis,
		fmt.Errorf("checkout: %w", entitlement.ErrStripe):                       depStripe,
		fmt.Errorf("%w: %w", tollgate.ErrUnavailable, errors.New("pq: gone")):   depDatabase,
	} {
		if got := dependencyOf(err); got != want {
			t.Errorf("dependencyOf(%v) = %q, want %q", err, got, want)
		}
	}
}
