package entitlement

import (
	"testing"
	"time"
)

func TestApplySnapshot(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	active := Subscription{ID: "sub_1", CustomerID: "cus_1", Status: statusActive, PriceIDs: []string{"p"}, StateAt: t0}
	failed := active
	failed.FailedInvoice, failed.FailedAt = "in_1", t0

	tests := []struct {
		name       string
		cur        Subscription
		known      bool
		snap       snapshot
		changed    bool
		wantStatus string
		wantGrants bool
	}{
		{"first snapshot", Subscription{}, false, snapshot{ID: "sub_1", Status: statusTrialing, PriceIDs: []string{"p"}, At: t0}, true, statusTrialing, true},
		{"older snapshot loses", active, true, snapshot{ID: "sub_1", Status: statusUnpaid, At: t0.Add(-time.Second)}, false, statusActive, true},
		{"same second applies", active, true, snapshot{ID: "sub_1", Status: statusUnpaid, At: t0}, true, statusUnpaid, false},
		{"newer incomplete loses", active, true, snapshot{ID: "sub_1", Status: statusIncomplete, At: t0.Add(time.Hour)}, false, statusActive, true},
		{"fresh read wins over a newer state", active, true, snapshot{ID: "sub_1", Status: statusPastDue, At: t0.Add(-time.Hour), Fresh: true}, true, statusPastDue, false},
		{"deletion always applies", active, true, snapshot{ID: "sub_1", Status: statusCanceled, At: t0.Add(-time.Hour), Deleted: true}, true, statusCanceled, false},
		{"nothing changes an ended subscription", Subscription{ID: "sub_1", Status: statusIncompleteExpired, StateAt: t0}, true,
			snapshot{ID: "sub_1", Status: statusActive, At: t0.Add(time.Hour), Fresh: true}, false, statusIncompleteExpired, false},
		{"active after a failure clears it", failed, true, snapshot{ID: "sub_1", Status: statusActive, PriceIDs: []string{"p"}, At: t0.Add(time.Second)}, true, statusActive, true},
		{"active in the failure's second does not", failed, true, snapshot{ID: "sub_1", Status: statusActive, PriceIDs: []string{"p"}, At: t0}, true, statusActive, false},
	}
	for _, tt := range tests {
		got, changed := applySnapshot(tt.cur, tt.known, tt.snap, now)
		if changed != tt.changed || got.Status != tt.wantStatus || got.Grants() != tt.wantGrants {
			t.Errorf("%s: changed=%v status=%s grants=%v; want %v %s %v", tt.name, changed, got.Status, got.Grants(), tt.changed, tt.wantStatus, tt.wantGrants)
		}
	}
}

func TestApplyInvoices(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	inv := func(id string, created time.Time) invoiceInfo {
		return invoiceInfo{ID: id, CustomerID: "cus_1", SubscriptionID: "sub_1", PriceIDs: []string{"p"}, Created: created, At: created.Add(time.Minute)}
	}
	base := Subscription{ID: "sub_1", CustomerID: "cus_1", Status: statusActive, PriceIDs: []string{"p"}, StateAt: t0}

	// A failure revokes; paying the failed invoice restores; its late failure is void.
	s, changed := applyInvoiceFailed(base, true, inv("in_2", t0.Add(time.Hour)), now)
	if !changed || s.Grants() {
		t.Fatalf("after a failure: changed=%v grants=%v", changed, s.Grants())
	}
	paidOld, _ := applyInvoicePaid(s, true, inv("in_1", t0), now)
	if paidOld.Grants() {
		t.Fatal("paying an older invoice cleared a newer failure")
	}
	s, _ = applyInvoicePaid(s, true, inv("in_2", t0.Add(time.Hour)), now)
	if !s.Grants() || s.PaidInvoice != "in_2" {
		t.Fatalf("after paying the failed invoice: %+v", s)
	}
	for _, late := range []invoiceInfo{inv("in_2", t0.Add(time.Hour)), inv("in_1", t0)} {
		if _, changed := applyInvoiceFailed(s, true, late, now); changed {
			t.Fatalf("a late failure of %s changed the subscription", late.ID)
		}
	}

	// invoice.paid alone tells us a subscription exists and is active.
	s, changed = applyInvoicePaid(Subscription{}, false, inv("in_1", t0), now)
	if !changed || !s.Grants() || s.CustomerID != "cus_1" || len(s.PriceIDs) != 1 {
		t.Fatalf("invoice.paid for an unknown subscription: %+v", s)
	}
	// A paused subscription stays paused when an invoice is paid.
	paused := base
	paused.Status = "paused"
	if s, _ := applyInvoicePaid(paused, true, inv("in_3", t0.Add(2*time.Hour)), now); s.Status != "paused" {
		t.Fatalf("invoice.paid moved a paused subscription to %s", s.Status)
	}
}
