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
	"text/tabwriter"
	"time"

	"github.com/releaseradar/tollgate/apikey"
	"github.com/releaseradar/tollgate/entitlement"
)

// adminLines are the admin commands' usage lines; the plans come from the catalog.
var adminLines = `  releaseradar admin grant --user ID --plan ` + strings.Join(paidPlans(defaultCatalog()), "|") + ` [--limit N]
  releaseradar admin token --user ID [--ttl 24h]
  releaseradar admin revoke --user ID
  releaseradar admin login-link --user ID [--ttl 15m]
  releaseradar admin usage [--user ID] [--from DATE] [--to DATE]`

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
	case "login-link":
		return loginLinkCommand(args, stdout, stderr, getenv)
	case "usage":
		return usageCommand(args, stdout, stderr, getenv)
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
	bad, code := parseAdmin(fs, args, stderr)
	if code >= 0 {
		return code
	}
	if msg := requireUser(*user); msg != "" {
		return bad(msg)
	}
	switch {
	case plan != nil && !slices.Contains(paidPlans(defaultCatalog()), *plan):
		return bad("--plan must be %s", strings.Join(paidPlans(defaultCatalog()), " or "))
	case limit != nil && *limit <= 0 && flagSet(fs, "limit"):
		return bad("--limit must be a positive number")
	case ttl != nil && *ttl <= 0:
		return bad("--ttl must be positive, such as 24h")
	}
	return withApp(stderr, getenv, func(ctx context.Context, _ config, a *app) int {
		return runAdmin(ctx, a, sub, *user, plan, limit, ttl, stdout, stderr)
	})
}

// runAdmin runs grant, token or revoke on an open app.
func runAdmin(ctx context.Context, a *app, sub, user string, plan *string, limit *int64, ttl *time.Duration, stdout, stderr io.Writer) int {
	switch sub {
	case "grant":
		raw, err := a.ent.Grant(ctx, user, *plan, *limit)
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
		tok, err := a.signer.Issue(user, *ttl)
		if err != nil {
			fmt.Fprintln(stderr, "releaseradar admin token:", err)
			return 1
		}
		fmt.Fprintf(stderr, "dashboard token for %s, valid for %s\n", user, *ttl)
		fmt.Fprintln(stdout, tok)
	case "revoke":
		n, err := a.ent.Revoke(ctx, user)
		if err != nil {
			fmt.Fprintln(stderr, "releaseradar admin revoke:", err)
			return 1
		}
		fmt.Fprintf(stderr, "revoked %d key(s) of %s\n", n, user)
	}
	return 0
}

// usageDays is the period `admin usage` reports without --from: 30 days up to
// today.
const usageDays = 30

// usageCommand runs `releaseradar admin usage [--user ID] [--from DATE] [--to
// DATE]`: for each user (or the one named) it prints the calls the usage ledger
// counted from the start of --from to the end of --to (UTC days; by default the
// last 30 days up to today) against the calls reported to the Stripe Billing
// Meter. Once the reporter has caught up, served equals reported + unbilled +
// abandoned; unclaimed counts the calls of minutes not reported yet.
func usageCommand(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("releaseradar admin usage", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.String("user", "", "user ID (default: every user)")
	fromFlag := fs.String("from", "", "first day, YYYY-MM-DD (UTC)")
	toFlag := fs.String("to", "", "last day, YYYY-MM-DD (UTC; default today)")
	bad, code := parseAdmin(fs, args, stderr)
	if code >= 0 {
		return code
	}
	var from, to time.Time
	for _, d := range []struct {
		name string
		v    string
		t    *time.Time
	}{{"--from", *fromFlag, &from}, {"--to", *toFlag, &to}} {
		if d.v == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, d.v)
		if err != nil {
			return bad("%s must be a date such as 2026-05-01", d.name)
		}
		*d.t = t
	}
	if to.IsZero() {
		to = time.Now().UTC().Truncate(24 * time.Hour)
	}
	if from.IsZero() {
		from = to.AddDate(0, 0, 1-usageDays)
	}
	switch {
	case flagSet(fs, "user") && requireUser(*user) != "":
		return bad(requireUser(*user))
	case to.Before(from):
		return bad("--to is before --from")
	}
	return withApp(stderr, getenv, func(ctx context.Context, _ config, a *app) int {
		return reportUsage(ctx, a, *user, from, to, stdout, stderr)
	})
}

// reportUsage prints the usage table of user ("" for every user) from the start
// of from to the end of to.
func reportUsage(ctx context.Context, a *app, user string, from, to time.Time, stdout, stderr io.Writer) int {
	totals, err := a.ents.Totals(ctx, user, from, to.AddDate(0, 0, 1))
	if err != nil {
		fmt.Fprintln(stderr, "releaseradar admin usage:", err)
		return 1
	}
	writeUsage(stdout, totals)
	var behind int64
	for _, t := range totals {
		behind += t.Unclaimed() + t.Pending
	}
	fmt.Fprintf(stderr, "calls served and reported to Stripe from %s to %s (UTC), %d user(s)", from.Format(time.DateOnly), to.Format(time.DateOnly), len(totals))
	if behind > 0 {
		fmt.Fprintf(stderr, "; %d call(s) not reported yet (unclaimed or pending)", behind)
	}
	fmt.Fprintln(stderr)
	return 0
}

// writeUsage prints totals as a table, one user a line, and their sum.
func writeUsage(w io.Writer, totals []entitlement.UsageTotal) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "user\tserved\treported\tpending\tunbilled\tabandoned\tunclaimed")
	var sum entitlement.UsageTotal
	line := func(name string, t entitlement.UsageTotal) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\n", name, t.Served, t.Reported, t.Pending, t.Unbilled, t.Abandoned, t.Unclaimed())
	}
	for _, t := range totals {
		line(t.UserID, t)
		sum.Served += t.Served
		sum.Reported += t.Reported
		sum.Pending += t.Pending
		sum.Unbilled += t.Unbilled
		sum.Abandoned += t.Abandoned
	}
	line("total", sum)
	tw.Flush()
}

// parseAdmin parses an admin command's flags. It returns the function that
// refuses a bad command line (usage on stderr, exit code 2), and the exit code
// to stop with, or -1 when the command line parsed and holds no argument.
func parseAdmin(fs *flag.FlagSet, args []string, stderr io.Writer) (bad func(format string, a ...any) int, code int) {
	bad = func(format string, a ...any) int {
		fmt.Fprintf(stderr, "%s: %s\n%s\n", fs.Name(), fmt.Sprintf(format, a...), adminUsage)
		return 2
	}
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stderr, adminUsage)
		return bad, 2
	case err != nil:
		return bad, bad("%v", err)
	case fs.NArg() > 0:
		return bad, bad("unexpected argument %q", fs.Arg(0))
	}
	return bad, -1
}

// requireUser returns what is wrong with a --user value, or "".
func requireUser(user string) string {
	switch {
	case strings.TrimSpace(user) == "":
		return "--user is required"
	case len(user) > 200:
		return "--user is longer than 200 characters"
	}
	return ""
}

// withApp opens the app on the environment's settings, runs f on it and closes
// it; f's result is the exit code (1 when the app does not open). SIGINT and
// SIGTERM cancel f's context.
func withApp(stderr io.Writer, getenv func(string) string, f func(ctx context.Context, cfg config, a *app) int) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg, err := loadConfig(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "releaseradar:", err)
		return 1
	}
	a, err := openApp(ctx, cfg, newLogger(stderr, cfg.LogFormat), hooks{})
	if err != nil {
		fmt.Fprintln(stderr, "releaseradar:", err)
		return 1
	}
	defer a.Close()
	return f(ctx, cfg, a)
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
