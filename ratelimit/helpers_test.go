package ratelimit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ulule/limiter/v3"

	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/ratelimit"
)

// Test requests name their plan and key hash in these headers; identify reads them.
const (
	planHeader = "X-Test-Plan"
	hashHeader = "X-Test-Hash"
)

// identify is the tests' Config.Identify: a request is authenticated when it
// carries hashHeader.
func identify(r *http.Request) (plan, keyHash string, ok bool) {
	h := r.Header.Get(hashHeader)
	return r.Header.Get(planHeader), h, h != ""
}

// request returns a GET from remote ("ip:port"); plan and hash, when hash is not
// empty, make it authenticated.
func request(remote, plan, hash string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/events/search", nil)
	r.RemoteAddr = remote
	if hash != "" {
		r.Header.Set(planHeader, plan)
		r.Header.Set(hashHeader, hash)
	}
	return r
}

// ok is the handler behind the limiter.
var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
})

// serve runs r through h and returns the recorded response.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// header returns the single value of header name, failing the test when there
// is not exactly one.
func header(t *testing.T, w *httptest.ResponseRecorder, name string) string {
	t.Helper()
	v := w.Header().Values(name)
	if len(v) != 1 {
		t.Fatalf("header %s = %q, want exactly one value", name, v)
	}
	return v[0]
}

// headerInt returns the single integer value of header name.
func headerInt(t *testing.T, w *httptest.ResponseRecorder, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(header(t, w, name), 10, 64)
	if err != nil {
		t.Fatalf("header %s: %v", name, err)
	}
	return n
}

// problemDetail returns the detail of a problem+json response.
func problemDetail(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", w.Body.String(), err)
	}
	if p.Status != w.Code {
		t.Fatalf("problem status %d, response status %d", p.Status, w.Code)
	}
	return p.Detail
}

// backends are the stores every behaviour test runs against.
var backends = []struct {
	name string
	new  func(t *testing.T) limiter.Store
}{
	{"memory", func(t *testing.T) limiter.Store {
		s, err := ratelimit.NewStore(nil, "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"redis", func(t *testing.T) limiter.Store {
		client, prefix := testenv.Redis(t)
		s, err := ratelimit.NewStore(client, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// eachBackend runs f as a parallel subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, store limiter.Store)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b.new(t))
		})
	}
}

// newLimiter builds a Limiter or fails the test.
func newLimiter(t testing.TB, store limiter.Store, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(store, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// countingStore wraps a store and records the buckets Get is asked about.
type countingStore struct {
	limiter.Store
	gets atomic.Int64
	mu   sync.Mutex
	keys map[string]int
}

func newCountingStore(s limiter.Store) *countingStore {
	return &countingStore{Store: s, keys: make(map[string]int)}
}

func (s *countingStore) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	s.gets.Add(1)
	s.mu.Lock()
	s.keys[key]++
	s.mu.Unlock()
	return s.Store.Get(ctx, key, rate)
}

// buckets returns how often each bucket was asked about.
func (s *countingStore) buckets() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.keys))
	for k, v := range s.keys {
		out[k] = v
	}
	return out
}

// eachSeries calls f for every series c exports, gathered through a pedantic
// registry, with its labels and its counter or gauge value.
func eachSeries(t *testing.T, c prometheus.Collector, f func(name string, labels map[string]string, value float64)) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatalf("register: %v", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, fam := range families {
		for _, m := range fam.GetMetric() {
			labels := make(map[string]string)
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			f(fam.GetName(), labels, m.GetCounter().GetValue()+m.GetGauge().GetValue())
		}
	}
}

// metricValue returns the value of the series name{labels} that c exports
// (unlisted labels may have any value), or -1 when there is none.
func metricValue(t *testing.T, c prometheus.Collector, name string, labels map[string]string) float64 {
	t.Helper()
	found := -1.0
	eachSeries(t, c, func(n string, ls map[string]string, v float64) {
		if n != name || found >= 0 {
			return
		}
		for k, want := range labels {
			if ls[k] != want {
				return
			}
		}
		found = v
	})
	return found
}

// labelValues returns every label value c exports.
func labelValues(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	var out []string
	eachSeries(t, c, func(_ string, ls map[string]string, _ float64) {
		for _, v := range ls {
			out = append(out, v)
		}
	})
	return out
}

// slogText returns a logger writing text lines to w.
func slogText(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// lockedBuffer is a bytes.Buffer safe for concurrent writers, for slog output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
