package sqlstore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/pqnotify"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// announced records what a store's watchers are told.
type announced struct {
	mu     sync.Mutex
	hashes []string
}

func (a *announced) record(hashes []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hashes = append(a.hashes, hashes...)
}

func (a *announced) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.hashes
	a.hashes = nil
	return out
}

func createKey(t *testing.T, ctx context.Context, s *sqlstore.Store, user string) apikey.Key {
	t.Helper()
	_, k, err := apikey.New("", user, "gold", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestWatchersWaitForCommit: inside a transaction, watchers hear of a change
// once it commits, and never of one rolled back.
func TestWatchersWaitForCommit(t *testing.T) {
	t.Parallel()
	testenv.DB(t, func(t *testing.T, db *sqlx.DB) {
		t.Parallel()
		ctx := context.Background()
		s := open(t, db)
		a := &announced{}
		defer s.Watch(a.record)()

		var k1 apikey.Key
		err := s.Atomic(ctx, func(ctx context.Context) error {
			k1 = createKey(t, ctx, s, "u1")
			if got := a.take(); len(got) != 0 {
				t.Errorf("announced %q before the commit", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := a.take(); !slices.Equal(got, []string{k1.Hash}) {
			t.Errorf("after the commit: announced %q, want k1", got)
		}

		errRollback := errors.New("roll back")
		err = s.Atomic(ctx, func(ctx context.Context) error {
			if err := s.Revoke(ctx, k1.ID, "test", now); err != nil {
				return err
			}
			createKey(t, ctx, s, "u2")
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
		if got := a.take(); len(got) != 0 {
			t.Errorf("a rolled-back transaction announced %q", got)
		}
		if k, err := s.ByHash(ctx, k1.Hash); err != nil || !k.Active() {
			t.Fatalf("k1 after the rollback: %+v, %v", k, err)
		}

		// Several changes in one transaction are announced together at its commit.
		var next apikey.Key
		var revoked []apikey.Key
		k3 := createKey(t, ctx, s, "u3")
		a.take()
		err = s.Atomic(ctx, func(ctx context.Context) error {
			raw, hash, _ := apikey.Generate("")
			next = apikey.Key{Hash: hash, Last4: raw[len(raw)-4:]}
			if _, err := s.Rotate(ctx, "u1", &next, now, 0); err != nil {
				return err
			}
			var err error
			revoked, err = s.RevokeUser(ctx, "u3", "test", now)
			return err
		})
		if err != nil || len(revoked) != 1 {
			t.Fatal(err, revoked)
		}
		got := a.take()
		slices.Sort(got)
		want := []string{k1.Hash, next.Hash, k3.Hash}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("after the commit: announced %q, want %q", got, want)
		}
	})
}

func TestBootstrapChecksChannel(t *testing.T) {
	t.Parallel()
	for _, ch := range []string{strings.Repeat("c", 64), "a\x00b"} {
		s := sqlstore.New(testenv.SQLite(t), sqlstore.Config{Channel: ch})
		if err := s.Bootstrap(context.Background()); err == nil {
			t.Errorf("channel %q: Bootstrap succeeded", ch)
		}
	}
	s := sqlstore.New(testenv.SQLite(t), sqlstore.Config{Channel: strings.Repeat("c", 63)})
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Errorf("a 63-byte channel: %v", err)
	}
}

// TestNotify: on PostgreSQL a change notifies its hashes to other processes when
// it commits, in commit order, and a rolled-back one notifies nothing.
func TestNotify(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	channel := testenv.Unique("tgch_")
	s := sqlstore.New(testenv.OpenPostgres(t, url), sqlstore.Config{Channel: channel})
	if err := s.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	heard := make(chan []string, 64)
	stop, err := pqnotify.Listen(context.Background(), url, channel,
		func(h []string) { heard <- h }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if h := <-heard; h != nil {
		t.Fatalf("first onChange(%q), want nil", h)
	}
	next := func() string {
		t.Helper()
		select {
		case h := <-heard:
			if len(h) != 1 {
				t.Fatalf("onChange(%q), want one hash", h)
			}
			return h[0]
		case <-time.After(time.Minute): // a hang guard, not a speed assertion
			t.Fatal("no notification")
			return ""
		}
	}
	ctx := context.Background()

	k1 := createKey(t, ctx, s, "u1") // outside a transaction
	if h := next(); h != k1.Hash {
		t.Fatalf("Create notified %q, want k1's hash", h)
	}

	var k2 apikey.Key
	errRollback := errors.New("roll back")
	err = s.Atomic(ctx, func(ctx context.Context) error {
		if _, err := s.RevokeUser(ctx, "u1", "test", now); err != nil {
			return err
		}
		k2 = createKey(t, ctx, s, "u2")
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatal(err)
	}

	k3 := createKey(t, ctx, s, "u3")
	if err := s.Revoke(ctx, k3.ID, "test", now); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, k3.ID, "again", now); err != nil { // no change: no notification
		t.Fatal(err)
	}
	raw, hash, _ := apikey.Generate("")
	successor := apikey.Key{Hash: hash, Last4: raw[len(raw)-4:]}
	if _, err := s.Rotate(ctx, "u1", &successor, now, 0); err != nil {
		t.Fatal(err)
	}
	// The rolled-back transaction's notifications (k1, k2) never come: the next
	// ones are the committed changes', in order.
	for _, want := range []struct{ what, hash string }{
		{"Create k3", k3.Hash}, {"Revoke k3", k3.Hash}, {"Rotate: the old key", k1.Hash}, {"Rotate: the new key", successor.Hash},
	} {
		if h := next(); h != want.hash {
			t.Fatalf("%s: notified %q, want %q (k1 %q, k2 %q)", want.what, h, want.hash, k1.Hash, k2.Hash)
		}
	}
}
