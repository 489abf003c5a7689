package market

// Fuzz targets for every input the market routes read: the query string of
// /events/search and /companies (ParseValues, ParseQuery, the companies q), the
// path variables and the portfolio body. Each checks the parser alone, then sends
// the input through the handlers on every database (SQLite, and PostgreSQL when
// TOLLGATE_TEST_POSTGRES_URL is set): no panic, a refusal is always a typed input
// error (400) or a not-found (404), never a database failure, and both databases
// answer alike. The seed corpora are in testdata/fuzz; run one with
//
//	go test -run '^$' -fuzz '^FuzzParseQuery$' -fuzztime 30s ./cmd/releaseradar/internal/market

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/gorilla/mux"

	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// fuzzDB is the market API on one database, wired as cmd/releaseradar wires it.
type fuzzDB struct {
	name string
	api  *API
	h    http.Handler
}

type errSlot struct{}

// fuzzDBs returns the API on a loaded SQLite database and, when PostgreSQL is
// configured (or CI requires it), on a loaded PostgreSQL schema.
func fuzzDBs(f *testing.F) []fuzzDB {
	f.Helper()
	onError := func(w http.ResponseWriter, r *http.Request, err error) {
		if p, ok := r.Context().Value(errSlot{}).(*error); ok {
			*p = err
		}
		problem.WriteError(w, err)
	}
	now := func() time.Time { return dataEnd }
	dbs := []fuzzDB{{name: "sqlite", api: NewAPI(loadedSQLite(f), Config{Now: now, OnError: onError})}}
	if os.Getenv(testenv.PostgresEnv) != "" || os.Getenv("CI") == "true" {
		pg := testenv.Postgres(f)
		load(f, pg)
		dbs = append(dbs, fuzzDB{name: "postgres", api: NewAPI(pg, Config{Now: now, OnError: onError})})
	}
	for i := range dbs {
		dbs[i].h = router(dbs[i].api)
	}
	return dbs
}

// answer is one database's response and the error its handler reported.
type answer struct {
	db     string
	status int
	body   []byte
	err    error
}

// serveAll sends the request that newReq builds to every database.
func serveAll(dbs []fuzzDB, newReq func() *http.Request, serve func(db fuzzDB, w http.ResponseWriter, r *http.Request)) []answer {
	out := make([]answer, len(dbs))
	for i, db := range dbs {
		var err error
		r := newReq()
		r = r.WithContext(context.WithValue(r.Context(), errSlot{}, &err))
		w := httptest.NewRecorder()
		serve(db, w, r)
		out[i] = answer{db: db.name, status: w.Code, body: w.Body.Bytes(), err: err}
	}
	return out
}

// checkAnswers checks that every answer is a success or a typed refusal, that the
// databases agree on the status and, when sameBody (or on a refusal), on the body;
// and, when want is not nil, that the refusal is want's.
func checkAnswers(t *testing.T, what string, as []answer, want error, sameBody bool) {
	t.Helper()
	for _, a := range as {
		switch a.status {
		case http.StatusOK:
			if a.err != nil {
				t.Fatalf("%s on %s: 200 with an error %v", what, a.db, a.err)
			}
		case http.StatusBadRequest:
			wantInputError(t, what+" on "+a.db, a.err)
		case http.StatusNotFound:
			var nf *NotFoundError
			if !errors.As(a.err, &nf) {
				t.Fatalf("%s on %s: 404 from %v (%T), want a *NotFoundError", what, a.db, a.err, a.err)
			}
		default:
			t.Fatalf("%s on %s: status %d (%v): %s", what, a.db, a.status, a.err, a.body)
		}
		if want != nil {
			exact := httptest.NewRecorder()
			problem.WriteError(exact, want)
			if a.status != exact.Code || !bytes.Equal(a.body, exact.Body.Bytes()) {
				t.Fatalf("%s on %s: %d %s, want the parser's refusal %s", what, a.db, a.status, a.body, exact.Body)
			}
		}
	}
	for _, a := range as[1:] {
		b := as[0]
		if a.status != b.status || ((sameBody || a.status != http.StatusOK) && !bytes.Equal(a.body, b.body)) {
			t.Fatalf("%s: %s answers %d %.300s, %s answers %d %.300s", what, b.db, b.status, b.body, a.db, a.status, a.body)
		}
	}
}

// wantInputError fails unless err is an *InputError whose detail names its
// parameter.
func wantInputError(t *testing.T, what string, err error) *InputError {
	t.Helper()
	var in *InputError
	if !errors.As(err, &in) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("%s: error %v (%T), want an *InputError", what, err, err)
	}
	if in.Param == "" || in.Reason == "" || !strings.Contains(in.ProblemDetail(), in.Param) && !strings.Contains(in.ProblemDetail(), strconv.Quote(in.Param)) {
		t.Fatalf("%s: detail %q does not name the parameter %q", what, in.ProblemDetail(), in.Param)
	}
	if status, _, dep := problem.For(err); status != http.StatusBadRequest || dep {
		t.Fatalf("%s: answered %d (dependency %v), want 400", what, status, dep)
	}
	return in
}

// isASCII reports whether s is all ASCII.
func isASCII(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r > unicode.MaxASCII })
}

// checkTicker checks an accepted ticker against the input it came from: the
// input upper-cased, ASCII, shaped like a ticker.
func checkTicker(t *testing.T, in, got string) {
	t.Helper()
	if !isASCII(in) || got != strings.ToUpper(in) || !tickerPattern.MatchString(got) {
		t.Fatalf("ticker %q accepted as %q", in, got)
	}
}

func FuzzParseQuery(f *testing.F) {
	dbs := fuzzDBs(f)
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := ParseValues(raw)
		var wantSearch, wantCompanies error
		if err != nil {
			wantInputError(t, "ParseValues", err)
			wantSearch, wantCompanies = err, err
		} else {
			for name, vals := range v {
				if !validText(name) || len(name) > maxParamName || len(vals) == 0 {
					t.Fatalf("ParseValues accepted name %q with %q", name, vals)
				}
				for _, s := range vals {
					if !validText(s) {
						t.Fatalf("ParseValues accepted %s=%q", name, s)
					}
				}
			}
			q, err := ParseQuery(v)
			if err != nil {
				wantInputError(t, "ParseQuery", err)
				wantSearch = err
			} else {
				checkQuery(t, v, q)
			}
			cq, err := parseCompanyQuery(v)
			if err != nil {
				wantInputError(t, "companies q", err)
				wantCompanies = err
			} else if !validText(cq) || len([]rune(cq)) > MaxCompanyQueryLen || cq != strings.TrimSpace(cq) {
				t.Fatalf("companies q %q accepted", cq)
			}
		}
		for _, path := range []string{"/events/search", "/companies"} {
			want := wantSearch
			if path == "/companies" {
				want = wantCompanies
			}
			as := serveAll(dbs, func() *http.Request {
				r := httptest.NewRequest(http.MethodGet, path, nil)
				r.URL.RawQuery = raw
				return r
			}, func(db fuzzDB, w http.ResponseWriter, r *http.Request) { db.h.ServeHTTP(w, r) })
			checkAnswers(t, path+"?"+raw, as, want, false)
		}
	})
}

// checkQuery checks an accepted search against the values it came from.
func checkQuery(t *testing.T, v map[string][]string, q Query) {
	t.Helper()
	get := func(k string) string {
		if vs := v[k]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	for _, term := range q.Terms {
		if term == "" || !validText(term) || term != strings.ToLower(term) || strings.ContainsFunc(term, func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}) {
			t.Fatalf("q %q gave the term %q", get("q"), term)
		}
	}
	if q.Ticker != "" {
		checkTicker(t, get("ticker"), q.Ticker)
	}
	if q.Type != "" && (!slices.Contains(Types(), q.Type) || !isASCII(get("type")) || !strings.EqualFold(q.Type, get("type"))) {
		t.Fatalf("type %q accepted as %q", get("type"), q.Type)
	}
	if q.Limit < 1 || q.Limit > MaxLimit {
		t.Fatalf("limit %q accepted as %d", get("limit"), q.Limit)
	}
	for _, at := range []time.Time{q.From, q.Before} {
		if !at.IsZero() && (at.Year() < 1900 || at.Year() > 3000 || at.Location() != time.UTC) {
			t.Fatalf("from %q, to %q accepted as %v, %v", get("from"), get("to"), q.From, q.Before)
		}
	}
	if !q.From.IsZero() && !q.Before.IsZero() && !q.From.Before(q.Before) {
		t.Fatalf("empty range accepted: %v to %v", q.From, q.Before)
	}
	if q.After != nil && (q.After.ID <= 0 || q.After.String() == "") {
		t.Fatalf("cursor %q accepted as %+v", get("cursor"), q.After)
	}
}

// pathRoutes are the routes with a path variable: the variable, and the handler.
var pathRoutes = []struct {
	param string
	serve func(a *API) http.HandlerFunc
}{
	{"id", func(a *API) http.HandlerFunc { return a.Event }},
	{"event_id", func(a *API) http.HandlerFunc { return a.Impact }},
	{"ticker", func(a *API) http.HandlerFunc { return a.Company }},
}

func FuzzPathVar(f *testing.F) {
	dbs := fuzzDBs(f)
	f.Fuzz(func(t *testing.T, route uint8, value string) {
		rt := pathRoutes[int(route)%len(pathRoutes)]
		var want error
		if rt.param == "ticker" {
			got, err := parseTicker(rt.param, value)
			if err != nil {
				if wantInputError(t, "ticker", err).Param != rt.param {
					t.Fatalf("ticker %q: %v names another parameter", value, err)
				}
				want = err
			} else {
				checkTicker(t, value, got)
			}
		} else {
			id, err := parseEventID(rt.param, value)
			if err != nil {
				if wantInputError(t, rt.param, err).Param != rt.param {
					t.Fatalf("%s %q: %v names another parameter", rt.param, value, err)
				}
				want = err
			} else if id <= 0 || strconv.FormatInt(id, 10) != strings.TrimLeft(value, "0") {
				t.Fatalf("%s %q accepted as %d", rt.param, value, id)
			}
		}
		as := serveAll(dbs, func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			return mux.SetURLVars(r, map[string]string{rt.param: value})
		}, func(db fuzzDB, w http.ResponseWriter, r *http.Request) { rt.serve(db.api)(w, r) })
		checkAnswers(t, rt.param+"="+strconv.Quote(value), as, want, true)
	})
}

func FuzzPortfolioBody(f *testing.F) {
	dbs := fuzzDBs(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		hs, err := ParseHoldings(body)
		if err != nil {
			wantInputError(t, "ParseHoldings", err)
		} else {
			if len(hs) == 0 || len(hs) > MaxHoldings {
				t.Fatalf("%d holdings accepted", len(hs))
			}
			seen := map[string]bool{}
			var sum float64
			for _, h := range hs {
				if !tickerPattern.MatchString(h.Ticker) || seen[h.Ticker] || !(h.Weight > 0 && h.Weight <= 1) || math.IsNaN(h.Weight) {
					t.Fatalf("holding %+v accepted from %q", h, body)
				}
				seen[h.Ticker] = true
				sum += h.Weight
			}
			if sum > 1+1e-9 {
				t.Fatalf("weights adding up to %v accepted", sum)
			}
		}
		as := serveAll(dbs, func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "/portfolio/impact", bytes.NewReader(body))
		}, func(db fuzzDB, w http.ResponseWriter, r *http.Request) { db.h.ServeHTTP(w, r) })
		// A listed-company check happens after parsing: a parsed body may still be
		// refused, by every database alike.
		var want error
		if err != nil {
			want = err
		}
		checkAnswers(t, "portfolio "+strconv.Quote(string(body[:min(len(body), 200)])), as, want, true)
	})
}
