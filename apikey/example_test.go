package apikey_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
)

func ExampleHash() {
	// Stores keep this, never the key.
	fmt.Println(apikey.Hash("rr_live_Q2hhbmdlIG1lIGJ1dCBrZWVwIG1lIHNlY3JldC4"))
	// Output: 8f687ec240b98d54af0fabc8f991016bafc6fb234f6dc957530b674a7b1470d2
}

func ExampleMask() {
	fmt.Println(apikey.Mask("dC4x"))
	// Output: ****…dC4x
}

func ExampleNew() {
	raw, k, err := apikey.New("user_42", "pro", 10000, time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	if err != nil {
		panic(err)
	}
	// Show raw to the user once; store k.
	fmt.Println(strings.HasPrefix(raw, apikey.Prefix), len(raw))
	fmt.Println(k.Hash == apikey.Hash(raw), k.Masked() == "****…"+raw[len(raw)-4:])
	fmt.Println(k.UserID, k.Plan, k.Status, k.MonthlyCallLimit, k.CycleStart)
	// Output:
	// true 51
	// true true
	// user_42 pro active 10000 2026-11-27 09:00:00 +0000 UTC
}

func ExampleAuthenticator_Require() {
	store := memstore.New()
	raw, k, _ := apikey.New("user_42", "pro", 10000, time.Now())
	if err := store.Create(context.Background(), &k); err != nil {
		panic(err)
	}
	rank := func(plan string) int { return map[string]int{"pro": 1, "team": 2}[plan] }
	auth := apikey.NewAuthenticator(store, apikey.Config{Rank: rank})

	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := apikey.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s on %s", p.UserID, p.Plan)
	})
	mux := http.NewServeMux()
	mux.Handle("/search", auth.Require(1)(hello))
	mux.Handle("/portfolio", auth.Require(2)(hello))

	for _, c := range []struct{ path, key string }{
		{"/search", ""},
		{"/search", "rr_live_guess"},
		{"/portfolio", raw},
		{"/search", raw},
	} {
		r := httptest.NewRequest(http.MethodGet, c.path, nil)
		r.Header.Set("x-api-key", c.key)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			var p struct{ Detail string }
			_ = json.Unmarshal(w.Body.Bytes(), &p)
			fmt.Println(w.Code, p.Detail)
			continue
		}
		fmt.Println(w.Code, w.Body)
	}
	// Output:
	// 401 Missing x-api-key
	// 403 Invalid or revoked API key
	// 402 Upgrade required for this endpoint
	// 200 hello user_42 on pro
}
