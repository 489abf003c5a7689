package tollgate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/releaseradar/tollgate"
	akmem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/entitlement"
	entmem "github.com/releaseradar/tollgate/entitlement/memstore"
	qmem "github.com/releaseradar/tollgate/quota/memstore"
)

// A host application mounts the dashboard handlers behind its own sign-in: User
// names the signed-in user (here a header, for the example; a real application
// reads its session cookie), and every handler works on that user's keys only.
func ExampleGate_Dashboard() {
	ctx := context.Background()
	plans := entitlement.Catalog{
		"free": {Name: "free", Rate: "10-M"},
		"gold": {Name: "gold", Rank: 1, MonthlyCallLimit: 100, Rate: "100-M"},
	}
	ledger := entmem.New() // the calls served per key and minute
	gate, _ := tollgate.New(tollgate.Stores{Keys: akmem.New(), Quotas: qmem.New(qmem.Config{})}, plans, tollgate.Config{Ledger: ledger})
	dash := gate.Dashboard(tollgate.DashboardConfig{
		User: func(r *http.Request) (string, error) {
			if u := r.Header.Get("X-Example-User"); u != "" {
				return u, nil
			}
			return "", tollgate.ErrNotSignedIn
		},
		Ledger: ledger,
	})
	mux := http.NewServeMux()
	mux.Handle("GET /keys", dash.Keys())
	mux.Handle("POST /keys/rotate", dash.Rotate())
	mux.Handle("GET /keys/usage", dash.Usage())
	mux.Handle("GET /reports", gate.Require("gold")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "report") })))

	raw, _, _ := gate.Issue(ctx, "alice", "gold", 0, "", 0)
	serve := func(method, path, user, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		if user != "" {
			r.Header.Set("X-Example-User", user)
		}
		if key != "" {
			r.Header.Set("x-api-key", key)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	for range 3 {
		serve("GET", "/reports", "", raw)
	}
	gate.Close(ctx) // writes the ledger (a running gate does every second)

	var rotated tollgate.NewKey
	json.Unmarshal(serve("POST", "/keys/rotate", "alice", "").Body.Bytes(), &rotated)
	fmt.Println("rotated:", rotated.Plan, rotated.MonthlyCallLimit, rotated.Key != raw)

	var keys tollgate.KeyList
	json.Unmarshal(serve("GET", "/keys", "alice", "").Body.Bytes(), &keys)
	for _, k := range keys.Keys {
		fmt.Printf("%s, %d of %d calls used %q\n", k.Status, k.CallsUsed, k.MonthlyCallLimit, k.RevokeReason)
	}
	var usage tollgate.UsageView
	json.Unmarshal(serve("GET", "/keys/usage?days=7", "alice", "").Body.Bytes(), &usage)
	fmt.Println("days:", len(usage.Days), "calls:", usage.TotalCalls)

	w := serve("GET", "/keys", "", "")
	fmt.Println(w.Code, w.Body.String())
	// Output:
	// rotated: gold 100 true
	// active, 3 of 100 calls used ""
	// revoked, 3 of 100 calls used "rotated"
	// days: 7 calls: 3
	// 401 {"type":"about:blank","title":"Unauthorized","status":401,"detail":"Missing dashboard token"}
}
