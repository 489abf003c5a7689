package loginlink_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // the SQLite driver, for the example

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/loginlink"
	"github.com/releaseradar/tollgate/internal/sqldb"
)

// An operator makes a link for a user; the first visit signs them in, a second
// one is refused.
func Example() {
	dir, _ := os.MkdirTemp("", "loginlink-example-")
	defer os.RemoveAll(dir)
	db, err := sqlx.Open("sqlite", sqldb.SQLiteDSN(filepath.Join(dir, "links.db")))
	if err != nil {
		panic(err)
	}
	defer db.Close()

	ctx := context.Background()
	links := loginlink.New(db, loginlink.Config{})
	if err := links.Bootstrap(ctx); err != nil {
		panic(err)
	}
	token, _, err := links.Create(ctx, "alice", 15*time.Minute)
	if err != nil {
		panic(err)
	}
	fmt.Println("token characters:", len(token))

	user, err := links.Consume(ctx, token)
	fmt.Println("first visit:", user, err)
	_, err = links.Consume(ctx, token)
	fmt.Println("second visit refused:", errors.Is(err, loginlink.ErrInvalid))
	// Output:
	// token characters: 43
	// first visit: alice <nil>
	// second visit refused: true
}
