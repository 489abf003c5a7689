// Package storetest is the conformance suite that every apikey.Store must pass.
//
// A store's test file calls Run with a constructor of empty stores:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) apikey.Store { return mystore.New() })
//	}
//
// The suite checks what apikey.Store documents: lookups, defaults (ID, QuotaID,
// Status), validation, one active key per user, time normalisation, ordering,
// revocation and what RevokeUser returns, rotation (plan and quota kept, nothing
// changed when it fails), expiring keys (rotation with a grace period, a second
// rotation during one, Retire, one current key beside expiring ones, RevokeUser
// revoking them), and concurrent creation, rotation and reading, with and
// without grace. No case skips; each runs in parallel on a store of its own.
//
// A store that implements apikey.Changes also passes RunChanges:
//
//	func TestChanges(t *testing.T) {
//		storetest.RunChanges(t, func(t *testing.T) apikey.Store { return mystore.New() })
//	}
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

// t0 is the suite's clock: a time with nanoseconds, off UTC, so that every store
// must normalise what it is given.
var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("IST", 5*3600+1800))

// us returns t as every store reports it: UTC, microsecond precision.
func us(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// Run runs the suite as subtests of t. newStore returns an empty store; it is
// called once per subtest, from the subtest's goroutine (use t for cleanup), and
// the subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) apikey.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s apikey.Store)
	}{
		{"CreateAndLookup", testCreateAndLookup},
		{"CreateFillsDefaults", testCreateFillsDefaults},
		{"CreateKeepsQuotaID", testCreateKeepsQuotaID},
		{"CreateRejectsIncompleteKeys", testCreateRejectsIncomplete},
		{"CreateRejectsDuplicateHash", testCreateRejectsDuplicateHash},
		{"NotFound", testNotFound},
		{"OneActiveKeyPerUser", testOneActivePerUser},
		{"TimesRoundTrip", testTimesRoundTrip},
		{"ListNewestFirst", testListNewestFirst},
		{"Revoke", testRevoke},
		{"RevokeUser", testRevokeUser},
		{"LookupsSeeRevocation", testLookupsSeeRevocation},
		{"Rotate", testRotate},
		{"RotateKeepsQuotaAlongTheChain", testRotateChain},
		{"RotateWithoutActiveKey", testRotateWithoutActive},
		{"RotateFailureChangesNothing", testRotateFailureChangesNothing},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentRotate", testConcurrentRotate},
		{"ReadersSeeOneActiveKeyDuringRotation", testReadersDuringRotation},
		{"Touch", testTouch},
	}
	tests = append(tests, graceTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f(t, newStore(t))
		})
	}
}

// newKey returns an unsaved key for user on plan, created at t0.
func newKey(t *testing.T, user, plan string) (raw string, k apikey.Key) {
	t.Helper()
	raw, k, err := apikey.New("", user, plan, t0)
	if err != nil {
		t.Fatal(err)
	}
	return raw, k
}

// mustCreate stores a new active key for user and returns it as stored.
func mustCreate(t *testing.T, s apikey.Store, user string) apikey.Key {
	t.Helper()
	_, k := newKey(t, user, "free")
	if err := s.Create(context.Background(), &k); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return k
}

// next returns a successor carrying only what Rotate's caller supplies.
func next(t *testing.T) apikey.Key {
	t.Helper()
	raw, hash, err := apikey.Generate("")
	if err != nil {
		t.Fatal(err)
	}
	return apikey.Key{Hash: hash, KeyPrefix: apikey.DefaultPrefix, Last4: raw[len(raw)-4:]}
}

// currentKeys returns the user's active keys that are not expiring.
func currentKeys(t *testing.T, s apikey.Store, user string) []apikey.Key {
	t.Helper()
	var out []apikey.Key
	for _, k := range activeKeys(t, s, user) {
		if !k.Expiring() {
			out = append(out, k)
		}
	}
	return out
}

// activeKeys returns the user's active keys, expiring ones included.
func activeKeys(t *testing.T, s apikey.Store, user string) []apikey.Key {
	t.Helper()
	keys, err := s.ListByUser(context.Background(), user)
	if err != nil {
		t.Fatalf("ListByUser: %v", err)
	}
	var out []apikey.Key
	for _, k := range keys {
		if k.Active() {
			out = append(out, k)
		}
	}
	return out
}

func equalKeys(t *testing.T, what string, got, want apikey.Key) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testCreateAndLookup(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	_, k := newKey(t, "u1", "gold")
	k.LastUsedAt = t0.Add(-time.Hour)
	if err := s.Create(ctx, &k); err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := k
	want.CreatedAt, want.LastUsedAt = us(t0), us(t0.Add(-time.Hour))
	want.QuotaID = k.ID
	equalKeys(t, "key after Create", k, want)

	got, err := s.ByHash(ctx, k.Hash)
	if err != nil {
		t.Fatalf("ByHash: %v", err)
	}
	equalKeys(t, "ByHash", got, want)
	got, err = s.ByID(ctx, k.ID)
	if err != nil {
		t.Fatalf("ByID: %v", err)
	}
	equalKeys(t, "ByID", got, want)
}

func testCreateFillsDefaults(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := apikey.Key{UserID: "u1", Hash: apikey.Hash("x"), Plan: "free", CreatedAt: t0}
	if err := s.Create(ctx, &k); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(k.ID) != len("key_")+24 || k.ID[:4] != "key_" {
		t.Errorf("ID = %q, want key_ and 24 hex characters", k.ID)
	}
	if k.Status != apikey.StatusActive {
		t.Errorf("Status = %q, want active", k.Status)
	}
	if k.QuotaID != k.ID {
		t.Errorf("QuotaID = %q, want the key's own ID %q", k.QuotaID, k.ID)
	}
	got, err := s.ByID(ctx, k.ID)
	if err != nil {
		t.Fatalf("ByID: %v", err)
	}
	equalKeys(t, "stored key", got, k)

	// A key created with an ID keeps it, and its quota is named after it.
	named := apikey.Key{ID: "key_named", UserID: "u2", Hash: apikey.Hash("y"), Plan: "free", CreatedAt: t0}
	if err := s.Create(ctx, &named); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got, err := s.ByHash(ctx, named.Hash); err != nil || got.ID != "key_named" || got.QuotaID != "key_named" {
		t.Errorf("key created with an ID reads %+v, %v; want ID and QuotaID key_named", got, err)
	}
}

func testCreateKeepsQuotaID(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	// Quota IDs are the caller's to choose and need not be unique: an imported
	// revoked key and the active key of its user may spend the same quota.
	_, old := newKey(t, "u1", "gold")
	old.QuotaID, old.Status, old.RevokedAt, old.RevokeReason = "q_shared", apikey.StatusRevoked, t0, "imported"
	_, cur := newKey(t, "u1", "gold")
	cur.QuotaID = "q_shared"
	for _, k := range []*apikey.Key{&old, &cur} {
		if err := s.Create(ctx, k); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if k.QuotaID != "q_shared" {
			t.Errorf("Create changed QuotaID to %q", k.QuotaID)
		}
		got, err := s.ByHash(ctx, k.Hash)
		if err != nil {
			t.Fatalf("ByHash: %v", err)
		}
		equalKeys(t, "key with a quota ID", got, *k)
	}
}

func testCreateRejectsIncomplete(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	base := apikey.Key{UserID: "u1", Hash: apikey.Hash("x"), Plan: "free", CreatedAt: t0}
	for name, mutate := range map[string]func(*apikey.Key){
		"no user":     func(k *apikey.Key) { k.UserID = "" },
		"no hash":     func(k *apikey.Key) { k.Hash = "" },
		"no time":     func(k *apikey.Key) { k.CreatedAt = time.Time{} },
		"odd status":  func(k *apikey.Key) { k.Status = "paused" },
		"active user": func(k *apikey.Key) {}, // control: this one succeeds
	} {
		k := base
		mutate(&k)
		err := s.Create(ctx, &k)
		if name == "active user" {
			if err != nil {
				t.Errorf("%s: Create: %v", name, err)
			}
			continue
		}
		if err == nil || errors.Is(err, apikey.ErrActiveExists) {
			t.Errorf("%s: Create = %v, want a validation error", name, err)
		}
	}
	if keys := activeKeys(t, s, "u1"); len(keys) != 1 {
		t.Errorf("u1 has %d active keys, want 1", len(keys))
	}
}

func testCreateRejectsDuplicateHash(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	dup := k
	dup.ID, dup.UserID = "", "u2"
	err := s.Create(ctx, &dup)
	if err == nil || errors.Is(err, apikey.ErrActiveExists) {
		t.Errorf("Create with a stored hash = %v, want an error other than ErrActiveExists", err)
	}
	dup = k
	dup.Hash, dup.UserID, dup.Status = apikey.Hash("other"), "u3", apikey.StatusRevoked
	if err := s.Create(ctx, &dup); err == nil {
		t.Errorf("Create with a stored ID succeeded")
	}
	if keys, _ := s.ListByUser(ctx, "u2"); len(keys) != 0 {
		t.Errorf("u2 has %d keys after the refused Create, want 0", len(keys))
	}
}

func testNotFound(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	mustCreate(t, s, "u1")
	if _, err := s.ByHash(ctx, apikey.Hash("nope")); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("ByHash(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.ByHash(ctx, "' OR 1=1 --"); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("ByHash(SQL text) = %v, want ErrNotFound", err)
	}
	if _, err := s.ByID(ctx, "key_nope"); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("ByID(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.Revoke(ctx, "key_nope", "test", t0); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("Revoke(unknown) = %v, want ErrNotFound", err)
	}
	keys, err := s.ListByUser(ctx, "nobody")
	if err != nil || keys == nil || len(keys) != 0 {
		t.Errorf("ListByUser(nobody) = %#v, %v; want an empty non-nil slice and no error", keys, err)
	}
	revoked, err := s.RevokeUser(ctx, "nobody", "test", t0)
	if err != nil || revoked == nil || len(revoked) != 0 {
		t.Errorf("RevokeUser(nobody) = %#v, %v; want an empty non-nil slice and no error", revoked, err)
	}
}

func testOneActivePerUser(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	first := mustCreate(t, s, "u1")
	_, second := newKey(t, "u1", "free")
	if err := s.Create(ctx, &second); !errors.Is(err, apikey.ErrActiveExists) {
		t.Fatalf("second active Create = %v, want ErrActiveExists", err)
	}
	if _, err := s.ByHash(ctx, second.Hash); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("the refused key was stored: ByHash = %v", err)
	}
	// A revoked key for the same user, and an active key for another, are fine.
	_, revoked := newKey(t, "u1", "free")
	revoked.Status, revoked.RevokedAt, revoked.RevokeReason = apikey.StatusRevoked, t0, "imported"
	if err := s.Create(ctx, &revoked); err != nil {
		t.Errorf("Create(revoked key for u1) = %v", err)
	}
	mustCreate(t, s, "u2")
	// Once the first key is revoked, u1 may have a new active key.
	if err := s.Revoke(ctx, first.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &second); err != nil {
		t.Errorf("Create after revoking the active key = %v", err)
	}
}

func testTimesRoundTrip(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	// Nanoseconds and a zone east of UTC, a zone west of it, and a zero time.
	west := time.FixedZone("PDT", -7*3600)
	_, k := newKey(t, "u1", "free")
	k.Status = apikey.StatusRevoked
	k.CreatedAt = time.Date(2025, 12, 31, 23, 59, 59, 999999999, west)
	k.LastUsedAt = t0.Add(time.Nanosecond * 999)
	k.RevokedAt = t0.Add(time.Hour + 1500*time.Nanosecond)
	if err := s.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	got, err := s.ByID(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want time.Time
	}{
		{"created_at", got.CreatedAt, time.Date(2026, 1, 1, 6, 59, 59, 999999000, time.UTC)},
		{"last_used_at", got.LastUsedAt, time.Date(2026, 3, 14, 9, 39, 26, 535898000, time.UTC)},
		{"revoked_at", got.RevokedAt, time.Date(2026, 3, 14, 10, 39, 26, 535899000, time.UTC)},
	} {
		if !c.got.Equal(c.want) || c.got.Location() != time.UTC {
			t.Errorf("%s = %v (%v), want %v in UTC", c.name, c.got, c.got.Location(), c.want)
		}
	}
	active := mustCreate(t, s, "u2")
	got, err = s.ByID(ctx, active.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.LastUsedAt.IsZero() || !got.RevokedAt.IsZero() {
		t.Errorf("unset times read back as last_used_at %v, revoked_at %v; want zero", got.LastUsedAt, got.RevokedAt)
	}
}

func testListNewestFirst(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	var want []string
	for i := range 4 {
		_, k := newKey(t, "u1", "free")
		// Created out of order, a microsecond apart at the closest.
		k.CreatedAt = t0.Add(time.Duration((i*7)%4) * time.Microsecond)
		if i < 3 {
			k.Status = apikey.StatusRevoked
		}
		if err := s.Create(ctx, &k); err != nil {
			t.Fatal(err)
		}
		want = append(want, k.ID)
	}
	mustCreate(t, s, "u2")
	// Offsets were 0, 3, 2, 1 µs: newest first is keys 1, 2, 3, 0.
	want = []string{want[1], want[2], want[3], want[0]}
	keys, err := s.ListByUser(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range keys {
		if k.UserID != "u1" {
			t.Errorf("ListByUser(u1) returned a key of %q", k.UserID)
		}
		got = append(got, k.ID)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ListByUser order = %v, want %v", got, want)
	}
}

func testRevoke(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	other := mustCreate(t, s, "u2")
	at := t0.Add(time.Hour)
	if err := s.Revoke(ctx, k.ID, "leaked", at); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	want := k
	want.Status, want.RevokedAt, want.RevokeReason = apikey.StatusRevoked, us(at), "leaked"
	got, err := s.ByHash(ctx, k.Hash)
	if err != nil {
		t.Fatalf("ByHash(revoked key) = %v, want the key", err)
	}
	equalKeys(t, "revoked key", got, want)

	// Revoking again changes nothing.
	if err := s.Revoke(ctx, k.ID, "again", at.Add(time.Hour)); err != nil {
		t.Errorf("second Revoke = %v, want nil", err)
	}
	got, _ = s.ByID(ctx, k.ID)
	equalKeys(t, "key revoked twice", got, want)

	if got, _ := s.ByID(ctx, other.ID); !got.Active() {
		t.Errorf("Revoke touched another user's key")
	}
}

func testRevokeUser(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	_, old := newKey(t, "u1", "free")
	old.Status, old.RevokedAt, old.RevokeReason = apikey.StatusRevoked, t0, "old"
	if err := s.Create(ctx, &old); err != nil {
		t.Fatal(err)
	}
	k := mustCreate(t, s, "u1")
	other := mustCreate(t, s, "u2")
	at := t0.Add(time.Minute)
	revoked, err := s.RevokeUser(ctx, "u1", "downgrade", at)
	if err != nil || len(revoked) != 1 {
		t.Fatalf("RevokeUser = %+v, %v; want the one active key", revoked, err)
	}
	// It returns the key it revoked, as it now is: what a cache must forget.
	want := k
	want.Status, want.RevokedAt, want.RevokeReason = apikey.StatusRevoked, us(at), "downgrade"
	equalKeys(t, "key returned by RevokeUser", revoked[0], want)
	got, _ := s.ByID(ctx, k.ID)
	equalKeys(t, "key after RevokeUser", got, want)
	got, _ = s.ByID(ctx, old.ID)
	equalKeys(t, "already revoked key after RevokeUser", got, old)
	if revoked, err := s.RevokeUser(ctx, "u1", "downgrade", at); err != nil || revoked == nil || len(revoked) != 0 {
		t.Errorf("second RevokeUser = %#v, %v; want an empty non-nil slice and no error", revoked, err)
	}
	if got, _ := s.ByID(ctx, other.ID); !got.Active() {
		t.Errorf("RevokeUser touched another user's key")
	}
}

// testLookupsSeeRevocation: once Revoke, RevokeUser or Rotate has returned, ByHash
// and ByID report the key revoked, even right after looking it up active (a store
// that caches lookups must drop what it revokes).
func testLookupsSeeRevocation(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	byRevoke, byUser, byRotate := mustCreate(t, s, "u1"), mustCreate(t, s, "u2"), mustCreate(t, s, "u3")
	for _, k := range []apikey.Key{byRevoke, byUser, byRotate} {
		for range 2 {
			if got, err := s.ByHash(ctx, k.Hash); err != nil || !got.Active() {
				t.Fatalf("ByHash(new key) = %+v, %v; want it active", got, err)
			}
			if got, err := s.ByID(ctx, k.ID); err != nil || !got.Active() {
				t.Fatalf("ByID(new key) = %+v, %v; want it active", got, err)
			}
		}
	}
	if err := s.Revoke(ctx, byRevoke.ID, "leaked", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeUser(ctx, "u2", "closed", t0); err != nil {
		t.Fatal(err)
	}
	nk := next(t)
	if _, err := s.Rotate(ctx, "u3", &nk, t0, 0); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]apikey.Key{"Revoke": byRevoke, "RevokeUser": byUser, "Rotate": byRotate} {
		if got, err := s.ByHash(ctx, k.Hash); err != nil || got.Active() {
			t.Errorf("ByHash after %s = %s, %v; want the key revoked", name, got.Status, err)
		}
		if got, err := s.ByID(ctx, k.ID); err != nil || got.Active() {
			t.Errorf("ByID after %s = %s, %v; want the key revoked", name, got.Status, err)
		}
	}
	if got, err := s.ByHash(ctx, nk.Hash); err != nil || !got.Active() {
		t.Errorf("ByHash(successor) = %+v, %v; want it active", got, err)
	}
}

func testRotate(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	_, k := newKey(t, "u1", "gold")
	k.LastUsedAt = t0.Add(-time.Minute)
	if err := s.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	nk := next(t)
	nk.Plan, nk.QuotaID, nk.UserID = "free", "q_other", "u9" // the store decides these
	old, err := s.Rotate(ctx, "u1", &nk, at, 0)
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	wantOld := k
	wantOld.Status, wantOld.RevokedAt = apikey.StatusRevoked, us(at)
	wantOld.RevokeReason = old.RevokeReason // the reason is the store's to choose
	equalKeys(t, "returned old key", old, wantOld)
	if got, _ := s.ByID(ctx, k.ID); !reflect.DeepEqual(got, old) {
		t.Errorf("stored old key %+v differs from the returned %+v", got, old)
	}

	if nk.ID == "" || nk.ID == k.ID {
		t.Errorf("successor ID = %q", nk.ID)
	}
	want := apikey.Key{
		ID: nk.ID, UserID: "u1", Hash: nk.Hash, KeyPrefix: nk.KeyPrefix, Last4: nk.Last4,
		Plan: "gold", Status: apikey.StatusActive,
		// The successor spends the old key's quota: rotating must not reset usage.
		QuotaID:   k.ID,
		CreatedAt: us(at),
	}
	equalKeys(t, "successor as filled in", nk, want)
	got, err := s.ByHash(ctx, nk.Hash)
	if err != nil {
		t.Fatalf("ByHash(successor): %v", err)
	}
	equalKeys(t, "stored successor", got, want)
	if act := activeKeys(t, s, "u1"); len(act) != 1 || act[0].ID != nk.ID {
		t.Errorf("active keys after Rotate = %+v, want only the successor", act)
	}
}

func testRotateChain(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	_, k := newKey(t, "u1", "gold")
	k.QuotaID = "q_u1"
	if err := s.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	prev := k
	for i := range 3 {
		nk := next(t)
		old, err := s.Rotate(ctx, "u1", &nk, t0.Add(time.Duration(i+1)*time.Minute), 0)
		if err != nil {
			t.Fatalf("Rotate %d: %v", i, err)
		}
		if old.ID != prev.ID || old.QuotaID != "q_u1" {
			t.Errorf("Rotate %d revoked %s (quota %q), want %s (quota q_u1)", i, old.ID, old.QuotaID, prev.ID)
		}
		if nk.QuotaID != "q_u1" || nk.Plan != "gold" {
			t.Errorf("successor %d has quota %q plan %q, want q_u1 and gold", i, nk.QuotaID, nk.Plan)
		}
		prev = nk
	}
	keys, err := s.ListByUser(ctx, "u1")
	if err != nil || len(keys) != 4 {
		t.Fatalf("ListByUser = %d keys, %v; want 4", len(keys), err)
	}
	for _, k := range keys {
		if k.QuotaID != "q_u1" {
			t.Errorf("key %s spends quota %q, want q_u1", k.ID, k.QuotaID)
		}
	}
}

func testRotateWithoutActive(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	nk := next(t)
	if _, err := s.Rotate(ctx, "nobody", &nk, t0, 0); !errors.Is(err, apikey.ErrNoActiveKey) {
		t.Errorf("Rotate(user without keys) = %v, want ErrNoActiveKey", err)
	}
	k := mustCreate(t, s, "u1")
	if err := s.Revoke(ctx, k.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(ctx, "u1", &nk, t0, 0); !errors.Is(err, apikey.ErrNoActiveKey) {
		t.Errorf("Rotate(user with only a revoked key) = %v, want ErrNoActiveKey", err)
	}
	if _, err := s.ByHash(ctx, nk.Hash); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("a failed Rotate stored its successor: %v", err)
	}
}

func testRotateFailureChangesNothing(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	taken := mustCreate(t, s, "u2")
	for name, nk := range map[string]apikey.Key{
		"no hash":    {KeyPrefix: apikey.DefaultPrefix, Last4: "abcd"},
		"taken hash": {Hash: taken.Hash, KeyPrefix: apikey.DefaultPrefix, Last4: "abcd"},
	} {
		if _, err := s.Rotate(ctx, "u1", &nk, t0.Add(time.Hour), 0); err == nil {
			t.Errorf("%s: Rotate succeeded", name)
		}
		got, err := s.ByID(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		equalKeys(t, name+": key after a failed Rotate", got, k)
		if act := activeKeys(t, s, "u1"); len(act) != 1 {
			t.Errorf("%s: %d active keys after a failed Rotate, want 1", name, len(act))
		}
	}
}

func testConcurrentCreate(t *testing.T, s apikey.Store) {
	const n = 16
	var ok, exists atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		_, k := newKey(t, "u1", "free")
		wg.Go(func() {
			switch err := s.Create(context.Background(), &k); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, apikey.ErrActiveExists):
				exists.Add(1)
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Create: %v", err)
	}
	if ok.Load() != 1 || exists.Load() != n-1 {
		t.Errorf("%d Creates succeeded and %d got ErrActiveExists; want 1 and %d", ok.Load(), exists.Load(), n-1)
	}
	if act := activeKeys(t, s, "u1"); len(act) != 1 {
		t.Errorf("%d active keys, want 1", len(act))
	}
}

func testConcurrentRotate(t *testing.T, s apikey.Store) { concurrentRotate(t, s, 0) }

// concurrentRotate rotates one user's key from many goroutines at once, with grace.
func concurrentRotate(t *testing.T, s apikey.Store, grace time.Duration) {
	const n = 12
	first := mustCreate(t, s, "u1")
	mustCreate(t, s, "u2")
	var wg sync.WaitGroup
	olds := make([]apikey.Key, n)
	nexts := make([]apikey.Key, n)
	errs := make([]error, n)
	ats := make([]time.Time, n)
	for i := range n {
		nexts[i] = next(t)
		ats[i] = t0.Add(time.Duration(i+1) * time.Second)
		wg.Go(func() {
			olds[i], errs[i] = s.Rotate(context.Background(), "u1", &nexts[i], ats[i], grace)
		})
	}
	wg.Wait()
	// Rotations serialise: each succeeds and replaces a different key, the first
	// key or the successor of another rotation, so the chain has no fork.
	replacedBy := map[string]int{}
	created := map[string]bool{first.ID: true}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Rotate %d: %v", i, err)
		}
		replacedBy[olds[i].ID]++
		created[nexts[i].ID] = true
		if nexts[i].QuotaID != first.ID {
			t.Errorf("successor %d spends quota %q, want the first key's %q", i, nexts[i].QuotaID, first.ID)
		}
		if grace > 0 && (!olds[i].Expiring() || !olds[i].ExpiresAt.Equal(us(ats[i].Add(grace)))) {
			t.Errorf("rotation %d left the old key %s expiring at %v, want expiring at %v", i, olds[i].Status, olds[i].ExpiresAt, us(ats[i].Add(grace)))
		}
	}
	for id, c := range replacedBy {
		if c != 1 || !created[id] {
			t.Errorf("key %s was replaced by %d rotations (known key: %v)", id, c, created[id])
		}
	}
	cur := currentKeys(t, s, "u1")
	if len(cur) != 1 {
		t.Fatalf("%d current keys after %d concurrent rotations, want 1", len(cur), n)
	}
	if replacedBy[cur[0].ID] != 0 || !created[cur[0].ID] {
		t.Errorf("the current key %s is not the end of the rotation chain", cur[0].ID)
	}
	all, _ := s.ListByUser(context.Background(), "u1")
	if len(all) != n+1 {
		t.Errorf("u1 has %d keys, want %d", len(all), n+1)
	}
	wantActive := 1
	if grace > 0 {
		wantActive = n + 1 // the current key and every key it replaced, expiring
	}
	if act := activeKeys(t, s, "u1"); len(act) != wantActive {
		t.Errorf("u1 has %d active keys, want %d", len(act), wantActive)
	}
	if act := activeKeys(t, s, "u2"); len(act) != 1 {
		t.Errorf("rotating u1 changed u2's keys")
	}
}

// testReadersDuringRotation: readers listing a user's keys while the user's key is
// rotated over and over always see exactly one current key (active, not
// expiring). Rotations go on until the readers have read during them (at least
// 20 rotations, at most 10 s).
func testReadersDuringRotation(t *testing.T, s apikey.Store) { readersDuringRotation(t, s, 0) }

func readersDuringRotation(t *testing.T, s apikey.Store, grace time.Duration) {
	const rotations, readers = 20, 2
	mustCreate(t, s, "u1")
	ctx := context.Background()
	done := make(chan struct{})
	started := make(chan struct{}, readers)
	var wg sync.WaitGroup
	var reads atomic.Int32
	bad := make(chan string, readers)
	for range readers {
		wg.Go(func() {
			for first := true; ; first = false {
				select {
				case <-done:
					return
				default:
				}
				keys, err := s.ListByUser(ctx, "u1")
				if err != nil {
					bad <- err.Error()
					return
				}
				current := 0
				for _, k := range keys {
					if k.Active() && !k.Expiring() {
						current++
					}
				}
				if current != 1 {
					bad <- fmt.Sprintf("a reader saw %d current keys among %d", current, len(keys))
					return
				}
				reads.Add(1)
				if first {
					started <- struct{}{}
				}
			}
		})
	}
	for range readers {
		<-started
	}
	before := reads.Load()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < rotations || reads.Load()-before < 2*rotations && time.Now().Before(deadline); i++ {
		nk := next(t)
		if _, err := s.Rotate(ctx, "u1", &nk, t0.Add(time.Duration(i)*time.Second), grace); err != nil {
			t.Errorf("Rotate: %v", err)
			break
		}
		if len(bad) > 0 {
			break
		}
	}
	overlapping := reads.Load() - before
	close(done)
	wg.Wait()
	close(bad)
	for msg := range bad {
		t.Error(msg)
	}
	if overlapping == 0 {
		t.Error("no read overlapped the rotations")
	}
}

// testTouch: Touch records the latest use of each key, never moves it back, skips
// unknown IDs, and works on revoked keys too (a key's last use outlives it).
func testTouch(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	a, b := mustCreate(t, s, "touch-a"), mustCreate(t, s, "touch-b")
	later := t0.Add(time.Hour + 123456789*time.Nanosecond)
	if err := s.Touch(ctx, map[string]time.Time{a.ID: later, b.ID: t0.Add(time.Minute), "key_unknown": later}); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	if err := s.Touch(ctx, map[string]time.Time{a.ID: t0.Add(time.Minute)}); err != nil {
		t.Fatalf("Touch with an older time: %v", err)
	}
	if err := s.Touch(ctx, nil); err != nil {
		t.Fatalf("Touch(nil): %v", err)
	}
	for _, c := range []struct {
		id   string
		want time.Time
	}{{a.ID, us(later)}, {b.ID, us(t0.Add(time.Minute))}} {
		k, err := s.ByID(ctx, c.id)
		if err != nil {
			t.Fatal(err)
		}
		if !k.LastUsedAt.Equal(c.want) || k.LastUsedAt.Location() != time.UTC {
			t.Errorf("LastUsedAt of %s = %v, want %v in UTC", c.id, k.LastUsedAt, c.want)
		}
	}
	if err := s.Revoke(ctx, b.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(ctx, map[string]time.Time{b.ID: later}); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.ByID(ctx, b.ID); !k.LastUsedAt.Equal(us(later)) {
		t.Errorf("LastUsedAt of a revoked key = %v, want %v", k.LastUsedAt, us(later))
	}
}
