package main

// The account page, /account/api-keys, driven in headless Chromium against the
// real server binary (started by the e2e harness of e2e_test.go): keys, usage from
// the ledger, rotation at once and with a grace period, the return from Stripe
// Checkout revealing the key a signed webhook issued, the billing buttons (on
// stripe-mock, where the test stops the navigation to Stripe and checks where it
// was going), and axe-core on every state. Without /usr/bin/chromium it skips,
// and fails under CI=true. TOLLGATE_SCREENSHOTS=1 rewrites docs/account-keys.png
// and docs/account-modal.png; the web package's browser test takes the others.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
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

// zonedTime is a moment told with its time of day and zone ("2:01 AM UTC"; ICU
// puts a narrow no-break space before AM and PM).
var zonedTime = regexp.MustCompile(`\d{1,2}:\d{2}([\s\x{00a0}\x{202f}]?[AP]M)?[\s\x{00a0}\x{202f}](UTC|GMT[+-]?\d*|[A-Z]{2,5})`)

// pageLoaded is true once the signed-in page has drawn the user's keys.
const pageLoaded = `document.getElementById("plan") && !document.getElementById("plan").hidden && document.getElementById("keys").getAttribute("aria-busy") === "false"`

// browserText is the rendered text of the first element sel matches ("" when none).
func browserText(tab *webtest.Tab, sel string) string {
	q, _ := json.Marshal(sel)
	return webtest.Eval[string](tab, `(document.querySelector(`+string(q)+`) || {innerText: ""}).innerText`)
}

// crossSite serves, on another site than the server ("localhost" and
// "127.0.0.1" are different sites), a page whose link leads to target: the way
// Stripe Checkout sends a customer back.
func crossSite(t *testing.T, target string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><title>Stripe</title><a id="back" href="%s">Back to ReleaseRadar</a></html>`, target)
	}))
	t.Cleanup(ts.Close)
	return strings.Replace(ts.URL, "127.0.0.1", "localhost", 1)
}

func TestAccountPageInBrowser(t *testing.T) {
	bin := binary(t)
	in := start(t, bin, []string{
		"RR_DATABASE_URL=sqlite:" + testenv.SQLitePath(t),
		"RR_STRIPE_WEBHOOK_SECRET=" + e2eWebhookSecret,
		"RR_STRIPE_PRICE_PRO=" + e2ePricePro,
		"RR_STRIPE_PRICE_TEAM=price_e2e_team",
	})
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

	// The gate writes keys' last use and the usage ledger in batches, about once
	// a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var u struct {
			TotalCalls int64 `json:"total_calls"`
		}
		r := in.get("/keys/usage", "Authorization", "Bearer "+aliceToken)
		_ = json.Unmarshal(r.body, &u)
		if in.keys(aliceToken).Keys[0].LastUsedAt != nil && u.TotalCalls == calls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the calls never reached GET /keys and GET /keys/usage: %d %s", r.status, r.body)
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
		tab.WaitFor(pageLoaded)
	}
	masks := func(tab *webtest.Tab) []string {
		t.Helper()
		return webtest.Eval[[]string](tab, `Array.from(document.querySelectorAll(".key-mask, .revoked-item code"), n => n.textContent)`)
	}
	tabs := map[string]*webtest.Tab{}

	alice := browser.NewTab(t, 1100, 720)
	tabs["alice"] = alice
	alice.Do(chromedp.Navigate(page))
	alice.WaitFor(`document.activeElement && document.activeElement.id === "token"`)
	alice.CheckAxe("desktop, signed out")
	alice.Do(chromedp.SendKeys("#token", aliceToken), chromedp.Click("#signin-form button[type=submit]"))
	alice.WaitFor(pageLoaded)
	alice.WaitFor(`document.activeElement && document.activeElement.id === "page-title"`)
	if got, want := masks(alice), []string{"****…" + oldKey[len(oldKey)-4:]}; !slices.Equal(got, want) {
		t.Fatalf("alice sees keys %q, want %q", got, want)
	}
	if user := browserText(alice, "#user-id"); user != "alice" {
		t.Errorf("signed in as %q, want alice", user)
	}
	card := browserText(alice, ".key")
	for _, want := range []string{"PRO", "ACTIVE"} {
		if !strings.Contains(card, want) {
			t.Errorf("key card %q lacks %q", card, want)
		}
	}
	if strings.Contains(card, "Not used yet") {
		t.Errorf("key card %q: the key was used, yet Last used says it was not", card)
	}
	usage := browserText(alice, "#usage-meter")
	for _, want := range []string{"27 of 100", "73 calls left", "resets", "30-day cycles"} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage %q lacks %q", usage, want)
		}
	}
	if !zonedTime.MatchString(usage) {
		t.Errorf("usage %q does not tell the reset's time and zone", usage)
	}
	// The chart of the cycle, from the ledger: today holds the 27 calls.
	alice.WaitFor(`!document.getElementById("usage-chart").hidden`)
	if got := webtest.Eval[string](alice, `document.querySelector("#usage-table tbody tr:last-child").textContent`); !strings.Contains(got, "(today)") || !strings.HasSuffix(got, "2727") {
		t.Errorf("today's usage row %q, want 27 calls and 27 in all", got)
	}
	if got := browserText(alice, ".chart-limit"); got != "Limit 100" {
		t.Errorf("the chart's limit mark says %q", got)
	}
	plan := browserText(alice, "#plan")
	for _, want := range []string{"Pro plan", "100 calls per 30-day cycle", "600 calls a minute", "Upgrade to Team", "Manage billing"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan %q lacks %q", plan, want)
		}
	}
	if curl := webtest.Eval[string](alice, `document.getElementById("curl-example").textContent`); !strings.Contains(curl, "RR_API_KEY='****…"+oldKey[len(oldKey)-4:]+"'") ||
		!strings.Contains(curl, in.base+"/events/search?") {
		t.Errorf("curl example %q", curl)
	}
	alice.CheckAxe("desktop, signed in")
	alice.Screenshot(filepath.Join(docsDir, "account-keys.png"))

	// Without RR_STRIPE_API_KEY the billing buttons say billing is off.
	alice.Do(chromedp.Click(`#plan-offers button[data-plan="team"]`))
	alice.WaitFor(`!document.getElementById("notice").hidden`)
	if got := browserText(alice, "#notice-text"); got != "Billing is not configured on this server." {
		t.Errorf("Upgrade without billing: %q", got)
	}

	// Rotate at once through the confirmation; the modal shows the raw key once.
	alice.Do(chromedp.Click(".key .rotate"))
	alice.WaitFor(`document.getElementById("confirm-dialog").open`)
	alice.CheckAxe("desktop, rotation dialog")
	alice.Do(chromedp.Click("#confirm-rotate"))
	alice.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
	newKey := browserText(alice, "#secret-key")
	if !strings.HasPrefix(newKey, apikeyPrefix) || newKey == oldKey {
		t.Fatalf("the modal shows %q, want a new %s key", newKey, apikeyPrefix)
	}
	if w := browserText(alice, "#secret-warning"); w != "Treat this like a password. It will not be shown again." {
		t.Errorf("modal warning = %q", w)
	}
	alice.WaitFor(`document.querySelector(".key .key-mask").textContent === "****…` + newKey[len(newKey)-4:] + `"`)
	alice.CheckAxe("desktop, new key dialog")
	alice.ScreenshotViewport(filepath.Join(docsDir, "account-modal.png"))

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
	if got := webtest.Eval[string](alice, `document.getElementById("revoked-list").textContent`); !strings.Contains(got, "replaced by a rotation") {
		t.Errorf("revoked keys %q, want why", got)
	}
	if got := browserText(alice, "#usage-shared"); !strings.Contains(got, "rotation keeps the monthly quota") {
		t.Errorf("the calls carried over are explained as %q", got)
	}

	// Rotate again with a grace period of an hour: the key just issued keeps
	// working, and the page says until when.
	alice.Do(chromedp.Click(".key .rotate"))
	alice.WaitFor(`document.getElementById("confirm-dialog").open`)
	alice.Do(chromedp.Click(`input[name="grace"][value="3600"]`))
	alice.WaitFor(`document.getElementById("confirm-effect").textContent.includes("for 1 hour")`)
	alice.Do(chromedp.Click("#confirm-rotate"))
	alice.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
	graceKey := browserText(alice, "#secret-key")
	alice.Do(chromedp.Click("#secret-dialog [data-close]"))
	alice.WaitFor(`!document.getElementById("secret-dialog").open && document.querySelector(".key.is-expiring")`)
	if exp := browserText(alice, ".key.is-expiring"); !strings.Contains(exp, "****…"+newKey[len(newKey)-4:]) || !strings.Contains(exp, "Expires in 1 hour") || !zonedTime.MatchString(exp) {
		t.Errorf("the expiring key says %q", exp)
	}
	for name, key := range map[string]string{"the expiring key": newKey, "the key that replaced it": graceKey} {
		if r := in.get("/events/search?limit=1", "x-api-key", key); r.status != http.StatusOK {
			t.Errorf("%s during the grace period: %d %s, want 200", name, r.status, r.body)
		}
	}
	alice.CheckAxe("desktop, expiring key")

	// A cookie-authenticated POST from another origin is refused and rotates nothing.
	wantProblem(t, "cross-site rotate", in.do(http.MethodPost, in.base+"/keys/rotate", nil,
		"Cookie", web.CookieName+"="+aliceToken, "Origin", "https://evil.example"),
		http.StatusForbidden, "Cross-site request refused")
	if r := in.get("/events/search?limit=1", "x-api-key", graceKey); r.status != http.StatusOK {
		t.Errorf("after a refused cross-site rotate the key answers %d, want 200", r.status)
	}

	// A second user, in a browser context of their own and on a phone, sees only
	// their key and who is signed in.
	bob := browser.NewTab(t, 375, 812)
	tabs["bob"] = bob
	signIn(bob, bobToken)
	if got, want := masks(bob), []string{"****…" + bobKey[len(bobKey)-4:]}; !slices.Equal(got, want) {
		t.Errorf("bob sees keys %q, want %q", got, want)
	}
	if user := browserText(bob, "#user-id"); user != "bob" {
		t.Errorf("bob's page is signed in as %q", user)
	}
	if w := webtest.Eval[int](bob, `document.documentElement.scrollWidth`); w > 375 {
		t.Errorf("bob's page is %d px wide on a 375 px phone", w)
	}
	bob.CheckAxe("mobile, signed in")

	// Back from Stripe Checkout (a navigation another site starts, so without the
	// SameSite=Strict cookie): the page signs itself back in, waits for the
	// webhook and reveals the key it issued, once.
	carol := browser.NewTab(t, 1100, 720)
	tabs["carol"] = carol
	signIn(carol, in.adminCmd("token", "--user", "carol"))
	if got := browserText(carol, "#keys-empty"); !strings.Contains(got, "No API key yet") {
		t.Errorf("carol, without a plan, sees %q", got)
	}
	carol.Do(chromedp.Navigate(crossSite(t, page+"?checkout=success&session_id=cs_test_browser") + "/"))
	carol.Do(chromedp.Click("#back"))
	carol.WaitFor(`document.body && document.body.dataset.signedIn === "true" && !document.getElementById("checkout-wait").hidden`)
	carol.CheckAxe("desktop, waiting for the webhook")
	now := time.Now().Unix()
	in.webhook(t, "evt_browser_checkout", "checkout.session.completed", map[string]any{
		"id": "cs_test_browser", "object": "checkout.session", "mode": "subscription", "status": "complete",
		"payment_status": "paid", "client_reference_id": "carol", "customer": "cus_browser", "subscription": "sub_browser",
	}, now)
	in.webhook(t, "evt_browser_sub", "customer.subscription.created", map[string]any{
		"id": "sub_browser", "object": "subscription", "customer": "cus_browser", "status": "active", "created": now,
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": "si_browser", "object": "subscription_item", "price": map[string]any{"id": e2ePricePro, "object": "price"},
		}}},
	}, now)
	carol.WaitFor(`document.getElementById("secret-dialog").open && document.getElementById("secret-key")`)
	carolKey := browserText(carol, "#secret-key")
	if note := browserText(carol, "#secret-note"); note != "Your Pro plan is active: 10,000 calls per 30-day cycle." {
		t.Errorf("the revealed key's note %q", note)
	}
	if r := in.get("/events/search?limit=1", "x-api-key", carolKey); r.status != http.StatusOK {
		t.Errorf("the key revealed after checkout: %d %s, want 200", r.status, r.body)
	}
	carol.Do(chromedp.Click("#secret-dialog [data-close]"))
	carol.WaitFor(`!document.getElementById("secret-dialog").open && document.getElementById("checkout-wait").hidden && document.getElementById("reveal-banner").hidden`)
	if q := webtest.Eval[string](carol, `location.search`); q != "" {
		t.Errorf("after the return the address keeps %q", q)
	}
	wantProblem(t, "a second reveal", in.do(http.MethodPost, in.base+"/keys/reveal", nil, "Authorization", "Bearer "+in.adminCmd("token", "--user", "carol")),
		http.StatusNotFound, "No key waiting to be revealed")

	// Signing out clears the cookie: the page says so, as news, and /keys answers 401.
	alice.Do(chromedp.Click(".account button[type=submit]"))
	alice.WaitFor(`document.body.dataset.signedIn === "false" && !document.getElementById("signin").hidden`)
	if !webtest.Eval[bool](alice, `document.getElementById("signin-message").classList.contains("notice-info")`) {
		t.Errorf("the sign-out message %q is not shown as news", browserText(alice, "#signin-message"))
	}
	status := webtest.Run(alice, chromedp.Evaluate[int](`fetch("/keys", {credentials: "same-origin"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != http.StatusUnauthorized {
		t.Errorf("GET /keys after sign-out: %d, want 401", status)
	}
	alice.CheckAxe("desktop, signed out after sign-out")

	for name, tab := range tabs {
		if p := tab.Problems(); len(p) > 0 {
			t.Errorf("%s's page reported problems: %q", name, p)
		}
	}
	for _, raw := range []string{oldKey, newKey, graceKey, carolKey} {
		if strings.Contains(in.log.String(), raw) {
			t.Error("a raw key reached the server log")
		}
	}
}

// TestAccountPageBillingInBrowser clicks the page's billing buttons against a
// server that calls stripe-mock: Upgrade goes to the Checkout session's URL and
// Manage billing to the Customer Portal's, which the test stops on their way out
// of the browser and compares with what the server answers.
func TestAccountPageBillingInBrowser(t *testing.T) {
	bin := binary(t)
	mock := testenv.StripeMock(t)
	in := start(t, bin, []string{
		"RR_DATABASE_URL=sqlite:" + testenv.SQLitePath(t),
		"RR_STRIPE_WEBHOOK_SECRET=" + e2eWebhookSecret,
		"RR_STRIPE_PRICE_PRO=" + e2ePricePro,
		"RR_STRIPE_PRICE_TEAM=price_e2e_team",
		"RR_STRIPE_API_KEY=sk_test_4eC39HqLyjWDarjtT1zdp7dc",
		"RR_STRIPE_API_BASE=" + mock,
	})
	in.adminCmd("grant", "--user", "dana", "--plan", "pro")
	token := in.adminCmd("token", "--user", "dana")
	// stripe-mock answers every session with its fixture: what the page must go to.
	redirect := func(path string, body []byte) string {
		t.Helper()
		headers := []string{"Authorization", "Bearer " + token}
		if body != nil {
			headers = append(headers, "Content-Type", "application/json")
		}
		r := in.do(http.MethodPost, in.base+path, body, headers...)
		var u struct{ URL string }
		if r.status != http.StatusOK || json.Unmarshal(r.body, &u) != nil || !strings.HasPrefix(u.URL, "https://") {
			t.Fatalf("POST %s: %d %s", path, r.status, r.body)
		}
		return u.URL
	}
	checkoutURL := redirect("/billing/checkout", []byte(`{"plan":"team"}`))

	browser := webtest.NewBrowser(t, 2*time.Minute)
	tab := browser.NewTab(t, 1100, 720)
	stopped := tab.StopNavigations("https://*")
	tab.Do(chromedp.Navigate(in.base + web.PagePath))
	tab.WaitFor(`document.activeElement && document.activeElement.id === "token"`)
	tab.Do(chromedp.SendKeys("#token", token), chromedp.Click("#signin-form button[type=submit]"))
	tab.WaitFor(pageLoaded)

	// The browser never reaches Stripe: the navigation fails where it starts.
	tab.Do(chromedp.Click(`#plan-offers button[data-plan="team"]`))
	deadline := time.Now().Add(webtest.StepTimeout)
	for len(stopped()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := stopped(); len(got) != 1 || got[0] != checkoutURL {
		t.Fatalf("Upgrade to Team went to %q, want the Checkout session's %q", got, checkoutURL)
	}

	// No Stripe customer yet: Manage billing says so.
	tab.Do(chromedp.Navigate(in.base + web.PagePath))
	tab.WaitFor(pageLoaded)
	tab.Do(chromedp.Click("#portal-button"))
	tab.WaitFor(`!document.getElementById("notice").hidden`)
	if got := browserText(tab, "#notice-text"); !strings.Contains(got, "no billing account for you yet") {
		t.Errorf("Manage billing without a customer: %q", got)
	}
	tab.CheckAxe("desktop, billing notice")

	// A completed checkout binds dana's customer: Manage billing goes to the portal.
	in.webhook(t, "evt_browser_bind", "checkout.session.completed", map[string]any{
		"id": "cs_test_bind", "object": "checkout.session", "mode": "subscription", "status": "complete",
		"payment_status": "paid", "client_reference_id": "dana", "customer": "cus_browser_dana",
	}, time.Now().Unix())
	portalURL := redirect("/billing/portal", nil)
	tab.Do(chromedp.Navigate(in.base + web.PagePath))
	tab.WaitFor(pageLoaded)
	tab.Do(chromedp.Click("#portal-button"))
	deadline = time.Now().Add(webtest.StepTimeout)
	for len(stopped()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// The portal fixture's URL holds braces, which the browser percent-encodes.
	want := strings.NewReplacer("{", "%7B", "}", "%7D").Replace(portalURL)
	if got := stopped(); len(got) != 2 || got[1] != want {
		t.Errorf("Manage billing went to %q, want the portal session's %q", got, want)
	}
	if p := tab.Problems(); len(p) > 0 {
		t.Errorf("the page reported problems: %q", p)
	}
}
