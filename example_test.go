package tollgate_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/releaseradar/tollgate"
	"github.com/releaseradar/tollgate/apikey"
	akmem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	qmem "github.com/releaseradar/tollgate/quota/memstore"
)

// Protect a handler in one call: keys, plans, burst limits and monthly quotas, here
// on memory stores.
func Example() {
	plans := entitlement.Catalog{
		"free": {Name: "free", Rank: 0, Rate: "10-M"},
		"gold": {Name: "gold", Rank: 1, MonthlyCallLimit: 2, Rate: "100-M"},
	}
	gate, err := tollgate.New(tollgate.Stores{Keys: akmem.New(), Quotas: qmem.New(qmem.Config{})}, plans, tollgate.Config{})
	if err != nil {
		panic(err)
	}
	reports := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := apikey.FromContext(r.Context())
		fmt.Fprintf(w, "report for %s", p.UserID)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /reports", gate.Require("gold")(reports))

	// Issue a key with its quota; the raw key is shown once and stored nowhere.
	raw, _, err := gate.Issue(context.Background(), "alice", "gold", 0, "", 0)
	if err != nil {
		panic(err)
	}
	for _, key := range []string{"", "tk_guessed", raw, raw, raw} {
		r := httptest.NewRequest("GET", "/reports", nil)
		if key != "" {
			r.Header.Set("x-api-key", key)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		fmt.Printf("%d remaining=%q %s\n", w.Code, w.Header().Get("X-Quota-Remaining"), strings.TrimSpace(w.Body.String()))
	}
	// Output:
	// 401 remaining="" {"type":"about:blank","title":"Unauthorized","status":401,"detail":"Missing x-api-key"}
	// 403 remaining="" {"type":"about:blank","title":"Forbidden","status":403,"detail":"Invalid or revoked API key"}
	// 200 remaining="1" report for alice
	// 200 remaining="0" report for alice
	// 429 remaining="0" {"type":"about:blank","title":"Too Many Requests","status":429,"detail":"Monthly API quota exceeded"}
}

// Public routes spend the anonymous plan's budget per client address.
func ExampleGate_Public() {
	plans := entitlement.Catalog{"free": {Name: "free", Rate: "2-H"}}
	gate, _ := tollgate.New(tollgate.Stores{Keys: akmem.New(), Quotas: qmem.New(qmem.Config{})}, plans, tollgate.Config{})
	feed := gate.Public()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "feed") }))
	for range 3 {
		w := httptest.NewRecorder()
		feed.ServeHTTP(w, httptest.NewRequest("GET", "/feed", nil))
		fmt.Println(w.Code, w.Header().Get("RateLimit-Policy"), w.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 "free";q=2;w=3600 1
	// 200 "free";q=2;w=3600 0
	// 429 "free";q=2;w=3600 0
}

// Rotating a key keeps its quota: the new key spends what the old one left.
func ExampleGate_Rotate() {
	ctx := context.Background()
	plans := entitlement.Catalog{"gold": {Name: "gold", MonthlyCallLimit: 100, Rate: "100-M"}}
	quotas := qmem.New(qmem.Config{})
	gate, _ := tollgate.New(tollgate.Stores{Keys: akmem.New(), Quotas: quotas}, plans, tollgate.Config{})
	_, old, _ := gate.Issue(ctx, "alice", "gold", 0, "", 0)
	_, next, _ := gate.Rotate(ctx, "alice", 0)
	fmt.Println(next.QuotaID == old.QuotaID, next.Plan)
	// Output: true gold
}
