package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestEveryRouteNamesItself: each route of the server, whatever its handler and
// answer, reaches the metrics (and so the access log) under its template, never
// as "unmatched" and never as the raw path.
func TestEveryRouteNamesItself(t *testing.T) {
	t.Parallel()
	p := newInProcess(t, sqliteEnv(t), nil)
	calls := []struct{ method, path, route string }{
		{http.MethodGet, "/events/public", "/events/public"},
		{http.MethodGet, "/events/search?q=x", "/events/search"},
		{http.MethodGet, "/events/7", "/events/{id}"},
		{http.MethodGet, "/impact/7", "/impact/{event_id}"},
		{http.MethodGet, "/companies", "/companies"},
		{http.MethodGet, "/companies/MSFT", "/companies/{ticker}"},
		{http.MethodPost, "/portfolio/impact", "/portfolio/impact"},
		{http.MethodGet, "/keys", "/keys"},
		{http.MethodPost, "/keys/rotate", "/keys/rotate"},
		{http.MethodPost, "/keys/reveal", "/keys/reveal"},
		{http.MethodGet, "/keys/usage", "/keys/usage"},
		{http.MethodPost, "/billing/checkout", "/billing/checkout"},
		{http.MethodPost, "/billing/portal", "/billing/portal"},
		{http.MethodPost, "/billing/webhook", "/billing/webhook"},
		{http.MethodGet, "/openapi.json", "/openapi.json"},
		{http.MethodGet, "/account/", "/account/"},
		{http.MethodGet, "/", "/"},
		{http.MethodGet, "/nowhere", "unmatched"},
	}
	for _, c := range calls {
		p.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.path, nil))
	}
	got := map[string]float64{}
	ch := make(chan prometheus.Metric, 64)
	go func() { p.obs.requests.Collect(ch); close(ch) }()
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "route" {
				got[l.GetValue()] += d.GetCounter().GetValue()
			}
		}
	}
	for _, c := range calls {
		if got[c.route] != 1 {
			t.Errorf("%s %s: %v requests under route %q, want 1 (all: %v)", c.method, c.path, got[c.route], c.route, got)
		}
	}
	if len(got) != len(calls) {
		t.Errorf("route labels %v, want exactly the %d of the calls", got, len(calls))
	}
}
