package apikey_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
)

// fuzzKey is the one valid key in FuzzAuthenticate's store; the seed corpus holds it.
const fuzzKey = "rr_live_Q2hhbmdlIG1lIGJ1dCBrZWVwIG1lIHNlY3JldC4"

// FuzzAuthenticate sends arbitrary x-api-key values through the middleware: it must
// answer 200 exactly for the stored key (trimmed), 401 exactly for a blank value,
// and 403 otherwise, with the contract's problem detail, and never panic.
func FuzzAuthenticate(f *testing.F) {
	s := memstore.New()
	k := apikey.Key{UserID: "u1", Hash: apikey.Hash(fuzzKey), KeyPrefix: apikey.Prefix,
		Last4: fuzzKey[len(fuzzKey)-4:], Plan: "pro", MonthlyCallLimit: 10, CreatedAt: now}
	if err := s.Create(context.Background(), &k); err != nil {
		f.Fatal(err)
	}
	h := apikey.NewAuthenticator(s, apikey.Config{}).Require(0)(principalHandler)
	f.Add(fuzzKey)
	f.Add("")
	f.Add("' OR 1=1 --")
	f.Fuzz(func(t *testing.T, value string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["X-Api-Key"] = []string{value} // unvalidated, as a lenient proxy might pass it
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		trimmed := strings.TrimSpace(value)
		want := http.StatusForbidden
		switch trimmed {
		case "":
			want = http.StatusUnauthorized
		case fuzzKey:
			want = http.StatusOK
		}
		if w.Code != want {
			t.Fatalf("x-api-key %q: status %d, want %d", value, w.Code, want)
		}
		if want == http.StatusOK {
			return
		}
		var p struct{ Detail string }
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatalf("x-api-key %q: body %q is not JSON", value, w.Body)
		}
		if wantDetail := map[int]string{401: "Missing x-api-key", 403: "Invalid or revoked API key"}[want]; p.Detail != wantDetail {
			t.Fatalf("x-api-key %q: detail %q, want %q", value, p.Detail, wantDetail)
		}
	})
}
