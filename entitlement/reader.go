package entitlement

import (
	"context"

	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/subscription"
)

// SubscriptionReader reads a subscription's current state from Stripe. Stripe does
// not deliver events in order, so a Service that can read the subscription decides
// on Stripe's current copy rather than on the event's.
type SubscriptionReader interface {
	// Subscription returns the subscription with that ID, or an error.
	Subscription(ctx context.Context, id string) (*stripe.Subscription, error)
}

// StripeReader returns a SubscriptionReader on stripe-go's subscription client with
// the secret API key apiKey. backend nil means Stripe's API
// (stripe.GetBackend(stripe.APIBackend)); tests pass a backend whose URL is an
// httptest server.
func StripeReader(apiKey string, backend stripe.Backend) SubscriptionReader {
	if backend == nil {
		backend = stripe.GetBackend(stripe.APIBackend)
	}
	return stripeReader{c: subscription.Client{B: backend, Key: apiKey}}
}

type stripeReader struct{ c subscription.Client }

func (r stripeReader) Subscription(ctx context.Context, id string) (*stripe.Subscription, error) {
	params := &stripe.SubscriptionParams{}
	params.Context = ctx
	return r.c.Get(id, params)
}
