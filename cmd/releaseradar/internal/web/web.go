// Package web serves the account page, /account/api-keys, where a dashboard user
// signs in with a session token or a single-use sign-in link, sees their API keys
// and rotates or reveals them.
//
// The page is plain HTML, CSS and JavaScript embedded in the binary. It reads and
// changes keys through the server's JSON routes (GET /keys, POST /keys/rotate,
// POST /keys/reveal) with the rr_session cookie that this package sets; see
// RequireOrigin for how those cookie-authenticated POSTs are protected from
// cross-site request forgery.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/releaseradar/tollgate/internal/problem"
)

// Routes served by Handler. The server mounts Handler on the prefix "/account/".
const (
	PagePath    = "/account/api-keys" // GET: the page
	SessionPath = "/account/session"  // POST: sign in (form field or JSON "token")
	LogoutPath  = "/account/logout"   // POST: sign out
	LoginPath   = "/account/login"    // GET: sign in with a single-use link (?token=), when Config.Login is set
	AssetsPath  = "/account/assets/"  // GET: app.css, app.js
)

// CookieName is the session cookie: the dashboard token itself, HttpOnly,
// SameSite=Strict, Path=/, Secure over TLS or through a trusted proxy that says
// https (Config.TrustProxy).
const CookieName = "rr_session"

// maxTokenBody bounds a sign-in request body; a dashboard token is a few hundred bytes.
const maxTokenBody = 16 << 10

// contentSecurityPolicy allows the page's own script, style and fetches and nothing
// else: no inline script, no external resource, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// Sentinel errors handed to Config.OnError.
var (
	// ErrNoToken: a sign-in request carried no token (HTTP 401).
	ErrNoToken = problem.New(problem.NoSession, "web: missing dashboard token")
	// ErrBadToken: the token did not verify: malformed, badly signed or expired (HTTP 401).
	ErrBadToken = problem.New(problem.BadSession, "web: invalid or expired dashboard token")
	// ErrCrossOrigin: an unsafe request came from another origin (HTTP 403).
	ErrCrossOrigin = problem.New(problem.CrossOrigin, "web: cross-site request refused")
	// ErrBadRequest: the sign-in body could not be read (HTTP 400).
	ErrBadRequest = problem.New(problem.BadSignIn, "web: malformed sign-in request")
	// ErrNotFound: no page or asset at that path (HTTP 404).
	ErrNotFound = problem.New(problem.NoRoute, "web: no such page")
	// ErrMethodNotAllowed: the path exists, but not with that method (HTTP 405,
	// with the Allow header set before OnError is called).
	ErrMethodNotAllowed = problem.New(problem.MethodNotAllowed, "web: method not allowed")
	// ErrPage: the page template failed to render, a bug (HTTP 500).
	ErrPage = problem.New(problem.Internal, "web: the page failed to render")
)

// errNoSession: a LoginFunc accepted a link without returning a session token.
var errNoSession = errors.New("web: Config.Login returned no session token")

// VerifyFunc checks a dashboard token and returns its user ID, or an error when
// the token is malformed, badly signed or expired. It must be safe for concurrent use.
type VerifyFunc func(token string) (userID string, err error)

// LoginFunc exchanges the token of a single-use sign-in link for a dashboard
// session token (one that the Handler's VerifyFunc accepts), spending the link.
// A link it refuses — unknown, used or expired — is an error that tollgate's
// problem table answers with a 4xx status (the server's is loginlink.ErrInvalid);
// any other error is a failure, such as the database's. It must be safe for
// concurrent use, and two calls with one token must not both succeed.
type LoginFunc func(ctx context.Context, token string) (session string, err error)

// Config holds the optional settings of Handler and RequireOrigin. The zero value
// accepts same-origin requests only, trusts no proxy and answers errors as
// application/problem+json.
type Config struct {
	// AllowedOrigins lists origins ("https://app.example.com") besides the
	// request's own whose POSTs are accepted (see RequireOrigin).
	AllowedOrigins []string
	// TrustProxy reports whether r came through a proxy whose X-Forwarded-Proto
	// header is believed. For such a request "X-Forwarded-Proto: https" marks the
	// session cookie Secure, as a TLS connection does. Nil trusts no proxy.
	TrustProxy func(r *http.Request) bool
	// OnError answers a request refused with one of the package's sentinel errors.
	// Nil writes the problem responses of WriteError.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// OnBadToken is called for a request whose dashboard token is missing or does
	// not verify — a sign-in, the page asked for with a session cookie that does
	// not verify, or a sign-in link that is missing or refused — before Handler
	// refuses it. It reports whether the refusal may go on; when it returns false
	// it has answered the request itself (429: too many failed attempts from that
	// address) and Handler writes nothing more. Nil lets every refusal go on. The
	// server passes its gate's SpendAddress, so that guessing tokens or links is
	// burst-limited per client address.
	OnBadToken func(w http.ResponseWriter, r *http.Request) bool
	// Login, when set, serves GET /account/login?token=: the single-use sign-in
	// links that the server's "admin login-link" prints. Nil: that path is
	// ErrNotFound.
	Login LoginFunc
}

// badToken reports whether a request with a missing or invalid token may be
// refused as usual (Config.OnBadToken).
func (c Config) badToken(w http.ResponseWriter, r *http.Request) bool {
	return c.OnBadToken == nil || c.OnBadToken(w, r)
}

func (c Config) onError(w http.ResponseWriter, r *http.Request, err error) {
	if c.OnError != nil {
		c.OnError(w, r, err)
		return
	}
	WriteError(w, r, err)
}

// WriteError is the default error writer: the application/problem+json answer of
// tollgate's error table for err.
func WriteError(w http.ResponseWriter, _ *http.Request, err error) { problem.WriteError(w, err) }

//go:embed assets
var assets embed.FS

// page is the account page; its data is pageData.
var page = template.Must(template.ParseFS(assets, "assets/page.html"))

// asset is an embedded file served under AssetsPath.
type asset struct {
	body        []byte
	contentType string
	etag        string
	version     string // the first 12 hex digits of its SHA-256, for cache busting
}

func loadAsset(name string) asset {
	body, err := assets.ReadFile("assets/" + name)
	if err != nil {
		panic("web: embedded asset missing: " + name)
	}
	sum := sha256.Sum256(body)
	v := hex.EncodeToString(sum[:6])
	ct := mime.TypeByExtension(name[strings.LastIndexByte(name, '.'):])
	return asset{body: body, contentType: ct, etag: `"` + v + `"`, version: v}
}

var staticAssets = map[string]asset{
	"app.css": loadAsset("app.css"),
	"app.js":  loadAsset("app.js"),
}

// Sign-in messages the page can show, chosen by key so that no request text is
// ever reflected into the page.
var messages = map[string]string{
	"invalid": "That token is not valid or has expired. Create a new one with “releaseradar admin token” and paste it again.",
	"missing": "Paste a dashboard token to sign in.",
	"expired": "Your session has expired. Paste a new token to sign in.",
	"out":     "You are signed out.",
	// A sign-in link that was refused (LoginPath).
	"link-expired": "That sign-in link has been used or has expired. Ask for a new one, or paste a dashboard token.",
}

// pageData fills assets/page.html.
type pageData struct {
	UserID     string // empty when signed out
	Message    string // a sign-in message from messages, or empty
	CSSVersion string
	JSVersion  string
}

// Handler serves the account page and its sign-in and sign-out routes:
//
//	GET  /account/              redirects to the page
//	GET  /account/api-keys      the page; signed in when the rr_session cookie verifies
//	GET  /account/assets/app.css, /account/assets/app.js
//	POST /account/session       sign in: form field or JSON {"token": "..."}
//	POST /account/logout        sign out
//	GET  /account/login?token=  sign in with a single-use link (only with Config.Login)
//
// GET routes answer HEAD too, except /account/login: a HEAD request (a link
// checker's, a mail scanner's) must not spend a link. A sign-in sets the
// rr_session cookie (HttpOnly, SameSite=Strict, Path=/, Secure over TLS or
// through a trusted proxy, see Config.TrustProxy). A form post is answered 303
// to the page; a JSON post 204, or 401 with a problem document for a bad token.
// Both POSTs are refused when they come from another origin (see
// RequireOrigin). Every other path under /account/ is ErrNotFound, and a path
// asked for with a method it does not serve is ErrMethodNotAllowed with an Allow
// header: both, like every refusal, answered by Config.OnError. verify is the
// server's dashboard token check.
//
// A sign-in link (Config.Login) that is accepted sets the cookie to the session
// token Login returns and is answered 302 to the page, or, when a page of another
// site led the browser there (Sec-Fetch-Site: cross-site), 200 with a page that
// moves on to the account page itself: browsers send a SameSite=Strict cookie
// along no redirect that another site started. A link that is missing or refused
// spends Config.OnBadToken, clears the cookie and is answered 302 to the page
// with ?signin=link-expired, which the page explains. These answers are
// Cache-Control: no-store and Referrer-Policy: no-referrer. A failure of Login is
// answered by Config.OnError (503 from the problem table).
func Handler(verify VerifyFunc, cfg Config) http.Handler {
	if verify == nil {
		panic("web: Handler needs a VerifyFunc")
	}
	h := &handler{verify: verify, cfg: cfg, cop: cfg.protection()}
	h.routes = map[string]route{
		"/account/": {method: http.MethodGet, serve: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, PagePath, http.StatusFound)
		}},
		PagePath:    {method: http.MethodGet, serve: h.page},
		SessionPath: {method: http.MethodPost, serve: h.signIn},
		LogoutPath:  {method: http.MethodPost, serve: h.signOut},
	}
	if cfg.Login != nil {
		h.routes[LoginPath] = route{method: http.MethodGet, serve: h.login, noHead: true}
	}
	for name := range staticAssets {
		h.routes[AssetsPath+name] = route{method: http.MethodGet, serve: h.asset}
	}
	return h
}

type handler struct {
	verify VerifyFunc
	cfg    Config
	cop    *http.CrossOriginProtection
	routes map[string]route // by exact path
}

// route is what one path serves: a GET route answers HEAD too, unless noHead.
type route struct {
	method string
	serve  http.HandlerFunc
	noHead bool
}

// head reports whether the route answers HEAD.
func (rt route) head() bool { return rt.method == http.MethodGet && !rt.noHead }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := h.routes[r.URL.Path]
	switch {
	case !ok:
		h.cfg.onError(w, r, ErrNotFound)
	case r.Method == rt.method || (r.Method == http.MethodHead && rt.head()):
		rt.serve(w, r)
	default:
		allow := rt.method
		if rt.head() {
			allow = "GET, HEAD"
		}
		w.Header().Set("Allow", allow)
		h.cfg.onError(w, r, ErrMethodNotAllowed)
	}
}

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	data := pageData{
		CSSVersion: staticAssets["app.css"].version,
		JSVersion:  staticAssets["app.js"].version,
		Message:    messages[r.URL.Query().Get("signin")],
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		if user, err := h.verify(c.Value); err == nil {
			data.UserID = user
			data.Message = ""
		} else {
			// The page tells a good cookie from a bad one: a guess, limited as
			// sign-ins are.
			if !h.cfg.badToken(w, r) {
				return
			}
			http.SetCookie(w, h.cookie(r, "", -1))
			data.Message = messages["expired"]
		}
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, data); err != nil {
		h.cfg.onError(w, r, fmt.Errorf("%w: %w", ErrPage, err))
		return
	}
	hd := w.Header()
	securityHeaders(hd)
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// asset serves an embedded file whole, or 304 for a matching If-None-Match. Range
// and the other preconditions are ignored (the files are a few KiB), so that no
// answer comes from http.ServeContent's plain-text 412 and 416.
func (h *handler) asset(w http.ResponseWriter, r *http.Request) {
	a := staticAssets[strings.TrimPrefix(r.URL.Path, AssetsPath)]
	hd := w.Header()
	securityHeaders(hd)
	hd.Set("ETag", a.etag)
	hd.Set("Cache-Control", "no-cache")
	if etagMatches(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Type", a.contentType)
	hd.Set("Content-Length", strconv.Itoa(len(a.body)))
	_, _ = w.Write(a.body)
}

// etagMatches reports whether an If-None-Match value lists etag (compared weakly,
// as RFC 9110 asks for If-None-Match) or is "*".
func etagMatches(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

// wantsJSON reports whether a sign-in or sign-out request came from a script that
// wants JSON answers rather than a redirect.
func wantsJSON(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == "application/json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

func (h *handler) signIn(w http.ResponseWriter, r *http.Request) {
	if h.cop.Check(r) != nil {
		h.cfg.onError(w, r, ErrCrossOrigin)
		return
	}
	token, err := readToken(w, r)
	if err == nil {
		if _, verr := h.verify(token); verr != nil {
			err = ErrBadToken
		}
	}
	if (errors.Is(err, ErrNoToken) || errors.Is(err, ErrBadToken)) && !h.cfg.badToken(w, r) {
		return
	}
	if err != nil {
		if wantsJSON(r) {
			h.cfg.onError(w, r, err)
			return
		}
		reason := "invalid"
		if errors.Is(err, ErrNoToken) {
			reason = "missing"
		}
		http.Redirect(w, r, PagePath+"?signin="+reason, http.StatusSeeOther)
		return
	}
	http.SetCookie(w, h.cookie(r, token, 0))
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
}

// readToken reads the token of a sign-in request: a JSON body {"token": "..."} or
// the form field "token". Surrounding space and a "Bearer " prefix are dropped.
func readToken(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
	var token string
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		var body struct {
			Token string `json:"token"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			return "", ErrBadRequest
		}
		token = body.Token
	} else {
		if err := r.ParseForm(); err != nil {
			return "", ErrBadRequest
		}
		token = r.PostForm.Get("token")
	}
	token = strings.TrimSpace(token)
	if len(token) > 7 && strings.EqualFold(token[:7], "bearer ") {
		token = strings.TrimSpace(token[7:])
	}
	if token == "" {
		return "", ErrNoToken
	}
	return token, nil
}

// login serves a single-use sign-in link (Config.Login). The token arrives in the
// query, which the server's access log never records.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	// The page the browser lands on must not pass this URL on as a Referer.
	hd.Set("Referrer-Policy", "no-referrer")
	var session string
	var err error = ErrNoToken
	if token := r.URL.Query().Get("token"); token != "" {
		if session, err = h.cfg.Login(r.Context(), token); err == nil && session == "" {
			err = errNoSession // a broken LoginFunc: answered 503
		}
	}
	if err != nil {
		if status, _, _ := problem.For(err); status >= http.StatusInternalServerError {
			h.cfg.onError(w, r, err)
			return
		}
		if !h.cfg.badToken(w, r) {
			return
		}
		http.SetCookie(w, h.cookie(r, "", -1))
		http.Redirect(w, r, PagePath+"?signin=link-expired", http.StatusFound)
		return
	}
	http.SetCookie(w, h.cookie(r, session, 0))
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		// A browser sends a SameSite=Strict cookie on no request of a navigation
		// that another site started, redirects included, so a redirect would open
		// the page signed out (a link clicked in webmail or a chat). A page of
		// this site that moves on starts a navigation of its own.
		securityHeaders(hd)
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, continuePage)
		return
	}
	http.Redirect(w, r, PagePath, http.StatusFound)
}

// continuePage is the answer to an accepted sign-in link that another site's
// page led to (see login): it goes on to the account page at once, or with its
// link where refreshes are turned off.
const continuePage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="0; url=` + PagePath + `">
<title>Signed in · ReleaseRadar</title>
</head>
<body>
<main><p>You are signed in. <a href="` + PagePath + `">Continue to your API keys</a>.</p></main>
</body>
</html>
`

func (h *handler) signOut(w http.ResponseWriter, r *http.Request) {
	if h.cop.Check(r) != nil {
		h.cfg.onError(w, r, ErrCrossOrigin)
		return
	}
	http.SetCookie(w, h.cookie(r, "", -1))
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	http.Redirect(w, r, PagePath+"?signin=out", http.StatusSeeOther)
}

// cookie returns the session cookie holding value; maxAge -1 deletes it, 0 makes
// it last as long as the browser session (the token's own expiry still applies).
func (h *handler) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   h.secure(r),
		SameSite: http.SameSiteStrictMode,
	}
}

// secure reports whether r reached the server over TLS, directly or through a
// trusted proxy.
func (h *handler) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if h.cfg.TrustProxy == nil || !h.cfg.TrustProxy(r) {
		return false
	}
	// A chain of proxies lists protocols left to right; the first is the client's.
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}
