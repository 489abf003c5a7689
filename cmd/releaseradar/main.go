// Command releaseradar is the ReleaseRadar API served through tollgate.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite"

	"github.com/releaseradar/tollgate/internal/sqldb"
)

func main() {
	url := env("RR_DATABASE_URL", "sqlite:releaseradar.db")
	path, ok := strings.CutPrefix(url, "sqlite:")
	if !ok {
		fmt.Fprintln(os.Stderr, "releaseradar: RR_DATABASE_URL: only sqlite: is supported yet")
		os.Exit(1)
	}
	db, err := sqlx.Open("sqlite", sqldb.SQLiteDSN(path))
	if err != nil {
		fmt.Fprintln(os.Stderr, "releaseradar: RR_DATABASE_URL:", err)
		os.Exit(1)
	}
	if err := sqldb.Bootstrap(context.Background(), db, sqldb.KeysTable); err != nil {
		fmt.Fprintln(os.Stderr, "releaseradar: RR_DATABASE_URL:", err)
		os.Exit(1)
	}
	addr := env("RR_ADDR", "127.0.0.1:8501")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	slog.Info("releaseradar listening", "addr", "http://"+addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Fprintln(os.Stderr, "releaseradar:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
