package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web/webtest"
	"github.com/releaseradar/tollgate/internal/problem"
)

// TestBrowserLoginLink clicks sign-in links in a real browser: typed into the
// address bar, and clicked on a page of another site (as in webmail), where a
// plain redirect would open the page without the SameSite=Strict cookie. Both
// open the page signed in; a used link opens it with the reason.
func TestBrowserLoginLink(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	used := map[string]bool{}
	login := func(_ context.Context, token string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		user, ok := strings.CutPrefix(token, "link-")
		if !ok || used[token] {
			return "", problem.New(problem.BadSession, "test: link refused")
		}
		used[token] = true
		return "tok-" + user, nil
	}
	verify := func(token string) (string, error) {
		if user, ok := strings.CutPrefix(token, "tok-"); ok && user != "" {
			return user, nil
		}
		return "", problem.New(problem.BadSession, "test: bad token")
	}
	mux := http.NewServeMux()
	mux.Handle("/account/", web.Handler(verify, web.Config{Login: login}))
	site := httptest.NewServer(mux) // http://127.0.0.1:port
	defer site.Close()
	// The mail is another site: "localhost" and "127.0.0.1" are different sites.
	mail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Mail</title><a id="link" href="%s%s?token=%s">Sign in</a>`,
			site.URL, web.LoginPath, r.URL.Query().Get("token"))
	}))
	defer mail.Close()
	mailURL := strings.Replace(mail.URL, "127.0.0.1", "localhost", 1)

	browser := webtest.NewBrowser(t, 2*time.Minute)
	signedIn := `document.body && document.body.dataset.signedIn === "true" && location.pathname === "` + web.PagePath + `"`
	user := func(tab *webtest.Tab) string { return webtest.Run(tab, chromedp.Text("#user-id")) }
	clickInMail := func(tab *webtest.Tab, token string) {
		t.Helper()
		tab.Do(chromedp.Navigate(mailURL + "/?token=" + token))
		tab.Do(chromedp.Click("#link"))
	}

	typed := browser.NewTab(t, 1000, 800)
	typed.Do(chromedp.Navigate(site.URL + web.LoginPath + "?token=link-alice"))
	typed.WaitFor(signedIn)
	if u := user(typed); u != "alice" {
		t.Fatalf("typed link: signed in as %q", u)
	}

	clicked := browser.NewTab(t, 1000, 800)
	clickInMail(clicked, "link-bob")
	clicked.WaitFor(signedIn)
	if u := user(clicked); u != "bob" {
		t.Fatalf("link clicked on another site: signed in as %q", u)
	}

	again := browser.NewTab(t, 1000, 800)
	clickInMail(again, "link-bob")
	again.WaitFor(`document.body && document.body.dataset.signedIn === "false" && location.search === "?signin=link-expired"`)
	if msg := webtest.Run(again, chromedp.Text("#signin-message")); !strings.Contains(msg, "sign-in link has been used or has expired") {
		t.Fatalf("a used link: the page says %q", msg)
	}
}
