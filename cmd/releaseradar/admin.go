package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/releaseradar/tollgate/apikey"
)

// adminLines are the admin commands' usage lines; the plans come from the catalog.
var adminLines = `  releaseradar admin grant --user ID --plan ` + strings.Join(paidPlans(defaultCatalog()), "|") + ` [--limit N]
  releaseradar admin token --user ID [--ttl 24h]
  releaseradar admin revoke --user ID`

var adminUsage = "usage:\n" + adminLines

// adminCommand runs `releaseradar admin …`. Only the result (a raw key or a
// token) goes to stdout; messages go to stderr.
func adminCommand(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, adminUsage)
		return 2
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("releaseradar admin "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.String("user", "", "user ID")
	var (
		plan  *string
		limit *int64
		ttl   *time.Duration
	)
	switch sub {
	case "grant":
		plan = fs.String("plan", "", "plan to grant: "+strings.Join(paidPlans(defaultCatalog()), " or "))
		limit = fs.Int64("limit", 0, "monthly call limit (default: the plan's)")
	case "token":
		ttl = fs.Duration("ttl", 24*time.Hour, "token lifetime")
	case "revoke":
	default:
		fmt.Fprintf(stderr, "releaseradar admin: unknown command %q\n%s\n", sub, adminUsage)
		return 2
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "releaseradar admin %s: %s\n%s\n", sub, fmt.Sprintf(format, a...), adminUsage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, adminUsage)
			return 2
		}
		return bad("%v", err)
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q", fs.Arg(0))
	case strings.TrimSpace(*user) == "":
		return bad("--user is required")
	case len(*user) > 200:
		return bad("--user is longer than 200 characters")
	case plan != nil && !slices.Contains(paidPlans(defaultCatalog()), *plan):
		return bad("--plan must be %s", strings.Join(paidPlans(defaultCatalog()), " or "))
	case limit != nil && *limit <= 0 && flagSet(fs, "limit"):
		return bad("--limit must be a positive number")
	case ttl != nil && *ttl <= 0:
		return bad("--ttl must be positive, such as 24h")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := loadConfig(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "releaseradar:", err)
		return 1
	}
	log := newLogger(stderr, cfg.LogFormat)
	a, err := openApp(ctx, cfg, log, hooks{})
	if err != nil {
		fmt.Fprintln(stderr, "releaseradar:", err)
		return 1
	}
	defer a.Close()

	switch sub {
	case "grant":
		raw, err := a.ent.Grant(ctx, *user, *plan, *limit)
		if err != nil {
			fmt.Fprintln(stderr, "releaseradar admin grant:", err)
			return 1
		}
		if k, err := a.keys.ByHash(ctx, apikey.Hash(raw)); err == nil {
			u, _ := a.quotas.Usage(ctx, k.QuotaID, a.now())
			fmt.Fprintf(stderr, "granted %s to %s: key %s (%s), %d calls a cycle; earlier keys revoked\n",
				k.Plan, k.UserID, k.ID, k.Masked(), u.Limit)
		}
		fmt.Fprintln(stdout, raw)
	case "token":
		tok, err := a.signer.Issue(*user, *ttl)
		if err != nil {
			fmt.Fprintln(stderr, "releaseradar admin token:", err)
			return 1
		}
		fmt.Fprintf(stderr, "dashboard token for %s, valid for %s\n", *user, *ttl)
		fmt.Fprintln(stdout, tok)
	case "revoke":
		n, err := a.ent.Revoke(ctx, *user)
		if err != nil {
			fmt.Fprintln(stderr, "releaseradar admin revoke:", err)
			return 1
		}
		fmt.Fprintf(stderr, "revoked %d key(s) of %s\n", n, *user)
	}
	return 0
}

// newLogger returns the process's logger on w in the RR_LOG_FORMAT format.
func newLogger(w io.Writer, format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// flagSet reports whether the flag called name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
