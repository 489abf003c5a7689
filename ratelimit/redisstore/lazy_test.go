package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/releaseradar/tollgate/internal/testenv"
	"github.com/releaseradar/tollgate/ratelimit"
)

// errDown is the dial error of a Redis that is down.
var errDown = errors.New("test: redis is down")

// TestLazyConnect: a Store made while Redis is down tries to connect at most once
// a second, fails every Take meanwhile without touching the network, and counts
// once Redis is back.
func TestLazyConnect(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	var dials atomic.Int64
	addr := opts.Addr
	opts.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
		dials.Add(1)
		if !up.Load() {
			return nil, errDown
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	opts.MaxRetries, opts.DialerRetries = -1, 1
	client := redis.NewClient(opts)
	t.Cleanup(func() { client.Close() })

	s, err := New(client, testenv.Unique("tgtest:"))
	if err != nil {
		t.Fatalf("New while Redis is down: %v", err)
	}
	var mu sync.Mutex
	now := time.Now()
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }

	ctx := context.Background()
	rate := ratelimit.Rate{Limit: 10, Period: time.Minute}
	fails := func(what string) {
		t.Helper()
		for range 20 {
			if _, err := s.Take(ctx, "b", 1, rate); !errors.Is(err, errDown) || !strings.HasPrefix(err.Error(), "redisstore: connect: ") {
				t.Fatalf("%s: Take error %v, want the connection error", what, err)
			}
			if _, _, err := s.TakeBatch(ctx, "b", 2, rate); !errors.Is(err, errDown) || !strings.HasPrefix(err.Error(), "redisstore: connect: ") {
				t.Fatalf("%s: TakeBatch error %v, want the connection error", what, err)
			}
		}
	}
	d0 := dials.Load()
	if d0 == 0 {
		t.Fatal("New did not try to connect")
	}
	fails("within the first second")
	if got := dials.Load(); got != d0 {
		t.Fatalf("%d dials within the first second after New, want none", got-d0)
	}
	advance(1100 * time.Millisecond)
	fails("a second later")
	d1 := dials.Load()
	if d1 == d0 {
		t.Fatal("no new attempt a second later")
	}
	// Redis comes back; the store notices at its next attempt.
	up.Store(true)
	advance(500 * time.Millisecond)
	fails("half a second after the last attempt")
	if got := dials.Load(); got != d1 {
		t.Fatalf("%d dials before the next attempt is due, want none", got-d1)
	}
	advance(600 * time.Millisecond)
	for i := range 3 {
		w, err := s.Take(ctx, "b", 1, rate)
		if err != nil || w.Remaining != int64(9-i) {
			t.Fatalf("Take %d once Redis is back: %+v, %v", i+1, w, err)
		}
	}
	if g, w, err := s.TakeBatch(ctx, "b", 2, rate); err != nil || g != 2 || w.Remaining != 5 {
		t.Fatalf("TakeBatch once Redis is back: %d, %+v, %v", g, w, err)
	}
}

// redisError is an error reply of a Redis server.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

var _ redis.Error = redisError("")

func TestTransient(t *testing.T) {
	t.Parallel()
	for msg, want := range map[string]bool{
		"LOADING Redis is loading the dataset in memory":      true,
		"BUSY Redis is busy running a script":                 true,
		"MASTERDOWN Link with MASTER is down":                 true,
		"TRYAGAIN Multiple keys request during rehashing":     true,
		"CLUSTERDOWN The cluster is down":                     true,
		"WRONGPASS invalid username-password pair":            false,
		"NOPERM this user has no permissions to run 'script'": false,
		"NOSCRIPT No matching script":                         false,
		"ERR unknown command 'script'":                        false,
	} {
		if got := transient(redisError(msg)); got != want {
			t.Errorf("transient(%q) = %v, want %v", msg, got, want)
		}
	}
}
