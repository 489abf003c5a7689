package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/examples/internal/proctest"
)

// TestBasic builds the example, runs it with a quota of 3 and a burst limit of
// 5 a minute, and walks one key through both limits.
func TestBasic(t *testing.T) {
	bin := proctest.Build(t)
	out := proctest.Start(t, bin, nil, []string{"-addr", "127.0.0.1:0", "-limit", "3", "-rate", "5-M"},
		"listening on ", "demo key (shown once): ")
	base, key := out["listening on "], out["demo key (shown once): "]
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(key string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/hello", nil)
		if key != "" {
			req.Header.Set("x-api-key", key)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Detail, Hello string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, resp.Header, body.Detail + body.Hello
	}

	if s, _, d := call(""); s != 401 || d != "Missing x-api-key" {
		t.Fatalf("no key: %d %q", s, d)
	}
	if s, _, d := call("rr_live_not-a-real-key"); s != 403 || d != "Invalid or revoked API key" {
		t.Fatalf("bad key: %d %q", s, d)
	}
	steps := []struct {
		status            int
		text, quotaRemain string
	}{
		{200, "demo-user", "2"},
		{200, "demo-user", "1"},
		{200, "demo-user", "0"},
		{429, "Monthly API quota exceeded", "0"}, // 4th call: within the burst limit, past the quota
		{429, "Monthly API quota exceeded", "0"}, // 5th
		{429, "Rate limit exceeded", ""},         // 6th: past the burst limit of 5, no quota counted
	}
	for i, st := range steps {
		s, h, text := call(key)
		if s != st.status || text != st.text || h.Get("X-Quota-Remaining") != st.quotaRemain {
			t.Fatalf("call %d: %d %q remaining %q; want %d %q %q", i+1, s, text, h.Get("X-Quota-Remaining"), st.status, st.text, st.quotaRemain)
		}
		if s == 429 && h.Get("Retry-After") == "" {
			t.Fatalf("call %d: 429 without Retry-After", i+1)
		}
	}
}
