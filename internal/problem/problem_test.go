package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Every code has a row, and no two rows share a detail sentence: a sentence is
// written once, in the table.
func TestTable(t *testing.T) {
	t.Parallel()
	seen := map[string]Code{}
	for c := range numCodes {
		r := table[c]
		if r.status < 400 || r.status > 599 || r.detail == "" {
			t.Errorf("code %d: row %+v", c, r)
		}
		if other, dup := seen[r.detail]; dup {
			t.Errorf("codes %d and %d share the detail %q", other, c, r.detail)
		}
		seen[r.detail] = c
	}
}

type detailed struct{ err error }

func (d detailed) Error() string         { return d.err.Error() }
func (d detailed) Unwrap() error         { return d.err }
func (d detailed) ProblemDetail() string { return "Invalid parameter \"q\": too long" }

func TestFor(t *testing.T) {
	t.Parallel()
	missing := New(MissingKey, "apikey: missing x-api-key")
	tests := []struct {
		err    error
		status int
		detail string
		dep    bool
	}{
		{missing, 401, "Missing x-api-key", false},
		{fmt.Errorf("wrapped: %w", missing), 401, "Missing x-api-key", false},
		{detailed{New(Invalid, "market: invalid input")}, 400, `Invalid parameter "q": too long`, false},
		{New(Unavailable, "store down"), 503, "Service temporarily unavailable", true},
		{errors.New("pq: connection refused"), 503, "Service temporarily unavailable", true},
		{fmt.Errorf("%w: %w", New(QuotaExceeded, "q"), errors.New("x")), 429, "Monthly API quota exceeded", false},
	}
	for _, tc := range tests {
		status, detail, dep := For(tc.err)
		if status != tc.status || detail != tc.detail || dep != tc.dep {
			t.Errorf("For(%v) = %d %q %v, want %d %q %v", tc.err, status, detail, dep, tc.status, tc.detail, tc.dep)
		}
	}
	if a, b := New(InvalidKey, "a"), New(InvalidKey, "b"); errors.Is(a, b) {
		t.Error("two sentinels of one code match each other")
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	WriteError(w, errors.New("dial tcp 10.0.0.1:5432: connection refused"))
	var p Details
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusServiceUnavailable || p.Status != http.StatusServiceUnavailable || p.Title != http.StatusText(http.StatusServiceUnavailable) || w.Header().Get("Retry-After") != "1" ||
		w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("%d %+v %v", w.Code, p, w.Header())
	}
	w = httptest.NewRecorder()
	w.Header().Set("Retry-After", "30")
	WriteError(w, New(WebhookFailed, "x"))
	if w.Header().Get("Retry-After") != "30" {
		t.Errorf("an existing Retry-After was replaced: %q", w.Header().Get("Retry-After"))
	}
	w = httptest.NewRecorder()
	WriteError(w, New(RateLimited, "x"))
	if w.Code != 429 || w.Header().Get("Retry-After") != "" {
		t.Errorf("429: %d Retry-After %q (the limiter sets its own)", w.Code, w.Header().Get("Retry-After"))
	}
}
