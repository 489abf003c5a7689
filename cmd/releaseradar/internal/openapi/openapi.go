// Package openapi is the OpenAPI 3.0 document of the ReleaseRadar API: every
// public route's parameters, bodies, problem answers, headers and security
// schemes, embedded in the binary, served by Handler at GET /openapi.json, and
// enforced on the end-to-end tests' exchanges by Validator.
//
// The document is written in openapi.yaml (this directory); Handler answers it
// as JSON. docs/QUICKSTART.md is generated from it by Quickstart (run go generate
// in this directory); a test fails when the two disagree.
package openapi

//go:generate go run ./gen -o ../../../../docs/QUICKSTART.md

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/releaseradar/tollgate/internal/problem"
)

//go:embed openapi.yaml
var source []byte

// Load parses and validates the embedded document and returns a copy of its
// own, which the caller may change.
func Load() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	loader.IncludeOrigin = true // the quickstart lists paths in the document's order
	doc, err := loader.LoadFromData(source)
	if err != nil {
		return nil, fmt.Errorf("openapi: load the document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapi: the document is not valid OpenAPI 3.0: %w", err)
	}
	return doc, nil
}

// encoded is the document as GET /openapi.json answers it, built once.
var encoded = sync.OnceValues(func() ([]byte, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: encode the document: %w", err)
	}
	return append(b, '\n'), nil
})

// JSON returns the document as JSON, the body GET /openapi.json answers.
func JSON() ([]byte, error) {
	b, err := encoded()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), b...), nil
}

var errMethod = problem.New(problem.MethodNotAllowed, "openapi: method not allowed")

// Handler serves the document as application/json to GET and HEAD, with a strong
// ETag (If-None-Match answers 304) and Cache-Control: no-cache; other methods get
// 405 with Allow. It panics if the embedded document does not load, which the
// package's tests rule out.
func Handler() http.Handler {
	body, err := encoded()
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			problem.WriteError(w, errMethod)
			return
		}
		h.Set("ETag", etag)
		h.Set("Cache-Control", "no-cache")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", length)
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	})
}
