package openapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Validator checks exchanges with the server against the document: that the
// answer's status is one the operation lists, that its headers and body match
// what the document says of that status, and that the server did not serve (2xx)
// a request the document does not allow. Requests to paths or with methods the
// document does not list are held to the answers the document names in its
// x-unmatched extension (404 No such route, 405 with Allow), CORS preflights to
// its Preflight answer, and a 431 (Go's own answer to headers over 64 KiB) to its
// HeadersTooLarge answer. A Validator is safe for concurrent use.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	// The answers outside any operation (x-unmatched).
	noRoute, noMethod, preflight, tooLarge *openapi3.ResponseRef
}

// Mismatch is an exchange the document does not allow.
type Mismatch struct {
	Method string
	Path   string // the request's path
	Route  string // the document's path template, "" when none matched
	Status int
	Reason string // what the document does not allow
}

func (m *Mismatch) Error() string {
	route := m.Route
	if route == "" {
		route = "no operation of the document"
	}
	return fmt.Sprintf("openapi: %s %s (%s) answered %d: %s", m.Method, m.Path, route, m.Status, m.Reason)
}

// NewValidator returns a Validator of the embedded document. It matches requests
// by path alone, whatever their host: the document's servers are examples.
func NewValidator() (*Validator, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: router: %w", err)
	}
	v := &Validator{doc: doc, router: router}
	unmatched, _ := doc.Extensions["x-unmatched"].(map[string]any)
	for key, dst := range map[string]**openapi3.ResponseRef{
		"path": &v.noRoute, "method": &v.noMethod, "preflight": &v.preflight, "headersTooLarge": &v.tooLarge,
	} {
		ref, _ := unmatched[key].(string)
		name, ok := strings.CutPrefix(ref, "#/components/responses/")
		if *dst = doc.Components.Responses[name]; !ok || *dst == nil {
			return nil, fmt.Errorf("openapi: x-unmatched.%s names no response of the document (%q)", key, ref)
		}
	}
	return v, nil
}

// Validate checks one exchange: req (whose body, already sent, was reqBody; its
// own Body is not read) and the answer resp (whose body, already read, was
// respBody). It returns nil when the document allows the exchange, else a
// *Mismatch naming what it does not allow.
//
// When resp.Request is another request than req (a client that followed
// redirects), the exchange checked is that last request, without a body, and
// its answer.
func (v *Validator) Validate(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	if resp.Request != nil && resp.Request != req && resp.Request.URL.String() != req.URL.String() {
		req, reqBody = resp.Request, nil
	}
	ctx := req.Context()
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	if reqBody == nil {
		r.Body = http.NoBody
	}
	r.ContentLength = int64(len(reqBody))
	mismatch := func(route, reason string) error {
		return &Mismatch{Method: req.Method, Path: req.URL.Path, Route: route, Status: resp.StatusCode, Reason: reason}
	}

	// The server routes on the decoded path, as gorilla/mux does by default, so a
	// path variable holding an encoded "/" matches no route; the router of
	// kin-openapi would match the encoded path.
	r.URL.RawPath = ""

	if resp.StatusCode == http.StatusRequestHeaderFieldsTooLarge {
		if reason := v.against(ctx, r, v.tooLarge, http.StatusRequestHeaderFieldsTooLarge, resp, respBody); reason != "" {
			return mismatch("headers over 64 KiB", reason)
		}
		return nil
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		if reason := v.against(ctx, r, v.preflight, http.StatusNoContent, resp, respBody); reason != "" {
			return mismatch("CORS preflight", reason)
		}
		return nil
	}

	route, params, err := v.router.FindRoute(r)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		if reason := v.against(ctx, r, v.noRoute, http.StatusNotFound, resp, respBody); reason != "" {
			return mismatch("", "the document lists no such path, so the answer must be its NoRoute response: "+reason)
		}
		return nil
	case errors.Is(err, routers.ErrMethodNotAllowed):
		reason := v.against(ctx, r, v.noMethod, http.StatusMethodNotAllowed, resp, respBody)
		if reason == "" {
			reason = v.checkAllow(r, resp.Header.Get("Allow"))
		}
		if reason != "" {
			return mismatch("", "the document lists no "+r.Method+" operation on this path, so the answer must be its MethodNotAllowed response: "+reason)
		}
		return nil
	case err != nil:
		return mismatch("", "no route: "+err.Error())
	}

	opts := &openapi3filter.Options{
		AuthenticationFunc:    authenticate,
		IncludeResponseStatus: true,
	}
	opts.WithCustomSchemaErrorFunc(schemaReason)
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(ctx, in)

	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                opts,
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return mismatch(route.Path, reason(err))
	}
	// ValidateResponse skips HEAD answers altogether; their status must still be
	// one the operation lists.
	if r.Method == http.MethodHead && route.Operation.Responses.Status(resp.StatusCode) == nil {
		return mismatch(route.Path, "status is not supported")
	}
	if reqErr != nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return mismatch(route.Path, "the server served a request the document does not allow: "+reason(reqErr))
	}
	return nil
}

// against validates the answer to r against response ref, the only one allowed,
// with status want; it returns "" or what does not match.
func (v *Validator) against(ctx context.Context, r *http.Request, ref *openapi3.ResponseRef, want int, resp *http.Response, body []byte) string {
	if resp.StatusCode != want {
		return fmt.Sprintf("status %d, want %d", resp.StatusCode, want)
	}
	op := openapi3.NewOperation()
	op.Responses = openapi3.NewResponses(openapi3.WithStatus(want, ref))
	route := &routers.Route{Spec: v.doc, Path: r.URL.Path, Method: r.Method, Operation: op}
	opts := &openapi3filter.Options{IncludeResponseStatus: true}
	opts.WithCustomSchemaErrorFunc(schemaReason)
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r, Route: route, Options: opts},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                opts,
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return reason(err)
	}
	return ""
}

// methods lists the methods whose operations the document gives r's path.
func (v *Validator) methods(r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, _, err := v.router.FindRoute(probe); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// checkAllow reports a 405's Allow header that leaves out a method the document
// gives the path.
func (v *Validator) checkAllow(r *http.Request, allow string) string {
	var listed []string
	for m := range strings.SplitSeq(allow, ",") {
		listed = append(listed, strings.ToUpper(strings.TrimSpace(m)))
	}
	for _, m := range v.methods(r) {
		if !slices.Contains(listed, m) {
			return fmt.Sprintf("Allow %q leaves out %s, which the document lists on this path", allow, m)
		}
	}
	return ""
}

// authenticate is the Validator's check of security requirements: that the
// request carries the credential a scheme names. Whether the credential is good
// is the server's to say (401 or 403), and the document lists those answers.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	s := in.SecurityScheme
	switch {
	case s.Type == "apiKey" && s.In == "header":
		if r.Header.Get(s.Name) != "" {
			return nil
		}
	case s.Type == "apiKey" && s.In == "cookie":
		if c, err := r.Cookie(s.Name); err == nil && c.Value != "" {
			return nil
		}
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
		if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "bearer") && strings.TrimSpace(tok) != "" {
			return nil
		}
	default:
		return fmt.Errorf("security scheme %q of type %s is not checked by the Validator", in.SecuritySchemeName, s.Type)
	}
	return fmt.Errorf("no %s credential", in.SecuritySchemeName)
}

// schemaReason words a schema error as its reason and where in the value it is,
// without the value (which may hold a key) or the schema. The error of an allOf,
// anyOf or oneOf is worded as the first error of its parts.
func schemaReason(err *openapi3.SchemaError) string {
	path := err.JSONPointer()
	for err.Origin != nil {
		var inner *openapi3.SchemaError
		if !errors.As(err.Origin, &inner) || inner == err {
			break
		}
		path = append(path, inner.JSONPointer()...)
		err = inner
	}
	at := "/" + strings.Join(path, "/")
	reason := err.Reason
	if reason == "" {
		reason = "fails " + strconv.Quote(err.SchemaField)
	}
	if at == "/" {
		return reason
	}
	return reason + " (at " + at + ")"
}

// reason is the sentence of a validation error.
func reason(err error) string {
	var re *openapi3filter.ResponseError
	if errors.As(err, &re) {
		if re.Err == nil {
			return re.Reason
		}
		return re.Reason + ": " + re.Err.Error()
	}
	return err.Error()
}
