package main

import (
	"errors"
	"net/http"

	"github.com/gorilla/mux"
	"github.com/rs/cors"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/quota"
	"github.com/releaseradar/tollgate/ratelimit"
)

// Errors of the server's own routing.
var (
	// errStoreUnavailable marks a failure of the quota store: the request is
	// refused (503) rather than served unmetered.
	errStoreUnavailable = errors.New("releaseradar: quota store unavailable")
	errNoRoute          = errors.New("releaseradar: no such route")
	errMethod           = errors.New("releaseradar: method not allowed")
	errBodyTooLarge     = errors.New("releaseradar: request body too large")
)

// gate is what a gated route passes through, in CONTRACT.md's order.
type gate struct {
	auth    *apikey.Authenticator
	limiter *ratelimit.Limiter
	quota   func(http.Handler) http.Handler
	rank    func(plan string) int
}

// route returns h behind the gate for plan: key present (401), known and active
// (403), plan rank (402), burst limit (429, no quota spent), monthly quota (429).
func (g gate) route(plan string, h http.Handler) http.Handler {
	return g.auth.Require(g.rank(plan))(notePrincipal(g.limiter.Handle(g.quota(h))))
}

// handler builds the public API: routes, the gate, CORS, access log and metrics.
func (s *server) handler() http.Handler {
	api := s.market
	g := gate{auth: s.auth, limiter: s.limiter, quota: s.quotaMW, rank: s.app.catalog.Rank}
	dash := &dashboard{
		keys:   s.app.keys,
		reveal: s.app.ent,
		verify: s.app.signer.Verify,
		fail:   s.errs.write,
		now:    s.app.now,
		cycle:  cycle,
	}

	r := mux.NewRouter()
	r.Use(noteRoute)
	r.NotFoundHandler = failWith(s.errs.write, errNoRoute)
	r.MethodNotAllowedHandler = failWith(s.errs.write, errMethod)

	r.Handle("/events/public", anonymous(entitlement.Public, s.limiter.Handle(http.HandlerFunc(api.PublicFeed)))).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/events/search", g.route(entitlement.Pro, http.HandlerFunc(api.Search))).Methods(http.MethodGet)
	r.Handle("/events/{id}", g.route(entitlement.Pro, http.HandlerFunc(api.Event))).Methods(http.MethodGet)
	r.Handle("/impact/{event_id}", g.route(entitlement.Pro, http.HandlerFunc(api.Impact))).Methods(http.MethodGet)
	r.Handle("/companies", g.route(entitlement.Pro, http.HandlerFunc(api.Companies))).Methods(http.MethodGet)
	r.Handle("/companies/{ticker}", g.route(entitlement.Pro, http.HandlerFunc(api.Company))).Methods(http.MethodGet)
	r.Handle("/portfolio/impact", limitBody(market.MaxBodyBytes, s.errs.write, g.route(entitlement.Team, http.HandlerFunc(api.PortfolioImpact)))).Methods(http.MethodPost)

	r.Handle("/keys", dash.handler(dash.list)).Methods(http.MethodGet)
	r.Handle("/keys/rotate", dash.handler(dash.rotate)).Methods(http.MethodPost)
	r.Handle("/keys/reveal", dash.handler(dash.revealKey)).Methods(http.MethodPost)

	r.Handle("/billing/webhook", s.app.ent).Methods(http.MethodPost)
	r.PathPrefix("/account/").Handler(web.Handler(s.app.signer.Verify, web.Config{OnError: s.errs.write}))
	r.Handle("/", http.RedirectHandler(web.PagePath, http.StatusFound)).Methods(http.MethodGet, http.MethodHead)

	allowed := make(map[string]bool, len(s.app.cfg.CORSOrigins))
	for _, o := range s.app.cfg.CORSOrigins {
		allowed[o] = true
	}
	c := cors.New(cors.Options{
		// A function, not AllowedOrigins: rs/cors reads an empty list as "*", and
		// an empty RR_CORS_ORIGINS must allow no origin.
		AllowOriginFunc:  func(origin string) bool { return allowed[origin] },
		AllowedMethods:   []string{http.MethodGet, http.MethodPost, http.MethodOptions},
		AllowedHeaders:   []string{"Content-Type", "X-Api-Key"},
		AllowCredentials: false,
		ExposedHeaders: []string{
			quota.HeaderLimit, quota.HeaderRemaining, quota.HeaderReset,
			"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
			"RateLimit", "RateLimit-Policy", "Retry-After",
		},
		MaxAge: 600,
	})
	return s.obs.Handle(c.Handler(r))
}

// anonymous records the plan of an unauthenticated route for the access log.
func anonymous(plan string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setPlan(r, plan)
		next.ServeHTTP(w, r)
	})
}

// limitBody caps the request body at n bytes; a body announced larger is refused
// before the gate, so it spends no quota.
func limitBody(n int64, fail func(http.ResponseWriter, *http.Request, error), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			fail(w, r, errBodyTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}

// failWith answers every request with err.
func failWith(fail func(http.ResponseWriter, *http.Request, error), err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fail(w, r, err) })
}
