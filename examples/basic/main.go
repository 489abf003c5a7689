// Command basic is a short net/http service that protects its own handler with
// tollgate: API keys (apikey), a monthly quota (quota) and a burst limit
// (ratelimit), all on memory stores. The chain itself is in ../gate.
//
// It issues one demo key at start and prints it once:
//
//	go run ./examples/basic -limit 3 -rate 5-M
//	curl -H "x-api-key: KEY" http://127.0.0.1:8080/hello
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	akmem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/examples/gate"
	qmem "github.com/releaseradar/tollgate/quota/memstore"
	"github.com/releaseradar/tollgate/ratelimit"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	limit := flag.Int64("limit", 1000, "monthly calls of the demo key")
	rate := flag.String("rate", "60-M", "burst limit of the demo key's plan, ulule formatted")
	flag.Parse()
	if err := run(*addr, *limit, *rate); err != nil {
		log.Fatal(err)
	}
}

func run(addr string, limit int64, rate string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// The key store keeps only the key's hash; the raw key is shown once, below.
	keys := akmem.New()
	quotas := qmem.New(qmem.Config{})
	raw, k, err := apikey.New("demo-user", "basic", limit, time.Now())
	if err != nil {
		return err
	}
	if err := keys.Create(ctx, &k); err != nil {
		return err
	}
	quotas.Put(k.ID, k.MonthlyCallLimit, k.CycleStart)

	counters, err := ratelimit.NewStore(nil, "") // nil client: counters in memory
	if err != nil {
		return err
	}
	hello, err := gate.Protect(keys, quotas, counters, map[string]string{"basic": rate}, gate.Hello)
	if err != nil {
		return err
	}
	fmt.Printf("demo key (shown once): %s\n", raw)
	return gate.Serve(ctx, addr, hello)
}
