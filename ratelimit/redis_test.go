package ratelimit_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/ulule/limiter/v3"

	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/ratelimit"
)

// TestReplicasShareBudget: two Limiters on two Redis clients, standing in for two
// replicas, share one budget: 2×N concurrent requests against N let N through.
func TestReplicasShareBudget(t *testing.T) {
	t.Parallel()
	const n = 40
	c1, prefix := testenv.Redis(t)
	c2, _ := testenv.Redis(t)
	var limiters []*ratelimit.Limiter
	for _, c := range []*redis.Client{c1, c2} {
		store, err := ratelimit.NewStore(c, prefix)
		if err != nil {
			t.Fatal(err)
		}
		limiters = append(limiters, newLimiter(t, store, ratelimit.Config{
			Rates:    map[string]string{"pro": "40-M"},
			Identify: identify,
		}))
	}
	passed, refused := race(limiters[0].Handle(ok), limiters[1].Handle(ok), 2*n, "pro", "replicas")
	if passed != n || refused != n {
		t.Fatalf("passed %d, refused %d; want %d and %d", passed, refused, n, n)
	}
	// One more on each replica: both refuse.
	for i, l := range limiters {
		if w := serve(l.Handle(ok), request("192.0.2.7:1", "pro", "replicas")); w.Code != http.StatusTooManyRequests {
			t.Errorf("replica %d after the budget: status %d", i+1, w.Code)
		}
	}
}

// TestRedisCounterNames: counters live under the prefix, named by bucket, and
// expire with their window.
func TestRedisCounterNames(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	store, err := ratelimit.NewStore(client, strings.TrimSuffix(prefix, ":"))
	if err != nil {
		t.Fatal(err)
	}
	l := newLimiter(t, store, ratelimit.Config{Identify: identify})
	serve(l.Handle(ok), request("192.0.2.1:1", "pro", "abc"))
	serve(l.Handle(ok), request("192.0.2.1:1", "", ""))
	ctx := context.Background()
	for _, key := range []string{prefix + "ak:pro:abc", prefix + "ip:192.0.2.1"} {
		n, err := client.Get(ctx, key).Int()
		if err != nil || n != 1 {
			t.Errorf("counter %s = %d, %v; want 1", key, n, err)
		}
		ttl, err := client.PTTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > time.Minute {
			t.Errorf("counter %s TTL %v, %v; want within (0, 1m]", key, ttl, err)
		}
	}
}

// TestNewStoreMemory: a nil client, typed or not, gives ulule's memory store.
func TestNewStoreMemory(t *testing.T) {
	t.Parallel()
	var typedNil *redis.Client
	for _, c := range []redis.UniversalClient{nil, typedNil} {
		store, err := ratelimit.NewStore(c, "")
		if err != nil {
			t.Fatal(err)
		}
		rate, _ := limiter.NewRateFromFormatted("2-M")
		lctx, err := store.Get(context.Background(), "k", rate)
		if err != nil || lctx.Remaining != 1 {
			t.Fatalf("%T: Get = %+v, %v", c, lctx, err)
		}
	}
}

// TestNewStoreRedisRefusal: when Redis answers with an error (here: a password
// it has not configured), NewStore fails instead of failing open forever.
func TestNewStoreRedisRefusal(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opts.Username, opts.Password = "tollgate-no-such-user", "wrong"
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.Ping(context.Background()).Err(); err == nil {
		t.Skip("this Redis accepts any credentials")
	}
	store, err := ratelimit.NewStore(client, "x")
	if err == nil || !strings.HasPrefix(err.Error(), "ratelimit: redis store: ") {
		t.Fatalf("NewStore = %v, %v; want the server's error", store, err)
	}
}

// closedPortClient returns a client for a loopback port nothing listens on.
func closedPortClient(t *testing.T) redis.UniversalClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// closedClient returns a client on the test Redis that is closed after NewStore
// has loaded its scripts.
func closedClient(t *testing.T) (redis.UniversalClient, limiter.Store) {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	store, err := ratelimit.NewStore(c, testenv.Unique("tgtest:"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return c, store
}

// TestStoreUnavailable: with Redis unreachable nothing panics; fail-open lets
// requests through, logs and counts; fail-closed answers 503.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	stores := []struct {
		name string
		new  func(t *testing.T) limiter.Store
	}{
		{"closed port", func(t *testing.T) limiter.Store {
			store, err := ratelimit.NewStore(closedPortClient(t), "x")
			if err != nil {
				t.Fatalf("NewStore on a closed port: %v; want a store that fails per call", err)
			}
			return store
		}},
		{"closed client", func(t *testing.T) limiter.Store {
			_, store := closedClient(t)
			return store
		}},
	}
	for _, s := range stores {
		for _, failClosed := range []bool{false, true} {
			name := s.name + map[bool]string{false: "/fail open", true: "/fail closed"}[failClosed]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var logs lockedBuffer
				l := newLimiter(t, s.new(t), ratelimit.Config{
					Identify:   identify,
					FailClosed: failClosed,
					Logger:     slogText(&logs),
				})
				served := 0
				h := l.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served++ }))
				const n = 5
				for i := range n {
					w := serve(h, request("192.0.2.1:1", "pro", "down"))
					switch {
					case !failClosed && w.Code != http.StatusOK:
						t.Fatalf("request %d: status %d, want 200 (fail open)", i+1, w.Code)
					case failClosed && w.Code != http.StatusServiceUnavailable:
						t.Fatalf("request %d: status %d, want 503 (fail closed)", i+1, w.Code)
					case failClosed && problemDetail(t, w) != "Service temporarily unavailable":
						t.Fatalf("request %d: detail %q", i+1, problemDetail(t, w))
					}
					if got := header(t, w, "X-RateLimit-Limit"); got != "600" {
						t.Errorf("X-RateLimit-Limit %q", got)
					}
				}
				outcome := "allowed"
				wantServed := n
				if failClosed {
					outcome, wantServed = "rejected", 0
				}
				if served != wantServed {
					t.Errorf("handler ran %d times, want %d", served, wantServed)
				}
				if got := metricValue(t, l, "tollgate_ratelimit_store_errors_total", map[string]string{"outcome": outcome}); got != n {
					t.Errorf("store_errors_total{outcome=%q} = %v, want %d", outcome, got, n)
				}
				if got := metricValue(t, l, "tollgate_ratelimit_decisions_total", map[string]string{"kind": "key", "plan": "pro", "result": "store_error"}); got != n {
					t.Errorf("decisions{result=store_error} = %v, want %d", got, n)
				}
				// One line a second at most: the first error is logged, the
				// others are counted into the next line.
				out := logs.String()
				if strings.Count(out, "\n") != 1 || !strings.Contains(out, `msg="ratelimit: limiter store failed"`) ||
					!strings.Contains(out, "outcome="+outcome) || !strings.Contains(out, "plan=pro") || !strings.Contains(out, "err=") {
					t.Errorf("log output:\n%s", out)
				}
				if strings.Contains(out, "down") {
					t.Errorf("log leaks the key hash:\n%s", out)
				}
			})
		}
	}
}

// TestStoreErrorLogThrottle: after a second, the next error is logged with the
// number of lines suppressed.
func TestStoreErrorLogThrottle(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(t, closedPortClientStore(t), ratelimit.Config{
		Logger: slogText(&logs),
		Now:    func() time.Time { return now },
	})
	h := l.Handle(ok)
	for range 4 {
		serve(h, request("192.0.2.1:1", "", ""))
	}
	now = now.Add(1100 * time.Millisecond)
	serve(h, request("192.0.2.1:1", "", ""))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "suppressed=0") || !strings.Contains(lines[1], "suppressed=3") {
		t.Fatalf("log lines:\n%s", logs.String())
	}
}

func closedPortClientStore(t *testing.T) limiter.Store {
	t.Helper()
	store, err := ratelimit.NewStore(closedPortClient(t), "x")
	if err != nil {
		t.Fatal(err)
	}
	return store
}
