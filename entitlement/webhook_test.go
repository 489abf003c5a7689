package entitlement_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/entitlement/internal/keystest"
	"github.com/releaseradar/tollgate/internal/problem"
	stripe "github.com/stripe/stripe-go/v76"
)

// Sequence 1: a paid checkout for gold gives the user one active key at gold's
// limit; the invoice.paid that accompanies it changes nothing.
func TestSeq1CheckoutGrantsGold(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		h.bindGold("user_1", "cus_1", "sub_1")
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "invoice.paid", obj: invoice(t, "in_1", "cus_1", "sub_1", priceGold, true, h.created)})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})
	})
}

// Sequence 2: the same event delivered twice, one after the other and then
// concurrently, takes effect once.
func TestSeq2DuplicateEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		first := h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		first.created = 0 // a new signature and a fresh harness clock; same ID and body otherwise
		h.expect(entitlement.OutcomeDuplicate, ev{id: first.id, typ: first.typ, obj: first.obj, created: first.created})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})

		// Concurrently: a second user's checkout, delivered by 8 clients at once.
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_2", "cus_2", "active", pricePlatinum, month)})
		e := ev{typ: "checkout.session.completed", obj: checkout(t, "cus_2", "sub_2", "user_2", "paid")}
		body := h.build(&e)
		const n = 8
		outcomes := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				status, outcome := h.postRaw(body, sign(body, h.secret, time.Now()))
				if status != http.StatusOK {
					t.Errorf("concurrent delivery: status %d: %s", status, outcome)
				}
				outcomes[i] = outcome
			})
		}
		wg.Wait()
		counts := map[string]int{}
		for _, o := range outcomes {
			counts[o]++
		}
		if counts[entitlement.OutcomeGranted] != 1 || counts[entitlement.OutcomeDuplicate] != n-1 {
			t.Fatalf("concurrent duplicates: outcomes %v, want 1 granted and %d duplicate", counts, n-1)
		}
		h.check("user_2", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 1})
		if got := h.observedCount("checkout.session.completed", entitlement.OutcomeGranted); got != 2 {
			t.Fatalf("Observe saw %d grants from checkouts, want 2", got)
		}
	})
}

// Sequence 3: two different events that describe the same change rotate once.
func TestSeq3SameChangeTwoEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		h.bindGold("user_1", "cus_1", "sub_1")
		// Stripe sends customer.subscription.updated with the same state as created.
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})

		// A failed renewal revokes; the recovery is told twice (invoice.paid and the
		// subscription turning active again) and issues one key.
		in2 := h.created
		h.expect(entitlement.OutcomeRevoked, ev{typ: "invoice.payment_failed", obj: invoice(t, "in_2", "cus_1", "sub_1", priceGold, false, in2)})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "past_due", priceGold, month)})
		h.expect(entitlement.OutcomeGranted, ev{typ: "invoice.paid", obj: invoice(t, "in_2", "cus_1", "sub_1", priceGold, true, in2)})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 2})
	})
}

// Sequence 4: the subscription arrives before the checkout that binds it, and
// Stripe's created(incomplete) arrives last: one platinum key, nothing revoked.
func TestSeq4OutOfOrder(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		created := ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "incomplete", pricePlatinum, month)}
		h.build(&created) // Stripe created it first…
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
		h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		h.expect(entitlement.OutcomeIgnored, created) // …and it arrives last.
		// Even a newer incomplete snapshot cannot undo the activation: incomplete is
		// only ever a subscription's first status.
		h.expect(entitlement.OutcomeIgnored, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "incomplete", pricePlatinum, month)})
		keys := h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 1})
		if !keys[0].RevokedAt.IsZero() {
			t.Fatal("a key was revoked")
		}
	})
}

// Sequence 5: a failed payment revokes, the paid invoice grants a new key, and a
// late failure of the invoice already paid changes nothing.
func TestSeq5PaymentFailedThenPaid(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		h.bindGold("user_1", "cus_1", "sub_1")
		invCreated := h.created
		failed := h.expect(entitlement.OutcomeRevoked, ev{typ: "invoice.payment_failed", obj: invoice(t, "in_1", "cus_1", "sub_1", priceGold, false, invCreated)})
		h.check("user_1", want{active: 0, total: 1})
		if r := h.keys("user_1")[0].RevokeReason; r != entitlement.ReasonPaymentFailed {
			t.Errorf("revoke reason %q, want %q", r, entitlement.ReasonPaymentFailed)
		}
		// A subscription update Stripe sent in the same second as the failure (a
		// metadata edit, still saying active) is not a recovery.
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "customer.subscription.updated", created: failed.created,
			obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		h.check("user_1", want{active: 0, total: 1})
		h.expect(entitlement.OutcomeGranted, ev{typ: "invoice.paid", obj: invoice(t, "in_1", "cus_1", "sub_1", priceGold, true, invCreated)})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 2})

		// Stripe retries the failed event's delivery: the same ID.
		h.expect(entitlement.OutcomeDuplicate, ev{id: failed.id, typ: failed.typ, obj: failed.obj})
		// A late payment_failed of the paid invoice, under a new ID.
		h.expect(entitlement.OutcomeIgnored, ev{typ: "invoice.payment_failed", obj: invoice(t, "in_1", "cus_1", "sub_1", priceGold, false, invCreated)})
		// A failure of an older invoice than the paid one.
		h.expect(entitlement.OutcomeIgnored, ev{typ: "invoice.payment_failed", obj: invoice(t, "in_0", "cus_1", "sub_1", priceGold, false, invCreated-86400)})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 2})
	})
}

// Sequence 6: platinum → gold replaces the key; the replay and updates that change
// nothing the plan depends on leave it alone.
func TestSeq6PlanChange(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
		h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		platinumKey := h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 1})[0]

		down := h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		h.expect(entitlement.OutcomeDuplicate, ev{id: down.id, typ: down.typ, obj: down.obj})

		meta := subscription(t, "sub_1", "cus_1", "active", priceGold, month)
		meta["metadata"] = map[string]any{"team_name": "Acme"}
		cancelLater := cancelAtPeriodEnd(subscription(t, "sub_1", "cus_1", "active", priceGold, month))
		next := period{start: month.end, end: month.end + 30*86400}
		for _, obj := range []map[string]any{
			meta,
			cancelLater,
			subscription(t, "sub_1", "cus_1", "active", priceGold, month), // toggled back
			subscription(t, "sub_1", "cus_1", "active", priceGold, next),  // renewed
		} {
			h.expect(entitlement.OutcomeUnchanged, ev{typ: "customer.subscription.updated", obj: obj})
		}
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "invoice.paid", obj: invoice(t, "in_2", "cus_1", "sub_1", priceGold, true, h.created)})

		keys := h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 2})
		old, err := h.issuer.Keys().ByID(context.Background(), platinumKey.ID)
		if err != nil || old.Active() {
			t.Fatalf("the platinum key after the downgrade: %+v, %v; want revoked", old, err)
		}
		if keys[0].ID == platinumKey.ID {
			t.Fatal("the active key is the platinum key")
		}
	})
}

// Sequence 7: cancel_at_period_end keeps the key, deletion revokes it, and later
// events about the deleted subscription are ignored.
func TestSeq7Cancellation(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		h.bindGold("user_1", "cus_1", "sub_1")
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "customer.subscription.updated",
			obj: cancelAtPeriodEnd(subscription(t, "sub_1", "cus_1", "active", priceGold, month))})
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})

		deleted := subscription(t, "sub_1", "cus_1", "canceled", priceGold, month)
		deleted["ended_at"], deleted["canceled_at"] = month.end, month.end
		h.expect(entitlement.OutcomeRevoked, ev{typ: "customer.subscription.deleted", obj: deleted})
		h.check("user_1", want{active: 0, total: 1})
		if r := h.keys("user_1")[0].RevokeReason; r != entitlement.ReasonCancelled {
			t.Errorf("revoke reason %q, want %q", r, entitlement.ReasonCancelled)
		}

		h.expect(entitlement.OutcomeIgnored, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		h.expect(entitlement.OutcomeIgnored, ev{typ: "invoice.paid", obj: invoice(t, "in_9", "cus_1", "sub_1", priceGold, true, h.created)})
		h.check("user_1", want{active: 0, total: 1})
	})
}

// Sequence 8: trialing grants, incomplete grants nothing, unpaid, paused,
// incomplete_expired (and canceled) revoke, and an unpaid checkout grants nothing
// until its subscription is active (TestAsyncCheckoutEveryOrder tries every
// order of those events).
func TestSeq8Statuses(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)

		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_t", "cus_t", "trialing", priceGold, month)})
		h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_t", "sub_t", "user_trial", "no_payment_required")})
		h.check("user_trial", want{active: 1, plan: planGold, limit: goldLimit, total: 1})

		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_i", "cus_i", "incomplete", priceGold, month)})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_i", "sub_i", "user_incomplete", "paid")})
		h.check("user_incomplete", want{active: 0, total: 0})

		for _, status := range []string{"unpaid", "paused", "incomplete_expired", "canceled", "past_due"} {
			user, cus, sub := "user_"+status, "cus_"+status, "sub_"+status
			h.bindGold(user, cus, sub)
			h.expect(entitlement.OutcomeRevoked, ev{typ: "customer.subscription.updated", obj: subscription(t, sub, cus, status, priceGold, month)})
			h.check(user, want{active: 0, total: 1})
		}

		// An unpaid checkout (a bank debit) binds the customer but grants nothing
		// while its subscription is incomplete; neither does the payment's success
		// by itself: the plan arrives when the subscription turns active.
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_u", "cus_u", "incomplete", priceGold, month)})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_u", "sub_u", "user_async", "unpaid")})
		h.check("user_async", want{active: 0, total: 0})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.async_payment_succeeded", obj: checkout(t, "cus_u", "sub_u", "user_async", "paid")})
		h.check("user_async", want{active: 0, total: 0})
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_u", "cus_u", "active", priceGold, month)})
		h.check("user_async", want{active: 1, plan: planGold, limit: goldLimit, total: 1})
	})
}

// Sequence 9: what the webhook refuses or ignores changes nothing.
func TestSeq9Refusals(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		h := newHarness(t, b, nil)
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		e := ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")}
		body := h.build(&e)

		refusals := []struct {
			name   string
			body   []byte
			sig    string
			status int
		}{
			{"no signature", body, "", http.StatusBadRequest},
			{"another secret", body, sign(body, randomSecret(t), time.Now()), http.StatusBadRequest},
			{"tampered body", []byte(strings.Replace(string(body), "user_1", "user_2", 1)), sign(body, h.secret, time.Now()), http.StatusBadRequest},
			{"10 minutes old", body, sign(body, h.secret, time.Now().Add(-10*time.Minute)), http.StatusBadRequest},
		}
		for _, r := range refusals {
			status, detail := h.postRaw(r.body, r.sig)
			if status != r.status || !strings.Contains(detail, problem.Detail(problem.BadSignature)) {
				t.Fatalf("%s: %d %s, want %d %q", r.name, status, detail, r.status, problem.Detail(problem.BadSignature))
			}
			if strings.Contains(detail, h.secret) {
				t.Fatalf("%s: the answer carries the secret", r.name)
			}
		}
		h.check("user_1", want{active: 0, total: 0})

		old := ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid"), apiVersion: "2024-06-20"}
		oldBody := h.build(&old)
		status, detail := h.postRaw(oldBody, sign(oldBody, h.secret, time.Now()))
		if status != http.StatusBadRequest || !strings.Contains(detail, stripe.APIVersion) {
			t.Fatalf("api_version 2024-06-20: %d %s, want 400 naming %s", status, detail, stripe.APIVersion)
		}
		if logs := h.logs.String(); !strings.Contains(logs, "pin the webhook endpoint's API version") || !strings.Contains(logs, "got=2024-06-20") {
			t.Fatalf("no log line tells the operator to pin the API version:\n%s", logs)
		}

		big := ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)}
		big.obj["metadata"] = map[string]any{"padding": strings.Repeat("x", entitlement.MaxWebhookBody)}
		bigBody := h.build(&big)
		if status, detail := h.postRaw(bigBody, sign(bigBody, h.secret, time.Now())); status != http.StatusRequestEntityTooLarge ||
			!strings.Contains(detail, problem.Detail(problem.WebhookTooLarge)) {
			t.Fatalf("a body over 1 MiB: %d %s, want 413", status, detail)
		}
		bad := ev{typ: "customer.subscription.updated", obj: map[string]any{"id": 42, "object": "subscription"}}
		badBody := h.build(&bad)
		if status, detail := h.postRaw(badBody, sign(badBody, h.secret, time.Now())); status != http.StatusBadRequest ||
			!strings.Contains(detail, problem.Detail(problem.MalformedEvent)) {
			t.Fatalf("an object that does not decode: %d %s, want 400 %q", status, detail, problem.Detail(problem.MalformedEvent))
		}

		// Live events reach a test-mode endpoint only by mistake; Connect events are
		// another account's; plan.created is not ours.
		h.expect(entitlement.OutcomeIgnored, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid"), livemode: true})
		h.expect(entitlement.OutcomeIgnored, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid"), account: "acct_1Connect"})
		h.expect(entitlement.OutcomeIgnored, ev{typ: "plan.created", obj: fixture(t, "event")["data"].(map[string]any)["object"].(map[string]any)})
		h.check("user_1", want{active: 0, total: 0})

		// None of that recorded the refused event: delivered properly, it applies.
		status, outcome := h.postRaw(body, sign(body, h.secret, time.Now()))
		if status != http.StatusOK || outcome != entitlement.OutcomeGranted {
			t.Fatalf("the refused event, signed properly: %d %s, want granted", status, outcome)
		}
		h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 1})

		// An unknown price grants nothing, warns and counts.
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_2", "cus_2", "active", priceUnknown, month)})
		h.expect(entitlement.OutcomeUnchanged, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_2", "sub_2", "user_2", "paid")})
		h.check("user_2", want{active: 0, total: 0})
		if h.observedCount("customer.subscription.created", entitlement.OutcomeUnknownPrice) != 1 || !strings.Contains(h.logs.String(), priceUnknown) {
			t.Fatal("an unknown price was neither counted nor logged")
		}
		if h.observedCount("unverified", entitlement.OutcomeRejected) != 5 || h.observedCount("checkout.session.completed", entitlement.OutcomeRejected) != 1 ||
			h.observedCount("customer.subscription.updated", entitlement.OutcomeRejected) != 1 {
			t.Fatalf("rejections observed: %v", h.observed)
		}
		if strings.Contains(h.logs.String(), h.secret) {
			t.Fatal("the webhook secret reached the log")
		}
	})
}

// Sequence 10: the key the webhook issues is sealed, revealed once, then gone; it
// is never stored or logged in clear.
func TestSeq10SealedKey(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		h := newHarness(t, b, nil)
		if _, err := h.svc.Reveal(ctx, "user_1"); !errors.Is(err, entitlement.ErrNothingToReveal) {
			t.Fatalf("Reveal before any grant: %v, want ErrNothingToReveal", err)
		}
		h.expect(entitlement.OutcomeUnbound, ev{typ: "customer.subscription.created", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
		h.expect(entitlement.OutcomeGranted, ev{typ: "checkout.session.completed", obj: checkout(t, "cus_1", "sub_1", "user_1", "paid")})
		platinumKey := h.check("user_1", want{active: 1, plan: planPlatinum, limit: platinumLimit, total: 1})[0]
		// Before it is revealed, the plan changes: the new key replaces the sealed one.
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
		goldKey := h.check("user_1", want{active: 1, plan: planGold, limit: goldLimit, total: 2})[0]

		if ok, err := h.svc.Pending(ctx, "user_1"); err != nil || !ok {
			t.Fatalf("Pending = %v, %v; want true", ok, err)
		}
		if ok, _ := h.svc.Pending(ctx, "user_2"); ok {
			t.Fatal("Pending(user_2) = true")
		}
		if _, err := h.svc.Reveal(ctx, "user_2"); !errors.Is(err, entitlement.ErrNothingToReveal) {
			t.Fatalf("another user's Reveal: %v, want ErrNothingToReveal", err)
		}

		// Two reveals at once: one gets the key.
		raws := make([]string, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range raws {
			wg.Go(func() { raws[i], errs[i] = h.svc.Reveal(ctx, "user_1") })
		}
		wg.Wait()
		var raw string
		for i := range raws {
			switch {
			case errs[i] == nil && raw == "":
				raw = raws[i]
			case errors.Is(errs[i], entitlement.ErrNothingToReveal):
			default:
				t.Fatalf("concurrent reveals: %q, %v and %q, %v; want the key once", raws[0], errs[0], raws[1], errs[1])
			}
		}
		if raw == "" {
			t.Fatalf("neither concurrent Reveal got the key: %v, %v", errs[0], errs[1])
		}
		if apikey.Hash(raw) != goldKey.Hash || apikey.Hash(raw) == platinumKey.Hash {
			t.Fatal("the revealed key is not the active gold key")
		}
		if _, err := h.svc.Reveal(ctx, "user_1"); !errors.Is(err, entitlement.ErrNothingToReveal) {
			t.Fatalf("Reveal after reveal: %v, want ErrNothingToReveal", err)
		}
		if ok, _ := h.svc.Pending(ctx, "user_1"); ok {
			t.Fatal("Pending after reveal = true")
		}
		if strings.Contains(h.logs.String(), raw) {
			t.Fatal("the raw key reached the log")
		}

		// A key rotated away before it is revealed is not shown.
		h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
		raw2, k2, err := apikey.New(keystest.Prefix, "user_1", "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.issuer.Keys().Rotate(ctx, "user_1", &k2, time.Now(), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.Reveal(ctx, "user_1"); !errors.Is(err, entitlement.ErrNothingToReveal) {
			t.Fatalf("Reveal of a key rotated away: %v, want ErrNothingToReveal", err)
		}

		if h.db != nil {
			assertNotStored(t, h, raw, raw2)
		}
	})
}

// assertNotStored reads every row of every table and fails if a raw key, or its
// base64 form, appears in any column.
func assertNotStored(t *testing.T, h *harness, raws ...string) {
	t.Helper()
	tables := []string{"api_keys", "entitlement_events", "entitlement_customers", "entitlement_subscriptions", "entitlement_grants", "entitlement_sealed_keys", "entitlement_lock"}
	// Leave a sealed key in the database while it is scanned.
	h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", priceGold, month)})
	raw, err := h.svc.Reveal(context.Background(), "user_1")
	if err != nil {
		t.Fatal(err)
	}
	h.expect(entitlement.OutcomeGranted, ev{typ: "customer.subscription.updated", obj: subscription(t, "sub_1", "cus_1", "active", pricePlatinum, month)})
	if ok, _ := h.svc.Pending(context.Background(), "user_1"); !ok {
		t.Fatal("no sealed key to scan for")
	}
	raws = append(raws, raw)
	rows := 0
	for _, table := range tables {
		r, err := h.db.Queryx("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			vals, err := r.SliceScan()
			if err != nil {
				t.Fatal(err)
			}
			rows++
			for _, v := range vals {
				s := fmt.Sprint(v)
				if b, ok := v.([]byte); ok {
					s = string(b)
				}
				for _, raw := range raws {
					secret := strings.TrimPrefix(raw, keystest.Prefix)
					if strings.Contains(s, secret) {
						t.Fatalf("table %s stores a raw key in clear", table)
					}
				}
			}
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	if rows < 10 {
		t.Fatalf("scanned only %d rows", rows)
	}
}
