package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// nopWriter is the cheapest http.ResponseWriter: it keeps the header map and
// drops the body, so that a benchmark measures the handler's own work.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

// BenchmarkHandler measures the CPU and allocations one request costs in the
// server's handler (routes, CORS, access log, metrics, the gate, the cached
// answer) on SQLite, without the network: the part of BenchmarkServer's ratio
// the server's code decides.
func BenchmarkHandler(b *testing.B) {
	env := sqliteEnv(b)
	env["RR_PLAN_RATES"] = benchRates
	p := newInProcess(b, env, nil)
	for _, route := range []string{benchEvent, benchSearch} {
		keys := make([]string, 64)
		for i := range keys {
			keys[i] = p.grant(b, fmt.Sprintf("handler-bench-%s-%d", route, i), planPro, benchLimit)
		}
		b.Run(route, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r := httptest.NewRequest(http.MethodGet, route, nil)
					r.Header.Set("X-Api-Key", keys[i%len(keys)])
					w := &nopWriter{h: make(http.Header, 16)}
					p.handler.ServeHTTP(w, r)
					i++
				}
			})
		})
	}
}
