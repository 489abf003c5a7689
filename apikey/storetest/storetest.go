// Package storetest is the conformance suite that every apikey.Store must pass.
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

// Run runs the suite. newStore returns an empty store; it is called once per
// subtest, and the subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) apikey.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s apikey.Store)
	}{
		{"CreateAndLookup", testCreateAndLookup},
		{"CreateFillsDefaults", testCreateFillsDefaults},
		{"CreateRejectsIncompleteKeys", testCreateRejectsIncomplete},
		{"CreateRejectsDuplicateHash", testCreateRejectsDuplicateHash},
		{"NotFound", testNotFound},
		{"OneActiveKeyPerUser", testOneActivePerUser},
		{"TimesRoundTrip", testTimesRoundTrip},
		{"ListNewestFirst", testListNewestFirst},
		{"Revoke", testRevoke},
		{"RevokeUser", testRevokeUser},
		{"Rotate", testRotate},
		{"RotateWithoutActiveKey", testRotateWithoutActive},
		{"RotateFailureChangesNothing", testRotateFailureChangesNothing},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentRotate", testConcurrentRotate},
		{"ReadersSeeOneActiveKeyDuringRotation", testReadersDuringRotation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f(t, newStore(t))
		})
	}
}

// newKey returns an unsaved key for user on plan with limit, created at t0.
func newKey(t *testing.T, user, plan string, limit int64) (raw string, k apikey.Key) {
	t.Helper()
	raw, k, err := apikey.New(user, plan, limit, t0)
	if err != nil {
		t.Fatal(err)
	}
	return raw, k
}

// mustCreate stores a new active key for user and returns it as stored.
func mustCreate(t *testing.T, s apikey.Store, user string) apikey.Key {
	t.Helper()
	_, k := newKey(t, user, "pro", 1000)
	if err := s.Create(context.Background(), &k); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return k
}

// next returns a successor carrying only what Rotate's caller supplies.
func next(t *testing.T) apikey.Key {
	t.Helper()
	raw, hash, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return apikey.Key{Hash: hash, KeyPrefix: apikey.Prefix, Last4: raw[len(raw)-4:]}
}

// activeKeys returns the user's active keys.
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
	_, k := newKey(t, "u1", "team", 250000)
	k.CallsUsed = 17
	k.CycleStart = t0.Add(-48 * time.Hour)
	if err := s.Create(ctx, &k); err != nil {
		t.Fatalf("Create: %v", err)
	}
	want := k
	want.CycleStart = us(t0.Add(-48 * time.Hour))
	want.CreatedAt = us(t0)
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
	k := apikey.Key{UserID: "u1", Hash: apikey.Hash("x"), Plan: "pro", MonthlyCallLimit: 5, CreatedAt: t0}
	if err := s.Create(ctx, &k); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(k.ID) != len("key_")+24 || k.ID[:4] != "key_" {
		t.Errorf("ID = %q, want key_ and 24 hex characters", k.ID)
	}
	if k.Status != apikey.StatusActive {
		t.Errorf("Status = %q, want active", k.Status)
	}
	got, err := s.ByID(ctx, k.ID)
	if err != nil {
		t.Fatalf("ByID: %v", err)
	}
	if got.Status != apikey.StatusActive || !got.CycleStart.Equal(us(t0)) {
		t.Errorf("stored status %q cycle start %v, want active and created_at %v", got.Status, got.CycleStart, us(t0))
	}
}

func testCreateRejectsIncomplete(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	base := apikey.Key{UserID: "u1", Hash: apikey.Hash("x"), Plan: "pro", CreatedAt: t0}
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
	if n, err := s.RevokeUser(ctx, "nobody", "test", t0); n != 0 || err != nil {
		t.Errorf("RevokeUser(nobody) = %d, %v; want 0, nil", n, err)
	}
}

func testOneActivePerUser(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	first := mustCreate(t, s, "u1")
	_, second := newKey(t, "u1", "pro", 1000)
	if err := s.Create(ctx, &second); !errors.Is(err, apikey.ErrActiveExists) {
		t.Fatalf("second active Create = %v, want ErrActiveExists", err)
	}
	if _, err := s.ByHash(ctx, second.Hash); !errors.Is(err, apikey.ErrNotFound) {
		t.Errorf("the refused key was stored: ByHash = %v", err)
	}
	// A revoked key for the same user, and an active key for another, are fine.
	_, revoked := newKey(t, "u1", "pro", 1000)
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
	_, k := newKey(t, "u1", "pro", 1000)
	k.Status = apikey.StatusRevoked
	k.CycleStart = time.Date(2025, 12, 31, 23, 59, 59, 999999999, west)
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
		{"cycle_start", got.CycleStart, time.Date(2026, 1, 1, 6, 59, 59, 999999000, time.UTC)},
		{"created_at", got.CreatedAt, time.Date(2026, 3, 14, 9, 39, 26, 535897000, time.UTC)},
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
		_, k := newKey(t, "u1", "pro", 1000)
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
	_, old := newKey(t, "u1", "pro", 1000)
	old.Status, old.RevokedAt, old.RevokeReason = apikey.StatusRevoked, t0, "old"
	if err := s.Create(ctx, &old); err != nil {
		t.Fatal(err)
	}
	k := mustCreate(t, s, "u1")
	other := mustCreate(t, s, "u2")
	at := t0.Add(time.Minute)
	n, err := s.RevokeUser(ctx, "u1", "downgrade", at)
	if n != 1 || err != nil {
		t.Fatalf("RevokeUser = %d, %v; want 1, nil", n, err)
	}
	got, _ := s.ByID(ctx, k.ID)
	if got.Active() || !got.RevokedAt.Equal(us(at)) || got.RevokeReason != "downgrade" {
		t.Errorf("after RevokeUser the key is %s at %v (%q)", got.Status, got.RevokedAt, got.RevokeReason)
	}
	got, _ = s.ByID(ctx, old.ID)
	if !got.RevokedAt.Equal(us(t0)) || got.RevokeReason != "old" {
		t.Errorf("RevokeUser rewrote an already revoked key: %v %q", got.RevokedAt, got.RevokeReason)
	}
	if n, err := s.RevokeUser(ctx, "u1", "downgrade", at); n != 0 || err != nil {
		t.Errorf("second RevokeUser = %d, %v; want 0, nil", n, err)
	}
	if got, _ := s.ByID(ctx, other.ID); !got.Active() {
		t.Errorf("RevokeUser touched another user's key")
	}
}

func testRotate(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	_, k := newKey(t, "u1", "team", 250000)
	k.CallsUsed = 4321
	k.CycleStart = t0.Add(-20 * 24 * time.Hour)
	k.LastUsedAt = t0.Add(-time.Minute)
	if err := s.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	nk := next(t)
	old, err := s.Rotate(ctx, "u1", &nk, at)
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
		Plan: "team", Status: apikey.StatusActive,
		// The successor inherits the quota: rotating must not reset usage.
		MonthlyCallLimit: 250000, CallsUsed: 4321, CycleStart: us(k.CycleStart),
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

func testRotateWithoutActive(t *testing.T, s apikey.Store) {
	ctx := context.Background()
	nk := next(t)
	if _, err := s.Rotate(ctx, "nobody", &nk, t0); !errors.Is(err, apikey.ErrNoActiveKey) {
		t.Errorf("Rotate(user without keys) = %v, want ErrNoActiveKey", err)
	}
	k := mustCreate(t, s, "u1")
	if err := s.Revoke(ctx, k.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rotate(ctx, "u1", &nk, t0); !errors.Is(err, apikey.ErrNoActiveKey) {
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
		"no hash":    {KeyPrefix: apikey.Prefix, Last4: "abcd"},
		"taken hash": {Hash: taken.Hash, KeyPrefix: apikey.Prefix, Last4: "abcd"},
	} {
		if _, err := s.Rotate(ctx, "u1", &nk, t0.Add(time.Hour)); err == nil {
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
		_, k := newKey(t, "u1", "pro", 1000)
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

func testConcurrentRotate(t *testing.T, s apikey.Store) {
	const n = 12
	first := mustCreate(t, s, "u1")
	mustCreate(t, s, "u2")
	var wg sync.WaitGroup
	olds := make([]apikey.Key, n)
	nexts := make([]apikey.Key, n)
	errs := make([]error, n)
	for i := range n {
		nexts[i] = next(t)
		wg.Go(func() {
			olds[i], errs[i] = s.Rotate(context.Background(), "u1", &nexts[i], t0.Add(time.Duration(i+1)*time.Second))
		})
	}
	wg.Wait()
	// Rotations serialise: each succeeds and revokes a different key, the first
	// key or the successor of another rotation, so the chain has no fork.
	revokedBy := map[string]int{}
	created := map[string]bool{first.ID: true}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Rotate %d: %v", i, err)
		}
		revokedBy[olds[i].ID]++
		created[nexts[i].ID] = true
	}
	for id, c := range revokedBy {
		if c != 1 || !created[id] {
			t.Errorf("key %s was revoked by %d rotations (known key: %v)", id, c, created[id])
		}
	}
	act := activeKeys(t, s, "u1")
	if len(act) != 1 {
		t.Fatalf("%d active keys after %d concurrent rotations, want 1", len(act), n)
	}
	if revokedBy[act[0].ID] != 0 || !created[act[0].ID] {
		t.Errorf("the active key %s is not the end of the rotation chain", act[0].ID)
	}
	all, _ := s.ListByUser(context.Background(), "u1")
	if len(all) != n+1 {
		t.Errorf("u1 has %d keys, want %d", len(all), n+1)
	}
	if act := activeKeys(t, s, "u2"); len(act) != 1 {
		t.Errorf("rotating u1 changed u2's keys")
	}
}

func testReadersDuringRotation(t *testing.T, s apikey.Store) {
	const rotations = 20
	mustCreate(t, s, "u1")
	ctx := context.Background()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int32
	bad := make(chan string, 2)
	for range 2 {
		wg.Go(func() {
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
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
				active := 0
				for _, k := range keys {
					if k.Active() {
						active++
					}
				}
				if active != 1 {
					bad <- fmt.Sprintf("a reader saw %d active keys among %d", active, len(keys))
					return
				}
				reads.Add(1)
			}
		})
	}
	for i := range rotations {
		nk := next(t)
		if _, err := s.Rotate(ctx, "u1", &nk, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Errorf("Rotate: %v", err)
			break
		}
	}
	close(done)
	wg.Wait()
	close(bad)
	for msg := range bad {
		t.Error(msg)
	}
	if reads.Load() == 0 {
		t.Log("no read overlapped the rotations")
	}
}
