package apikey_test

import (
	"context"
	"encoding/base64"
	"math/bits"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

func TestHashVectors(t *testing.T) {
	t.Parallel()
	// Computed independently with coreutils sha256sum.
	for _, c := range []struct{ raw, want string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"rr_live_Q2hhbmdlIG1lIGJ1dCBrZWVwIG1lIHNlY3JldC4", "8f687ec240b98d54af0fabc8f991016bafc6fb234f6dc957530b674a7b1470d2"},
	} {
		if got := apikey.Hash(c.raw); got != c.want {
			t.Errorf("Hash(%q) = %s, want %s", c.raw, got, c.want)
		}
	}
}

var keyShape = regexp.MustCompile(`^rr_live_[A-Za-z0-9_-]{43}$`)

func TestGenerate(t *testing.T) {
	t.Parallel()
	const n = 2000
	seen := make(map[string]bool, n)
	var freq [256]int
	ones := 0
	for range n {
		raw, hash, err := apikey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !keyShape.MatchString(raw) {
			t.Fatalf("key %q does not have the shape rr_live_ + 43 URL-safe characters", raw)
		}
		if hash != apikey.Hash(raw) {
			t.Fatalf("Generate's hash is not Hash(raw)")
		}
		if seen[raw] {
			t.Fatalf("Generate repeated a key after %d keys", len(seen))
		}
		seen[raw] = true
		body := raw[len(apikey.Prefix):]
		b, err := base64.RawURLEncoding.Strict().DecodeString(body)
		if err != nil || len(b) != 32 {
			t.Fatalf("key body decodes to %d bytes (%v), want 32", len(b), err)
		}
		for _, x := range b {
			ones += bits.OnesCount8(x)
		}
		for i := 0; i < 42; i++ { // the 43rd character carries only 4 bits
			freq[body[i]]++
		}
	}
	// 256 random bits a key: the share of one bits is 1/2 (σ ≈ 358 over 512,000 bits).
	if total := n * 256; ones < total/2-3000 || ones > total/2+3000 {
		t.Errorf("%d of %d bits are set; the keys are not uniformly random", ones, total)
	}
	// Each of the 64 symbols is equally likely: 84,000/64 = 1,312 each (σ ≈ 36).
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, c := range []byte(alphabet) {
		if f := freq[c]; f < 1000 || f > 1650 {
			t.Errorf("symbol %q appears %d times in 84,000, want about 1,312", c, f)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("CEST", 7200))
	raw, k, err := apikey.New("u1", "team", 250000, at)
	if err != nil {
		t.Fatal(err)
	}
	if !keyShape.MatchString(raw) {
		t.Errorf("raw key %q has the wrong shape", raw)
	}
	want := apikey.Key{
		UserID: "u1", Hash: apikey.Hash(raw), KeyPrefix: apikey.Prefix, Last4: raw[len(raw)-4:],
		Plan: "team", Status: apikey.StatusActive, MonthlyCallLimit: 250000,
		CycleStart: at.UTC(), CreatedAt: at.UTC(),
	}
	if k != want {
		t.Errorf("New = %+v, want %+v", k, want)
	}
	if k.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt is in %v, want UTC", k.CreatedAt.Location())
	}
	if strings.Contains(k.Hash, raw) || k.Masked() != "****…"+raw[len(raw)-4:] {
		t.Errorf("the key record exposes the raw key or masks it wrongly: %q", k.Masked())
	}
}

func TestMask(t *testing.T) {
	t.Parallel()
	if got := apikey.Mask("abcd"); got != "****…abcd" {
		t.Errorf("Mask(abcd) = %q", got)
	}
	if got := (apikey.Key{Last4: "9_-Z"}).Masked(); got != "****…9_-Z" {
		t.Errorf("Key.Masked = %q", got)
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	shape := regexp.MustCompile(`^key_[0-9a-f]{24}$`)
	a, b := apikey.NewID(), apikey.NewID()
	if !shape.MatchString(a) || a == b {
		t.Errorf("NewID = %q, %q; want distinct key_ + 24 hex", a, b)
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	if _, ok := apikey.FromContext(context.Background()); ok {
		t.Error("FromContext found a principal in an empty context")
	}
	p := apikey.Principal{KeyID: "key_1", UserID: "u1", Hash: "ab", Plan: "pro", Limit: 10}
	got, ok := apikey.FromContext(apikey.NewContext(context.Background(), p))
	if !ok || got != p {
		t.Errorf("FromContext = %+v, %v; want %+v", got, ok, p)
	}
}
