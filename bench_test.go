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
func benchGate(b *testing.B, stores tollgate.Stores) (*tollgate.Gate, []loadgen.Request) {
	b.Helper()
	ctx := context.Background()
	g, err := tollgate.New(stores, benchPlans, tollgate.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close(ctx) })
	if err := g.Bootstrap(ctx); err != nil {
		b.Fatal(err)
	}
	reqs := make([]loadgen.Request, *loadgen.Conns)
	for i := range reqs {
		raw, _, err := g.Issue(ctx, fmt.Sprintf("user-%d", i), "bench", 0, "")
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = loadgen.Request{Path: "/x", Header: map[string]string{"x-api-key": raw}}
	}
	return g, reqs
}

// BenchmarkGate measures, in one run, the bare handler and the same handler behind
// the gate on each backend, each gated figure right after a bare one.
func BenchmarkGate(b *testing.B) {
	for _, be := range benchBackends() {
		b.Run(be.name, func(b *testing.B) {
			stores := be.stores(b)
			g, reqs := benchGate(b, stores)
			var bare float64
			b.Run("bare", func(b *testing.B) {
				bare = loadgen.Bench(b, noop, loadgen.Same(loadgen.Request{Path: "/x"}))
			})
			b.Run("gated", func(b *testing.B) {
				rate := loadgen.Bench(b, g.Require("bench")(noop), loadgen.PerConn(reqs...))
				if bare > 0 {
					b.ReportMetric(rate/bare, "x-bare")
				}
			})
		})
	}
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
	raw, key, err := gates[0].Issue(ctx, "hot", "bench", 0, "")
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
