package entitlement

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"time"

	stripe "github.com/stripe/stripe-go/v76"
	portalsession "github.com/stripe/stripe-go/v76/billingportal/session"
	checkoutsession "github.com/stripe/stripe-go/v76/checkout/session"
)

// BillingConfig lets a Service start purchases (Checkout) and billing sessions
// (Portal) on Stripe. The zero value turns both off.
type BillingConfig struct {
	// APIKey is the secret (sk_…) or restricted (rk_…) key they call Stripe with.
	// Empty: Checkout and Portal answer ErrBillingNotConfigured.
	APIKey string
	// Backend is the stripe-go backend they call; nil means
	// NewStripeBackend("", nil, Config.Logger), Stripe's own API. Tests pass one on
	// stripe-mock.
	Backend stripe.Backend
	// SuccessURL and CancelURL are where Checkout sends the user back after paying
	// or giving up: absolute http(s) URLs, required with APIKey. SuccessURL may
	// hold Stripe's {CHECKOUT_SESSION_ID} placeholder.
	SuccessURL, CancelURL string
	// ReturnURL is where the Customer Portal leads back to: an absolute http(s)
	// URL, required with APIKey.
	ReturnURL string
}

// billing is a Service's Stripe client for Checkout and Portal.
type billing struct {
	checkout checkoutsession.Client
	portal   portalsession.Client
	cfg      BillingConfig
}

func newBilling(cfg BillingConfig, log *slog.Logger) (*billing, error) {
	for _, u := range []struct{ name, v string }{{"SuccessURL", cfg.SuccessURL}, {"CancelURL", cfg.CancelURL}, {"ReturnURL", cfg.ReturnURL}} {
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return nil, fmt.Errorf("entitlement: Config.Billing.%s must be an absolute http(s) URL, not %q", u.name, u.v)
		}
	}
	b := cfg.Backend
	if b == nil {
		b = NewStripeBackend("", nil, log)
	}
	return &billing{
		checkout: checkoutsession.Client{B: b, Key: cfg.APIKey},
		portal:   portalsession.Client{B: b, Key: cfg.APIKey},
		cfg:      cfg,
	}, nil
}

// NewStripeBackend returns a stripe-go backend on Stripe's API at baseURL (""
// means Stripe's own, https://api.stripe.com) through client (nil: stripe-go's
// default, with an 80 s timeout) whose log lines go to logger (nil:
// slog.Default()), at debug level for requests and warn for failures, with
// anything that looks like an API key masked. stripe-go retries a failed request
// twice, with an idempotency key of its own.
func NewStripeBackend(baseURL string, client *http.Client, logger *slog.Logger) stripe.Backend {
	if logger == nil {
		logger = slog.Default()
	}
	cfg := &stripe.BackendConfig{HTTPClient: client, LeveledLogger: stripeLogger{logger}}
	if baseURL != "" {
		cfg.URL = stripe.String(baseURL)
	}
	return stripe.GetBackendWithConfig(stripe.APIBackend, cfg)
}

// stripeLogger routes stripe-go's log lines to slog, so that a JSON log stays
// JSON.
type stripeLogger struct{ log *slog.Logger }

func (l stripeLogger) Debugf(format string, v ...any) { l.put(slog.LevelDebug, format, v) }
func (l stripeLogger) Infof(format string, v ...any)  { l.put(slog.LevelDebug, format, v) }
func (l stripeLogger) Warnf(format string, v ...any)  { l.put(slog.LevelWarn, format, v) }
func (l stripeLogger) Errorf(format string, v ...any) { l.put(slog.LevelWarn, format, v) }

func (l stripeLogger) put(level slog.Level, format string, v []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, "stripe-go: "+redact(fmt.Sprintf(format, v...)))
	}
}

// apiKeyPattern matches Stripe API keys, including the masked form Stripe puts in
// its "Invalid API Key provided" answers.
var apiKeyPattern = regexp.MustCompile(`\b(sk|rk|pk)_(test|live)_[0-9A-Za-z*]+`)

// redact masks API keys in s.
func redact(s string) string { return apiKeyPattern.ReplaceAllString(s, "${1}_${2}_[redacted]") }

// stripeError is ErrStripe for one request: what Stripe answered, without the API
// key.
type stripeError struct {
	op     string
	status int
	detail string
}

func (e *stripeError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("entitlement: %s: Stripe answered %d: %s", e.op, e.status, e.detail)
	}
	return fmt.Sprintf("entitlement: %s: %s", e.op, e.detail)
}

func (e *stripeError) Unwrap() error { return ErrStripe }

// transient reports whether trying again later may succeed: a network failure,
// a rate limit, a conflict or a server error, rather than a request Stripe
// refused as it is.
func (e *stripeError) transient() bool {
	return e.status == 0 || e.status == http.StatusTooManyRequests || e.status == http.StatusConflict || e.status >= 500
}

// stripeFailure wraps a stripe-go error as ErrStripe; a canceled or expired ctx is
// returned as itself.
func stripeFailure(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("entitlement: %s: %w", op, ctxErr)
	}
	var se *stripe.Error
	if errors.As(err, &se) {
		detail := string(se.Type)
		if se.Code != "" {
			detail += " (" + string(se.Code) + ")"
		}
		if se.Msg != "" {
			detail += ": " + se.Msg
		}
		if se.RequestID != "" {
			detail += " [request " + se.RequestID + "]"
		}
		return &stripeError{op: op, status: se.HTTPStatusCode, detail: redact(detail)}
	}
	return &stripeError{op: op, detail: redact(err.Error())}
}

// account is what Checkout and Portal need to know of a user's billing.
type account struct {
	customer Customer     // the user's customer; zero when none is bound
	live     Subscription // a subscription to a plan of the catalog that has not ended; zero when none
}

// account reads the user's billing: the customer that holds a live subscription
// to a plan of the catalog, else the customer bound first.
func (s *Service) account(ctx context.Context, userID string) (account, error) {
	var a account
	err := s.store.Update(ctx, func(ctx context.Context, tx Tx) error {
		a = account{}
		customers, err := tx.CustomersOf(ctx, userID)
		if err != nil {
			return err
		}
		sort.SliceStable(customers, func(i, j int) bool { return customers[i].BoundAt.Before(customers[j].BoundAt) })
		for _, c := range customers {
			subs, err := tx.SubscriptionsOf(ctx, c.ID)
			if err != nil {
				return err
			}
			for _, sub := range subs {
				if sub.live() && s.planOf(sub) != "" {
					a.customer, a.live = c, sub
					return nil
				}
			}
		}
		if len(customers) > 0 {
			a.customer = customers[0]
		}
		return nil
	})
	if err != nil {
		return account{}, err
	}
	return a, nil
}

// live reports whether a subscription is one the customer pays for, or is asked to:
// known from its own events, not ended, and past incomplete (its first payment went
// through once).
func (s Subscription) live() bool {
	return s.Status != "" && s.Status != statusIncomplete && !s.Ended()
}

// Checkout starts a purchase of plan for the user and returns the URL to send
// them to: a Stripe Checkout Session in subscription mode for the plan's first
// price (Plan.Prices[0]; its Plan.MeteredPrice beside it, without a quantity),
// with client_reference_id and metadata user_id naming the user, the user's Stripe
// customer when one is bound (so that no second customer is created), and
// BillingConfig's success and cancel URLs. The webhook grants the plan once the
// subscription is active, whatever the order of Stripe's events.
//
// A user who already pays for a plan of the catalog (a subscription that is
// neither incomplete nor ended) is sent to the Customer Portal's plan-switch page
// for that subscription instead: a second checkout would start a second
// subscription, billed beside the first.
//
// Clicks repeated within a minute get the same session: the request carries an
// idempotency key derived from the user, the plan and what is sent. Errors:
// ErrBillingNotConfigured without an API key, ErrUnknownPlan for a plan the
// catalog lacks or that has no price, ErrStripe (wrapped) when Stripe fails, and
// the store's errors.
func (s *Service) Checkout(ctx context.Context, userID, plan string) (string, error) {
	if s.billing == nil {
		return "", ErrBillingNotConfigured
	}
	p, ok := s.cat[plan]
	if !ok || p.MonthlyCallLimit <= 0 || len(p.Prices) == 0 {
		return "", fmt.Errorf("%w %q", ErrUnknownPlan, plan)
	}
	if !validUser(userID) {
		return "", errors.New("entitlement: checkout: invalid user ID")
	}
	a, err := s.account(ctx, userID)
	if err != nil {
		return "", fmt.Errorf("entitlement: checkout: %w", err)
	}
	if a.live.ID != "" {
		u, err := s.portalSession(ctx, a.customer.ID, a.live.ID)
		if err != nil {
			return "", err
		}
		s.log.InfoContext(ctx, "checkout: the user already pays for a plan; sent to the portal to switch", "user", userID,
			"plan", plan, "customer", a.customer.ID, "subscription", a.live.ID)
		return u, nil
	}
	cfg := s.billing.cfg
	params := &stripe.CheckoutSessionParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		ClientReferenceID: stripe.String(userID),
		SuccessURL:        stripe.String(cfg.SuccessURL),
		CancelURL:         stripe.String(cfg.CancelURL),
		LineItems:         []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(p.Prices[0]), Quantity: stripe.Int64(1)}},
		SubscriptionData: &stripe.CheckoutSessionSubscriptionDataParams{
			Metadata: map[string]string{"user_id": userID, "plan": plan},
		},
	}
	params.Metadata = map[string]string{"user_id": userID, "plan": plan}
	if p.MeteredPrice != "" {
		params.LineItems = append(params.LineItems, &stripe.CheckoutSessionLineItemParams{Price: stripe.String(p.MeteredPrice)})
	}
	if a.customer.ID != "" {
		params.Customer = stripe.String(a.customer.ID)
	}
	params.Context = ctx
	params.SetIdempotencyKey(checkoutKey(userID, plan, p, a.customer.ID, cfg, s.now()))
	cs, err := s.billing.checkout.New(params)
	if err != nil {
		return "", stripeFailure(ctx, "checkout", err)
	}
	if cs.URL == "" {
		return "", &stripeError{op: "checkout", detail: "the session " + cs.ID + " has no URL"}
	}
	s.log.InfoContext(ctx, "checkout session created", "user", userID, "plan", plan, "session", cs.ID, "customer", a.customer.ID)
	return cs.URL, nil
}

// checkoutKey is the idempotency key of a checkout: the same for the same request
// within a minute, and different whenever a parameter differs (Stripe refuses a
// key reused with other parameters).
func checkoutKey(userID, plan string, p Plan, customerID string, cfg BillingConfig, now time.Time) string {
	h := sha256.New()
	for _, part := range []string{"tollgate checkout v1", userID, plan, p.Prices[0], p.MeteredPrice, customerID,
		cfg.SuccessURL, cfg.CancelURL, strconv.FormatInt(now.Unix()/60, 10)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return "tollgate-checkout-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Portal returns the URL of a Stripe Customer Portal session for the user's
// customer (the one that holds their live subscription, else the first bound),
// where they manage payment methods, invoices and their subscription; the portal
// leads back to BillingConfig.ReturnURL. ErrNoCustomer when no customer is bound
// to the user, ErrBillingNotConfigured without an API key, ErrStripe (wrapped)
// when Stripe fails.
func (s *Service) Portal(ctx context.Context, userID string) (string, error) {
	if s.billing == nil {
		return "", ErrBillingNotConfigured
	}
	a, err := s.account(ctx, userID)
	if err != nil {
		return "", fmt.Errorf("entitlement: portal: %w", err)
	}
	if a.customer.ID == "" {
		return "", ErrNoCustomer
	}
	return s.portalSession(ctx, a.customer.ID, "")
}

// portalSession creates a portal session for the customer; with a subscription ID
// it opens on that subscription's plan-switch page.
func (s *Service) portalSession(ctx context.Context, customerID, subscriptionID string) (string, error) {
	params := &stripe.BillingPortalSessionParams{
		Customer:  stripe.String(customerID),
		ReturnURL: stripe.String(s.billing.cfg.ReturnURL),
	}
	if subscriptionID != "" {
		params.FlowData = &stripe.BillingPortalSessionFlowDataParams{
			Type:               stripe.String(string(stripe.BillingPortalSessionFlowTypeSubscriptionUpdate)),
			SubscriptionUpdate: &stripe.BillingPortalSessionFlowDataSubscriptionUpdateParams{Subscription: stripe.String(subscriptionID)},
		}
	}
	params.Context = ctx
	ps, err := s.billing.portal.New(params)
	if err != nil {
		return "", stripeFailure(ctx, "portal", err)
	}
	if ps.URL == "" {
		return "", &stripeError{op: "portal", detail: "the session " + ps.ID + " has no URL"}
	}
	return ps.URL, nil
}
