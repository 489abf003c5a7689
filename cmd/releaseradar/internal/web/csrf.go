package web

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Token returns the dashboard token r carries: the "Authorization: Bearer" value
// when there is one, else the rr_session cookie. fromCookie reports that the token
// came from the cookie, so that an unsafe request must also pass CheckOrigin. It
// returns "" when r carries neither.
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
// forgery. The scheme has two layers:
//
//  1. The rr_session cookie is SameSite=Strict, so a browser sends it only on
//     requests that a page of the same site started.
//  2. Every unsafe request (any method but GET, HEAD and OPTIONS) authenticated
//     by that cookie must name its origin: its Origin header, or its Referer when
//     Origin is absent, must be the server's own origin or one of
//     Config.AllowedOrigins (see CheckOrigin). Otherwise the request is refused
//     with ErrCrossOrigin (403 "Cross-site request refused") before next runs.
//
// Requests that carry "Authorization: Bearer" are not checked: a browser attaches
// that header only when a script of an allowed origin sets it, and CORS never lets
// another origin send it. Requests with neither credential pass through for next
// to answer 401. Safe methods are never checked, so they must not change state.
func RequireOrigin(cfg Config) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
			default:
				if _, fromCookie := Token(r); fromCookie && !CheckOrigin(r, cfg.AllowedOrigins) {
					cfg.onError(w, r, ErrCrossOrigin)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// CheckOrigin reports whether r names an origin it may come from: its Origin
// header, or its Referer when Origin is absent, must be the request's own origin
// (the host of r.Host, over https when r.TLS is set) or one of allowed
// ("https://app.example.com"; a trailing slash or path is ignored). Scheme and
// host compare case-insensitively and a default port (80, 443) equals none.
// A request with neither header, an opaque "null" origin or an unparsable one is
// refused. CheckOrigin looks at headers only: the caller decides which requests to
// check (RequireOrigin checks unsafe cookie-authenticated ones).
//
// Behind a reverse proxy that rewrites Host, list the public origin in allowed.
func CheckOrigin(r *http.Request, allowed []string) bool {
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	scheme, host, ok := parseOrigin(src)
	if !ok {
		return false
	}
	if host == normalHost(scheme, r.Host) && (r.TLS == nil || scheme == "https") {
		return true
	}
	for _, a := range allowed {
		if s, h, ok := parseOrigin(strings.TrimSpace(a)); ok && s == scheme && h == host {
			return true
		}
	}
	return false
}

// parseOrigin returns the lower-case scheme and normalised host of an http(s) URL
// or origin, and false for anything else (including "null").
func parseOrigin(s string) (scheme, host string, ok bool) {
	if s == "" {
		return "", "", false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil {
		return "", "", false
	}
	scheme = strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", "", false
	}
	return scheme, normalHost(scheme, u.Host), true
}

// normalHost lower-cases host and drops the scheme's default port.
func normalHost(scheme, host string) string {
	host = strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil {
		if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
			if strings.Contains(h, ":") {
				return "[" + h + "]"
			}
			return h
		}
	}
	return host
}
