package session

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestNewRejectsShortSecret(t *testing.T) {
	t.Parallel()
	if _, err := New([]byte("short"), Config{}); err == nil {
		t.Fatal("New accepted a 5-byte secret")
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := New(secret, Config{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New([]byte("another secret, thirty-two bytes!"), Config{Now: clock})
	good, err := s.Issue("alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.Claims) string {
		tok, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	claims := func(sub, iss string, exp *jwt.NumericDate) jwt.RegisteredClaims {
		return jwt.RegisteredClaims{Subject: sub, Issuer: iss, ExpiresAt: exp}
	}
	inAnHour := jwt.NewNumericDate(now.Add(time.Hour))
	fromOther, _ := other.Issue("alice", time.Hour)
	tampered := good[:len(good)-2] + "AA"
	if tampered == good {
		tampered = good[:len(good)-2] + "BB"
	}
	parts := strings.Split(good, ".")

	tests := []struct {
		name, token, want string
	}{
		{"valid", good, "alice"},
		{"expired", sign(jwt.SigningMethodHS256, secret, claims("alice", Issuer, jwt.NewNumericDate(now.Add(-time.Second)))), ""},
		{"no expiry", sign(jwt.SigningMethodHS256, secret, claims("alice", Issuer, nil)), ""},
		{"other secret", fromOther, ""},
		{"HS512 same secret", sign(jwt.SigningMethodHS512, secret, claims("alice", Issuer, inAnHour)), ""},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("alice", Issuer, inAnHour)), ""},
		{"unsigned", parts[0] + "." + parts[1] + ".", ""},
		{"tampered signature", tampered, ""},
		{"empty subject", sign(jwt.SigningMethodHS256, secret, claims("", Issuer, inAnHour)), ""},
		{"NUL in the subject", sign(jwt.SigningMethodHS256, secret, claims("alice\x00", Issuer, inAnHour)), ""},
		{"unicode subject", sign(jwt.SigningMethodHS256, secret, claims("zoë", Issuer, inAnHour)), "zoë"},
		{"wrong issuer", sign(jwt.SigningMethodHS256, secret, claims("alice", "someone", inAnHour)), ""},
		{"empty", "", ""},
		{"garbage", "not.a.token", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := s.Verify(tc.token)
			if tc.want == "" {
				if !errors.Is(err, ErrInvalid) || got != "" {
					t.Fatalf("Verify = %q, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Verify = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestExpiryFollowsTheClock(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s, _ := New(secret, Config{Now: func() time.Time { return now }})
	tok, err := s.Issue("bob", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(24*time.Hour - time.Second)
	if _, err := s.Verify(tok); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	now = now.Add(2 * time.Second)
	if _, err := s.Verify(tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("after expiry: %v, want ErrInvalid", err)
	}
}

func TestIssueRejectsBadInput(t *testing.T) {
	t.Parallel()
	s, _ := New(secret, Config{})
	if _, err := s.Issue("", time.Hour); err == nil {
		t.Error("Issue accepted an empty user ID")
	}
	for _, id := range []string{"a\x00", "\xff", "\x00"} {
		if _, err := s.Issue(id, time.Hour); err == nil {
			t.Errorf("Issue accepted the user ID %q", id)
		}
	}
	if _, err := s.Issue("alice", 0); err == nil {
		t.Error("Issue accepted a zero lifetime")
	}
}
