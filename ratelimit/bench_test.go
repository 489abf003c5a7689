package ratelimit_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"

	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/memstore"
	"github.com/releaseradar/tollgate/ratelimit/redisstore"
)

// benchStores returns the stores to measure: memstore, and redisstore when
// TOLLGATE_TEST_REDIS_URL is set.
func benchStores(b *testing.B) []struct {
	name  string
	store ratelimit.Store
} {
	out := []struct {
		name  string
		store ratelimit.Store
	}{{"memstore", memstore.New()}}
	if os.Getenv(testenv.RedisEnv) != "" {
		client, prefix := testenv.Redis(b)
		rs, err := redisstore.New(client, prefix)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, struct {
			name  string
			store ratelimit.Store
		}{"redisstore", rs})
	}
	return out
}

// BenchmarkTake measures one store Take: serially on one bucket, and in parallel
// with one bucket per goroutine.
func BenchmarkTake(b *testing.B) {
	for _, s := range benchStores(b) {
		b.Run(s.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.store.Take(ctx, "ak:free:bench", 1, free); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			var id atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				bucket := fmt.Sprint("ak:free:bench", id.Add(1))
				for pb.Next() {
					if _, err := s.store.Take(ctx, bucket, 1, free); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAllow measures Limiter.Allow on each store (over Redis without
// batches, MaxBatch 1, with the default batches, and with batches of up to 16,
// the default before it was 256): an allowed request serially, in parallel with
// one bucket per goroutine, and in parallel on one hot bucket from 16 goroutines
// per CPU (a busy key behind many connections); and a refusal answered by the
// deny cache. trips/op is the store calls per request: round trips, over Redis.
// The buckets are built once, as a gate builds a key's bucket from a prefix
// computed once per plan.
func BenchmarkAllow(b *testing.B) {
	for _, s := range benchStores(b) {
		configs := []struct {
			name string
			cfg  ratelimit.Config
		}{{s.name, ratelimit.Config{}}}
		if _, ok := s.store.(ratelimit.BatchStore); ok {
			configs = []struct {
				name string
				cfg  ratelimit.Config
			}{
				{s.name + "/unbatched", ratelimit.Config{MaxBatch: 1}},
				{s.name + "/batched", ratelimit.Config{}},
				{s.name + "/batched-16", ratelimit.Config{MaxBatch: 16}},
			}
		}
		for _, c := range configs {
			l := newLimiter(b, s.store, c.cfg)
			// trips reports the store calls per request of the benchmark.
			trips := func(b *testing.B, before uint64) {
				b.ReportMetric(float64(l.Stats().StoreCalls-before)/float64(b.N), "trips/op")
			}
			b.Run(c.name+"/allowed/serial", func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				bucket := fmt.Sprint("ak:free:serial-", c.name)
				before := l.Stats().StoreCalls
				for b.Loop() {
					if res := l.Allow(ctx, bucket, free); !res.Allowed || res.Err != nil {
						b.Fatal(res)
					}
				}
				trips(b, before)
			})
			b.Run(c.name+"/allowed/parallel", func(b *testing.B) {
				b.ReportAllocs()
				var id atomic.Int64
				before := l.Stats().StoreCalls
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					bucket := fmt.Sprint("ak:free:parallel-", c.name, id.Add(1))
					for pb.Next() {
						if res := l.Allow(ctx, bucket, free); !res.Allowed || res.Err != nil {
							b.Error(res)
							return
						}
					}
				})
				trips(b, before)
			})
			b.Run(c.name+"/allowed/hot", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(16)
				bucket := fmt.Sprint("ak:free:hot-", c.name)
				before := l.Stats().StoreCalls
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						if res := l.Allow(ctx, bucket, free); !res.Allowed || res.Err != nil {
							b.Error(res)
							return
						}
					}
				})
				trips(b, before)
			})
			b.Run(c.name+"/denied/parallel", func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				bucket := fmt.Sprint("ak:gold:exhausted-", c.name)
				for range gold.Limit + 1 {
					l.Allow(ctx, bucket, gold)
				}
				before := l.Stats().StoreCalls
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if res := l.Allow(ctx, bucket, gold); !res.Local {
							b.Error(res)
							return
						}
					}
				})
				trips(b, before)
			})
		}
	}
}

// BenchmarkAddrBucket measures working out an anonymous request's bucket behind
// a trusted proxy: ClientAddr, then AddrBucket (whose string is the one
// allocation).
func BenchmarkAddrBucket(b *testing.B) {
	trusted, _ := ratelimit.CheckProxies(proxiesForBench)
	for _, remote := range []string{"203.0.113.9:5000", "[2001:db8:1:2::9]:5000"} {
		b.Run(remote, func(b *testing.B) {
			b.ReportAllocs()
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = "10.0.0.1:1000"
			r.Header.Set("X-Forwarded-For", "198.51.100.1, "+remote+", 10.0.0.2")
			for b.Loop() {
				_ = ratelimit.AddrBucket(ratelimit.ClientAddr(r, trusted))
			}
		})
	}
}

var proxiesForBench = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
