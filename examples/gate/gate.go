// Package gate wires tollgate's three middlewares around a handler, the chain that
// both examples run: authenticate the key, apply the plan's burst limit, count the
// monthly quota, and only then call the handler.
package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/ulule/limiter/v3"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/ratelimit"
)

// Protect returns h behind the chain: keys looked up in keys, monthly quotas
// counted in quotas, burst counters kept in counters (ratelimit.NewStore) at the
// plans' rates (ulule formatted, such as {"pro": "600-M"}).
func Protect(keys apikey.Store, quotas quota.Store, counters limiter.Store, rates map[string]string, h http.Handler) (http.Handler, error) {
	// The rate is chosen per request from the plan that authentication put in the
	// request's context.
	limiter, err := ratelimit.New(counters, ratelimit.Config{
		Rates: rates,
		Identify: func(r *http.Request) (string, string, bool) {
			p, ok := apikey.FromContext(r.Context())
			return p.Plan, p.Hash, ok
		},
	})
	if err != nil {
		return nil, err
	}
	auth := apikey.NewAuthenticator(keys, apikey.Config{
		// A missing or unknown key counts against the caller's address, so a flood
		// of random keys is limited like any anonymous traffic.
		OnError: func(w http.ResponseWriter, r *http.Request, err error) {
			if (errors.Is(err, apikey.ErrMissing) || errors.Is(err, apikey.ErrInvalid)) && !limiter.AllowAnonymous(w, r) {
				return
			}
			apikey.WriteError(w, r, err)
		},
	})
	// The quota counts after the burst limit, so a refused burst spends nothing.
	meter := quota.Middleware(quotas, func(r *http.Request) (string, bool) {
		p, ok := apikey.FromContext(r.Context())
		return p.KeyID, ok
	}, quota.Config{})
	return auth.Require(0)(limiter.Handle(meter(h))), nil
}

// Hello answers with the caller's user, plan and the serving process's ID.
var Hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, _ := apikey.FromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"hello": p.UserID, "plan": p.Plan, "pid": os.Getpid()})
})

// Serve serves hello at GET /hello on addr, prints "listening on http://ADDR" to
// stdout, and runs until ctx ends, then lets in-flight requests finish.
func Serve(ctx context.Context, addr string, hello http.Handler) error {
	mux := http.NewServeMux()
	mux.Handle("GET /hello", hello)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
