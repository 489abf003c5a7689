package quota_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/quota"
)

func TestCycleEndAndDue(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 31, 23, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		cycle   time.Duration
		now     time.Time
		wantEnd time.Time
		wantDue bool
	}{
		{"default is 30 days", 0, start, start.Add(720 * time.Hour), false},
		{"negative means default", -time.Hour, start.Add(720 * time.Hour), start.Add(720 * time.Hour), true},
		{"one nanosecond before the end", quota.DefaultCycle, start.Add(quota.DefaultCycle - 1), start.Add(quota.DefaultCycle), false},
		{"exactly at the end", quota.DefaultCycle, start.Add(quota.DefaultCycle), start.Add(quota.DefaultCycle), true},
		{"long after", quota.DefaultCycle, start.Add(400 * 24 * time.Hour), start.Add(quota.DefaultCycle), true},
		{"a clock behind the start", quota.DefaultCycle, start.Add(-time.Hour), start.Add(quota.DefaultCycle), false},
		{"custom hour", time.Hour, start.Add(time.Hour), start.Add(time.Hour), true},
	}
	for _, c := range cases {
		if got := quota.CycleEnd(start, c.cycle); !got.Equal(c.wantEnd) {
			t.Errorf("%s: CycleEnd = %v, want %v", c.name, got, c.wantEnd)
		}
		if got := quota.Due(start, c.now, c.cycle); got != c.wantDue {
			t.Errorf("%s: Due = %v, want %v", c.name, got, c.wantDue)
		}
	}
}

func TestRemaining(t *testing.T) {
	t.Parallel()
	cases := []struct{ limit, used, want int64 }{
		{100, 0, 100},
		{100, 99, 1},
		{100, 100, 0},
		{100, 150, 0}, // a limit lowered below what was used
		{0, 0, 0},
	}
	for _, c := range cases {
		if got := (quota.Usage{Limit: c.limit, Used: c.used}).Remaining(); got != c.want {
			t.Errorf("Remaining(limit %d, used %d) = %d, want %d", c.limit, c.used, got, c.want)
		}
	}
}

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// grantStore grants what it is told and records the n it was asked for.
type grantStore struct {
	granted int64
	err     error
	askedN  int64
}

func (g *grantStore) Reserve(_ context.Context, _ string, n int64, _ time.Time) (int64, quota.Usage, error) {
	g.askedN = n
	return g.granted, quota.Usage{Limit: 7, Used: 7 - 1 + g.granted}, g.err
}

// Release, Put and Usage are never called: Consume only reserves.
func (g *grantStore) Release(context.Context, string, int64, time.Time) error {
	panic("quota.Consume called Release")
}

func (g *grantStore) Put(context.Context, string, int64, time.Time) error {
	panic("quota.Consume called Put")
}

func (g *grantStore) Usage(context.Context, string, time.Time) (quota.Usage, error) {
	panic("quota.Consume called Usage")
}

func TestConsume(t *testing.T) {
	t.Parallel()
	backend := errors.New("backend down")
	cases := []struct {
		name    string
		store   *grantStore
		wantErr error
	}{
		{"granted", &grantStore{granted: 1}, nil},
		{"nothing granted is ErrExceeded", &grantStore{granted: 0}, quota.ErrExceeded},
		{"store errors pass through", &grantStore{err: backend}, backend},
		{"not found passes through", &grantStore{err: quota.ErrNotFound}, quota.ErrNotFound},
	}
	for _, c := range cases {
		u, err := quota.Consume(context.Background(), c.store, "k", t0)
		if !errors.Is(err, c.wantErr) || (c.wantErr == nil && err != nil) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.wantErr)
		}
		if c.store.askedN != 1 {
			t.Errorf("%s: Consume asked for %d calls, want 1", c.name, c.store.askedN)
		}
		if u.Limit != 7 {
			t.Errorf("%s: Consume dropped the usage: %+v", c.name, u)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	u := quota.Usage{Reset: t0}
	cases := []struct {
		now  time.Time
		want int64
	}{
		{t0.Add(-quota.DefaultCycle), int64(quota.DefaultCycle / time.Second)},
		{t0.Add(-10 * time.Second), 10},
		{t0.Add(-10*time.Second - time.Nanosecond), 11},
		{t0.Add(-time.Millisecond), 1},
		{t0, 1},
		{t0.Add(time.Hour), 1},
	}
	for _, c := range cases {
		if got := quota.RetryAfter(u, c.now); got != c.want {
			t.Errorf("RetryAfter %v before the reset = %d, want %d", t0.Sub(c.now), got, c.want)
		}
	}
}

// TestErrors: the sentinels answer from the problem table, and ErrExceeded is
// told apart from ErrNotFound.
func TestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err    error
		status int
	}{
		{quota.ErrExceeded, http.StatusTooManyRequests},
		{fmt.Errorf("wrapped: %w", quota.ErrNotFound), http.StatusForbidden},
	}
	for _, c := range cases {
		if status, _, dep := problem.For(c.err); status != c.status || dep {
			t.Errorf("%v answers %d (dependency %v), want %d", c.err, status, dep, c.status)
		}
	}
	if errors.Is(quota.ErrExceeded, quota.ErrNotFound) {
		t.Error("ErrExceeded matches ErrNotFound")
	}
}
