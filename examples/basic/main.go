// Command basic is a short net/http service that protects its own handler with
// tollgate: API keys, a monthly quota and a burst limit, on memory stores.
//
// It issues one demo key at start and prints it once:
//
//	go run ./examples/basic -limit 3 -rate 5-M
//	curl -H "x-api-key: KEY" http://127.0.0.1:8080/hello
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	akmem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	qmem "github.com/releaseradar/tollgate/quota/memstore"
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
	plans := entitlement.Catalog{"basic": {Name: "basic", MonthlyCallLimit: limit, Rate: rate}}
	gate, err := tollgate.New(tollgate.Stores{Keys: akmem.New(), Quotas: qmem.New(qmem.Config{})}, plans, tollgate.Config{})
	if err != nil {
		return err
	}
	raw, _, err := gate.Issue(context.Background(), "demo-user", "basic", 0, "", 0)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /hello", gate.Require("basic")(http.HandlerFunc(hello)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\ndemo key (shown once): %s\n", ln.Addr(), raw)
	return (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(ln)
}

// hello greets the caller that the gate authenticated.
func hello(w http.ResponseWriter, r *http.Request) {
	p, _ := apikey.FromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"hello": p.UserID, "plan": p.Plan})
}
