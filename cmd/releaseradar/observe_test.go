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

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/session"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/ratelimit"
)

func newTestObserver(t *testing.T, format string) (*observer, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	return newObserver(newLogger(&buf, format), entitlement.DefaultCatalog().Names(), prometheus.NewRegistry()), &buf
}

func TestAccessLogLine(t *testing.T) {
	t.Parallel()
	raw, k, err := apikey.New("u1", "pro", 10, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			o, buf := newTestObserver(t, format)
			r := mux.NewRouter()
			r.Use(noteRoute)
			// Stand-in for the authenticator: it puts the key's principal in the context.
			auth := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					p := apikey.Principal{KeyID: "key_1", UserID: "u1", Hash: k.Hash, Plan: "pro", Limit: 10}
					next.ServeHTTP(w, r.WithContext(apikey.NewContext(r.Context(), p)))
				})
			}
			r.Handle("/things/{id}", auth(notePrincipal(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusCreated)
			}))))
			h := o.Handle(r)

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

func TestErrorTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		status int
		detail string
	}{
		{apikey.ErrMissing, 401, "Missing x-api-key"},
		{apikey.ErrInvalid, 403, "Invalid or revoked API key"},
		{apikey.ErrUpgradeRequired, 402, "Upgrade required for this endpoint"},
		{ratelimit.ErrLimited, 429, "Rate limit exceeded"},
		{fmt.Errorf("%w: %w", ratelimit.ErrUnavailable, errors.New("redis down")), 503, "Service temporarily unavailable"},
		{quota.ErrExceeded, 429, "Monthly API quota exceeded"},
		{quota.ErrRevoked, 403, "Invalid or revoked API key"},
		{quota.ErrNoKeyID, 403, "Invalid or revoked API key"},
		{fmt.Errorf("%w: %w", errStoreUnavailable, errors.New("database is locked")), 503, "Service temporarily unavailable"},
		{errNoSession, 401, "Missing dashboard token"},
		{session.ErrInvalid, 401, "Invalid or expired dashboard token"},
		{apikey.ErrNoActiveKey, 409, "No active key to rotate"},
		{fmt.Errorf("entitlement: reveal: %w", entitlement.ErrNothingToReveal), 404, "No key waiting to be revealed"},
		{errNoRoute, 404, "No such route"},
		{errMethod, 405, "Method not allowed on this route"},
		{errBodyTooLarge, 413, "Request body larger than 64 KiB"},
		{&market.InputError{Param: "limit", Reason: "must be an integer from 1 to 100"}, 400, `Invalid parameter "limit": must be an integer from 1 to 100`},
		{fmt.Errorf("%w: %w", context.Canceled, &market.InputError{Param: "ticker", Reason: "must be a ticker symbol"}), 400, `Invalid parameter "ticker": must be a ticker symbol`},
		{market.ErrInvalid, 400, "Invalid request"},
		{&market.NotFoundError{What: "Event"}, 404, "Event not found"},
		{fmt.Errorf("wrapped: %w", &market.NotFoundError{What: "Company"}), 404, "Company not found"},
		{market.ErrNotFound, 404, "Not found"},
		{fmt.Errorf("market: search: %w", errors.New("pq: syntax error at or near \"ORDER\"")), 500, "Internal server error"},
		{errors.New("pq: relation \"api_keys\" does not exist"), 500, "Internal server error"},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			t.Parallel()
			o, buf := newTestObserver(t, "text")
			e := &errorWriter{log: o.log, obs: o}
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/events/search", nil)
			r = r.WithContext(apikey.NewContext(r.Context(), apikey.Principal{Plan: "team"}))
			e.write(w, r, tc.err)
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
			if tc.status == 500 && !strings.Contains(buf.String(), "request failed") {
				t.Fatalf("an unexpected error was not logged: %q", buf.String())
			}
			wantQuota := 0.0
			if errors.Is(tc.err, quota.ErrExceeded) {
				wantQuota = 1
			}
			if got := testutil.ToFloat64(o.quotaRefused.WithLabelValues("team")); got != wantQuota {
				t.Errorf("quota refusals = %v, want %v", got, wantQuota)
			}
		})
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
	h := o.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") }))
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
