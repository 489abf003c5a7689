package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/testenv"
)

func TestCommandUsageErrors(t *testing.T) {
	t.Parallel()
	env := envOf("RR_DATABASE_URL", "sqlite:"+t.TempDir()+"/never.db")
	tests := [][]string{
		{"frobnicate"},
		{"admin"},
		{"admin", "frobnicate"},
		{"admin", "grant"},
		{"admin", "grant", "--user", "a"},
		{"admin", "grant", "--user", "a", "--plan", "gold"},
		{"admin", "grant", "--user", "a", "--plan", "public"},
		{"admin", "grant", "--user", "a", "--plan", "pro", "--limit", "0"},
		{"admin", "grant", "--user", "a", "--plan", "pro", "--limit", "-5"},
		{"admin", "grant", "--user", "a", "--plan", "pro", "--limit", "many"},
		{"admin", "grant", "--user", "a", "--plan", "pro", "extra"},
		{"admin", "grant", "--user", "a", "--plan", "pro", "--bogus"},
		{"admin", "token"},
		{"admin", "token", "--user", "a", "--ttl", "soon"},
		{"admin", "token", "--user", "a", "--ttl", "-1h"},
		{"admin", "revoke"},
		{"admin", "revoke", "--user", " "},
		{"admin", "usage", "--from", "yesterday"},
		{"admin", "usage", "--to", "2026-13-01"},
		{"admin", "usage", "--from", "2026-05-02", "--to", "2026-05-01"},
		{"admin", "usage", "--user", ""},
		{"admin", "usage", "extra"},
		{"serve", "--no-such-flag"},
		{"serve", "extra"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr, env); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			if !strings.Contains(stderr.String(), "usage") && !strings.Contains(stderr.String(), "Usage") {
				t.Errorf("stderr has no usage line: %s", stderr.String())
			}
		})
	}
}

func TestStartupErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"serve"}, []string{"RR_PLAN_RATES", "pro=lots"}, "RR_PLAN_RATES"},
		{[]string{"serve"}, []string{"RR_DATABASE_URL", "mysql://x"}, "RR_DATABASE_URL"},
		{[]string{"serve"}, []string{"RR_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"}, "RR_DATABASE_URL"},
		{[]string{"serve"}, []string{"RR_DATABASE_URL", "sqlite:" + t.TempDir() + "/no/such/dir/x.db"}, "RR_DATABASE_URL"},
		{[]string{"admin", "token", "--user", "a"}, []string{"RR_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"}, "RR_DATABASE_URL"},
		{[]string{"admin", "token", "--user", "a"}, []string{"RR_LOG_FORMAT", "yaml"}, "RR_LOG_FORMAT"},
	}
	for _, tc := range tests {
		t.Run(tc.want+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr, envOf(tc.env...)); code != 1 {
				t.Fatalf("exit %d, want 1; stderr %s", code, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "releaseradar: "+tc.want+": ") {
				t.Fatalf("stderr %q: want one line naming %s", stderr.String(), tc.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q", stdout.String())
			}
		})
	}
}

// TestAdminCommands runs grant, token and revoke in process on SQLite: the key or
// token alone on stdout, everything else on stderr.
func TestAdminCommands(t *testing.T) {
	t.Parallel()
	env := envOf("RR_DATABASE_URL", "sqlite:"+testenv.SQLitePath(t))
	admin := func(args ...string) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"admin"}, args...), &stdout, &stderr, env); code != 0 {
			t.Fatalf("admin %v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String(), stderr.String()
	}

	out, msg := admin("grant", "--user", "alice", "--plan", "team", "--limit", "7")
	raw := strings.TrimSuffix(out, "\n")
	if !strings.HasPrefix(raw, "rr_live_") || strings.ContainsAny(raw, " \n") {
		t.Fatalf("grant stdout %q: want the raw key alone", out)
	}
	if strings.Contains(msg, raw) || !strings.Contains(msg, "team") || !strings.Contains(msg, "7 calls") {
		t.Fatalf("grant stderr %q", msg)
	}

	out, _ = admin("token", "--user", "alice", "--ttl", "1h")
	token := strings.TrimSuffix(out, "\n")
	if strings.Count(token, ".") != 2 || strings.ContainsAny(token, " \n") {
		t.Fatalf("token stdout %q: want a JWT alone", out)
	}
	// A second command reads the same generated secret from the database.
	a := openTestApp(t, env)
	if user, err := a.signer.Verify(token); err != nil || user != "alice" {
		t.Fatalf("Verify = %q, %v", user, err)
	}

	out, msg = admin("revoke", "--user", "alice")
	if out != "" || !strings.Contains(msg, "revoked 1 key") {
		t.Fatalf("revoke: stdout %q stderr %q", out, msg)
	}
	keys, err := a.keys.ListByUser(t.Context(), "alice")
	if err != nil || len(keys) != 1 || keys[0].Active() {
		t.Fatalf("after revoke: %+v, %v", keys, err)
	}
}

// TestAdminUsage prints the ledger's calls against the reported ones, per user
// and in total, for the period and user asked.
func TestAdminUsage(t *testing.T) {
	t.Parallel()
	env := envOf("RR_DATABASE_URL", "sqlite:"+testenv.SQLitePath(t))
	a := openTestApp(t, env)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	err := a.ents.Record(t.Context(), "", []entitlement.UsageRecord{
		{KeyID: "key_a", UserID: "alice", Bucket: today.Add(time.Hour), Calls: 5},
		{KeyID: "key_b", UserID: "bob", Bucket: today.AddDate(0, 0, -40), Calls: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	usage := func(args ...string) []string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"admin", "usage"}, args...), &stdout, &stderr, env); code != 0 {
			t.Fatalf("admin usage %v: exit %d: %s", args, code, stderr.String())
		}
		var rows []string
		for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
			rows = append(rows, strings.Join(strings.Fields(line), " "))
		}
		return rows
	}
	want := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("admin usage printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	const header = "user served reported pending unbilled abandoned unclaimed"
	want(usage(), header, "alice 5 0 0 0 0 5", "total 5 0 0 0 0 5")
	old := today.AddDate(0, 0, -40).Format(time.DateOnly)
	want(usage("--from", old, "--to", old), header, "bob 3 0 0 0 0 3", "total 3 0 0 0 0 3")
	want(usage("--user", "bob", "--from", old), header, "bob 3 0 0 0 0 3", "total 3 0 0 0 0 3")
	want(usage("--user", "carol"), header, "total 0 0 0 0 0 0")
}

func openTestApp(t *testing.T, getenv func(string) string) *app {
	t.Helper()
	cfg, err := loadConfig(getenv)
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(t.Context(), cfg, newLogger(&bytes.Buffer{}, "text"), hooks{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}
