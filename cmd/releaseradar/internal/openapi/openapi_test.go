package openapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// The document loads, is valid OpenAPI 3.0 (examples included), and keeps the
// rules every route of the server follows, so that a route added without them
// fails here rather than in a client.
func TestDocumentRules(t *testing.T) {
	t.Parallel()
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi %q, want 3.0.x", doc.OpenAPI)
	}
	for _, name := range []string{"apiKey", "bearerAuth", "sessionCookie"} {
		if doc.Components.SecuritySchemes[name] == nil {
			t.Errorf("no security scheme %q", name)
		}
	}
	ids := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" || op.Summary == "" || len(op.Tags) != 1 {
				t.Errorf("%s: operationId %q, summary %q, tags %v: want all three, one tag", name, op.OperationID, op.Summary, op.Tags)
			}
			if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s and %s share operationId %q", name, other, op.OperationID)
			}
			ids[op.OperationID] = name
			if op.Security == nil {
				t.Errorf("%s: no security (write security: [] for a public route)", name)
				continue
			}
			schemes := map[string]bool{}
			for _, req := range *op.Security {
				for s := range req {
					schemes[s] = true
				}
			}
			codes := op.Responses.Map()
			need := func(why string, statuses ...string) {
				t.Helper()
				for _, s := range statuses {
					if codes[s] == nil {
						t.Errorf("%s (%s): no %s answer", name, why, s)
					}
				}
			}
			switch {
			case schemes["apiKey"]:
				need("gated", "200", "400", "401", "402", "403", "429", "503")
				if method != http.MethodHead {
					for _, h := range []string{"X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset", "X-RateLimit-Limit", "RateLimit-Policy", "Cache-Control"} {
						if hr := codes["200"].Value.Headers[h]; hr == nil || !hr.Value.Required {
							t.Errorf("%s: its 200 does not require %s", name, h)
						}
					}
				}
			case schemes["bearerAuth"]:
				if !schemes["sessionCookie"] {
					t.Errorf("%s: a dashboard route takes the bearer token or the rr_session cookie", name)
				}
				need("dashboard", "200", "401", "503")
				if method == http.MethodPost {
					need("cookie-authenticated POST", "403")
				}
			}
			for code, ref := range codes {
				r := ref.Value
				if code < "400" || method == http.MethodHead {
					continue
				}
				if len(r.Content) != 1 || r.Content["application/problem+json"] == nil {
					t.Errorf("%s %s: errors are application/problem+json, and only that", name, code)
				}
				if code == "429" || code == "503" {
					if h := r.Headers["Retry-After"]; h == nil || !h.Value.Required {
						t.Errorf("%s %s: does not require Retry-After", name, code)
					}
				}
				if code >= "500" && code != "503" {
					t.Errorf("%s: %s listed; a failed dependency answers 503, never 500", name, code)
				}
			}
		}
	}
	for _, want := range []string{
		"GET /events/public", "GET /events/search", "GET /events/{id}", "GET /impact/{event_id}",
		"GET /companies", "GET /companies/{ticker}", "POST /portfolio/impact",
		"GET /keys", "POST /keys/rotate", "POST /keys/reveal", "GET /keys/usage",
		"POST /billing/checkout", "POST /billing/portal", "POST /billing/webhook",
		"GET /account/api-keys", "GET /account/login", "POST /account/session", "POST /account/logout",
		"GET /openapi.json",
	} {
		method, path, _ := strings.Cut(want, " ")
		if item := doc.Paths.Value(path); item == nil || item.GetOperation(method) == nil {
			t.Errorf("the document lacks %s", want)
		}
	}
	if h := doc.Components.Responses["MethodNotAllowed"].Value.Headers["Allow"]; h == nil || !h.Value.Required {
		t.Error("a 405 must require Allow")
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	h := Handler()
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" || !bytes.Equal(w.Body.Bytes(), want) {
		t.Fatalf("GET: %d %q, %d bytes", w.Code, w.Header().Get("Content-Type"), w.Body.Len())
	}
	// What is served loads again into the same document.
	served, err := openapi3.NewLoader().LoadFromData(w.Body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := served.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
	doc, _ := Load()
	if served.Paths.Len() != doc.Paths.Len() || len(served.Components.Schemas) != len(doc.Components.Schemas) {
		t.Errorf("served %d paths, %d schemas; the source has %d, %d", served.Paths.Len(), len(served.Components.Schemas), doc.Paths.Len(), len(doc.Components.Schemas))
	}
	if served.Extensions["x-unmatched"] == nil {
		t.Error("the served document lost x-unmatched")
	}

	etag := w.Header().Get("ETag")
	r := httptest.NewRequest(http.MethodGet, "/openapi.json", nil)
	r.Header.Set("If-None-Match", etag)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
		t.Errorf("If-None-Match: %d, %d bytes", w.Code, w.Body.Len())
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodHead, "/openapi.json", nil))
	if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD: %d, %d bytes", w.Code, w.Body.Len())
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/openapi.json", nil))
	if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("POST: %d Allow %q %q", w.Code, w.Header().Get("Allow"), w.Header().Get("Content-Type"))
	}
}

// The handler's own answers are what the document says of GET /openapi.json.
func TestHandlerKeepsTheDocument(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		req := httptest.NewRequest(method, "http://127.0.0.1:8501/openapi.json", nil)
		w := httptest.NewRecorder()
		Handler().ServeHTTP(w, req)
		if err := v.Validate(req, nil, w.Result(), w.Body.Bytes()); err != nil {
			t.Errorf("%s: %v", method, err)
		}
	}
}

// TestQuickstartUpToDate fails when docs/QUICKSTART.md is not what the document
// makes of it.
func TestQuickstartUpToDate(t *testing.T) {
	t.Parallel()
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want, err := Quickstart(doc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", "..", "..", "..", filepath.FromSlash(QuickstartPath)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with openapi.yaml; run go generate ./cmd/releaseradar/internal/openapi", QuickstartPath)
	}
	// One curl command for every operation but HEAD ones.
	n := 0
	for _, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if method != http.MethodHead {
				n++
			}
		}
	}
	if c := bytes.Count(got, []byte("\ncurl ")); c != n {
		t.Errorf("%d curl commands for %d operations", c, n)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"a":"b"}`:             `'{"a":"b"}'`,
		`it's`:                  `'it'\''s'`,
		`{"token":"$RR_TOKEN"}`: `"{\"token\":\"$RR_TOKEN\"}"`,
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%s) = %s, want %s", in, got, want)
		}
	}
}
