package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/internal/problem"
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
}

func (e *errorWriter) write(w http.ResponseWriter, r *http.Request, err error) {
	if _, _, dependency := tollgate.ProblemFor(err); dependency {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client went away; nobody reads the answer, and nothing failed.
			err = errCanceled
		} else {
			e.log.ErrorContext(r.Context(), "request failed: a dependency is unavailable",
				"method", r.Method, "path", logPath(r.URL.Path), "err", err)
		}
	}
	tollgate.WriteError(w, r, err)
}
