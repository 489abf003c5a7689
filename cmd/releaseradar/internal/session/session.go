// Package session issues and verifies the dashboard's session tokens: HS256 JWTs
// whose subject is the user ID.
package session

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/releaseradar/tollgate/internal/problem"
)

// Issuer is the "iss" claim of every token, checked on Verify.
const Issuer = "releaseradar"

// MinSecretLen is the shortest HMAC secret New accepts, in bytes.
const MinSecretLen = 32

// ErrInvalid: the token is malformed, badly signed, expired, or its subject is
// not a user ID (HTTP 401).
var ErrInvalid = problem.New(problem.BadSession, "session: invalid or expired token")

// Config holds the optional settings of a Signer. The zero value is ready to use.
type Config struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Signer issues and verifies tokens under one secret. It is safe for concurrent use.
type Signer struct {
	secret []byte
	now    func() time.Time
}

// New returns a Signer for secret, which must be at least MinSecretLen bytes.
func New(secret []byte, cfg Config) (*Signer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("session: the secret must be at least %d bytes", MinSecretLen)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Signer{secret: append([]byte(nil), secret...), now: now}, nil
}

// validUser reports whether id can be a token's subject: a user ID that the
// dashboard's queries may take, non-empty UTF-8 text without NUL bytes.
func validUser(id string) bool {
	return id != "" && utf8.ValidString(id) && !strings.ContainsRune(id, 0)
}

// Issue returns a token for userID that expires ttl from now. userID must be
// non-empty UTF-8 text without NUL bytes.
func (s *Signer) Issue(userID string, ttl time.Duration) (string, error) {
	if !validUser(userID) {
		return "", errors.New("session: the user ID must be non-empty UTF-8 text without NUL bytes")
	}
	if ttl <= 0 {
		return "", errors.New("session: the lifetime must be positive")
	}
	now := s.now()
	claims := jwt.RegisteredClaims{
		Issuer:    Issuer,
		Subject:   userID,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.secret)
	if err != nil {
		return "", fmt.Errorf("session: sign: %w", err)
	}
	return tok, nil
}

// Verify returns the user ID of a valid token, or ErrInvalid. Only HS256 under the
// Signer's secret is accepted, a token must carry an expiry, and its subject must
// be a user ID Issue accepts, so that no NUL byte reaches a query.
func (s *Signer) Verify(token string) (string, error) {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims,
		func(*jwt.Token) (any, error) { return s.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(Issuer),
		jwt.WithTimeFunc(s.now),
	)
	if err != nil || !validUser(claims.Subject) {
		return "", ErrInvalid
	}
	return claims.Subject, nil
}
