// Package webtest drives headless Chromium through chromedp for the account page's
// browser tests, with every step bounded in time.
//
// Without Chromium at ChromiumPath a test skips with a message, and fails when the
// environment has CI=true. Set TOLLGATE_SCREENSHOTS=1 to let Tab.Screenshot write
// its PNG files; otherwise it does nothing, so normal runs leave docs/ alone.
package webtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
	png := Run(tab, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tab.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tab.t.Fatal(err)
	}
	tab.t.Logf("webtest: wrote %s (%d bytes)", path, len(png))
}
