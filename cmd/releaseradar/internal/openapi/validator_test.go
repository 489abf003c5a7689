package openapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const (
	event = `{"id":1,"ticker":"AAPL","type":"earnings","title":"t","summary":"s","occurred_at":"2026-05-01T14:30:00Z","surprise":1.5,"surprise_kind":"eps_pct","source":"SEC EDGAR"}`

	problem401 = `{"type":"about:blank","title":"Unauthorized","status":401,"detail":"Missing x-api-key"}`
	problem404 = `{"type":"about:blank","title":"Not Found","status":404,"detail":"No such route"}`
	problem405 = `{"type":"about:blank","title":"Method Not Allowed","status":405,"detail":"Method not allowed on this route"}`
	problem400 = `{"type":"about:blank","title":"Bad Request","status":400,"detail":"Invalid parameter \"limit\": must be an integer from 1 to 100"}`
)

// gated is the header of a gated success.
func gated() http.Header {
	return http.Header{
		"Content-Type":          {"application/json"},
		"Cache-Control":         {"no-store"},
		"X-Quota-Limit":         {"10000"},
		"X-Quota-Remaining":     {"9999"},
		"X-Quota-Reset":         {"1790000000"},
		"X-Ratelimit-Limit":     {"600"},
		"X-Ratelimit-Remaining": {"599"},
		"X-Ratelimit-Reset":     {"1780000060"},
		"Ratelimit-Policy":      {`"pro";q=600;w=60`},
		"Ratelimit":             {`"pro";r=599;t=42`},
	}
}

func problemHeader(extra ...string) http.Header {
	h := http.Header{"Content-Type": {"application/problem+json"}}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

func with(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			h.Del(kv[i])
		} else {
			h.Set(kv[i], kv[i+1])
		}
	}
	return h
}

type exchange struct {
	name       string
	method     string
	target     string
	reqHeader  []string
	reqBody    string
	status     int
	header     http.Header
	body       string
	wantReason string // "" when the document allows the exchange
}

func TestValidator(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	key := []string{"x-api-key", "rr_live_abc"}
	page := `{"events":[` + event + `],"next_cursor":null}`
	tests := []exchange{
		{name: "gated success", method: "GET", target: "/events/search?q=earnings&limit=5", reqHeader: key,
			status: 200, header: gated(), body: page},
		{name: "any host", method: "GET", target: "http://203.0.113.7:1234/events/search", reqHeader: key,
			status: 200, header: gated(), body: page},
		{name: "quota header missing", method: "GET", target: "/events/search", reqHeader: key,
			status: 200, header: with(gated(), "X-Quota-Limit", ""), body: page, wantReason: `response header "X-Quota-Limit" missing`},
		{name: "quota header not a number", method: "GET", target: "/events/search", reqHeader: key,
			status: 200, header: with(gated(), "X-Quota-Remaining", "lots"), body: page, wantReason: `X-Quota-Remaining`},
		{name: "malformed RateLimit-Policy", method: "GET", target: "/events/search", reqHeader: key,
			status: 200, header: with(gated(), "RateLimit-Policy", "pro 600/min"), body: page, wantReason: `RateLimit-Policy`},
		{name: "two policies", method: "GET", target: "/events/search", reqHeader: key,
			status: 200, header: with(gated(), "RateLimit-Policy", `"pro";q=600;w=60, "pro-month";q=10000;w=2592000`,
				"RateLimit", `"pro";r=599;t=42, "pro-month";r=9999;t=2000000`), body: page},
		{name: "cacheable gated answer", method: "GET", target: "/events/search", reqHeader: key,
			status: 200, header: with(gated(), "Cache-Control", "public, max-age=60"), body: page, wantReason: `Cache-Control`},
		{name: "internal field leaks", method: "GET", target: "/events/1", reqHeader: key,
			status: 200, header: gated(), body: strings.Replace(event, `"source"`, `"analyst_notes":"x","source"`, 1),
			wantReason: `analyst_notes`},
		{name: "null list", method: "GET", target: "/events/search", reqHeader: key,
			status: 200, header: gated(), body: `{"events":null,"next_cursor":null}`, wantReason: `/events`},
		{name: "lower-case ticker in an answer", method: "GET", target: "/events/1", reqHeader: key,
			status: 200, header: gated(), body: strings.Replace(event, `"AAPL"`, `"aapl"`, 1), wantReason: `/ticker`},
		{name: "problem as JSON", method: "GET", target: "/events/search", status: 401,
			header: with(problemHeader("X-RateLimit-Limit", "30", "RateLimit-Policy", `"public";q=30;w=60`), "Content-Type", "application/json"),
			body:   problem401, wantReason: `application/json`},
		{name: "missing key", method: "GET", target: "/events/search", status: 401,
			header: problemHeader("X-RateLimit-Limit", "30", "RateLimit-Policy", `"public";q=30;w=60`), body: problem401},
		{name: "missing key, other detail", method: "GET", target: "/events/search", status: 401,
			header: problemHeader("X-RateLimit-Limit", "30", "RateLimit-Policy", `"public";q=30;w=60`),
			body:   strings.Replace(problem401, "Missing x-api-key", "no key", 1), wantReason: `/detail`},
		{name: "stack trace in a problem", method: "GET", target: "/events/search", status: 401,
			header: problemHeader("X-RateLimit-Limit", "30", "RateLimit-Policy", `"public";q=30;w=60`),
			body:   strings.Replace(problem401, `}`, `,"stack":"main.go:12"}`, 1), wantReason: `stack`},
		{name: "undocumented status", method: "GET", target: "/events/search", reqHeader: key,
			status: 500, header: problemHeader(), body: `{"title":"Internal Server Error","status":500,"detail":"x"}`,
			wantReason: "status is not supported"},
		{name: "429 without Retry-After", method: "GET", target: "/events/public", status: 429,
			header:     problemHeader("X-RateLimit-Limit", "30", "RateLimit-Policy", `"public";q=30;w=60`),
			body:       `{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Rate limit exceeded"}`,
			wantReason: `"Retry-After" missing`},
		{name: "bad parameter refused", method: "GET", target: "/events/search?limit=0", reqHeader: key,
			status: 400, header: with(gated(), "Content-Type", "application/problem+json"), body: problem400},
		{name: "bad parameter served", method: "GET", target: "/events/search?limit=0", reqHeader: key,
			status: 200, header: gated(), body: page, wantReason: `served a request the document does not allow: parameter "limit"`},
		{name: "served without a key", method: "GET", target: "/events/search",
			status: 200, header: gated(), body: page, wantReason: `security requirements failed`},
		{name: "unknown path", method: "GET", target: "/nowhere", status: 404, header: problemHeader(), body: problem404},
		{name: "unknown path served", method: "GET", target: "/nowhere", status: 200,
			header: http.Header{"Content-Type": {"text/plain"}}, body: "hi", wantReason: "status 200, want 404"},
		{name: "unknown path in plain text", method: "GET", target: "/account/nowhere", status: 404,
			header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, body: "404 page not found", wantReason: "Content-Type"},
		{name: "encoded slash in a path variable", method: "GET", target: "/companies/A%2FB", status: 404,
			header: problemHeader(), body: problem404},
		{name: "wrong method", method: "DELETE", target: "/events/search", status: 405,
			header: problemHeader("Allow", "GET"), body: problem405},
		{name: "wrong method without Allow", method: "DELETE", target: "/events/search", status: 405,
			header: problemHeader(), body: problem405, wantReason: `"Allow" missing`},
		{name: "Allow leaves out a method", method: "POST", target: "/events/public", status: 405,
			header: problemHeader("Allow", "GET"), body: problem405, wantReason: "leaves out HEAD"},
		{name: "preflight", method: "OPTIONS", target: "/events/search",
			reqHeader: []string{"Origin", "https://app.example", "Access-Control-Request-Method", "GET"},
			status:    204, header: http.Header{"Access-Control-Allow-Origin": {"https://app.example"}, "Vary": {"Origin"}}},
		{name: "preflight refused with 403", method: "OPTIONS", target: "/events/search",
			reqHeader: []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "GET"},
			status:    403, header: problemHeader(), wantReason: "status 403, want 204"},
		{name: "headers too large", method: "GET", target: "/events/search", status: 431,
			header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, body: "431 Request Header Fields Too Large"},
		{name: "HEAD of the feed", method: "HEAD", target: "/events/public", status: 200,
			header: http.Header{"Cache-Control": {"public, max-age=120"}, "Etag": {`"abc"`}}},
		{name: "HEAD, undocumented status", method: "HEAD", target: "/events/public", status: 201,
			wantReason: "status is not supported"},
		{name: "feed not modified", method: "GET", target: "/events/public", reqHeader: []string{"If-None-Match", `"abc"`},
			status: 304},
		{name: "dashboard, cookie", method: "GET", target: "/keys", reqHeader: []string{"Cookie", "rr_session=tok"},
			status: 200, header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
			body: `{"user_id":"u","keys":[{"id":"key_1","masked":"****…abcd","plan":"pro","status":"active","monthly_call_limit":10000,` +
				`"calls_used":3,"cycle_start":"2026-05-01T00:00:00Z","cycle_resets_at":"2026-05-31T00:00:00Z","created_at":"2026-05-01T00:00:00Z","last_used_at":null,"burst_limit":600,"burst_window_seconds":60}],"reveal_pending":false,` +
				`"plans":[{"name":"pro","monthly_call_limit":10000,"burst_limit":600,"burst_window_seconds":60},{"name":"team","monthly_call_limit":100000}]}`},
		{name: "dashboard, raw key in the list", method: "GET", target: "/keys", reqHeader: []string{"Authorization", "Bearer tok"},
			status: 200, header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
			body: `{"user_id":"u","keys":[{"id":"key_1","masked":"rr_live_abcdefgh","plan":"pro","status":"active","monthly_call_limit":10000,` +
				`"calls_used":3,"cycle_start":"2026-05-01T00:00:00Z","cycle_resets_at":"2026-05-31T00:00:00Z","created_at":"2026-05-01T00:00:00Z","last_used_at":null}],"reveal_pending":false,"plans":[]}`,
			wantReason: "/keys/0/masked"},
		{name: "rotate with a grace period", method: "POST", target: "/keys/rotate",
			reqHeader: []string{"Authorization", "Bearer tok", "Content-Type", "application/json"}, reqBody: `{"grace_seconds":3600}`,
			status: 200, header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
			body: `{"key":"rr_live_abc","id":"key_2","masked":"****…_abc","plan":"pro","monthly_call_limit":10000}`},
		{name: "rotate with a grace of 8 days served", method: "POST", target: "/keys/rotate",
			reqHeader: []string{"Authorization", "Bearer tok", "Content-Type", "application/json"}, reqBody: `{"grace_seconds":691200}`,
			status: 200, header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
			body:       `{"key":"rr_live_abc","id":"key_2","masked":"****…_abc","plan":"pro","monthly_call_limit":10000}`,
			wantReason: "grace_seconds"},
		{name: "usage", method: "GET", target: "/keys/usage?days=2", reqHeader: []string{"Authorization", "Bearer tok"},
			status: 200, header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
			body: `{"user_id":"u","from":"2026-05-01","to":"2026-05-02","days":[{"date":"2026-05-01","calls":3},{"date":"2026-05-02","calls":0}],` +
				`"total_calls":3,"monthly_call_limit":10000,"calls_used":3,"cycle_start":"2026-05-01T00:00:00Z","cycle_resets_at":"2026-05-31T00:00:00Z"}`},
		{name: "checkout", method: "POST", target: "/billing/checkout",
			reqHeader: []string{"Authorization", "Bearer tok", "Content-Type", "application/json"}, reqBody: `{"plan":"team"}`,
			status: 200, header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
			body: `{"url":"https://checkout.stripe.com/c/pay/cs_test_1"}`},
		{name: "sign-in link", method: "GET", target: "/account/login?token=abc", status: 302,
			header: http.Header{"Location": {"/account/api-keys"}, "Set-Cookie": {"rr_session=tok; Path=/; HttpOnly; SameSite=Strict"}, "Cache-Control": {"no-store"}}},
		{name: "sign-in link to elsewhere", method: "GET", target: "/account/login?token=abc", status: 302,
			header: http.Header{"Location": {"https://evil.example/"}, "Cache-Control": {"no-store"}}, wantReason: "Location"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target := tc.target
			if strings.HasPrefix(target, "/") {
				target = "http://127.0.0.1:8501" + target
			}
			var body []byte
			if tc.reqBody != "" {
				body = []byte(tc.reqBody)
			}
			req := httptest.NewRequest(tc.method, target, strings.NewReader(tc.reqBody))
			for i := 0; i+1 < len(tc.reqHeader); i += 2 {
				req.Header.Set(tc.reqHeader[i], tc.reqHeader[i+1])
			}
			header := tc.header
			if header == nil {
				header = http.Header{}
			}
			resp := &http.Response{StatusCode: tc.status, Header: header, Request: req}
			err := v.Validate(req, body, resp, []byte(tc.body))
			if err != nil {
				t.Log(err)
			}
			switch {
			case tc.wantReason == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.wantReason != "" && err == nil:
				t.Errorf("allowed; want a refusal naming %q", tc.wantReason)
			case tc.wantReason != "" && !strings.Contains(err.Error(), tc.wantReason):
				t.Errorf("refusal %q does not name %q", err, tc.wantReason)
			}
			if err != nil && strings.Contains(err.Error(), "rr_live_abcdefgh") {
				t.Errorf("the refusal shows the value: %v", err)
			}
		})
	}
}

// A client that followed a redirect is checked on the last request it sent.
func TestValidatorFollowsRedirects(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	first := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8501/account/logout", nil)
	last := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8501/account/api-keys?signin=out", nil)
	resp := &http.Response{StatusCode: 200, Request: last, Header: http.Header{
		"Content-Type": {"text/html; charset=utf-8"}, "Cache-Control": {"no-store"}, "Content-Security-Policy": {"default-src 'none'"},
	}}
	if err := v.Validate(first, nil, resp, []byte("<!doctype html>")); err != nil {
		t.Fatal(err)
	}
}

func TestValidatorConcurrent(t *testing.T) {
	t.Parallel()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8501/events/7?x=1", nil)
				req.Header.Set("x-api-key", "k")
				resp := &http.Response{StatusCode: 200, Header: gated(), Request: req}
				if err := v.Validate(req, nil, resp, []byte(event)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
