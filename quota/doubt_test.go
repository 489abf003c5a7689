package quota_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/memstore"
)

// midCommit is a store whose reservations and releases can fail the way a
// connection that breaks during COMMIT makes them fail: the change may have
// happened (applied) or not, and until the store answers again (reachable) it
// cannot tell. It journals what happened, as quota/sqlstore does.
type midCommit struct {
	quota.Store
	mu        sync.Mutex
	failNext  bool // the next Reserve or Release ends in doubt
	applied   bool // ... after taking effect
	reachable bool
	journal   map[string]bool
	n         int
}

func (m *midCommit) doubt(calls int64, start time.Time, release bool, apply func() error) error {
	m.mu.Lock()
	fail, applied := m.failNext, m.applied
	m.failNext = false
	m.n++
	token := "t" + string(rune('a'+m.n))
	m.mu.Unlock()
	if !fail {
		return apply()
	}
	if applied {
		if err := apply(); err != nil {
			return err
		}
	}
	m.mu.Lock()
	m.journal[token] = applied
	m.mu.Unlock()
	return &quota.InDoubtError{Token: token, Calls: calls, CycleStart: start, Release: release, Err: errors.New("connection reset during COMMIT")}
}

func (m *midCommit) Reserve(ctx context.Context, id string, n int64, now time.Time) (int64, quota.Usage, error) {
	var granted int64
	var u quota.Usage
	err := m.doubt(n, lbase, false, func() error {
		var err error
		granted, u, err = m.Store.Reserve(ctx, id, n, now)
		return err
	})
	return granted, u, err
}

func (m *midCommit) Release(ctx context.Context, id string, n int64, start time.Time) error {
	return m.doubt(n, start, true, func() error { return m.Store.Release(ctx, id, n, start) })
}

func (m *midCommit) Confirm(_ context.Context, token string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.reachable {
		return false, errors.New("connection refused")
	}
	return m.journal[token], nil
}

// A reservation or a release that ends in doubt is never spent; once the store can
// tell, a reservation that took effect is given back and a release that did not
// is made again, so the store ends up counting exactly the calls served.
func TestLeasesInDoubt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		applied bool
	}{{"committed", true}, {"rolled back", false}} {
		t.Run("reservation "+tc.name, func(t *testing.T) {
			t.Parallel()
			m := &midCommit{Store: memstore.New(memstore.Config{}), journal: map[string]bool{}}
			mustPut(t, m, "q", 100, lbase)
			l := quota.NewLeases(m, quota.LeaseConfig{})
			now := lbase.Add(time.Hour)
			m.failNext, m.applied = true, tc.applied
			var doubtful *quota.InDoubtError
			if _, err := l.Take(ctx, "q", now); !errors.As(err, &doubtful) {
				t.Fatalf("Take during the fault: %v, want the InDoubtError", err)
			}
			if l.Stats().InDoubt != 1 {
				t.Fatalf("in doubt %d, want 1", l.Stats().InDoubt)
			}
			// While the store cannot tell, Expire keeps the doubt.
			if err := l.Expire(ctx, now.Add(time.Second)); err == nil || l.Stats().InDoubt != 1 {
				t.Fatalf("Expire with the store unreachable: %v, in doubt %d", err, l.Stats().InDoubt)
			}
			m.reachable = true
			if err := l.Expire(ctx, now.Add(2*time.Second)); err != nil {
				t.Fatal(err)
			}
			if l.Stats().InDoubt != 0 {
				t.Fatal("doubt not settled")
			}
			if u := mustUsage(t, m, "q", now); u.Used != 0 {
				t.Fatalf("store counts %d after the doubt settled, want 0 (nothing was served)", u.Used)
			}
			mustTake(t, l, "q", now.Add(3*time.Second))
			mustClose(t, l)
			if u := mustUsage(t, m, "q", now); u.Used != 1 {
				t.Fatalf("store counts %d, want the 1 served", u.Used)
			}
		})
		t.Run("release "+tc.name, func(t *testing.T) {
			t.Parallel()
			m := &midCommit{Store: memstore.New(memstore.Config{}), journal: map[string]bool{}}
			mustPut(t, m, "q", 100, lbase)
			l := quota.NewLeases(m, quota.LeaseConfig{LimitFraction: 1})
			now := lbase.Add(time.Hour)
			for i := range 4 { // grow the lease past one call
				mustTake(t, l, "q", now.Add(time.Duration(i)*time.Millisecond))
			}
			served := int64(4)
			m.failNext, m.applied = true, tc.applied
			_ = l.Close(ctx) // the release of the leftover ends in doubt
			m.reachable = true
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if u := mustUsage(t, m, "q", now); u.Used != served {
				t.Fatalf("store counts %d after the release settled, want the %d served", u.Used, served)
			}
		})
	}
}
