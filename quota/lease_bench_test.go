package quota_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/quota/memstore"
)

// BenchmarkLeaseTake measures Take on a held lease (the hot path: no store call,
// no allocation) on one quota, serially and from parallel goroutines, and spread
// over 1,000 quotas.
func BenchmarkLeaseTake(b *testing.B) {
	const keys = 1000
	s := memstore.New(memstore.Config{})
	ids := make([]string, keys)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%04d", i)
		mustPut(b, s, ids[i], 1<<62, lbase)
	}
	// Batches large enough that a run reserves a few dozen times in all.
	l := quota.NewLeases(s, quota.LeaseConfig{LimitFraction: 1, MaxBatch: 1 << 40})
	ctx := context.Background()
	now := lbase.Add(time.Hour)
	b.Run("held", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := l.Take(ctx, ids[0], now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("held-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Take(ctx, ids[0], now); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	var offset atomic.Int64
	b.Run("spread-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(offset.Add(keys / 7))
			for pb.Next() {
				if _, err := l.Take(ctx, ids[i%keys], now); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
	b.Run("refund", func(b *testing.B) {
		b.ReportAllocs()
		u, err := l.Take(ctx, ids[1], now)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			l.Refund(ids[1], u)
		}
	})
}

// BenchmarkLeaseReserve measures Take through reservations on one hot quota on
// each backend, with the wall clock as the instant: "batched" with the default
// LeaseConfig (batches adapt to the traffic, up to 1,000 calls), "per-call" with
// MaxBatch 1 (every Take reserves, as quota.Consume does, but concurrent Takes
// share a reservation in flight). reserves/op is the store writes per call.
func BenchmarkLeaseReserve(b *testing.B) {
	for _, be := range leaseBackends {
		for _, c := range []struct {
			name string
			cfg  quota.LeaseConfig
		}{
			{"batched", quota.LeaseConfig{}},
			{"per-call", quota.LeaseConfig{MaxBatch: 1}},
		} {
			b.Run(be.name+"/"+c.name, func(b *testing.B) {
				s := be.open(b, 0)()
				mustPut(b, s, "hot", 1<<62, lbase)
				l := quota.NewLeases(s, c.cfg)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := l.Take(ctx, "hot", time.Now()); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(l.Stats().Reservations)/float64(b.N), "reserves/op")
				if err := l.Close(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
