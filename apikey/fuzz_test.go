package apikey_test

import (
	"context"
	"strings"
	"testing"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/internal/problem"
)

// fuzzKey is the one valid key in FuzzAuthenticate's store; the seed corpus holds it.
const fuzzKey = "rr_live_Q2hhbmdlIG1lIGJ1dCBrZWVwIG1lIHNlY3JldC4"

// FuzzAuthenticate sends arbitrary header values to Authenticate: it must return
// the stored key's principal exactly for that key (trimmed), ErrMissing (401)
// exactly for a blank value, and ErrInvalid (403) otherwise, as the bare sentinel
// (no error holds the value), and never panic.
func FuzzAuthenticate(f *testing.F) {
	s := memstore.New()
	k := apikey.Key{UserID: "u1", Hash: apikey.Hash(fuzzKey), KeyPrefix: "rr_live_",
		Last4: fuzzKey[len(fuzzKey)-4:], Plan: "gold", CreatedAt: now}
	if err := s.Create(context.Background(), &k); err != nil {
		f.Fatal(err)
	}
	a := apikey.NewAuthenticator(s, apikey.Config{})
	f.Add(fuzzKey)
	f.Add("")
	f.Add("' OR 1=1 --")
	f.Fuzz(func(t *testing.T, value string) {
		p, err := a.Authenticate(context.Background(), value)
		switch strings.TrimSpace(value) {
		case fuzzKey:
			if err != nil || p != (apikey.Principal{KeyID: k.ID, UserID: "u1", Hash: k.Hash, Plan: "gold", QuotaID: k.ID}) {
				t.Fatalf("the stored key %q: %+v, %v", value, p, err)
			}
			return
		case "":
			// The sentinel itself, so the error holds nothing of the value.
			if err != apikey.ErrMissing { //nolint:errorlint // identity is the point
				t.Fatalf("blank value %q: %v, want ErrMissing", value, err)
			}
		default:
			if err != apikey.ErrInvalid { //nolint:errorlint // identity is the point
				t.Fatalf("value %q: %v, want ErrInvalid", value, err)
			}
		}
		if p != (apikey.Principal{}) {
			t.Fatalf("value %q: refused with the principal %+v", value, p)
		}
		if status, _, _ := problem.For(err); status != 401 && status != 403 {
			t.Fatalf("value %q: answered %d", value, status)
		}
	})
}
