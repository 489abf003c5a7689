package quota_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/internal/problem/problemtest"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/memstore"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// keyHeader stands in for the authentication middleware: the test puts the key ID
// in a header.
func keyHeader(r *http.Request) (string, bool) {
	id := r.Header.Get("Test-Key-ID")
	return id, id != ""
}

// clock is an injectable, settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

type failingStore struct{ err error }

func (f failingStore) Reserve(context.Context, string, int64, time.Time) (int64, quota.Usage, error) {
	return 0, quota.Usage{}, f.err
}

func (f failingStore) Release(context.Context, string, int64, time.Time) error { return f.err }

// served wraps an OK handler that counts its calls.
type served struct {
	mu    sync.Mutex
	calls int
}

func (s *served) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	_, _ = w.Write([]byte("ok"))
}

func do(h http.Handler, keyID string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/events/search", nil)
	if keyID != "" {
		r.Header.Set("Test-Key-ID", keyID)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func wantQuotaHeaders(t *testing.T, h http.Header, limit, remaining int64, reset time.Time) {
	t.Helper()
	want := map[string]string{
		"X-Quota-Limit":     strconv.FormatInt(limit, 10),
		"X-Quota-Remaining": strconv.FormatInt(remaining, 10),
		"X-Quota-Reset":     strconv.FormatInt(reset.Unix(), 10),
	}
	for name, v := range want {
		if got := h.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%q]", name, got, v)
		}
	}
}

func TestMiddlewareCountsAndRefuses(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{})
	s.Put("k", 2, t0)
	c := &clock{now: t0.Add(time.Hour)}
	next := &served{}
	h := quota.Middleware(s, keyHeader, quota.Config{Now: c.Now})(next)
	reset := t0.Add(quota.DefaultCycle)

	for i, remaining := range []int64{1, 0} {
		w := do(h, "k")
		if w.Code != http.StatusOK {
			t.Fatalf("call %d: status %d, want 200", i+1, w.Code)
		}
		wantQuotaHeaders(t, w.Header(), 2, remaining, reset)
		if ra := w.Header().Get("Retry-After"); ra != "" {
			t.Errorf("call %d: Retry-After %q on a success", i+1, ra)
		}
	}

	c.Set(reset.Add(-90*time.Second - 500*time.Millisecond))
	w := do(h, "k")
	problemtest.Check(t, w, http.StatusTooManyRequests, "Monthly API quota exceeded")
	wantQuotaHeaders(t, w.Header(), 2, 0, reset)
	if ra := w.Header().Get("Retry-After"); ra != "91" {
		t.Errorf("Retry-After %q, want 91 (90.5 s to the cycle's end, rounded up)", ra)
	}
	if next.calls != 2 {
		t.Errorf("handler ran %d times, want 2: a refused request must not reach it", next.calls)
	}

	// At the cycle's end a new cycle opens at now.
	c.Set(reset)
	w = do(h, "k")
	if w.Code != http.StatusOK {
		t.Fatalf("first call of the new cycle: status %d", w.Code)
	}
	wantQuotaHeaders(t, w.Header(), 2, 1, reset.Add(quota.DefaultCycle))
}

func TestMiddlewareErrors(t *testing.T) {
	t.Parallel()
	secret := "pq: password authentication failed for user tollgate at 10.0.0.7"
	cases := []struct {
		name       string
		store      func() quota.Store
		keyID      string
		wantStatus int
		wantDetail string
		wantErr    error
	}{
		{"revoked key", func() quota.Store {
			s := memstore.New(memstore.Config{})
			s.Put("k", 5, t0)
			s.Revoke("k")
			return s
		}, "k", http.StatusForbidden, "Invalid or revoked API key", quota.ErrRevoked},
		{"unknown key", func() quota.Store { return memstore.New(memstore.Config{}) },
			"k", http.StatusForbidden, "Invalid or revoked API key", quota.ErrNotFound},
		{"no key on the request", func() quota.Store { return memstore.New(memstore.Config{}) },
			"", http.StatusForbidden, "Invalid or revoked API key", quota.ErrNoKeyID},
		{"store failure fails closed", func() quota.Store {
			return failingStore{fmt.Errorf("quota/sqlstore: reserve: %w", errors.New(secret))}
		}, "k", http.StatusServiceUnavailable, "Quota service temporarily unavailable", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			next := &served{}
			var gotErr error
			onError := func(w http.ResponseWriter, r *http.Request, err error) {
				gotErr = err
				quota.WriteError(w, r, err)
			}
			for _, cfg := range []quota.Config{{}, {OnError: onError}} {
				w := do(quota.Middleware(c.store(), keyHeader, cfg)(next), c.keyID)
				problemtest.Check(t, w, c.wantStatus, c.wantDetail)
				for _, name := range []string{"X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset", "Retry-After"} {
					if v := w.Header().Get(name); v != "" {
						t.Errorf("%s = %q on a %d", name, v, c.wantStatus)
					}
				}
				if strings.Contains(w.Body.String(), "10.0.0.7") || strings.Contains(w.Body.String(), "password") {
					t.Errorf("the response leaks the store error: %q", w.Body)
				}
			}
			if c.wantErr != nil && !errors.Is(gotErr, c.wantErr) {
				t.Errorf("OnError got %v, want %v", gotErr, c.wantErr)
			}
			if gotErr == nil {
				t.Error("OnError was not called")
			}
			if next.calls != 0 {
				t.Errorf("the handler ran %d times", next.calls)
			}
		})
	}
}

// TestMiddlewareCustomOnError: a custom error writer sees ErrExceeded and keeps the
// quota headers and Retry-After set before it runs.
func TestMiddlewareCustomOnError(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{Cycle: time.Hour})
	s.Put("k", 1, t0)
	now := t0.Add(59*time.Minute + 59*time.Second + 999*time.Millisecond)
	h := quota.Middleware(s, keyHeader, quota.Config{
		Now: func() time.Time { return now },
		OnError: func(w http.ResponseWriter, _ *http.Request, err error) {
			if !errors.Is(err, quota.ErrExceeded) {
				t.Errorf("OnError got %v, want ErrExceeded", err)
			}
			w.WriteHeader(http.StatusTeapot)
		},
	})(&served{})
	do(h, "k")
	w := do(h, "k")
	if w.Code != http.StatusTeapot {
		t.Fatalf("status %d, want the custom writer's 418", w.Code)
	}
	wantQuotaHeaders(t, w.Header(), 1, 0, t0.Add(time.Hour))
	if ra := w.Header().Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1 (1 ms left rounds up to the minimum)", ra)
	}
}

func TestMiddlewareConcurrent(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{})
	s.Put("k", 10, t0)
	next := &served{}
	h := quota.Middleware(s, keyHeader, quota.Config{Now: func() time.Time { return t0 }})(next)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		status = map[int]int{}
	)
	for range 200 {
		wg.Go(func() {
			w := do(h, "k")
			mu.Lock()
			status[w.Code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if status[http.StatusOK] != 10 || status[http.StatusTooManyRequests] != 190 || next.calls != 10 {
		t.Errorf("statuses %v, handler calls %d; want 10×200, 190×429, 10 calls", status, next.calls)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	u := quota.Usage{Reset: t0}
	cases := []struct {
		now  time.Time
		want int64
	}{
		{t0.Add(-quota.DefaultCycle), int64(quota.DefaultCycle / time.Second)},
		{t0.Add(-10 * time.Second), 10},
		{t0.Add(-10*time.Second - time.Nanosecond), 11},
		{t0.Add(-time.Millisecond), 1},
		{t0, 1},
		{t0.Add(time.Hour), 1},
	}
	for _, c := range cases {
		if got := quota.RetryAfter(u, c.now); got != c.want {
			t.Errorf("RetryAfter %v before the reset = %d, want %d", t0.Sub(c.now), got, c.want)
		}
	}
}

// TestMiddlewareGivesBack: a call counts only when the handler serves it. The
// headers show what the call left, and the store holds the same.
func TestMiddlewareGivesBack(t *testing.T) {
	t.Parallel()
	write := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }
	}
	cases := []struct {
		name          string
		charge        func(int) bool
		handler       http.HandlerFunc
		wantStatus    int
		wantRemaining int64
	}{
		{"200 counts", nil, write(http.StatusOK), 200, 2},
		{"201 counts", nil, write(http.StatusCreated), 201, 2},
		{"304 counts", nil, write(http.StatusNotModified), 304, 2},
		{"400 is given back", nil, write(http.StatusBadRequest), 400, 3},
		{"404 is given back", nil, write(http.StatusNotFound), 404, 3},
		{"413 is given back", nil, write(http.StatusRequestEntityTooLarge), 413, 3},
		{"500 is given back", nil, write(http.StatusInternalServerError), 500, 3},
		{"a body without a status is a 200", nil, func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("ok"))
		}, 200, 2},
		{"a handler that never writes is a 200", nil, func(http.ResponseWriter, *http.Request) {}, 200, 2},
		{"an informational status decides nothing", nil, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusNotFound)
		}, 0, 3}, // the recorder keeps the 103 as its Code
		{"only the first status decides", nil, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			w.WriteHeader(http.StatusOK)
		}, 400, 3},
		{"custom Charge counts a 404", func(s int) bool { return s < 500 }, write(http.StatusNotFound), 404, 2},
		{"custom Charge gives back a 500", func(s int) bool { return s < 500 }, write(http.StatusInternalServerError), 500, 3},
		{"custom Charge gives back a 200", func(int) bool { return false }, func(http.ResponseWriter, *http.Request) {}, 200, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := memstore.New(memstore.Config{})
			s.Put("k", 3, t0)
			now := t0.Add(time.Hour)
			cfg := quota.Config{Now: func() time.Time { return now }, Charge: c.charge}
			w := do(quota.Middleware(s, keyHeader, cfg)(c.handler), "k")
			if c.wantStatus != 0 && w.Code != c.wantStatus {
				t.Fatalf("status %d, want %d", w.Code, c.wantStatus)
			}
			wantQuotaHeaders(t, w.Header(), 3, c.wantRemaining, t0.Add(quota.DefaultCycle))
			u, err := s.Usage(context.Background(), "k", now)
			if err != nil {
				t.Fatal(err)
			}
			if u.Remaining() != c.wantRemaining {
				t.Errorf("store: %d remaining, want %d", u.Remaining(), c.wantRemaining)
			}
		})
	}
}

// TestMiddlewareGivenBackThenRefused: bad requests never use up the quota; served
// ones do, and the 429 path is unchanged.
func TestMiddlewareGivenBackThenRefused(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{})
	s.Put("k", 2, t0)
	h := quota.Middleware(s, keyHeader, quota.Config{Now: func() time.Time { return t0 }})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("limit") == "abc" {
				w.WriteHeader(http.StatusBadRequest)
			}
		}))
	get := func(target string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Test-Key-ID", "k")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for range 5 {
		if w := get("/?limit=abc"); w.Code != 400 || w.Header().Get("X-Quota-Remaining") != "2" {
			t.Fatalf("bad request: %d, X-Quota-Remaining %q; want 400, 2", w.Code, w.Header().Get("X-Quota-Remaining"))
		}
	}
	for _, want := range []string{"1", "0"} {
		if w := get("/"); w.Code != 200 || w.Header().Get("X-Quota-Remaining") != want {
			t.Fatalf("good request: %d, X-Quota-Remaining %q; want 200, %s", w.Code, w.Header().Get("X-Quota-Remaining"), want)
		}
	}
	w := get("/")
	problemtest.Check(t, w, http.StatusTooManyRequests, "Monthly API quota exceeded")
	wantQuotaHeaders(t, w.Header(), 2, 0, t0.Add(quota.DefaultCycle))
}

// TestMiddlewareFlush: the wrapper keeps http.Flusher and http.ResponseController
// working, and a flush before any status is a served 200.
func TestMiddlewareFlush(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		flush func(http.ResponseWriter) error
	}{
		{"http.Flusher", func(w http.ResponseWriter) error {
			f, ok := w.(http.Flusher)
			if !ok {
				return errors.New("not an http.Flusher")
			}
			f.Flush()
			return nil
		}},
		{"http.ResponseController", func(w http.ResponseWriter) error {
			return http.NewResponseController(w).Flush()
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := memstore.New(memstore.Config{})
			s.Put("k", 3, t0)
			var flushErr, deadlineErr error
			h := quota.Middleware(s, keyHeader, quota.Config{Now: func() time.Time { return t0 }})(
				http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					flushErr = c.flush(w)
					// Too late to refuse: the 200 is on its way.
					w.WriteHeader(http.StatusBadRequest)
					deadlineErr = http.NewResponseController(w).SetWriteDeadline(time.Time{})
				}))
			w := do(h, "k")
			if flushErr != nil || !w.Flushed {
				t.Fatalf("flush: err %v, recorder flushed %v", flushErr, w.Flushed)
			}
			if !errors.Is(deadlineErr, http.ErrNotSupported) {
				t.Errorf("SetWriteDeadline on a recorder: %v, want ErrNotSupported from the recorder itself", deadlineErr)
			}
			if w.Code != 200 {
				t.Errorf("status %d, want the flushed 200", w.Code)
			}
			wantQuotaHeaders(t, w.Header(), 3, 2, t0.Add(quota.DefaultCycle))
			if u, _ := s.Usage(context.Background(), "k", t0); u.Used != 1 {
				t.Errorf("store: used %d, want the flushed call counted", u.Used)
			}
		})
	}
}

// TestMiddlewareReleaseOutlivesClient: the give-back runs even when the client
// has gone by the time the handler returns.
func TestMiddlewareReleaseOutlivesClient(t *testing.T) {
	t.Parallel()
	s := memstore.New(memstore.Config{})
	s.Put("k", 3, t0)
	ctx, cancel := context.WithCancel(context.Background())
	h := quota.Middleware(s, keyHeader, quota.Config{Now: func() time.Time { return t0 }})(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			cancel()
			w.WriteHeader(http.StatusBadRequest)
		}))
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	r.Header.Set("Test-Key-ID", "k")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if u, _ := s.Usage(context.Background(), "k", t0); u.Used != 0 {
		t.Errorf("store: used %d after a 400 whose client left, want 0", u.Used)
	}
}
