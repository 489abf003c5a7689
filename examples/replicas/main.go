// Command replicas is the basic example on shared backends: keys and monthly
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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // PostgreSQL driver
	"github.com/redis/go-redis/v9"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/entitlement"
	qsql "github.com/releaseradar/tollgate/quota/sqlstore"
	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/redisstore"
)

const usage = `usage:
  replicas issue --user ID --plan NAME [--limit N]   print a new key for the user
  replicas serve [--addr HOST:PORT] [--rates pro=600-M,...]
environment: DATABASE_URL (postgres://…), REDIS_URL (redis://…), REDIS_PREFIX (optional)`

// plans are the example's plans: anonymous callers are "free".
var plans = entitlement.Catalog{
	"free": {Name: "free", Rank: 0, Rate: "60-M"},
	"pro":  {Name: "pro", Rank: 1, MonthlyCallLimit: 1000, Rate: "600-M"},
	"team": {Name: "team", Rank: 2, MonthlyCallLimit: 10_000, Rate: "3000-M"},
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	user := fs.String("user", "", "user ID (issue)")
	plan := fs.String("plan", "pro", "plan name (issue)")
	limit := fs.Int64("limit", 0, "monthly calls (issue; 0: the plan's)")
	addr := fs.String("addr", "127.0.0.1:8081", "listen address (serve)")
	rates := fs.String("rates", "", "burst limits by plan, such as pro=600-M,team=3000-M (serve)")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "issue":
		err = issue(*user, *plan, *limit)
	case "serve":
		err = serve(*addr, *rates)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// open builds the gate on DATABASE_URL and, if counters is set, Redis, and creates
// the schema if it is missing.
func open(ctx context.Context, counters ratelimit.Store) (*tollgate.Gate, *sqlx.DB, error) {
	db, err := sqlx.Open("postgres", os.Getenv("DATABASE_URL"))
	if err != nil {
		return nil, nil, err
	}
	stores := tollgate.Stores{Keys: aksql.New(db, aksql.Config{}), Quotas: qsql.New(db, qsql.Config{}), Counters: counters}
	gate, err := tollgate.New(stores, plans, tollgate.Config{})
	if err == nil {
		err = gate.Bootstrap(ctx)
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return gate, db, nil
}

// issue creates a key and prints it, the one time it exists in clear.
func issue(user, plan string, limit int64) error {
	if user == "" {
		return errors.New("--user is required")
	}
	ctx := context.Background()
	gate, db, err := open(ctx, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	raw, _, err := gate.Issue(ctx, user, plan, limit, "reissued", 0)
	if err != nil {
		return err
	}
	fmt.Println(raw)
	return nil
}

func serve(addr, rateList string) error {
	overrides, err := ratelimit.ParseRates(rateList)
	if err != nil {
		return err
	}
	for name, rate := range overrides {
		p := plans[name]
		p.Rate = rate.String()
		plans[name] = p
	}
	opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	counters, err := redisstore.New(rdb, os.Getenv("REDIS_PREFIX"))
	if err != nil {
		return err
	}
	gate, db, err := open(context.Background(), counters)
	if err != nil {
		return err
	}
	defer db.Close()

	mux := http.NewServeMux()
	mux.Handle("GET /hello", gate.Require("pro")(http.HandlerFunc(hello)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	return (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(ln)
}

// hello greets the caller and names the replica that served it.
func hello(w http.ResponseWriter, r *http.Request) {
	p, _ := apikey.FromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"hello": p.UserID, "plan": p.Plan, "pid": os.Getpid()})
}
