// Command replicas is the basic example (the same chain, ../gate) on shared backends: keys and monthly
// quotas in PostgreSQL, burst counters in Redis, so that any number of processes
// behind a load balancer enforce one budget per key.
//
//	export DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	export REDIS_URL='redis://127.0.0.1:6379/0'
//	go run ./examples/replicas issue --user alice --plan pro --limit 1000   # prints a key
//	go run ./examples/replicas serve --addr 127.0.0.1:8081 &
//	go run ./examples/replicas serve --addr 127.0.0.1:8082 &
//	curl -H "x-api-key: KEY" http://127.0.0.1:8081/hello
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // PostgreSQL driver
	"github.com/redis/go-redis/v9"

	"github.com/releaseradar/tollgate/apikey"
	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/examples/gate"
	qsql "github.com/releaseradar/tollgate/quota/sqlstore"
	"github.com/releaseradar/tollgate/ratelimit"
)

const usage = `usage:
  replicas issue --user ID --plan NAME [--limit N]   print a new key for the user
  replicas serve [--addr HOST:PORT] [--rates pro=600-M,...]
environment: DATABASE_URL (postgres://…), REDIS_URL (redis://…), REDIS_PREFIX (optional)`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "issue":
		fs := flag.NewFlagSet("issue", flag.ExitOnError)
		user := fs.String("user", "", "user ID")
		plan := fs.String("plan", "pro", "plan name")
		limit := fs.Int64("limit", 1000, "monthly calls")
		_ = fs.Parse(os.Args[2:])
		err = issue(ctx, *user, *plan, *limit)
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		addr := fs.String("addr", "127.0.0.1:8081", "listen address")
		rates := fs.String("rates", "", "burst limits by plan, such as pro=600-M,team=3000-M")
		_ = fs.Parse(os.Args[2:])
		err = serve(ctx, *addr, *rates)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// openDB opens DATABASE_URL and creates the api_keys table if it is missing.
func openDB(ctx context.Context) (*sqlx.DB, *aksql.Store, error) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return nil, nil, errors.New("DATABASE_URL is not set")
	}
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		return nil, nil, err
	}
	keys := aksql.New(db)
	if err := keys.Bootstrap(ctx); err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, keys, nil
}

// issue creates a key and prints it, the one time it exists in clear.
func issue(ctx context.Context, user, plan string, limit int64) error {
	if user == "" {
		return errors.New("--user is required")
	}
	db, keys, err := openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := keys.RevokeUser(ctx, user, "reissued", time.Now()); err != nil {
		return err
	}
	raw, k, err := apikey.New(user, plan, limit, time.Now())
	if err != nil {
		return err
	}
	if err := keys.Create(ctx, &k); err != nil {
		return err
	}
	fmt.Println(raw)
	return nil
}

func serve(ctx context.Context, addr, rateList string) error {
	db, keys, err := openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	quotas := qsql.New(db, qsql.Config{})

	opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	counters, err := ratelimit.NewStore(rdb, os.Getenv("REDIS_PREFIX"))
	if err != nil {
		return err
	}
	rates, err := ratelimit.ParseRates(rateList)
	if err != nil {
		return err
	}
	hello, err := gate.Protect(keys, quotas, counters, rates, gate.Hello)
	if err != nil {
		return err
	}
	return gate.Serve(ctx, addr, hello)
}
