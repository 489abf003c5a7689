package gate_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	akmem "github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/examples/gate"
	qmem "github.com/releaseradar/tollgate/quota/memstore"
	"github.com/releaseradar/tollgate/ratelimit"
)

func ExampleProtect() {
	ctx := context.Background()
	keys, quotas := akmem.New(), qmem.New(qmem.Config{})
	raw, k, _ := apikey.New("alice", "pro", 2, time.Now())
	_ = keys.Create(ctx, &k)
	quotas.Put(k.ID, k.MonthlyCallLimit, k.CycleStart)
	counters, _ := ratelimit.NewStore(nil, "")

	h, err := gate.Protect(keys, quotas, counters, map[string]string{"pro": "10-M"}, http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") }))
	if err != nil {
		panic(err)
	}
	for _, key := range []string{"", "bad", raw, raw, raw} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("x-api-key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		fmt.Printf("%d remaining=%q\n", w.Code, w.Header().Get("X-Quota-Remaining"))
	}
	// Output:
	// 401 remaining=""
	// 403 remaining=""
	// 200 remaining="1"
	// 200 remaining="0"
	// 429 remaining="0"
}
