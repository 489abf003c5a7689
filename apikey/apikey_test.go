package apikey_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

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

func TestGenerate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ prefix, want string }{
		{"", "tk_"}, {"rr_live_", "rr_live_"}, {"x", "x"},
	} {
		shape := regexp.MustCompile(`^` + regexp.QuoteMeta(c.want) + `[A-Za-z0-9_-]{43}$`)
		raw, hash, err := apikey.Generate(c.prefix)
		if err != nil || !shape.MatchString(raw) || hash != apikey.Hash(raw) {
			t.Errorf("Generate(%q) = %q, %q, %v; want %s + 43 URL-safe characters and its hash", c.prefix, raw, hash, err, c.want)
		}
	}
	for _, bad := range []string{"tk live_", "tk_\x00", "ключ_", "tk_\n"} {
		if raw, _, err := apikey.Generate(bad); err == nil {
			t.Errorf("Generate(%q) = %q, want an error: Authenticate would refuse the key", bad, raw)
		}
	}
}

func TestGenerateIsRandom(t *testing.T) {
	t.Parallel()
	const n = 2000
	seen := make(map[string]bool, n)
	var freq [256]int
	ones := 0
	for range n {
		raw, _, err := apikey.Generate("")
		if err != nil {
			t.Fatal(err)
		}
		if seen[raw] {
			t.Fatalf("Generate repeated a key after %d keys", len(seen))
		}
		seen[raw] = true
		body := raw[len(apikey.DefaultPrefix):]
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
	for _, c := range []struct{ prefix, want string }{{"", apikey.DefaultPrefix}, {"acme_", "acme_"}} {
		raw, k, err := apikey.New(c.prefix, "u1", "gold", at)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(raw, c.want) || len(raw) != len(c.want)+43 {
			t.Errorf("raw key %q has the wrong shape", raw)
		}
		want := apikey.Key{
			UserID: "u1", Hash: apikey.Hash(raw), KeyPrefix: c.want, Last4: raw[len(raw)-4:],
			Plan: "gold", Status: apikey.StatusActive, CreatedAt: at.UTC(),
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
	if _, _, err := apikey.New("bad prefix", "u1", "gold", at); err == nil {
		t.Error("New with a prefix holding a space succeeded")
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

func TestKeyJSONHidesSecrets(t *testing.T) {
	t.Parallel()
	// Hash, prefix, last four and quota ID stay out of JSON; the rest is shown.
	k := apikey.Key{ID: "key_1", UserID: "u1", Hash: "h4sh", KeyPrefix: "pr3f", Last4: "l4st", Plan: "gold",
		Status: apikey.StatusActive, QuotaID: "qu0ta", CreatedAt: now}
	j, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	b := string(j)
	for _, secret := range []string{"h4sh", "pr3f", "l4st", "qu0ta"} {
		if strings.Contains(b, secret) {
			t.Errorf("Key's JSON %s holds %q", b, secret)
		}
	}
	for _, shown := range []string{`"id":"key_1"`, `"user_id":"u1"`, `"plan":"gold"`, `"status":"active"`} {
		if !strings.Contains(b, shown) {
			t.Errorf("Key's JSON %s lacks %s", b, shown)
		}
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	if _, ok := apikey.FromContext(context.Background()); ok {
		t.Error("FromContext found a principal in an empty context")
	}
	p := apikey.Principal{KeyID: "key_1", UserID: "u1", Hash: "ab", Plan: "gold", QuotaID: "key_0"}
	got, ok := apikey.FromContext(apikey.NewContext(context.Background(), p))
	if !ok || got != p {
		t.Errorf("FromContext = %+v, %v; want %+v", got, ok, p)
	}

	// The principal's context is an ordinary link of the chain: other values,
	// the deadline and cancellation pass through it both ways, and a principal
	// stored below it wins.
	type otherKey struct{}
	deadline := time.Now().Add(time.Hour)
	parent, cancel := context.WithDeadline(context.WithValue(context.Background(), otherKey{}, "v"), deadline)
	ctx := apikey.NewContext(parent, p)
	if v := ctx.Value(otherKey{}); v != "v" {
		t.Errorf("Value(otherKey) = %v, want the parent's v", v)
	}
	if d, ok := ctx.Deadline(); !ok || !d.Equal(deadline) {
		t.Errorf("Deadline = %v, %v; want the parent's %v", d, ok, deadline)
	}
	if s := fmt.Sprint(ctx); strings.Contains(s, "key_1") || strings.Contains(s, "gold") {
		t.Errorf("the context's description %q shows the principal", s)
	}
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	q := p
	q.KeyID = "key_2"
	if got, _ := apikey.FromContext(apikey.NewContext(child, q)); got != q {
		t.Errorf("FromContext below a second NewContext = %+v, want %+v", got, q)
	}
	if got, _ := apikey.FromContext(child); got != p {
		t.Errorf("FromContext of a derived context = %+v, want %+v", got, p)
	}
	cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("canceling the parent did not reach a context derived from the principal's")
	}
	if !errors.Is(child.Err(), context.Canceled) || !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err = %v (child), %v; want context.Canceled", child.Err(), ctx.Err())
	}
}
