package apikey_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// benchKeys is how many active keys the benchmark stores hold; lookups cycle through
// them.
const benchKeys = 1000

func BenchmarkHash(b *testing.B) {
	raw, _, _ := apikey.Generate("")
	for b.Loop() {
		apikey.Hash(raw)
	}
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		if _, _, err := apikey.Generate(""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticate measures hash + lookup, what every gated request pays, on
// each store, serially and with b.RunParallel (run with -cpu 1,2).
func BenchmarkAuthenticate(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) apikey.Store
	}{
		{"memstore", func(b *testing.B) apikey.Store { return memstore.New() }},
		{"sqlite", func(b *testing.B) apikey.Store {
			return bootstrapped(b, sqlstore.New(testenv.SQLite(b), sqlstore.Config{}))
		}},
		{"postgres", func(b *testing.B) apikey.Store {
			return bootstrapped(b, sqlstore.New(testenv.Postgres(b), sqlstore.Config{}))
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			raws := make([]string, benchKeys)
			for i := range raws {
				raw, k, err := apikey.New("", fmt.Sprintf("user%d", i), "gold", now)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Create(context.Background(), &k); err != nil {
					b.Fatal(err)
				}
				raws[i] = raw
			}
			a := apikey.NewAuthenticator(s, apikey.Config{})
			ctx := context.Background()
			b.Run("serial", func(b *testing.B) {
				i := 0
				for b.Loop() {
					if _, err := a.Authenticate(ctx, raws[i%benchKeys]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run("parallel", func(b *testing.B) {
				var next atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					i := int(next.Add(1)) * 7919
					for pb.Next() {
						if _, err := a.Authenticate(ctx, raws[i%benchKeys]); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		})
	}
}

// BenchmarkContext measures what a gated request pays to carry its principal:
// NewContext on a captured context and FromContext on both ends.
func BenchmarkContext(b *testing.B) {
	p := apikey.Principal{KeyID: "key_1", UserID: "u1", Plan: "gold", QuotaID: "key_1"}
	for b.Loop() {
		outer := apikey.Capture(context.Background())
		inner := apikey.NewContext(outer, p)
		if _, ok := apikey.FromContext(inner); !ok {
			b.Fatal("no principal")
		}
		if _, ok := apikey.FromContext(outer); !ok {
			b.Fatal("no captured principal")
		}
	}
}
