package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

// graceTests are the suite's cases of expiring keys: rotation with a grace
// period, Retire, and what revocation and the one-key rule make of them.
var graceTests = []struct {
	name string
	f    func(t *testing.T, s apikey.Store)
}{
	{"RotateWithGrace", testRotateWithGrace},
	{"RotateAgainDuringGrace", testRotateAgainDuringGrace},
	{"RotateWithoutGraceDuringGrace", testRotateWithoutGraceDuringGrace},
	{"RotateNegativeGrace", testRotateNegativeGrace},
	{"RotateWithGraceFailureChangesNothing", testRotateWithGraceFailureChangesNothing},
	{"ExpiredKeyStaysReadable", testExpiredKeyStaysReadable},
	{"RevokeUserRevokesExpiringKeys", testRevokeUserRevokesExpiring},
	{"RevokeExpiringKey", testRevokeExpiring},
	{"OneCurrentKeyBesideExpiringOnes", testOneCurrentBesideExpiring},
	{"CreateExpiringKey", testCreateExpiring},
	{"Retire", testRetire},
	{"RetireNeverExtends", testRetireNeverExtends},
	{"RetireRefusals", testRetireRefusals},
	{"LookupsSeeRetire", testLookupsSeeRetire},
	{"ConcurrentRotateWithGrace", func(t *testing.T, s apikey.Store) { concurrentRotate(t, s, time.Hour) }},
	{"ReadersSeeOneCurrentKeyDuringGraceRotations", func(t *testing.T, s apikey.Store) { readersDuringRotation(t, s, time.Hour) }},
}

// byID returns the stored key with that ID.
func byID(t *testing.T, s apikey.Store, id string) apikey.Key {
	t.Helper()
	k, err := s.ByID(context.Background(), id)
	if err != nil {
		t.Fatalf("ByID(%s): %v", id, err)
	}
	return k
}

func testRotateWithGrace(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	_, k := newKey(t, "u1", "gold")
	k.QuotaID = "q_u1"
	if err := s.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	nk := next(t)
	old, err := s.Rotate(ctx, "u1", &nk, at, 90*time.Minute+1500*time.Nanosecond)
	if err != nil {
		t.Fatalf("Rotate with grace: %v", err)
	}
	// The old key stays active, expiring at now+grace (stored at microseconds),
	// and is not revoked.
	wantOld := k
	wantOld.ExpiresAt = us(at.Add(90*time.Minute + 1500*time.Nanosecond))
	equalKeys(t, "old key returned by Rotate with grace", old, wantOld)
	equalKeys(t, "stored old key", byID(t, s, k.ID), wantOld)
	if got, err := s.ByHash(ctx, k.Hash); err != nil || got != wantOld {
		t.Errorf("ByHash(old key) = %+v, %v; want %+v", got, err, wantOld)
	}
	if !old.Expiring() || old.ExpiresAt.Location() != time.UTC {
		t.Errorf("old key: Expiring %v, ExpiresAt %v; want expiring, in UTC", old.Expiring(), old.ExpiresAt)
	}
	// The successor is current, on the same plan and quota: one quota for both.
	want := apikey.Key{
		ID: nk.ID, UserID: "u1", Hash: nk.Hash, KeyPrefix: nk.KeyPrefix, Last4: nk.Last4,
		Plan: "gold", Status: apikey.StatusActive, QuotaID: "q_u1", CreatedAt: us(at),
	}
	equalKeys(t, "successor", nk, want)
	equalKeys(t, "stored successor", byID(t, s, nk.ID), want)
	if cur := currentKeys(t, s, "u1"); len(cur) != 1 || cur[0].ID != nk.ID {
		t.Errorf("current keys after Rotate with grace = %+v, want only the successor", cur)
	}
	if act := activeKeys(t, s, "u1"); len(act) != 2 {
		t.Errorf("%d active keys after Rotate with grace, want 2 (the successor and the expiring key)", len(act))
	}
}

func testRotateAgainDuringGrace(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	first := mustCreate(t, s, "u1")
	second := next(t)
	if _, err := s.Rotate(ctx, "u1", &second, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A second rotation, with a longer grace, during the first's: each key
	// keeps its own expiry; the first does not gain the second's.
	third := next(t)
	old, err := s.Rotate(ctx, "u1", &third, t0.Add(10*time.Minute), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if old.ID != second.ID || !old.ExpiresAt.Equal(us(t0.Add(10*time.Minute+24*time.Hour))) {
		t.Errorf("the second rotation replaced %s expiring at %v; want %s at %v", old.ID, old.ExpiresAt, second.ID, us(t0.Add(10*time.Minute+24*time.Hour)))
	}
	if k := byID(t, s, first.ID); !k.Expiring() || !k.ExpiresAt.Equal(us(t0.Add(time.Hour))) {
		t.Errorf("the first key after a second rotation: %s expiring at %v; want its own expiry %v", k.Status, k.ExpiresAt, us(t0.Add(time.Hour)))
	}
	if cur := currentKeys(t, s, "u1"); len(cur) != 1 || cur[0].ID != third.ID {
		t.Errorf("current keys = %+v, want the third key alone", cur)
	}
	for _, k := range activeKeys(t, s, "u1") {
		if k.QuotaID != first.ID {
			t.Errorf("key %s spends quota %q, want the first key's %q", k.ID, k.QuotaID, first.ID)
		}
	}
}

func testRotateWithoutGraceDuringGrace(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	first := mustCreate(t, s, "u1")
	second := next(t)
	if _, err := s.Rotate(ctx, "u1", &second, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A rotation without grace revokes the current key only.
	third := next(t)
	old, err := s.Rotate(ctx, "u1", &third, t0.Add(time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if old.ID != second.ID || old.Active() {
		t.Errorf("Rotate without grace replaced %s (%s), want %s revoked", old.ID, old.Status, second.ID)
	}
	if k := byID(t, s, first.ID); !k.Expiring() || !k.ExpiresAt.Equal(us(t0.Add(time.Hour))) {
		t.Errorf("the expiring key after a rotation without grace: %s expiring at %v; want it unchanged", k.Status, k.ExpiresAt)
	}
}

func testRotateNegativeGrace(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	nk := next(t)
	if _, err := s.Rotate(ctx, "u1", &nk, t0, -time.Second); err == nil || errors.Is(err, apikey.ErrNoActiveKey) {
		t.Errorf("Rotate with a negative grace = %v, want a validation error", err)
	}
	equalKeys(t, "key after a refused Rotate", byID(t, s, k.ID), k)
	if _, err := s.ByHash(ctx, nk.Hash); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("a refused Rotate stored its successor: %v", err)
	}
}

func testRotateWithGraceFailureChangesNothing(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	taken := mustCreate(t, s, "u2")
	nk := apikey.Key{Hash: taken.Hash, KeyPrefix: apikey.DefaultPrefix, Last4: "abcd"}
	if _, err := s.Rotate(ctx, "u1", &nk, t0.Add(time.Hour), time.Hour); err == nil {
		t.Fatal("Rotate with a taken hash succeeded")
	}
	// The old key is not left expiring without a successor.
	equalKeys(t, "key after a failed Rotate with grace", byID(t, s, k.ID), k)
	if cur := currentKeys(t, s, "u1"); len(cur) != 1 || cur[0].ID != k.ID {
		t.Errorf("current keys after a failed Rotate = %+v, want the old key", cur)
	}
}

// testExpiredKeyStaysReadable: stores keep no clock; an expiring key past its
// ExpiresAt reads as it was stored (active, with that ExpiresAt), and
// Key.Expired and Key.StatusAt tell what it is.
func testExpiredKeyStaysReadable(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	nk := next(t)
	if _, err := s.Rotate(ctx, "u1", &nk, t0, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := s.ByHash(ctx, k.Hash)
	if err != nil {
		t.Fatalf("ByHash(expiring key): %v", err)
	}
	exp := us(t0.Add(time.Minute))
	if got.Status != apikey.StatusActive || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("ByHash(expiring key) = %s expiring at %v, want active expiring at %v", got.Status, got.ExpiresAt, exp)
	}
	for _, c := range []struct {
		at      time.Time
		expired bool
		status  apikey.Status
	}{
		{exp.Add(-time.Microsecond), false, apikey.StatusExpiring},
		{exp, true, apikey.StatusRevoked},
		{exp.Add(time.Hour), true, apikey.StatusRevoked},
	} {
		if got.Expired(c.at) != c.expired || got.StatusAt(c.at) != c.status {
			t.Errorf("at %v: Expired %v, StatusAt %s; want %v, %s", c.at, got.Expired(c.at), got.StatusAt(c.at), c.expired, c.status)
		}
	}
	if cur, _ := s.ByHash(ctx, nk.Hash); cur.StatusAt(exp.Add(time.Hour)) != apikey.StatusActive {
		t.Errorf("the successor shows %s, want active", cur.StatusAt(exp.Add(time.Hour)))
	}
}

func testRevokeUserRevokesExpiring(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	first := mustCreate(t, s, "u1")
	second, third := next(t), next(t)
	if _, err := s.Rotate(ctx, "u1", &second, t0.Add(time.Minute), time.Hour); err != nil {
		t.Fatal(err)
	}
	// The first key's grace is over by the time of the revocation; it is
	// revoked all the same.
	if _, err := s.Rotate(ctx, "u1", &third, t0.Add(2*time.Minute), time.Second); err != nil {
		t.Fatal(err)
	}
	other := mustCreate(t, s, "u2")
	at := t0.Add(3 * time.Minute)
	revoked, err := s.RevokeUser(ctx, "u1", "cancelled", at)
	if err != nil {
		t.Fatal(err)
	}
	// Newest first: the current key, then the keys it replaced.
	wantIDs := []string{third.ID, second.ID, first.ID}
	if len(revoked) != len(wantIDs) {
		t.Fatalf("RevokeUser revoked %d keys, want %d (the current key and both expiring ones)", len(revoked), len(wantIDs))
	}
	for i, k := range revoked {
		if k.ID != wantIDs[i] {
			t.Errorf("RevokeUser returned %s at %d, want %s (newest first)", k.ID, i, wantIDs[i])
		}
		if k.Status != apikey.StatusRevoked || !k.RevokedAt.Equal(us(at)) || k.RevokeReason != "cancelled" {
			t.Errorf("returned key %s: %s at %v (%q), want revoked at %v (cancelled)", k.ID, k.Status, k.RevokedAt, k.RevokeReason, us(at))
		}
		equalKeys(t, "stored key after RevokeUser", byID(t, s, k.ID), k)
	}
	if act := activeKeys(t, s, "u1"); len(act) != 0 {
		t.Errorf("%d active keys after RevokeUser, want 0", len(act))
	}
	if k := byID(t, s, other.ID); !k.Active() {
		t.Errorf("RevokeUser touched another user's key")
	}
}

func testRevokeExpiring(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	nk := next(t)
	if _, err := s.Rotate(ctx, "u1", &nk, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, k.ID, "leaked", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := byID(t, s, k.ID)
	if got.Active() || got.RevokeReason != "leaked" || !got.ExpiresAt.Equal(us(t0.Add(time.Hour))) {
		t.Errorf("revoked expiring key = %+v, want revoked (leaked), keeping its ExpiresAt", got)
	}
	if cur := currentKeys(t, s, "u1"); len(cur) != 1 || cur[0].ID != nk.ID {
		t.Errorf("revoking the expiring key changed the current one: %+v", cur)
	}
}

func testOneCurrentBesideExpiring(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	mustCreate(t, s, "u1")
	nk := next(t)
	if _, err := s.Rotate(ctx, "u1", &nk, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	// Still at most one key that is not expiring.
	_, second := newKey(t, "u1", "free")
	if err := s.Create(ctx, &second); !errors.Is(err, apikey.ErrActiveExists) {
		t.Fatalf("a second current key beside the successor: %v, want ErrActiveExists", err)
	}
	// Once the current key is gone, a new one may be created while the
	// expiring key still works.
	if err := s.Revoke(ctx, nk.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &second); err != nil {
		t.Fatalf("Create beside an expiring key only: %v", err)
	}
	if cur, act := currentKeys(t, s, "u1"), activeKeys(t, s, "u1"); len(cur) != 1 || len(act) != 2 {
		t.Errorf("%d current and %d active keys, want 1 and 2", len(cur), len(act))
	}
}

func testCreateExpiring(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	cur := mustCreate(t, s, "u1")
	// An imported expiring key sits beside the current key; its ExpiresAt is
	// kept in UTC at microseconds.
	_, k := newKey(t, "u1", "gold")
	k.QuotaID = cur.QuotaID
	k.ExpiresAt = time.Date(2026, 3, 15, 1, 2, 3, 456789999, time.FixedZone("PDT", -7*3600))
	if err := s.Create(ctx, &k); err != nil {
		t.Fatalf("Create(expiring key beside a current one): %v", err)
	}
	want := time.Date(2026, 3, 15, 8, 2, 3, 456789000, time.UTC)
	if !k.ExpiresAt.Equal(want) || k.ExpiresAt.Location() != time.UTC {
		t.Errorf("Create left ExpiresAt %v, want %v in UTC", k.ExpiresAt, want)
	}
	got := byID(t, s, k.ID)
	equalKeys(t, "stored expiring key", got, k)
	if !got.Expiring() {
		t.Errorf("stored key is not expiring: %+v", got)
	}
	// A status other than active or revoked is refused, "expiring" included:
	// stores keep expiring keys active.
	_, odd := newKey(t, "u2", "gold")
	odd.Status = apikey.StatusExpiring
	if err := s.Create(ctx, &odd); err == nil {
		t.Errorf("Create with status %q succeeded", odd.Status)
	}
	if got := byID(t, s, cur.ID); !got.Active() || got.Expiring() {
		t.Errorf("the current key changed: %+v", got)
	}
}

func testRetire(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	other := mustCreate(t, s, "u2")
	at := t0.Add(2*time.Hour + 999*time.Nanosecond)
	if err := s.Retire(ctx, k.ID, "platinum", "q_new", at); err != nil {
		t.Fatalf("Retire: %v", err)
	}
	want := k
	want.Plan, want.QuotaID, want.ExpiresAt = "platinum", "q_new", us(at)
	equalKeys(t, "retired key", byID(t, s, k.ID), want)
	if got, err := s.ByHash(ctx, k.Hash); err != nil || got != want {
		t.Errorf("ByHash(retired key) = %+v, %v; want %+v", got, err, want)
	}
	// The user has no current key now; its successor can be created on the
	// quota the retired key spends.
	nk := next(t)
	if _, err := s.Rotate(ctx, "u1", &nk, t0, 0); !errors.Is(err, apikey.ErrNoActiveKey) {
		t.Errorf("Rotate with only an expiring key = %v, want ErrNoActiveKey", err)
	}
	_, succ := newKey(t, "u1", "platinum")
	succ.QuotaID = "q_new"
	if err := s.Create(ctx, &succ); err != nil {
		t.Fatalf("Create of the successor: %v", err)
	}
	for _, k := range activeKeys(t, s, "u1") {
		if k.QuotaID != "q_new" || k.Plan != "platinum" {
			t.Errorf("key %s: plan %s quota %s, want platinum and q_new", k.ID, k.Plan, k.QuotaID)
		}
	}
	equalKeys(t, "another user's key", byID(t, s, other.ID), other)
}

func testRetireNeverExtends(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	nk := next(t)
	if _, err := s.Rotate(ctx, "u1", &nk, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	// A later expiry is not taken, but the plan and quota are.
	if err := s.Retire(ctx, k.ID, "platinum", "q_new", t0.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := byID(t, s, k.ID)
	if !got.ExpiresAt.Equal(us(t0.Add(time.Hour))) || got.Plan != "platinum" || got.QuotaID != "q_new" {
		t.Errorf("after a later Retire: %+v; want its own expiry %v, plan platinum, quota q_new", got, us(t0.Add(time.Hour)))
	}
	// An earlier one is.
	if err := s.Retire(ctx, k.ID, "platinum", "q_new", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := byID(t, s, k.ID); !got.ExpiresAt.Equal(us(t0.Add(time.Minute))) {
		t.Errorf("after an earlier Retire: expires at %v, want %v", got.ExpiresAt, us(t0.Add(time.Minute)))
	}
}

func testRetireRefusals(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	if err := s.Retire(ctx, "key_nope", "gold", "q", t0); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Retire(unknown) = %v, want ErrNotFound", err)
	}
	for name, c := range map[string]struct {
		quota string
		at    time.Time
	}{"no quota": {"", t0}, "no expiry": {"q", time.Time{}}} {
		if err := s.Retire(ctx, k.ID, "gold", c.quota, c.at); err == nil || errors.Is(err, apikey.ErrNotFound) {
			t.Errorf("%s: Retire = %v, want a validation error", name, err)
		}
	}
	equalKeys(t, "key after refused Retires", byID(t, s, k.ID), k)
	// A revoked key stays as it is.
	if err := s.Revoke(ctx, k.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	revoked := byID(t, s, k.ID)
	if err := s.Retire(ctx, k.ID, "gold", "q", t0.Add(time.Hour)); err != nil {
		t.Errorf("Retire(revoked key) = %v, want nil", err)
	}
	equalKeys(t, "revoked key after Retire", byID(t, s, k.ID), revoked)
}

// testLookupsSeeRetire: once Retire or a Rotate with grace has returned, ByHash
// reports the key as it now is (a store that caches lookups must drop it).
func testLookupsSeeRetire(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	retired, rotated := mustCreate(t, s, "u1"), mustCreate(t, s, "u2")
	for _, k := range []apikey.Key{retired, rotated} {
		for range 2 {
			if got, err := s.ByHash(ctx, k.Hash); err != nil || got.Expiring() {
				t.Fatalf("ByHash(new key) = %+v, %v", got, err)
			}
		}
	}
	if err := s.Retire(ctx, retired.ID, "platinum", "q_new", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	nk := next(t)
	if _, err := s.Rotate(ctx, "u2", &nk, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ByHash(ctx, retired.Hash); err != nil || !got.Expiring() || got.Plan != "platinum" || got.QuotaID != "q_new" {
		t.Errorf("ByHash after Retire = %+v, %v; want it expiring on platinum and q_new", got, err)
	}
	if got, err := s.ByHash(ctx, rotated.Hash); err != nil || !got.Expiring() {
		t.Errorf("ByHash after Rotate with grace = %+v, %v; want it expiring", got, err)
	}
}
