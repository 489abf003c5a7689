package main

// The browser test of issue 6: the account page, /account/api-keys, driven in
// headless Chromium against the real server binary (started by the e2e harness of
// e2e_test.go). Without /usr/bin/chromium it skips, and fails under CI=true.
// TOLLGATE_SCREENSHOTS=1 rewrites docs/account-keys.png and docs/account-modal.png.

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web/webtest"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// docsDir is the repository's docs/ seen from this package's directory.
var docsDir = filepath.Join("..", "..", "docs")

func TestAccountPageInBrowser(t *testing.T) {
	bin := binary(t)
	in := start(t, bin, []string{"RR_DATABASE_URL=sqlite:" + testenv.SQLitePath(t)})
	oldKey := in.adminCmd("grant", "--user", "alice", "--plan", "pro", "--limit", "100")
	bobKey := in.adminCmd("grant", "--user", "bob", "--plan", "team")
	aliceToken := in.adminCmd("token", "--user", "alice")
	bobToken := in.adminCmd("token", "--user", "bob")
	const calls = 27
	for i := range calls {
		if r := in.get("/events/search?limit=1", "x-api-key", oldKey); r.status != http.StatusOK {
			t.Fatalf("search %d with the granted key: %d %s", i+1, r.status, r.body)
		}
	}

	// The gate writes keys' last use in batches, about once a second.
	deadline := time.Now().Add(10 * time.Second)
	for in.keys(aliceToken).Keys[0].LastUsedAt == nil {
		if time.Now().After(deadline) {
			t.Fatal("the key's last use never reached GET /keys")
		}
		time.Sleep(50 * time.Millisecond)
	}

	browser := webtest.NewBrowser(t, 4*time.Minute)
	page := in.base + web.PagePath
	signIn := func(tab *webtest.Tab, token string) {
		t.Helper()
		tab.Do(chromedp.Navigate(page))
		tab.WaitFor(`document.activeElement && document.activeElement.id === "token"`)
		tab.Do(chromedp.SendKeys("#token", token), chromedp.Click("#signin-form button[type=submit]"))
		tab.WaitFor(`document.querySelector(".key .key-mask")`)
	}
	masks := func(tab *webtest.Tab) []string {
		t.Helper()
		return webtest.Eval[[]string](tab, `Array.from(document.querySelectorAll(".key-mask, .revoked-item code"), n => n.textContent)`)
	}

	alice := browser.NewTab(t, 1100, 720)
	signIn(alice, aliceToken)
	if got, want := masks(alice), []string{"****…" + oldKey[len(oldKey)-4:]}; !slices.Equal(got, want) {
		t.Fatalf("alice sees keys %q, want %q", got, want)
	}
	if user := webtest.Run(alice, chromedp.Text("#user-id")); user != "alice" {
		t.Errorf("signed in as %q, want alice", user)
	}
	card := webtest.Run(alice, chromedp.Text(".key"))
	for _, want := range []string{"PRO", "ACTIVE", "27 of 100", "73 calls left", "resets"} {
		if !strings.Contains(card, want) {
			t.Errorf("key card %q lacks %q", card, want)
		}
	}
	if strings.Contains(card, "Never") {
		t.Errorf("key card %q: the key was used, yet Last used says Never", card)
	}
	alice.Screenshot(filepath.Join(docsDir, "account-keys.png"))

	// Rotate through the confirmation; the modal shows the raw key once.
	alice.Do(chromedp.Click(".key .rotate"))
	alice.WaitFor(`document.getElementById("confirm-dialog").open`)
	alice.Do(chromedp.Click("#confirm-rotate"))
	alice.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
	newKey := webtest.Run(alice, chromedp.Text("#secret-key"))
	if !strings.HasPrefix(newKey, apikeyPrefix) || newKey == oldKey {
		t.Fatalf("the modal shows %q, want a new %s key", newKey, apikeyPrefix)
	}
	if w := webtest.Run(alice, chromedp.Text("#secret-warning")); w != "Treat this like a password. It will not be shown again." {
		t.Errorf("modal warning = %q", w)
	}
	alice.WaitFor(`document.querySelector(".key .key-mask").textContent === "****…` + newKey[len(newKey)-4:] + `"`)
	alice.Screenshot(filepath.Join(docsDir, "account-modal.png"))

	if r := in.get("/events/search?limit=1", "x-api-key", newKey); r.status != http.StatusOK {
		t.Errorf("the rotated key: %d %s, want 200", r.status, r.body)
	}
	wantProblem(t, "the old key after rotation", in.get("/events/search?limit=1", "x-api-key", oldKey),
		http.StatusForbidden, "Invalid or revoked API key")

	// Closing the modal leaves the raw key nowhere in the page.
	alice.Do(chromedp.Click("#secret-dialog [data-close]"))
	alice.WaitFor(`!document.getElementById("secret-dialog").open`)
	quoted, _ := json.Marshal(newKey)
	if webtest.Eval[bool](alice, `document.documentElement.outerHTML.includes(`+string(quoted)+`)`) {
		t.Error("the raw key is still in the DOM after the modal closed")
	}
	if n := webtest.Eval[int](alice, `localStorage.length + sessionStorage.length`); n != 0 {
		t.Errorf("Web Storage holds %d items", n)
	}
	if got := masks(alice); len(got) != 2 || got[0] != "****…"+newKey[len(newKey)-4:] {
		t.Errorf("after rotation alice sees %q, want the new key first and the revoked one", got)
	}

	// A cookie-authenticated POST from another origin is refused and rotates nothing.
	wantProblem(t, "cross-site rotate", in.do(http.MethodPost, in.base+"/keys/rotate", nil,
		"Cookie", web.CookieName+"="+aliceToken, "Origin", "https://evil.example"),
		http.StatusForbidden, "Cross-site request refused")
	if r := in.get("/events/search?limit=1", "x-api-key", newKey); r.status != http.StatusOK {
		t.Errorf("after a refused cross-site rotate the key answers %d, want 200", r.status)
	}

	// A second user, in a browser context of their own, sees only their key.
	bob := browser.NewTab(t, 1100, 720)
	signIn(bob, bobToken)
	if got, want := masks(bob), []string{"****…" + bobKey[len(bobKey)-4:]}; !slices.Equal(got, want) {
		t.Errorf("bob sees keys %q, want %q", got, want)
	}
	if user := webtest.Run(bob, chromedp.Text("#user-id")); user != "bob" {
		t.Errorf("bob's page is signed in as %q", user)
	}

	// Signing out clears the cookie: the page asks for a token, /keys answers 401.
	alice.Do(chromedp.Click(".account button[type=submit]"))
	alice.WaitFor(`document.body.dataset.signedIn === "false" && !document.getElementById("signin").hidden`)
	status := webtest.Run(alice, chromedp.Evaluate[int](`fetch("/keys", {credentials: "same-origin"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != http.StatusUnauthorized {
		t.Errorf("GET /keys after sign-out: %d, want 401", status)
	}

	for name, tab := range map[string]*webtest.Tab{"alice": alice, "bob": bob} {
		if p := tab.Problems(); len(p) > 0 {
			t.Errorf("%s's page reported problems: %q", name, p)
		}
	}
	if strings.Contains(in.log.String(), newKey) || strings.Contains(in.log.String(), oldKey) {
		t.Error("a raw key reached the server log")
	}
}
