package pqnotify_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/apikey/memstore"
	"github.com/releaseradar/tollgate/apikey/pqnotify"
	"github.com/releaseradar/tollgate/apikey/sqlstore"
)

// A replica wires its Authenticator to the channel on which apikey/sqlstore
// announces changed keys. Here the database cannot be reached when the replica
// starts: Listen says so at once, and the Authenticator keeps its channel down,
// serving no cache entry older than its FallbackTTL. A real replica would use
// its sqlstore.Store on the same database, and stop the listener at shutdown.
func Example() {
	auth := apikey.NewAuthenticator(memstore.New(), apikey.Config{})
	logger := slog.New(slog.DiscardHandler)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stop, err := pqnotify.Listen(ctx, "postgres://tollgate@127.0.0.1:1/tollgate?sslmode=disable", sqlstore.DefaultChannel,
		func(hashes []string) { auth.Forget(hashes...) }, // nil: forget everything
		auth.SetChannel, logger)
	if err != nil {
		fmt.Println("no change channel:", err != nil)
	} else {
		defer stop()
	}
	fmt.Println("channel up:", auth.Stats().ChannelUp)
	// Output:
	// no change channel: true
	// channel up: false
}
