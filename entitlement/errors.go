package entitlement

import (
	"github.com/releaseradar/tollgate/internal/problem"
	stripe "github.com/stripe/stripe-go/v76"
)

// Sentinel errors, matched with errors.Is. Each is answered by tollgate's one
// table of problems (tollgate.WriteError) with its own status and detail. Stores
// wrap backend errors with %w; those answer 503.
var (
	// ErrNotFound: the store holds no record under that ID (404).
	ErrNotFound = problem.New(problem.NotFound, "entitlement: not found")
	// ErrNothingToReveal: no issued key waits for the user: never issued, already
	// revealed, or replaced or rotated since (404).
	ErrNothingToReveal = problem.New(problem.NothingToReveal, "entitlement: no key waits to be revealed")
	// ErrUnknownPlan: a plan the catalog lacks, or (for Grant) one without a
	// monthly call limit (400).
	ErrUnknownPlan = problem.New(problem.UnknownPlan, "entitlement: unknown plan")
	// ErrNoCustomer: the user has no Stripe customer bound, so there is no
	// billing account to manage (Portal; 404).
	ErrNoCustomer = problem.New(problem.NoCustomer, "entitlement: no Stripe customer for this user")
	// ErrBillingNotConfigured: Config.Billing.APIKey is empty, so Checkout and
	// Portal cannot reach Stripe (503).
	ErrBillingNotConfigured = problem.New(problem.BillingNotConfigured, "entitlement: billing not configured")
	// ErrStripe: a request to Stripe's API failed (network, Stripe's answer). It
	// is a failed dependency (503 with Retry-After); the wrapping error says what
	// Stripe answered, without the API key.
	ErrStripe = problem.New(problem.Unavailable, "entitlement: Stripe API request failed")
	// ErrInvalidUsage: a usage record without a key or user, or with negative
	// calls (400; a programming error of the caller).
	ErrInvalidUsage = problem.New(problem.Invalid, "entitlement: invalid usage record")
)

// The webhook's refusals (Service.ServeHTTP answers them itself, with
// problem+json bodies from the same table). They are exported so that a server
// wrapping the webhook can name them.
var (
	// ErrWebhookNotConfigured: Config.WebhookSecret is empty (503).
	ErrWebhookNotConfigured = problem.New(problem.WebhookNotConfigured, "entitlement: webhook secret not configured")
	// ErrWebhookTooLarge: the body exceeds MaxWebhookBody (413).
	ErrWebhookTooLarge = problem.New(problem.WebhookTooLarge, "entitlement: webhook body too large")
	// ErrWebhookUnreadable: the body could not be read (400).
	ErrWebhookUnreadable = problem.New(problem.WebhookUnreadable, "entitlement: webhook body unreadable")
	// ErrBadSignature: the Stripe-Signature header is missing, malformed, older
	// than 300 s, or not made with the endpoint's secret (400).
	ErrBadSignature = problem.New(problem.BadSignature, "entitlement: invalid Stripe-Signature")
	// ErrMalformedEvent: the signed body is not an event, or its object does not
	// decode (400).
	ErrMalformedEvent = problem.New(problem.MalformedEvent, "entitlement: malformed Stripe event")
	// ErrAPIVersion: the event was rendered for another API version than
	// stripe.APIVersion, the one stripe-go v76 decodes (400; the detail names
	// the version to pin the endpoint to).
	ErrAPIVersion = problem.New(problem.UnsupportedAPIVersion, "entitlement: unsupported Stripe API version")
	// ErrWebhookFailed: a verified event could not be applied because the store
	// (or Config.Delivery) failed; the event was not recorded, and Stripe delivers
	// it again (503 with Retry-After).
	ErrWebhookFailed = problem.New(problem.WebhookFailed, "entitlement: webhook processing failed")
)

// errMethod answers a webhook request that is not a POST (405, Allow: POST).
var errMethod = problem.New(problem.MethodNotAllowed, "entitlement: the webhook accepts only POST")

// apiVersionError is ErrAPIVersion for one event: its answer names the version
// to pin the endpoint to.
type apiVersionError struct{ got string }

func (e *apiVersionError) Error() string {
	return "entitlement: event API version " + e.got + ", want " + stripe.APIVersion
}

func (e *apiVersionError) Unwrap() error { return ErrAPIVersion }

// ProblemDetail implements problem.Detailer.
func (e *apiVersionError) ProblemDetail() string {
	return problem.Detail(problem.UnsupportedAPIVersion) + ": pin the webhook endpoint to " + stripe.APIVersion
}
