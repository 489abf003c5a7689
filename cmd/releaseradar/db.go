package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"    // PostgreSQL driver
	_ "modernc.org/sqlite" // SQLite driver, pure Go

	"github.com/releaseradar/tollgate/internal/sqldb"
)

// dbTarget is a parsed RR_DATABASE_URL.
type dbTarget struct {
	driver, dsn string
}

// parseDatabaseURL turns `sqlite:PATH` or `postgres://…` into a driver name and DSN.
// A Postgres URL is passed through unchanged, so parameters such as search_path
// reach the server.
func parseDatabaseURL(s string) (dbTarget, error) {
	if path, ok := strings.CutPrefix(s, "sqlite:"); ok {
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return dbTarget{}, errors.New("sqlite: needs a file path, such as sqlite:releaseradar.db")
		}
		if strings.ContainsAny(path, "?#") {
			return dbTarget{}, errors.New("sqlite: the path may not hold '?' or '#'")
		}
		return dbTarget{driver: "sqlite", dsn: sqldb.SQLiteDSN(path)}, nil
	}
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		if _, err := url.Parse(s); err != nil {
			return dbTarget{}, errors.New("not a valid postgres:// URL")
		}
		return dbTarget{driver: "postgres", dsn: s}, nil
	}
	return dbTarget{}, errors.New("want sqlite:PATH or postgres://USER@HOST:PORT/DB")
}

// openDB opens the database of RR_DATABASE_URL and checks that it answers.
func openDB(ctx context.Context, rawURL string, timeout time.Duration) (*sqlx.DB, error) {
	t, err := parseDatabaseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var db *sqlx.DB
	if t.driver == "postgres" {
		connector, err := pq.NewConnector(t.dsn)
		if err != nil {
			return nil, err
		}
		connector.Dialer(deadlineDialer{timeout: timeout})
		db = sqlx.NewDb(sql.OpenDB(connector), "postgres")
	} else if db, err = sqlx.Open(t.driver, t.dsn); err != nil {
		return nil, err
	}
	// The stores size the pool themselves (sqldb.Tune): a bounded PostgreSQL pool,
	// and on SQLite one writer at a time with readers beside it.
	sqldb.Tune(db)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot reach the database: %w", err)
	}
	return db, nil
}

// deadlineDialer dials PostgreSQL with connections that give up on a read or a
// write that waits longer than timeout (RR_REQUEST_TIMEOUT). lib/pq answers a
// request's expired context by asking the server to cancel and then waiting for
// its reply on the socket, however slow the network; with these deadlines the
// wait ends within the request's bound, the connection is dropped, and the
// request is answered 503.
type deadlineDialer struct{ timeout time.Duration }

func (d deadlineDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d deadlineDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d deadlineDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, err := (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return deadlineConn{Conn: c, timeout: d.timeout}, nil
}

// deadlineConn sets a deadline before each read and write.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c deadlineConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c deadlineConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// settingsTable keeps the server's generated secrets, so that every replica and
// every admin command agrees on them.
var settingsTable = sqldb.Table{
	Name: "rr_settings",
	Create: `CREATE TABLE IF NOT EXISTS rr_settings (
	name TEXT PRIMARY KEY,
	value TEXT NOT NULL
)`,
}

// sessionSecretSetting names the generated dashboard secret in rr_settings.
const sessionSecretSetting = "session_secret"

// storedSecret returns the secret called name from rr_settings, creating 32 random
// bytes the first time. Concurrent first calls from several processes agree.
func storedSecret(ctx context.Context, db *sqlx.DB, name string) ([]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	insert := db.Rebind(`INSERT INTO rr_settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`)
	if _, err := db.ExecContext(ctx, insert, name, hex.EncodeToString(b[:])); err != nil {
		return nil, fmt.Errorf("store the %s: %w", name, err)
	}
	var value string
	err := db.GetContext(ctx, &value, db.Rebind(`SELECT value FROM rr_settings WHERE name = ?`), name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("the %s vanished from rr_settings", name)
	}
	if err != nil {
		return nil, fmt.Errorf("read the %s: %w", name, err)
	}
	secret, err := hex.DecodeString(value)
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("rr_settings holds a malformed %s", name)
	}
	return secret, nil
}
