// Package webtest drives headless Chromium through chromedp for the account page's
// browser tests, with every step bounded in time.
//
// Without Chromium at ChromiumPath a test skips with a message, and fails when the
// environment has CI=true. Set TOLLGATE_SCREENSHOTS=1 to let Tab.Screenshot write
// its PNG files; otherwise it does nothing, so normal runs leave docs/ alone.
package webtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const (
	// ChromiumPath is the browser the tests run (Debian's chromium package).
	ChromiumPath = "/usr/bin/chromium"
	// ScreenshotsEnv names the variable that turns screenshots on ("1").
	ScreenshotsEnv = "TOLLGATE_SCREENSHOTS"
	// StepTimeout bounds one action of a test.
	StepTimeout = 20 * time.Second
)

// Browser is a headless Chromium that lives until its test ends.
type Browser struct {
	ctx context.Context // a chromedp context whose browser has started
}

// NewBrowser starts a fresh headless Chromium (its own temporary profile) for t.
// The whole browser is stopped after limit, or when t ends, whichever is first.
func NewBrowser(t testing.TB, limit time.Duration) *Browser {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: CI must run the browser tests (install the chromium package)", ChromiumPath)
		}
		t.Skipf("%s not found: skipping the browser test (apt-get install chromium to run it)", ChromiumPath)
	}
	// Chromium's helper processes can still write to the profile for a moment after
	// the browser exits, so the profile is not under t.TempDir (whose cleanup fails
	// on a non-empty directory); it is removed with retries instead.
	profile, err := os.MkdirTemp("", "tollgate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(ChromiumPath),
		chromedp.NoSandbox, // the tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
	)
	life, cancelLife := context.WithTimeout(context.Background(), limit)
	alloc, cancelAlloc := chromedp.NewExecAllocator(life, opts...)
	ctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelLife()
	})
	// The first Run starts the browser and binds it to life.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("webtest: starting %s: %v", ChromiumPath, err)
	}
	return &Browser{ctx: ctx}
}

// Tab is one page in its own browser context: cookies and storage are not shared
// with other tabs. It records uncaught exceptions, console errors and Content
// Security Policy violations.
type Tab struct {
	t   testing.TB
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

// NewTab opens a tab with a viewport of width×height CSS pixels. It closes when t ends.
func (b *Browser) NewTab(t testing.TB, width, height int64) *Tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		cancel()
		t.Fatalf("webtest: opening a tab: %v", err)
	}
	tab := &Tab{t: t, ctx: ctx}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError && !strings.Contains(m.Text, "Failed to load resource") ||
				strings.Contains(m.Text, "Content Security Policy") {
				tab.mu.Lock()
				tab.problems = append(tab.problems, m.String())
				tab.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return tab
}

// Context is the tab's chromedp context, for actions the helpers do not cover.
func (tab *Tab) Context() context.Context { return tab.ctx }

// Problems returns the exceptions, console errors and CSP violations seen so far.
func (tab *Tab) Problems() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.problems...)
}

// Run runs a on tab within StepTimeout and returns its value; an error fails the test.
func Run[T any](tab *Tab, a chromedp.Action[T]) T {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		tab.t.Fatalf("webtest: %v", err)
	}
	return v
}

// Do runs steps in order, each within StepTimeout; an error fails the test.
func (tab *Tab) Do(steps ...chromedp.Action[chromedp.Void]) {
	tab.t.Helper()
	for i, s := range steps {
		ctx, cancel := context.WithTimeout(tab.ctx, StepTimeout)
		err := chromedp.Do(ctx, s)
		cancel()
		if err != nil {
			tab.t.Fatalf("webtest: step %d: %v", i+1, err)
		}
	}
}

// Eval evaluates a JavaScript expression in the page and decodes its value.
func Eval[T any](tab *Tab, expr string) T {
	tab.t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tab.t.Fatalf("webtest: evaluating %s: %v", expr, err)
	}
	return v
}

// WaitFor waits until the JavaScript expression is truthy, at most StepTimeout.
// A navigation in between (a form post, a reload) restarts the wait on the new page.
func (tab *Tab) WaitFor(expr string) {
	tab.t.Helper()
	deadline := time.Now().Add(StepTimeout)
	for {
		left := time.Until(deadline)
		ctx, cancel := context.WithTimeout(tab.ctx, left+time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(left)))
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || tab.ctx.Err() != nil {
			tab.t.Fatalf("webtest: waiting for %s: %v", expr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Screenshot writes a PNG of the whole page to path when TOLLGATE_SCREENSHOTS=1.
func (tab *Tab) Screenshot(path string) {
	tab.t.Helper()
	if os.Getenv(ScreenshotsEnv) != "1" {
		return
	}
	tab.writePNG(path, Run(tab, chromedp.FullScreenshot(100)))
}

// ScreenshotViewport writes a PNG of what the viewport shows to path when
// TOLLGATE_SCREENSHOTS=1: for a modal dialog, whose backdrop covers the viewport
// only.
func (tab *Tab) ScreenshotViewport(path string) {
	tab.t.Helper()
	if os.Getenv(ScreenshotsEnv) != "1" {
		return
	}
	tab.writePNG(path, Run(tab, chromedp.CaptureScreenshot()))
}

func (tab *Tab) writePNG(path string, png []byte) {
	tab.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tab.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tab.t.Fatal(err)
	}
	tab.t.Logf("webtest: wrote %s (%d bytes)", path, len(png))
}

// StopNavigations stops every navigation of the tab to a URL that pattern
// matches (wildcards as the DevTools protocol's Fetch.RequestPattern has them:
// "https://*") before it leaves the browser, so that a test sees where the page
// sends the browser (Stripe Checkout, say) without going there. The page stays
// where it was, and the returned function lists the URLs stopped so far.
func (tab *Tab) StopNavigations(pattern string) func() []string {
	tab.t.Helper()
	var (
		mu      sync.Mutex
		stopped []string
	)
	events := chromedp.Events(tab.ctx, fetch.RequestPaused)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			mu.Lock()
			stopped = append(stopped, ev.Request.URL)
			mu.Unlock()
			ctx, cancel := context.WithTimeout(tab.ctx, StepTimeout)
			_, _ = chromedp.Run(ctx, chromedp.Action[chromedp.Void](func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
				return cdp.Call(ctx, t, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
			}))
			cancel()
		}
	}()
	Run(tab, chromedp.Action[chromedp.Void](func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		return cdp.Call(ctx, t, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{
			URLPattern: pattern, ResourceType: network.ResourceTypeDocument,
		}}})
	}))
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), stopped...)
	}
}

// AxeViolation is one axe-core rule that the page breaks.
type AxeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"` // each failing node's selector and axe's summary of what fails
}

func (v AxeViolation) String() string {
	return fmt.Sprintf("%s (%s): %s\n\t%s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "\n\t"))
}

// AxeResult is what one axe-core run found.
type AxeResult struct {
	Violations []AxeViolation `json:"violations"`
	Passes     int            `json:"passes"`     // rules the page passes
	Incomplete int            `json:"incomplete"` // rules axe could not decide (for a person to review)
}

// axeSource is axe-core's script, read once from the repository.
var axeSource = sync.OnceValues(func() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("webtest: cannot locate the package's source directory")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "testdata", "axe", "axe.min.js"))
	return string(b), err
})

// axeRun runs axe-core on the whole document with its default rules (WCAG 2 A and
// AA, and best practices) and keeps what a failure message needs.
const axeRun = `axe.run(document, {resultTypes: ["violations"]}).then(r => ({
	passes: r.passes.length,
	incomplete: r.incomplete.length,
	violations: r.violations.map(v => ({
		id: v.id, impact: v.impact || "", help: v.help,
		nodes: v.nodes.map(n => n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\s+/g, " ")),
	})),
}))`

// Axe runs axe-core on the page as it is now (a dialog open, a notice shown: the
// state the test has put it in) and returns its findings. The script is evaluated
// in the page once per document.
func (tab *Tab) Axe() AxeResult {
	tab.t.Helper()
	src, err := axeSource()
	if err != nil {
		tab.t.Fatalf("webtest: reading axe-core: %v", err)
	}
	if !Eval[bool](tab, `typeof window.axe === "object" && typeof window.axe.run === "function"`) {
		Run(tab, chromedp.Evaluate[chromedp.Void](src))
	}
	return Run(tab, chromedp.Evaluate[AxeResult](axeRun, chromedp.EvalAwaitPromise))
}

// CheckAxe fails the test for every violation axe-core finds in the page now, and
// logs the count of rules passed under the name of the state.
func (tab *Tab) CheckAxe(state string) {
	tab.t.Helper()
	r := tab.Axe()
	for _, v := range r.Violations {
		tab.t.Errorf("axe, %s: %s", state, v)
	}
	tab.t.Logf("axe, %s: %d violations, %d rules passed, %d for review", state, len(r.Violations), r.Passes, r.Incomplete)
}
