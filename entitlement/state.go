package entitlement

import (
	"slices"
	"time"

	stripe "github.com/stripe/stripe-go/v76"
)

// Subscription statuses the rules below name (Stripe's values).
const (
	statusActive            = string(stripe.SubscriptionStatusActive)
	statusTrialing          = string(stripe.SubscriptionStatusTrialing)
	statusIncomplete        = string(stripe.SubscriptionStatusIncomplete)
	statusIncompleteExpired = string(stripe.SubscriptionStatusIncompleteExpired)
	statusPastDue           = string(stripe.SubscriptionStatusPastDue)
	statusUnpaid            = string(stripe.SubscriptionStatusUnpaid)
	statusCanceled          = string(stripe.SubscriptionStatusCanceled)
)

// grantingStatus reports whether a subscription in that status gives access:
// active and trialing do; incomplete, past_due, unpaid, paused, canceled and
// incomplete_expired do not.
func grantingStatus(status string) bool {
	return status == statusActive || status == statusTrialing
}

// Grants reports whether the subscription gives access now: it is not deleted, its
// status is active or trialing, and no failed invoice is outstanding.
func (s Subscription) Grants() bool {
	return !s.Deleted && grantingStatus(s.Status) && s.FailedInvoice == ""
}

// Ended reports whether the subscription can never grant again: deleted, canceled
// or incomplete_expired. Events about it are ignored.
func (s Subscription) Ended() bool {
	return s.Deleted || s.Status == statusCanceled || s.Status == statusIncompleteExpired
}

// snapshot is a subscription's state as an event carried it or as the API returned
// it.
type snapshot struct {
	ID, CustomerID, Status string
	PriceIDs               []string
	At                     time.Time // the event's creation time, or the read's time
	Deleted                bool      // from customer.subscription.deleted
	Fresh                  bool      // read from Stripe's API just now
}

// valid reports whether the snapshot's identifiers can be stored (validID; price
// IDs without commas). An empty customer is allowed (a read may omit it).
func (s snapshot) valid() bool {
	if !validID(s.ID) || (s.CustomerID != "" && !validID(s.CustomerID)) || (s.Status != "" && !validID(s.Status)) {
		return false
	}
	for _, p := range s.PriceIDs {
		if !validPriceID(p) {
			return false
		}
	}
	return true
}

// invoiceInfo is what an invoice event says about its subscription.
type invoiceInfo struct {
	ID, CustomerID, SubscriptionID string
	PriceIDs                       []string
	Created                        time.Time // the invoice's creation time
	At                             time.Time // the event's creation time
}

// valid reports whether the invoice's identifiers can be stored.
func (inv invoiceInfo) valid() bool {
	if !validID(inv.ID) || !validID(inv.CustomerID) || !validID(inv.SubscriptionID) {
		return false
	}
	for _, p := range inv.PriceIDs {
		if !validPriceID(p) {
			return false
		}
	}
	return true
}

// applySnapshot folds a subscription snapshot into what is known (cur, or nothing
// when !known) and reports whether it changed the record. Stale snapshots lose: one
// older than the stored state, and an incomplete one once the subscription has left
// incomplete (the status is only ever a subscription's first). Nothing changes an
// ended subscription. A granting snapshot newer than an invoice failure clears it:
// the subscription became active again.
func applySnapshot(cur Subscription, known bool, s snapshot, now time.Time) (Subscription, bool) {
	if !known {
		cur = Subscription{ID: s.ID}
	}
	if known && cur.Ended() {
		return cur, false
	}
	if known && !s.Fresh && !s.Deleted {
		if s.At.Before(cur.StateAt) {
			return cur, false
		}
		if s.Status == statusIncomplete && cur.Status != "" && cur.Status != statusIncomplete {
			return cur, false
		}
	}
	if s.At.Before(cur.StateAt) {
		s.At = cur.StateAt // a fresh read or a deletion is the newest word
	}
	if s.CustomerID != "" {
		cur.CustomerID = s.CustomerID
	}
	cur.Status = s.Status
	cur.PriceIDs = slices.Clone(s.PriceIDs)
	cur.StateAt = s.At
	cur.Deleted = cur.Deleted || s.Deleted
	if cur.FailedInvoice != "" && grantingStatus(s.Status) && s.At.After(cur.FailedAt) {
		cur.clearFailure()
	}
	cur.UpdatedAt = now
	return cur, true
}

// applyInvoicePaid folds invoice.paid into the subscription: the invoice becomes the
// newest paid one, an outstanding failure of it or of an older invoice is cleared,
// and a subscription that was waiting for payment (unknown, incomplete, past_due,
// unpaid) becomes active. It reports false for an ended subscription.
func applyInvoicePaid(cur Subscription, known bool, inv invoiceInfo, now time.Time) (Subscription, bool) {
	cur, ok := invoiceTarget(cur, known, inv)
	if !ok {
		return cur, false
	}
	if cur.PaidInvoice == "" || !inv.Created.Before(cur.PaidInvoiceAt) {
		cur.PaidInvoice, cur.PaidInvoiceAt = inv.ID, inv.Created
	}
	if cur.FailedInvoice != "" && (cur.FailedInvoice == inv.ID || !inv.Created.Before(cur.FailedInvoiceAt)) {
		cur.clearFailure()
	}
	switch cur.Status {
	case "", statusIncomplete, statusPastDue, statusUnpaid:
		if !inv.At.Before(cur.StateAt) {
			cur.Status, cur.StateAt = statusActive, inv.At
		}
	}
	return cur.completedFrom(inv, now), true
}

// applyInvoiceFailed folds invoice.payment_failed into the subscription: the invoice
// becomes the outstanding failure, which stops the subscription granting. A failure
// of the newest paid invoice or of an older one changes nothing (it is late), and
// neither does anything about an ended subscription.
func applyInvoiceFailed(cur Subscription, known bool, inv invoiceInfo, now time.Time) (Subscription, bool) {
	cur, ok := invoiceTarget(cur, known, inv)
	if !ok {
		return cur, false
	}
	if cur.PaidInvoice != "" && (cur.PaidInvoice == inv.ID || inv.Created.Before(cur.PaidInvoiceAt)) {
		return cur, false
	}
	if cur.FailedInvoice != "" && inv.Created.Before(cur.FailedInvoiceAt) {
		return cur, false // a newer failure is already outstanding
	}
	cur.FailedInvoice, cur.FailedInvoiceAt = inv.ID, inv.Created
	if inv.At.After(cur.FailedAt) {
		cur.FailedAt = inv.At
	}
	return cur.completedFrom(inv, now), true
}

// invoiceTarget returns the subscription an invoice event applies to: cur, or a new
// record named by the invoice when nothing is known of it. ok is false when the
// subscription has ended.
func invoiceTarget(cur Subscription, known bool, inv invoiceInfo) (_ Subscription, ok bool) {
	if !known {
		return Subscription{ID: inv.SubscriptionID, CustomerID: inv.CustomerID}, true
	}
	return cur, !cur.Ended()
}

// completedFrom fills in from the invoice what the record lacks (a subscription
// first met through its invoices) and stamps it.
func (s Subscription) completedFrom(inv invoiceInfo, now time.Time) Subscription {
	if len(s.PriceIDs) == 0 {
		s.PriceIDs = slices.Clone(inv.PriceIDs)
	}
	if s.CustomerID == "" {
		s.CustomerID = inv.CustomerID
	}
	s.UpdatedAt = now
	return s
}

func (s *Subscription) clearFailure() {
	s.FailedInvoice, s.FailedInvoiceAt, s.FailedAt = "", time.Time{}, time.Time{}
}
