package market

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/problem"
)

// Limits of the HTTP API.
const (
	// PublicFeedSize is how many events GET /events/public lists.
	PublicFeedSize = 50
	// PublicFeedTTL is how long the public feed is served from memory, and its
	// Cache-Control max-age.
	PublicFeedTTL = 120 * time.Second
	// MaxHoldings is the most holdings a portfolio request may list.
	MaxHoldings = 50
	// MaxBodyBytes is the largest accepted request body.
	MaxBodyBytes = 64 << 10
	// MaxCompanyQueryLen is the longest accepted q of GET /companies, in characters.
	MaxCompanyQueryLen = 100
)

// Config holds the API's optional settings. The zero value is ready to use.
type Config struct {
	// Now is the clock: feed cache expiry, impact recency and the portfolio window.
	// Nil means time.Now.
	Now func() time.Time
	// Logger receives the failures the default OnError answers 503. Nil means
	// slog.Default().
	Logger *slog.Logger
	// OnError answers every request a handler cannot serve. err matches (errors.As)
	// an *InputError (a bad parameter or body: 400 with its detail) or a
	// *NotFoundError (an unknown event or company: 404 with its detail), or is a
	// database failure (503, whose text must not reach the client). A failure while
	// the client has gone wraps the request context's error, so it also matches
	// context.Canceled. Nil means tollgate's error table, with database failures
	// logged to Logger unless the client has gone.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// CacheTTL is how long a successful answer of the GET routes is served again
	// from memory to the same request (same path and query string): events and
	// companies do not change once loaded, so repeated lookups and searches need
	// not reach the database. Zero means DefaultCacheTTL; a negative value turns
	// the cache off. Answers depend on nothing but the request (the gate's headers
	// are set around them), so a cached answer is what the handler would write.
	CacheTTL time.Duration
}

// DefaultCacheTTL is the default Config.CacheTTL.
const DefaultCacheTTL = 5 * time.Second

// answerCacheSize bounds the answers the cache holds.
const answerCacheSize = 4096

// API serves the market routes as plain http.HandlerFuncs. Authentication, plans,
// quotas and rate limits are the caller's middleware; every error answer is
// Config.OnError's. Path variables are read from
// gorilla/mux (mux.Vars) or, failing that, from http.Request.PathValue, under the
// names "id" (/events/{id}), "event_id" (/impact/{event_id}) and "ticker"
// (/companies/{ticker}). An API is safe for concurrent use.
type API struct {
	store   *Store
	now     func() time.Time
	log     *slog.Logger
	onError func(w http.ResponseWriter, r *http.Request, err error)
	feed    feedCache
	answers *expirable.LRU[string, []byte] // nil: no cache
}

// feedCache holds the encoded public feed. mu is held during a refresh, so that
// concurrent requests for an expired feed cause a single query.
type feedCache struct {
	mu   sync.Mutex
	body []byte
	etag string
	at   time.Time
}

// NewAPI returns the handlers on db, which Bootstrap (and usually LoadIfEmpty) has
// prepared.
func NewAPI(db *sqlx.DB, cfg Config) *API {
	a := &API{store: NewStore(db), now: cfg.Now, log: cfg.Logger, onError: cfg.OnError}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.onError == nil {
		a.onError = a.writeError
	}
	ttl := cfg.CacheTTL
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	if ttl > 0 {
		a.answers = expirable.NewLRU[string, []byte](answerCacheSize, nil, ttl)
	}
	return a
}

// answerKey is the cache key of r's answer on route: the route, the path
// variables the handler reads (vars, by name) and the raw query, which are all the
// answer depends on.
func answerKey(route string, r *http.Request, vars ...string) string {
	key := route
	for _, v := range vars {
		key += "\x00" + pathVar(r, v)
	}
	return key + "\x00" + r.URL.RawQuery
}

// cachedAnswer writes the cached answer of key, if there is one, and reports
// whether it did.
func (a *API) cachedAnswer(w http.ResponseWriter, key string) bool {
	if a.answers == nil {
		return false
	}
	b, ok := a.answers.Get(key)
	if !ok {
		return false
	}
	writeBody(w, b)
	return true
}

// Store returns the API's data layer.
func (a *API) Store() *Store { return a.store }

// feedBody is the JSON of GET /events/public.
type feedBody struct {
	GeneratedAt time.Time `json:"generated_at"`
	Events      []Event   `json:"events"`
}

// PublicFeed answers GET /events/public: the PublicFeedSize newest events, public
// fields only, built at most once per PublicFeedTTL and sent with
// Cache-Control: public, max-age=120, an Age header and a strong ETag
// (If-None-Match answers 304).
func (a *API) PublicFeed(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.params(w, r); !ok {
		return
	}
	body, etag, at, err := a.publicFeed(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(PublicFeedTTL/time.Second)))
	h.Set("ETag", etag)
	if age := int(a.now().Sub(at) / time.Second); age > 0 {
		h.Set("Age", strconv.Itoa(age))
	}
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

func (a *API) publicFeed(ctx context.Context) (body []byte, etag string, at time.Time, err error) {
	c := &a.feed
	c.mu.Lock()
	defer c.mu.Unlock()
	now := a.now()
	if age := now.Sub(c.at); c.body != nil && age >= 0 && age < PublicFeedTTL {
		return c.body, c.etag, c.at, nil
	}
	// The refresh serves everyone waiting on mu, so one client hanging up must not
	// cancel it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	page, err := a.store.Search(ctx, Query{Limit: PublicFeedSize})
	if err != nil {
		return nil, "", time.Time{}, err
	}
	b, err := json.Marshal(feedBody{GeneratedAt: now.UTC(), Events: page.Events})
	if err != nil {
		return nil, "", time.Time{}, fmt.Errorf("market: encode feed: %w", err)
	}
	sum := sha256.Sum256(b)
	c.body, c.etag, c.at = append(b, '\n'), `"`+hex.EncodeToString(sum[:12])+`"`, now
	return c.body, c.etag, c.at, nil
}

// searchBody is the JSON of GET /events/search. NextCursor is null on the last page.
type searchBody struct {
	Events     []Event `json:"events"`
	NextCursor *string `json:"next_cursor"`
}

// Search answers GET /events/search?q=&ticker=&type=&from=&to=&limit=&cursor=
// (see ParseValues and ParseQuery) with {"events": [...], "next_cursor": "…" or
// null}. Pass next_cursor back as cursor, with the same filters, for the next page.
func (a *API) Search(w http.ResponseWriter, r *http.Request) {
	key := answerKey("search", r)
	if a.cachedAnswer(w, key) {
		return
	}
	v, ok := a.params(w, r)
	if !ok {
		return
	}
	q, err := ParseQuery(v)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page, err := a.store.Search(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := searchBody{Events: page.Events}
	if page.Next != nil {
		s := page.Next.String()
		out.NextCursor = &s
	}
	a.writeJSONKey(w, r, key, out)
}

// Event answers GET /events/{id} with the event's public fields. An id that is not
// a positive integer goes to OnError as an *InputError (400), an unknown one as a
// *NotFoundError (404).
//
// Every handler refuses, as an *InputError naming the parameter, a request whose
// query string (read or not) or path variable does not decode to UTF-8 text
// without NUL bytes (see ParseValues), before anything reaches the database.
func (a *API) Event(w http.ResponseWriter, r *http.Request) {
	key := answerKey("event", r, "id")
	if a.cachedAnswer(w, key) {
		return
	}
	if e, ok := a.event(w, r, "id"); ok {
		a.writeJSONKey(w, r, key, e)
	}
}

// event loads the event named by the path variable param, or reports an
// *InputError or a *NotFoundError to OnError and false.
func (a *API) event(w http.ResponseWriter, r *http.Request, param string) (Event, bool) {
	if _, ok := a.params(w, r); !ok {
		return Event{}, false
	}
	id, err := parseEventID(param, pathVar(r, param))
	if err != nil {
		a.fail(w, r, err)
		return Event{}, false
	}
	e, err := a.store.Event(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		err = &NotFoundError{What: "Event"}
	}
	if err != nil {
		a.fail(w, r, err)
		return Event{}, false
	}
	return e, true
}

// impactBody is the JSON of GET /impact/{event_id}.
type impactBody struct {
	Event Event     `json:"event"`
	AsOf  time.Time `json:"as_of"`
	Impact
}

// Impact answers GET /impact/{event_id} with the event, the instant it was scored at,
// its score and the score's parts (see Score).
func (a *API) Impact(w http.ResponseWriter, r *http.Request) {
	key := answerKey("impact", r, "event_id")
	if a.cachedAnswer(w, key) {
		return
	}
	e, ok := a.event(w, r, "event_id")
	if !ok {
		return
	}
	c, err := a.store.Company(r.Context(), e.Ticker)
	if err != nil && !errors.Is(err, ErrNotFound) {
		a.fail(w, r, err)
		return
	}
	now := a.now().UTC()
	a.writeJSONKey(w, r, key, impactBody{Event: e, AsOf: now, Impact: Score(e, c.MarketCapUSD, now)})
}

// Companies answers GET /companies?q= with {"companies": [...]}: the companies whose
// ticker or name contains q, by ticker; all of them without q.
func (a *API) Companies(w http.ResponseWriter, r *http.Request) {
	key := answerKey("companies", r)
	if a.cachedAnswer(w, key) {
		return
	}
	v, ok := a.params(w, r)
	if !ok {
		return
	}
	q, err := parseCompanyQuery(v)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cs, err := a.store.Companies(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeJSONKey(w, r, key, map[string][]Company{"companies": cs})
}

// Company answers GET /companies/{ticker}. A malformed ticker goes to OnError as an
// *InputError (400), one not listed as a *NotFoundError (404).
func (a *API) Company(w http.ResponseWriter, r *http.Request) {
	key := answerKey("company", r, "ticker")
	if a.cachedAnswer(w, key) {
		return
	}
	if _, ok := a.params(w, r); !ok {
		return
	}
	t, err := parseTicker("ticker", pathVar(r, "ticker"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	c, err := a.store.Company(r.Context(), t)
	if errors.Is(err, ErrNotFound) {
		err = &NotFoundError{What: "Company"}
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeJSONKey(w, r, key, c)
}

// PortfolioImpact answers POST /portfolio/impact. The body is
// {"holdings":[{"ticker":"AAPL","weight":0.5}, …]}: 1 to MaxHoldings listed tickers,
// each once, weights in (0, 1] adding up to at most 1, at most MaxBodyBytes. The
// answer is a PortfolioResult over the PortfolioWindow ending now.
func (a *API) PortfolioImpact(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.params(w, r); !ok {
		return
	}
	holdings, err := readHoldings(w, r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	tickers := make([]string, len(holdings))
	for i, h := range holdings {
		tickers[i] = h.Ticker
	}
	companies, err := a.store.CompaniesByTicker(r.Context(), tickers)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for i, h := range holdings {
		if _, ok := companies[h.Ticker]; !ok {
			a.fail(w, r, badField(fmt.Sprintf("holdings[%d].ticker", i), fmt.Sprintf("%s is not a listed company", h.Ticker)))
			return
		}
	}
	now := a.now().UTC()
	evs, err := a.store.Recent(r.Context(), tickers, now.Add(-PortfolioWindow), now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeJSON(w, r, PortfolioImpact(holdings, companies, evs, now))
}

func badField(field, reason string) error {
	return &InputError{Param: field, Reason: reason, where: "body field"}
}

// readHoldings reads and checks a portfolio body (ParseHoldings).
func readHoldings(w http.ResponseWriter, r *http.Request) ([]Holding, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		return nil, bodyError(err)
	}
	return ParseHoldings(b)
}

// ParseHoldings decodes and checks a portfolio body, as POST /portfolio/impact
// does, upper-casing tickers. Every refusal is an *InputError naming the request
// body or the field: a body over MaxBodyBytes, one that is not UTF-8 (encoding/json
// would quietly replace the bytes), not a single JSON object, or with an unknown
// field; a string that is not UTF-8 text without NUL bytes; 0 or more than
// MaxHoldings holdings, a malformed or repeated ticker, a weight outside (0, 1] or
// weights adding up to more than 1.
func ParseHoldings(b []byte) ([]Holding, error) {
	if len(b) > MaxBodyBytes {
		return nil, bodyError(&http.MaxBytesError{Limit: MaxBodyBytes})
	}
	if !utf8.Valid(b) {
		return nil, &InputError{Param: "request body", Reason: fmt.Sprintf("is not UTF-8 (at byte %d)", invalidUTF8At(b)+1), where: "request"}
	}
	var body struct {
		Holdings []Holding `json:"holdings"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return nil, bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, bodyError(err)
		}
		return nil, &InputError{Param: "request body", Reason: "must hold one JSON object and nothing after it", where: "request"}
	}
	n := len(body.Holdings)
	if n == 0 || n > MaxHoldings {
		return nil, badField("holdings", fmt.Sprintf("must list 1 to %d holdings", MaxHoldings))
	}
	seen := make(map[string]bool, n)
	var sum float64
	for i, h := range body.Holdings {
		field := fmt.Sprintf("holdings[%d].ticker", i)
		if !validText(h.Ticker) {
			return nil, badField(field, textReason)
		}
		t, ok := normTicker(h.Ticker)
		if !ok {
			return nil, badField(field, tickerReason)
		}
		if seen[t] {
			return nil, badField(field, t+" is listed twice")
		}
		seen[t] = true
		if !(h.Weight > 0 && h.Weight <= 1) {
			return nil, badField(fmt.Sprintf("holdings[%d].weight", i), "must be greater than 0 and at most 1")
		}
		sum += h.Weight
		body.Holdings[i].Ticker = t
	}
	if sum > 1+1e-9 {
		return nil, badField("holdings", "weights must add up to at most 1")
	}
	return body.Holdings, nil
}

// bodyError turns a JSON decoding error into an InputError.
func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	reason := "must be a JSON object such as {\"holdings\":[{\"ticker\":\"AAPL\",\"weight\":0.5}]}"
	switch {
	case errors.As(err, &tooBig):
		reason = fmt.Sprintf("must be at most %d bytes", MaxBodyBytes)
	case errors.As(err, &syntax):
		reason = fmt.Sprintf("is not valid JSON (at byte %d)", syntax.Offset)
	case errors.As(err, &typ) && typ.Field != "":
		return badField(typ.Field, "must be a JSON "+jsonKind(typ.Type.Kind()))
	case errors.Is(err, io.EOF):
		reason = "is empty; " + reason
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// The name is the client's: shown only when it is short and plain.
		reason = "has an unknown field"
		if name := strings.TrimPrefix(err.Error(), "json: unknown field "); plainName.MatchString(name) {
			reason += " " + name
		}
	}
	return &InputError{Param: "request body", Reason: reason, where: "request"}
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Float64, reflect.Int, reflect.Int64:
		return "number"
	case reflect.Slice:
		return "array"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return k.String()
}

// plainName is an unknown body field's name as bodyError may quote it.
var plainName = regexp.MustCompile(`^"[A-Za-z0-9_]{1,32}"$`)

// invalidUTF8At returns the offset of the first byte of b that is not UTF-8; the
// detail counts from 1, as a JSON syntax error's does.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// params decodes the query string (ParseValues), or reports its *InputError to
// OnError and false. Every handler calls it, so no route lets text that is not
// UTF-8 without NUL reach it, whether it reads its parameters or not.
func (a *API) params(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	v, err := ParseValues(r.URL.RawQuery)
	if err != nil {
		a.fail(w, r, err)
		return nil, false
	}
	return v, true
}

// pathVar reads a path variable set by gorilla/mux, or by http.ServeMux.
func pathVar(r *http.Request, name string) string {
	if v, ok := mux.Vars(r)[name]; ok {
		return v
	}
	return r.PathValue(name)
}

// fail reports err to OnError. A failure of a request whose client has gone wraps
// the request context's error, so that OnError can tell it from a broken database.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if ctxErr := r.Context().Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	a.onError(w, r, err)
}

// writeError is the default OnError: the problem answer of the error table (400
// with an *InputError's detail, 404 with a *NotFoundError's, 503 for a failed
// database), with failures logged unless the client has gone.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if _, _, dependency := problem.For(err); dependency && r.Context().Err() == nil {
		a.log.ErrorContext(r.Context(), "market: request failed", "path", r.URL.Path, "err", err)
	}
	problem.WriteError(w, err)
}

// writeJSON answers 200 with v. Gated answers vary by key (quota headers), so no
// shared cache may keep them.
func (a *API) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	a.writeJSONKey(w, r, "", v)
}

// writeJSONKey is writeJSON that also caches the answer under key ("": not).
func (a *API) writeJSONKey(w http.ResponseWriter, r *http.Request, key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		a.fail(w, r, fmt.Errorf("market: encode response: %w", err))
		return
	}
	b = append(b, '\n')
	if key != "" && a.answers != nil {
		a.answers.Add(key, b)
	}
	writeBody(w, b)
}

// writeBody answers 200 with the JSON body b.
func writeBody(w http.ResponseWriter, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonType
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h["Cache-Control"] = noStore
	_, _ = w.Write(b)
}

// The constant header values of writeBody, shared by every answer rather than
// allocated for each (a slice of length and capacity 1: Header.Add appends to a
// copy, Header.Set replaces it).
var (
	jsonType = []string{"application/json"}
	noStore  = []string{"no-store"}
)
