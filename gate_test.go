package tollgate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	akmem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	entmem "github.com/releaseradar/tollgate/entitlement/memstore"
	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/quota"
	qmem "github.com/releaseradar/tollgate/quota/memstore"
	"github.com/releaseradar/tollgate/ratelimit"
	rlmem "github.com/releaseradar/tollgate/ratelimit/memstore"
)

// testPlans are the plans of these tests: "free" is the anonymous plan.
func testPlans() entitlement.Catalog {
	return entitlement.Catalog{
		"free":   {Name: "free", Rank: 0, Rate: "5-M"},
		"silver": {Name: "silver", Rank: 1, MonthlyCallLimit: 3, Rate: "100-M"},
		"gold":   {Name: "gold", Rank: 2, MonthlyCallLimit: 1000, Rate: "4-M"},
	}
}

// flakyKeys and flakyQuotas fail every call while down is set.
type flakyKeys struct {
	apikey.Store
	down atomic.Bool
}

var errDown = errors.New("connection refused (secret dsn=postgres://u:hunter2@db)")

// Watch passes the wrapped store's change feed on, so the gate's key cache hears
// of revocations.
func (f *flakyKeys) Watch(fn func(hashes []string)) (stop func()) {
	return f.Store.(apikey.Changes).Watch(fn)
}

func (f *flakyKeys) ByHash(ctx context.Context, hash string) (apikey.Key, error) {
	if f.down.Load() {
		return apikey.Key{}, errDown
	}
	return f.Store.ByHash(ctx, hash)
}

type flakyQuotas struct {
	quota.Store
	down     atomic.Bool
	missing  atomic.Bool // Reserve answers quota.ErrNotFound: the key's quota is gone
	released atomic.Int64
}

func (f *flakyQuotas) Reserve(ctx context.Context, id string, n int64, now time.Time) (int64, quota.Usage, error) {
	if f.down.Load() {
		return 0, quota.Usage{}, errDown
	}
	if f.missing.Load() {
		return 0, quota.Usage{}, quota.ErrNotFound
	}
	return f.Store.Reserve(ctx, id, n, now)
}

func (f *flakyQuotas) Release(ctx context.Context, id string, n int64, start time.Time) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	f.released.Add(n)
	return f.Store.Release(ctx, id, n, start)
}

type flakyCounters struct {
	ratelimit.Store
	down atomic.Bool
}

func (f *flakyCounters) Take(ctx context.Context, bucket string, n int64, rate ratelimit.Rate) (ratelimit.Window, error) {
	if f.down.Load() {
		return ratelimit.Window{}, errDown
	}
	return f.Store.Take(ctx, bucket, n, rate)
}

type fixture struct {
	gate     *tollgate.Gate
	keys     *flakyKeys
	quotas   *flakyQuotas
	counters *flakyCounters
	clock    *testenv.Clock // the gate's (Config.Now), unless the test set its own
}

func newFixture(t *testing.T, cfg tollgate.Config) *fixture {
	t.Helper()
	f := &fixture{
		keys:     &flakyKeys{Store: akmem.New()},
		quotas:   &flakyQuotas{Store: qmem.New(qmem.Config{})},
		counters: &flakyCounters{Store: rlmem.New()},
		clock:    testenv.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)),
	}
	if cfg.Now == nil {
		cfg.Now = f.clock.Now
	}
	g, err := tollgate.New(tollgate.Stores{Keys: f.keys, Quotas: f.quotas, Counters: f.counters}, testPlans(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.gate = g
	return f
}

// newFixtureOnError is newFixture with a Config.OnError that keeps the last
// error it was given (read it once the request is answered) and answers it as
// the default does.
func newFixtureOnError(t *testing.T) (*fixture, *error) {
	t.Helper()
	var got error
	f := newFixture(t, tollgate.Config{OnError: func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		tollgate.WriteError(w, r, err)
	}})
	return f, &got
}

func (f *fixture) issue(t *testing.T, user, plan string, limit int64) string {
	t.Helper()
	raw, _, err := f.gate.Issue(context.Background(), user, plan, limit, "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type answer struct {
	status int
	header http.Header
	detail string
	body   string
}

func call(h http.Handler, key string, opts ...func(*http.Request)) answer {
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.RemoteAddr = "192.0.2.7:4000"
	if key != "" {
		r.Header.Set("x-api-key", key)
	}
	for _, o := range opts {
		o(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var p struct{ Detail string }
	if strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(w.Body.Bytes(), &p)
	}
	return answer{status: w.Code, header: w.Header(), detail: p.Detail, body: w.Body.String()}
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, _ := apikey.FromContext(r.Context())
	fmt.Fprint(w, "served "+p.UserID)
})

func TestChainOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{})
	silver := f.issue(t, "sam", "silver", 0)
	gold := f.issue(t, "gus", "gold", 0)
	silverRoute := f.gate.Require("silver")(ok)
	goldRoute := f.gate.Require("gold")(ok)

	checks := []struct {
		name   string
		h      http.Handler
		key    string
		status int
		detail string
	}{
		{"no key", silverRoute, "", 401, "Missing x-api-key"},
		{"blank key", silverRoute, "   ", 401, "Missing x-api-key"},
		{"unknown key", silverRoute, "tk_nope", 403, "Invalid or revoked API key"},
		{"low plan", goldRoute, silver, 402, "Upgrade required for this endpoint"},
		{"high plan on a lower route", silverRoute, gold, 200, ""},
	}
	for _, c := range checks {
		a := call(c.h, c.key)
		if a.status != c.status || a.detail != c.detail {
			t.Errorf("%s: %d %q, want %d %q", c.name, a.status, a.detail, c.status, c.detail)
		}
		if a.status >= 400 && a.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", c.name, a.header.Get("Content-Type"))
		}
	}

	// silver: 3 calls a month, 100 a minute: the quota refuses the 4th.
	for i, want := range []string{"2", "1", "0"} {
		a := call(silverRoute, silver)
		if a.status != 200 || a.header.Get("X-Quota-Remaining") != want || a.header.Get("X-Quota-Limit") != "3" {
			t.Fatalf("silver call %d: %d remaining %q", i+1, a.status, a.header.Get("X-Quota-Remaining"))
		}
		if got, want := a.header.Get("X-Quota-Reset"), strconv.FormatInt(f.clock.Now().Add(quota.DefaultCycle).Unix(), 10); got != want {
			t.Errorf("X-Quota-Reset %s, want %s", got, want)
		}
	}
	a := call(silverRoute, silver)
	if a.status != 429 || a.detail != "Monthly API quota exceeded" || a.header.Get("X-Quota-Remaining") != "0" {
		t.Fatalf("4th silver call: %d %q", a.status, a.detail)
	}
	if ra, _ := strconv.Atoi(a.header.Get("Retry-After")); ra != int(quota.DefaultCycle/time.Second) {
		t.Errorf("quota Retry-After %q, want the seconds to the cycle's end", a.header.Get("Retry-After"))
	}

	// gold: 4 a minute, and the table above spent one. The 5th call is refused for
	// bursting and spends no quota.
	for range 2 {
		if a := call(goldRoute, gold); a.status != 200 {
			t.Fatalf("gold: %d %q", a.status, a.detail)
		}
	}
	a = call(goldRoute, gold)
	if a.header.Get("X-Quota-Remaining") != "996" {
		t.Fatalf("gold after 4 calls: remaining %q", a.header.Get("X-Quota-Remaining"))
	}
	a = call(goldRoute, gold)
	if a.status != 429 || a.detail != "Rate limit exceeded" || a.header.Get("X-Quota-Remaining") != "" {
		t.Fatalf("gold burst: %d %q, quota header %q", a.status, a.detail, a.header.Get("X-Quota-Remaining"))
	}
	if ra, _ := strconv.Atoi(a.header.Get("Retry-After")); ra < 1 || ra > 60 {
		t.Errorf("burst Retry-After %q", a.header.Get("Retry-After"))
	}
	// Closing the gate gives leased calls back: the store then holds what was served.
	if err := f.gate.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	u, err := f.quotas.Usage(context.Background(), keyOf(t, f, gold).QuotaID, f.clock.Now())
	if err != nil || u.Used != 4 {
		t.Fatalf("gold usage %+v, %v: want 4 (the refused burst spent nothing)", u, err)
	}
}

func keyOf(t *testing.T, f *fixture, raw string) apikey.Key {
	t.Helper()
	k, err := f.keys.ByHash(context.Background(), apikey.Hash(raw))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRateLimitHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{})
	gold := f.issue(t, "gus", "gold", 0)
	h := f.gate.Require("gold")(ok)
	a := call(h, gold)
	// The monthly quota is a second policy beside the burst limit's
	// (draft-ietf-httpapi-ratelimit-headers: a List of policies): 1000 calls in
	// a 30-day window, the cycle having started at the fixture clock's time.
	cycle := strconv.FormatInt(int64(quota.DefaultCycle/time.Second), 10)
	want := map[string]string{
		"X-RateLimit-Limit":     "4",
		"X-RateLimit-Remaining": "3",
		"RateLimit-Policy":      `"gold";q=4;w=60, "gold-monthly";q=1000;w=` + cycle,
	}
	for k, v := range want {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	rl := regexp.MustCompile(`^"gold";r=3;t=([0-9]+), "gold-monthly";r=999;t=` + cycle + `$`)
	if m := rl.FindStringSubmatch(a.header.Get("RateLimit")); m == nil {
		t.Errorf("RateLimit = %q", a.header.Get("RateLimit"))
	} else if n, _ := strconv.Atoi(m[1]); n > 60 {
		t.Errorf("RateLimit burst t=%d, beyond the 60 s window", n)
	}
	reset, err := strconv.ParseInt(a.header.Get("X-RateLimit-Reset"), 10, 64)
	if err != nil || reset < time.Now().Unix() || reset > time.Now().Add(61*time.Second).Unix() {
		t.Errorf("X-RateLimit-Reset = %q", a.header.Get("X-RateLimit-Reset"))
	}
	for _, name := range []string{"X-RateLimit-Limit", "RateLimit", "RateLimit-Policy", "X-Quota-Limit"} {
		if n := len(a.header.Values(name)); n != 1 {
			t.Errorf("%s set %d times", name, n)
		}
	}

	// A call given back shows the quota unspent in both forms; ten minutes on, the
	// quota's t has moved with the gate's clock.
	f.clock.Add(10 * time.Minute)
	missing := f.gate.Require("gold")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	a = call(missing, gold)
	left := strconv.FormatInt(int64((quota.DefaultCycle-10*time.Minute)/time.Second), 10)
	if got := a.header.Get("RateLimit"); a.status != 404 || !strings.HasSuffix(got, `, "gold-monthly";r=999;t=`+left) || !strings.HasPrefix(got, `"gold";r=2;t=`) {
		t.Errorf("given back: %d RateLimit %q", a.status, got)
	}
	if got := a.header.Get("X-Quota-Remaining"); got != "999" {
		t.Errorf("given back: X-Quota-Remaining %q", got)
	}

	// While the burst store is down (the limiter fails open) only the quota has a
	// RateLimit entry; the policies are both announced.
	f.counters.down.Store(true)
	a = call(h, gold)
	f.counters.down.Store(false)
	if a.status != 200 || a.header.Get("RateLimit") != `"gold-monthly";r=998;t=`+left || a.header.Get("RateLimit-Policy") != want["RateLimit-Policy"] {
		t.Errorf("burst store down: %d RateLimit %q, RateLimit-Policy %q", a.status, a.header.Get("RateLimit"), a.header.Get("RateLimit-Policy"))
	}

	// A spent quota: r=0 until the cycle ends, which Retry-After names too.
	silver := f.issue(t, "sam", "silver", 0)
	sh := f.gate.Require("silver")(ok)
	for range 3 {
		call(sh, silver)
	}
	a = call(sh, silver)
	wantRL := `"silver-monthly";r=0;t=` + cycle
	if got := a.header.Get("RateLimit"); a.status != 429 || !strings.HasPrefix(got, `"silver";r=96;t=`) || !strings.HasSuffix(got, ", "+wantRL) || a.header.Get("Retry-After") != cycle {
		t.Errorf("quota spent: %d RateLimit %q Retry-After %q", a.status, got, a.header.Get("Retry-After"))
	}
	// Anonymous budgets have no quota: one policy.
	if a := call(f.gate.Public()(ok), ""); a.header.Get("RateLimit-Policy") != `"free";q=5;w=60` || strings.Contains(a.header.Get("RateLimit"), ",") {
		t.Errorf("public: RateLimit-Policy %q RateLimit %q", a.header.Get("RateLimit-Policy"), a.header.Get("RateLimit"))
	}
}

// TestOmitHeaders: each family of headers Config.OmitHeaders names is absent from
// successes and refusals alike, the others are as without it, and Retry-After
// stays on every refusal.
func TestOmitHeaders(t *testing.T) {
	t.Parallel()
	families := map[tollgate.Headers][]string{
		tollgate.HeadersXRateLimit: {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"},
		tollgate.HeadersXQuota:     {"X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset"},
		tollgate.HeadersIETF:       {"RateLimit-Policy", "RateLimit"},
	}
	all := tollgate.HeadersXRateLimit | tollgate.HeadersXQuota | tollgate.HeadersIETF
	for omit := tollgate.Headers(0); omit <= all; omit++ {
		t.Run(fmt.Sprintf("omit=%03b", omit), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tollgate.Config{OmitHeaders: omit})
			full := newFixture(t, tollgate.Config{})
			check := func(what string, a, want answer) {
				t.Helper()
				if a.status != want.status {
					t.Fatalf("%s: %d, without OmitHeaders %d", what, a.status, want.status)
				}
				for fam, names := range families {
					for _, name := range names {
						got, exp := a.header.Get(name), want.header.Get(name)
						if omit&fam != 0 {
							exp = ""
						}
						// The burst window's reset follows the wall clock.
						if name == "RateLimit" || name == "X-RateLimit-Reset" {
							if (got != "") != (exp != "") {
								t.Errorf("%s: %s = %q, want %q", what, name, got, exp)
							}
							continue
						}
						if got != exp {
							t.Errorf("%s: %s = %q, want %q", what, name, got, exp)
						}
					}
				}
				if a.header.Get("Retry-After") != want.header.Get("Retry-After") {
					t.Errorf("%s: Retry-After %q, want %q", what, a.header.Get("Retry-After"), want.header.Get("Retry-After"))
				}
			}
			keys := [2]string{f.issue(t, "sam", "silver", 0), full.issue(t, "sam", "silver", 0)}
			h := [2]http.Handler{f.gate.Require("silver")(ok), full.gate.Require("silver")(ok)}
			for i := range 4 { // silver: 3 calls a cycle, then 429 with Retry-After
				check(fmt.Sprintf("call %d", i+1), call(h[0], keys[0]), call(h[1], keys[1]))
			}
			pub := [2]http.Handler{f.gate.Public()(ok), full.gate.Public()(ok)}
			for i := range 6 { // free: 5 a minute, then 429
				check(fmt.Sprintf("public %d", i+1), call(pub[0], ""), call(pub[1], ""))
			}
			// The burst store down: the limits announced without counts.
			f.counters.down.Store(true)
			full.counters.down.Store(true)
			gold := [2]string{f.issue(t, "gus", "gold", 0), full.issue(t, "gus", "gold", 0)}
			check("burst store down", call(f.gate.Require("gold")(ok), gold[0]), call(full.gate.Require("gold")(ok), gold[1]))
		})
	}
}

// A missing or unknown key spends the client address's anonymous budget, so a
// flood of guesses gets 429 instead of 401/403 once it is spent; other addresses
// and real keys are unaffected.
func TestAnonymousBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{})
	silver := f.issue(t, "sam", "silver", 0)
	h := f.gate.Require("silver")(ok)
	for i := range 5 {
		key := ""
		if i%2 == 1 {
			key = fmt.Sprintf("tk_guess%d", i)
		}
		if a := call(h, key); a.status != 401 && a.status != 403 {
			t.Fatalf("guess %d: %d", i, a.status)
		}
	}
	a := call(h, "tk_guess-again")
	if a.status != 429 || a.detail != "Rate limit exceeded" || a.header.Get("RateLimit-Policy") != `"free";q=5;w=60` {
		t.Fatalf("6th guess: %d %q %q", a.status, a.detail, a.header.Get("RateLimit-Policy"))
	}
	other := func(r *http.Request) { r.RemoteAddr = "198.51.100.9:1" }
	if a := call(h, "tk_guess", other); a.status != 403 {
		t.Errorf("another address: %d, want 403", a.status)
	}
	if a := call(h, silver); a.status != 200 {
		t.Errorf("a real key from the flooding address: %d, want 200", a.status)
	}
}

func TestPublic(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{})
	h := f.gate.Public()(ok)
	for range 5 {
		if a := call(h, ""); a.status != 200 || a.header.Get("X-RateLimit-Limit") != "5" {
			t.Fatalf("public: %d %v", a.status, a.header)
		}
	}
	if a := call(h, ""); a.status != 429 || a.header.Get("Retry-After") == "" {
		t.Fatalf("6th public call: %d", a.status)
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{TrustedProxies: mustPrefixes(t, "10.0.0.0/8")})
	h := f.gate.Public()(ok)
	via := func(client string) func(*http.Request) {
		return func(r *http.Request) {
			r.RemoteAddr = "10.1.2.3:5000"
			r.Header.Set("X-Forwarded-For", "203.0.113.1, "+client)
		}
	}
	for range 5 {
		call(h, "", via("198.51.100.1"))
	}
	if a := call(h, "", via("198.51.100.1")); a.status != 429 {
		t.Errorf("6th call of one client behind the proxy: %d", a.status)
	}
	if a := call(h, "", via("198.51.100.2")); a.status != 200 {
		t.Errorf("another client behind the proxy: %d", a.status)
	}
}

// A call counts only when the handler serves it: 4xx and 5xx answers give it back,
// and the headers say so.
func TestGiveBack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{})
	silver := f.issue(t, "sam", "silver", 0)
	status := func(code int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
	}
	for _, code := range []int{400, 404, 500} {
		a := call(f.gate.Require("silver")(status(code)), silver)
		if a.status != code || a.header.Get("X-Quota-Remaining") != "3" {
			t.Fatalf("handler %d: %d, remaining %q; want the call given back (3)", code, a.status, a.header.Get("X-Quota-Remaining"))
		}
	}
	for i, want := range []string{"2", "1", "0"} {
		if a := call(f.gate.Require("silver")(ok), silver); a.status != 200 || a.header.Get("X-Quota-Remaining") != want {
			t.Fatalf("served call %d: %d %q", i+1, a.status, a.header.Get("X-Quota-Remaining"))
		}
	}
	if err := f.gate.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.quotas.Usage(context.Background(), keyOf(t, f, silver).QuotaID, f.clock.Now()); u.Used != 3 {
		t.Errorf("the store counts %d calls after Close, want the 3 served", u.Used)
	}

	// A handler that writes nothing answers 200 and is charged; one that flushes
	// first is charged before the body.
	f2 := newFixture(t, tollgate.Config{})
	key := f2.issue(t, "sam", "silver", 0)
	silent := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if a := call(f2.gate.Require("silver")(silent), key); a.status != 200 || a.header.Get("X-Quota-Remaining") != "2" {
		t.Errorf("silent handler: %d %q", a.status, a.header.Get("X-Quota-Remaining"))
	}
	flusher := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush through the gate: %v", err)
		}
		w.WriteHeader(http.StatusInternalServerError) // too late: 200 was sent
	})
	if a := call(f2.gate.Require("silver")(flusher), key); a.status != 200 || a.header.Get("X-Quota-Remaining") != "1" {
		t.Errorf("flushing handler: %d %q", a.status, a.header.Get("X-Quota-Remaining"))
	}

	// Config.Charge decides what counts.
	f3 := newFixture(t, tollgate.Config{Charge: func(int) bool { return true }})
	key = f3.issue(t, "sam", "silver", 0)
	if a := call(f3.gate.Require("silver")(status(404)), key); a.header.Get("X-Quota-Remaining") != "2" {
		t.Errorf("Charge always: remaining %q after a 404", a.header.Get("X-Quota-Remaining"))
	}
}

// The give-back happens after the answer, even when the client has gone, and does
// not touch the store: it cannot fail while the store is down.
func TestGiveBackOutlivesClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{})
	silver := f.issue(t, "sam", "silver", 0)
	ctx, cancel := context.WithCancel(context.Background())
	h := f.gate.Require("silver")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cancel()
		w.WriteHeader(http.StatusBadGateway)
	}))
	call(h, silver, func(r *http.Request) { *r = *r.WithContext(ctx) })
	f.quotas.down.Store(true) // the give-back went to the lease: the store is not needed
	if a := call(f.gate.Require("silver")(ok), silver); a.status != 200 || a.header.Get("X-Quota-Remaining") != "2" {
		t.Fatalf("after the give-back, with the store down: %d remaining %q, want the refunded call served", a.status, a.header.Get("X-Quota-Remaining"))
	}
	f.quotas.down.Store(false)
	if err := f.gate.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.quotas.Usage(context.Background(), keyOf(t, f, silver).QuotaID, f.clock.Now()); u.Used != 1 {
		t.Errorf("store counts %d after Close, want the 1 served", u.Used)
	}
}

// Store failures are 503 with Retry-After and no internals, never 500; the burst
// limiter fails open unless told otherwise.
func TestStoreFailures(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, a answer, what string) {
		t.Helper()
		if a.status != 503 || a.header.Get("Retry-After") == "" || a.detail == "" {
			t.Errorf("%s: %d %q Retry-After %q, want 503 with Retry-After", what, a.status, a.detail, a.header.Get("Retry-After"))
		}
		if strings.Contains(a.body, "hunter2") || strings.Contains(a.body, "refused") {
			t.Errorf("%s: the answer leaks the store's error: %s", what, a.body)
		}
	}
	t.Run("keys", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, tollgate.Config{})
		key := f.issue(t, "sam", "silver", 0)
		f.keys.down.Store(true)
		check(t, call(f.gate.Require("silver")(ok), key), "key store down")
	})
	t.Run("quotas", func(t *testing.T) {
		t.Parallel()
		f, got := newFixtureOnError(t)
		key := f.issue(t, "sam", "silver", 0)
		f.quotas.down.Store(true)
		a := call(f.gate.Require("silver")(ok), key)
		check(t, a, "quota store down")
		if !errors.Is(*got, tollgate.ErrUnavailable) || !errors.Is(*got, errDown) {
			t.Errorf("OnError got %v, want ErrUnavailable wrapping the store's error", *got)
		}
		checkBurstOnly(t, a, "quota store down")
	})
	t.Run("burst fails open", func(t *testing.T) {
		t.Parallel()
		var decisions []tollgate.Decision
		var mu sync.Mutex
		f := newFixture(t, tollgate.Config{Observe: func(d tollgate.Decision) {
			mu.Lock()
			decisions = append(decisions, d)
			mu.Unlock()
		}})
		key := f.issue(t, "sam", "silver", 0)
		f.counters.down.Store(true)
		a := call(f.gate.Require("silver")(ok), key)
		if a.status != 200 || a.header.Get("X-Quota-Remaining") != "2" || a.header.Get("X-RateLimit-Limit") != "100" || a.header.Get("X-RateLimit-Remaining") != "" {
			t.Errorf("burst store down, fail-open: %d %v", a.status, a.header)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(decisions) != 2 || decisions[0] != (tollgate.Decision{Step: "burst", Bucket: "key", Plan: "silver", Result: "store_error"}) ||
			decisions[1] != (tollgate.Decision{Step: "quota", Plan: "silver", Result: "allowed"}) {
			t.Errorf("decisions %+v", decisions)
		}
	})
	t.Run("burst fails closed", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, tollgate.Config{BurstFailClosed: true})
		key := f.issue(t, "sam", "silver", 0)
		f.counters.down.Store(true)
		check(t, call(f.gate.Require("silver")(ok), key), "burst store down, fail-closed")
		if u, _ := f.quotas.Usage(context.Background(), keyOf(t, f, key).QuotaID, f.clock.Now()); u.Used != 0 {
			t.Errorf("a request refused by the limiter spent quota: %+v", u)
		}
	})
}

func TestRequireUnknownPlanPanics(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{})
	defer func() {
		if recover() == nil {
			t.Error("Require of a plan the catalog lacks did not panic")
		}
	}()
	f.gate.Require("platinum")
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	stores := tollgate.Stores{Keys: akmem.New(), Quotas: qmem.New(qmem.Config{})}
	bad := []struct {
		name   string
		stores tollgate.Stores
		plans  entitlement.Catalog
		cfg    tollgate.Config
	}{
		{"no stores", tollgate.Stores{}, testPlans(), tollgate.Config{}},
		{"no plans", stores, nil, tollgate.Config{}},
		{"bad rate", stores, entitlement.Catalog{"a": {Name: "a", Rate: "ten per minute"}}, tollgate.Config{}},
		{"unknown anonymous plan", stores, testPlans(), tollgate.Config{AnonymousPlan: "nobody"}},
		{"unknown header family", stores, testPlans(), tollgate.Config{OmitHeaders: 1 << 6}},
	}
	for _, b := range bad {
		if _, err := tollgate.New(b.stores, b.plans, b.cfg); err == nil {
			t.Errorf("%s: New accepted it", b.name)
		}
	}
}

// Issue is one call on every backend: it revokes the user's keys and gives the new
// key its plan's quota (or the given limit).
func TestIssueAndRotate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, tollgate.Config{KeyPrefix: "xx_"})
	first := f.issue(t, "sam", "silver", 0)
	second := f.issue(t, "sam", "gold", 7)
	if !strings.HasPrefix(second, "xx_") {
		t.Errorf("key %q lacks the configured prefix", second[:3])
	}
	h := f.gate.Require("silver")(ok)
	if a := call(h, first); a.status != 403 {
		t.Errorf("the replaced key: %d, want 403", a.status)
	}
	a := call(h, second)
	if a.status != 200 || a.header.Get("X-Quota-Limit") != "7" {
		t.Fatalf("the new key: %d limit %q", a.status, a.header.Get("X-Quota-Limit"))
	}

	raw, next, err := f.gate.Rotate(ctx, "sam", 0)
	if err != nil {
		t.Fatal(err)
	}
	if next.Plan != "gold" || next.QuotaID != keyOf(t, f, second).QuotaID {
		t.Errorf("rotated key %+v: want plan gold and the old key's quota", next)
	}
	if a := call(h, second); a.status != 403 {
		t.Errorf("the rotated-away key: %d, want 403", a.status)
	}
	if a := call(h, raw); a.status != 200 || a.header.Get("X-Quota-Remaining") != "5" {
		t.Errorf("the rotated key: %d remaining %q, want 200 and 5 (usage kept)", a.status, a.header.Get("X-Quota-Remaining"))
	}
	if _, _, err := f.gate.Rotate(ctx, "nobody", 0); !errors.Is(err, apikey.ErrNoActiveKey) {
		t.Errorf("Rotate without a key: %v", err)
	}
	if n, err := f.gate.RevokeUser(ctx, "sam", "test"); err != nil || n != 1 {
		t.Errorf("RevokeUser: %d, %v", n, err)
	}
	if a := call(h, raw); a.status != 403 {
		t.Errorf("a revoked key: %d", a.status)
	}
	for _, p := range []string{"free", "platinum"} {
		if _, _, err := f.gate.Issue(ctx, "sam", p, 0, "", 0); !errors.Is(err, entitlement.ErrUnknownPlan) {
			t.Errorf("Issue on %s: %v, want ErrUnknownPlan", p, err)
		}
	}
}

// The quota stays exact through the gate: 1,000 racing requests on a limit of
// 100 serve exactly 100.
func TestConcurrentExactness(t *testing.T) {
	t.Parallel()
	f := newFixture(t, tollgate.Config{})
	plans := testPlans()
	g, err := tollgate.New(tollgate.Stores{Keys: f.keys, Quotas: f.quotas}, entitlement.Catalog{
		"free": plans["free"], "bulk": {Name: "bulk", Rank: 1, MonthlyCallLimit: 100, Rate: "100000-M"},
	}, tollgate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := g.Issue(context.Background(), "bo", "bulk", 0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	h := g.Require("bulk")(ok)
	var served, refused atomic.Int64
	var wg sync.WaitGroup
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch call(h, raw).status {
			case 200:
				served.Add(1)
			case 429:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if served.Load() != 100 || refused.Load() != 900 {
		t.Fatalf("%d served, %d refused; want 100 and 900", served.Load(), refused.Load())
	}
}

func mustPrefixes(t *testing.T, cidrs ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// The gate records when each key was last served, in memory, and writes it in
// batches: every FlushInterval and on Close. Refused calls and calls given back
// are no use.
func TestLastUsed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, tollgate.Config{FlushInterval: time.Hour})
	silver := f.issue(t, "sam", "silver", 0)
	gold := f.issue(t, "gus", "gold", 0)
	call(f.gate.Require("silver")(ok), silver)
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) })
	call(f.gate.Require("gold")(notFound), gold)
	if k := keyOf(t, f, silver); !k.LastUsedAt.IsZero() {
		t.Fatalf("last use written before a flush: %v", k.LastUsedAt)
	}
	if err := f.gate.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if k := keyOf(t, f, silver); !k.LastUsedAt.Equal(f.clock.Now()) {
		t.Errorf("LastUsedAt after Close = %v, want %v", k.LastUsedAt, f.clock.Now())
	}
	if k := keyOf(t, f, gold); !k.LastUsedAt.IsZero() {
		t.Errorf("a call given back counted as a use: %v", k.LastUsedAt)
	}
	if err := f.gate.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// The background loop writes on its own.
	f2 := newFixture(t, tollgate.Config{FlushInterval: 10 * time.Millisecond})
	defer f2.gate.Close(ctx)
	key := f2.issue(t, "sam", "silver", 0)
	call(f2.gate.Require("silver")(ok), key)
	deadline := time.Now().Add(5 * time.Second)
	for keyOf(t, f2, key).LastUsedAt.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the background loop never wrote the key's last use")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flakyLedger fails Record while down, after applying it when applyFirst is set:
// a write whose COMMIT lost its answer.
type flakyLedger struct {
	entitlement.Ledger
	mu         sync.Mutex
	fails      int
	applyFirst bool
	batches    []string
}

func (l *flakyLedger) Record(ctx context.Context, batch string, recs []entitlement.UsageRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, batch)
	if l.fails > 0 {
		l.fails--
		if l.applyFirst {
			_ = l.Ledger.Record(ctx, batch, recs)
		}
		return errors.New("connection reset")
	}
	return l.Ledger.Record(ctx, batch, recs)
}

// The gate counts served calls per key and minute in the ledger, once a flush;
// calls given back are not counted, and a batch whose write failed is written
// again under its name, so it counts once even if the failed write had applied.
func TestLedger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := entmem.New()
	ledger := &flakyLedger{Ledger: store, fails: 1, applyFirst: true}
	f := newFixture(t, tollgate.Config{Ledger: ledger, FlushInterval: time.Hour})
	key := f.issue(t, "sam", "gold", 0)
	h := f.gate.Require("gold")(ok)
	notFound := f.gate.Require("gold")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }))
	call(h, key)
	call(h, key)
	call(notFound, key)
	f.clock.Add(time.Minute)
	call(h, key)
	if err := f.gate.Close(ctx); err == nil {
		t.Fatal("Close reported no error although the ledger failed")
	}
	if err := f.gate.Close(ctx); err != nil { // the retry
		t.Fatal(err)
	}
	got, err := store.Usage(ctx, "sam", f.clock.Now().Add(-time.Hour), f.clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Calls != 2 || got[1].Calls != 1 || got[0].KeyID != keyOf(t, f, key).ID {
		t.Fatalf("ledger %+v, want 2 calls in the first minute and 1 in the next (the 404 given back)", got)
	}
	if len(ledger.batches) != 2 || ledger.batches[0] != ledger.batches[1] {
		t.Errorf("batches written %v, want one batch written twice under one name", ledger.batches)
	}
}

// checkBurstOnly checks that a, refused at the quota step with no usage to show,
// carries the silver plan's burst headers for the one request it counted, and no
// quota headers.
func checkBurstOnly(t *testing.T, a answer, what string) {
	t.Helper()
	for k, want := range map[string]string{
		"X-Ratelimit-Limit":     "100",
		"X-Ratelimit-Remaining": "99",
		"Ratelimit-Policy":      `"silver";q=100;w=60`,
	} {
		if got := a.header.Get(k); got != want {
			t.Errorf("%s: %s %q, want %q", what, k, got, want)
		}
	}
	if got := a.header.Get("X-Ratelimit-Reset"); got == "" {
		t.Errorf("%s: no X-RateLimit-Reset", what)
	}
	if got := a.header.Get("Ratelimit"); !regexp.MustCompile(`^"silver";r=99;t=\d+$`).MatchString(got) {
		t.Errorf("%s: RateLimit %q, want the burst entry alone", what, got)
	}
	for _, k := range []string{"X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset"} {
		if got := a.header.Get(k); got != "" {
			t.Errorf("%s: %s %q, want none (no usage is known)", what, k, got)
		}
	}
}

// A key whose quota is gone is refused as a revoked key (403), with the burst
// headers of the request it spent.
func TestKeyWithoutQuota(t *testing.T) {
	t.Parallel()
	f, got := newFixtureOnError(t)
	key := f.issue(t, "sam", "silver", 0)
	f.quotas.missing.Store(true)
	a := call(f.gate.Require("silver")(ok), key)
	if a.status != http.StatusForbidden || !errors.Is(*got, apikey.ErrInvalid) || !errors.Is(*got, quota.ErrNotFound) {
		t.Fatalf("a key without a quota: %d %q, want 403 as a revoked key", a.status, a.detail)
	}
	checkBurstOnly(t, a, "key without a quota")
}
