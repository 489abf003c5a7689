package entitlement_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	apimem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/keystest"
	"github.com/releaseradar/tollgate/entitlement/internal/stripetest"
	"github.com/releaseradar/tollgate/entitlement/memstore"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/testenv"
	stripe "github.com/stripe/stripe-go/v76"
)

const (
	testAPIKey   = "sk_test_51TollgateSecretKeyForTests"
	successURL   = "https://app.example/account?checkout=done&session={CHECKOUT_SESSION_ID}"
	cancelURL    = "https://app.example/account?checkout=canceled"
	returnURL    = "https://app.example/account"
	pathCheckout = "/v1/checkout/sessions"
	pathPortal   = "/v1/billing_portal/sessions"
	priceMetered = "price_api_calls_metered"
)

// withBilling points the Service's billing at stripe-mock through rec.
func withBilling(mock *stripetest.Mock, rec *stripetest.Recorder, now *time.Time) func(*entitlement.Config) {
	return func(c *entitlement.Config) {
		c.Billing = entitlement.BillingConfig{
			APIKey: testAPIKey, Backend: mock.Backend(rec),
			SuccessURL: successURL, CancelURL: cancelURL, ReturnURL: returnURL,
		}
		c.Now = func() time.Time { return *now }
	}
}

// oneRequest returns the only request to path, failing the test unless there is
// exactly one, and unless it is authenticated as stripe-go does.
func oneRequest(t *testing.T, rec *stripetest.Recorder, path string) stripetest.Request {
	t.Helper()
	reqs := rec.Requests(path)
	if len(reqs) != 1 {
		t.Fatalf("%d requests to %s, want 1 (all: %+v)", len(reqs), path, rec.Requests(""))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer "+testAPIKey || r.Header.Get("Stripe-Version") != stripe.APIVersion {
		t.Fatalf("request %s %s: Authorization %q, Stripe-Version %q", r.Method, r.Path, r.Header.Get("Authorization"), r.Header.Get("Stripe-Version"))
	}
	return r
}

// form checks fields of a request's form; "" wants the field absent.
func form(t *testing.T, r stripetest.Request, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if _, present := r.Form[k]; v == "" && present {
			t.Errorf("%s sent %s=%q, want it absent", r.Path, k, r.Form.Get(k))
		} else if v != "" && r.Form.Get(k) != v {
			t.Errorf("%s sent %s=%q, want %q", r.Path, k, r.Form.Get(k), v)
		}
	}
}

// Checkout creates a subscription-mode session for the plan's price, naming the
// user, reusing the user's customer once one is bound, and the same session for
// a repeated click; a paying user is sent to the portal's plan switch instead.
func TestCheckout(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		rec := &stripetest.Recorder{}
		now := time.Date(2026, 11, 27, 10, 0, 5, 0, time.UTC)
		h := newHarness(t, b, withBilling(mock, rec, &now))

		u, err := h.svc.Checkout(ctx, "user_1", planGold)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u, "http") {
			t.Fatalf("Checkout URL %q", u)
		}
		r := oneRequest(t, rec, pathCheckout)
		form(t, r, map[string]string{
			"mode": "subscription", "client_reference_id": "user_1", "metadata[user_id]": "user_1",
			"subscription_data[metadata][user_id]": "user_1", "success_url": successURL, "cancel_url": cancelURL,
			"line_items[0][price]": priceGold, "line_items[0][quantity]": "1", "line_items[1][price]": "", "customer": "",
		})
		key := r.Header.Get("Idempotency-Key")
		if !strings.HasPrefix(key, "tollgate-checkout-") {
			t.Fatalf("Idempotency-Key %q", key)
		}

		// A second click within the minute: the same key, so the same session.
		rec.Reset()
		now = now.Add(40 * time.Second)
		if _, err := h.svc.Checkout(ctx, "user_1", planGold); err != nil {
			t.Fatal(err)
		}
		if got := oneRequest(t, rec, pathCheckout).Header.Get("Idempotency-Key"); got != key {
			t.Fatalf("a repeated click sent Idempotency-Key %q, want %q", got, key)
		}
		rec.Reset()
		if _, err := h.svc.Checkout(ctx, "user_1", planPlatinum); err != nil {
			t.Fatal(err)
		}
		if got := oneRequest(t, rec, pathCheckout).Header.Get("Idempotency-Key"); got == key {
			t.Fatal("another plan reused the idempotency key")
		}

		// The user abandoned a bank debit half way: the customer is bound, the
		// subscription incomplete. A new checkout reuses the customer.
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "incomplete", priceGold, month)})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "unpaid")})
		rec.Reset()
		if _, err := h.svc.Checkout(ctx, "user_1", planGold); err != nil {
			t.Fatal(err)
		}
		form(t, oneRequest(t, rec, pathCheckout), map[string]string{"customer": "cus_1", "client_reference_id": "user_1"})

		// Paying for gold, the user asks for platinum: the portal's plan switch for
		// the subscription, not a second subscription.
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		rec.Reset()
		u, err = h.svc.Checkout(ctx, "user_1", planPlatinum)
		if err != nil || u == "" {
			t.Fatalf("Checkout of a paying user = %q, %v", u, err)
		}
		if n := len(rec.Requests(pathCheckout)); n != 0 {
			t.Fatalf("a paying user's checkout created %d checkout sessions", n)
		}
		form(t, oneRequest(t, rec, pathPortal), map[string]string{
			"customer": "cus_1", "return_url": returnURL,
			"flow_data[type]": "subscription_update", "flow_data[subscription_update][subscription]": "sub_1",
		})

		// Plans the catalog does not sell: nothing reaches Stripe.
		rec.Reset()
		for _, plan := range []string{"bronze", planFree, ""} {
			if _, err := h.svc.Checkout(ctx, "user_2", plan); !errors.Is(err, entitlement.ErrUnknownPlan) {
				t.Fatalf("Checkout(%q) = %v, want ErrUnknownPlan", plan, err)
			}
		}
		if _, err := h.svc.Checkout(ctx, "", planGold); err == nil {
			t.Fatal("Checkout for no user succeeded")
		}
		if reqs := rec.Requests(""); len(reqs) != 0 {
			t.Fatalf("refused checkouts sent %d requests", len(reqs))
		}
	})
}

// A plan with a metered price sells it beside the plan's price, without a
// quantity, so that the usage reported is billed.
func TestCheckoutMeteredPrice(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	rec := &stripetest.Recorder{}
	now := time.Now()
	h := newHarness(t, backends[0], func(c *entitlement.Config) {
		withBilling(mock, rec, &now)(c)
		gold := c.Catalog[planGold]
		gold.MeteredPrice = priceMetered
		c.Catalog[planGold] = gold
	})
	if _, err := h.svc.Checkout(context.Background(), "user_1", planGold); err != nil {
		t.Fatal(err)
	}
	form(t, oneRequest(t, rec, pathCheckout), map[string]string{
		"line_items[0][price]": priceGold, "line_items[0][quantity]": "1",
		"line_items[1][price]": priceMetered, "line_items[1][quantity]": "",
	})
	// The metered price grants nothing: a subscription to it alone is unknown.
	h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_m", "cus_m", "active", priceMetered, month)})
	h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_m", "sub_m", "user_m", "paid")})
}

func TestPortal(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		rec := &stripetest.Recorder{}
		now := time.Now()
		h := newHarness(t, b, withBilling(mock, rec, &now))
		if _, err := h.svc.Portal(ctx, "user_1"); !errors.Is(err, entitlement.ErrNoCustomer) {
			t.Fatalf("Portal without a customer = %v, want ErrNoCustomer", err)
		}
		if status, _, _ := problem.For(entitlement.ErrNoCustomer); status != http.StatusNotFound {
			t.Fatalf("ErrNoCustomer answers %d, want 404", status)
		}
		if len(rec.Requests("")) != 0 {
			t.Fatal("Portal without a customer called Stripe")
		}
		h.bindGold("user_1", "cus_1", "sub_1")
		u, err := h.svc.Portal(ctx, "user_1")
		if err != nil || !strings.HasPrefix(u, "http") {
			t.Fatalf("Portal = %q, %v", u, err)
		}
		form(t, oneRequest(t, rec, pathPortal), map[string]string{"customer": "cus_1", "return_url": returnURL, "flow_data[type]": ""})
	})
}

// Without an API key, Checkout and Portal answer 503 "billing is not configured";
// with one, the URLs are required.
func TestBillingNotConfigured(t *testing.T) {
	t.Parallel()
	h := newHarness(t, backends[0], nil)
	ctx := context.Background()
	if _, err := h.svc.Checkout(ctx, "user_1", planGold); !errors.Is(err, entitlement.ErrBillingNotConfigured) {
		t.Fatalf("Checkout = %v, want ErrBillingNotConfigured", err)
	}
	if _, err := h.svc.Portal(ctx, "user_1"); !errors.Is(err, entitlement.ErrBillingNotConfigured) {
		t.Fatalf("Portal = %v, want ErrBillingNotConfigured", err)
	}
	if status, detail, _ := problem.For(entitlement.ErrBillingNotConfigured); status != http.StatusServiceUnavailable || detail != problem.Detail(problem.BillingNotConfigured) {
		t.Fatalf("ErrBillingNotConfigured answers %d %q", status, detail)
	}
	for name, bc := range map[string]entitlement.BillingConfig{
		"no URLs":          {APIKey: testAPIKey},
		"relative success": {APIKey: testAPIKey, SuccessURL: "/account", CancelURL: cancelURL, ReturnURL: returnURL},
		"no return URL":    {APIKey: testAPIKey, SuccessURL: successURL, CancelURL: cancelURL},
		"ftp cancel":       {APIKey: testAPIKey, SuccessURL: successURL, CancelURL: "ftp://x/", ReturnURL: returnURL},
	} {
		_, err := entitlement.New(memstore.New(), entitlement.Config{Catalog: testCatalog(), Keys: keystest.New(apimem.New()), Billing: bc})
		if err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

// Stripe's failures are ErrStripe, a failed dependency (503), that says what
// Stripe answered and never the API key.
func TestBillingStripeFailures(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	rec := &stripetest.Recorder{}
	now := time.Now()
	h := newHarness(t, backends[0], withBilling(mock, rec, &now))
	ctx := context.Background()
	h.bindGold("user_p", "cus_p", "sub_p")
	for _, tt := range []struct {
		name  string
		fault stripetest.Fault
		want  string
	}{
		{"invalid key", func(*stripetest.Request) (*http.Response, error) {
			return stripetest.StripeError(http.StatusUnauthorized, "invalid_request_error", "Invalid API Key provided: "+maskedKey()), nil
		}, "Stripe answered 401"},
		{"Stripe down", func(*stripetest.Request) (*http.Response, error) {
			return stripetest.StripeError(http.StatusInternalServerError, "api_error", "Something went wrong"), nil
		}, "Stripe answered 500"},
		{"network", func(*stripetest.Request) (*http.Response, error) { return nil, stripetest.ErrNetwork }, "connection refused"},
	} {
		rec.SetFault(tt.fault)
		for _, call := range []func() error{
			func() error { _, err := h.svc.Checkout(ctx, "user_1", planGold); return err },
			func() error { _, err := h.svc.Portal(ctx, "user_p"); return err },
		} {
			err := call()
			if !errors.Is(err, entitlement.ErrStripe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%s: %v, want ErrStripe saying %q", tt.name, err, tt.want)
			}
			if status, _, dependency := problem.For(err); status != http.StatusServiceUnavailable || !dependency {
				t.Fatalf("%s: answers %d (dependency %v), want 503 as a failed dependency", tt.name, status, dependency)
			}
			if strings.Contains(err.Error(), testAPIKey) || strings.Contains(err.Error(), testAPIKey[len(testAPIKey)-4:]) {
				t.Fatalf("%s: the API key (or its end) is in the error: %v", tt.name, err)
			}
		}
	}
	rec.SetFault(nil)
	if _, err := h.svc.Checkout(ctx, "user_1", planGold); err != nil {
		t.Fatalf("after the faults: %v", err)
	}
	// A canceled request is the caller's doing, not Stripe's failure.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.svc.Checkout(cctx, "user_1", planGold); !errors.Is(err, context.Canceled) || errors.Is(err, entitlement.ErrStripe) {
		t.Fatalf("Checkout on a canceled context = %v", err)
	}
}

// maskedKey is the API key as Stripe's "Invalid API Key provided" answer shows it.
func maskedKey() string {
	return "sk_test_" + strings.Repeat("*", 24) + testAPIKey[len(testAPIKey)-4:]
}

// NewStripeBackend sends stripe-go's log lines to slog (a JSON log stays JSON),
// with keys masked.
func TestNewStripeBackendLogs(t *testing.T) {
	t.Parallel()
	mock := stripetest.Start(t)
	rec := &stripetest.Recorder{}
	logs := &testenv.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec.SetFault(func(*stripetest.Request) (*http.Response, error) {
		return stripetest.StripeError(http.StatusUnauthorized, "invalid_request_error", "Invalid API Key provided: "+maskedKey()), nil
	})
	h := newHarness(t, backends[0], func(c *entitlement.Config) {
		c.Billing = entitlement.BillingConfig{
			APIKey: testAPIKey, Backend: entitlement.NewStripeBackend(mock.URL, &http.Client{Transport: rec}, logger),
			SuccessURL: successURL, CancelURL: cancelURL, ReturnURL: returnURL,
		}
	})
	if _, err := h.svc.Checkout(context.Background(), "user_1", planGold); !errors.Is(err, entitlement.ErrStripe) {
		t.Fatalf("Checkout = %v, want ErrStripe", err)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"stripe-go: `) {
		t.Fatalf("stripe-go's log lines did not reach the logger:\n%s", out)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Fatalf("a log line is not JSON: %s", line)
		}
	}
	if strings.Contains(out, testAPIKey) || strings.Contains(out, maskedKey()) {
		t.Fatalf("the API key reached the log:\n%s", out)
	}
}
