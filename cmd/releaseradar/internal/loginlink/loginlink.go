// Package loginlink keeps the account page's single-use sign-in links: a random
// token, handed out once inside a URL and stored only as its SHA-256 hash, that
// names one user and signs them in once before it expires.
//
// Links live in the table rr_login_links of a PostgreSQL (lib/pq) or SQLite
// (modernc.org/sqlite) database, which Bootstrap creates. The package imports no
// driver. Consume spends a link in one statement (UPDATE … RETURNING), so of two
// requests racing with one link exactly one signs in, on one process or many.
package loginlink

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/internal/problem"
	"github.com/releaseradar/tollgate/internal/sqldb"
)

// ErrInvalid: the token names no link that can still be used: it is malformed,
// unknown, used already or expired (HTTP 401; the account page answers it with a
// redirect instead).
var ErrInvalid = problem.New(problem.BadSession, "loginlink: sign-in link unknown, used or expired")

const (
	// TokenLen is the length of a token: 32 random bytes, unpadded base64url.
	TokenLen = 43
	// MaxTTL is the longest lifetime Create accepts.
	MaxTTL = 7 * 24 * time.Hour
	// Retention is how long a link's row outlives its expiry before Create
	// deletes it.
	Retention = 24 * time.Hour
)

// table is rr_login_links: a link's token hash (hex SHA-256), its user, when it
// was made, when it expires and when it was used (NULL until then).
var table = sqldb.Table{
	Name: "rr_login_links",
	Create: `CREATE TABLE IF NOT EXISTS rr_login_links (
	hash TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	created_at TIMESTAMP NOT NULL,
	expires_at TIMESTAMP NOT NULL,
	used_at TIMESTAMP NULL
)`,
	Indexes: []string{`CREATE INDEX IF NOT EXISTS rr_login_links_expires ON rr_login_links (expires_at)`},
}

// Config holds a Store's optional settings. The zero value is usable.
type Config struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Store creates and consumes sign-in links. It holds nothing but the database
// handle and a clock, so making one is cheap. It is safe for concurrent use.
type Store struct {
	db      *sqlx.DB
	now     func() time.Time
	insert  string
	prune   string
	consume string
}

// New returns a Store on db. Like tollgate's SQL stores it bounds an unbounded
// pool (sqldb.Tune).
func New(db *sqlx.DB, cfg Config) *Store {
	sqldb.Tune(db)
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Store{
		db:     db,
		now:    now,
		insert: db.Rebind(`INSERT INTO rr_login_links (hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`),
		prune:  db.Rebind(`DELETE FROM rr_login_links WHERE expires_at < ?`),
		consume: db.Rebind(`UPDATE rr_login_links SET used_at = ?
			WHERE hash = ? AND used_at IS NULL AND expires_at > ? RETURNING user_id`),
	}
}

// Bootstrap creates the table and its index when they are missing. It is
// idempotent and safe to run from several processes at once.
func (s *Store) Bootstrap(ctx context.Context) error {
	if err := sqldb.Bootstrap(ctx, s.db, table); err != nil {
		return fmt.Errorf("loginlink: bootstrap: %w", err)
	}
	return nil
}

// Create makes a link for userID that can be used once until ttl from now, and
// returns its token, which is stored only as its hash: it cannot be read back.
// userID must be non-empty UTF-8 text without NUL bytes, ttl positive and at most
// MaxTTL. Create also deletes links that expired more than Retention ago.
func (s *Store) Create(ctx context.Context, userID string, ttl time.Duration) (token string, expiresAt time.Time, err error) {
	if userID == "" || !utf8.ValidString(userID) || strings.ContainsRune(userID, 0) {
		return "", time.Time{}, errors.New("loginlink: the user ID must be non-empty UTF-8 text without NUL bytes")
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", time.Time{}, fmt.Errorf("loginlink: the lifetime must be positive and at most %s", MaxTTL)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("loginlink: random token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	now := sqldb.T(s.now())
	expires := sqldb.T(now.Add(ttl))
	err = sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		if _, err := q.ExecContext(ctx, s.prune, sqldb.T(now.Add(-Retention))); err != nil {
			return err
		}
		_, err := q.ExecContext(ctx, s.insert, hash(token), userID, now, expires)
		return err
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("loginlink: create: %w", err)
	}
	return token, expires.Time, nil
}

// Consume spends the link of token and returns its user. A token that is
// malformed, unknown, used already or expired (its expiry is not after now) is
// ErrInvalid; a malformed one never reaches the database. Any other error is the
// database's, wrapped.
func (s *Store) Consume(ctx context.Context, token string) (userID string, err error) {
	if !wellFormed(token) {
		return "", ErrInvalid
	}
	now := sqldb.T(s.now())
	err = sqldb.Write(ctx, s.db, func(q sqldb.Querier) error {
		return q.GetContext(ctx, &userID, s.consume, now, hash(token), now)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrInvalid
	}
	if err != nil {
		return "", fmt.Errorf("loginlink: consume: %w", err)
	}
	return userID, nil
}

// hash is what the table keeps of a token: its SHA-256, in hex.
func hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// wellFormed reports whether token could be one of Create's: TokenLen characters
// of the base64url alphabet.
func wellFormed(token string) bool {
	if len(token) != TokenLen {
		return false
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
