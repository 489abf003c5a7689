package memstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/storetest"
)

// The suite checks Usage only on stores that have it; make sure this one does.
var _ storetest.UsageReader = (*Store)(nil)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, cycle time.Duration) storetest.Harness {
		s := New(Config{Cycle: cycle})
		return storetest.Harness{
			Store:  s,
			Add:    s.Put,
			Revoke: s.Revoke,
			Stored: func(id string) (int64, time.Time) {
				sh := s.shard(id)
				sh.mu.Lock()
				defer sh.mu.Unlock()
				e, ok := sh.keys[id]
				if !ok {
					t.Fatalf("stored: no key %q", id)
				}
				return e.used, e.start
			},
		}
	})
}

func TestPutReplaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	s := New(Config{})
	s.Put("k", 2, start)
	if _, _, err := s.Reserve(ctx, "k", 2, start); err != nil {
		t.Fatal(err)
	}
	s.Revoke("k")
	s.Put("k", 5, start.Add(time.Hour))
	g, u, err := s.Reserve(ctx, "k", 1, start.Add(2*time.Hour))
	if err != nil || g != 1 || u.Limit != 5 || u.Used != 1 || !u.CycleStart.Equal(start.Add(time.Hour)) {
		t.Fatalf("after Put replaced the key: granted %d, usage %+v, err %v", g, u, err)
	}
	s.Revoke("unknown") // must not panic or create the key
	if _, _, err := s.Reserve(ctx, "unknown", 1, start); !errors.Is(err, quota.ErrNotFound) {
		t.Fatalf("Revoke created an unknown key: err = %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	s := New(Config{})
	s.Put("k", 3, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if g, _, err := s.Reserve(ctx, "k", 1, time.Now()); err == nil || g != 0 {
		t.Fatalf("Reserve with a canceled context: granted %d, err %v", g, err)
	}
}

func BenchmarkConsume(b *testing.B) {
	s := New(Config{})
	storetest.Bench(b, s, s.Put)
}
