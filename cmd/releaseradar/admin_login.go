package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/loginlink"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
)

// linkSessionTTL is the lifetime of the session that a sign-in link opens, as
// long as `admin token`'s default.
const linkSessionTTL = 24 * time.Hour

// loginLinkCommand runs `releaseradar admin login-link --user ID [--ttl 15m]`: it
// prints, alone on stdout, a URL that signs the user in to the account page once
// before ttl has passed. The token is random, and the database keeps only its
// hash.
func loginLinkCommand(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("releaseradar admin login-link", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.String("user", "", "user ID")
	ttl := fs.Duration("ttl", 15*time.Minute, "how long the link can be used")
	bad, code := parseAdmin(fs, args, stderr)
	if code >= 0 {
		return code
	}
	if msg := requireUser(*user); msg != "" {
		return bad(msg)
	}
	if *ttl <= 0 || *ttl > loginlink.MaxTTL {
		return bad("--ttl must be positive and at most %s, such as 15m", loginlink.MaxTTL)
	}
	return withApp(stderr, getenv, func(ctx context.Context, cfg config, a *app) int {
		return printLoginLink(ctx, a, cfg.PublicURL, *user, *ttl, stdout, stderr)
	})
}

// printLoginLink creates a sign-in link and prints it, alone, on stdout.
func printLoginLink(ctx context.Context, a *app, publicURL, user string, ttl time.Duration, stdout, stderr io.Writer) int {
	token, expires, err := a.loginLinks().Create(ctx, user, ttl)
	if err != nil {
		fmt.Fprintln(stderr, "releaseradar admin login-link:", err)
		return 1
	}
	fmt.Fprintf(stderr, "sign-in link for %s, usable once until %s\n", user, expires.Format(time.RFC3339))
	fmt.Fprintln(stdout, publicURL+web.LoginPath+"?"+url.Values{"token": {token}}.Encode())
	return 0
}

// loginLinks returns the store of sign-in links on the app's database. A Store is
// a handle and a clock, cheap to make.
func (a *app) loginLinks() *loginlink.Store {
	return loginlink.New(a.db, loginlink.Config{Now: a.clock})
}

// signInLink is the account page's web.Config.Login: it spends the link of token
// and opens a dashboard session for its user. A link that is unknown, used or
// expired is loginlink.ErrInvalid.
func (a *app) signInLink(ctx context.Context, token string) (session string, err error) {
	user, err := a.loginLinks().Consume(ctx, token)
	if err != nil {
		return "", err
	}
	return a.signer.Issue(user, linkSessionTTL)
}
