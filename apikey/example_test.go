package apikey_test

import (
	"context"
	"errors"
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

func ExampleGenerate() {
	raw, hash, err := apikey.Generate("") // DefaultPrefix
	if err != nil {
		panic(err)
	}
	fmt.Println(strings.HasPrefix(raw, "tk_"), len(raw), hash == apikey.Hash(raw))
	_, _, err = apikey.Generate("my key ")
	fmt.Println(err)
	// Output:
	// true 46 true
	// apikey: key prefix holds characters other than printable ASCII
}

func ExampleNew() {
	raw, k, err := apikey.New("acme_live_", "user_42", "gold", time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC))
	if err != nil {
		panic(err)
	}
	// Show raw to the user once; store k.
	fmt.Println(strings.HasPrefix(raw, "acme_live_"), len(raw))
	fmt.Println(k.Hash == apikey.Hash(raw), k.Masked() == "****…"+raw[len(raw)-4:])
	fmt.Println(k.UserID, k.Plan, k.Status, k.CreatedAt)
	// Output:
	// true 53
	// true true
	// user_42 gold active 2026-11-27 09:00:00 +0000 UTC
}

func ExampleAuthenticator_Authenticate() {
	ctx := context.Background()
	store := memstore.New()
	raw, k, _ := apikey.New("acme_", "user_42", "gold", time.Now())
	if err := store.Create(ctx, &k); err != nil {
		panic(err)
	}
	auth := apikey.NewAuthenticator(store, apikey.Config{})

	p, err := auth.Authenticate(ctx, raw)
	fmt.Println(p.UserID, p.Plan, p.QuotaID == k.ID, err)

	for _, header := range []string{"", "acme_guess"} {
		_, err := auth.Authenticate(ctx, header)
		fmt.Println(errors.Is(err, apikey.ErrMissing), errors.Is(err, apikey.ErrInvalid))
	}

	if err := store.Revoke(ctx, k.ID, "leaked", time.Now()); err != nil {
		panic(err)
	}
	_, err = auth.Authenticate(ctx, raw)
	fmt.Println(errors.Is(err, apikey.ErrInvalid), errors.Is(err, apikey.ErrRevoked))
	// Output:
	// user_42 gold true <nil>
	// true false
	// false true
	// true true
}

// An access log reads who called, after the handler, with the same accessor the
// handler uses, though the principal is stored further in.
func ExampleCapture() {
	store := memstore.New()
	raw, k, _ := apikey.New("acme_", "user_42", "gold", time.Now())
	if err := store.Create(context.Background(), &k); err != nil {
		panic(err)
	}
	auth := apikey.NewAuthenticator(store, apikey.Config{})

	// authenticate stands in for the gate: it stores the principal it found.
	authenticate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := auth.Authenticate(r.Context(), r.Header.Get("x-api-key"))
			if err != nil {
				http.Error(w, "refused", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r.WithContext(apikey.NewContext(r.Context(), p)))
		})
	}
	accessLog := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r = r.WithContext(apikey.Capture(r.Context()))
			next.ServeHTTP(w, r)
			who := "anonymous"
			if p, ok := apikey.FromContext(r.Context()); ok {
				who = p.UserID + " on " + p.Plan
			}
			fmt.Println("log:", r.URL.Path, who)
		})
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := apikey.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s", p.UserID)
	})
	h := accessLog(authenticate(hello))

	for _, key := range []string{raw, "acme_guess"} {
		r := httptest.NewRequest(http.MethodGet, "/search", nil)
		r.Header.Set("x-api-key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, strings.TrimSpace(w.Body.String()))
	}
	// Output:
	// log: /search user_42 on gold
	// 200 hello user_42
	// log: /search anonymous
	// 403 refused
}

// The Authenticator answers from its cache of verified keys. memstore announces
// its changes (apikey.Changes), which the Authenticator watches, so a revoked key
// is refused at once; and since no other process changes a memory store, the
// change channel may be declared up, so entries live their full TTL.
func ExampleCacheConfig() {
	ctx := context.Background()
	store := memstore.New()
	raw, k, _ := apikey.New("acme_", "user_42", "gold", time.Now())
	if err := store.Create(ctx, &k); err != nil {
		panic(err)
	}
	auth := apikey.NewAuthenticator(store, apikey.Config{Cache: apikey.CacheConfig{TTL: time.Minute}})
	auth.SetChannel(true)

	for range 3 {
		_, _ = auth.Authenticate(ctx, raw) // one lookup, then two hits
	}
	_, _ = auth.Authenticate(ctx, "acme_guess") // an unknown key: cached too
	_, _ = auth.Authenticate(ctx, "acme_guess")
	st := auth.Stats()
	fmt.Printf("hits %d, negative hits %d, misses %d, lookups %d, entries %d\n",
		st.Hits, st.NegativeHits, st.Misses, st.Lookups, st.Entries)

	if err := store.Revoke(ctx, k.ID, "leaked", time.Now()); err != nil {
		panic(err)
	}
	_, err := auth.Authenticate(ctx, raw)
	fmt.Println(err)
	// Output:
	// hits 2, negative hits 1, misses 2, lookups 2, entries 2
	// apikey: invalid or revoked API key: apikey: key revoked
}

// A rotation with a grace period keeps the old key working beside its successor,
// both on one quota, until its ExpiresAt; from then on the Authenticator refuses
// it, also from its cache, without anyone writing the store at that moment.
func ExampleKey_Expiring() {
	ctx := context.Background()
	s := memstore.New()
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	clock := t0
	auth := apikey.NewAuthenticator(s, apikey.Config{Now: func() time.Time { return clock }})

	oldRaw, k, _ := apikey.New("acme_", "user_42", "gold", t0)
	if err := s.Create(ctx, &k); err != nil {
		panic(err)
	}
	newRaw, next, _ := apikey.New("acme_", "", "", t0)
	old, err := s.Rotate(ctx, "user_42", &next, t0, time.Hour)
	if err != nil {
		panic(err)
	}
	fmt.Println(old.Status, old.Expiring(), old.StatusAt(clock), old.ExpiresAt)
	fmt.Println(next.QuotaID == old.QuotaID) // one quota for both

	for _, at := range []time.Duration{59 * time.Minute, time.Hour} {
		clock = t0.Add(at)
		_, errOld := auth.Authenticate(ctx, oldRaw)
		_, errNew := auth.Authenticate(ctx, newRaw)
		fmt.Println(at, errOld, errNew)
	}
	// Output:
	// active true expiring 2026-11-27 10:00:00 +0000 UTC
	// true
	// 59m0s <nil> <nil>
	// 1h0m0s apikey: invalid or revoked API key: apikey: key revoked <nil>
}
