package web_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
)

// verify stands in for the server's dashboard token check (session.Signer.Verify).
func verify(token string) (string, error) {
	if token == "good-token" {
		return "alice", nil
	}
	return "", errors.New("invalid or expired token")
}

// Mount the account page on the server's mux; a sign-in sets the session cookie.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("/account/", web.Handler(verify, web.Config{}))

	r := httptest.NewRequest(http.MethodPost, "http://rr.example"+web.SessionPath, strings.NewReader("token=good-token"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Origin", "http://rr.example")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	fmt.Println(w.Code, w.Header().Get("Location"))
	fmt.Println(w.Header().Get("Set-Cookie"))
	// Output:
	// 303 /account/api-keys
	// rr_session=good-token; Path=/; HttpOnly; SameSite=Strict
}

// Protect the cookie-authenticated POST routes of the dashboard API.
func ExampleRequireOrigin() {
	rotate := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "rotated") })
	h := web.RequireOrigin(web.Config{})(rotate)

	for _, origin := range []string{"http://rr.example", "https://evil.example"} {
		r := httptest.NewRequest(http.MethodPost, "http://rr.example/keys/rotate", nil)
		r.AddCookie(&http.Cookie{Name: web.CookieName, Value: "good-token"})
		r.Header.Set("Origin", origin)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(origin, w.Code)
	}
	// Output:
	// http://rr.example 200
	// https://evil.example 403
}
