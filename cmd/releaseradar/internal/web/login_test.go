package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/releaseradar/tollgate/internal/problem"
)

// errLinkRefused stands in for loginlink.ErrInvalid: a table error answered 4xx.
var errLinkRefused = problem.New(problem.BadSession, "test: link refused")

// fakeLinks is a LoginFunc over links "link-<user>", each usable once; fail makes
// it fail as a database would.
type fakeLinks struct {
	mu   sync.Mutex
	used map[string]bool
	fail error
	got  []string // tokens asked for
	ctx  context.Context
}

func (f *fakeLinks) login(ctx context.Context, token string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, token)
	f.ctx = ctx
	if f.fail != nil {
		return "", f.fail
	}
	user, ok := strings.CutPrefix(token, "link-")
	if !ok || user == "" || f.used[token] {
		return "", fmt.Errorf("wrapped: %w", errLinkRefused)
	}
	if f.used == nil {
		f.used = map[string]bool{}
	}
	f.used[token] = true
	return "tok-" + user, nil
}

func TestLoginLink(t *testing.T) {
	t.Parallel()
	links := &fakeLinks{}
	spent := 0
	h := Handler(verifyFake, Config{Login: links.login, OnBadToken: func(http.ResponseWriter, *http.Request) bool {
		spent++
		return true
	}})

	type ctxKey struct{}
	r := httptest.NewRequest(http.MethodGet, "http://"+host+LoginPath+"?token=link-alice", nil)
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, "the request's"))
	res := serve(h, r)
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != PagePath {
		t.Fatalf("first use: %d Location %q, want 302 to the page", res.StatusCode, res.Header.Get("Location"))
	}
	c := sessionCookie(t, res)
	if c.Value != "tok-alice" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.MaxAge != 0 {
		t.Fatalf("cookie %+v, want tok-alice, HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP, a browser-session cookie", c)
	}
	if cc, rp := res.Header.Get("Cache-Control"), res.Header.Get("Referrer-Policy"); cc != "no-store" || rp != "no-referrer" {
		t.Fatalf("Cache-Control %q, Referrer-Policy %q", cc, rp)
	}
	if links.ctx.Value(ctxKey{}) != "the request's" || len(links.got) != 1 || links.got[0] != "link-alice" {
		t.Fatalf("Login got %q with another context", links.got)
	}
	if spent != 0 {
		t.Fatalf("an accepted link spent the address budget %d times", spent)
	}
	// The cookie it set signs the page in.
	page := httptest.NewRequest(http.MethodGet, "http://"+host+PagePath, nil)
	page.AddCookie(c)
	body, _ := io.ReadAll(serve(h, page).Body)
	if !strings.Contains(string(body), `data-signed-in="true"`) || !strings.Contains(string(body), `id="user-id">alice<`) {
		t.Fatal("the page is not signed in with the link's cookie")
	}

	// Used, unknown, empty and missing tokens: the page with the reason, signed
	// out, each spending the budget once, and only the non-empty ones reaching
	// Login.
	for i, target := range []string{
		LoginPath + "?token=link-alice",
		LoginPath + "?token=nonsense",
		LoginPath + "?token=",
		LoginPath,
		LoginPath + "?other=link-bob",
	} {
		r := httptest.NewRequest(http.MethodGet, "http://"+host+target, nil)
		r.AddCookie(&http.Cookie{Name: CookieName, Value: "tok-alice"})
		res := serve(h, r)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != PagePath+"?signin=link-expired" {
			t.Errorf("%s: %d Location %q, want 302 to the page with ?signin=link-expired", target, res.StatusCode, res.Header.Get("Location"))
			continue
		}
		if c := sessionCookie(t, res); c.Value != "" || c.MaxAge >= 0 {
			t.Errorf("%s: cookie %+v, want it cleared", target, c)
		}
		if res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", target, res.Header.Get("Cache-Control"))
		}
		if spent != i+1 {
			t.Errorf("%s: the budget was spent %d times in all, want %d", target, spent, i+1)
		}
	}
	if len(links.got) != 3 {
		t.Errorf("Login was asked %d times (%q), want 3: empty and missing tokens never reach it", len(links.got), links.got)
	}
}

// A browser that another site's page sent (a link clicked in webmail) would not
// carry the SameSite=Strict cookie along a redirect: it gets a page of this site
// that moves on by itself. Other arrivals get the redirect.
func TestLoginLinkFromAnotherSite(t *testing.T) {
	t.Parallel()
	h := Handler(verifyFake, Config{Login: (&fakeLinks{}).login})
	visit := func(token, site string) *http.Response {
		r := httptest.NewRequest(http.MethodGet, "http://"+host+LoginPath+"?token="+token, nil)
		if site != "" {
			r.Header.Set("Sec-Fetch-Site", site)
		}
		return serve(h, r)
	}
	res := visit("link-frank", "cross-site")
	body, _ := io.ReadAll(res.Body)
	hd := res.Header
	if res.StatusCode != http.StatusOK || hd.Get("Location") != "" || !strings.HasPrefix(hd.Get("Content-Type"), "text/html") {
		t.Fatalf("from another site: %d %q Location %q, want a 200 page", res.StatusCode, hd.Get("Content-Type"), hd.Get("Location"))
	}
	if c := sessionCookie(t, res); c.Value != "tok-frank" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie %+v", c)
	}
	if hd.Get("Cache-Control") != "no-store" || hd.Get("Referrer-Policy") != "no-referrer" ||
		hd.Get("Content-Security-Policy") != contentSecurityPolicy || hd.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("headers %v", hd)
	}
	for _, want := range []string{`<meta http-equiv="refresh" content="0; url=` + PagePath + `">`, `<a href="` + PagePath + `">`, `<html lang="en">`, "<title>"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the page lacks %s:\n%s", want, body)
		}
	}
	for i, site := range []string{"", "none", "same-origin", "same-site"} {
		res := visit(fmt.Sprintf("link-user%d", i), site)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != PagePath {
			t.Errorf("Sec-Fetch-Site %q: %d Location %q, want 302 to the page", site, res.StatusCode, res.Header.Get("Location"))
		}
	}
	// A refused link from another site needs no cookie to show its reason.
	if res := visit("link-frank", "cross-site"); res.StatusCode != http.StatusFound || res.Header.Get("Location") != PagePath+"?signin=link-expired" {
		t.Fatalf("a used link from another site: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
}

// The page explains a refused link.
func TestLoginLinkMessage(t *testing.T) {
	t.Parallel()
	h := Handler(verifyFake, Config{})
	body, _ := io.ReadAll(serve(h, httptest.NewRequest(http.MethodGet, "http://"+host+PagePath+"?signin=link-expired", nil)).Body)
	want := template.HTMLEscapeString(messages["link-expired"])
	if !strings.Contains(string(body), want) {
		t.Fatalf("the page does not say %q", messages["link-expired"])
	}
}

func TestLoginLinkSecureCookie(t *testing.T) {
	t.Parallel()
	h := Handler(verifyFake, Config{Login: (&fakeLinks{}).login})
	r := httptest.NewRequest(http.MethodGet, "https://"+host+LoginPath+"?token=link-bob", nil)
	r.TLS = &tls.ConnectionState{}
	if c := sessionCookie(t, serve(h, r)); !c.Secure || c.Value != "tok-bob" {
		t.Fatalf("cookie over TLS %+v, want Secure", c)
	}
}

// When the address's budget is spent, OnBadToken's answer is the only one: no
// cookie, no redirect.
func TestLoginLinkBudgetSpent(t *testing.T) {
	t.Parallel()
	h := Handler(verifyFake, Config{Login: (&fakeLinks{}).login, OnBadToken: func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusTooManyRequests)
		return false
	}})
	res := serve(h, httptest.NewRequest(http.MethodGet, "http://"+host+LoginPath+"?token=bad", nil))
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Location") != "" || len(res.Cookies()) != 0 {
		t.Fatalf("refused: %d Location %q cookies %q; want OnBadToken's 429 alone", res.StatusCode, res.Header.Get("Location"), res.Header.Values("Set-Cookie"))
	}
	// A good link still signs in: only failures spend the budget.
	res = serve(h, httptest.NewRequest(http.MethodGet, "http://"+host+LoginPath+"?token=link-carol", nil))
	if res.StatusCode != http.StatusFound || sessionCookie(t, res).Value != "tok-carol" {
		t.Fatalf("a good link with the budget spent: %d", res.StatusCode)
	}
}

// A failing store is a 503 through OnError: no cookie, no redirect, no budget
// spent, and the link is not called expired.
func TestLoginLinkStoreFailure(t *testing.T) {
	t.Parallel()
	for _, fail := range []error{errors.New("dial tcp: connection refused"), context.DeadlineExceeded} {
		var gotErr error
		spent := false
		h := Handler(verifyFake, Config{
			Login:      (&fakeLinks{fail: fail}).login,
			OnBadToken: func(http.ResponseWriter, *http.Request) bool { spent = true; return true },
			OnError: func(w http.ResponseWriter, r *http.Request, err error) {
				gotErr = err
				WriteError(w, r, err)
			},
		})
		res := serve(h, httptest.NewRequest(http.MethodGet, "http://"+host+LoginPath+"?token=link-dave", nil))
		if res.StatusCode != http.StatusServiceUnavailable || !errors.Is(gotErr, fail) || spent ||
			len(res.Cookies()) != 0 || res.Header.Get("Location") != "" || res.Header.Get("Retry-After") == "" {
			t.Errorf("%v: %d, OnError got %v, budget spent %v, cookies %q", fail, res.StatusCode, gotErr, spent, res.Header.Values("Set-Cookie"))
		}
	}
	// A LoginFunc that accepts without a session is a failure too.
	h := Handler(verifyFake, Config{Login: func(context.Context, string) (string, error) { return "", nil }})
	res := serve(h, httptest.NewRequest(http.MethodGet, "http://"+host+LoginPath+"?token=x", nil))
	if res.StatusCode != http.StatusServiceUnavailable || len(res.Cookies()) != 0 {
		t.Fatalf("an empty session: %d, cookies %q", res.StatusCode, res.Header.Values("Set-Cookie"))
	}
}

// Only GET spends a link: HEAD (link checkers, mail scanners) and other methods
// are 405 with Allow: GET and never reach Login. Without Config.Login the path
// does not exist.
func TestLoginLinkMethods(t *testing.T) {
	t.Parallel()
	links := &fakeLinks{}
	h := Handler(verifyFake, Config{Login: links.login})
	for _, m := range []string{http.MethodHead, http.MethodPost, http.MethodPut, http.MethodOptions} {
		res := serve(h, httptest.NewRequest(m, "http://"+host+LoginPath+"?token=link-erin", nil))
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET" {
			t.Errorf("%s: %d Allow %q, want 405 GET", m, res.StatusCode, res.Header.Get("Allow"))
		}
	}
	if len(links.got) != 0 {
		t.Fatalf("Login was called for %q", links.got)
	}
	if res := serve(h, httptest.NewRequest(http.MethodGet, "http://"+host+LoginPath+"?token=link-erin", nil)); res.StatusCode != http.StatusFound {
		t.Fatalf("GET after the refused methods: %d, want the link still usable", res.StatusCode)
	}
	res := serve(Handler(verifyFake, Config{}), httptest.NewRequest(http.MethodGet, "http://"+host+LoginPath+"?token=link-erin", nil))
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("without Config.Login: %d, want 404", res.StatusCode)
	}
}

// Sign in with a single-use link: the first visit sets the cookie, the second is
// sent to the page with the reason.
func ExampleHandler_login() {
	used := map[string]bool{}
	login := func(_ context.Context, token string) (string, error) {
		if token != "link-token" || used[token] {
			return "", errLinkRefused
		}
		used[token] = true
		return "good-token", nil
	}
	h := Handler(func(string) (string, error) { return "alice", nil }, Config{Login: login})
	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://rr.example"+LoginPath+"?token=link-token", nil))
		fmt.Println(w.Code, w.Header().Get("Location"), w.Header().Get("Set-Cookie"))
	}
	// Output:
	// 302 /account/api-keys rr_session=good-token; Path=/; HttpOnly; SameSite=Strict
	// 302 /account/api-keys?signin=link-expired rr_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict
}
