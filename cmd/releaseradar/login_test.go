package main

// Sign-in links (issue 14, "Real sign-in"): `admin login-link` on the real binary,
// GET /account/login with its URL, the session cookie it sets, and the refusals.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/loginlink"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// Bad flags are usage errors (exit 2) that print nothing on stdout and touch no
// database.
func TestLoginLinkUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"RR_DATABASE_URL": "sqlite:" + dir + "/never.db"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--user is required"},
		{[]string{"--user", "  "}, "--user is required"},
		{[]string{"--user", strings.Repeat("u", 201)}, "--user is longer than 200 characters"},
		{[]string{"--user", "u", "--ttl", "0s"}, "--ttl must be positive"},
		{[]string{"--user", "u", "--ttl", "-1m"}, "--ttl must be positive"},
		{[]string{"--user", "u", "--ttl", "169h"}, "at most 168h0m0s"},
		{[]string{"--user", "u", "--ttl", "soon"}, "invalid value"},
		{[]string{"--user", "u", "extra"}, `unexpected argument "extra"`},
		{[]string{"--plan", "pro"}, "flag provided but not defined"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"admin", "login-link"}, tc.args...), &stdout, &stderr, getenv)
		if code != 2 || stdout.Len() != 0 || !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "usage:") {
			t.Errorf("login-link %q: exit %d, stdout %q, stderr %q; want 2, nothing, %q and the usage", tc.args, code, stdout.String(), stderr.String(), tc.want)
		}
	}
	env["RR_PUBLIC_URL"] = "ftp://files.example"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"admin", "login-link", "--user", "u"}, &stdout, &stderr, getenv); code != 1 || stdout.Len() != 0 || !strings.Contains(stderr.String(), "RR_PUBLIC_URL") {
		t.Errorf("a bad RR_PUBLIC_URL: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// signInLink, the router's web.Config.Login, spends a link once and opens a
// session that the dashboard's token check accepts for the link's user.
func TestSignInLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newInProcess(t, sqliteEnv(t), nil)
	links := p.app.loginLinks()
	if err := links.Bootstrap(ctx); err != nil { // openApp's own once wired; idempotent
		t.Fatal(err)
	}
	tok, _, err := links.Create(ctx, "glue-user", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	session, err := p.app.signInLink(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if user, err := p.app.signer.Verify(session); err != nil || user != "glue-user" {
		t.Fatalf("the session verifies as %q, %v", user, err)
	}
	for _, bad := range []string{tok, "", strings.Repeat("A", loginlink.TokenLen)} {
		session, err := p.app.signInLink(ctx, bad)
		if session != "" || !errors.Is(err, loginlink.ErrInvalid) {
			t.Fatalf("signInLink(%.8q…) = %q, %v; want ErrInvalid", bad, session, err)
		}
		if status, _, _ := problem.For(err); status != http.StatusUnauthorized {
			t.Fatalf("a refused link is answered %d by the table, want 401 (a 4xx: the page's redirect)", status)
		}
	}
}

// linkOrigin is the RR_PUBLIC_URL of the end-to-end test: links must start with
// it, and the test sends them to the server's real address instead.
const linkOrigin = "https://rr.example.test"

// noRedirect is a client that hands back redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// visit GETs target (a path and query) as a browser following a link would,
// without following the redirect, and checks the answer against the OpenAPI
// document. It may run on any goroutine.
func (in *instance) visit(t *testing.T, target string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, in.base+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", target, err)
		return response{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	in.checkContract(t, req, nil, resp, b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// session returns r's rr_session cookie, or nil.
func (r response) session() *http.Cookie {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "rr_session" {
			return c
		}
	}
	return nil
}

const (
	pagePath   = "/account/api-keys"
	linkRefuse = pagePath + "?signin=link-expired"
)

// wantRefused checks that r sends the browser to the page with the reason, signed
// out.
func wantRefused(t *testing.T, name string, r response) {
	t.Helper()
	if r.status != http.StatusFound || r.header.Get("Location") != linkRefuse {
		t.Fatalf("%s: %d Location %q; want 302 to %s", name, r.status, r.header.Get("Location"), linkRefuse)
	}
	if c := r.session(); c == nil || c.Value != "" || c.MaxAge >= 0 {
		t.Fatalf("%s: session cookie %v, want it cleared", name, c)
	}
}

// TestLoginLinkEndToEnd: admin login-link → GET its URL → the cookie signs in the
// page and /keys; a second use, an expired link, an unknown or missing token are
// sent to the page with ?signin=link-expired and spend the address's budget; of
// two racing uses one signs in; no token reaches the log.
//
// It needs the server's wiring of the sign-in links (the store's Bootstrap in
// openApp, web.Config.Login in the router).
func TestLoginLinkEndToEnd(t *testing.T) {
	bin := binary(t)
	t.Run("sqlite", func(t *testing.T) { loginLinkEndToEnd(t, bin, "sqlite:"+testenv.SQLitePath(t)) })
	t.Run("postgres", func(t *testing.T) { loginLinkEndToEnd(t, bin, testenv.PostgresURL(t)) })
}

func loginLinkEndToEnd(t *testing.T, bin, database string) {
	const publicBudget = 8 // per minute and address
	in := start(t, bin, []string{
		"RR_DATABASE_URL=" + database,
		"RR_PUBLIC_URL=" + linkOrigin + "/",
		"RR_PLAN_RATES=public=8-M",
	})
	var tokens []string // every token the run saw; none may reach the log
	// link runs admin login-link and returns the path and query of its URL.
	link := func(args ...string) string {
		t.Helper()
		out := in.adminCmd(append([]string{"login-link"}, args...)...)
		u, err := url.Parse(out)
		if err != nil || strings.ContainsAny(out, " \n") || u.Scheme+"://"+u.Host != linkOrigin || u.Path != "/account/login" {
			t.Fatalf("admin login-link printed %q, want one %s/account/login?token=… URL", out, linkOrigin)
		}
		tok := u.Query().Get("token")
		if len(tok) != loginlink.TokenLen || len(u.Query()) != 1 {
			t.Fatalf("the link's query %q", u.RawQuery)
		}
		tokens = append(tokens, tok)
		return u.RequestURI()
	}
	failures := 0 // refused links so far: each spent the address's budget

	key := in.adminCmd("grant", "--user", "link-user", "--plan", "pro")
	first := link("--user", "link-user")

	// The link signs in: a session cookie, then the page.
	r := in.visit(t, first)
	if r.status != http.StatusFound || r.header.Get("Location") != pagePath {
		t.Fatalf("first use: %d Location %q; want 302 to %s", r.status, r.header.Get("Location"), pagePath)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("first use: Cache-Control %q", cc)
	}
	c := r.session()
	if c == nil || c.Value == "" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure {
		t.Fatalf("session cookie %+v; want HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", c)
	}
	cookie := "rr_session=" + c.Value
	kl := in.get("/keys", "Cookie", cookie)
	if kl.status != http.StatusOK || !bytes.Contains(kl.body, []byte(`"user_id":"link-user"`)) ||
		!bytes.Contains(kl.body, []byte(key[len(key)-4:])) {
		t.Fatalf("GET /keys with the link's cookie: %d %s", kl.status, kl.body)
	}
	if page := in.get(pagePath, "Cookie", cookie); page.status != http.StatusOK || !bytes.Contains(page.body, []byte(`id="user-id">link-user<`)) {
		t.Fatalf("the page with the link's cookie is not signed in: %d", page.status)
	}

	// A link clicked on another site's page (webmail) gets a page of this site
	// that moves on, so that the SameSite=Strict cookie goes along.
	r = in.visit(t, link("--user", "link-user"), "Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate")
	if r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`http-equiv="refresh" content="0; url=`+pagePath+`"`)) ||
		r.session() == nil || r.session().Value == "" {
		t.Fatalf("a link from another site: %d %s", r.status, r.body)
	}

	// Used once: refused, and the page says why.
	wantRefused(t, "second use", in.visit(t, first))
	failures++
	if page := in.get(linkRefuse); page.status != http.StatusOK || !bytes.Contains(page.body, []byte("sign-in link has been used or has expired")) {
		t.Fatalf("the page after a refused link: %d, without the reason", page.status)
	}

	// Expired: a link of one second, used two seconds later.
	expiring := link("--user", "link-user", "--ttl", "1s")
	time.Sleep(1100 * time.Millisecond)
	wantRefused(t, "expired link", in.visit(t, expiring))
	failures++

	// Unknown, malformed and missing tokens.
	for _, target := range []string{
		"/account/login?token=" + strings.Repeat("A", loginlink.TokenLen),
		"/account/login?token=" + url.QueryEscape("' OR 1=1 --"),
		"/account/login?token=" + strings.Repeat("x", 4000),
		"/account/login",
	} {
		wantRefused(t, target[:min(len(target), 60)], in.visit(t, target))
		failures++
	}

	// Two browsers racing with one link: one signs in.
	racing := link("--user", "link-user")
	var wg sync.WaitGroup
	results := make([]response, 2)
	for i := range results {
		wg.Go(func() { results[i] = in.visit(t, racing) })
	}
	wg.Wait()
	won := 0
	for _, r := range results {
		switch {
		case r.status == http.StatusFound && r.header.Get("Location") == pagePath && r.session() != nil && r.session().Value != "":
			won++
		case r.status == http.StatusFound && r.header.Get("Location") == linkRefuse:
			failures++
		default:
			t.Fatalf("a racing use: %d %v", r.status, r.header)
		}
	}
	if won != 1 {
		t.Fatalf("%d of two racing uses signed in, want 1", won)
	}

	// Refusals spend the address's budget: guessing tokens runs into 429.
	limited := false
	for range 2 * publicBudget {
		r := in.visit(t, "/account/login?token="+strings.Repeat("B", loginlink.TokenLen))
		if r.status == http.StatusTooManyRequests {
			wantProblem(t, "guessed tokens", r, http.StatusTooManyRequests, "Rate limit exceeded")
			if r.header.Get("Retry-After") == "" || r.session() != nil {
				t.Fatalf("429: Retry-After %q, cookie %v", r.header.Get("Retry-After"), r.session())
			}
			limited = true
			break
		}
		wantRefused(t, "guessed token", r)
		failures++
	}
	if !limited {
		t.Fatalf("%d refused links from one address and no 429 (budget %d a minute)", failures, publicBudget)
	}
	// A real link still signs in: only refusals spend the budget.
	if r := in.visit(t, link("--user", "link-user")); r.status != http.StatusFound || r.header.Get("Location") != pagePath {
		t.Fatalf("a real link once the budget is spent: %d Location %q", r.status, r.header.Get("Location"))
	}

	// A connection the client opened and never used would hold the server's
	// graceful shutdown for 5 s.
	noRedirect.CloseIdleConnections()
	in.stop(true)
	log := in.log.String()
	for _, tok := range tokens {
		if strings.Contains(log, tok) {
			t.Fatal("the log holds a sign-in link's token")
		}
	}
	if strings.Contains(log, "token=") || strings.Contains(log, c.Value) {
		t.Fatal("the log holds a link's query or the session it opened")
	}
	if !strings.Contains(log, `"path":"/account/login","status":302`) {
		t.Fatal("no access log line for /account/login")
	}
}
