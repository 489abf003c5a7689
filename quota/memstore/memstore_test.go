package memstore

import (
	"testing"
	"time"

	"github.com/releaseradar/tollgate/quota/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, cycle time.Duration) storetest.Harness {
		s := New(Config{Cycle: cycle})
		return storetest.Harness{
			Store: s,
			Stored: func(id string) (int64, time.Time) {
				sh := s.shard(id)
				sh.mu.Lock()
				defer sh.mu.Unlock()
				e, ok := sh.keys[id]
				if !ok {
					t.Fatalf("stored: no quota %q", id)
				}
				return e.used, e.start
			},
		}
	})
}

func BenchmarkConsume(b *testing.B) {
	storetest.Bench(b, New(Config{}))
}
