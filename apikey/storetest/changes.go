package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

// RunChanges runs the suite of apikey.Changes as subtests of t, on stores from
// newStore (as Run), which must implement it. It checks what Changes documents
// for calls made outside a transaction: each change (Create, Revoke, RevokeUser,
// Retire, Rotate with or without grace) announces the hashes it created, revoked
// or retired before the call returns;
// calls that change nothing or fail announce nothing; stop ends a watcher; a
// watcher may call the store and sees the change; concurrent changes are each
// announced once. Whether a transaction's changes wait for its commit is the SQL
// store's to test.
func RunChanges(t *testing.T, newStore func(t *testing.T) apikey.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s apikey.Store, c apikey.Changes)
	}{
		{"AnnouncesCreate", testAnnouncesCreate},
		{"AnnouncesRevoke", testAnnouncesRevoke},
		{"AnnouncesRevokeUser", testAnnouncesRevokeUser},
		{"AnnouncesRotate", testAnnouncesRotate},
		{"AnnouncesRotateWithGrace", testAnnouncesRotateWithGrace},
		{"AnnouncesRetire", testAnnouncesRetire},
		{"AnnouncesRevokeUserOfExpiringKeys", testAnnouncesRevokeUserExpiring},
		{"NoChangeNoAnnouncement", testNoChangeNoAnnouncement},
		{"Stop", testStop},
		{"WatcherMayCallTheStore", testWatcherCallsStore},
		{"ConcurrentChanges", testConcurrentChanges},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			c, ok := s.(apikey.Changes)
			if !ok {
				t.Fatalf("%T does not implement apikey.Changes", s)
			}
			tt.f(t, s, c)
		})
	}
}

// recorder collects what a watcher is told.
type recorder struct {
	mu    sync.Mutex
	calls [][]string
}

func watch(t *testing.T, c apikey.Changes) *recorder {
	r := &recorder{}
	stop := c.Watch(r.record)
	t.Cleanup(stop)
	return r
}

func (r *recorder) record(hashes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(hashes) == 0 {
		r.calls = append(r.calls, nil) // the suite reports it as an error
		return
	}
	r.calls = append(r.calls, slices.Clone(hashes))
}

// take returns the calls recorded since the last take.
func (r *recorder) take() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// expect checks that the calls since the last take announced exactly want (in
// any order and grouping), each hash once.
func (r *recorder) expect(t *testing.T, what string, want ...string) {
	t.Helper()
	var got []string
	for _, call := range r.take() {
		if len(call) == 0 {
			t.Errorf("%s: a watcher was called with no hashes", what)
		}
		got = append(got, call...)
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("%s: announced %q, want %q", what, got, want)
	}
}

func testAnnouncesCreate(t *testing.T, s apikey.Store, c apikey.Changes) {
	r := watch(t, c)
	k := mustCreate(t, s, "u1")
	r.expect(t, "Create", k.Hash)
	// An imported revoked key is a change too: a cache may hold its hash as
	// unknown.
	_, rk := newKey(t, "u1", "gold")
	rk.Status = apikey.StatusRevoked
	if err := s.Create(context.Background(), &rk); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "Create (revoked)", rk.Hash)
}

func testAnnouncesRevoke(t *testing.T, s apikey.Store, c apikey.Changes) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	r := watch(t, c)
	if err := s.Revoke(ctx, k.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "Revoke", k.Hash)
	if err := s.Revoke(ctx, k.ID, "again", t0); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "Revoke of a revoked key")
	if err := s.Revoke(ctx, "key_nope", "test", t0); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("Revoke(unknown) = %v", err)
	}
	r.expect(t, "Revoke of an unknown key")
}

func testAnnouncesRevokeUser(t *testing.T, s apikey.Store, c apikey.Changes) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	mustCreate(t, s, "u2")
	r := watch(t, c)
	if _, err := s.RevokeUser(ctx, "u1", "test", t0); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "RevokeUser", k.Hash)
	if _, err := s.RevokeUser(ctx, "u1", "again", t0); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "RevokeUser without an active key")
}

func testAnnouncesRotate(t *testing.T, s apikey.Store, c apikey.Changes) {
	k := mustCreate(t, s, "u1")
	r := watch(t, c)
	n := next(t)
	old, err := s.Rotate(context.Background(), "u1", &n, t0.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if old.Hash != k.Hash {
		t.Fatalf("Rotate revoked %s, want %s", old.ID, k.ID)
	}
	r.expect(t, "Rotate", k.Hash, n.Hash)
}

func testAnnouncesRotateWithGrace(t *testing.T, s apikey.Store, c apikey.Changes) {
	k := mustCreate(t, s, "u1")
	r := watch(t, c)
	n := next(t)
	if _, err := s.Rotate(context.Background(), "u1", &n, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The old key still works, but until when has changed: a cache must
	// forget it.
	r.expect(t, "Rotate with grace", k.Hash, n.Hash)
}

func testAnnouncesRetire(t *testing.T, s apikey.Store, c apikey.Changes) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	r := watch(t, c)
	if err := s.Retire(ctx, k.ID, "platinum", "q_new", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "Retire", k.Hash)
	// The same again, or a later expiry (which Retire does not take), changes
	// nothing.
	for _, at := range []time.Time{t0.Add(time.Hour), t0.Add(2 * time.Hour)} {
		if err := s.Retire(ctx, k.ID, "platinum", "q_new", at); err != nil {
			t.Fatal(err)
		}
	}
	r.expect(t, "Retire that changes nothing")
	if err := s.Retire(ctx, k.ID, "platinum", "q_new", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "Retire to an earlier expiry", k.Hash)
	if err := s.Revoke(ctx, k.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	r.take()
	if err := s.Retire(ctx, k.ID, "gold", "q_other", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Retire(ctx, "key_nope", "gold", "q_other", t0.Add(time.Minute)); !errors.Is(err, apikey.ErrNotFound) {
		t.Fatalf("Retire(unknown) = %v", err)
	}
	r.expect(t, "Retire of a revoked or unknown key")
}

func testAnnouncesRevokeUserExpiring(t *testing.T, s apikey.Store, c apikey.Changes) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	n := next(t)
	if _, err := s.Rotate(ctx, "u1", &n, t0, time.Hour); err != nil {
		t.Fatal(err)
	}
	r := watch(t, c)
	if _, err := s.RevokeUser(ctx, "u1", "test", t0); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "RevokeUser of a current and an expiring key", k.Hash, n.Hash)
}

func testNoChangeNoAnnouncement(t *testing.T, s apikey.Store, c apikey.Changes) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	r := watch(t, c)
	_, second := newKey(t, "u1", "gold")
	if err := s.Create(ctx, &second); !errors.Is(err, apikey.ErrActiveExists) {
		t.Fatalf("second active key: %v", err)
	}
	_, dup := newKey(t, "u2", "gold")
	dup.Hash = k.Hash
	if err := s.Create(ctx, &dup); err == nil {
		t.Fatal("duplicate hash: no error")
	}
	if err := s.Create(ctx, &apikey.Key{}); err == nil {
		t.Fatal("incomplete key: no error")
	}
	n := next(t)
	if _, err := s.Rotate(ctx, "nobody", &n, t0, 0); !errors.Is(err, apikey.ErrNoActiveKey) {
		t.Fatalf("Rotate without a key: %v", err)
	}
	if err := s.Touch(ctx, map[string]time.Time{k.ID: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ByHash(ctx, k.Hash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListByUser(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	r.expect(t, "failed changes, Touch and reads")
}

func testStop(t *testing.T, s apikey.Store, c apikey.Changes) {
	a, b := &recorder{}, &recorder{}
	stopA := c.Watch(a.record)
	stopB := c.Watch(b.record)
	defer stopB()
	k1 := mustCreate(t, s, "u1")
	a.expect(t, "watcher a", k1.Hash)
	b.expect(t, "watcher b", k1.Hash)
	stopA()
	stopA() // harmless
	k2 := mustCreate(t, s, "u2")
	a.expect(t, "watcher a after stop")
	b.expect(t, "watcher b", k2.Hash)
}

func testWatcherCallsStore(t *testing.T, s apikey.Store, c apikey.Changes) {
	ctx := context.Background()
	k := mustCreate(t, s, "u1")
	var mu sync.Mutex
	seen := map[string]apikey.Status{}
	stop := c.Watch(func(hashes []string) {
		for _, h := range hashes {
			got, err := s.ByHash(ctx, h)
			if err != nil {
				t.Errorf("ByHash in a watcher: %v", err)
				continue
			}
			mu.Lock()
			seen[h] = got.Status
			mu.Unlock()
		}
	})
	defer stop()
	if err := s.Revoke(ctx, k.ID, "test", t0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen[k.Hash] != apikey.StatusRevoked {
		t.Errorf("the watcher read %q for the revoked key, want it revoked", seen[k.Hash])
	}
}

func testConcurrentChanges(t *testing.T, s apikey.Store, c apikey.Changes) {
	r := watch(t, c)
	const n = 16
	hashes := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, k := newKey(t, fmt.Sprintf("user%d", i), "gold")
			if err := s.Create(context.Background(), &k); err != nil {
				t.Error(err)
				return
			}
			hashes[i] = k.Hash
			if err := s.Revoke(context.Background(), k.ID, "test", t0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	r.expect(t, "concurrent creations and revocations", append(hashes, hashes...)...)
}
