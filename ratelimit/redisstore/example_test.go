package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/redisstore"
)

// A replica's burst counters in Redis, with the client timeouts the package
// recommends. Here Redis is down when the replica starts: New still succeeds,
// and the Limiter lets requests through uncounted (its default policy) until
// Redis can be reached, when counting starts by itself.
func Example() {
	client := redis.NewClient(&redis.Options{
		Addr:          "127.0.0.1:1", // nothing listens here
		DialTimeout:   100 * time.Millisecond,
		ReadTimeout:   100 * time.Millisecond,
		WriteTimeout:  100 * time.Millisecond,
		MaxRetries:    1,
		DialerRetries: 1,
	})
	defer client.Close()

	store, err := redisstore.New(client, "") // counters named "tollgate:rl:<bucket>"
	if err != nil {
		panic(err) // Redis answered, and refused: fix the configuration
	}
	l, err := ratelimit.New(store, ratelimit.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		panic(err)
	}
	rate, _ := ratelimit.ParseRate("100-M")
	res := l.Allow(context.Background(), ratelimit.KeyBucket("gold", "hash-of-the-key"), rate)
	fmt.Println("allowed", res.Allowed, "unavailable", errors.Is(res.Err, ratelimit.ErrUnavailable))
	fmt.Println("store errors", l.Stats().StoreErrors)
	// Output:
	// allowed true unavailable true
	// store errors 1
}
