package main

// What a whole request costs: the server's real handler (routes, CORS, access log,
// metrics, the gate), built in process by newInProcess, against a bare net/http
// JSON handler. Results and how to run them: docs/BENCHMARKS.md.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/internal/loadgen"
	"github.com/releaseradar/tollgate/internal/testenv"
)

const (
	// benchRates raises every plan's burst limit so far that no benchmark trips it.
	benchRates = "public=1000000000-S,pro=1000000000-S,team=1000000000-S"
	// benchLimit is the monthly limit of the benchmark's keys: more calls than any
	// run makes.
	benchLimit = 1_000_000_000
	// benchEvent and benchSearch are gated routes of the sample data set.
	benchEvent  = "/events/7"
	benchSearch = "/events/search?q=earnings&limit=5"
)

// BenchmarkServer measures whole requests over loopback HTTP/1.1 keep-alive
// connections (internal/loadgen: 64 by default), in one run per backend: a bare
// net/http handler that encodes a small JSON object, then the server's real
// handler (routes, CORS, access log, metrics, the gate, the market query) for
//
//   - event: GET /events/7 with one key per connection;
//   - search: GET /events/search?q=earnings&limit=5, likewise;
//   - public_feed: GET /events/public, from the 120 s cache, burst-limited by address;
//
// on SQLite (a new file) and on PostgreSQL (a new schema; TOLLGATE_TEST_POSTGRES_URL)
// with the burst counters in Redis (TOLLGATE_TEST_REDIS_URL), the several-replica
// set-up. Each route is measured in alternating runs against the bare handler and
// reports the median ratio of the pairs (x-bare). Run with -benchtime 1x; results:
// docs/BENCHMARKS.md.
func BenchmarkServer(b *testing.B) {
	backends := []struct {
		name string
		env  func(b *testing.B) map[string]string
	}{
		{"sqlite", func(b *testing.B) map[string]string { return sqliteEnv(b) }},
		{"postgres_redis", func(b *testing.B) map[string]string {
			url := testenv.RedisURL(b)
			_, prefix := testenv.Redis(b)
			return map[string]string{
				"RR_DATABASE_URL": testenv.PostgresURL(b),
				"RR_REDIS_URL":    url,
				"RR_REDIS_PREFIX": prefix,
			}
		}},
	}
	for _, be := range backends {
		for _, cache := range []string{"cache", "nocache"} {
			b.Run(be.name+"/"+cache, func(b *testing.B) {
				env := be.env(b)
				env["RR_PLAN_RATES"] = benchRates
				if cache == "nocache" {
					env["RR_CACHE_TTL"] = "0"
				}
				benchRoutes(b, env)
			})
		}
	}
}

// benchRoutes measures the server's routes built from env against the bare handler.
func benchRoutes(b *testing.B, env map[string]string) {
	p := newInProcess(b, env, io.Discard)
	reqs := func(path string) []loadgen.Request {
		out := make([]loadgen.Request, *loadgen.Conns)
		for i := range out {
			key := p.grant(b, fmt.Sprintf("bench-user-%s-%d", path, i), planPro, benchLimit)
			out[i] = loadgen.Request{Path: path, Header: map[string]string{"x-api-key": key}}
		}
		return out
	}
	for _, route := range []struct{ name, path string }{
		{"event", benchEvent},
		{"search", benchSearch},
		{"public_feed", "/events/public"},
	} {
		build := loadgen.Same(loadgen.Request{Path: route.path})
		if route.name != "public_feed" {
			build = loadgen.PerConn(reqs(route.path)...)
		}
		b.Run(route.name, func(b *testing.B) {
			loadgen.Compare(b,
				loadgen.Case{Handler: bareJSON(), Build: loadgen.Same(loadgen.Request{Path: "/hello"})},
				loadgen.Case{Handler: p.handler, Build: build})
		})
	}
}

// bareJSON is the baseline: what net/http alone costs for a small JSON answer.
func bareJSON() http.Handler {
	type hello struct {
		Message string    `json:"message"`
		At      time.Time `json:"at"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := json.Marshal(hello{Message: "hello", At: time.Now().UTC()})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}
