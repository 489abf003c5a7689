package tollgate_test

// The load harness of the gate: a no-op JSON handler served bare and behind the
// gate, on memory, SQLite and PostgreSQL (+Redis) stores, over loopback HTTP/1.1
// keep-alive connections (64 by default), in one run. Each gated sub-benchmark
// reports its requests a second and its ratio to the bare handler measured just
// before it. Results, command, machine and date: docs/BENCHMARKS.md.
//
//	go test -run '^$' -bench 'Gate' -benchtime 1x -count 3 .

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate"
	akmem "github.com/releaseradar/tollgate/apikey/memstore"
	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/loadgen"
	"github.com/releaseradar/tollgate/internal/testenv"
	qmem "github.com/releaseradar/tollgate/quota/memstore"
	qsql "github.com/releaseradar/tollgate/quota/sqlstore"
	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/redisstore"
)

// benchPlans lets the benchmark's keys through: limits and rates far above what a
// run sends. The anonymous plan is never used.
var benchPlans = entitlement.Catalog{
	"anon":  {Name: "anon", Rank: 0, Rate: "10-S"},
	"bench": {Name: "bench", Rank: 1, MonthlyCallLimit: 1 << 40, Rate: "1000000000-S"},
}

// noop is the handler measured: a small JSON answer.
var noop = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "12")
	_, _ = w.Write([]byte(`{"ok":true}` + "\n"))
})

// noopIETFHeaders is noop with the two headers of the IETF draft only, as the gate
// sets them with Config.OmitHeaders = HeadersXRateLimit | HeadersXQuota.
var noopIETFHeaders = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Ratelimit-Policy", `"bench";q=1000000000;w=1, "bench-monthly";q=1099511627776;w=2592000`)
	h.Set("Ratelimit", `"bench";r=999999999;t=1, "bench-monthly";r=1099511627775;t=2591999`)
	noop(w, r)
})

// noopHeaders is noop with the eight headers the gate adds to a success, as
// constants: what those headers cost net/http and the client, whatever computes
// them. It is noopIETFHeaders with the X-RateLimit-* and X-Quota-* families.
var noopHeaders = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Ratelimit-Limit", "1000000000")
	h.Set("X-Ratelimit-Remaining", "999999999")
	h.Set("X-Ratelimit-Reset", "1796000000")
	h.Set("X-Quota-Limit", "1099511627776")
	h.Set("X-Quota-Remaining", "1099511627775")
	h.Set("X-Quota-Reset", "1796000000")
	noopIETFHeaders(w, r)
})

type benchBackend struct {
	name   string
	stores func(b *testing.B) tollgate.Stores
}

func benchBackends() []benchBackend {
	sql := func(b *testing.B, db *sqlx.DB, counters ratelimit.Store) tollgate.Stores {
		return tollgate.Stores{Keys: aksql.New(db, aksql.Config{}), Quotas: qsql.New(db, qsql.Config{}), Counters: counters}
	}
	return []benchBackend{
		{"memory", func(b *testing.B) tollgate.Stores {
			return tollgate.Stores{Keys: akmem.New(), Quotas: qmem.New(qmem.Config{})}
		}},
		{"sqlite", func(b *testing.B) tollgate.Stores {
			db, err := sqlx.Open("sqlite", tollgate.SQLiteDSN(testenv.SQLitePath(b)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			return sql(b, db, nil)
		}},
		{"postgres_redis", func(b *testing.B) tollgate.Stores {
			db, err := sqlx.Open("postgres", testenv.PostgresURL(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			client, prefix := testenv.Redis(b)
			counters, err := redisstore.New(client, prefix)
			if err != nil {
				b.Fatal(err)
			}
			return sql(b, db, counters)
		}},
	}
}

// benchGate builds a gate on stores with one key for each connection.
func benchGate(b *testing.B, stores tollgate.Stores, cfg tollgate.Config) (*tollgate.Gate, []loadgen.Request) {
	b.Helper()
	ctx := context.Background()
	g, err := tollgate.New(stores, benchPlans, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close(ctx) })
	if err := g.Bootstrap(ctx); err != nil {
		b.Fatal(err)
	}
	reqs := make([]loadgen.Request, *loadgen.Conns)
	for i := range reqs {
		raw, _, err := g.Issue(ctx, fmt.Sprintf("user-%d", i), "bench", 0, "", 0)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = loadgen.Request{Path: "/x", Header: map[string]string{"x-api-key": raw}}
	}
	return g, reqs
}

// BenchmarkGate measures, for each backend, the bare handler and the same handler
// behind the gate in alternating runs, and reports the median ratio of the pairs
// (x-bare); both get the same requests, key header included, so that the gate is
// the only difference. bare_with_headers is the bare handler setting the eight
// headers the gate adds, as constants: the part of the gate's cost that is its
// headers, whatever computes them. The *_ietf_headers rows are the same with the
// two headers of the IETF draft only, which carry the burst limit and the quota
// both: bare, and each backend's gate with Config.OmitHeaders set so. And
// postgres_redis_burst_batch_16 is the PostgreSQL + Redis gate with the burst
// limiter's batches capped at 16 hits (Config.BurstMaxBatch).
func BenchmarkGate(b *testing.B) {
	same := loadgen.Same(loadgen.Request{Path: "/x"})
	b.Run("bare_with_headers", func(b *testing.B) {
		loadgen.Compare(b, loadgen.Case{Handler: noop, Build: same}, loadgen.Case{Handler: noopHeaders, Build: same})
	})
	for _, be := range benchBackends() {
		b.Run(be.name, func(b *testing.B) { compareGate(b, be.stores(b), tollgate.Config{}) })
	}
	b.Run("bare_with_ietf_headers", func(b *testing.B) {
		loadgen.Compare(b, loadgen.Case{Handler: noop, Build: same}, loadgen.Case{Handler: noopIETFHeaders, Build: same})
	})
	for _, be := range benchBackends() {
		b.Run(be.name+"_ietf_headers", func(b *testing.B) {
			compareGate(b, be.stores(b), tollgate.Config{OmitHeaders: tollgate.HeadersXRateLimit | tollgate.HeadersXQuota})
		})
	}
	// PostgreSQL + Redis with burst batches of at most 16 hits, the default
	// before it was 256: what a Redis round trip every 16 requests costs.
	b.Run("postgres_redis_burst_batch_16", func(b *testing.B) {
		compareGate(b, benchBackends()[2].stores(b), tollgate.Config{BurstMaxBatch: 16})
	})
}

// compareGate measures noop bare against noop behind a gate on stores with cfg,
// both sent the same requests: one key for each connection.
func compareGate(b *testing.B, stores tollgate.Stores, cfg tollgate.Config) {
	g, reqs := benchGate(b, stores, cfg)
	same := loadgen.PerConn(reqs...)
	loadgen.Compare(b, loadgen.Case{Handler: noop, Build: same}, loadgen.Case{Handler: g.Require("bench")(noop), Build: same})
}

// BenchmarkHotKeyReplicas drives one key through two gates — two replicas, each
// with its own PostgreSQL pool and Redis client on one database and one Redis — and
// reports the calls a second both serve together. Closing the gates gives leased
// calls back; the database then holds exactly the calls served.
func BenchmarkHotKeyReplicas(b *testing.B) {
	url := testenv.PostgresURL(b)
	redisURL := testenv.RedisURL(b)
	_, prefix := testenv.Redis(b)
	ctx := context.Background()
	var gates [2]*tollgate.Gate
	var quotas [2]*qsql.Store
	for i := range gates {
		db, err := sqlx.Open("postgres", url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		client := testenv.RedisClient(b, redisURL)
		counters, err := redisstore.New(client, prefix)
		if err != nil {
			b.Fatal(err)
		}
		quotas[i] = qsql.New(db, qsql.Config{})
		g, err := tollgate.New(tollgate.Stores{Keys: aksql.New(db, aksql.Config{}), Quotas: quotas[i], Counters: counters}, benchPlans, tollgate.Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Bootstrap(ctx); err != nil {
			b.Fatal(err)
		}
		gates[i] = g
	}
	raw, key, err := gates[0].Issue(ctx, "hot", "bench", 0, "", 0)
	if err != nil {
		b.Fatal(err)
	}
	req := loadgen.Request{Path: "/x", Header: map[string]string{"x-api-key": raw}}
	for range b.N {
		var res [2]loadgen.Result
		var wg sync.WaitGroup
		for i, g := range gates {
			srv := httptest.NewServer(g.Require("bench")(noop))
			defer srv.Close()
			addr := srv.Listener.Addr().String()
			raw := req.Bytes(addr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = loadgen.Run(addr, *loadgen.Conns/2, *loadgen.Duration, func(int, int64) []byte { return raw })
			}()
		}
		wg.Wait()
		var ok int64
		for _, r := range res {
			if r.Errors > 0 || len(r.Statuses) != 1 {
				b.Fatalf("replica answers %v, %d errors", r.Statuses, r.Errors)
			}
			ok += r.Statuses[http.StatusOK]
		}
		b.ReportMetric(res[0].PerSecond()+res[1].PerSecond(), "req/s")
		for _, g := range gates {
			if err := g.Close(ctx); err != nil {
				b.Fatal(err)
			}
		}
		u, err := quotas[0].Usage(ctx, key.QuotaID, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if u.Used != ok {
			b.Fatalf("calls_used %d after both gates closed, but %d calls were served", u.Used, ok)
		}
	}
}

// BenchmarkGateInProcess is the gate's own cost a request, without the network:
// ServeHTTP on a reused writer, memory stores.
func BenchmarkGateInProcess(b *testing.B) {
	g, reqs := benchGate(b, tollgate.Stores{Keys: akmem.New(), Quotas: qmem.New(qmem.Config{})}, tollgate.Config{})
	h := g.Require("bench")(noop)
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.Header.Set("x-api-key", reqs[0].Header["x-api-key"])
	b.ReportAllocs()
	for b.Loop() {
		w := &discardWriter{h: make(http.Header, 12)}
		h.ServeHTTP(w, r)
	}
}

// discardWriter is a ResponseWriter that keeps headers and drops the body.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
