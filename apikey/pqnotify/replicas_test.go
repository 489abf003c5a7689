package pqnotify_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/pqnotify"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// TestReplicas: two replicas on one database, each with its own pool. Replica B
// authenticates through a cache wired to a listener; replica A changes keys. B's
// clock stands still and its channel is up, so nothing ages out of its cache:
// only a notification makes it forget a key.
func TestReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tg := newTarget(t)
	open := func() *sqlstore.Store {
		s := sqlstore.New(testenv.OpenPostgres(t, tg.base), sqlstore.Config{Channel: tg.channel})
		if err := s.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	storeA, storeB := open(), open()
	stopped := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	authB := apikey.NewAuthenticator(storeB, apikey.Config{Cache: apikey.CacheConfig{Now: func() time.Time { return stopped }}})

	// What B's listener did, after it did it.
	type heard struct {
		state, up bool
		hashes    []string
	}
	events := make(chan heard, 64)
	cfg := pqnotify.Config{MinReconnect: 10 * time.Millisecond, MaxReconnect: 100 * time.Millisecond}
	stop, err := cfg.Listen(ctx, tg.url, tg.channel,
		func(h []string) { authB.Forget(h...); events <- heard{hashes: slices.Clone(h)} },
		func(up bool) { authB.SetChannel(up); events <- heard{state: true, up: up} },
		quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	next := func() heard {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(hang):
			t.Fatal("B's listener heard nothing")
			return heard{}
		}
	}
	expectHash := func(what, hash string) {
		t.Helper()
		if e := next(); e.state || !slices.Equal(e.hashes, []string{hash}) {
			t.Fatalf("%s: B heard %+v, want the key's hash", what, e)
		}
	}
	if e := next(); e.state || e.hashes != nil {
		t.Fatalf("B heard %+v first, want onChange(nil)", e)
	}
	if e := next(); !e.state || !e.up || !authB.Stats().ChannelUp {
		t.Fatalf("B heard %+v, want onState(true)", e)
	}
	create := func(user string) (string, apikey.Key) {
		t.Helper()
		raw, k, err := apikey.New("rr_live_", user, "gold", stopped)
		if err != nil {
			t.Fatal(err)
		}
		if err := storeA.Create(ctx, &k); err != nil {
			t.Fatal(err)
		}
		expectHash("Create on A", k.Hash)
		return raw, k
	}
	lookups := func() uint64 { return authB.Stats().Lookups }

	// A revokes a key B has cached: B refuses it once it heard.
	raw1, k1 := create("u1")
	for range 3 {
		if _, err := authB.Authenticate(ctx, raw1); err != nil {
			t.Fatal(err)
		}
	}
	if n := lookups(); n != 1 {
		t.Fatalf("B made %d lookups for 3 requests, want 1", n)
	}
	if err := storeA.Revoke(ctx, k1.ID, "leaked", stopped); err != nil {
		t.Fatal(err)
	}
	expectHash("Revoke on A", k1.Hash)
	if _, err := authB.Authenticate(ctx, raw1); !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("B after A's revocation: %v, want ErrRevoked", err)
	}

	// A revokes in a transaction that rolls back: B hears nothing of it, and
	// keeps serving the key from its cache.
	raw2, k2 := create("u2")
	if _, err := authB.Authenticate(ctx, raw2); err != nil {
		t.Fatal(err)
	}
	errRollback := errors.New("roll back")
	err = storeA.Atomic(ctx, func(ctx context.Context) error {
		if err := storeA.Revoke(ctx, k2.ID, "test", stopped); err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}
	create("u3") // the next notification is this one's, not the rolled-back revocation's
	before := lookups()
	if p, err := authB.Authenticate(ctx, raw2); err != nil || p.KeyID != k2.ID {
		t.Fatalf("B after a rolled-back revocation: %+v, %v", p, err)
	}
	if lookups() != before {
		t.Error("B looked the key up again after a rolled-back revocation")
	}

	// B's connection is cut: B falls back, reconnects, forgets everything.
	tg.terminate(t)
	if e := next(); !e.state || e.up {
		t.Fatalf("after the cut B heard %+v, want onState(false)", e)
	}
	if e := next(); e.state || e.hashes != nil {
		t.Fatalf("after reconnecting B heard %+v, want onChange(nil)", e)
	}
	if e := next(); !e.state || !e.up {
		t.Fatalf("after reconnecting B heard %+v, want onState(true)", e)
	}
	if st := authB.Stats(); st.Entries != 0 || !st.ChannelUp {
		t.Errorf("B after reconnecting: %+v, want an empty cache and the channel up", st)
	}
	// And it hears A again.
	if _, err := storeA.RevokeUser(ctx, "u2", "closed", stopped); err != nil {
		t.Fatal(err)
	}
	expectHash("RevokeUser on A", k2.Hash)
	if _, err := authB.Authenticate(ctx, raw2); !errors.Is(err, apikey.ErrRevoked) {
		t.Fatalf("B after A's RevokeUser: %v, want ErrRevoked", err)
	}
}
