package web

import (
	"net/http"
	"strings"
)

// Token returns the dashboard token r carries: the "Authorization: Bearer" value
// when there is one, else the rr_session cookie. fromCookie reports that the token
// came from the cookie. It returns "" when r carries neither.
func Token(r *http.Request) (token string, fromCookie bool) {
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if tok = strings.TrimSpace(tok); tok != "" {
			return tok, false
		}
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return c.Value, true
	}
	return "", false
}

// RequireOrigin protects cookie-authenticated routes from cross-site request
// forgery with the standard library's http.CrossOriginProtection. The scheme has
// two layers:
//
//  1. The rr_session cookie is SameSite=Strict, so a browser sends it only on
//     requests that a page of the same site started.
//  2. Every unsafe request (any method but GET, HEAD and OPTIONS) that a browser
//     marks as cross-origin — Sec-Fetch-Site other than same-origin or none, or,
//     from browsers too old to send that, an Origin whose host is not the
//     request's — is refused with ErrCrossOrigin (403 "Cross-site request
//     refused") before next runs, unless its Origin is one of
//     Config.AllowedOrigins. Requests that carry neither header come from no
//     browser (curl, a server) and pass.
//
// Safe methods are never checked, so they must not change state. It panics on a
// malformed Config.AllowedOrigins entry, a wiring error.
func RequireOrigin(cfg Config) func(http.Handler) http.Handler {
	cop := cfg.protection()
	return func(next http.Handler) http.Handler { return cop.Handler(next) }
}

// protection returns the http.CrossOriginProtection of cfg, whose refusals go to
// cfg's error writer.
func (c Config) protection() *http.CrossOriginProtection {
	cop := http.NewCrossOriginProtection()
	for _, o := range c.AllowedOrigins {
		if err := cop.AddTrustedOrigin(strings.TrimSuffix(strings.TrimSpace(o), "/")); err != nil {
			panic("web: Config.AllowedOrigins: " + err.Error())
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.onError(w, r, ErrCrossOrigin)
	}))
	return cop
}
