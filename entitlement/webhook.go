package entitlement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// MaxWebhookBody is the largest webhook body the Service reads; a larger one is
// answered 413. Stripe's events are a few kilobytes.
const MaxWebhookBody = 1 << 20

// unverified is the event type observed for deliveries refused before the event
// could be trusted.
const unverified = "unverified"

// Event types the Service acts on.
const (
	typeCheckoutCompleted      = "checkout.session.completed"
	typeCheckoutAsyncSucceeded = "checkout.session.async_payment_succeeded"
	typeCheckoutAsyncFailed    = "checkout.session.async_payment_failed"
	typeEntitlementSummary     = "entitlements.active_entitlement_summary.updated"
	typeSubscriptionCreated    = "customer.subscription.created"
	typeSubscriptionUpdated    = "customer.subscription.updated"
	typeSubscriptionDeleted    = "customer.subscription.deleted"
	typeInvoicePaid            = "invoice.paid"
	typeInvoicePaymentFailed   = "invoice.payment_failed"
)

// ServeHTTP is Stripe's webhook endpoint (POST /billing/webhook). It verifies the
// Stripe-Signature header against Config.WebhookSecret (300 s tolerance), refuses
// events of another API version than stripe.APIVersion, ignores other livemodes
// and Connect events, and applies the event in one transaction with its ID.
// Refusals are 4xx problem+json bodies (ErrBadSignature, ErrAPIVersion, …) and
// change nothing. When the store or the Delivery fails while a verified event is
// applied, the event is not recorded and the answer is 503 (ErrWebhookFailed) with
// Retry-After, so Stripe delivers the event again. Every event it accepts, acted
// on or not, is answered 200 with {"received":true,"outcome":…}, an Outcome…
// constant; Config.Observe sees the same outcome.
//
// It acts on checkout.session.completed, .async_payment_succeeded and
// .async_payment_failed (bind the session's customer to the user in
// client_reference_id or metadata.user_id), customer.subscription.created,
// .updated and .deleted, invoice.paid and invoice.payment_failed, and, when the
// catalog has plans with Features, entitlements.active_entitlement_summary.updated.
// Events about a customer not yet bound are kept and applied when the binding
// arrives.
//
// A checkout session never grants by itself, paid or not: it binds the customer,
// and the plan follows what is known of the customer's subscriptions (and
// entitlement summaries), whichever event comes first. So a checkout paid later
// (payment_status unpaid: a bank debit) binds at once, grants nothing while its
// subscription is incomplete, and the plan arrives with the event that makes the
// subscription active (customer.subscription.updated or invoice.paid), before or
// after checkout.session.async_payment_succeeded.
//
// Identifiers of a verified event that no database keeps alike (NUL bytes,
// control characters, invalid UTF-8, over 255 bytes) and times outside the years
// 1970 to 9999 make it malformed (400): such an event changes nothing, and a bad
// body is never answered 5xx.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		problem.WriteError(w, errMethod)
		return
	}
	if s.cfg.WebhookSecret == "" {
		s.observe(unverified, OutcomeRejected)
		problem.WriteError(w, ErrWebhookNotConfigured)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
	if err != nil {
		s.observe(unverified, OutcomeRejected)
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.log.WarnContext(r.Context(), "stripe webhook refused: body over the limit", "limit_bytes", MaxWebhookBody)
			problem.WriteError(w, ErrWebhookTooLarge)
			return
		}
		problem.WriteError(w, ErrWebhookUnreadable)
		return
	}
	ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), s.cfg.WebhookSecret,
		webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true}) // checked below, with a clearer log line
	if err != nil {
		s.observe(unverified, OutcomeRejected)
		if isSignatureError(err) {
			s.log.WarnContext(r.Context(), "stripe webhook refused: bad signature", "reason", err.Error())
			problem.WriteError(w, ErrBadSignature)
			return
		}
		s.log.WarnContext(r.Context(), "stripe webhook refused: malformed event", "error", err.Error())
		problem.WriteError(w, ErrMalformedEvent)
		return
	}
	eventType := string(ev.Type)
	if ev.APIVersion != stripe.APIVersion {
		s.observe(eventType, OutcomeRejected)
		s.log.ErrorContext(r.Context(), "stripe webhook refused: API version mismatch; pin the webhook endpoint's API version "+
			"to the one this server is built for (create the endpoint with api_version="+stripe.APIVersion+")",
			"event", ev.ID, "got", ev.APIVersion, "want", stripe.APIVersion)
		problem.WriteError(w, &apiVersionError{got: ev.APIVersion})
		return
	}
	outcome, err := s.dispatch(r.Context(), &ev)
	switch {
	case errors.Is(err, ErrMalformedEvent):
		s.observe(eventType, OutcomeRejected)
		s.log.WarnContext(r.Context(), "stripe webhook refused: malformed event", "event", ev.ID, "type", eventType, "error", err.Error())
		problem.WriteError(w, ErrMalformedEvent)
		return
	case err != nil:
		s.observe(eventType, OutcomeFailed)
		s.log.ErrorContext(r.Context(), "stripe webhook failed; Stripe will retry", "event", ev.ID, "type", eventType, "error", err.Error())
		problem.WriteError(w, ErrWebhookFailed)
		return
	}
	s.observe(eventType, outcome)
	s.log.DebugContext(r.Context(), "stripe webhook", "event", ev.ID, "type", eventType, "outcome", outcome)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(struct {
		Received bool   `json:"received"`
		Outcome  string `json:"outcome"`
	}{true, outcome})
}

func isSignatureError(err error) bool {
	return errors.Is(err, webhook.ErrNotSigned) || errors.Is(err, webhook.ErrInvalidHeader) ||
		errors.Is(err, webhook.ErrNoValidSignature) || errors.Is(err, webhook.ErrTooOld)
}

// change is an event's effect on the store, run inside the transaction that
// records the event. It returns the customer whose user to reconcile (or the user
// directly, for a checkout) and applied=false when the event changed nothing.
type change func(ctx context.Context, tx Tx, now time.Time) (customerID, userID string, applied bool, err error)

// dispatch decodes a verified event and applies it.
func (s *Service) dispatch(ctx context.Context, ev *stripe.Event) (string, error) {
	if ev.Livemode != s.cfg.Livemode || ev.Account != "" {
		return OutcomeIgnored, nil
	}
	if ev.ID == "" || ev.Data == nil || len(ev.Data.Raw) == 0 {
		return "", fmt.Errorf("%w: no id or no data.object", ErrMalformedEvent)
	}
	if !validID(ev.ID) || !validUnix(ev.Created) {
		return "", fmt.Errorf("%w: bad event id or created time", ErrMalformedEvent)
	}
	at := time.Unix(ev.Created, 0).UTC()
	var (
		apply change
		err   error
	)
	switch string(ev.Type) {
	case typeCheckoutCompleted, typeCheckoutAsyncSucceeded, typeCheckoutAsyncFailed:
		apply, err = s.checkoutChange(ctx, ev)
	case typeEntitlementSummary:
		if len(s.features) == 0 {
			return OutcomeIgnored, nil // the catalog maps no features: not for us
		}
		apply, err = s.summaryChange(ctx, ev, at)
	case typeSubscriptionCreated, typeSubscriptionUpdated, typeSubscriptionDeleted:
		apply, err = s.subscriptionChange(ctx, ev, at)
	case typeInvoicePaid, typeInvoicePaymentFailed:
		apply, err = s.invoiceChange(ctx, ev, at)
	default:
		return OutcomeIgnored, nil
	}
	if err != nil || apply == nil {
		return OutcomeIgnored, err
	}
	var outcome string
	err = s.update(ctx, func(ctx context.Context, tx Tx) error {
		now := s.now()
		first, err := tx.MarkProcessed(ctx, Event{ID: ev.ID, Type: string(ev.Type), Created: at, ReceivedAt: now})
		if err != nil {
			return err
		}
		if !first {
			outcome = OutcomeDuplicate
			return nil
		}
		customerID, userID, applied, err := apply(ctx, tx, now)
		if err != nil {
			return err
		}
		if !applied {
			outcome = OutcomeIgnored
			return nil
		}
		if userID == "" {
			c, err := tx.Customer(ctx, customerID)
			if errors.Is(err, ErrNotFound) {
				outcome = OutcomeUnbound
				return nil
			}
			if err != nil {
				return err
			}
			userID = c.UserID
		}
		outcome, err = s.reconcile(ctx, tx, userID, now)
		return err
	})
	return outcome, err
}

// checkoutChange binds the session's customer to the user named by
// client_reference_id (or metadata.user_id), whatever its payment status, and
// applies the subscription it created when Config.Subscriptions can read it. The
// session itself grants nothing: the user's plan follows their subscriptions.
func (s *Service) checkoutChange(ctx context.Context, ev *stripe.Event) (change, error) {
	var cs stripe.CheckoutSession
	if err := json.Unmarshal(ev.Data.Raw, &cs); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedEvent, err)
	}
	userID := cs.ClientReferenceID
	if userID == "" {
		userID = cs.Metadata["user_id"]
	}
	if cs.Customer == nil || cs.Customer.ID == "" || !validUser(userID) {
		s.log.WarnContext(ctx, "stripe checkout names no customer or no usable user (client_reference_id, metadata.user_id); nothing to bind", "event", ev.ID)
		return nil, nil
	}
	customerID := cs.Customer.ID
	if !validID(customerID) || (cs.Subscription != nil && cs.Subscription.ID != "" && !validID(cs.Subscription.ID)) {
		return nil, fmt.Errorf("%w: checkout session: bad customer or subscription id", ErrMalformedEvent)
	}
	if cs.PaymentStatus == stripe.CheckoutSessionPaymentStatusUnpaid {
		s.log.InfoContext(ctx, "stripe checkout completed unpaid (a delayed payment method): the customer is bound, the plan follows the subscription",
			"event", ev.ID, "type", string(ev.Type), "customer", customerID)
	}
	var fresh *snapshot
	if cs.Subscription != nil && cs.Subscription.ID != "" && s.cfg.Subscriptions != nil {
		fresh = s.read(ctx, cs.Subscription.ID, ev)
	}
	return func(ctx context.Context, tx Tx, now time.Time) (string, string, bool, error) {
		c, err := tx.BindCustomer(ctx, Customer{ID: customerID, UserID: userID, BoundAt: now})
		if err != nil {
			return "", "", false, err
		}
		if c.UserID != userID {
			s.log.WarnContext(ctx, "stripe customer is bound to another user; keeping the first binding",
				"customer", customerID, "bound_user", c.UserID, "checkout_user", userID)
		}
		if fresh != nil {
			if _, err := s.putSnapshot(ctx, tx, *fresh, now); err != nil {
				return "", "", false, err
			}
		}
		return customerID, c.UserID, true, nil
	}, nil
}

// activeEntitlementSummary is the part of Stripe's
// entitlements.active_entitlement_summary object the Service reads (stripe-go v76
// has no type for it).
type activeEntitlementSummary struct {
	Customer     json.RawMessage `json:"customer"` // an ID, or the expanded customer
	Entitlements *struct {
		Data []struct {
			LookupKey string `json:"lookup_key"`
		} `json:"data"`
		HasMore bool `json:"has_more"`
	} `json:"entitlements"`
}

// summaryChange folds an active entitlement summary, a snapshot of the customer's
// active entitlements, into the customer's feature set: a newer summary replaces
// it, an older one changes nothing.
func (s *Service) summaryChange(ctx context.Context, ev *stripe.Event, at time.Time) (change, error) {
	var sum activeEntitlementSummary
	if err := json.Unmarshal(ev.Data.Raw, &sum); err != nil {
		return nil, fmt.Errorf("%w: entitlement summary: %v", ErrMalformedEvent, err)
	}
	customerID := expandableID(sum.Customer)
	if !validID(customerID) || sum.Entitlements == nil {
		return nil, fmt.Errorf("%w: entitlement summary: no customer or no entitlements", ErrMalformedEvent)
	}
	seen := map[string]bool{}
	keys := []string{}
	for _, e := range sum.Entitlements.Data {
		if e.LookupKey == "" || seen[e.LookupKey] {
			continue
		}
		if !validID(e.LookupKey) {
			return nil, fmt.Errorf("%w: entitlement summary: bad lookup key", ErrMalformedEvent)
		}
		seen[e.LookupKey] = true
		keys = append(keys, e.LookupKey)
	}
	sort.Strings(keys)
	if sum.Entitlements.HasMore {
		s.log.WarnContext(ctx, "stripe entitlement summary lists only part of the customer's entitlements; working from the part it lists",
			"event", ev.ID, "customer", customerID, "listed", len(keys))
	}
	return func(ctx context.Context, tx Tx, now time.Time) (string, string, bool, error) {
		cur, err := tx.FeatureSet(ctx, customerID)
		switch {
		case err == nil && at.Before(cur.StateAt):
			return "", "", false, nil // an older snapshot
		case err != nil && !errors.Is(err, ErrNotFound):
			return "", "", false, err
		}
		if err := tx.PutFeatureSet(ctx, FeatureSet{CustomerID: customerID, LookupKeys: keys, StateAt: at, UpdatedAt: now}); err != nil {
			return "", "", false, err
		}
		return customerID, "", true, nil
	}, nil
}

// expandableID returns the ID of an expandable field: the string itself, or the
// expanded object's id.
func expandableID(raw json.RawMessage) string {
	var id string
	if json.Unmarshal(raw, &id) == nil {
		return id
	}
	var obj struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return obj.ID
	}
	return ""
}

// subscriptionChange folds the event's subscription (or Stripe's current copy of
// it) into the store.
func (s *Service) subscriptionChange(ctx context.Context, ev *stripe.Event, at time.Time) (change, error) {
	var sub stripe.Subscription
	if err := json.Unmarshal(ev.Data.Raw, &sub); err != nil || sub.ID == "" {
		return nil, fmt.Errorf("%w: subscription: %v", ErrMalformedEvent, err)
	}
	snap := snapshotOf(&sub, at)
	if !snap.valid() {
		return nil, fmt.Errorf("%w: subscription: bad id, customer, status or price", ErrMalformedEvent)
	}
	if string(ev.Type) == typeSubscriptionDeleted {
		snap.Deleted = true
	} else if s.cfg.Subscriptions != nil {
		if fresh := s.read(ctx, sub.ID, ev); fresh != nil {
			snap = *fresh
		}
	}
	s.checkPrices(ctx, ev, snap)
	return func(ctx context.Context, tx Tx, now time.Time) (string, string, bool, error) {
		stored, err := s.putSnapshot(ctx, tx, snap, now)
		return stored.CustomerID, "", err == nil && stored.ID != "", err
	}, nil
}

// putSnapshot applies snap to the stored subscription and returns the result, or
// a zero Subscription when snap changed nothing.
func (s *Service) putSnapshot(ctx context.Context, tx Tx, snap snapshot, now time.Time) (Subscription, error) {
	cur, err := tx.Subscription(ctx, snap.ID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Subscription{}, err
	}
	next, changed := applySnapshot(cur, err == nil, snap, now)
	if !changed {
		return Subscription{}, nil
	}
	return next, tx.PutSubscription(ctx, next)
}

// invoiceChange records a subscription invoice's payment or failure.
func (s *Service) invoiceChange(ctx context.Context, ev *stripe.Event, at time.Time) (change, error) {
	var in stripe.Invoice
	if err := json.Unmarshal(ev.Data.Raw, &in); err != nil || in.ID == "" {
		return nil, fmt.Errorf("%w: invoice: %v", ErrMalformedEvent, err)
	}
	inv := invoiceInfo{ID: in.ID, Created: time.Unix(in.Created, 0).UTC(), At: at}
	if in.Customer != nil {
		inv.CustomerID = in.Customer.ID
	}
	if in.Subscription != nil {
		inv.SubscriptionID = in.Subscription.ID
	}
	if in.Lines != nil {
		for _, line := range in.Lines.Data {
			if line == nil {
				continue
			}
			if inv.SubscriptionID == "" && line.Subscription != nil {
				inv.SubscriptionID = line.Subscription.ID
			}
			if line.Price != nil && line.Price.ID != "" {
				inv.PriceIDs = append(inv.PriceIDs, line.Price.ID)
			}
		}
	}
	if inv.SubscriptionID == "" || inv.CustomerID == "" {
		return nil, nil // not a subscription's invoice
	}
	if !inv.valid() || !validUnix(in.Created) {
		return nil, fmt.Errorf("%w: invoice: bad id, customer, subscription, price or created time", ErrMalformedEvent)
	}
	paid := string(ev.Type) == typeInvoicePaid
	if paid && len(inv.PriceIDs) > 0 {
		s.checkPrices(ctx, ev, snapshot{ID: inv.SubscriptionID, Status: statusActive, PriceIDs: inv.PriceIDs})
	}
	return func(ctx context.Context, tx Tx, now time.Time) (string, string, bool, error) {
		cur, err := tx.Subscription(ctx, inv.SubscriptionID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", "", false, err
		}
		var next Subscription
		var changed bool
		if paid {
			next, changed = applyInvoicePaid(cur, err == nil, inv, now)
		} else {
			next, changed = applyInvoiceFailed(cur, err == nil, inv, now)
		}
		if !changed {
			return "", "", false, nil
		}
		if err := tx.PutSubscription(ctx, next); err != nil {
			return "", "", false, err
		}
		return next.CustomerID, "", true, nil
	}, nil
}

// read re-reads a subscription through Config.Subscriptions. On failure it logs and
// returns nil, and the caller works from the event's payload.
func (s *Service) read(ctx context.Context, id string, ev *stripe.Event) *snapshot {
	sub, err := s.cfg.Subscriptions.Subscription(ctx, id)
	if err != nil || sub == nil || sub.ID != id {
		s.log.WarnContext(ctx, "could not re-read the subscription from Stripe; using the event's copy",
			"event", ev.ID, "subscription", id, "error", fmt.Sprint(err))
		return nil
	}
	snap := snapshotOf(sub, s.now().UTC())
	if !snap.valid() {
		s.log.WarnContext(ctx, "the subscription Stripe returned has unusable identifiers; using the event's copy", "event", ev.ID, "subscription", id)
		return nil
	}
	snap.Fresh = true
	return &snap
}

// snapshotOf extracts what the rules need from a stripe-go subscription.
func snapshotOf(sub *stripe.Subscription, at time.Time) snapshot {
	snap := snapshot{ID: sub.ID, Status: string(sub.Status), At: at}
	if sub.Customer != nil {
		snap.CustomerID = sub.Customer.ID
	}
	if sub.Items != nil {
		for _, item := range sub.Items.Data {
			if item != nil && item.Price != nil && item.Price.ID != "" {
				snap.PriceIDs = append(snap.PriceIDs, item.Price.ID)
			}
		}
	}
	return snap
}

// checkPrices warns when a subscription that would grant names no price of
// the catalog: a misconfiguration that leaves a paying customer without a key.
func (s *Service) checkPrices(ctx context.Context, ev *stripe.Event, snap snapshot) {
	if !grantingStatus(snap.Status) || snap.Deleted || s.planOf(Subscription{PriceIDs: snap.PriceIDs}) != "" {
		return
	}
	s.observe(string(ev.Type), OutcomeUnknownPrice)
	s.log.WarnContext(ctx, "stripe subscription has no price that maps to a plan; it grants nothing (check the price configuration)",
		"event", ev.ID, "subscription", snap.ID, "prices", snap.PriceIDs)
}
