package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ulule/limiter/v3"

	"github.com/releaseradar/tollgate/ratelimit"
)

func TestParseRates(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"pro=600-M", map[string]string{"pro": "600-M"}},
		{" public=30-M , pro=600-M,team=3000-M ,", map[string]string{"public": "30-M", "pro": "600-M", "team": "3000-M"}},
		{"enterprise=10-S", map[string]string{"enterprise": "10-S"}},
		{"pro=5-h", map[string]string{"pro": "5-h"}},
	}
	for _, tc := range good {
		got, err := ratelimit.ParseRates(tc.in)
		if err != nil {
			t.Errorf("ParseRates(%q): %v", tc.in, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseRates(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	bad := []struct{ in, names string }{
		{"pro", `"pro"`},
		{"pro=", `"pro="`},
		{"=600-M", `"=600-M"`},
		{"public=30-M,pro=600", `"pro=600"`},
		{"pro=600-W", `"pro=600-W"`},
		{"pro=x-M", `"pro=x-M"`},
		{"pro=0-M", `"pro=0-M"`},
		{"pro=-5-M", `"pro=-5-M"`},
		{"pro=1-M,pro=2-M", `appears twice`},
		{"p ro=1-M", `"p ro=1-M"`},
		{`p"ro=1-M`, `p\"ro=1-M`},
	}
	for _, tc := range bad {
		got, err := ratelimit.ParseRates(tc.in)
		if err == nil {
			t.Errorf("ParseRates(%q) = %v, want an error", tc.in, got)
			continue
		}
		if !strings.HasPrefix(err.Error(), "ratelimit: ") || !strings.Contains(err.Error(), tc.names) {
			t.Errorf("ParseRates(%q) error %q does not name %s", tc.in, err, tc.names)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	store, _ := ratelimit.NewStore(nil, "")
	cases := []struct {
		name  string
		store limiter.Store
		cfg   ratelimit.Config
		want  string
	}{
		{"nil store", nil, ratelimit.Config{}, "nil store"},
		{"bad rate", store, ratelimit.Config{Rates: map[string]string{"pro": "fast"}}, `Config.Rates["pro"]`},
		{"zero rate", store, ratelimit.Config{Rates: map[string]string{"team": "0-S"}}, `Config.Rates["team"]`},
		{"bad plan", store, ratelimit.Config{Rates: map[string]string{"a b": "1-S"}}, `"a b"`},
		{"reserved plan", store, ratelimit.Config{Rates: map[string]string{"default": "1-S"}}, `"default" is reserved`},
		{"bad default", store, ratelimit.Config{DefaultRate: "1/M"}, "Config.DefaultRate"},
		{"bad proxy", store, ratelimit.Config{TrustedProxies: []netip.Prefix{{}}}, "Config.TrustedProxies"},
	}
	for _, tc := range cases {
		_, err := ratelimit.New(tc.store, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New error %v, want one containing %s", tc.name, err, tc.want)
		}
	}
}

// TestPlanLimits exhausts each plan at its own short rate: the request after the
// limit is refused with 429, and the bucket recovers once the window is over.
func TestPlanLimits(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, store limiter.Store) {
		l := newLimiter(t, store, ratelimit.Config{
			Rates:       map[string]string{"public": "3-S", "pro": "5-S", "team": "7-S"},
			DefaultRate: "2-S",
			Identify:    identify,
		})
		h := l.Handle(ok)
		for _, tc := range []struct {
			plan  string
			limit int
		}{{"public", 3}, {"pro", 5}, {"team", 7}, {"enterprise", 2}} {
			t.Run(tc.plan, func(t *testing.T) {
				t.Parallel()
				// A one-second window can close while the loop runs on a loaded
				// machine; such an attempt proves nothing and is repeated with a
				// fresh key.
				for attempt := range 5 {
					hash := fmt.Sprintf("%s-hash-%d", tc.plan, attempt)
					start := time.Now()
					codes := make([]int, 0, tc.limit+1)
					var last *httptest.ResponseRecorder
					for range tc.limit + 1 {
						last = serve(h, request("192.0.2.1:1000", tc.plan, hash))
						codes = append(codes, last.Code)
					}
					if time.Since(start) > 500*time.Millisecond {
						continue
					}
					for i, code := range codes[:tc.limit] {
						if code != http.StatusOK {
							t.Fatalf("request %d: status %d, want 200 (codes %v)", i+1, code, codes)
						}
					}
					if codes[tc.limit] != http.StatusTooManyRequests {
						t.Fatalf("request %d: status %d, want 429 (codes %v)", tc.limit+1, codes[tc.limit], codes)
					}
					if d := problemDetail(t, last); d != "Rate limit exceeded" {
						t.Fatalf("429 detail %q", d)
					}
					// The window ends before Reset+1 (Reset is truncated to seconds).
					reset := headerInt(t, last, "X-RateLimit-Reset")
					time.Sleep(time.Until(time.Unix(reset+1, 0).Add(50 * time.Millisecond)))
					if w := serve(h, request("192.0.2.1:1000", tc.plan, hash)); w.Code != http.StatusOK {
						t.Fatalf("after the window: status %d, want 200", w.Code)
					}
					return
				}
				t.Fatal("no attempt finished within half a window")
			})
		}
	})
}

// TestConcurrentExactLimit sends 2×N concurrent requests for one key against a
// limit of N: exactly N pass.
func TestConcurrentExactLimit(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, store limiter.Store) {
		const n = 25
		l := newLimiter(t, store, ratelimit.Config{Rates: map[string]string{"pro": fmt.Sprintf("%d-M", n)}, Identify: identify})
		passed, refused := race(l.Handle(ok), l.Handle(ok), 2*n, "pro", "concurrent")
		if passed != n || refused != n {
			t.Fatalf("passed %d, refused %d; want %d and %d", passed, refused, n, n)
		}
	})
}

// race sends total concurrent requests for one key, alternating between two
// handlers, and counts 200s and 429s.
func race(a, b http.Handler, total int, plan, hash string) (passed, refused int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range total {
		h := a
		if i%2 == 1 {
			h = b
		}
		wg.Go(func() {
			<-start
			code := serve(h, request("192.0.2.7:1000", plan, hash)).Code
			mu.Lock()
			defer mu.Unlock()
			switch code {
			case http.StatusOK:
				passed++
			case http.StatusTooManyRequests:
				refused++
			}
		})
	}
	close(start)
	wg.Wait()
	return passed, refused
}

// TestBucketsAreSeparate: an address flood leaves a key's bucket alone and the
// reverse; two plans never share a counter even for the same hash; random invalid
// keys all count in their sender's address bucket.
func TestBucketsAreSeparate(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, store limiter.Store) {
		counting := newCountingStore(store)
		l := newLimiter(t, counting, ratelimit.Config{
			Rates:    map[string]string{"public": "3-M", "pro": "3-M", "team": "3-M"},
			Identify: identify,
		})
		h := l.Handle(ok)
		const addr = "198.51.100.9:4000"
		codes := func(n int, r func() *http.Request) []int {
			var out []int
			for range n {
				out = append(out, serve(h, r()).Code)
			}
			return out
		}
		want := fmt.Sprint([]int{200, 200, 200, 429, 429})
		for _, step := range []struct {
			what       string
			plan, hash string
		}{
			{"pro key flood", "pro", "k1"},
			{"address after the key flood", "", ""},
			{"team, same hash as the pro key", "team", "k1"},
			{"another pro key after the address flood", "pro", "k2"},
		} {
			if got := fmt.Sprint(codes(5, func() *http.Request { return request(addr, step.plan, step.hash) })); got != want {
				t.Fatalf("%s: %s, want %s", step.what, got, want)
			}
		}
		// Random invalid keys from another address: the server calls
		// AllowAnonymous for each failed authentication.
		const third = "203.0.113.5:999"
		var got []int
		for i := range 5 {
			r := httptest.NewRequest(http.MethodGet, "/events/search", nil)
			r.RemoteAddr = third
			r.Header.Set("X-Api-Key", fmt.Sprintf("rr_live_random%d", i))
			w := httptest.NewRecorder()
			if l.AllowAnonymous(w, r) {
				w.WriteHeader(http.StatusForbidden) // what the server answers next
			}
			got = append(got, w.Code)
		}
		if fmt.Sprint(got) != fmt.Sprint([]int{403, 403, 403, 429, 429}) {
			t.Fatalf("invalid keys: %v, want three 403s then 429s", got)
		}
		buckets := counting.buckets()
		// Each bucket is asked four times: the fifth request is refused from the
		// deny cache.
		wantBuckets := map[string]int{
			"ak:pro:k1":       4,
			"ip:198.51.100.9": 4,
			"ak:team:k1":      4,
			"ak:pro:k2":       4,
			"ip:203.0.113.5":  4,
		}
		if fmt.Sprint(buckets) != fmt.Sprint(wantBuckets) {
			t.Fatalf("buckets asked %v, want %v", buckets, wantBuckets)
		}
	})
}

func TestDefaultsAndBucketNames(t *testing.T) {
	t.Parallel()
	counting := newCountingStore(mustMemory(t))
	l := newLimiter(t, counting, ratelimit.Config{Identify: identify})
	h := l.Handle(ok)
	cases := []struct {
		r      *http.Request
		bucket string
		policy string
	}{
		{request("192.0.2.1:1", "", ""), "ip:192.0.2.1", `"public";q=30;w=60`},
		{request("[::ffff:192.0.2.1]:1", "", ""), "ip:192.0.2.1", `"public";q=30;w=60`},
		{request("[2001:db8:1:2:aaaa::1]:1", "", ""), "ip:2001:db8:1:2::/64", `"public";q=30;w=60`},
		{request("[2001:db8:1:2:bbbb::9]:1", "", ""), "ip:2001:db8:1:2::/64", `"public";q=30;w=60`},
		{request("[2001:db8:1:3::1]:1", "", ""), "ip:2001:db8:1:3::/64", `"public";q=30;w=60`},
		{request("not-an-address", "", ""), "ip:unknown", `"public";q=30;w=60`},
		{request("192.0.2.1:1", "pro", "h1"), "ak:pro:h1", `"pro";q=600;w=60`},
		{request("192.0.2.1:1", "team", "h1"), "ak:team:h1", `"team";q=3000;w=60`},
		{request("192.0.2.1:1", "gold", "h1"), "ak:default:h1", `"default";q=60;w=60`},
		{request("192.0.2.1:1", "public", "h1"), "ak:public:h1", `"public";q=30;w=60`},
	}
	for _, tc := range cases {
		before := counting.buckets()[tc.bucket]
		w := serve(h, tc.r)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: status %d", tc.bucket, w.Code)
		}
		if after := counting.buckets()[tc.bucket]; after != before+1 {
			t.Errorf("%s %s: bucket %s asked %d times, want %d", tc.r.RemoteAddr, tc.r.Header.Get(planHeader), tc.bucket, after, before+1)
		}
		if got := header(t, w, "RateLimit-Policy"); got != tc.policy {
			t.Errorf("%s: RateLimit-Policy %q, want %q", tc.bucket, got, tc.policy)
		}
	}
}

// TestAnonymousPlan: Config.AnonymousPlan picks the rate of address buckets.
func TestAnonymousPlan(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, mustMemory(t), ratelimit.Config{AnonymousPlan: "pro"})
	w := serve(l.Handle(ok), request("192.0.2.1:1", "", ""))
	if got := header(t, w, "RateLimit-Policy"); got != `"pro";q=600;w=60` {
		t.Fatalf("RateLimit-Policy %q", got)
	}
}

// TestHeaders checks every header value along a bucket's life, and that each is
// set once even when an outer handler had set it already.
func TestHeaders(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, store limiter.Store) {
		l := newLimiter(t, store, ratelimit.Config{Rates: map[string]string{"pro": "3-M"}, Identify: identify})
		h := l.Handle(ok)
		var reset int64
		for i := range 5 {
			w := httptest.NewRecorder()
			for _, name := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy", "RateLimit", "Retry-After"} {
				w.Header().Set(name, "stale")
			}
			now := time.Now().Unix()
			h.ServeHTTP(w, request("192.0.2.1:1", "pro", "hdr"))
			remaining := max(2-i, 0)
			if got := header(t, w, "X-RateLimit-Limit"); got != "3" {
				t.Errorf("request %d: X-RateLimit-Limit %q", i+1, got)
			}
			if got := headerInt(t, w, "X-RateLimit-Remaining"); got != int64(remaining) {
				t.Errorf("request %d: X-RateLimit-Remaining %d, want %d", i+1, got, remaining)
			}
			r := headerInt(t, w, "X-RateLimit-Reset")
			if r <= now || r > now+61 {
				t.Errorf("request %d: X-RateLimit-Reset %d, want within (%d, %d]", i+1, r, now, now+61)
			}
			if i == 0 {
				reset = r
			} else if r < reset || r > reset+1 { // Redis derives Reset from a TTL in ms
				t.Errorf("request %d: X-RateLimit-Reset %d changed from %d", i+1, r, reset)
			}
			if got := header(t, w, "RateLimit-Policy"); got != `"pro";q=3;w=60` {
				t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
			}
			var gotR, gotT int64
			if _, err := fmt.Sscanf(header(t, w, "RateLimit"), `"pro";r=%d;t=%d`, &gotR, &gotT); err != nil {
				t.Fatalf("request %d: RateLimit %q: %v", i+1, header(t, w, "RateLimit"), err)
			}
			if gotR != int64(remaining) || gotT < 0 || gotT > reset-now+1 {
				t.Errorf("request %d: RateLimit r=%d t=%d, want r=%d, t about %d", i+1, gotR, gotT, remaining, reset-now)
			}
			if i < 3 {
				if w.Code != http.StatusOK {
					t.Fatalf("request %d: status %d", i+1, w.Code)
				}
				if w.Header().Get("Retry-After") != "stale" {
					t.Errorf("request %d: Retry-After set on a 200", i+1)
				}
				continue
			}
			if w.Code != http.StatusTooManyRequests {
				t.Fatalf("request %d: status %d, want 429", i+1, w.Code)
			}
			if ra := headerInt(t, w, "Retry-After"); ra < 1 || ra != max(gotT, 1) {
				t.Errorf("request %d: Retry-After %d, want max(t=%d, 1)", i+1, ra, gotT)
			}
			if d := problemDetail(t, w); d != "Rate limit exceeded" {
				t.Errorf("request %d: detail %q", i+1, d)
			}
		}
	})
}

// TestRetryAfterAtLeastOne: when the reported reset has passed but the store's
// window (which ends up to a second later) has not, Retry-After is 1, not 0.
func TestRetryAfterAtLeastOne(t *testing.T) {
	t.Parallel()
	store := mustMemory(t)
	var now time.Time
	l := newLimiter(t, store, ratelimit.Config{
		Rates:         map[string]string{"pro": "1-M"},
		Identify:      identify,
		DenyCacheSize: -1,
		Now:           func() time.Time { return now },
	})
	h := l.Handle(ok)
	now = time.Now()
	first := serve(h, request("192.0.2.1:1", "pro", "ra"))
	now = time.Unix(headerInt(t, first, "X-RateLimit-Reset"), 0).Add(500 * time.Millisecond)
	w := serve(h, request("192.0.2.1:1", "pro", "ra"))
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d", w.Code)
	}
	if ra := header(t, w, "Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	if rl := header(t, w, "RateLimit"); rl != `"pro";r=0;t=0` {
		t.Fatalf("RateLimit %q", rl)
	}
}

// TestDenyCache: once a bucket is exhausted, refusals are answered locally with
// unchanged headers until the reset, then the store is asked again.
func TestDenyCache(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, store limiter.Store) {
		counting := newCountingStore(store)
		var mu sync.Mutex
		offset := time.Duration(0)
		l := newLimiter(t, counting, ratelimit.Config{
			Rates:    map[string]string{"pro": "3-M"},
			Identify: identify,
			Now: func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				return time.Now().Add(offset)
			},
		})
		h := l.Handle(ok)
		var first *httptest.ResponseRecorder
		for i := range 20 {
			w := serve(h, request("192.0.2.1:1", "pro", "deny"))
			if want := map[bool]int{true: 200, false: 429}[i < 3]; w.Code != want {
				t.Fatalf("request %d: status %d, want %d", i+1, w.Code, want)
			}
			if i == 3 {
				first = w
				continue
			}
			if i > 3 {
				for _, name := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit-Policy"} {
					if a, b := header(t, w, name), header(t, first, name); a != b {
						t.Errorf("request %d: %s %q, first refusal had %q", i+1, name, a, b)
					}
				}
				if r := header(t, w, "X-RateLimit-Remaining"); r != "0" {
					t.Errorf("request %d: remaining %q", i+1, r)
				}
				if ra := headerInt(t, w, "Retry-After"); ra < 1 {
					t.Errorf("request %d: Retry-After %d", i+1, ra)
				}
			}
		}
		if got := counting.gets.Load(); got != 4 {
			t.Fatalf("store asked %d times for 20 requests, want 4 (3 allowed, 1 refused)", got)
		}
		if got := metricValue(t, l, "tollgate_ratelimit_local_denials_total", nil); got != 16 {
			t.Errorf("local denials metric %v, want 16", got)
		}
		if got := metricValue(t, l, "tollgate_ratelimit_deny_cache_entries", nil); got != 1 {
			t.Errorf("deny cache entries %v, want 1", got)
		}
		// Past the reset the cache lets the request through to the store. (The
		// store's own window, on the wall clock, is still exhausted.)
		mu.Lock()
		offset = 2 * time.Minute
		mu.Unlock()
		if w := serve(h, request("192.0.2.1:1", "pro", "deny")); w.Code != http.StatusTooManyRequests {
			t.Fatalf("after the clock moved: status %d", w.Code)
		}
		if got := counting.gets.Load(); got != 5 {
			t.Fatalf("store asked %d times, want 5 once the deny entry expired", got)
		}
	})
}

// TestOnError: a custom error writer receives ErrLimited with the headers set.
func TestOnError(t *testing.T) {
	t.Parallel()
	var got error
	l := newLimiter(t, mustMemory(t), ratelimit.Config{
		Rates:    map[string]string{"pro": "1-M"},
		Identify: identify,
		OnError: func(w http.ResponseWriter, r *http.Request, err error) {
			got = err
			if w.Header().Get("Retry-After") == "" || w.Header().Get("X-RateLimit-Remaining") != "0" {
				t.Errorf("OnError called before the headers were set: %v", w.Header())
			}
			w.WriteHeader(http.StatusTeapot)
		},
	})
	h := l.Handle(ok)
	serve(h, request("192.0.2.1:1", "pro", "oe"))
	if w := serve(h, request("192.0.2.1:1", "pro", "oe")); w.Code != http.StatusTeapot {
		t.Fatalf("status %d, want the custom writer's 418", w.Code)
	}
	if !errors.Is(got, ratelimit.ErrLimited) {
		t.Fatalf("OnError got %v, want ErrLimited", got)
	}
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err    error
		status int
		detail string
	}{
		{ratelimit.ErrLimited, 429, "Rate limit exceeded"},
		{fmt.Errorf("%w: dial tcp: refused", ratelimit.ErrUnavailable), 503, "Service temporarily unavailable"},
		{errors.New("other"), 500, "Internal server error"},
	}
	for _, tc := range cases {
		w := httptest.NewRecorder()
		ratelimit.WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), tc.err)
		if w.Code != tc.status {
			t.Errorf("%v: status %d, want %d", tc.err, w.Code, tc.status)
		}
		if d := problemDetail(t, w); d != tc.detail {
			t.Errorf("%v: detail %q, want %q", tc.err, d, tc.detail)
		}
		if strings.Contains(w.Body.String(), "dial") {
			t.Errorf("%v: body leaks the store error: %s", tc.err, w.Body)
		}
	}
}

// TestDecisionMetrics counts decisions by kind, plan and result, and no label
// carries key material.
func TestDecisionMetrics(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, mustMemory(t), ratelimit.Config{Rates: map[string]string{"pro": "2-M"}, Identify: identify})
	h := l.Handle(ok)
	const hash = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
	for range 5 {
		serve(h, request("192.0.2.1:1", "pro", hash))
	}
	serve(h, request("192.0.2.1:1", "", ""))
	serve(h, request("192.0.2.1:1", "gold", hash))
	for _, tc := range []struct {
		kind, plan, result string
		want               float64
	}{
		{"key", "pro", "allowed", 2},
		{"key", "pro", "limited", 3},
		{"key", "pro", "store_error", 0},
		{"ip", "public", "allowed", 1},
		{"key", "default", "allowed", 1},
		{"key", "public", "allowed", 0},
	} {
		got := metricValue(t, l, "tollgate_ratelimit_decisions_total", map[string]string{"kind": tc.kind, "plan": tc.plan, "result": tc.result})
		if got != tc.want {
			t.Errorf("decisions{kind=%s,plan=%s,result=%s} = %v, want %v", tc.kind, tc.plan, tc.result, got, tc.want)
		}
	}
	for _, v := range labelValues(t, l) {
		if strings.Contains(hash, v) && len(v) >= 8 || v == "gold" {
			t.Errorf("metric label value %q leaks key material or an unbounded plan", v)
		}
	}
}

func mustMemory(t testing.TB) limiter.Store {
	t.Helper()
	s, err := ratelimit.NewStore(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flakyStore fails every call while fail is set.
type flakyStore struct {
	limiter.Store
	fail atomic.Bool
}

func (s *flakyStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	if s.fail.Load() {
		return limiter.Context{}, errors.New("flaky: connection refused")
	}
	return s.Store.Get(ctx, key, rate)
}

// TestStoreBreaker: after three consecutive store errors the store is not asked
// for a second (the policy applies at once), then one request probes it, and a
// success resumes counting.
func TestStoreBreaker(t *testing.T) {
	t.Parallel()
	for _, failClosed := range []bool{false, true} {
		flaky := &flakyStore{Store: mustMemory(t)}
		counting := newCountingStore(flaky)
		now := time.Now()
		l := newLimiter(t, counting, ratelimit.Config{
			Identify:   identify,
			FailClosed: failClosed,
			Logger:     slogText(io.Discard),
			Now:        func() time.Time { return now },
		})
		h := l.Handle(ok)
		want := map[bool]int{false: http.StatusOK, true: http.StatusServiceUnavailable}[failClosed]
		send := func(wantCode int) {
			t.Helper()
			if w := serve(h, request("192.0.2.1:1", "pro", "brk")); w.Code != wantCode {
				t.Fatalf("failClosed=%v: status %d, want %d", failClosed, w.Code, wantCode)
			}
		}
		flaky.fail.Store(true)
		for range 10 {
			send(want)
		}
		if got := counting.gets.Load(); got != 3 {
			t.Fatalf("failClosed=%v: store asked %d times during the outage, want 3", failClosed, got)
		}
		// Within the cooldown nobody probes; after it, one request does.
		now = now.Add(900 * time.Millisecond)
		send(want)
		now = now.Add(200 * time.Millisecond)
		send(want)
		send(want)
		if got := counting.gets.Load(); got != 4 {
			t.Fatalf("failClosed=%v: store asked %d times, want 4 (one probe)", failClosed, got)
		}
		// The store is back: the next probe succeeds and counting resumes.
		flaky.fail.Store(false)
		now = now.Add(1100 * time.Millisecond)
		for range 3 {
			send(http.StatusOK)
		}
		if got := counting.gets.Load(); got != 7 {
			t.Fatalf("failClosed=%v: store asked %d times, want 7 after recovery", failClosed, got)
		}
		outcome := map[bool]string{false: "allowed", true: "rejected"}[failClosed]
		if got := metricValue(t, l, "tollgate_ratelimit_store_errors_total", map[string]string{"outcome": outcome}); got != 13 {
			t.Errorf("failClosed=%v: store errors %v, want 13 (every request decided by the policy)", failClosed, got)
		}
	}
}
