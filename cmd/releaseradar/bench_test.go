package main

// What a whole request costs: the server's real handler (routes, CORS, access log,
// metrics, the gate), built in process by newInProcess, against a bare net/http
// JSON handler. Results and how to run them: docs/BENCHMARKS.md.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
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
// net/http handler that encodes a JSON answer of the route's size (the route's
// own answer, decoded into the same Go types), then the server's real
// handler (routes, CORS, access log, metrics, the gate, the market query) for
//
//   - event: GET /events/7 with one key per connection;
//   - search: GET /events/search?q=earnings&limit=5, likewise;
//   - public_feed: GET /events/public, from the 120 s cache, burst-limited by address;
//   - event_bare_with_headers: no server, the bare handler against itself setting
//     every header of /events/7's answer as constants: what those headers alone
//     cost net/http;
//
// on SQLite (a new file) and on PostgreSQL (a new schema; TOLLGATE_TEST_POSTGRES_URL)
// with the burst counters in Redis (TOLLGATE_TEST_REDIS_URL), the several-replica
// set-up. Each route is measured in alternating runs against the bare handler,
// both sent the route's requests, and reports the median ratio of the pairs
// (x-bare). Run with -benchtime 1x; results:
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
	for _, route := range []struct {
		name, path string
		answer     any // the route's answer as the Go value the bare handler encodes
	}{
		{"event", benchEvent, new(market.Event)},
		{"search", benchSearch, new(struct {
			Events     []market.Event `json:"events"`
			NextCursor *string        `json:"next_cursor"`
		})},
		{"public_feed", "/events/public", new(struct {
			GeneratedAt time.Time      `json:"generated_at"`
			Events      []market.Event `json:"events"`
		})},
	} {
		build := loadgen.Same(loadgen.Request{Path: route.path})
		var rs []loadgen.Request
		if route.name != "public_feed" {
			rs = reqs(route.path)
			build = loadgen.PerConn(rs...)
		}
		headers := answer(b, p.handler, route.path, rs, route.answer)
		// The bare handler gets the route's own requests, key included: the
		// server's work is the only difference.
		bare := loadgen.Case{Handler: bareJSON(route.answer, nil), Build: build}
		if route.name == "event" {
			// What the gated answer's headers alone cost: the bare answer with
			// every header the route's answer carries, as constants.
			b.Run("event_bare_with_headers", func(b *testing.B) {
				loadgen.Compare(b, bare, loadgen.Case{Handler: bareJSON(route.answer, headers), Build: bare.Build})
			})
		}
		b.Run(route.name, func(b *testing.B) {
			loadgen.Compare(b, bare, loadgen.Case{Handler: p.handler, Build: build})
		})
	}
}

// answer decodes into v the server's answer to path (with the first of reqs'
// keys, if any) and returns the answer's headers.
func answer(b *testing.B, h http.Handler, path string, reqs []loadgen.Request, v any) http.Header {
	b.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if len(reqs) > 0 {
		for k, val := range reqs[0].Header {
			r.Header.Set(k, val)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		b.Fatalf("GET %s: %v", path, err)
	}
	return w.Result().Header
}

// bareJSON is the baseline: what net/http alone costs for a JSON answer of the
// same size, encoded on every request from the same Go value as the route's. It
// also sets each of headers (its first value) as a constant, but Content-Type and
// Content-Length, which it sets itself, and Date, which net/http adds.
func bareJSON(v any, headers http.Header) http.Handler {
	var fixed [][2]string
	for k, vs := range headers {
		if k != "Content-Length" && k != "Date" && k != "Content-Type" && len(vs) > 0 {
			fixed = append(fixed, [2]string{k, vs[0]})
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := json.Marshal(v)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for _, kv := range fixed {
			w.Header().Set(kv[0], kv[1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
}
