package openapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/openapi"
)

// The server mounts Handler at GET /openapi.json.
func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("GET /openapi.json", openapi.Handler())

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Title string `json:"title"`
		} `json:"info"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &doc)
	fmt.Println(w.Code, w.Header().Get("Content-Type"), doc.OpenAPI, doc.Info.Title)
	// Output:
	// 200 application/json 3.0.3 ReleaseRadar API
}

// A test checks each answer it gets against the document.
func ExampleValidator() {
	v, err := openapi.NewValidator()
	if err != nil {
		panic(err)
	}
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8501/events/search?limit=5", nil)
	req.Header.Set("x-api-key", "rr_live_example")
	// A 401 with its problem body but without the burst headers that every
	// keyless request to a gated route carries.
	resp := &http.Response{
		StatusCode: http.StatusUnauthorized,
		Header:     http.Header{"Content-Type": {"application/problem+json"}},
		Request:    req,
	}
	body := []byte(`{"type":"about:blank","title":"Unauthorized","status":401,"detail":"Missing x-api-key"}`)
	fmt.Println(v.Validate(req, nil, resp, body))
	// Output:
	// openapi: GET /events/search (/events/search) answered 401: response header "RateLimit-Policy" missing
}
