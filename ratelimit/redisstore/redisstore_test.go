package redisstore_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/redisstore"
	"github.com/releaseradar/tollgate/ratelimit/storetest"
)

// newStore returns a store on the test Redis under a prefix of its own.
func newStore(t *testing.T) *redisstore.Store {
	t.Helper()
	client, prefix := testenv.Redis(t)
	s, err := redisstore.New(client, strings.TrimSuffix(prefix, ":"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) ratelimit.Store { return newStore(t) })
}

// replicas returns two Limiters with cfg on two Redis clients sharing one prefix,
// standing in for two replicas.
func replicas(t *testing.T, cfg ratelimit.Config) []*ratelimit.Limiter {
	t.Helper()
	c1, prefix := testenv.Redis(t)
	c2, _ := testenv.Redis(t)
	var limiters []*ratelimit.Limiter
	for _, c := range []*redis.Client{c1, c2} {
		s, err := redisstore.New(c, prefix)
		if err != nil {
			t.Fatal(err)
		}
		l, err := ratelimit.New(s, cfg)
		if err != nil {
			t.Fatal(err)
		}
		limiters = append(limiters, l)
	}
	return limiters
}

// TestReplicasShareBudget: two Limiters on two Redis clients, standing in for two
// replicas, share one budget: concurrent requests, one each from many clients,
// against a limit let exactly the limit through, and then both replicas refuse;
// batching on or off.
func TestReplicasShareBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		maxBatch        int
		limit, requests int
	}{
		{"unbatched/80 on 40", 1, 40, 80},
		{"batched/80 on 40", 0, 40, 80},
		{"unbatched/1000 on 100", 1, 100, 1000},
		{"batched/1000 on 100", 0, 100, 1000},
		{"batches of 64/1000 on 100", 64, 100, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rate := ratelimit.Rate{Limit: int64(tc.limit), Period: time.Minute}
			limiters := replicas(t, ratelimit.Config{MaxBatch: tc.maxBatch})
			bucket := ratelimit.KeyBucket("gold", "replicas")
			var allowed, refused atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range tc.requests {
				wg.Go(func() {
					<-start
					res := limiters[i%2].Allow(context.Background(), bucket, rate)
					switch {
					case res.Err != nil:
						t.Error(res.Err)
					case res.Allowed:
						allowed.Add(1)
					default:
						refused.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if allowed.Load() != int64(tc.limit) || refused.Load() != int64(tc.requests-tc.limit) {
				t.Fatalf("allowed %d, refused %d; want %d and %d", allowed.Load(), refused.Load(), tc.limit, tc.requests-tc.limit)
			}
			// One more on each replica: both refuse.
			for i, l := range limiters {
				if res := l.Allow(context.Background(), bucket, rate); res.Allowed || res.Err != nil {
					t.Errorf("replica %d after the budget: %+v", i+1, res)
				}
			}
			t.Logf("store calls %d + %d", limiters[0].Stats().StoreCalls, limiters[1].Stats().StoreCalls)
		})
	}
}

// TestReplicasBatch: two replicas, eight clients each requesting until refused,
// on one hot bucket: exactly the limit is served, with far fewer round trips
// than requests, and neither replica holds hits at the end.
func TestReplicasBatch(t *testing.T) {
	t.Parallel()
	const limit = 3000
	rate := ratelimit.Rate{Limit: limit, Period: time.Minute}
	limiters := replicas(t, ratelimit.Config{})
	bucket := ratelimit.KeyBucket("gold", "hot")
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		l := limiters[i%2]
		wg.Go(func() {
			for {
				res := l.Allow(context.Background(), bucket, rate)
				if res.Err != nil {
					t.Error(res.Err)
					return
				}
				if !res.Allowed {
					return
				}
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != limit {
		t.Fatalf("allowed %d, want exactly %d", allowed.Load(), limit)
	}
	s0, s1 := limiters[0].Stats(), limiters[1].Stats()
	if calls := s0.StoreCalls + s1.StoreCalls; calls > limit/2 {
		t.Errorf("%d store calls for %d requests; batching should save most", calls, limit)
	}
	if s0.BatchHeld != 0 || s1.BatchHeld != 0 {
		t.Errorf("hits held after both replicas refused: %d, %d", s0.BatchHeld, s1.BatchHeld)
	}
	t.Logf("%d served with %d + %d store calls (%.3f round trips per request)", limit, s0.StoreCalls, s1.StoreCalls, float64(s0.StoreCalls+s1.StoreCalls)/limit)
}

// TestCounterNames: counters are Redis keys "<prefix>:<bucket>", DefaultPrefix
// when none is given, and expire with their window.
func TestCounterNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, prefix := testenv.Redis(t)
	custom, err := redisstore.New(client, strings.TrimSuffix(prefix, ":"))
	if err != nil {
		t.Fatal(err)
	}
	def, err := redisstore.New(client, "")
	if err != nil {
		t.Fatal(err)
	}
	bucket := testenv.Unique("ak:gold:")
	t.Cleanup(func() { client.Del(context.Background(), redisstore.DefaultPrefix+":"+bucket) })
	rate := ratelimit.Rate{Limit: 10, Period: time.Minute}
	for _, tc := range []struct {
		s    *redisstore.Store
		key  string
		hits int64
	}{
		{custom, prefix + bucket, 3},
		{def, redisstore.DefaultPrefix + ":" + bucket, 2},
	} {
		if _, err := tc.s.Take(ctx, bucket, tc.hits, rate); err != nil {
			t.Fatal(err)
		}
		n, err := client.Get(ctx, tc.key).Int64()
		if err != nil || n != tc.hits {
			t.Errorf("counter %s = %d, %v; want %d", tc.key, n, err, tc.hits)
		}
		ttl, err := client.PTTL(ctx, tc.key).Result()
		if err != nil || ttl <= 0 || ttl > time.Minute {
			t.Errorf("counter %s TTL %v, %v; want within (0, 1m]", tc.key, ttl, err)
		}
	}
}

func TestNewNilClient(t *testing.T) {
	t.Parallel()
	var typedNil *redis.Client
	for _, c := range []redis.UniversalClient{nil, typedNil} {
		if s, err := redisstore.New(c, ""); err == nil {
			t.Errorf("New(%T nil) = %v, nil; want an error", c, s)
		}
	}
}

// TestNewRedisRefusal: when Redis answers with an error (here: credentials it
// does not know), New fails instead of failing open forever.
func TestNewRedisRefusal(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	opts.Username, opts.Password = "tollgate-no-such-user", "wrong"
	client := redis.NewClient(opts)
	defer client.Close()
	if err := client.Ping(context.Background()).Err(); err == nil {
		t.Fatal("the test Redis accepts unknown credentials; it must refuse them for this test")
	}
	s, err := redisstore.New(client, "x")
	var rerr redis.Error
	if err == nil || !strings.HasPrefix(err.Error(), "redisstore: connect: ") || !errors.As(err, &rerr) {
		t.Fatalf("New = %v, %v; want the server's error", s, err)
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
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// closedClientStore returns a store whose client, on the test Redis, is closed
// after New has loaded ulule's scripts.
func closedClientStore(t *testing.T) *redisstore.Store {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	s, err := redisstore.New(c, testenv.Unique("tgtest:"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return s
}

// TestStoreUnavailable: with Redis unreachable from the start, or its client
// closed, New succeeds and nothing panics; a Limiter on the store fails open or
// closed as configured, reports ErrUnavailable, counts every request and logs
// one line.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	stores := []struct {
		name string
		new  func(t *testing.T) *redisstore.Store
	}{
		{"closed port", func(t *testing.T) *redisstore.Store {
			s, err := redisstore.New(closedPortClient(t), "x")
			if err != nil {
				t.Fatalf("New on a closed port: %v; want a store that fails per call", err)
			}
			return s
		}},
		{"closed client", closedClientStore},
	}
	rate := ratelimit.Rate{Limit: 100, Period: time.Minute}
	for _, st := range stores {
		for _, failClosed := range []bool{false, true} {
			name := st.name + map[bool]string{false: "/fail open", true: "/fail closed"}[failClosed]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := st.new(t)
				if _, err := s.Take(context.Background(), "ak:gold:down", 1, rate); err == nil || !strings.HasPrefix(err.Error(), "redisstore: ") {
					t.Fatalf("Take on a store that cannot reach Redis: %v", err)
				}
				var logs testenv.Buffer
				l, err := ratelimit.New(s, ratelimit.Config{FailClosed: failClosed, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
				if err != nil {
					t.Fatal(err)
				}
				const n = 5
				for i := range n {
					res := l.Allow(context.Background(), "ak:gold:down", rate)
					if res.Allowed == failClosed || !errors.Is(res.Err, ratelimit.ErrUnavailable) || res.Limit != 100 {
						t.Fatalf("request %d: %+v; want allowed %v, ErrUnavailable, the limit", i+1, res, !failClosed)
					}
				}
				if got := l.Stats().StoreErrors; got != n {
					t.Errorf("StoreErrors %d, want %d", got, n)
				}
				out := logs.String()
				if strings.Count(out, "\n") != 1 || !strings.Contains(out, `msg="ratelimit: limiter store failed"`) || !strings.Contains(out, "redisstore: ") {
					t.Errorf("log output:\n%s", out)
				}
				if strings.Contains(out, "down") {
					t.Errorf("log names the bucket:\n%s", out)
				}
			})
		}
	}
}
