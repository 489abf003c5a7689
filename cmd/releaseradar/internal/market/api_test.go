package market

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// router wires the handlers the way cmd/releaseradar does, on gorilla/mux.
func router(a *API) http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/events/public", a.PublicFeed).Methods(http.MethodGet)
	r.HandleFunc("/events/search", a.Search).Methods(http.MethodGet)
	r.HandleFunc("/events/{id}", a.Event).Methods(http.MethodGet)
	r.HandleFunc("/impact/{event_id}", a.Impact).Methods(http.MethodGet)
	r.HandleFunc("/companies", a.Companies).Methods(http.MethodGet)
	r.HandleFunc("/companies/{ticker}", a.Company).Methods(http.MethodGet)
	r.HandleFunc("/portfolio/impact", a.PortfolioImpact).Methods(http.MethodPost)
	return r
}

func do(t *testing.T, h http.Handler, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, rec.Body)
	}
	return v
}

// internalMarkers are the internal field names, tell-tales of their values, and
// every analyst note of the data set; no response may contain any of them.
func internalMarkers(t *testing.T) []string {
	markers := []string{"ingest_id", "raw_source_url", "analyst_notes", "internal_confidence", "ing_", "releaseradar.internal"}
	for _, r := range mustDataset(t).events {
		if !slices.Contains(markers, r.AnalystNotes) {
			markers = append(markers, r.AnalystNotes)
		}
	}
	return markers
}

func noInternal(t *testing.T, what string, body []byte) {
	t.Helper()
	for _, m := range internalMarkers(t) {
		if bytes.Contains(body, []byte(m)) {
			t.Errorf("%s: body contains internal marker %q", what, m)
		}
	}
}

func TestAPI(t *testing.T) {
	loadedDBs(t, func(t *testing.T, db *sqlx.DB) {
		now := dataEnd
		api := NewAPI(db, Config{Now: func() time.Time { return now }})
		h := router(api)
		ds := mustDataset(t)

		t.Run("public feed", func(t *testing.T) {
			rec := do(t, h, "GET", "/events/public", "")
			body := decode[feedBody](t, rec)
			if got := rec.Header().Get("Cache-Control"); got != "public, max-age=120" {
				t.Errorf("Cache-Control = %q", got)
			}
			want := wantIDs(t, func(record) bool { return true })[:PublicFeedSize]
			if got := ids(body.Events); !slices.Equal(got, want) {
				t.Errorf("feed ids %v, want the 50 newest %v", got, want)
			}
			for i := 1; i < len(body.Events); i++ {
				if body.Events[i].OccurredAt.After(body.Events[i-1].OccurredAt) {
					t.Errorf("feed not newest first at %d", i)
				}
			}
			noInternal(t, "public feed", rec.Body.Bytes())
			etag := rec.Header().Get("ETag")
			if rec := do(t, h, "GET", "/events/public", "", "If-None-Match", etag); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
				t.Errorf("If-None-Match: status %d, %d bytes; want 304, empty", rec.Code, rec.Body.Len())
			}
		})

		t.Run("search follows next_cursor", func(t *testing.T) {
			var got []int64
			target := "/events/search?type=earnings&limit=33"
			for range 100 {
				body := decode[searchBody](t, do(t, h, "GET", target, ""))
				got = append(got, ids(body.Events)...)
				if body.NextCursor == nil {
					break
				}
				target = "/events/search?type=earnings&limit=33&cursor=" + url.QueryEscape(*body.NextCursor)
			}
			want := wantIDs(t, func(r record) bool { return r.Type == TypeEarnings })
			if !slices.Equal(got, want) {
				t.Errorf("paged ids (%d) differ from the data set's earnings (%d)", len(got), len(want))
			}
			rec := do(t, h, "GET", "/events/search?q=obesity&limit=100", "")
			if raw := rec.Body.String(); !strings.Contains(raw, `"next_cursor":null`) {
				t.Errorf("last page must carry next_cursor null: %.200s", raw)
			}
			noInternal(t, "search", rec.Body.Bytes())
			if n := len(decode[searchBody](t, do(t, h, "GET", "/events/search", "")).Events); n != DefaultLimit {
				t.Errorf("no limit gave %d events, want %d", n, DefaultLimit)
			}
		})

		t.Run("event", func(t *testing.T) {
			r := ds.events[123]
			rec := do(t, h, "GET", "/events/"+strconv.FormatInt(r.ID, 10), "")
			got := decode[Event](t, rec)
			if !reflect.DeepEqual(got, r.Event) {
				t.Errorf("GET /events/%d = %+v, want %+v", r.ID, got, r.Event)
			}
			noInternal(t, "event", rec.Body.Bytes())
		})

		t.Run("impact", func(t *testing.T) {
			r := ds.events[len(ds.events)-3]
			rec := do(t, h, "GET", "/impact/"+strconv.FormatInt(r.ID, 10), "")
			got := decode[impactBody](t, rec)
			var capUSD int64
			for _, c := range ds.companies {
				if c.Ticker == r.Ticker {
					capUSD = c.MarketCapUSD
				}
			}
			want := impactBody{Event: r.Event, AsOf: now, Impact: Score(r.Event, capUSD, now)}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GET /impact/%d =\n %+v, want\n %+v", r.ID, got, want)
			}
			p := got.Parts
			if got.Score != round(100*p.TypeWeight*p.Surprise*p.Recency*p.Size, 4) || p.Recency >= 1 || p.Recency <= 0.5 {
				t.Errorf("score %v does not follow from parts %+v", got.Score, p)
			}
			noInternal(t, "impact", rec.Body.Bytes())
		})

		t.Run("companies", func(t *testing.T) {
			list := decode[map[string][]Company](t, do(t, h, "GET", "/companies", ""))["companies"]
			if len(list) != len(ds.companies) {
				t.Errorf("GET /companies lists %d, want %d", len(list), len(ds.companies))
			}
			list = decode[map[string][]Company](t, do(t, h, "GET", "/companies?q=Micro", ""))["companies"]
			if got := tickers(list); !slices.Equal(got, []string{"AMD", "MSFT"}) {
				t.Errorf("GET /companies?q=Micro = %v", got)
			}
			c := decode[Company](t, do(t, h, "GET", "/companies/brk.b", ""))
			if c.Ticker != "BRK.B" || c.MarketCapUSD != 1050e9 {
				t.Errorf("GET /companies/brk.b = %+v", c)
			}
		})

		t.Run("portfolio", func(t *testing.T) {
			rec := do(t, h, "POST", "/portfolio/impact", `{"holdings":[{"ticker":"aapl","weight":0.5},{"ticker":"PLUG","weight":0.3},{"ticker":"BRK.B","weight":0.2}]}`)
			got := decode[PortfolioResult](t, rec)
			// The expected value is computed from the embedded data set in Go, not
			// from the database: the two paths must agree.
			companies := map[string]Company{}
			for _, c := range ds.companies {
				companies[c.Ticker] = c
			}
			var evs []Event
			for _, id := range wantIDs(t, func(record) bool { return true }) {
				evs = append(evs, ds.events[id-1].Event)
			}
			want := PortfolioImpact([]Holding{{"AAPL", 0.5}, {"PLUG", 0.3}, {"BRK.B", 0.2}}, companies, evs, now)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("portfolio =\n %+v\nwant\n %+v", got, want)
			}
			n := 0
			var total float64
			for _, hi := range got.Holdings {
				n += len(hi.Events)
				total += hi.Contribution
			}
			if n == 0 || got.Total != round(total, 4) || got.WindowDays != 90 {
				t.Errorf("portfolio has %d events, total %v (sum %v), window %d", n, got.Total, total, got.WindowDays)
			}
			noInternal(t, "portfolio", rec.Body.Bytes())
		})

		t.Run("not found", func(t *testing.T) {
			for target, detail := range map[string]string{
				"/events/99999999":  "Event not found",
				"/impact/99999999":  "Event not found",
				"/companies/ZZZZ":   "Company not found",
				"/companies/BRK.AA": "Company not found",
			} {
				rec := do(t, h, "GET", target, "")
				checkProblem(t, target, rec, http.StatusNotFound, detail)
			}
		})

		t.Run("bad input", func(t *testing.T) {
			big := `{"holdings":[` + strings.Repeat(" ", MaxBodyBytes) + `]}`
			many := make([]string, MaxHoldings+1)
			for i := range many {
				many[i] = `{"ticker":"T` + strconv.Itoa(i) + `","weight":0.01}`
			}
			tests := []struct{ method, target, body, detail string }{
				{"GET", "/events/search?limit=abc", "", `"limit"`},
				{"GET", "/events/search?limit=0", "", `"limit"`},
				{"GET", "/events/search?limit=100000", "", `"limit"`},
				{"GET", "/events/search?from=notadate", "", `"from"`},
				{"GET", "/events/search?to=2026-02-30", "", `"to"`},
				{"GET", "/events/search?from=2026-05-02&to=2026-05-01", "", `"from"`},
				{"GET", "/events/search?ticker=%3Cscript%3Ealert(1)%3C/script%3E", "", `"ticker"`},
				{"GET", "/events/search?type=ipo", "", `"type"`},
				{"GET", "/events/search?q=" + strings.Repeat("x", 201), "", `"q"`},
				{"GET", "/events/search?cursor=nonsense", "", `"cursor"`},
				{"GET", "/events/search?pad=" + strings.Repeat("x", maxRawQuery), "", `query string:`},
				{"GET", "/events/abc", "", `"id"`},
				{"GET", "/events/0", "", `"id"`},
				{"GET", "/events/-5", "", `"id"`},
				{"GET", "/events/+5", "", `"id"`},
				{"GET", "/events/99999999999999999999", "", `"id"`},
				{"GET", "/impact/1e3", "", `"event_id"`},
				{"GET", "/companies?q=" + strings.Repeat("x", MaxCompanyQueryLen+1), "", `"q"`},
				{"GET", "/companies/%3Cb%3E", "", `"ticker"`},
				{"POST", "/portfolio/impact", ``, `request body:`},
				{"POST", "/portfolio/impact", `{"holdings":`, `request body:`},
				{"POST", "/portfolio/impact", `not json`, `request body:`},
				{"POST", "/portfolio/impact", `[]`, `request body:`},
				{"POST", "/portfolio/impact", `{}`, `"holdings"`},
				{"POST", "/portfolio/impact", `{"holdings":[]}`, `"holdings"`},
				{"POST", "/portfolio/impact", `{"holdings":[` + strings.Join(many, ",") + `]}`, `"holdings"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0}]}`, `"holdings[0].weight"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL"}]}`, `"holdings[0].weight"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0.5},{"ticker":"MSFT","weight":1.5}]}`, `"holdings[1].weight"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":-0.1}]}`, `"holdings[0].weight"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":"half"}]}`, `"holdings.weight"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0.6},{"ticker":"MSFT","weight":0.6}]}`, `"holdings"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"<b>","weight":0.5}]}`, `"holdings[0].ticker"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0.2},{"ticker":"aapl","weight":0.2}]}`, `"holdings[1].ticker"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0.2},{"ticker":"ZZZZ","weight":0.2}]}`, `"holdings[1].ticker"`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0.2}],"leverage":3}`, `request body:`},
				{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0.2}]} {}`, `request body:`},
				{"POST", "/portfolio/impact", big, `request body:`},
			}
			for _, tt := range tests {
				rec := do(t, h, tt.method, tt.target, tt.body)
				checkProblem(t, tt.method+" "+tt.target[:min(len(tt.target), 60)]+" "+tt.body[:min(len(tt.body), 60)], rec, http.StatusBadRequest, tt.detail)
			}
		})

		t.Run("http.ServeMux path values", func(t *testing.T) {
			m := http.NewServeMux()
			m.HandleFunc("GET /events/{id}", api.Event)
			m.HandleFunc("GET /companies/{ticker}", api.Company)
			if got := decode[Event](t, do(t, m, "GET", "/events/7", "")); got.ID != 7 {
				t.Errorf("ServeMux: event %d, want 7", got.ID)
			}
			checkProblem(t, "ServeMux bad ticker", do(t, m, "GET", "/companies/%3Cb%3E", ""), http.StatusBadRequest, `"ticker"`)
		})
	})
}

func checkProblem(t *testing.T, what string, rec *httptest.ResponseRecorder, status int, detail string) {
	t.Helper()
	if rec.Code != status {
		t.Errorf("%s: status %d, want %d: %s", what, rec.Code, status, rec.Body)
		return
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	var p problem.Details
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != status {
		t.Errorf("%s: body %s (%v)", what, rec.Body, err)
	}
	if !strings.Contains(p.Detail, detail) {
		t.Errorf("%s: detail %q, want it to contain %s", what, p.Detail, detail)
	}
}

// TestPublicFeedCache checks that the feed is served from memory for 120 s by the
// injected clock, then rebuilt, and that concurrent readers see one consistent body.
func TestPublicFeedCache(t *testing.T) {
	loadedDBs(t, func(t *testing.T, db *sqlx.DB) {
		clk := testenv.NewClock(dataEnd)
		h := router(NewAPI(db, Config{Now: clk.Now}))
		first := do(t, h, "GET", "/events/public", "")
		before := decode[feedBody](t, first)
		if first.Header().Get("Age") != "" {
			t.Errorf("fresh feed has Age %q", first.Header().Get("Age"))
		}

		// A newer event arrives in the database.
		newest := before.Events[0]
		if _, err := db.Exec(db.Rebind(`INSERT INTO market_events (id, ticker, type, title, summary, occurred_at, surprise, surprise_kind, source)
VALUES (?, 'AAPL', 'filing', 'Apple files 8-K', 'A fresh event that the cache must hide for 120 s.', ?, 0, 'sentiment', 'SEC EDGAR')`),
			100000, sqldb.T(newest.OccurredAt.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}

		clk.Set(dataEnd.Add(PublicFeedTTL - time.Second))
		var wg sync.WaitGroup
		bodies := make([]string, 8)
		for i := range bodies {
			wg.Go(func() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", "/events/public", nil))
				bodies[i] = rec.Body.String()
			})
		}
		wg.Wait()
		for i, b := range bodies {
			if b != first.Body.String() {
				t.Fatalf("reader %d at 119 s got a different body", i)
			}
		}
		if rec := do(t, h, "GET", "/events/public", ""); rec.Header().Get("Age") != "119" {
			t.Errorf("Age = %q at 119 s", rec.Header().Get("Age"))
		}

		clk.Set(dataEnd.Add(PublicFeedTTL))
		after := decode[feedBody](t, do(t, h, "GET", "/events/public", ""))
		if after.Events[0].ID != 100000 || len(after.Events) != PublicFeedSize {
			t.Errorf("at 120 s the feed starts with %d (%d events), want the new event 100000", after.Events[0].ID, len(after.Events))
		}
		if !after.GeneratedAt.Equal(dataEnd.Add(PublicFeedTTL)) {
			t.Errorf("generated_at = %v", after.GeneratedAt)
		}
		// The refreshed body, not the first, is served next.
		if again := decode[feedBody](t, do(t, h, "GET", "/events/public", "")); again.Events[0].ID != 100000 {
			t.Error("the refreshed feed was not cached")
		}
	})
}

// TestFeedRefreshSurvivesCallerCancel: a client hanging up must not poison the shared
// refresh.
func TestFeedRefreshSurvivesCallerCancel(t *testing.T) {
	db := loadedSQLite(t)
	a := NewAPI(db, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, _, err := a.publicFeed(ctx); err != nil {
		t.Fatalf("refresh with a cancelled caller context: %v", err)
	}
}

// TestOnError checks that every refusal and failure reaches a caller's OnError as a
// typed error (and nothing is written by the API itself), and that the default
// writer answers a database failure 503 with Retry-After and without its text,
// logged only while the client is still there.
func TestOnError(t *testing.T) {
	t.Parallel()
	db := loadedSQLite(t)
	var got error
	h := router(NewAPI(db, Config{OnError: func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		w.WriteHeader(http.StatusTeapot)
	}}))

	type check func(t *testing.T, err error)
	input := func(param string) check {
		return func(t *testing.T, err error) {
			var in *InputError
			if !errors.As(err, &in) || in.Param != param || !errors.Is(err, ErrInvalid) {
				t.Errorf("err %v (%T), want an *InputError for %q", err, err, param)
			}
		}
	}
	notFound := func(what, detail string) check {
		return func(t *testing.T, err error) {
			var nf *NotFoundError
			if !errors.As(err, &nf) || nf.What != what || nf.ProblemDetail() != detail || !errors.Is(err, ErrNotFound) {
				t.Errorf("err %v (%T), want a *NotFoundError with detail %q", err, err, detail)
			}
		}
	}
	tests := []struct {
		method, target, body string
		want                 check
	}{
		{"GET", "/events/search?limit=0", "", input("limit")},
		{"GET", "/events/search?pad=" + strings.Repeat("x", maxRawQuery), "", input("query string")},
		{"GET", "/events/abc", "", input("id")},
		{"GET", "/impact/0", "", input("event_id")},
		{"GET", "/companies/%3Cb%3E", "", input("ticker")},
		{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"ZZZZ","weight":0.2}]}`, input("holdings[0].ticker")},
		{"POST", "/portfolio/impact", `not json`, input("request body")},
		{"GET", "/events/99999999", "", notFound("Event", "Event not found")},
		{"GET", "/impact/99999999", "", notFound("Event", "Event not found")},
		{"GET", "/companies/ZZZZ", "", notFound("Company", "Company not found")},
	}
	for _, tt := range tests {
		got = nil
		rec := do(t, h, tt.method, tt.target, tt.body)
		if rec.Code != http.StatusTeapot || rec.Body.Len() != 0 {
			t.Errorf("%s %.40s: status %d, %d bytes; the API answered itself", tt.method, tt.target, rec.Code, rec.Body.Len())
		}
		tt.want(t, got)
	}

	// A broken database: OnError gets the store's error, the default writer a 503.
	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	broken := loadedSQLite(t)
	custom := router(NewAPI(broken, Config{OnError: func(w http.ResponseWriter, r *http.Request, err error) { got = err }}))
	byDefault := router(NewAPI(broken, Config{Logger: logger}))
	if err := broken.Close(); err != nil {
		t.Fatal(err)
	}
	got = nil
	do(t, custom, "GET", "/events/7", "")
	var in *InputError
	var nf *NotFoundError
	if got == nil || errors.As(got, &in) || errors.As(got, &nf) || errors.Is(got, ErrNotFound) {
		t.Errorf("database failure reported as %v (%T)", got, got)
	}
	rec := do(t, byDefault, "GET", "/events/7", "")
	checkProblem(t, "closed database", rec, http.StatusServiceUnavailable, "Service temporarily unavailable")
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if strings.Contains(rec.Body.String(), "sql") || !strings.Contains(logged.String(), "market: request failed") {
		t.Errorf("body %s, log %q: want a bare 503, logged", rec.Body, logged.String())
	}

	// The same failure after the client has gone wraps context.Canceled and is not
	// logged.
	logged.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got = nil
	custom.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/events/7", nil).WithContext(ctx))
	if !errors.Is(got, context.Canceled) {
		t.Errorf("failure of a canceled request: %v, want it to match context.Canceled", got)
	}
	rec = httptest.NewRecorder()
	byDefault.ServeHTTP(rec, httptest.NewRequest("GET", "/events/7", nil).WithContext(ctx))
	if rec.Code != http.StatusServiceUnavailable || logged.Len() != 0 {
		t.Errorf("canceled request: status %d, log %q; want 503, nothing logged", rec.Code, logged.String())
	}
}

// TestTextInput: text that is not UTF-8, or holds a NUL byte, is refused with a
// 400 naming its parameter before it reaches the database, with the same answer on
// SQLite and PostgreSQL (a NUL in the companies q listed every company on SQLite
// and failed on PostgreSQL); so are query strings url.ParseQuery would have
// quietly cut, and letters that only Unicode case mapping turns into ASCII.
func TestTextInput(t *testing.T) {
	text := func(param string) string {
		return `Invalid parameter "` + param + `": must be UTF-8 text without NUL bytes`
	}
	form := "Invalid query string: must be name=value pairs of URL-encoded UTF-8 text without NUL bytes, separated by &"
	escape := func(param string) string {
		return `Invalid parameter "` + param + `": must be URL-encoded, each % followed by two hex digits, with no ';'`
	}
	tests := []struct{ method, target, body, detail string }{
		{"GET", "/companies?q=%00", "", text("q")},
		{"GET", "/companies?q=Apple%00", "", text("q")},
		{"GET", "/companies?q=%FF", "", text("q")},
		{"GET", "/companies?q=%C0%80", "", text("q")},
		{"GET", "/companies?q=%ED%A0%80", "", text("q")},
		{"GET", "/companies?q=%zz", "", escape("q")},
		{"GET", "/companies?q=a;b", "", escape("q")},
		{"GET", "/events/search?q=apple%00drug", "", text("q")},
		{"GET", "/events/search?ticker=AAPL%00", "", text("ticker")},
		{"GET", "/events/search?type=earnings%00", "", text("type")},
		{"GET", "/events/search?from=2026-01-01%00", "", text("from")},
		{"GET", "/events/search?cursor=%FF", "", text("cursor")},
		{"GET", "/events/search?pad=%00", "", text("pad")},
		{"GET", "/events/search?q%00=apple", "", form},
		{"GET", "/events/search?%zz=1", "", form},
		{"GET", "/events/search?=%0", "", form},
		{"GET", "/companies?=%00", "", form},
		{"GET", "/events/search?" + strings.Repeat("n", maxParamName+1) + "=1", "", form},
		{"GET", "/events/search?type=EARN%C4%B0NGS", "", `Invalid parameter "type": must be one of earnings, guidance, product_launch, regulatory, m_and_a, filing`},
		{"GET", "/events/search?ticker=%C4%B1bm", "", `Invalid parameter "ticker": must be a ticker symbol such as AAPL or BRK.B`},
		{"GET", "/events/public?x=%00", "", text("x")},
		{"GET", "/events/7?x=%FF", "", text("x")},
		{"GET", "/events/%00", "", text("id")},
		{"GET", "/impact/7%FF", "", text("event_id")},
		{"GET", "/companies/A%00", "", text("ticker")},
		{"GET", "/companies/%C4%B1bm", "", `Invalid parameter "ticker": must be a ticker symbol such as AAPL or BRK.B`},
		{"POST", "/portfolio/impact?x=%00", `{"holdings":[{"ticker":"AAPL","weight":0.5}]}`, text("x")},
		{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL\u0000","weight":0.5}]}`, `Invalid body field "holdings[0].ticker": must be UTF-8 text without NUL bytes`},
		{"POST", "/portfolio/impact", "{\"holdings\":[{\"ticker\":\"\xffAAPL\",\"weight\":0.5}]}", `Invalid request body: is not UTF-8 (at byte 25)`},
		{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0.5}],"x\u0000` + strings.Repeat("y", 100) + `":1}`, `Invalid request body: has an unknown field`},
		{"POST", "/portfolio/impact", `{"holdings":[{"ticker":"AAPL","weight":0.5}],"leverage":3}`, `Invalid request body: has an unknown field "leverage"`},
	}
	bodies := map[string][]string{}
	loadedDBs(t, func(t *testing.T, db *sqlx.DB) {
		h := router(NewAPI(db, Config{Now: func() time.Time { return dataEnd }}))
		for _, tt := range tests {
			rec := do(t, h, tt.method, tt.target, tt.body)
			name := tt.method + " " + tt.target + " " + tt.body[:min(len(tt.body), 40)]
			checkProblem(t, name, rec, http.StatusBadRequest, tt.detail)
			exact := httptest.NewRecorder()
			problem.Write(exact, http.StatusBadRequest, tt.detail)
			if !bytes.Equal(rec.Body.Bytes(), exact.Body.Bytes()) {
				t.Errorf("%s: %s, want detail %q exactly", name, rec.Body, tt.detail)
			}
			bodies[name] = append(bodies[name], rec.Body.String())
		}
		// The store refuses such text too, whoever calls it.
		ctx := context.Background()
		s := NewStore(db)
		_, err1 := s.Companies(ctx, "\x00")
		_, err2 := s.Company(ctx, "A\xff")
		_, err3 := s.Search(ctx, Query{Terms: []string{"a\x00"}})
		_, err4 := s.CompaniesByTicker(ctx, []string{"AAPL", "\x00"})
		_, err5 := s.Recent(ctx, []string{"\x00"}, dataEnd.Add(-time.Hour), dataEnd)
		for i, err := range []error{err1, err2, err3, err4, err5} {
			var in *InputError
			if !errors.As(err, &in) || in.Reason != textReason {
				t.Errorf("store call %d: %v, want an *InputError", i+1, err)
			}
		}
	})
	for name, bs := range bodies {
		if len(bs) == 2 && bs[0] != bs[1] {
			t.Errorf("%s: SQLite answers %s, PostgreSQL %s", name, bs[0], bs[1])
		}
	}
}
