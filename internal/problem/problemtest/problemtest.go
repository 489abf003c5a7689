// Package problemtest checks RFC 9457 problem responses in tests.
package problemtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/releaseradar/tollgate/internal/problem"
)

// Check fails t unless w holds an application/problem+json response with status,
// the status text as title, and detail.
func Check(t testing.TB, w *httptest.ResponseRecorder, status int, detail string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d (body %q)", w.Code, status, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem.Details
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("body %q is not JSON: %v", w.Body, err)
	}
	if p.Status != status || p.Detail != detail || p.Title != http.StatusText(status) {
		t.Errorf("problem %+v, want status %d, title %q, detail %q", p, status, http.StatusText(status), detail)
	}
}
