package apikey_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/internal/problem/problemtest"
	"github.com/releaseradar/tollgate/internal/testenv"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// ranks is the rank function the tests use, as cmd builds one from its plan catalog.
func ranks(plan string) int { return map[string]int{"public": 0, "pro": 1, "team": 2}[plan] }

// fixture holds a store with one key per case the middleware must tell apart.
type fixture struct {
	store                    apikey.Store
	pro, team, revoked, idle string // raw keys
	proKey                   apikey.Key
}

func newFixture(t testing.TB, s apikey.Store) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{store: s}
	add := func(user, plan string) (string, apikey.Key) {
		raw, k, err := apikey.New(user, plan, 1000, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Create(ctx, &k); err != nil {
			t.Fatal(err)
		}
		return raw, k
	}
	f.pro, f.proKey = add("u-pro", "pro")
	f.team, _ = add("u-team", "team")
	f.idle, _ = add("u-public", "public")
	var rk apikey.Key
	f.revoked, rk = add("u-gone", "team")
	if err := s.Revoke(ctx, rk.ID, "test", now); err != nil {
		t.Fatal(err)
	}
	return f
}

// principalHandler answers 200 with the context's principal as JSON.
var principalHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, ok := apikey.FromContext(r.Context())
	if !ok {
		http.Error(w, "no principal", http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(p)
})

// serve sends a GET with the x-api-key header set to key (unset when key is nil).
func serve(h http.Handler, key *string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	if key != nil {
		r.Header.Set("x-api-key", *key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func ptr(s string) *string { return &s }

func TestRequire(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	a := apikey.NewAuthenticator(f.store, apikey.Config{Rank: ranks})
	proRoute := a.Require(1)(principalHandler)
	teamRoute := a.Require(2)(principalHandler)
	for _, c := range []struct {
		name   string
		h      http.Handler
		key    *string
		status int
		detail string
		user   string
	}{
		{"no header", proRoute, nil, 401, "Missing x-api-key", ""},
		{"empty header", proRoute, ptr(""), 401, "Missing x-api-key", ""},
		{"unknown key", proRoute, ptr("rr_live_nope"), 403, "Invalid or revoked API key", ""},
		{"revoked key", proRoute, ptr(f.revoked), 403, "Invalid or revoked API key", ""},
		{"revoked key outranks nothing", teamRoute, ptr(f.revoked), 403, "Invalid or revoked API key", ""},
		{"public plan on pro route", proRoute, ptr(f.idle), 402, "Upgrade required for this endpoint", ""},
		{"pro plan on team route", teamRoute, ptr(f.pro), 402, "Upgrade required for this endpoint", ""},
		{"pro plan on pro route", proRoute, ptr(f.pro), 200, "", "u-pro"},
		{"team plan on pro route", proRoute, ptr(f.team), 200, "", "u-team"},
		{"team plan on team route", teamRoute, ptr(f.team), 200, "", "u-team"},
		{"padded key", proRoute, ptr(" \t" + f.pro + " "), 200, "", "u-pro"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := serve(c.h, c.key)
			if c.status != 200 {
				problemtest.Check(t, w, c.status, c.detail)
				return
			}
			if w.Code != 200 {
				t.Fatalf("status %d, want 200 (body %s)", w.Code, w.Body)
			}
			var p apikey.Principal
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.UserID != c.user {
				t.Errorf("principal user %q, want %q", p.UserID, c.user)
			}
		})
	}

	// The principal carries the key's id, user, hash, plan and limit, and no raw key.
	w := serve(proRoute, ptr(f.pro))
	var p apikey.Principal
	_ = json.Unmarshal(w.Body.Bytes(), &p)
	want := apikey.Principal{KeyID: f.proKey.ID, UserID: "u-pro", Hash: apikey.Hash(f.pro), Plan: "pro", Limit: 1000}
	if p != want {
		t.Errorf("principal %+v, want %+v", p, want)
	}
	if strings.Contains(w.Body.String(), f.pro) {
		t.Error("the principal holds the raw key")
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	f := newFixture(t, memstore.New())
	var got []error
	a := apikey.NewAuthenticator(f.store, apikey.Config{
		Header: "X-Key",
		OnError: func(w http.ResponseWriter, r *http.Request, err error) {
			got = append(got, err)
			p, ok := apikey.FromContext(r.Context())
			if errors.Is(err, apikey.ErrUpgradeRequired) && (!ok || p.UserID != "u-team") {
				t.Errorf("OnError for 402 got principal %+v, %v", p, ok)
			}
			w.WriteHeader(http.StatusTeapot)
		},
	})
	h := a.Require(1)(principalHandler) // nil Rank: every plan ranks 0
	for _, c := range []struct {
		header, key string
		want        error
	}{
		{"x-api-key", f.pro, apikey.ErrMissing}, // the default header is no longer read
		{"X-Key", f.revoked, apikey.ErrRevoked},
		{"X-Key", f.team, apikey.ErrUpgradeRequired},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set(c.header, c.key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusTeapot || len(got) == 0 || !errors.Is(got[len(got)-1], c.want) {
			t.Errorf("%s: status %d, errors %v; want OnError with %v", c.header, w.Code, got, c.want)
		}
	}
	if !errors.Is(got[1], apikey.ErrInvalid) {
		t.Errorf("a revoked key's error %v does not match ErrInvalid", got[1])
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Key", f.idle)
	a.Require(0)(principalHandler).ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("Require(0) with a nil Rank answered %d, want 200", w.Code)
	}
}

// countingStore counts lookups and can fail them.
type countingStore struct {
	apikey.Store
	lookups atomic.Int32
	err     error
}

func (s *countingStore) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	s.lookups.Add(1)
	if s.err != nil {
		return apikey.Key{}, s.err
	}
	return s.Store.ByHash(ctx, hash)
}

func TestStoreFailureIs503WithoutInternals(t *testing.T) {
	t.Parallel()
	s := &countingStore{Store: memstore.New(), err: errors.New(`pq: relation "api_keys" does not exist at 10.1.2.3`)}
	a := apikey.NewAuthenticator(s, apikey.Config{})
	_, err := a.Authenticate(context.Background(), "rr_live_whatever")
	if err == nil || !strings.HasPrefix(err.Error(), "apikey: ") || errors.Is(err, apikey.ErrInvalid) {
		t.Errorf("Authenticate on a failing store = %v, want the wrapped store error", err)
	}
	if strings.Contains(err.Error(), "rr_live_whatever") {
		t.Errorf("the error holds the raw key: %v", err)
	}
	w := serve(a.Require(0)(principalHandler), ptr("rr_live_whatever"))
	problemtest.Check(t, w, 503, "API key check temporarily unavailable")
	for _, leak := range []string{"pq", "relation", "10.1.2.3", "api_keys"} {
		if strings.Contains(w.Body.String(), leak) {
			t.Errorf("the 503 body leaks %q: %s", leak, w.Body)
		}
	}
}

func TestMaxKeyLength(t *testing.T) {
	t.Parallel()
	s := &countingStore{Store: memstore.New()}
	for _, c := range []struct {
		max, n  int
		lookups int32
	}{
		{0, 256, 1}, {0, 257, 0}, {10, 10, 1}, {10, 11, 0},
	} {
		a := apikey.NewAuthenticator(s, apikey.Config{MaxKeyLength: c.max})
		before := s.lookups.Load()
		_, err := a.Authenticate(context.Background(), strings.Repeat("k", c.n))
		if !errors.Is(err, apikey.ErrInvalid) {
			t.Errorf("max %d, %d bytes: %v, want ErrInvalid", c.max, c.n, err)
		}
		if got := s.lookups.Load() - before; got != c.lookups {
			t.Errorf("max %d, %d bytes: %d store lookups, want %d", c.max, c.n, got, c.lookups)
		}
	}
}

// TestBadHeaders sends hostile header values through the middleware on each store.
func TestBadHeaders(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) apikey.Store{
		"memstore": func(t *testing.T) apikey.Store { return memstore.New() },
		"sqlite":   func(t *testing.T) apikey.Store { return bootstrapped(t, sqlstore.New(testenv.SQLite(t))) },
		"postgres": func(t *testing.T) apikey.Store { return bootstrapped(t, sqlstore.New(testenv.Postgres(t))) },
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, newStore(t))
			h := apikey.NewAuthenticator(f.store, apikey.Config{Rank: ranks}).Require(1)(principalHandler)
			for _, c := range []struct {
				name, value string
				status      int
			}{
				{"empty", "", 401},
				{"whitespace", " \t  ", 401},
				{"10 KB", strings.Repeat("A", 10<<10), 403},
				{"10 KB after the prefix", apikey.Prefix + strings.Repeat("x", 10<<10), 403},
				{"non-ASCII", "rr_live_ключ🔑", 403},
				{"valid key with a non-ASCII tail", f.pro + "é", 403},
				{"SQL text", "' OR 1=1 --", 403},
				{"SQL after the prefix", "rr_live_' OR '1'='1", 403},
				{"SQL statement", "x'; DROP TABLE api_keys; --", 403},
				{"NUL byte", "rr_live_\x00abc", 403},
				{"control characters", "\x1b[31mred", 403},
				{"a hash instead of a key", apikey.Hash(f.pro), 403},
			} {
				w := serve(h, &c.value)
				detail := map[int]string{401: "Missing x-api-key", 403: "Invalid or revoked API key"}[c.status]
				t.Run(c.name, func(t *testing.T) { problemtest.Check(t, w, c.status, detail) })
			}
			// The table survived the SQL text and still answers.
			if w := serve(h, &f.pro); w.Code != 200 {
				t.Errorf("a valid key after the hostile ones: %d %s", w.Code, w.Body)
			}
		})
	}
}

func bootstrapped(t testing.TB, s *sqlstore.Store) *sqlstore.Store {
	t.Helper()
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}
