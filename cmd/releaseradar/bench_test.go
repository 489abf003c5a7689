package main

// What a whole request costs: the server's real handler (routes, CORS, access log,
// metrics, the gate), built in process by newInProcess, against a bare net/http
// JSON handler. Results and how to run them: docs/bench/server.md.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/internal/testenv"
)

const (
	// benchRates raises every plan's burst limit so far that no benchmark trips it.
	benchRates = "public=1000000000-S,pro=1000000000-S,team=1000000000-S"
	// benchLimit is the monthly limit of the benchmark's keys: more calls than any
	// run makes.
	benchLimit = 1_000_000_000
	// benchClients is how many clients send requests at once, whatever GOMAXPROCS
	// (-cpu) is, so that database round trips overlap as on a busy server; -cpu
	// varies only the cores the process may use.
	benchClients = 32
	// benchKeys is how many keys the spread benchmarks cycle through.
	benchKeys = 64
	// benchEvent is a gated route of the sample data set.
	benchEvent = "/events/7"
)

// BenchmarkServer measures whole requests:
//
//   - bare: a net/http handler that encodes a small JSON object, the baseline;
//   - <backend>/public_feed: GET /events/public, served from the 120 s cache,
//     behind the burst limit by client IP;
//   - <backend>/event: GET /events/{id} behind the full gate: key lookup, plan
//     rank, burst limit and the monthly quota's UPDATE, then one SELECT, all
//     with one key (event, event_loopback) or benchKeys keys in turn
//     (event_spread);
//
// in process (ServeHTTP on a recorder: no network), and for bare and event also
// over loopback HTTP/1.1 keep-alive connections. Backends: SQLite (a new
// file), PostgreSQL (a new schema; TOLLGATE_TEST_POSTGRES_URL) with in-process
// burst counters, and PostgreSQL with the counters in Redis
// (TOLLGATE_TEST_REDIS_URL), the several-replica set-up.
func BenchmarkServer(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		h := bareJSON()
		b.Run("inproc", func(b *testing.B) { benchInProcess(b, h, "/hello") })
		b.Run("loopback", func(b *testing.B) { benchLoopback(b, h, "/hello") })
	})
	backends := []struct {
		name string
		env  func(b *testing.B) map[string]string
	}{
		{"sqlite", func(b *testing.B) map[string]string { return sqliteEnv(b) }},
		{"postgres", func(b *testing.B) map[string]string {
			return map[string]string{"RR_DATABASE_URL": testenv.PostgresURL(b)}
		}},
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
		b.Run(be.name, func(b *testing.B) {
			env := be.env(b)
			env["RR_PLAN_RATES"] = benchRates
			p := newInProcess(b, env, nil)
			keys := make([]string, benchKeys)
			for i := range keys {
				keys[i] = p.grant(b, fmt.Sprintf("bench-user-%d", i), planPro, benchLimit)
			}
			b.Run("public_feed", func(b *testing.B) { benchInProcess(b, p.handler, "/events/public") })
			b.Run("event", func(b *testing.B) { benchInProcess(b, p.handler, benchEvent, keys[0]) })
			b.Run("event_spread", func(b *testing.B) { benchInProcess(b, p.handler, benchEvent, keys...) })
			b.Run("event_loopback", func(b *testing.B) { benchLoopback(b, p.handler, benchEvent, keys[0]) })
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

// keyRing hands out keys in turn; with no keys it hands out "" (no key).
type keyRing struct {
	keys []string
	n    atomic.Uint64
}

func (k *keyRing) next() string {
	if len(k.keys) == 0 {
		return ""
	}
	return k.keys[(k.n.Add(1)-1)%uint64(len(k.keys))]
}

// runClients sends b.N requests from benchClients goroutines (at least
// GOMAXPROCS), each with the next of keys, and reports the throughput that ns/op
// means for the whole machine. The first error of request fails the benchmark
// once the goroutines are done, as they may not call b.Fatal.
func runClients(b *testing.B, keys []string, request func(key string) error) {
	ring := &keyRing{keys: keys}
	var first atomic.Pointer[error]
	b.ReportAllocs()
	b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := request(ring.next()); err != nil {
				first.CompareAndSwap(nil, &err)
				return
			}
		}
	})
	b.StopTimer()
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "req/s")
	}
	if err := first.Load(); err != nil {
		b.Fatal(*err)
	}
}

// benchInProcess sends GET path to h with ServeHTTP, each request carrying the
// next of keys in x-api-key. Every answer must be 200.
func benchInProcess(b *testing.B, h http.Handler, path string, keys ...string) {
	runClients(b, keys, func(key string) error {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if key != "" {
			r.Header.Set("x-api-key", key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			return fmt.Errorf("GET %s: %d %s", path, w.Code, w.Body)
		}
		return nil
	})
}

// benchLoopback serves h on a loopback listener and sends it GET path over
// keep-alive connections; the clients share the machine's cores with the server,
// as a local load generator would.
func benchLoopback(b *testing.B, h http.Handler, path string, keys ...string) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 2 * benchClients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := srv.URL + path
	runClients(b, keys, func(key string) error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if key != "" {
			req.Header.Set("x-api-key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		return nil
	})
}
