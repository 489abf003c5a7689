package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"

	"github.com/ulule/limiter/v3"

	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/ratelimit"
)

// unlimited is a rate no benchmark reaches.
const unlimited = "1000000000-S"

// discard is a ResponseWriter that keeps one header map, so benchmarks measure
// the limiter rather than a recorder.
type discard struct {
	h    http.Header
	code int
}

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(p []byte) (int, error) { return len(p), nil }
func (w *discard) WriteHeader(code int)        { w.code = code }

func benchStores(b *testing.B) []struct {
	name  string
	store limiter.Store
} {
	mem, err := ratelimit.NewStore(nil, "")
	if err != nil {
		b.Fatal(err)
	}
	out := []struct {
		name  string
		store limiter.Store
	}{{"memory", mem}}
	if os.Getenv(testenv.RedisEnv) != "" {
		client, prefix := testenv.Redis(b)
		rs, err := ratelimit.NewStore(client, prefix)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, struct {
			name  string
			store limiter.Store
		}{"redis", rs})
	}
	return out
}

// BenchmarkStore measures one ulule store Get: serially on one key, and in
// parallel with one key per goroutine.
func BenchmarkStore(b *testing.B) {
	rate, _ := limiter.NewRateFromFormatted(unlimited)
	for _, s := range benchStores(b) {
		b.Run(s.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.store.Get(ctx, "ak:pro:bench", rate); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			var id atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				key := fmt.Sprint("ak:pro:bench", id.Add(1))
				for pb.Next() {
					if _, err := s.store.Get(ctx, key, rate); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkMiddleware measures a request through Handle against the bare
// handler: authenticated (key bucket) and anonymous (address bucket), serial and
// parallel, and a refusal answered by the deny cache.
func BenchmarkMiddleware(b *testing.B) {
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	run := func(b *testing.B, h http.Handler, plan, hash string) {
		b.Run("serial", func(b *testing.B) {
			b.ReportAllocs()
			r := request("192.0.2.1:1000", plan, hash)
			w := &discard{h: http.Header{}}
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
		b.Run("parallel", func(b *testing.B) {
			b.ReportAllocs()
			var id atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				n := id.Add(1)
				h2 := hash
				if h2 != "" {
					h2 = fmt.Sprint(hash, n)
				}
				r := request(fmt.Sprintf("192.0.2.%d:1000", n), plan, h2)
				w := &discard{h: http.Header{}}
				for pb.Next() {
					h.ServeHTTP(w, r)
				}
			})
		})
	}
	b.Run("bare", func(b *testing.B) { run(b, bare, "pro", "k") })
	for _, s := range benchStores(b) {
		l := newLimiter(b, s.store, ratelimit.Config{
			Rates:    map[string]string{"pro": unlimited, "public": unlimited},
			Identify: identify,
		})
		b.Run(s.name+"/key", func(b *testing.B) { run(b, l.Handle(bare), "pro", "k") })
		b.Run(s.name+"/ip", func(b *testing.B) { run(b, l.Handle(bare), "", "") })

		denying := newLimiter(b, s.store, ratelimit.Config{
			Rates:    map[string]string{"pro": "1-H"},
			Identify: identify,
			OnError:  func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusTooManyRequests) },
		})
		b.Run(s.name+"/denied", func(b *testing.B) { run(b, denying.Handle(bare), "pro", "exhausted") })
	}
}
