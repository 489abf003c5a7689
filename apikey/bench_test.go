package apikey_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

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

// BenchmarkAuthenticate measures what every gated request pays to authenticate,
// on each store, serially and with b.RunParallel (run with -cpu 1,2):
//
//   - hit: the key is in the cache (channel up), as it is for all but the first
//     request of a key within its TTL;
//   - negative-hit: a made-up key the cache already refused once;
//   - miss: every entry has aged out (the clock moves past TTL between calls),
//     so each call goes through the cache to the store and back;
//   - off: no cache (CacheConfig.Size < 0), the store lookup alone.
//
// Lookups cycle through benchKeys keys.
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
			unknown := make([]string, benchKeys)
			for i := range unknown {
				unknown[i], _, _ = apikey.Generate("")
			}
			// ticking moves past TTL at every call: every entry is stale when
			// next read.
			var ticks atomic.Int64
			ticking := func() time.Time { return now.Add(time.Duration(ticks.Add(1)) * time.Minute) }
			for _, v := range []struct {
				name  string
				cache apikey.CacheConfig
				keys  []string
				want  error
			}{
				{"hit", apikey.CacheConfig{}, raws, nil},
				{"negative-hit", apikey.CacheConfig{}, unknown, apikey.ErrInvalid},
				{"miss", apikey.CacheConfig{Now: ticking}, raws, nil},
				{"off", apikey.CacheConfig{Size: -1}, raws, nil},
			} {
				b.Run(v.name, func(b *testing.B) {
					a := apikey.NewAuthenticator(s, apikey.Config{Cache: v.cache})
					a.SetChannel(true)
					ctx := context.Background()
					check := func(err error) bool {
						if v.want == nil && err != nil || v.want != nil && !errors.Is(err, v.want) {
							b.Error(err)
							return false
						}
						return true
					}
					for _, raw := range v.keys { // warm the cache
						_, _ = a.Authenticate(ctx, raw)
					}
					b.Run("serial", func(b *testing.B) {
						b.ReportAllocs()
						i := 0
						for b.Loop() {
							if _, err := a.Authenticate(ctx, v.keys[i%benchKeys]); !check(err) {
								return
							}
							i++
						}
					})
					b.Run("parallel", func(b *testing.B) {
						b.ReportAllocs()
						var next atomic.Int64
						b.RunParallel(func(pb *testing.PB) {
							i := int(next.Add(1)) * 7919
							for pb.Next() {
								if _, err := a.Authenticate(ctx, v.keys[i%benchKeys]); !check(err) {
									return
								}
								i++
							}
						})
					})
				})
			}
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
