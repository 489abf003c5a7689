package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"time"

	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/memstore"
)

// A Limiter counting in memory allows a key's bucket its rate and then refuses
// it: first the store, then the deny cache, until the window resets.
func Example() {
	l, err := ratelimit.New(memstore.New(), ratelimit.Config{})
	if err != nil {
		panic(err)
	}
	rate, _ := ratelimit.ParseRate("2-M")
	bucket := ratelimit.KeyBucket("gold", "hash-of-the-key")
	for range 4 {
		res := l.Allow(context.Background(), bucket, rate)
		fmt.Println("allowed", res.Allowed, "remaining", res.Remaining, "local", res.Local)
	}
	fmt.Printf("%+v\n", l.Stats())
	// Output:
	// allowed true remaining 1 local false
	// allowed true remaining 0 local false
	// allowed false remaining 0 local false
	// allowed false remaining 0 local true
	// {StoreErrors:0 LocalDenials:1 DenyCacheEntries:1 StoreCalls:3 Batched:0 BatchBuckets:0 BatchHeld:0}
}

// Middleware built on a Limiter, as the root tollgate package builds its gate:
// each client address has its own budget, and the Result becomes response
// headers.
func Example_middleware() {
	l, _ := ratelimit.New(memstore.New(), ratelimit.Config{})
	rate := ratelimit.Rate{Limit: 2, Period: time.Minute}
	policy := ratelimit.PolicyHeader("anonymous", rate)
	limit := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res := l.Allow(r.Context(), ratelimit.AddrBucket(ratelimit.ClientAddr(r, nil)), rate)
			w.Header().Set("RateLimit-Policy", policy)
			if res.Err == nil {
				w.Header().Set("X-RateLimit-Remaining", strconv.FormatInt(res.Remaining, 10))
			}
			switch {
			case res.Allowed: // within the limit, or the store failed open
				next.ServeHTTP(w, r)
			case res.Err != nil:
				http.Error(w, "Service temporarily unavailable", http.StatusServiceUnavailable)
			default:
				retry := max(int64(time.Until(res.Reset).Seconds()), 1)
				w.Header().Set("Retry-After", strconv.FormatInt(retry, 10))
				http.Error(w, "Rate limit exceeded", http.StatusTooManyRequests)
			}
		})
	}
	h := limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") }))
	for _, remote := range []string{"203.0.113.7:5000", "203.0.113.7:5001", "203.0.113.7:5002", "198.51.100.2:5000"} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(remote, w.Code, w.Header().Get("RateLimit-Policy"), "remaining", w.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 203.0.113.7:5000 200 "anonymous";q=2;w=60 remaining 1
	// 203.0.113.7:5001 200 "anonymous";q=2;w=60 remaining 0
	// 203.0.113.7:5002 429 "anonymous";q=2;w=60 remaining 0
	// 198.51.100.2:5000 200 "anonymous";q=2;w=60 remaining 1
}

// downStore is a Store whose backend is down.
type downStore struct{}

func (downStore) Take(context.Context, string, int64, ratelimit.Rate) (ratelimit.Window, error) {
	return ratelimit.Window{}, errors.New("dial tcp 10.0.0.7:6379: connection refused")
}

// When the store fails, the default policy lets requests through uncounted and
// FailClosed refuses them; either way Result.Err says why.
func ExampleConfig_failClosed() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rate := ratelimit.Rate{Limit: 10, Period: time.Minute}
	for _, failClosed := range []bool{false, true} {
		l, _ := ratelimit.New(downStore{}, ratelimit.Config{FailClosed: failClosed, Logger: quiet})
		res := l.Allow(context.Background(), "ip:192.0.2.1", rate)
		fmt.Println("fail closed", failClosed, "allowed", res.Allowed, "unavailable", errors.Is(res.Err, ratelimit.ErrUnavailable))
	}
	// Output:
	// fail closed false allowed true unavailable true
	// fail closed true allowed false unavailable true
}

// farStore is a BatchStore standing in for Redis: it counts one window per
// bucket on a fixed clock and counts its calls (round trips, over a network).
type farStore struct {
	now   time.Time
	calls int
	count map[string]int64
}

func (s *farStore) TakeBatch(_ context.Context, bucket string, n int64, rate ratelimit.Rate) (int64, ratelimit.Window, error) {
	s.calls++
	before := s.count[bucket]
	s.count[bucket] += n
	granted := min(max(rate.Limit-before, 0), n)
	return granted, ratelimit.Window{
		Limit:     rate.Limit,
		Remaining: max(rate.Limit-s.count[bucket], 0),
		Reset:     s.now.Add(rate.Period),
		Reached:   s.count[bucket] > rate.Limit,
	}, nil
}

func (s *farStore) Take(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error) {
	_, w, err := s.TakeBatch(ctx, bucket, n, rate)
	return w, err
}

// Over a BatchStore (redisstore is one) the Limiter takes a busy bucket's hits
// in batches, growing while they are spent quickly, shrinking to single hits
// near the limit: 100 requests cost 8 round trips (batches of up to 25, 1/40 of
// the limit), and the 1000 of the window are served to the last one, never more.
func ExampleConfig_maxBatch() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	store := &farStore{now: now, count: map[string]int64{}}
	l, _ := ratelimit.New(store, ratelimit.Config{Now: func() time.Time { return now }})
	rate := ratelimit.Rate{Limit: 1000, Period: time.Minute}
	bucket := ratelimit.KeyBucket("gold", "hash-of-the-key")
	var res ratelimit.Result
	for range 100 {
		res = l.Allow(context.Background(), bucket, rate)
	}
	s := l.Stats()
	fmt.Println("allowed", res.Allowed, "remaining", res.Remaining, "round trips", store.calls, "held", s.BatchHeld)
	served := 100
	for l.Allow(context.Background(), bucket, rate).Allowed {
		served++
	}
	fmt.Println("served", served, "round trips", store.calls)
	// Output:
	// allowed true remaining 900 round trips 8 held 6
	// served 1000 round trips 57
}

func ExampleParseRates() {
	rates, err := ratelimit.ParseRates("free=20-M, gold=1200-M")
	fmt.Println(rates["free"], rates["gold"].Limit, rates["gold"].Period, err)
	_, err = ratelimit.ParseRates("free=20-M,gold=fast")
	fmt.Println(err)
	// Output:
	// 20-M 1200 1m0s <nil>
	// ratelimit: rate entry "gold=fast": rate "fast": want <limit>-<S|M|H|D>, for example 100-M: incorrect format 'fast'
}

func ExamplePolicyHeader() {
	rate, _ := ratelimit.ParseRate("100-M")
	fmt.Println(ratelimit.PolicyHeader("gold", rate))
	// Output: "gold";q=100;w=60
}

// Behind a trusted proxy, the rightmost X-Forwarded-For entry that is not a
// trusted proxy is the client; what the client wrote to the left is not read.
func ExampleClientAddr() {
	trusted, err := ratelimit.CheckProxies([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.5:41000"
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.9")
	fmt.Println(ratelimit.ClientAddr(r, trusted))

	r.RemoteAddr = "198.51.100.2:41000" // not a trusted proxy: its header is ignored
	fmt.Println(ratelimit.ClientAddr(r, trusted))
	// Output:
	// 203.0.113.7
	// 198.51.100.2
}

// The addresses of one IPv6 subscriber share a bucket.
func ExampleAddrBucket() {
	for _, a := range []string{"192.0.2.1", "2001:db8:1:2::7", "2001:db8:1:2:ffff::1", "::ffff:192.0.2.1"} {
		fmt.Println(ratelimit.AddrBucket(netip.MustParseAddr(a)))
	}
	fmt.Println(ratelimit.AddrBucket(netip.Addr{}))
	// Output:
	// ip:192.0.2.1
	// ip:2001:db8:1:2::/64
	// ip:2001:db8:1:2::/64
	// ip:192.0.2.1
	// ip:unknown
}
