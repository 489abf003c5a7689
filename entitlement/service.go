package entitlement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

// Outcomes passed to Config.Observe and answered in the webhook's 2xx body.
const (
	OutcomeGranted   = "granted"   // a key was issued: a first plan or a plan change
	OutcomeRevoked   = "revoked"   // the user's keys were revoked and none replaced them
	OutcomeUnchanged = "unchanged" // recorded; the user's plan stays as it was
	OutcomeUnbound   = "unbound"   // recorded; applied once checkout binds the customer
	OutcomeDuplicate = "duplicate" // the event ID was processed before
	OutcomeIgnored   = "ignored"   // not for us: other type, livemode, Connect, stale
	OutcomeRejected  = "rejected"  // refused: signature, API version, size, payload
	OutcomeFailed    = "failed"    // the store or the Delivery failed: 503, Stripe will retry
	// OutcomeUnknownPrice is observed in addition to the event's outcome when a
	// subscription names no price of the catalog and so grants nothing.
	OutcomeUnknownPrice = "unknown_price"
)

// Config holds a Service's settings. Catalog and Keys are required; the zero value
// of every other field is the documented default.
type Config struct {
	// Catalog is the plan catalog: the monthly call limit of each plan and the
	// Stripe prices that buy it. Required; New validates it (Catalog.Validate) and
	// keeps a copy. A subscription none of whose prices is in the catalog grants
	// nothing; the Service logs a warning and observes OutcomeUnknownPrice.
	Catalog Catalog
	// Keys issues and revokes the users' keys with their quotas. Required. Its
	// calls join the store's transaction through the context (see KeyIssuer).
	Keys KeyIssuer
	// WebhookSecret is the endpoint's signing secret (whsec_…). Empty: the webhook
	// answers 503.
	WebhookSecret string
	// Livemode selects live events (true) or test events (false, the default);
	// events of the other mode are ignored with a 2xx.
	Livemode bool
	// SealKey is the 32-byte AES-256-GCM key that seals webhook-issued keys until
	// Reveal. Required when WebhookSecret is set and Delivery is nil.
	SealKey []byte
	// Subscriptions, if set, re-reads a subscription from Stripe when an event
	// names it, so decisions use Stripe's current state rather than the event's
	// copy. nil: work from event payloads.
	Subscriptions SubscriptionReader
	// Delivery hands a webhook-issued key to its owner; nil seals it for Reveal.
	Delivery Delivery
	// Billing lets the Service start purchases (Checkout) and open the Customer
	// Portal (Portal). Its zero value turns both off.
	Billing BillingConfig
	// RotateGrace is how long the key a Stripe plan change replaces (one paid
	// plan to another) keeps working beside the new one, on the new plan and
	// its quota (KeyIssuer.Issue's grace), so that the customer can deploy the
	// new key first. 0 (the default) revokes it at once. Losing the paid plan
	// (a cancellation, a failed payment) always revokes at once, and so do
	// Grant and Revoke. At most apikey.MaxGrace (New checks).
	RotateGrace time.Duration
	// Now is the clock of the records the Service keeps; nil means time.Now. (The
	// KeyIssuer keeps its own clock for the keys.)
	Now func() time.Time
	// Logger receives operational logs, never a secret; nil means slog.Default().
	Logger *slog.Logger
	// Observe, if set, is called once per webhook delivery with the event type
	// ("unverified" before the signature checks out) and an Outcome… constant. It
	// must be safe for concurrent use.
	Observe func(eventType, outcome string)
}

// Delivery hands a key the webhook issued to its owner. Deliver runs inside the
// transaction that issues the key, as its last step, so it should be quick (or
// enqueue): an error rolls the change back, the webhook answers 503, and Stripe
// delivers the event again. ctx carries the transaction, and tx lets a delivery
// store what it must atomically with the change. raw must never be logged.
type Delivery interface {
	Deliver(ctx context.Context, tx Tx, k apikey.Key, raw string) error
}

// Service applies Stripe billing events to API keys. It is safe for concurrent use.
type Service struct {
	store    Store
	keys     KeyIssuer
	cat      Catalog
	prices   map[string]string // price ID → plan name
	features map[string]string // feature lookup key → plan name
	cfg      Config
	seal     *sealer  // nil without a SealKey
	billing  *billing // nil without Config.Billing.APIKey
	now      func() time.Time
	log      *slog.Logger
}

// New returns a Service keeping its state in store and issuing keys through
// cfg.Keys. It fails when store, cfg.Keys or cfg.Catalog is missing, the catalog
// is invalid, SealKey is unusable (or missing while WebhookSecret is set and
// Delivery is nil), Billing has an API key but not its URLs, or RotateGrace is
// negative or above apikey.MaxGrace.
func New(store Store, cfg Config) (*Service, error) {
	switch {
	case store == nil:
		return nil, errors.New("entitlement: New needs a Store")
	case cfg.Keys == nil:
		return nil, errors.New("entitlement: Config.Keys is required")
	case len(cfg.Catalog) == 0:
		return nil, errors.New("entitlement: Config.Catalog is required")
	case cfg.RotateGrace < 0 || cfg.RotateGrace > apikey.MaxGrace:
		return nil, fmt.Errorf("entitlement: Config.RotateGrace %v is not from 0 to %v", cfg.RotateGrace, apikey.MaxGrace)
	}
	if err := cfg.Catalog.Validate(); err != nil {
		return nil, err
	}
	s := &Service{store: store, keys: cfg.Keys, cat: cfg.Catalog.clone(), now: cfg.Now, log: cfg.Logger}
	cfg.Catalog = s.cat
	s.cfg = cfg
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.prices = make(map[string]string)
	s.features = make(map[string]string)
	for name, p := range s.cat {
		for _, price := range p.Prices {
			s.prices[price] = name
		}
		for _, key := range p.Features {
			s.features[key] = name
		}
	}
	if cfg.Billing.APIKey != "" {
		b, err := newBilling(cfg.Billing, s.log)
		if err != nil {
			return nil, err
		}
		s.billing = b
	}
	if len(cfg.SealKey) > 0 || (cfg.WebhookSecret != "" && cfg.Delivery == nil) {
		seal, err := newSealer(cfg.SealKey)
		if err != nil {
			return nil, err
		}
		s.seal = seal
	}
	return s, nil
}

func (s *Service) observe(eventType, outcome string) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(eventType, outcome)
	}
}

// update runs fn in a store transaction. It tries again, up to three times, when a
// key issued under the store's lock met an active key created concurrently outside
// it (a user's own rotation); fn must therefore be safe to run again.
func (s *Service) update(ctx context.Context, fn func(context.Context, Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.store.Update(ctx, fn)
		if err == nil || !errors.Is(err, apikey.ErrActiveExists) || attempt == 3 {
			return err
		}
	}
}

// Grant does what a paid checkout does, by hand: it revokes the user's active keys,
// discards a key waiting to be revealed, and issues one key on plan with limit
// monthly calls (0: the plan's limit). It returns the raw key, which is not kept
// anywhere; the caller shows it once. ErrUnknownPlan if the catalog has no plan of
// that name with a monthly call limit.
func (s *Service) Grant(ctx context.Context, userID, plan string, limit int64) (raw string, err error) {
	if userID == "" {
		return "", errors.New("entitlement: grant: empty user ID")
	}
	p, ok := s.cat[plan]
	if !ok || p.MonthlyCallLimit <= 0 {
		return "", fmt.Errorf("%w %q", ErrUnknownPlan, plan)
	}
	if limit < 0 {
		return "", errors.New("entitlement: grant: negative limit")
	}
	if limit == 0 {
		limit = p.MonthlyCallLimit
	}
	err = s.update(ctx, func(ctx context.Context, tx Tx) error {
		var k apikey.Key
		var err error
		raw, k, err = s.issue(ctx, tx, userID, plan, limit, "admin grant", 0)
		if err != nil {
			return err
		}
		return tx.PutEntitlement(ctx, Entitlement{UserID: userID, Plan: plan, KeyID: k.ID, Source: SourceAdmin, UpdatedAt: s.now()})
	})
	if err != nil {
		return "", fmt.Errorf("entitlement: grant: %w", err)
	}
	return raw, nil
}

// Revoke revokes every active key of the user and destroys a key waiting to be
// revealed; it returns how many keys it revoked. The applied plan stays recorded,
// so renewals and duplicates do not bring a key back; the next real change of the
// user's billing (an upgrade, a recovered payment, a new subscription) does.
func (s *Service) Revoke(ctx context.Context, userID string) (int, error) {
	var n int
	err := s.update(ctx, func(ctx context.Context, tx Tx) error {
		var err error
		if n, err = s.keys.RevokeUser(ctx, userID, "admin revoke"); err != nil {
			return err
		}
		if _, err := tx.TakeSealed(ctx, userID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("entitlement: revoke: %w", err)
	}
	return n, nil
}

// Reveal returns the key the webhook issued to the user and destroys its sealed
// copy, so it is returned exactly once, also to concurrent callers.
// ErrNothingToReveal when no key waits, or when the waiting key is no longer
// active or is expiring (the user rotated it meanwhile, or a later change
// replaced it). A sealed key that does not open (the
// SealKey changed) is an error and stays in the store.
func (s *Service) Reveal(ctx context.Context, userID string) (raw string, err error) {
	if s.seal == nil {
		return "", ErrNothingToReveal
	}
	err = s.update(ctx, func(ctx context.Context, tx Tx) error {
		raw = ""
		sk, err := tx.TakeSealed(ctx, userID)
		if err != nil {
			return err
		}
		k, err := s.keys.Key(ctx, sk.KeyID)
		if errors.Is(err, apikey.ErrNotFound) || (err == nil && (!k.Active() || k.Expiring())) {
			return nil // destroyed, and nothing to show
		}
		if err != nil {
			return err
		}
		raw, err = s.seal.open(userID, sk.KeyID, sk.Sealed)
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return "", ErrNothingToReveal
	case err != nil:
		return "", fmt.Errorf("entitlement: reveal: %w", err)
	case raw == "":
		return "", ErrNothingToReveal
	}
	return raw, nil
}

// ForSale returns the plans Checkout sells (a monthly call limit and a price),
// lowest rank first. It says nothing of whether billing is configured: Checkout
// answers ErrBillingNotConfigured then.
func (s *Service) ForSale() []Plan {
	var out []Plan
	for _, name := range s.cat.Names() {
		if p := s.cat[name]; p.MonthlyCallLimit > 0 && len(p.Prices) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// Pending reports whether a key waits for the user's Reveal.
func (s *Service) Pending(ctx context.Context, userID string) (bool, error) {
	ok, err := s.store.HasSealed(ctx, userID)
	if err != nil {
		return false, fmt.Errorf("entitlement: pending: %w", err)
	}
	return ok, nil
}

// PruneEvents forgets processed event IDs older than maxAge. Stripe retries an
// event for up to three days, so keep maxAge well above that (30 days, say).
func (s *Service) PruneEvents(ctx context.Context, maxAge time.Duration) (int64, error) {
	n, err := s.store.PruneEvents(ctx, s.now().Add(-maxAge))
	if err != nil {
		return 0, fmt.Errorf("entitlement: prune: %w", err)
	}
	return n, nil
}

// issue discards a key still waiting to be revealed and has the KeyIssuer
// replace the user's active keys with a new one: revoked, or with grace > 0
// retired until then.
func (s *Service) issue(ctx context.Context, tx Tx, userID, plan string, limit int64, reason string, grace time.Duration) (string, apikey.Key, error) {
	if _, err := tx.TakeSealed(ctx, userID); err != nil && !errors.Is(err, ErrNotFound) {
		return "", apikey.Key{}, err
	}
	return s.keys.Issue(ctx, userID, plan, limit, reason, grace)
}

// deliver hands a webhook-issued key to its owner: Config.Delivery, or sealed for
// Reveal.
func (s *Service) deliver(ctx context.Context, tx Tx, userID string, k apikey.Key, raw string, now time.Time) error {
	if s.cfg.Delivery != nil {
		return s.cfg.Delivery.Deliver(ctx, tx, k, raw)
	}
	sealed, err := s.seal.seal(userID, k.ID, raw)
	if err != nil {
		return err
	}
	return tx.PutSealed(ctx, SealedKey{UserID: userID, KeyID: k.ID, Sealed: sealed, CreatedAt: now})
}

// planOf returns the highest-ranked plan the subscription's prices map to, or "".
func (s *Service) planOf(sub Subscription) string {
	best := ""
	for _, price := range sub.PriceIDs {
		if plan, ok := s.prices[price]; ok && (best == "" || s.cat.Rank(plan) > s.cat.Rank(best)) {
			best = plan
		}
	}
	return best
}

// planOfFeatures returns the highest-ranked plan the feature set's lookup keys map
// to, or "".
func (s *Service) planOfFeatures(f FeatureSet) string {
	best := ""
	for _, key := range f.LookupKeys {
		if plan, ok := s.features[key]; ok && (best == "" || s.cat.Rank(plan) > s.cat.Rank(best)) {
			best = plan
		}
	}
	return best
}

// Revocation reasons of keys whose paid plan ended, as Key.RevokeReason records
// them.
const (
	ReasonPaymentFailed = "billing: payment failed"
	ReasonCancelled     = "billing: cancelled"
	ReasonNoPaidPlan    = "billing: no paid plan"
)

// desiredPlan is the highest-ranked plan that any granting subscription of the
// user's customers, or any of their active entitlement summaries, calls for, or
// "" with the reason none does: a subscription that stopped for want of payment,
// else one that was cancelled, else no subscription at all.
func (s *Service) desiredPlan(ctx context.Context, tx Tx, userID string) (plan, reason string, err error) {
	customers, err := tx.CustomersOf(ctx, userID)
	if err != nil {
		return "", "", err
	}
	reason = ReasonNoPaidPlan
	best := ""
	consider := func(plan string) {
		if plan != "" && (best == "" || s.cat.Rank(plan) > s.cat.Rank(best)) {
			best = plan
		}
	}
	for _, c := range customers {
		subs, err := tx.SubscriptionsOf(ctx, c.ID)
		if err != nil {
			return "", "", err
		}
		for _, sub := range subs {
			switch {
			case sub.Grants():
				consider(s.planOf(sub))
			case sub.FailedInvoice != "" || sub.Status == statusPastDue || sub.Status == statusUnpaid:
				reason = ReasonPaymentFailed
			case sub.Ended() && reason != ReasonPaymentFailed:
				reason = ReasonCancelled
			}
		}
		if len(s.features) == 0 {
			continue
		}
		f, err := tx.FeatureSet(ctx, c.ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", "", err
		}
		consider(s.planOfFeatures(f))
	}
	return best, reason, nil
}

// reconcile gives the user the plan their subscriptions call for, if that differs
// from the plan last applied: for a paid plan it issues a new key with the plan's
// limit and delivers it, the user's keys revoked, or retired for
// Config.RotateGrace when a paid plan replaces another one (a first plan has
// nothing to keep); without a paid plan it revokes their keys at once. An
// operator's grant is not taken away by the absence of a subscription, only
// replaced by a paid plan.
func (s *Service) reconcile(ctx context.Context, tx Tx, userID string, now time.Time) (string, error) {
	want, reason, err := s.desiredPlan(ctx, tx, userID)
	if err != nil {
		return "", err
	}
	have, err := tx.Entitlement(ctx, userID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", err
	}
	if want == have.Plan || (want == "" && have.Source == SourceAdmin) {
		return OutcomeUnchanged, nil
	}
	ent := Entitlement{UserID: userID, Plan: want, Source: SourceStripe, UpdatedAt: now}
	outcome := OutcomeGranted
	if want == "" {
		if _, err := s.keys.RevokeUser(ctx, userID, reason); err != nil {
			return "", err
		}
		if _, err := tx.TakeSealed(ctx, userID); err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
		outcome = OutcomeRevoked
	} else {
		var grace time.Duration
		if have.Plan != "" {
			grace = s.cfg.RotateGrace // a plan change: the old key may run out its grace
		}
		raw, k, err := s.issue(ctx, tx, userID, want, s.cat[want].MonthlyCallLimit, "billing: plan changed to "+want, grace)
		if err != nil {
			return "", err
		}
		if err := s.deliver(ctx, tx, userID, k, raw, now); err != nil {
			return "", err
		}
		ent.KeyID = k.ID
	}
	if err := tx.PutEntitlement(ctx, ent); err != nil {
		return "", err
	}
	s.log.InfoContext(ctx, "entitlement applied", "user", userID, "from", have.Plan, "to", want, "outcome", outcome)
	return outcome, nil
}
