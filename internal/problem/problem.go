// Package problem is tollgate's one table from errors to HTTP answers, and the
// writer of the RFC 9457 bodies every package answers with.
//
// Every sentinel error that can reach a client is made with New from a Code of the
// table below, so its status, title and detail are written once, here; the domain
// packages declare and document the errors themselves (apikey.ErrMissing,
// quota.ErrExceeded, …). WriteError answers any error: the first table error in
// its chain decides; an error that is in no chain of the table is a failed
// dependency (a database, Redis, Stripe) and answers 503 with Retry-After, never a
// 500 and never the error's text.
package problem

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// Details is an RFC 9457 problem document.
type Details struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// Code names one row of the table.
type Code uint8

// The table's rows. Unavailable is also the answer to errors outside the table;
// Internal is only for a handler that panicked.
const (
	Unavailable Code = iota
	MissingKey
	InvalidKey
	UpgradeRequired
	NoActiveKey
	ActiveKeyExists
	KeyNotFound
	QuotaExceeded
	RateLimited
	NothingToReveal
	UnknownPlan
	NoCustomer
	BillingNotConfigured
	WebhookNotConfigured
	WebhookTooLarge
	WebhookUnreadable
	BadSignature
	MalformedEvent
	UnsupportedAPIVersion
	WebhookFailed
	NoSession
	BadSession
	CrossOrigin
	BadSignIn
	NoRoute
	MethodNotAllowed
	BodyTooLarge
	Invalid
	NotFound
	Canceled
	Internal
	numCodes
)

type row struct {
	status int
	detail string
}

// table is the one place where an error's status and detail are written. The title
// is always the status text.
var table = [numCodes]row{
	Unavailable:           {http.StatusServiceUnavailable, "Service temporarily unavailable"},
	MissingKey:            {http.StatusUnauthorized, "Missing x-api-key"},
	InvalidKey:            {http.StatusForbidden, "Invalid or revoked API key"},
	UpgradeRequired:       {http.StatusPaymentRequired, "Upgrade required for this endpoint"},
	NoActiveKey:           {http.StatusConflict, "No active key to rotate"},
	ActiveKeyExists:       {http.StatusConflict, "The user already has an active key"},
	KeyNotFound:           {http.StatusNotFound, "API key not found"},
	QuotaExceeded:         {http.StatusTooManyRequests, "Monthly API quota exceeded"},
	RateLimited:           {http.StatusTooManyRequests, "Rate limit exceeded"},
	NothingToReveal:       {http.StatusNotFound, "No key waiting to be revealed"},
	UnknownPlan:           {http.StatusBadRequest, "Unknown plan"},
	NoCustomer:            {http.StatusNotFound, "No billing account for this user"},
	BillingNotConfigured:  {http.StatusServiceUnavailable, "Billing is not configured on this server"},
	WebhookNotConfigured:  {http.StatusServiceUnavailable, "Billing webhook is not configured"},
	WebhookTooLarge:       {http.StatusRequestEntityTooLarge, "Webhook body exceeds 1 MiB"},
	WebhookUnreadable:     {http.StatusBadRequest, "Could not read the webhook body"},
	BadSignature:          {http.StatusBadRequest, "Invalid Stripe-Signature"},
	MalformedEvent:        {http.StatusBadRequest, "Malformed Stripe event"},
	UnsupportedAPIVersion: {http.StatusBadRequest, "Unsupported Stripe API version"},
	WebhookFailed:         {http.StatusServiceUnavailable, "Webhook processing failed; Stripe will retry"},
	NoSession:             {http.StatusUnauthorized, "Missing dashboard token"},
	BadSession:            {http.StatusUnauthorized, "Invalid or expired dashboard token"},
	CrossOrigin:           {http.StatusForbidden, "Cross-site request refused"},
	BadSignIn:             {http.StatusBadRequest, "Malformed sign-in request"},
	NoRoute:               {http.StatusNotFound, "No such route"},
	MethodNotAllowed:      {http.StatusMethodNotAllowed, "Method not allowed on this route"},
	BodyTooLarge:          {http.StatusRequestEntityTooLarge, "Request body too large"},
	Invalid:               {http.StatusBadRequest, "Invalid request"},
	NotFound:              {http.StatusNotFound, "Not found"},
	Canceled:              {http.StatusServiceUnavailable, "Request canceled"},
	Internal:              {http.StatusInternalServerError, "Internal server error"},
}

// Error is a sentinel error with a row of the table. Compare it with errors.Is; its
// text is the message given to New, its answer the row's.
type Error struct {
	code Code
	msg  string
}

// New returns a new sentinel error answered by code's row. msg is its Error text,
// by convention prefixed with the package name ("apikey: missing x-api-key").
func New(code Code, msg string) *Error { return &Error{code: code, msg: msg} }

func (e *Error) Error() string { return e.msg }

// Code returns the error's row.
func (e *Error) Code() Code { return e.code }

// Status returns the HTTP status of the error's row.
func (e *Error) Status() int { return table[e.code].status }

// Detailer is implemented by errors that carry a more precise detail than their
// row's, such as an input error naming the parameter. The first Detailer in an
// error's chain, if any, supplies the detail.
type Detailer interface{ ProblemDetail() string }

// RetryAfterSeconds is what WriteError sends as Retry-After on a 503 whose
// headers carry none yet.
const RetryAfterSeconds = 1

// For returns the answer to err: its status and detail. An error that wraps none of
// the table's errors is a failed dependency (Unavailable); dependency reports
// whether that is what err is, so a caller can log and count it.
func For(err error) (status int, detail string, dependency bool) {
	var e *Error
	if !errors.As(err, &e) {
		r := table[Unavailable]
		return r.status, r.detail, true
	}
	r := table[e.code]
	var d Detailer
	if errors.As(err, &d) {
		if s := d.ProblemDetail(); s != "" {
			r.detail = s
		}
	}
	return r.status, r.detail, e.code == Unavailable
}

// WriteError answers err as For says. A 503 gets Retry-After (RetryAfterSeconds)
// unless one is set already. Headers already set on w are kept.
func WriteError(w http.ResponseWriter, err error) {
	status, detail, _ := For(err)
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	Write(w, status, detail)
}

// Write answers status with an application/problem+json body whose title is the
// status text and whose detail is detail. Headers already set on w are kept.
func Write(w http.ResponseWriter, status int, detail string) {
	body, _ := json.Marshal(Details{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
	})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// Detail returns the detail of code's row, for tests and documentation.
func Detail(code Code) string { return table[code].detail }
