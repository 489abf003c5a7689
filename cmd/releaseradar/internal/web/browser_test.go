package web_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web/webtest"
	"github.com/releaseradar/tollgate/internal/problem"
)

// fakeKey is one key as GET /keys lists it.
type fakeKey struct {
	ID               string    `json:"id"`
	Masked           string    `json:"masked"`
	Plan             string    `json:"plan"`
	Status           string    `json:"status"`
	MonthlyCallLimit int64     `json:"monthly_call_limit"`
	CallsUsed        int64     `json:"calls_used"`
	CycleStart       time.Time `json:"cycle_start"`
	CycleResetsAt    time.Time `json:"cycle_resets_at"`
	CreatedAt        time.Time `json:"created_at"`
	LastUsedAt       time.Time `json:"last_used_at,omitzero"`
}

// fakeAPI stands in for the server's /keys routes, so that the page's behaviour
// (errors, focus, reveal) is tested without the whole server.
type fakeAPI struct {
	mu      sync.Mutex
	keys    map[string][]fakeKey // by user
	pending map[string]string    // user → raw key waiting for /keys/reveal
	fail    string               // "", "500", "down" or "401": how /keys fails
}

func rawKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "rr_live_" + hex.EncodeToString(b)
}

func verifyFake(token string) (string, error) {
	if user, ok := strings.CutPrefix(token, "tok-"); ok && user != "" {
		return user, nil
	}
	return "", errors.New("bad token")
}

func (f *fakeAPI) user(w http.ResponseWriter, r *http.Request) (string, bool) {
	token, _ := web.Token(r)
	user, err := verifyFake(token)
	if err != nil {
		problem.Write(w, http.StatusUnauthorized, "Invalid or expired dashboard token")
		return "", false
	}
	return user, true
}

func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch f.fail {
	case "500":
		problem.Write(w, http.StatusInternalServerError, `{"internal":"boom"}`)
		return
	case "401":
		problem.Write(w, http.StatusUnauthorized, "Invalid or expired dashboard token")
		return
	case "down":
		conn, _, _ := w.(http.Hijacker).Hijack()
		_ = conn.Close()
		return
	}
	user, ok := f.user(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": f.keys[user], "reveal_pending": f.pending[user] != ""})
}

func (f *fakeAPI) rotate(w http.ResponseWriter, r *http.Request) {
	user, ok := f.user(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := f.keys[user]
	for i := range keys {
		if keys[i].Status == "active" {
			raw := rawKey()
			keys[i].Status = "revoked"
			nk := keys[i]
			nk.ID, nk.Status, nk.Masked, nk.CreatedAt = "k-"+raw[len(raw)-6:], "active", "****…"+raw[len(raw)-4:], time.Now()
			f.keys[user] = append([]fakeKey{nk}, keys...)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"key": raw, "id": nk.ID, "masked": nk.Masked})
			return
		}
	}
	problem.Write(w, http.StatusNotFound, "No active key to rotate")
}

func (f *fakeAPI) reveal(w http.ResponseWriter, r *http.Request) {
	user, ok := f.user(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	raw := f.pending[user]
	delete(f.pending, user)
	if raw == "" {
		problem.Write(w, http.StatusNotFound, "No key to reveal")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"key": raw})
}

func (f *fakeAPI) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func newFakeServer(t *testing.T, api *fakeAPI) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/account/", web.Handler(verifyFake, web.Config{}))
	csrf := web.RequireOrigin(web.Config{})
	mux.HandleFunc("GET /keys", api.list)
	mux.Handle("POST /keys/rotate", csrf(http.HandlerFunc(api.rotate)))
	mux.Handle("POST /keys/reveal", csrf(http.HandlerFunc(api.reveal)))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func TestPageInBrowser(t *testing.T) {
	now := time.Now().UTC()
	api := &fakeAPI{
		keys: map[string][]fakeKey{
			"alice": {{ID: "k1", Masked: "****…abcd", Plan: "pro", Status: "active", MonthlyCallLimit: 10000, CallsUsed: 1234,
				CycleStart: now.AddDate(0, 0, -10), CycleResetsAt: now.AddDate(0, 0, 20), CreatedAt: now.AddDate(0, -2, 0), LastUsedAt: now.Add(-time.Hour)}},
			"bob": {{ID: "k2", Masked: "****…wxyz", Plan: "team", Status: "active", MonthlyCallLimit: 100000, CallsUsed: 95000,
				CycleStart: now, CycleResetsAt: now.AddDate(0, 0, 30), CreatedAt: now}},
		},
		pending: map[string]string{},
	}
	ts := newFakeServer(t, api)
	page := ts.URL + web.PagePath
	browser := webtest.NewBrowser(t, 3*time.Minute)

	signIn := func(tab *webtest.Tab, token string) {
		t.Helper()
		tab.Do(chromedp.Navigate(page))
		tab.WaitFor(`document.activeElement && document.activeElement.id === "token"`)
		tab.Do(chromedp.SendKeys("#token", token), chromedp.Click("#signin-form button[type=submit]"))
	}
	noProblems := func(tab *webtest.Tab) {
		t.Helper()
		if p := tab.Problems(); len(p) > 0 {
			t.Errorf("the page reported problems: %q", p)
		}
	}

	t.Run("sign in, rotate by keyboard", func(t *testing.T) {
		tab := browser.NewTab(t, 1280, 900)
		signIn(tab, "forged")
		tab.WaitFor(`document.querySelector("#signin-message:not([hidden])")`)
		if msg := webtest.Run(tab, chromedp.Text("#signin-message")); !strings.Contains(msg, "not valid or has expired") {
			t.Errorf("bad-token message = %q", msg)
		}
		tab.Do(chromedp.SendKeys("#token", "tok-alice"), chromedp.Click("#signin-form button[type=submit]"))
		tab.WaitFor(`document.querySelector(".key .key-mask")`)
		if got := webtest.Run(tab, chromedp.Text(".key")); !strings.Contains(got, "****…abcd") || !strings.Contains(got, "1,234 of 10,000") || !strings.Contains(got, "PRO") {
			t.Errorf("key card = %q, want the masked key, plan and usage", got)
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
		tab.Do(chromedp.KeyEvent(kb.Escape))
		tab.WaitFor(`!document.getElementById("confirm-dialog").open && document.activeElement.classList.contains("rotate")`)

		// Rotate for real.
		tab.Do(chromedp.KeyEvent(kb.Enter))
		tab.WaitFor(`document.getElementById("confirm-dialog").open`)
		tab.Do(chromedp.Click("#confirm-rotate"))
		tab.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
		raw := webtest.Run(tab, chromedp.Text("#secret-key"))
		if !strings.HasPrefix(raw, "rr_live_") {
			t.Fatalf("modal key = %q", raw)
		}
		if w := webtest.Run(tab, chromedp.Text("#secret-warning")); w != "Treat this like a password. It will not be shown again." {
			t.Errorf("warning = %q", w)
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
		tab.WaitFor(`document.querySelector(".key .key-mask").textContent === "****…` + raw[len(raw)-4:] + `"`)

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
		if got := webtest.Run(tab, chromedp.Text("#revoked-count")); got != "1" {
			t.Errorf("revoked keys = %q, want 1", got)
		}
		noProblems(tab)
	})

	t.Run("reveal once, errors, expiry", func(t *testing.T) {
		pending := rawKey()
		api.set(func() { api.pending["alice"] = pending })
		tab := browser.NewTab(t, 1280, 900)
		signIn(tab, "tok-alice")
		tab.WaitFor(`!document.getElementById("reveal-banner").hidden`)
		tab.Do(chromedp.Click("#reveal-button"))
		tab.WaitFor(`document.getElementById("secret-dialog").open`)
		if got := webtest.Run(tab, chromedp.Text("#secret-key")); got != pending {
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
			got := webtest.Run(tab, chromedp.Text("#notice-text"))
			if !strings.Contains(got, tc.want) || strings.ContainsAny(got, "{}") {
				t.Errorf("%s: notice = %q, want %q and no JSON", tc.fail, got, tc.want)
			}
		}
		// The server comes back: Try again lists the keys.
		api.set(func() { api.fail = "" })
		tab.Do(chromedp.Click("#notice-retry"))
		tab.WaitFor(`document.getElementById("notice").hidden && document.querySelector(".key")`)
		// The token expires while the page is open: back to sign-in, with a message.
		api.set(func() { api.fail = "401" })
		tab.Do(chromedp.Reload())
		tab.WaitFor(`!document.getElementById("signin").hidden && document.getElementById("keys").hidden`)
		if got := webtest.Run(tab, chromedp.Text("#signin-message")); got != "Your session has expired. Paste a new token to sign in." {
			t.Errorf("expired message = %q", got)
		}
		api.set(func() { api.fail = "" })
		noProblems(tab)
	})

	t.Run("no plan", func(t *testing.T) {
		tab := browser.NewTab(t, 1280, 900)
		signIn(tab, "tok-carol")
		tab.WaitFor(`!document.getElementById("keys-empty").hidden`)
		if n := webtest.Eval[int](tab, `document.querySelectorAll(".key").length`); n != 0 {
			t.Errorf("%d key cards for a user without keys", n)
		}
		noProblems(tab)
	})

	t.Run("375px wide", func(t *testing.T) {
		tab := browser.NewTab(t, 375, 812)
		signIn(tab, "tok-bob")
		tab.WaitFor(`document.querySelector(".key .rotate")`)
		if w := webtest.Eval[int](tab, `document.documentElement.scrollWidth`); w > 375 {
			t.Errorf("the page is %d px wide at a 375 px viewport", w)
		}
		if !webtest.Eval[bool](tab, `document.querySelector(".bar-fill").classList.contains("is-high")`) {
			t.Error("95% usage is not marked high")
		}
		tab.Do(chromedp.Click(".key .rotate"), chromedp.Click("#confirm-rotate"))
		tab.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
		if r := webtest.Eval[float64](tab, `document.getElementById("secret-dialog").getBoundingClientRect().right`); r > 375 {
			t.Errorf("the modal ends at %.0f px", r)
		}
		tab.Do(chromedp.Click("#secret-dialog [data-close]"))
		tab.WaitFor(`!document.getElementById("secret-key")`)
		noProblems(tab)
	})
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
