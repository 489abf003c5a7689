package web_test

// The account page in headless Chromium against a fake of the server's dashboard
// API (GET /keys, POST /keys/rotate, POST /keys/reveal, GET /keys/usage, POST
// /billing/checkout, POST /billing/portal) that answers the OpenAPI document's
// shapes: every exchange the page has with it is validated against the document.
// A second fake plays Stripe on another site. axe-core checks every state on
// desktop and mobile. TOLLGATE_SCREENSHOTS=1 rewrites the screenshots in docs/
// named below.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/openapi"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web/webtest"
	"github.com/releaseradar/tollgate/internal/problem"
)

// docsDir is the repository's docs/ seen from this package's directory.
var docsDir = filepath.Join("..", "..", "..", "..", "docs")

// fakeKey is one key as GET /keys lists it (the document's KeyView).
type fakeKey struct {
	ID                 string     `json:"id"`
	Masked             string     `json:"masked"`
	Plan               string     `json:"plan"`
	Status             string     `json:"status"`
	MonthlyCallLimit   int64      `json:"monthly_call_limit"`
	CallsUsed          int64      `json:"calls_used"`
	CycleStart         time.Time  `json:"cycle_start"`
	CycleResetsAt      time.Time  `json:"cycle_resets_at"`
	CreatedAt          time.Time  `json:"created_at"`
	LastUsedAt         *time.Time `json:"last_used_at"`
	RevokedAt          *time.Time `json:"revoked_at,omitempty"`
	RevokeReason       string     `json:"revoke_reason,omitempty"`
	ExpiresAt          *time.Time `json:"expires_at,omitempty"`
	BurstLimit         int64      `json:"burst_limit,omitempty"`
	BurstWindowSeconds int64      `json:"burst_window_seconds,omitempty"`
}

// fakePlan is a plan for sale (the document's PlanOffer).
type fakePlan struct {
	Name               string `json:"name"`
	MonthlyCallLimit   int64  `json:"monthly_call_limit"`
	BurstLimit         int64  `json:"burst_limit"`
	BurstWindowSeconds int64  `json:"burst_window_seconds"`
}

var catalog = []fakePlan{
	{Name: "pro", MonthlyCallLimit: 10_000, BurstLimit: 600, BurstWindowSeconds: 60},
	{Name: "team", MonthlyCallLimit: 100_000, BurstLimit: 3000, BurstWindowSeconds: 60},
}

func planOf(name string) fakePlan {
	for _, p := range catalog {
		if p.Name == name {
			return p
		}
	}
	panic("no plan " + name)
}

// fakeUser is what the fake knows of one user.
type fakeUser struct {
	keys     []fakeKey // newest first
	pending  string    // a raw key waiting for POST /keys/reveal
	customer bool      // has a Stripe customer (POST /billing/portal)
	days     []int64   // calls served per UTC day of the cycle, oldest first, ending today
}

// fakeAPI stands in for the server's dashboard routes, so that the page's
// behaviour (errors, focus, reveal, billing) is tested without the whole server.
type fakeAPI struct {
	validator *openapi.Validator
	stripe    string // base URL of the fake Stripe, another site

	mu         sync.Mutex
	users      map[string]*fakeUser
	fail       string // "", "500", "down" or "401": how GET /keys fails
	expired    bool   // every session token has expired
	billingOff bool   // no Stripe API key: billing answers 503
	noPlans    bool   // GET /keys lists no plan for sale
	checkouts  []string
	graces     []int64
	mismatches []string
	pageNoAuth int // requests for the page that carried no session cookie
}

func rawKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "rr_live_" + base64.RawURLEncoding.EncodeToString(b)
}

func maskOf(raw string) string { return "****…" + raw[len(raw)-4:] }

func verifyFake(token string) (string, error) {
	if user, ok := strings.CutPrefix(token, "tok-"); ok && user != "" {
		return user, nil
	}
	return "", errors.New("bad token")
}

func ptr(t time.Time) *time.Time { return &t }

// newKey is an active key on plan whose cycle began daysAgo days ago, with used
// calls spent and a raw key nobody keeps.
func newKey(plan string, used int64, daysAgo int, now time.Time) fakeKey {
	p := planOf(plan)
	// The cycle began daysAgo UTC days ago, just after midnight: the usage lists
	// daysAgo+1 days whatever the time of day.
	start := now.Truncate(24*time.Hour).AddDate(0, 0, -daysAgo).Add(time.Second)
	raw := rawKey()
	return fakeKey{
		ID: "key_" + raw[8:16], Masked: maskOf(raw), Plan: plan, Status: "active",
		MonthlyCallLimit: p.MonthlyCallLimit, CallsUsed: used,
		CycleStart: start, CycleResetsAt: start.Add(30 * 24 * time.Hour), CreatedAt: start,
		LastUsedAt: ptr(now.Add(-time.Hour)), BurstLimit: p.BurstLimit, BurstWindowSeconds: p.BurstWindowSeconds,
	}
}

// unauthorized is the document's DashboardUnauthorized answer, with the
// address's burst headers.
func unauthorized(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-RateLimit-Limit", "30")
	h.Set("X-RateLimit-Remaining", "29")
	h.Set("X-RateLimit-Reset", fmt.Sprint(time.Now().Add(time.Minute).Unix()))
	h.Set("RateLimit-Policy", `"public";q=30;w=60`)
	h.Set("RateLimit", `"public";r=29;t=60`)
	problem.Write(w, http.StatusUnauthorized, "Invalid or expired dashboard token")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// user returns the request's user, or answers 401.
func (f *fakeAPI) user(w http.ResponseWriter, r *http.Request) (*fakeUser, string, bool) {
	token, _ := web.Token(r)
	name, err := verifyFake(token)
	f.mu.Lock()
	expired := f.expired
	f.mu.Unlock()
	if err != nil || expired {
		unauthorized(w)
		return nil, "", false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[name]
	if u == nil {
		u = &fakeUser{}
		f.users[name] = u
	}
	return u, name, true
}

func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	switch fail {
	case "500":
		offContract(w)
		problem.Write(w, http.StatusInternalServerError, `{"internal":"boom"}`)
		return
	case "401":
		unauthorized(w)
		return
	case "down":
		conn, _, _ := w.(http.Hijacker).Hijack()
		_ = conn.Close()
		return
	}
	u, name, ok := f.user(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := u.keys
	if keys == nil {
		keys = []fakeKey{}
	}
	body := map[string]any{"user_id": name, "keys": keys, "reveal_pending": u.pending != ""}
	body["plans"] = []fakePlan{}
	if !f.noPlans {
		body["plans"] = catalog
	}
	writeJSON(w, body)
}

func (f *fakeAPI) rotate(w http.ResponseWriter, r *http.Request) {
	u, _, ok := f.user(w, r)
	if !ok {
		return
	}
	var req struct {
		GraceSeconds *int64 `json:"grace_seconds"`
	}
	if b, _ := io.ReadAll(r.Body); len(bytes.TrimSpace(b)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			problem.Write(w, http.StatusBadRequest, "Invalid body: "+err.Error())
			return
		}
	}
	var grace int64
	if req.GraceSeconds != nil {
		grace = *req.GraceSeconds
	}
	if grace < 0 || grace > 7*24*3600 {
		problem.Write(w, http.StatusBadRequest, `Invalid "grace_seconds": must be an integer from 0 to 604800`)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.graces = append(f.graces, grace)
	now := time.Now().UTC()
	for i := range u.keys {
		if u.keys[i].Status != "active" {
			continue
		}
		raw := rawKey()
		next := u.keys[i]
		next.ID, next.Masked, next.CreatedAt, next.LastUsedAt = "key_"+raw[8:16], maskOf(raw), now, nil
		if grace > 0 {
			u.keys[i].Status, u.keys[i].ExpiresAt = "expiring", ptr(now.Add(time.Duration(grace)*time.Second))
		} else {
			u.keys[i].Status, u.keys[i].RevokedAt, u.keys[i].RevokeReason = "revoked", ptr(now), "rotated"
		}
		u.keys = append([]fakeKey{next}, u.keys...)
		writeJSON(w, map[string]any{"key": raw, "id": next.ID, "masked": next.Masked, "plan": next.Plan, "monthly_call_limit": next.MonthlyCallLimit})
		return
	}
	problem.Write(w, http.StatusConflict, "No active key to rotate")
}

func (f *fakeAPI) reveal(w http.ResponseWriter, r *http.Request) {
	u, _, ok := f.user(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	raw := u.pending
	u.pending = ""
	if raw == "" {
		problem.Write(w, http.StatusNotFound, "No key waiting to be revealed")
		return
	}
	body := map[string]any{"key": raw, "id": "", "masked": maskOf(raw), "plan": "", "monthly_call_limit": 0}
	for _, k := range u.keys {
		if k.Masked == maskOf(raw) {
			body["id"], body["plan"], body["monthly_call_limit"] = k.ID, k.Plan, k.MonthlyCallLimit
		}
	}
	writeJSON(w, body)
}

// usage answers the document's Usage for the current cycle: the user's days, or
// all the cycle's calls on today.
func (f *fakeAPI) usage(w http.ResponseWriter, r *http.Request) {
	u, name, ok := f.user(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now().UTC()
	today := now.Truncate(24 * time.Hour)
	body := map[string]any{"user_id": name, "monthly_call_limit": 0, "calls_used": 0, "cycle_start": nil, "cycle_resets_at": nil}
	var cur *fakeKey
	for i := range u.keys {
		if u.keys[i].Status == "active" {
			cur = &u.keys[i]
			break
		}
	}
	from := today.AddDate(0, 0, -29)
	if cur != nil {
		from = cur.CycleStart.UTC().Truncate(24 * time.Hour)
		body["monthly_call_limit"], body["calls_used"] = cur.MonthlyCallLimit, cur.CallsUsed
		body["cycle_start"], body["cycle_resets_at"] = cur.CycleStart, cur.CycleResetsAt
	}
	n := int(today.Sub(from)/(24*time.Hour)) + 1
	calls := make([]int64, n)
	if len(u.days) > 0 {
		copy(calls[max(0, n-len(u.days)):], u.days[max(0, len(u.days)-n):])
	} else if cur != nil {
		calls[n-1] = cur.CallsUsed
	}
	days := make([]map[string]any, n)
	var total int64
	for i := range n {
		days[i] = map[string]any{"date": from.AddDate(0, 0, i).Format(time.DateOnly), "calls": calls[i]}
		total += calls[i]
	}
	body["from"], body["to"], body["days"], body["total_calls"] = from.Format(time.DateOnly), today.Format(time.DateOnly), days, total
	writeJSON(w, body)
}

func (f *fakeAPI) checkout(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := f.user(w, r); !ok {
		return
	}
	var req struct {
		Plan string `json:"plan"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		problem.Write(w, http.StatusBadRequest, "Malformed request body")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.billingOff {
		w.Header().Set("Retry-After", "1")
		problem.Write(w, http.StatusServiceUnavailable, "Billing is not configured on this server")
		return
	}
	if req.Plan != "pro" && req.Plan != "team" {
		problem.Write(w, http.StatusBadRequest, "Unknown plan")
		return
	}
	f.checkouts = append(f.checkouts, req.Plan)
	writeJSON(w, map[string]string{"url": f.stripe + "/c/pay/cs_test_" + req.Plan})
}

func (f *fakeAPI) portal(w http.ResponseWriter, r *http.Request) {
	u, _, ok := f.user(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.billingOff {
		w.Header().Set("Retry-After", "1")
		problem.Write(w, http.StatusServiceUnavailable, "Billing is not configured on this server")
		return
	}
	if !u.customer {
		problem.Write(w, http.StatusNotFound, "No billing account for this user")
		return
	}
	writeJSON(w, map[string]string{"url": f.stripe + "/p/session/bps_test"})
}

// completeCheckout does what Stripe's webhook does for a paid checkout of plan:
// the user's key is replaced by one on plan, sealed for POST /keys/reveal.
func (f *fakeAPI) completeCheckout(name, plan string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[name]
	now := time.Now().UTC()
	for i := range u.keys {
		if u.keys[i].Status == "active" {
			u.keys[i].Status, u.keys[i].RevokedAt, u.keys[i].RevokeReason = "revoked", ptr(now), "billing: plan changed to "+plan
		}
	}
	raw := rawKey()
	k := newKey(plan, 0, 0, now)
	k.ID, k.Masked, k.CycleStart, k.CreatedAt, k.LastUsedAt = "key_"+raw[8:16], maskOf(raw), now, now, nil
	k.CycleResetsAt = now.Add(30 * 24 * time.Hour)
	u.keys = append([]fakeKey{k}, u.keys...)
	u.pending, u.customer, u.days = raw, true, nil
	return raw
}

func (f *fakeAPI) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// recorder keeps what a handler answered, for the validator.
type recorder struct {
	http.ResponseWriter
	status   int
	body     bytes.Buffer
	off      bool // the fake broke the contract on purpose (a 500, a garbled answer)
	hijacked bool
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	r.hijacked = true
	return r.ResponseWriter.(http.Hijacker).Hijack()
}

// offContract marks an answer that breaks the document on purpose.
func offContract(w http.ResponseWriter) {
	if rec, ok := w.(*recorder); ok {
		rec.off = true
	}
}

// checked validates every exchange with next against the OpenAPI document.
func (f *fakeAPI) checked(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqBody, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.hijacked || rec.off {
			return
		}
		req := r.Clone(r.Context())
		req.URL.Scheme, req.URL.Host = "http", r.Host
		resp := &http.Response{StatusCode: rec.status, Header: w.Header().Clone(), Request: req}
		if err := f.validator.Validate(req, reqBody, resp, rec.body.Bytes()); err != nil {
			f.mu.Lock()
			f.mismatches = append(f.mismatches, err.Error())
			f.mu.Unlock()
		}
	})
}

// newFakeServer serves the page and the fake API, and a fake Stripe on another
// site ("localhost" and "127.0.0.1" are different sites) whose checkout page
// links back to the account page as Stripe's success and cancel URLs do.
func newFakeServer(t *testing.T, api *fakeAPI) *httptest.Server {
	t.Helper()
	v, err := openapi.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	api.validator = v
	mux := http.NewServeMux()
	pages := web.Handler(verifyFake, web.Config{})
	mux.Handle("/account/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == web.PagePath {
			if c, err := r.Cookie(web.CookieName); err != nil || c.Value == "" {
				api.set(func() { api.pageNoAuth++ })
			}
		}
		pages.ServeHTTP(w, r)
	}))
	csrf := web.RequireOrigin(web.Config{})
	mux.Handle("GET /keys", api.checked(http.HandlerFunc(api.list)))
	mux.Handle("GET /keys/usage", api.checked(http.HandlerFunc(api.usage)))
	mux.Handle("POST /keys/rotate", api.checked(csrf(http.HandlerFunc(api.rotate))))
	mux.Handle("POST /keys/reveal", api.checked(csrf(http.HandlerFunc(api.reveal))))
	mux.Handle("POST /billing/checkout", api.checked(csrf(http.HandlerFunc(api.checkout))))
	mux.Handle("POST /billing/portal", api.checked(csrf(http.HandlerFunc(api.portal))))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)

	stripe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		page := ts.URL + web.PagePath
		fmt.Fprintf(w, `<!doctype html><html lang="en"><title>Stripe</title><main><h1>%s</h1>
<a id="pay" href="%s?checkout=success&amp;session_id=cs_test_1">Pay</a>
<a id="back" href="%s?checkout=cancel">Back</a></main></html>`, r.URL.Path, page, page)
	}))
	t.Cleanup(stripe.Close)
	api.stripe = strings.Replace(stripe.URL, "127.0.0.1", "localhost", 1)
	t.Cleanup(func() {
		api.mu.Lock()
		defer api.mu.Unlock()
		for _, m := range api.mismatches {
			t.Errorf("the fake API and the page broke the OpenAPI document: %s", m)
		}
	})
	return ts
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// text is the rendered text of the first element sel matches ("" when none).
func text(tab *webtest.Tab, sel string) string {
	return webtest.Eval[string](tab, `(document.querySelector(`+jsString(sel)+`) || {innerText: ""}).innerText`)
}

// visible reports whether sel matches an element that is laid out.
func visible(tab *webtest.Tab, sel string) bool {
	return webtest.Eval[bool](tab, `(n => !!n && n.offsetParent !== null && n.getClientRects().length > 0)(document.querySelector(`+jsString(sel)+`))`)
}

// A reset or expiry is told with its time of day and its zone.
// (ICU puts a narrow no-break space before AM and PM.)
var zonedTime = regexp.MustCompile(`\d{1,2}:\d{2}([\s\x{00a0}\x{202f}]?[AP]M)?[\s\x{00a0}\x{202f}](UTC|GMT[+-]?\d*|[A-Z]{2,5})`)

var viewports = []struct {
	name          string
	width, height int64
}{{"desktop", 1280, 900}, {"mobile", 375, 812}}

func TestPageInBrowser(t *testing.T) {
	now := time.Now().UTC()
	alice := newKey("pro", 1234, 10, now)
	alice.CreatedAt = now.AddDate(0, -2, 0)
	api := &fakeAPI{users: map[string]*fakeUser{
		"alice": {keys: []fakeKey{alice}, customer: true, days: []int64{80, 120, 95, 0, 0, 140, 200, 160, 150, 170, 119}},
		"bob":   {keys: []fakeKey{newKey("team", 95_000, 12, now)}},
	}}
	ts := newFakeServer(t, api)
	page := ts.URL + web.PagePath
	browser := webtest.NewBrowser(t, 4*time.Minute)

	loaded := `document.getElementById("plan") && !document.getElementById("plan").hidden && document.getElementById("keys").getAttribute("aria-busy") === "false"`
	signIn := func(tab *webtest.Tab, user string) {
		t.Helper()
		tab.Do(chromedp.Navigate(page))
		tab.WaitFor(`document.activeElement && document.activeElement.id === "token"`)
		tab.Do(chromedp.SendKeys("#token", "tok-"+user), chromedp.Click("#signin-form button[type=submit]"))
		tab.WaitFor(loaded)
	}
	noProblems := func(tab *webtest.Tab) {
		t.Helper()
		if p := tab.Problems(); len(p) > 0 {
			t.Errorf("the page reported problems: %q", p)
		}
		// Nothing but the page's own origin is ever asked for.
		if ext := webtest.Eval[[]string](tab, `performance.getEntriesByType("resource").map(e => e.name).filter(n => !n.startsWith(location.origin))`); len(ext) > 0 {
			t.Errorf("the page fetched from other origins: %q", ext)
		}
	}
	noOverflow := func(tab *webtest.Tab, width int64, state string) {
		t.Helper()
		if w := webtest.Eval[int64](tab, `document.documentElement.scrollWidth`); w > width {
			t.Errorf("%s: the page is %d px wide at a %d px viewport", state, w, width)
		}
	}

	t.Run("sign in, rotate by keyboard", func(t *testing.T) {
		tab := browser.NewTab(t, 1280, 900)
		tab.Do(chromedp.Navigate(page))
		tab.WaitFor(`document.activeElement && document.activeElement.id === "token"`)
		tab.Do(chromedp.SendKeys("#token", "forged"), chromedp.Click("#signin-form button[type=submit]"))
		tab.WaitFor(`document.querySelector("#signin-message:not([hidden])")`)
		if msg := text(tab, "#signin-message"); !strings.Contains(msg, "not valid or has expired") {
			t.Errorf("bad-token message = %q", msg)
		}
		if !webtest.Eval[bool](tab, `document.getElementById("signin-message").classList.contains("notice-error")`) {
			t.Error("a refused token is not shown as an error")
		}
		tab.Do(chromedp.SendKeys("#token", "tok-alice"), chromedp.Click("#signin-form button[type=submit]"))
		tab.WaitFor(loaded)
		// Focus starts at the page's heading after a sign-in, not on the body.
		tab.WaitFor(`document.activeElement && document.activeElement.id === "page-title"`)
		if got := text(tab, ".key"); !strings.Contains(got, alice.Masked) || !strings.Contains(got, "PRO") || !strings.Contains(got, "ACTIVE") {
			t.Errorf("key card = %q, want the masked key and plan", got)
		}
		if got := text(tab, "#usage-meter"); !strings.Contains(got, "1,234 of 10,000") || !strings.Contains(got, "8,766 calls left") {
			t.Errorf("usage = %q, want 1,234 of 10,000 and 8,766 left", got)
		}
		if got := webtest.Eval[string](tab, `document.querySelector(".bar").getAttribute("aria-valuenow")`); got != "1234" {
			t.Errorf("progressbar aria-valuenow = %q, want 1234", got)
		}
		if c := webtest.Eval[string](tab, `document.cookie`); c != "" {
			t.Errorf("document.cookie = %q: the session cookie must be HttpOnly", c)
		}

		// Open the confirmation from the keyboard; Escape closes it and focus returns.
		tab.Do(chromedp.Focus(".key .rotate"), chromedp.KeyEvent(kb.Enter))
		tab.WaitFor(`document.getElementById("confirm-dialog").open && document.getElementById("confirm-dialog").contains(document.activeElement)`)
		if got := text(tab, "#confirm-effect"); !strings.Contains(got, "stops working at once") || !strings.Contains(got, "403") {
			t.Errorf("the confirmation without grace says %q", got)
		}
		tab.Do(chromedp.KeyEvent(kb.Escape))
		tab.WaitFor(`!document.getElementById("confirm-dialog").open && document.activeElement.classList.contains("rotate")`)

		// Rotate for real, at once.
		tab.Do(chromedp.KeyEvent(kb.Enter))
		tab.WaitFor(`document.getElementById("confirm-dialog").open`)
		tab.Do(chromedp.Click("#confirm-rotate"))
		tab.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
		raw := text(tab, "#secret-key")
		if !strings.HasPrefix(raw, "rr_live_") {
			t.Fatalf("modal key = %q", raw)
		}
		if w := text(tab, "#secret-warning"); w != "Treat this like a password. It will not be shown again." {
			t.Errorf("warning = %q", w)
		}
		if n := text(tab, "#secret-note"); !strings.Contains(n, alice.Masked+" has stopped working") {
			t.Errorf("note = %q, want the old key stopped", n)
		}
		if id := webtest.Eval[string](tab, `document.activeElement.id`); id != "copy-button" {
			t.Errorf("focus in the open modal = %q, want copy-button", id)
		}
		// Tab and Shift+Tab cycle inside the dialog.
		for i := range 5 {
			opts := []chromedp.KeyOption{}
			if i%2 == 1 {
				opts = append(opts, chromedp.KeyModifiers(chromedp.ModifierShift))
			}
			tab.Do(chromedp.KeyEvent(kb.Tab, opts...))
			if !webtest.Eval[bool](tab, `document.getElementById("secret-dialog").contains(document.activeElement)`) {
				t.Fatalf("after %d Tab presses focus left the modal: %s", i+1, webtest.Eval[string](tab, `document.activeElement.outerHTML.slice(0, 80)`))
			}
		}
		tab.Do(chromedp.Click("#copy-button"))
		tab.WaitFor(`document.getElementById("copy-status").textContent !== ""`)
		tab.WaitFor(`document.querySelector(".key .key-mask").textContent === ` + jsString(maskOf(raw)))

		tab.Do(chromedp.KeyEvent(kb.Escape))
		tab.WaitFor(`!document.getElementById("secret-dialog").open`)
		if webtest.Eval[bool](tab, `document.documentElement.outerHTML.includes(`+jsString(raw)+`)`) {
			t.Error("the raw key is still in the DOM after the modal closed")
		}
		if n := webtest.Eval[int](tab, `localStorage.length + sessionStorage.length`); n != 0 {
			t.Errorf("Web Storage holds %d items", n)
		}
		// Focus returns in the dialog's close event, a task queued by close(): wait
		// for it (as for the confirm dialog above) rather than race it.
		tab.WaitFor(`document.activeElement.classList.contains("rotate")`)
		if got := text(tab, "#revoked-count"); got != "1" {
			t.Errorf("revoked keys = %q, want 1", got)
		}
		if got := webtest.Eval[string](tab, `document.getElementById("revoked-list").textContent`); !strings.Contains(got, "replaced by a rotation") {
			t.Errorf("revoked list = %q, want why", got)
		}
		// The new key made none of the calls this cycle shows: the page says so.
		if got := text(tab, ".key"); !strings.Contains(got, "Not used yet") {
			t.Errorf("new key card = %q", got)
		}
		if got := text(tab, "#usage-shared"); !strings.Contains(got, alice.Masked) || !strings.Contains(got, "rotation keeps the monthly quota") {
			t.Errorf("the carried-over calls are explained as %q", got)
		}
		api.set(func() {
			if !slices.Equal(api.graces, []int64{0}) {
				t.Errorf("rotations asked for grace %v, want [0]", api.graces)
			}
		})
		noProblems(tab)
	})

	t.Run("usage chart, plan and curl", func(t *testing.T) {
		api.set(func() {
			api.users["lena"] = &fakeUser{keys: []fakeKey{newKey("pro", 5, 3, now)}, customer: true, days: []int64{0, 0, 3, 2}}
			api.users["carl"] = &fakeUser{keys: []fakeKey{newKey("pro", 4321, 17, now)}, customer: true,
				days: []int64{100, 150, 220, 300, 180, 90, 0, 0, 310, 420, 380, 350, 400, 290, 331, 250, 280, 270}}
		})
		for _, vp := range viewports {
			tab := browser.NewTab(t, vp.width, vp.height)
			signIn(tab, "carl")
			tab.WaitFor(`!document.getElementById("usage-chart").hidden`)
			// 18 days of the cycle so far, the rest of the 30-day cycle to come.
			if n := webtest.Eval[int](tab, `document.querySelectorAll("#chart-plot .chart-day:not(.is-future)").length`); n != 18 {
				t.Errorf("%s: %d days drawn so far, want 18", vp.name, n)
			}
			if n := webtest.Eval[int](tab, `document.querySelectorAll("#chart-plot .chart-day").length`); n < 30 || n > 32 {
				t.Errorf("%s: the chart spans %d days, want the 30-day cycle", vp.name, n)
			}
			if got := text(tab, ".chart-limit"); got != "Limit 10,000" {
				t.Errorf("%s: limit mark %q", vp.name, got)
			}
			if got := webtest.Eval[string](tab, `document.getElementById("chart-summary").textContent`); !strings.Contains(got, "30-day cycle") ||
				!strings.Contains(got, "4,321 of the 10,000-call limit (43%)") || !strings.Contains(got, "420 calls") {
				t.Errorf("%s: chart summary %q", vp.name, got)
			}
			// The table, the chart's text alternative, has a row per day so far.
			if n := webtest.Eval[int](tab, `document.querySelectorAll("#usage-table tbody tr").length`); n != 18 {
				t.Errorf("%s: the table has %d rows, want 18", vp.name, n)
			}
			if got := webtest.Eval[string](tab, `document.querySelector("#usage-table tbody tr:last-child").textContent`); !strings.Contains(got, "(today)") || !strings.HasSuffix(got, "2704,321") {
				t.Errorf("%s: today's row %q, want today with 270 calls and 4,321 in all", vp.name, got)
			}
			foot := text(tab, "#usage-meter")
			if !strings.Contains(foot, "30-day cycles") || !zonedTime.MatchString(foot) {
				t.Errorf("%s: usage %q, want the reset with its time and zone and the 30-day cycle", vp.name, foot)
			}
			facts := text(tab, "#plan")
			for _, want := range []string{"Pro plan", "10,000 calls per 30-day cycle", "Up to 600 calls a minute", "Team", "100,000 calls per 30-day cycle, up to 3,000 calls a minute", "Upgrade to Team", "Manage billing"} {
				if !strings.Contains(facts, want) {
					t.Errorf("%s: the plan says %q, lacking %q", vp.name, facts, want)
				}
			}
			if strings.Contains(facts, "Upgrade to Pro") {
				t.Errorf("%s: a pro user is offered pro", vp.name)
			}
			curl := webtest.Eval[string](tab, `document.getElementById("curl-example").textContent`)
			carl := api.users["carl"].keys[0]
			if !strings.Contains(curl, "RR_API_KEY='"+carl.Masked+"'") || !strings.Contains(curl, `curl -sS -H "x-api-key: $RR_API_KEY"`) || !strings.Contains(curl, `"`+ts.URL+`/events/search?`) {
				t.Errorf("%s: curl example %q", vp.name, curl)
			}
			if vp.name == "mobile" {
				noOverflow(tab, vp.width, "usage")
				// "Signed in as" stays on a phone.
				if !visible(tab, "#user-id") {
					t.Error("mobile: the signed-in user is hidden")
				}
				if r := webtest.Eval[float64](tab, `document.querySelector(".account-user").getBoundingClientRect().right`); r > float64(vp.width) {
					t.Errorf("mobile: the signed-in user ends at %.0f px", r)
				}
			}
			tab.CheckAxe(vp.name + ", signed in, usage chart")
			tab.Do(chromedp.Click("#chart-details summary"))
			tab.WaitFor(`document.getElementById("chart-details").open`)
			tab.CheckAxe(vp.name + ", usage table open")
			tab.Do(chromedp.Click("#chart-details summary"))
			tab.Do(chromedp.Click("#curl-copy"))
			tab.WaitFor(`document.getElementById("curl-status").textContent !== ""`)
			tab.Screenshot(filepath.Join(docsDir, map[string]string{"desktop": "account-usage.png", "mobile": "account-usage-mobile.png"}[vp.name]))
			noProblems(tab)
		}

		// Light use is visible: 5 calls of 10,000 still draw a bar.
		tab := browser.NewTab(t, 1280, 900)
		signIn(tab, "lena")
		tab.WaitFor(`!document.getElementById("usage-chart").hidden`)
		if w := webtest.Eval[float64](tab, `document.querySelector(".bar-fill").getBoundingClientRect().width`); w < 4 {
			t.Errorf("5 of 10,000 calls fill %.1f px of the bar", w)
		}
		heights := webtest.Eval[[]float64](tab, `Array.from(document.querySelectorAll("#chart-plot .chart-day:not(.is-future) .chart-bar"), b => b.getBoundingClientRect().height)`)
		if len(heights) != 4 || heights[0] != 0 || heights[1] != 0 || heights[2] < 2 || heights[3] < 2 {
			t.Errorf("bar heights for 0, 0, 3, 2 calls of 10,000: %v, want nothing, nothing and two visible bars", heights)
		}
		noProblems(tab)
	})

	t.Run("rotation with a grace period", func(t *testing.T) {
		api.set(func() {
			api.users["gus"] = &fakeUser{keys: []fakeKey{newKey("pro", 2500, 5, now)}, customer: true, days: []int64{500, 600, 400, 300, 500, 200}}
			api.graces = nil
		})
		old := api.users["gus"].keys[0]
		for _, vp := range viewports {
			tab := browser.NewTab(t, vp.width, vp.height)
			signIn(tab, "gus")
			tab.Do(chromedp.Click(".key .rotate"))
			tab.WaitFor(`document.getElementById("confirm-dialog").open`)
			if vp.name == "desktop" {
				// Choose "In 1 hour" with the keyboard: Tab to the radio group, then an arrow.
				tab.Do(chromedp.KeyEvent(kb.Tab, chromedp.KeyModifiers(chromedp.ModifierShift)))
				tab.WaitFor(`document.activeElement.name === "grace" && document.activeElement.value === "0"`)
				tab.Do(chromedp.KeyEvent(kb.ArrowDown))
				tab.WaitFor(`document.querySelector('input[name="grace"]:checked').value === "3600"`)
			} else {
				tab.Do(chromedp.Click(`input[name="grace"][value="86400"]`))
				tab.WaitFor(`document.querySelector('input[name="grace"]:checked').value === "86400"`)
			}
			effect := text(tab, "#confirm-effect")
			want := map[string]string{"desktop": "for 1 hour", "mobile": "for 24 hours"}[vp.name]
			if !strings.Contains(effect, "keeps working "+want) || !strings.Contains(effect, "same monthly quota") || !zonedTime.MatchString(effect) {
				t.Errorf("%s: the confirmation says %q", vp.name, effect)
			}
			tab.CheckAxe(vp.name + ", rotation dialog with grace")
			tab.ScreenshotViewport(filepath.Join(docsDir, map[string]string{"desktop": "account-rotate.png", "mobile": "account-rotate-mobile.png"}[vp.name]))
			tab.Do(chromedp.Click("#confirm-rotate"))
			tab.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
			if n := text(tab, "#secret-note"); !strings.Contains(n, "keeps working "+want) {
				t.Errorf("%s: the new key's note %q", vp.name, n)
			}
			// The key stays on one line; on a phone its box scrolls instead.
			if lines := webtest.Eval[float64](tab, `(c => c.getBoundingClientRect().height / parseFloat(getComputedStyle(c).lineHeight || "24"))(document.getElementById("secret-key"))`); lines > 1.5 {
				t.Errorf("%s: the key takes %.1f lines", vp.name, lines)
			}
			if r := webtest.Eval[float64](tab, `document.getElementById("secret-dialog").getBoundingClientRect().right`); r > float64(vp.width) {
				t.Errorf("%s: the modal ends at %.0f px", vp.name, r)
			}
			tab.CheckAxe(vp.name + ", new key dialog")
			tab.Do(chromedp.Click("#secret-dialog [data-close]"))
			tab.WaitFor(`!document.getElementById("secret-key") && document.querySelector(".key.is-expiring")`)
			exp := text(tab, ".key.is-expiring")
			if !strings.Contains(exp, "EXPIRING") || !strings.Contains(exp, "Expires in "+strings.TrimPrefix(want, "for ")) || !zonedTime.MatchString(exp) {
				t.Errorf("%s: the expiring key says %q", vp.name, exp)
			}
			if webtest.Eval[int](tab, `document.querySelectorAll(".key.is-expiring .rotate").length`) != 0 {
				t.Errorf("%s: an expiring key offers rotation", vp.name)
			}
			if got := text(tab, "#usage-shared"); !strings.Contains(got, "spend this one quota") {
				t.Errorf("%s: shared quota note %q", vp.name, got)
			}
			if vp.name == "desktop" {
				tab.Screenshot(filepath.Join(docsDir, "account-expiring.png"))
			} else {
				noOverflow(tab, vp.width, "expiring")
			}
			tab.CheckAxe(vp.name + ", expiring key")
			noProblems(tab)
			// Back to one key for the next viewport.
			api.set(func() { api.users["gus"].keys = []fakeKey{old} })
		}
		api.set(func() {
			if !slices.Equal(api.graces, []int64{3600, 86400}) {
				t.Errorf("rotations asked for grace %v, want [3600 86400]", api.graces)
			}
		})
	})

	t.Run("near the limit", func(t *testing.T) {
		api.set(func() {
			api.users["nina"] = &fakeUser{keys: []fakeKey{newKey("pro", 8_200, 20, now)}, customer: true}
			api.users["nora"] = &fakeUser{keys: []fakeKey{newKey("pro", 9_600, 25, now)}, customer: true}
			api.users["noah"] = &fakeUser{keys: []fakeKey{newKey("pro", 10_000, 27, now)}, customer: true,
				days: []int64{300, 400, 380, 390, 420, 410, 350, 300, 360, 380, 370, 390, 400, 420, 380, 360, 370, 380, 390, 400, 410, 300, 280, 310, 290, 360, 330, 170}}
			api.users["tess"] = &fakeUser{keys: []fakeKey{newKey("team", 100_000, 27, now)}, customer: true}
		})
		for _, tc := range []struct {
			user, level string
			want        []string
			upgrade     bool
		}{
			{"nina", "80", []string{"82% of this cycle’s calls used", "1,800 of 10,000 calls are left", "Team gives 100,000 calls"}, true},
			{"nora", "95", []string{"Almost out of calls: 96% used", "Only 400 of 10,000", "calls get HTTP 429"}, true},
			{"noah", "100", []string{"You have used all of this cycle’s calls", "now get HTTP 429", "Monthly API quota exceeded", "resets on"}, true},
			{"tess", "100", []string{"now get HTTP 429", "resets on"}, false},
		} {
			for _, vp := range viewports {
				if vp.name == "mobile" && tc.user != "noah" {
					continue
				}
				tab := browser.NewTab(t, vp.width, vp.height)
				signIn(tab, tc.user)
				tab.WaitFor(`!document.getElementById("quota-alert").hidden`)
				if lvl := webtest.Eval[string](tab, `document.getElementById("quota-alert").dataset.level`); lvl != tc.level {
					t.Errorf("%s: alert level %q, want %q", tc.user, lvl, tc.level)
				}
				alert := text(tab, "#quota-alert")
				for _, w := range tc.want {
					if !strings.Contains(alert, w) {
						t.Errorf("%s, %s: the alert %q lacks %q", tc.user, vp.name, alert, w)
					}
				}
				if !zonedTime.MatchString(alert) {
					t.Errorf("%s: the alert %q does not tell the reset's time and zone", tc.user, alert)
				}
				if got := visible(tab, `#quota-alert button[data-plan="team"]`); got != tc.upgrade {
					t.Errorf("%s: upgrade offered in the alert: %v, want %v", tc.user, got, tc.upgrade)
				}
				if tc.level == "100" {
					tab.CheckAxe(vp.name + ", quota spent")
					if vp.name == "mobile" {
						noOverflow(tab, vp.width, "quota spent")
					}
					if tc.user == "noah" {
						tab.Screenshot(filepath.Join(docsDir, map[string]string{"desktop": "account-near-limit.png", "mobile": "account-near-limit-mobile.png"}[vp.name]))
					}
				} else {
					tab.CheckAxe(vp.name + ", " + tc.level + "% used")
				}
				noProblems(tab)
			}
		}
	})

	t.Run("upgrade, checkout, reveal", func(t *testing.T) {
		api.set(func() {
			api.users["uma"] = &fakeUser{keys: []fakeKey{newKey("pro", 9_700, 26, now)}, customer: true}
			api.checkouts = nil
			api.pageNoAuth = 0
		})
		tab := browser.NewTab(t, 1280, 900)
		signIn(tab, "uma")
		tab.Do(chromedp.Click(`#quota-alert button[data-plan="team"]`))
		// The page goes where the server said: Stripe's URL, on another site.
		tab.WaitFor(`location.href === ` + jsString(api.stripe+"/c/pay/cs_test_team"))
		api.set(func() {
			if !slices.Equal(api.checkouts, []string{"team"}) {
				t.Errorf("checkouts asked for %v, want [team]", api.checkouts)
			}
		})
		// Paid: Stripe sends the browser back, a navigation of another site's.
		tab.Do(chromedp.Click("#pay"))
		tab.WaitFor(`document.body && document.body.dataset.signedIn === "true" && !document.getElementById("checkout-wait").hidden`)
		if n := webtest.Eval[string](tab, `location.search`); n != "" {
			t.Errorf("the address keeps %q after the return", n)
		}
		api.set(func() {
			if api.pageNoAuth == 0 {
				t.Error("the return from Stripe carried the SameSite=Strict cookie: the test does not test the resume")
			}
		})
		if got := text(tab, "#checkout-wait"); !strings.Contains(got, "Waiting for Stripe to confirm your payment") {
			t.Errorf("waiting banner %q", got)
		}
		tab.CheckAxe("desktop, waiting for the webhook")
		// The webhook arrives; the page reveals the new key by itself, once.
		raw := api.completeCheckout("uma", "team")
		tab.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
		if got := text(tab, "#secret-key"); got != raw {
			t.Errorf("revealed %q, want the key the checkout issued", got)
		}
		if got := text(tab, "#secret-note"); got != "Your Team plan is active: 100,000 calls per 30-day cycle." {
			t.Errorf("reveal note %q", got)
		}
		if got := text(tab, "#secret-warning"); got != "Treat this like a password. It will not be shown again." {
			t.Errorf("reveal warning %q", got)
		}
		tab.Do(chromedp.Click("#copy-button"))
		tab.WaitFor(`document.getElementById("copy-status").textContent !== ""`)
		tab.Do(chromedp.Click("#secret-dialog [data-close]"))
		tab.WaitFor(`!document.getElementById("secret-dialog").open && document.querySelector(".key .key-mask").textContent === ` + jsString(maskOf(raw)))
		if !webtest.Eval[bool](tab, `document.getElementById("checkout-wait").hidden && document.getElementById("reveal-banner").hidden && document.getElementById("quota-alert").hidden`) {
			t.Error("after the reveal a banner or the old alert is still shown")
		}
		if webtest.Eval[bool](tab, `document.documentElement.outerHTML.includes(`+jsString(raw)+`)`) {
			t.Error("the revealed key is still in the DOM")
		}
		if got := text(tab, "#plan"); !strings.Contains(got, "Team plan") || strings.Contains(got, "Upgrade") {
			t.Errorf("after the upgrade the plan says %q", got)
		}

		// Manage billing goes to the portal's URL.
		tab.Do(chromedp.Click("#portal-button"))
		tab.WaitFor(`location.href === ` + jsString(api.stripe+"/p/session/bps_test"))
		// Back from a cancelled checkout: news, not an error.
		tab.Do(chromedp.Navigate(api.stripe + "/c/pay/cs_test_pro"))
		tab.Do(chromedp.Click("#back"))
		tab.WaitFor(`document.body && document.body.dataset.signedIn === "true" && !document.getElementById("notice").hidden`)
		if got := text(tab, "#notice"); !strings.Contains(got, "Checkout was cancelled") ||
			!webtest.Eval[bool](tab, `document.getElementById("notice").classList.contains("notice-info")`) {
			t.Errorf("cancelled checkout: notice %q", got)
		}
		tab.CheckAxe("desktop, checkout cancelled")
		noProblems(tab)

		// A user without a Stripe customer, and a server without billing.
		api.set(func() { api.users["uma"].customer = false })
		tab.Do(chromedp.Navigate(page))
		tab.WaitFor(loaded)
		tab.Do(chromedp.Click("#portal-button"))
		tab.WaitFor(`!document.getElementById("notice").hidden`)
		if got := text(tab, "#notice-text"); !strings.Contains(got, "no billing account for you yet") {
			t.Errorf("portal without customer: %q", got)
		}
		api.set(func() { api.billingOff = true; api.users["uma"].keys = []fakeKey{newKey("pro", 10, 1, now)} })
		tab.Do(chromedp.Navigate(page))
		tab.WaitFor(loaded)
		tab.Do(chromedp.Click(`#plan-offers button[data-plan="team"]`))
		tab.WaitFor(`!document.getElementById("notice").hidden`)
		if got := text(tab, "#notice-text"); got != "Billing is not configured on this server." {
			t.Errorf("checkout without billing: %q", got)
		}
		api.set(func() { api.billingOff = false })
		noProblems(tab)
	})

	t.Run("no key: never had one, or revoked", func(t *testing.T) {
		api.set(func() {
			revoked := func(reason string) fakeKey {
				k := newKey("pro", 40, 40, now)
				k.Status, k.RevokedAt, k.RevokeReason = "revoked", ptr(now.AddDate(0, 0, -2)), reason
				return k
			}
			api.users["dave"] = &fakeUser{keys: []fakeKey{revoked("billing: cancelled")}, customer: true}
			api.users["erin"] = &fakeUser{keys: []fakeKey{revoked("billing: payment failed")}, customer: true}
			api.users["fred"] = &fakeUser{keys: []fakeKey{revoked("admin revoke")}}
			api.users["gina"] = &fakeUser{keys: []fakeKey{revoked("billing: no paid plan")}, customer: true}
			api.users["hank"] = &fakeUser{keys: []fakeKey{revoked("")}}
		})
		for _, tc := range []struct{ user, title, want string }{
			{"carol", "No API key yet", "You have no plan yet"},
			{"dave", "Your API key no longer works", "Your subscription ended"},
			{"erin", "Your API key no longer works", "A payment failed"},
			{"fred", "Your API key no longer works", "An administrator revoked your key"},
			{"gina", "Your API key no longer works", "Your subscription ended or a payment failed"},
			{"hank", "Your API key no longer works", "no key works for this account now"},
		} {
			tab := browser.NewTab(t, 1280, 900)
			signIn(tab, tc.user)
			tab.WaitFor(`!document.getElementById("keys-empty").hidden`)
			if n := webtest.Eval[int](tab, `document.querySelectorAll(".key").length`); n != 0 {
				t.Errorf("%s: %d key cards", tc.user, n)
			}
			empty := text(tab, "#keys-empty")
			if !strings.Contains(empty, tc.title) || !strings.Contains(empty, tc.want) {
				t.Errorf("%s: the page says %q, want %q and %q", tc.user, empty, tc.title, tc.want)
			}
			if tc.user != "carol" && !strings.Contains(empty, "403") {
				t.Errorf("%s: %q does not say what a call with the old key gets", tc.user, empty)
			}
			offers := text(tab, "#plan-offers")
			if !strings.Contains(offers, "Subscribe to Pro") || !strings.Contains(offers, "Subscribe to Team") {
				t.Errorf("%s: offers %q", tc.user, offers)
			}
			if got := webtest.Eval[string](tab, `document.getElementById("curl-example").textContent`); got != `curl -sS "`+ts.URL+`/events/public"` {
				t.Errorf("%s: curl without a key %q", tc.user, got)
			}
			if tc.user == "carol" || tc.user == "gina" {
				tab.CheckAxe("desktop, no key (" + tc.user + ")")
			}
			noProblems(tab)
		}
		// With no plan for sale (GET /keys lists none) the page offers nothing.
		api.set(func() { api.noPlans = true })
		tab := browser.NewTab(t, 375, 812)
		signIn(tab, "carol")
		if got := text(tab, "#plan-offers"); strings.Contains(got, "Subscribe") {
			t.Errorf("offers without plans for sale: %q", got)
		}
		if got := text(tab, "#keys-empty"); !strings.Contains(got, "No plan is for sale here") {
			t.Errorf("no key and no plan for sale: %q", got)
		}
		tab.CheckAxe("mobile, no key")
		noOverflow(tab, 375, "no key")
		api.set(func() { api.noPlans = false })
		noProblems(tab)
	})

	t.Run("reveal once, errors, expiry", func(t *testing.T) {
		pending := rawKey()
		api.set(func() { api.users["alice"].pending = pending })
		tab := browser.NewTab(t, 1280, 900)
		signIn(tab, "alice")
		tab.WaitFor(`!document.getElementById("reveal-banner").hidden`)
		tab.CheckAxe("desktop, reveal banner")
		tab.Do(chromedp.Click("#reveal-button"))
		tab.WaitFor(`document.getElementById("secret-dialog").open`)
		if got := text(tab, "#secret-key"); got != pending {
			t.Errorf("revealed %q, want the pending key", got)
		}
		tab.Do(chromedp.Click("#secret-dialog [data-close]"))
		tab.WaitFor(`!document.getElementById("secret-dialog").open`)
		if !webtest.Eval[bool](tab, `document.getElementById("reveal-banner").hidden && !document.documentElement.outerHTML.includes(`+jsString(pending)+`)`) {
			t.Error("after the reveal the banner or the key is still on the page")
		}

		for _, tc := range []struct{ fail, want string }{
			{"500", "The server had a problem (HTTP 500)."},
			{"down", "Can’t reach the ReleaseRadar server."},
		} {
			api.set(func() { api.fail = tc.fail })
			tab.Do(chromedp.Reload())
			tab.WaitFor(`!document.getElementById("notice").hidden`)
			got := text(tab, "#notice-text")
			if !strings.Contains(got, tc.want) || strings.ContainsAny(got, "{}") {
				t.Errorf("%s: notice = %q, want %q and no JSON", tc.fail, got, tc.want)
			}
		}
		tab.CheckAxe("desktop, error notice")
		// The server comes back: Try again lists the keys.
		api.set(func() { api.fail = "" })
		tab.Do(chromedp.Click("#notice-retry"))
		tab.WaitFor(`document.getElementById("notice").hidden && document.querySelector(".key")`)
		// The token expires while the page is open: back to sign-in, with a message.
		api.set(func() { api.fail = "401" })
		tab.Do(chromedp.Reload())
		tab.WaitFor(`!document.getElementById("signin").hidden && document.getElementById("keys").hidden`)
		if got := text(tab, "#signin-message"); got != "Your session has expired. Paste a new token to sign in." {
			t.Errorf("expired message = %q", got)
		}
		api.set(func() { api.fail = "" })

		// The session expires between opening the confirmation and rotating: the
		// sign-in form says the key was not rotated.
		tab.Do(chromedp.Reload())
		tab.WaitFor(loaded)
		before := text(tab, ".key .key-mask")
		tab.Do(chromedp.Click(".key .rotate"))
		tab.WaitFor(`document.getElementById("confirm-dialog").open`)
		api.set(func() { api.expired = true })
		tab.Do(chromedp.Click("#confirm-rotate"))
		tab.WaitFor(`!document.getElementById("signin").hidden && document.activeElement.id === "token"`)
		if got := text(tab, "#signin-message"); !strings.Contains(got, "before the key was rotated, so your key was not changed") {
			t.Errorf("expiry mid-rotation: %q", got)
		}
		if webtest.Eval[bool](tab, `document.getElementById("signin-message").classList.contains("notice-error")`) {
			t.Error("an expired session is shown as the user's error")
		}
		tab.CheckAxe("desktop, session expired mid-rotation")
		api.set(func() {
			api.expired = false
			if got := api.users["alice"].keys[0].Masked; got != before {
				t.Errorf("the key changed to %s though the rotation was refused", got)
			}
		})
		noProblems(tab)
	})

	t.Run("signed out", func(t *testing.T) {
		for _, vp := range viewports {
			tab := browser.NewTab(t, vp.width, vp.height)
			tab.Do(chromedp.Navigate(page))
			tab.WaitFor(`document.activeElement && document.activeElement.id === "token"`)
			tab.CheckAxe(vp.name + ", signed out")
			tab.Do(chromedp.SendKeys("#token", "tok-bob"), chromedp.Click("#signin-form button[type=submit]"))
			tab.WaitFor(loaded)
			tab.CheckAxe(vp.name + ", signed in")
			if vp.name == "mobile" {
				noOverflow(tab, vp.width, "signed in")
				if !visible(tab, "#user-id") || text(tab, "#user-id") != "bob" {
					t.Error("mobile: Signed in as bob is not shown")
				}
			}
			tab.Do(chromedp.Click(".account button[type=submit]"))
			tab.WaitFor(`document.body.dataset.signedIn === "false" && !document.getElementById("signin-message").hidden`)
			if got := text(tab, "#signin-message"); got != "You are signed out." {
				t.Errorf("%s: after sign-out %q", vp.name, got)
			}
			// Signing out is news, not an error.
			if !webtest.Eval[bool](tab, `document.getElementById("signin-message").classList.contains("notice-info")`) {
				t.Errorf("%s: the sign-out message is styled as %q", vp.name, webtest.Eval[string](tab, `document.getElementById("signin-message").className`))
			}
			tab.CheckAxe(vp.name + ", signed out after sign-out")
			noProblems(tab)
		}
	})
}

// TestAxeFindsViolations shows that the axe-core check can fail: a page with an
// image without a text alternative and an unlabelled input is reported.
func TestAxeFindsViolations(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, `<!doctype html><html lang="en"><title>Broken</title><main><img src="data:,"><input type="text"></main></html>`)
	}))
	defer ts.Close()
	tab := webtest.NewBrowser(t, time.Minute).NewTab(t, 800, 600)
	tab.Do(chromedp.Navigate(ts.URL))
	var ids []string
	for _, v := range tab.Axe().Violations {
		ids = append(ids, v.ID)
	}
	for _, want := range []string{"image-alt", "label"} {
		if !slices.Contains(ids, want) {
			t.Errorf("axe found %q on a broken page, want %s among them", ids, want)
		}
	}
}
