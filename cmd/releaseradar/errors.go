package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/ratelimit"
)

// Errors of the server's own routing. Their answers, like every other error's,
// are rows of tollgate's one error table.
var (
	errNoRoute      = problem.New(problem.NoRoute, "releaseradar: no such route")
	errMethod       = problem.New(problem.MethodNotAllowed, "releaseradar: method not allowed")
	errBodyTooLarge = problem.New(problem.BodyTooLarge, "releaseradar: request body too large")
	// errNoSession: a dashboard request carried neither a bearer token nor the
	// session cookie.
	errNoSession = problem.New(problem.NoSession, "releaseradar: missing dashboard token")
	// errCanceled answers a request whose client went away while it was served.
	errCanceled = problem.New(problem.Canceled, "releaseradar: request canceled")
	// errInternal answers a request whose handler panicked or could not encode
	// its answer: a bug, the one kind of 500.
	errInternal = problem.New(problem.Internal, "releaseradar: internal error")
)

// errorWriter answers every refused or failed request of the server; it is the
// OnError of the gate, the market handlers and the dashboard. The answer comes from
// tollgate's error table (tollgate.WriteError); a failed dependency is logged before
// it is answered 503.
type errorWriter struct {
	log *slog.Logger
	// failed counts a failed dependency by name; nil counts nothing.
	failed func(dependency string)
}

func (e *errorWriter) write(w http.ResponseWriter, r *http.Request, err error) {
	if _, _, dependency := tollgate.ProblemFor(err); dependency {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client went away; nobody reads the answer, and nothing failed.
			err = errCanceled
		} else {
			dep := dependencyOf(err)
			e.log.ErrorContext(r.Context(), "request failed: a dependency is unavailable",
				"dependency", dep, "method", r.Method, "path", logPath(r.URL.Path), "err", err)
			if e.failed != nil {
				e.failed(dep)
			}
		}
	}
	tollgate.WriteError(w, r, err)
}

// Dependencies, as the logs, /readyz and releaseradar_dependency_errors_total name
// them.
const (
	depDatabase = "database"
	depRedis    = "redis"
	depStripe   = "stripe"
)

// dependencyOf names the dependency a failed request waited on: the burst
// limiter's store is Redis (it fails a request only when it fails closed);
// everything else the server stores is in the database.
func dependencyOf(err error) string {
	switch {
	case errors.Is(err, ratelimit.ErrUnavailable):
		return depRedis
	case errors.Is(err, entitlement.ErrStripe):
		return depStripe
	}
	return depDatabase
}
