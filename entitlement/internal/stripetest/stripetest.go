// Package stripetest runs stripe-mock, Stripe's API served from Stripe's own
// OpenAPI description, for entitlement's tests, and records what the code under
// test sent it.
//
// The binary is found through TOLLGATE_TEST_STRIPE_MOCK (its path; install it with
// `go install github.com/stripe/stripe-mock@v0.203.0`). Without it a test skips
// with a message, or fails when CI=true, like the other backends' tests.
// stripe-mock is stateless (every object comes back as its fixture), so tests
// check the requests: Recorder is an http.RoundTripper that keeps each request's
// method, path, headers and form, and can fail requests on demand.
package stripetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/internal/testenv"
	stripe "github.com/stripe/stripe-go/v76"
)

// Mock is a running stripe-mock.
type Mock struct {
	// URL is its HTTP base URL, http://127.0.0.1:<port>.
	URL string
}

// Start runs stripe-mock on free loopback ports until the test ends
// (testenv.StripeMock). It skips the test without TOLLGATE_TEST_STRIPE_MOCK, or
// fails it when CI=true.
func Start(t testing.TB) *Mock {
	t.Helper()
	return &Mock{URL: testenv.StripeMock(t)}
}

// Backend returns a stripe-go backend on the mock whose HTTP client sends
// through rec, without stripe-go's own retries and logs.
func (m *Mock) Backend(rec *Recorder) stripe.Backend {
	return stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(m.URL),
		HTTPClient:        &http.Client{Transport: rec, Timeout: 30 * time.Second},
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
}

// Request is one request a Recorder passed on (or failed).
type Request struct {
	Method, Path string
	Header       http.Header
	Form         url.Values // the form-encoded body
	Failed       bool       // the Recorder failed it instead of sending it
}

// Fault decides, for each request, whether the Recorder fails it: nil sends it;
// a response is answered without sending; an error is a network failure.
type Fault func(r *Request) (*http.Response, error)

// Recorder is an http.RoundTripper that records every request and sends it on
// (http.DefaultTransport), unless its Fault says otherwise. It is safe for
// concurrent use.
type Recorder struct {
	mu    sync.Mutex
	reqs  []Request
	fault Fault
}

// SetFault sets (or, with nil, clears) the Fault.
func (rec *Recorder) SetFault(f Fault) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.fault = f
}

// RoundTrip implements http.RoundTripper.
func (rec *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r := Request{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone()}
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		if r.Form, err = url.ParseQuery(string(b)); err != nil {
			return nil, fmt.Errorf("stripetest: the body is not a form: %w", err)
		}
	}
	rec.mu.Lock()
	fault := rec.fault
	rec.mu.Unlock()
	if fault != nil {
		resp, err := fault(&r)
		if resp != nil || err != nil {
			r.Failed = true
			rec.add(r)
			if resp != nil {
				resp.Request = req
			}
			return resp, err
		}
	}
	rec.add(r)
	return http.DefaultTransport.RoundTrip(req)
}

func (rec *Recorder) add(r Request) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = append(rec.reqs, r)
}

// Requests returns the requests recorded so far whose path is path ("" for all).
func (rec *Recorder) Requests(path string) []Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []Request
	for _, r := range rec.reqs {
		if path == "" || r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// Reset forgets the requests recorded so far.
func (rec *Recorder) Reset() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs = nil
}

// StripeError returns a Fault answer: Stripe's error body with status and message.
func StripeError(status int, typ, message string) *http.Response {
	body := fmt.Sprintf(`{"error":{"type":%q,"message":%q}}`, typ, message)
	return &http.Response{
		StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header: http.Header{"Content-Type": {"application/json"}, "Request-Id": {"req_test"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
}

// ErrNetwork is the error a Fault returns for a network failure.
var ErrNetwork = errors.New("stripetest: connection refused")
