// Command releaseradar is the ReleaseRadar API served through tollgate: API keys,
// monthly quotas, per-plan burst limits and Stripe billing in front of a
// market-events data set.
//
// Usage:
//
//	releaseradar [serve] [flags]                            run the server (the default)
//	releaseradar admin grant --user ID --plan pro|team [--limit N]
//	releaseradar admin token --user ID [--ttl 24h]
//	releaseradar admin revoke --user ID
//	releaseradar admin login-link --user ID [--ttl 15m]
//	releaseradar admin usage [--user ID] [--from DATE] [--to DATE]
//
// Every setting is an environment variable (RR_ADDR, RR_DATABASE_URL, …; see the
// README); serve's flags mirror them.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

var usage = `usage:
  releaseradar [serve] [flags]                          run the server (the default)
` + adminLines + `
Run "releaseradar serve -h" for the settings.`

// run executes the command in args and returns the process's exit status: 0, 1
// for a failure, 2 for a usage error.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveCommand(args, stderr, getenv)
	case "admin":
		return adminCommand(args, stdout, stderr, getenv)
	case "help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "releaseradar: unknown command %q\n%s\n", cmd, usage)
		return 2
	}
}
