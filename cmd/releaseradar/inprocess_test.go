package main

// An in-process harness: the server's API handler built as serve builds it (openApp,
// newServer, handler), without listeners or a binary, for the benchmarks and for
// tests that compare answers byte for byte.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// inProcess is a server built in the test process.
type inProcess struct {
	app     *app
	obs     *observer
	handler http.Handler
}

// newInProcess builds the server from env (RR_ variables; unset ones take their
// defaults) and closes it when tb ends. Its log goes to logTo; nil discards it.
func newInProcess(tb testing.TB, env map[string]string, logTo io.Writer) *inProcess {
	tb.Helper()
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		tb.Fatal(err)
	}
	if logTo == nil {
		logTo = io.Discard
	}
	log := newLogger(logTo, cfg.LogFormat)
	s, err := newServer(context.Background(), cfg, log)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.close)
	return &inProcess{app: s.app, obs: s.obs, handler: s.handler()}
}

// grant issues user a key of plan with a monthly limit (0: the plan's) and returns
// the raw key, as `releaseradar admin grant` does.
func (p *inProcess) grant(tb testing.TB, user, plan string, limit int64) string {
	tb.Helper()
	raw, err := p.app.ent.Grant(context.Background(), user, plan, limit)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// sqliteEnv is the environment of a server on a new SQLite file.
func sqliteEnv(tb testing.TB) map[string]string {
	return map[string]string{"RR_DATABASE_URL": "sqlite:" + testenv.SQLitePath(tb)}
}

// TestMarketErrorsThroughServer checks that the market's refusals, answered by the
// server's one error table, are byte for byte what the market's own default
// writer answers, with the details docs/API.md promises clients, and that a market
// failure reaches the server's writer (logged there, answered without its cause).
func TestMarketErrorsThroughServer(t *testing.T) {
	t.Parallel()
	var log testenv.Buffer
	p := newInProcess(t, sqliteEnv(t), &log)
	raw := p.grant(t, "errors-user", planTeam, 0)

	api := market.NewAPI(p.app.db, market.Config{}) // the default writer
	standalone := http.NewServeMux()
	standalone.HandleFunc("GET /events/search", api.Search)
	standalone.HandleFunc("GET /events/{id}", api.Event)
	standalone.HandleFunc("GET /impact/{event_id}", api.Impact)
	standalone.HandleFunc("GET /companies", api.Companies)
	standalone.HandleFunc("GET /companies/{ticker}", api.Company)
	standalone.HandleFunc("POST /portfolio/impact", api.PortfolioImpact)

	tests := []struct {
		method, target, body string
		status               int
		detail               string
	}{
		{"GET", "/events/search?limit=abc", "", 400, `Invalid parameter "limit": must be an integer from 1 to 100`},
		{"GET", "/events/search?ticker=%3Cb%3E", "", 400, `Invalid parameter "ticker": must be a ticker symbol such as AAPL or BRK.B`},
		{"GET", "/events/search?pad=" + strings.Repeat("x", 5000), "", 400, `Invalid query string: must be at most 4096 bytes`},
		{"GET", "/events/abc", "", 400, `Invalid parameter "id": must be a positive integer`},
		{"GET", "/events/99999999", "", 404, "Event not found"},
		{"GET", "/impact/99999999", "", 404, "Event not found"},
		{"GET", "/companies/ZZZZ", "", 404, "Company not found"},
		{"GET", "/companies?q=" + strings.Repeat("x", market.MaxCompanyQueryLen+1), "", 400, `Invalid parameter "q": must be UTF-8 text of at most 100 characters`},
		{"POST", "/portfolio/impact", `{"holdings":[]}`, 400, `Invalid body field "holdings": must list 1 to 50 holdings`},
		{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"ZZZZ","weight":0.5}]}`, 400, `Invalid body field "holdings[0].ticker": ZZZZ is not a listed company`},
		{"POST", "/portfolio/impact", `not json`, 400, `Invalid request body: is not valid JSON (at byte 2)`},
	}
	for _, tt := range tests {
		name := tt.method + " " + tt.target[:min(len(tt.target), 50)]
		req := func() *http.Request {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			r.Header.Set("x-api-key", raw)
			return r
		}
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		p.handler.ServeHTTP(got, req())
		standalone.ServeHTTP(want, req())
		if got.Code != tt.status || want.Code != tt.status {
			t.Errorf("%s: server %d, market alone %d, want %d: %s", name, got.Code, want.Code, tt.status, got.Body)
			continue
		}
		if ct := got.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
		if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
			t.Errorf("%s: server body\n%s differs from the market's own\n%s", name, got.Body, want.Body)
		}
		exact := httptest.NewRecorder()
		problem.Write(exact, tt.status, tt.detail)
		if !bytes.Equal(got.Body.Bytes(), exact.Body.Bytes()) {
			t.Errorf("%s: body %s, want detail %q", name, got.Body, tt.detail)
		}
	}

	// A broken market table: the gate still works, the handler fails.
	if _, err := p.app.db.Exec(`ALTER TABLE market_companies RENAME TO market_companies_gone`); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/companies/AAPL", nil)
	r.Header.Set("x-api-key", raw)
	rec := httptest.NewRecorder()
	p.handler.ServeHTTP(rec, r)
	exact := httptest.NewRecorder()
	problem.WriteError(exact, errors.New("any failed dependency"))
	if rec.Code != 503 || !bytes.Equal(rec.Body.Bytes(), exact.Body.Bytes()) || rec.Header().Get("Retry-After") == "" {
		t.Errorf("broken table: %d %s, want a bare 503 with Retry-After", rec.Code, rec.Body)
	}
	if l := log.String(); !strings.Contains(l, "a dependency is unavailable") || strings.Contains(l, "market: request failed") || !strings.Contains(l, "market_companies") {
		t.Errorf("the failure was not logged by the server's error writer:\n%s", l)
	}
}
