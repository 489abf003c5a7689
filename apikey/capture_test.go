package apikey_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/releaseradar/tollgate/apikey"
)

type otherKey struct{}

func TestCapture(t *testing.T) {
	t.Parallel()
	alice := apikey.Principal{KeyID: "key_a", UserID: "alice", Plan: "gold", QuotaID: "key_a"}
	bob := apikey.Principal{KeyID: "key_b", UserID: "bob", Plan: "free", QuotaID: "key_b"}

	outer := apikey.Capture(context.Background())
	if p, ok := apikey.FromContext(outer); ok {
		t.Fatalf("a fresh capture reports %+v", p)
	}
	// The principal is stored on a context derived from the captured one, some
	// layers down, as a gate does inside an access log's middleware.
	derived := context.WithValue(outer, otherKey{}, 1)
	inner := apikey.NewContext(derived, alice)
	if p, ok := apikey.FromContext(outer); !ok || p != alice {
		t.Errorf("FromContext(captured) = %+v, %v; want %+v", p, ok, alice)
	}
	if p, ok := apikey.FromContext(derived); !ok || p != alice {
		t.Errorf("FromContext(between) = %+v, %v; want %+v", p, ok, alice)
	}
	if p, ok := apikey.FromContext(inner); !ok || p != alice {
		t.Errorf("FromContext(inner) = %+v, %v; want %+v", p, ok, alice)
	}

	// The first stored wins on the captured context; each derived context still
	// reports its own.
	second := apikey.NewContext(derived, bob)
	if p, _ := apikey.FromContext(outer); p != alice {
		t.Errorf("after a second NewContext the capture reports %+v, want the first, %+v", p, alice)
	}
	if p, _ := apikey.FromContext(second); p != bob {
		t.Errorf("FromContext(second) = %+v, want %+v", p, bob)
	}
	if p, _ := apikey.FromContext(apikey.NewContext(inner, bob)); p != bob {
		t.Errorf("NewContext over a principal: FromContext = %+v, want %+v", p, bob)
	}

	// Capture does not hide what the context carries already, and nested
	// captures share one.
	if c := apikey.Capture(inner); c != inner {
		t.Error("Capture of a context that carries a principal made a new context")
	}
	if c := apikey.Capture(outer); c != outer {
		t.Error("Capture of a captured context made a new context")
	}
	base := apikey.Capture(context.Background())
	nested := apikey.Capture(context.WithValue(base, otherKey{}, 2))
	apikey.NewContext(nested, bob)
	if p, ok := apikey.FromContext(base); !ok || p != bob {
		t.Errorf("nested captures: FromContext(outer capture) = %+v, %v; want %+v", p, ok, bob)
	}

	// Without Capture, a parent never sees what its children store.
	plain := context.Background()
	apikey.NewContext(plain, alice)
	if _, ok := apikey.FromContext(plain); ok {
		t.Error("an uncaptured parent reports its child's principal")
	}
}

func TestCaptureConcurrent(t *testing.T) {
	t.Parallel()
	const n = 64
	outer := apikey.Capture(context.Background())
	var wg sync.WaitGroup
	stored := make([]apikey.Principal, n)
	seen := make([]apikey.Principal, n)
	for i := range n {
		stored[i] = apikey.Principal{KeyID: fmt.Sprintf("key_%d", i), UserID: fmt.Sprintf("u%d", i)}
		wg.Go(func() {
			ctx := apikey.NewContext(context.WithValue(outer, otherKey{}, i), stored[i])
			if p, _ := apikey.FromContext(ctx); p != stored[i] {
				t.Errorf("goroutine %d reads %+v from its own context", i, p)
			}
			seen[i], _ = apikey.FromContext(outer) // read while others store
		})
	}
	wg.Wait()
	winner, ok := apikey.FromContext(outer)
	if !ok {
		t.Fatal("no principal captured")
	}
	found := false
	for _, p := range stored {
		found = found || p == winner
	}
	if !found {
		t.Fatalf("captured %+v, which no goroutine stored", winner)
	}
	// Once one was stored, every read reported that one.
	for i, p := range seen {
		if p != winner {
			t.Errorf("goroutine %d read %+v from the capture after storing, want %+v", i, p, winner)
		}
	}
}
