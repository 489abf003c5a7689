package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"

	"github.com/releaseradar/tollgate/ratelimit"
)

// A Limiter in front of a handler, counting in memory. Identify would normally
// read the key that authentication put in the request context.
func Example() {
	store, err := ratelimit.NewStore(nil, "") // nil client: one process, in memory
	if err != nil {
		panic(err)
	}
	l, err := ratelimit.New(store, ratelimit.Config{
		Rates: map[string]string{"pro": "2-M"},
		Identify: func(r *http.Request) (plan, keyHash string, ok bool) {
			if r.Header.Get("x-api-key") == "" {
				return "", "", false
			}
			return "pro", "hash-of-the-key", true
		},
	})
	if err != nil {
		panic(err)
	}
	h := l.Handle(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	}))
	for range 3 {
		r := httptest.NewRequest(http.MethodGet, "/events/search", nil)
		r.Header.Set("x-api-key", "rr_live_example")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get("RateLimit-Policy"), "remaining", w.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 "pro";q=2;w=60 remaining 1
	// 200 "pro";q=2;w=60 remaining 0
	// 429 "pro";q=2;w=60 remaining 0
}

func ExampleParseRates() {
	rates, err := ratelimit.ParseRates("public=30-M, pro=1200-M")
	fmt.Println(rates, err)
	_, err = ratelimit.ParseRates("public=30-M,pro=fast")
	fmt.Println(err)
	// Output:
	// map[pro:1200-M public:30-M] <nil>
	// ratelimit: rate entry "pro=fast": rate "fast": want <limit>-<S|M|H|D>, for example 600-M: incorrect format 'fast'
}

// Behind a trusted proxy, the rightmost X-Forwarded-For entry that is not a
// trusted proxy is the client; what the client wrote to the left is not read.
func ExampleLimiter_ClientIP() {
	store, _ := ratelimit.NewStore(nil, "")
	l, _ := ratelimit.New(store, ratelimit.Config{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.5:41000"
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 10.0.0.9")
	fmt.Println(l.ClientIP(r))

	r.RemoteAddr = "198.51.100.2:41000" // not a trusted proxy: its header is ignored
	fmt.Println(l.ClientIP(r))
	// Output:
	// 203.0.113.7
	// 198.51.100.2
}

// The server calls AllowAnonymous when authentication fails, so invalid keys
// count against the sender's address before the 401 or 403 goes out.
func ExampleLimiter_AllowAnonymous() {
	store, _ := ratelimit.NewStore(nil, "")
	l, _ := ratelimit.New(store, ratelimit.Config{Rates: map[string]string{"public": "2-M"}})
	for i := range 3 {
		r := httptest.NewRequest(http.MethodGet, "/events/search", nil)
		r.RemoteAddr = "203.0.113.7:5000"
		r.Header.Set("x-api-key", fmt.Sprintf("rr_live_guess%d", i))
		w := httptest.NewRecorder()
		if l.AllowAnonymous(w, r) {
			http.Error(w, "Invalid or revoked API key", http.StatusForbidden)
		}
		fmt.Println(w.Code)
	}
	// Output:
	// 403
	// 403
	// 429
}
