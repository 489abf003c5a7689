package web

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// verifyFake accepts "tok-<user>" tokens and rejects everything else.
func verifyFake(token string) (string, error) {
	user, ok := strings.CutPrefix(token, "tok-")
	if !ok || user == "" {
		return "", errors.New("session: invalid or expired token")
	}
	return user, nil
}

const host = "rr.example"

func newRequest(method, target, body, contentType string) *http.Request {
	r := httptest.NewRequest(method, "http://"+host+target, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if method == http.MethodPost {
		r.Header.Set("Origin", "http://"+host)
	}
	return r
}

func serve(h http.Handler, r *http.Request) *http.Response {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func sessionCookie(t *testing.T, res *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %q", CookieName, res.Header.Values("Set-Cookie"))
	return nil
}

func TestSignInSetsCookie(t *testing.T) {
	t.Parallel()
	trustAll := func(*http.Request) bool { return true }
	tests := []struct {
		name        string
		cfg         Config
		body, ctype string
		setup       func(r *http.Request)
		wantStatus  int
		wantSecure  bool
		wantToken   string
	}{
		{name: "form", body: "token=tok-alice", ctype: "application/x-www-form-urlencoded",
			wantStatus: http.StatusSeeOther, wantToken: "tok-alice"},
		{name: "json", body: `{"token":"tok-bob"}`, ctype: "application/json",
			wantStatus: http.StatusNoContent, wantToken: "tok-bob"},
		{name: "bearer prefix and spaces dropped", body: `{"token":"  Bearer tok-carol \n"}`, ctype: "application/json",
			wantStatus: http.StatusNoContent, wantToken: "tok-carol"},
		{name: "tls", body: "token=tok-alice", ctype: "application/x-www-form-urlencoded",
			setup: func(r *http.Request) {
				r.TLS = &tls.ConnectionState{}
				r.Header.Set("Origin", "https://"+host)
			},
			wantStatus: http.StatusSeeOther, wantSecure: true, wantToken: "tok-alice"},
		{name: "forwarded https from trusted proxy", cfg: Config{TrustProxy: trustAll},
			body: "token=tok-alice", ctype: "application/x-www-form-urlencoded",
			setup:      func(r *http.Request) { r.Header.Set("X-Forwarded-Proto", "https, http") },
			wantStatus: http.StatusSeeOther, wantSecure: true, wantToken: "tok-alice"},
		{name: "forwarded https from untrusted client", body: "token=tok-alice", ctype: "application/x-www-form-urlencoded",
			setup:      func(r *http.Request) { r.Header.Set("X-Forwarded-Proto", "https") },
			wantStatus: http.StatusSeeOther, wantSecure: false, wantToken: "tok-alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRequest(http.MethodPost, SessionPath, tc.body, tc.ctype)
			if tc.setup != nil {
				tc.setup(r)
			}
			res := serve(Handler(verifyFake, tc.cfg), r)
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus == http.StatusSeeOther && res.Header.Get("Location") != PagePath {
				t.Errorf("Location = %q, want %q", res.Header.Get("Location"), PagePath)
			}
			c := sessionCookie(t, res)
			if c.Value != tc.wantToken {
				t.Errorf("cookie value = %q, want %q", c.Value, tc.wantToken)
			}
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
				t.Errorf("cookie flags: HttpOnly=%v SameSite=%v Path=%q, want true Strict /", c.HttpOnly, c.SameSite, c.Path)
			}
			if c.Secure != tc.wantSecure {
				t.Errorf("cookie Secure = %v, want %v", c.Secure, tc.wantSecure)
			}
			if c.MaxAge != 0 || !c.Expires.IsZero() {
				t.Errorf("cookie MaxAge=%d Expires=%v, want a browser-session cookie", c.MaxAge, c.Expires)
			}
		})
	}
}

func TestSignInRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		body, ctype  string
		origin       string
		wantStatus   int
		wantLocation string
		wantDetail   string
	}{
		{name: "bad token, form", body: "token=forged", ctype: "application/x-www-form-urlencoded",
			wantStatus: http.StatusSeeOther, wantLocation: PagePath + "?signin=invalid"},
		{name: "empty token, form", body: "token=+", ctype: "application/x-www-form-urlencoded",
			wantStatus: http.StatusSeeOther, wantLocation: PagePath + "?signin=missing"},
		{name: "bad token, json", body: `{"token":"forged"}`, ctype: "application/json",
			wantStatus: http.StatusUnauthorized, wantDetail: "Invalid or expired dashboard token"},
		{name: "no token, json", body: `{}`, ctype: "application/json",
			wantStatus: http.StatusUnauthorized, wantDetail: "Missing dashboard token"},
		{name: "broken json", body: `{"token":`, ctype: "application/json",
			wantStatus: http.StatusBadRequest, wantDetail: "Malformed sign-in request"},
		{name: "oversized body", body: `{"token":"tok-` + strings.Repeat("a", maxTokenBody) + `"}`, ctype: "application/json",
			wantStatus: http.StatusBadRequest, wantDetail: "Malformed sign-in request"},
		{name: "cross-site good token", body: "token=tok-alice", ctype: "application/x-www-form-urlencoded",
			origin: "https://evil.example", wantStatus: http.StatusForbidden, wantDetail: "Cross-site request refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRequest(http.MethodPost, SessionPath, tc.body, tc.ctype)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			res := serve(Handler(verifyFake, Config{}), r)
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d", res.StatusCode, tc.wantStatus)
			}
			for _, c := range res.Cookies() {
				if c.Name == CookieName && c.Value != "" {
					t.Errorf("a refused sign-in set the cookie to %q", c.Value)
				}
			}
			if tc.wantLocation != "" && res.Header.Get("Location") != tc.wantLocation {
				t.Errorf("Location = %q, want %q", res.Header.Get("Location"), tc.wantLocation)
			}
			if tc.wantDetail != "" {
				if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type = %q, want application/problem+json", ct)
				}
				var p struct {
					Status int
					Detail string
				}
				if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
					t.Fatal(err)
				}
				if p.Detail != tc.wantDetail || p.Status != tc.wantStatus {
					t.Errorf("problem = %+v, want status %d detail %q", p, tc.wantStatus, tc.wantDetail)
				}
			}
		})
	}
}

func TestOnErrorReplacesWriter(t *testing.T) {
	t.Parallel()
	var got error
	cfg := Config{OnError: func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		w.WriteHeader(http.StatusTeapot)
	}}
	r := newRequest(http.MethodPost, SessionPath, `{"token":"forged"}`, "application/json")
	res := serve(Handler(verifyFake, cfg), r)
	if res.StatusCode != http.StatusTeapot || !errors.Is(got, ErrBadToken) {
		t.Errorf("status %d, err %v; want 418 and ErrBadToken", res.StatusCode, got)
	}
}

func TestLogoutClearsCookie(t *testing.T) {
	t.Parallel()
	for _, ctype := range []string{"application/x-www-form-urlencoded", "application/json"} {
		r := newRequest(http.MethodPost, LogoutPath, "", ctype)
		r.AddCookie(&http.Cookie{Name: CookieName, Value: "tok-alice"})
		res := serve(Handler(verifyFake, Config{}), r)
		want := http.StatusSeeOther
		if ctype == "application/json" {
			want = http.StatusNoContent
		}
		if res.StatusCode != want {
			t.Fatalf("%s: status = %d, want %d", ctype, res.StatusCode, want)
		}
		c := sessionCookie(t, res)
		if c.Value != "" || c.MaxAge >= 0 || !c.HttpOnly || c.Path != "/" {
			t.Errorf("%s: logout cookie = %+v, want an empty value with Max-Age=0 on Path=/", ctype, c)
		}
	}

	r := newRequest(http.MethodPost, LogoutPath, "", "")
	r.Header.Set("Origin", "https://evil.example")
	res := serve(Handler(verifyFake, Config{}), r)
	if res.StatusCode != http.StatusForbidden || len(res.Cookies()) != 0 {
		t.Errorf("cross-site logout: status %d, cookies %v; want 403 and none", res.StatusCode, res.Cookies())
	}
}

func TestPage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cookie      string
		query       string
		want        []string
		notWant     []string
		wantCleared bool
	}{
		{name: "signed out", want: []string{`data-signed-in="false"`, `id="signin-form"`, `action="/account/session"`},
			notWant: []string{`id="key-list"`, "Signed in as"}},
		{name: "signed in", cookie: "tok-alice", want: []string{`data-signed-in="true"`, `<strong id="user-id">alice</strong>`, `id="key-list"`, `id="signin" class="card signin" aria-labelledby="signin-title" hidden`}},
		{name: "user id is escaped", cookie: "tok-<b>x</b>", want: []string{"&lt;b&gt;x&lt;/b&gt;"}, notWant: []string{"<b>x</b>"}},
		{name: "expired cookie", cookie: "expired", want: []string{messages["expired"], `data-signed-in="false"`}, wantCleared: true},
		{name: "failed sign-in message", query: "?signin=invalid", want: []string{"That token is not valid or has expired."}},
		{name: "unknown message key is not reflected", query: "?signin=%3Cscript%3E", notWant: []string{"<script>", "&lt;script"}},
		{name: "secret dialog text", want: []string{"Treat this like a password. It will not be shown again.", `role="dialog" aria-modal="true"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRequest(http.MethodGet, PagePath+tc.query, "", "")
			if tc.cookie != "" {
				r.Header.Set("Cookie", CookieName+"="+tc.cookie)
			}
			res := serve(Handler(verifyFake, Config{}), r)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", res.StatusCode)
			}
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
				if res.Header.Get(h) == "" {
					t.Errorf("missing header %s", h)
				}
			}
			if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe-inline") {
				t.Errorf("CSP = %q, want script-src 'self' and no unsafe-inline", csp)
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", res.Header.Get("Cache-Control"))
			}
			for _, s := range tc.want {
				if !strings.Contains(string(body), s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tc.notWant {
				if strings.Contains(string(body), s) {
					t.Errorf("page contains %q", s)
				}
			}
			cleared := false
			for _, c := range res.Cookies() {
				cleared = cleared || (c.Name == CookieName && c.MaxAge < 0)
			}
			if cleared != tc.wantCleared {
				t.Errorf("cookie cleared = %v, want %v", cleared, tc.wantCleared)
			}
		})
	}
}

// TestPageHasNoInlineScript keeps the page within its CSP: no inline scripts,
// handlers or style attributes, and no external resources.
func TestPageHasNoInlineScript(t *testing.T) {
	t.Parallel()
	for _, cookie := range []string{"", "tok-alice"} {
		r := newRequest(http.MethodGet, PagePath, "", "")
		if cookie != "" {
			r.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
		}
		body, _ := io.ReadAll(serve(Handler(verifyFake, Config{}), r).Body)
		page := string(body)
		if n := strings.Count(page, "<script"); n != 1 || !strings.Contains(page, `<script src="/account/assets/app.js?v=`) {
			t.Errorf("want exactly one external script tag, page has %d <script", n)
		}
		for _, bad := range []string{" onclick=", " onload=", " onsubmit=", " style=", "http://", "https://", "//cdn"} {
			if strings.Contains(page, bad) {
				t.Errorf("page contains %q", bad)
			}
		}
	}
}

func TestAssets(t *testing.T) {
	t.Parallel()
	h := Handler(verifyFake, Config{})
	for name, ctype := range map[string]string{"app.js": "text/javascript", "app.css": "text/css"} {
		res := serve(h, newRequest(http.MethodGet, AssetsPath+name, "", ""))
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) || len(body) < 100 {
			t.Errorf("%s: status %d, type %q, %d bytes", name, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
		r := newRequest(http.MethodGet, AssetsPath+name, "", "")
		r.Header.Set("If-None-Match", res.Header.Get("ETag"))
		if res := serve(h, r); res.StatusCode != http.StatusNotModified {
			t.Errorf("%s with its ETag: status %d, want 304", name, res.StatusCode)
		}
	}
	for _, p := range []string{AssetsPath + "page.html", AssetsPath + "nope.js", AssetsPath + "..%2fweb.go"} {
		if res := serve(h, newRequest(http.MethodGet, p, "", "")); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, res.StatusCode)
		}
	}
}

// TestScriptKeepsNoSecret guards the page's promise: the script never touches Web
// Storage or cookies, and never writes HTML from strings.
func TestScriptKeepsNoSecret(t *testing.T) {
	t.Parallel()
	js, err := assets.ReadFile("assets/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"localStorage", "sessionStorage", "document.cookie", "innerHTML", "outerHTML", "insertAdjacentHTML", "console.log", "eval("} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, auth, cookie string
		want               string
		wantCookie         bool
	}{
		{name: "none"},
		{name: "bearer", auth: "Bearer abc", want: "abc"},
		{name: "bearer wins over cookie", auth: "bearer abc", cookie: "def", want: "abc"},
		{name: "cookie", cookie: "def", want: "def", wantCookie: true},
		{name: "basic auth is not a token", auth: "Basic Zm9v", cookie: "def", want: "def", wantCookie: true},
		{name: "empty bearer falls back", auth: "Bearer  ", cookie: "def", want: "def", wantCookie: true},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodGet, "/keys", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if tc.cookie != "" {
			r.AddCookie(&http.Cookie{Name: CookieName, Value: tc.cookie})
		}
		got, fromCookie := Token(r)
		if got != tc.want || fromCookie != tc.wantCookie {
			t.Errorf("%s: Token = %q, %v; want %q, %v", tc.name, got, fromCookie, tc.want, tc.wantCookie)
		}
	}
}

func TestRequireOrigin(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h := RequireOrigin(Config{AllowedOrigins: []string{"https://app.example.com"}})(next)
	tests := []struct {
		name, method, auth, cookie, origin, fetchSite string
		want                                          int
	}{
		{name: "cookie POST same origin", method: "POST", cookie: "t", origin: "http://" + host, want: 200},
		{name: "cookie POST same origin, fetch metadata", method: "POST", cookie: "t", origin: "http://" + host, fetchSite: "same-origin", want: 200},
		{name: "cookie POST allowed origin", method: "POST", cookie: "t", origin: "https://app.example.com", fetchSite: "cross-site", want: 200},
		{name: "cookie POST cross-site", method: "POST", cookie: "t", origin: "https://evil.example", want: 403},
		{name: "cookie POST cross-site, fetch metadata", method: "POST", cookie: "t", origin: "https://evil.example", fetchSite: "cross-site", want: 403},
		{name: "cookie POST same-site subdomain", method: "POST", cookie: "t", origin: "http://other." + host, fetchSite: "same-site", want: 403},
		// No Sec-Fetch-Site and no Origin: not a browser (a browser sends Origin on
		// every POST), so there is no victim's cookie to abuse.
		{name: "cookie POST from no browser", method: "POST", cookie: "t", want: 200},
		{name: "cookie DELETE cross-site", method: "DELETE", cookie: "t", origin: "https://evil.example", want: 403},
		{name: "cookie GET cross-site", method: "GET", cookie: "t", origin: "https://evil.example", fetchSite: "cross-site", want: 200},
		{name: "bearer POST cross-site", method: "POST", auth: "Bearer t", origin: "https://evil.example", want: 403},
		{name: "bearer POST from no browser", method: "POST", auth: "Bearer t", want: 200},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, "http://"+host+"/keys/rotate", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if tc.cookie != "" {
			r.AddCookie(&http.Cookie{Name: CookieName, Value: tc.cookie})
		}
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.fetchSite != "" {
			r.Header.Set("Sec-Fetch-Site", tc.fetchSite)
		}
		res := serve(h, r)
		if res.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, res.StatusCode, tc.want)
		}
		if tc.want == 403 && res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: Content-Type %q, want problem+json", tc.name, res.Header.Get("Content-Type"))
		}
	}
}

// TestRoutesAnswerProblems: every path under /account/ that the package does not
// serve is a problem+json 404, and every path asked for with a method it does not
// serve a problem+json 405 with Allow (http.ServeMux answered both in plain text).
func TestRoutesAnswerProblems(t *testing.T) {
	t.Parallel()
	h := Handler(verifyFake, Config{})
	tests := []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/account/nope", 404, ""},
		{"GET", "/account/api-keys/", 404, ""},
		{"GET", "/account/assets/", 404, ""},
		{"GET", "/account/assets/app.js/x", 404, ""},
		{"POST", "/account/assets/nope.js", 404, ""},
		{"GET", "/account/assets/%00", 404, ""},
		{"DELETE", "/account/", 405, "GET, HEAD"},
		{"POST", PagePath, 405, "GET, HEAD"},
		{"PUT", PagePath, 405, "GET, HEAD"},
		{"OPTIONS", PagePath, 405, "GET, HEAD"},
		{"get", PagePath, 405, "GET, HEAD"},
		{"POST", AssetsPath + "app.js", 405, "GET, HEAD"},
		{"GET", SessionPath, 405, "POST"},
		{"HEAD", SessionPath, 405, "POST"},
		{"PATCH", LogoutPath, 405, "POST"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, "http://"+host+tc.path, nil)
		res := serve(h, r)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != tc.status || res.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: status %d, Allow %q; want %d, %q", tc.method, tc.path, res.StatusCode, res.Header.Get("Allow"), tc.status, tc.allow)
			continue
		}
		var p struct {
			Status int
			Detail string
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Status != tc.status || p.Detail == "" {
			t.Errorf("%s %s: %s %s, want a problem document", tc.method, tc.path, ct, body)
		}
	}
	for _, tc := range []struct{ method, path string }{{"HEAD", PagePath}, {"HEAD", AssetsPath + "app.css"}, {"GET", "/account/"}, {"HEAD", "/account/"}} {
		if res := serve(h, httptest.NewRequest(tc.method, "http://"+host+tc.path, nil)); res.StatusCode >= 400 {
			t.Errorf("%s %s: status %d", tc.method, tc.path, res.StatusCode)
		}
	}
}

// TestAssetsIgnoreRanges: an asset is served whole whatever Range or If-Match a
// client sends; http.ServeContent answered them 416 and 412, in plain text.
func TestAssetsIgnoreRanges(t *testing.T) {
	t.Parallel()
	h := Handler(verifyFake, Config{})
	want := staticAssets["app.js"]
	for _, hdr := range [][2]string{
		{"Range", "bytes=999999-"},
		{"Range", "bytes=0-10"},
		{"Range", "garbage"},
		{"If-Match", `"nope"`},
		{"If-None-Match", `"nope", W/"other"`},
		{"If-Unmodified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"},
	} {
		r := newRequest(http.MethodGet, AssetsPath+"app.js", "", "")
		r.Header.Set(hdr[0], hdr[1])
		res := serve(h, r)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || string(body) != string(want.body) || res.Header.Get("Content-Length") != strconv.Itoa(len(want.body)) {
			t.Errorf("%s: %s: status %d, %d bytes; want 200 and the whole file", hdr[0], hdr[1], res.StatusCode, len(body))
		}
	}
	for _, inm := range []string{want.etag, "*", `"x", ` + want.etag, "W/" + want.etag} {
		r := newRequest(http.MethodGet, AssetsPath+"app.js", "", "")
		r.Header.Set("If-None-Match", inm)
		if res := serve(h, r); res.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match %s: status %d, want 304", inm, res.StatusCode)
		}
	}
}

// TestOnBadToken: every request whose token is missing or does not verify asks
// Config.OnBadToken first; when it refuses, its answer is the only one.
func TestOnBadToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path, body, ctype, cookie string
		spends                                  bool
	}{
		{name: "bad token, json", method: "POST", path: SessionPath, body: `{"token":"forged"}`, ctype: "application/json", spends: true},
		{name: "no token, json", method: "POST", path: SessionPath, body: `{}`, ctype: "application/json", spends: true},
		{name: "bad token, form", method: "POST", path: SessionPath, body: "token=forged", ctype: "application/x-www-form-urlencoded", spends: true},
		{name: "no token, form", method: "POST", path: SessionPath, body: "", ctype: "application/x-www-form-urlencoded", spends: true},
		{name: "page with a bad cookie", method: "GET", path: PagePath, cookie: "forged", spends: true},
		{name: "good token", method: "POST", path: SessionPath, body: "token=tok-alice", ctype: "application/x-www-form-urlencoded"},
		{name: "page with a good cookie", method: "GET", path: PagePath, cookie: "tok-alice"},
		{name: "page signed out", method: "GET", path: PagePath},
		{name: "malformed body", method: "POST", path: SessionPath, body: `{"token":`, ctype: "application/json"},
		{name: "logout", method: "POST", path: LogoutPath, cookie: "forged"},
	}
	for _, tc := range tests {
		for _, allow := range []bool{true, false} {
			calls := 0
			cfg := Config{OnBadToken: func(w http.ResponseWriter, r *http.Request) bool {
				calls++
				if !allow {
					w.WriteHeader(http.StatusTooManyRequests)
				}
				return allow
			}}
			r := newRequest(tc.method, tc.path, tc.body, tc.ctype)
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: CookieName, Value: tc.cookie})
			}
			res := serve(Handler(verifyFake, cfg), r)
			body, _ := io.ReadAll(res.Body)
			if want := map[bool]int{true: 1, false: 0}[tc.spends]; calls != want {
				t.Errorf("%s: OnBadToken called %d times, want %d", tc.name, calls, want)
			}
			if tc.spends && !allow && (res.StatusCode != http.StatusTooManyRequests || len(body) != 0 || len(res.Header.Values("Set-Cookie")) != 0 || res.Header.Get("Location") != "") {
				t.Errorf("%s, refused: status %d, %d bytes, cookies %q, Location %q; want OnBadToken's 429 alone",
					tc.name, res.StatusCode, len(body), res.Header.Values("Set-Cookie"), res.Header.Get("Location"))
			}
			if tc.spends && allow && res.StatusCode == http.StatusTooManyRequests {
				t.Errorf("%s, allowed: 429", tc.name)
			}
		}
	}
}

// TestPageRenderFailure: a page that cannot render is the error table's 500, not
// a plain-text one. (Not parallel: it swaps the package's template.)
func TestPageRenderFailure(t *testing.T) {
	saved := page
	t.Cleanup(func() { page = saved })
	page = template.Must(template.New("broken").Parse("{{.NoSuchField}}"))
	var got error
	res := serve(Handler(verifyFake, Config{}), newRequest(http.MethodGet, PagePath, "", ""))
	if res.StatusCode != http.StatusInternalServerError || res.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("status %d, Content-Type %q; want a problem+json 500", res.StatusCode, res.Header.Get("Content-Type"))
	}
	serve(Handler(verifyFake, Config{OnError: func(w http.ResponseWriter, r *http.Request, err error) { got = err }}),
		newRequest(http.MethodGet, PagePath, "", ""))
	if !errors.Is(got, ErrPage) {
		t.Errorf("OnError got %v, want ErrPage", got)
	}
}
