package main

import (
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/mux"
	"github.com/rs/cors"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/openapi"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/ratelimit"
)

// handler builds the public API: routes, the gate, CORS, access log and metrics.
func (s *server) handler() http.Handler {
	api := s.market
	dash := s.app.gate.Dashboard(tollgate.DashboardConfig{
		User:    s.dashboardUser,
		Billing: s.app.ent,
		Ledger:  s.app.ents,
		Now:     s.app.clock,
		OnError: s.errs.write,
		// A cookie-authenticated POST must come from the server's own origin.
		Protect: web.RequireOrigin(web.Config{OnError: s.errs.write}),
	})

	r := mux.NewRouter()
	r.NotFoundHandler = failWith(s.errs.write, errNoRoute)
	r.MethodNotAllowedHandler = methodNotAllowed(r, s.errs.write)

	// route registers an API route: behind the gate, so its keyless requests
	// spend the anonymous plan's budget (the access log says so).
	route := func(path string, h http.Handler, methods ...string) {
		s.obs.apiRoutes[path] = true
		r.Handle(path, h).Methods(methods...)
	}
	public := s.app.gate.Public()
	pro := s.app.gate.Require(planPro)
	team := s.app.gate.Require(planTeam)
	route("/events/public", public(http.HandlerFunc(api.PublicFeed)), http.MethodGet, http.MethodHead)
	route("/events/search", pro(http.HandlerFunc(api.Search)), http.MethodGet)
	route("/events/{id}", pro(http.HandlerFunc(api.Event)), http.MethodGet)
	route("/impact/{event_id}", pro(http.HandlerFunc(api.Impact)), http.MethodGet)
	route("/companies", pro(http.HandlerFunc(api.Companies)), http.MethodGet)
	route("/companies/{ticker}", pro(http.HandlerFunc(api.Company)), http.MethodGet)
	route("/portfolio/impact", limitBody(market.MaxBodyBytes, s.errs.write, team(http.HandlerFunc(api.PortfolioImpact))), http.MethodPost)

	r.Handle("/keys", dash.Keys()).Methods(http.MethodGet)
	r.Handle("/keys/rotate", limitBody(tollgate.MaxDashboardBody, s.errs.write, dash.Rotate())).Methods(http.MethodPost)
	r.Handle("/keys/reveal", dash.Reveal()).Methods(http.MethodPost)
	r.Handle("/keys/usage", dash.Usage()).Methods(http.MethodGet)
	r.Handle("/billing/checkout", limitBody(tollgate.MaxDashboardBody, s.errs.write, dash.Checkout())).Methods(http.MethodPost)
	r.Handle("/billing/portal", dash.Portal()).Methods(http.MethodPost)

	r.Handle("/billing/webhook", s.app.ent).Methods(http.MethodPost)
	r.Handle("/openapi.json", openapi.Handler()).Methods(http.MethodGet, http.MethodHead)
	r.PathPrefix("/account/").Handler(web.Handler(s.app.signer.Verify, web.Config{
		OnError:    s.errs.write,
		TrustProxy: s.trustProxy(),
		OnBadToken: s.app.gate.SpendAddress,
		Login:      s.app.signInLink,
	}))
	r.Handle("/", http.RedirectHandler(web.PagePath, http.StatusFound)).Methods(http.MethodGet, http.MethodHead)

	// Every route names itself, by its template, to the access log and the
	// metrics: wrapped once here rather than by mux middleware on every request.
	_ = r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if tmpl, err := route.GetPathTemplate(); err == nil && route.GetHandler() != nil {
			route.Handler(named(tmpl, route.GetHandler()))
		}
		return nil
	})

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
		ExposedHeaders:   tollgate.ExposedHeaders,
		MaxAge:           600,
	})
	return s.obs.Handle(c.Handler(r), s.app.cfg.RequestTimeout)
}

// dashboardUser is the dashboard's sign-in: the user of the session token the
// request carries (Authorization: Bearer, or the rr_session cookie the account
// page sets). A missing token is errNoSession, a bad one session.ErrInvalid: both
// 401, after the request spent its address's burst budget (tollgate.Dashboard
// does), so that guessing tokens gets 429 as guessing API keys does.
func (s *server) dashboardUser(r *http.Request) (string, error) {
	token, _ := web.Token(r)
	if token == "" {
		return "", errNoSession
	}
	return s.app.signer.Verify(token)
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

// methodNotAllowed answers a request whose path a route of r serves, but not with
// its method: 405 with Allow listing the methods the routes matching the path
// serve.
func methodNotAllowed(r *mux.Router, fail func(http.ResponseWriter, *http.Request, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if allow := allowedMethods(r, req); allow != "" {
			w.Header().Set("Allow", allow)
		}
		fail(w, req, errMethod)
	})
}

// allowedMethods returns, comma-separated and sorted, the methods with which a
// route of r would serve req's path.
func allowedMethods(r *mux.Router, req *http.Request) string {
	var allowed []string
	_ = r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		methods, err := route.GetMethods()
		if err != nil { // a route for every method: it would have matched
			return nil
		}
		for _, m := range methods {
			try := req.Clone(req.Context())
			try.Method = m
			if route.Match(try, &mux.RouteMatch{}) && !slices.Contains(allowed, m) {
				allowed = append(allowed, m)
			}
		}
		return nil
	})
	slices.Sort(allowed)
	return strings.Join(allowed, ", ")
}

// trustProxy reports whether a request came from a proxy of RR_TRUSTED_PROXIES,
// whose X-Forwarded-Proto the account page believes for the session cookie's
// Secure flag, as the gate believes its X-Forwarded-For.
func (s *server) trustProxy() func(*http.Request) bool {
	proxies, _ := ratelimit.CheckProxies(s.app.cfg.TrustedProxies) // validated by the gate
	return func(r *http.Request) bool {
		peer := ratelimit.ClientAddr(r, nil) // the peer itself: nothing forwarded is read
		for _, p := range proxies {
			if p.Contains(peer) {
				return true
			}
		}
		return false
	}
}

// failWith answers every request with err.
func failWith(fail func(http.ResponseWriter, *http.Request, error), err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fail(w, r, err) })
}
