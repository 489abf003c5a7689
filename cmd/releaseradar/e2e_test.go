package main

// The acceptance test of issue 5: it builds the binary, starts it on free loopback
// ports, and checks the server from outside, as a client would, on SQLite and (with
// TOLLGATE_TEST_POSTGRES_URL and TOLLGATE_TEST_REDIS_URL) on PostgreSQL and Redis.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/openapi"
	"github.com/releaseradar/tollgate/internal/testenv"
)

const (
	e2eWebhookSecret = "whsec_e2e_test_secret"
	e2ePricePro      = "price_e2e_pro"
	e2eOrigin        = "https://app.example.test"
)

// buildBinary compiles the server once for every test of the package.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "releaseradar-e2e-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "releaseradar")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the server; skipped with -short")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := buildBinary(); err == nil && bin != "" {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

func TestAcceptanceSQLite(t *testing.T) {
	bin := binary(t)
	log := acceptance(t, bin, []string{"RR_DATABASE_URL=sqlite:" + testenv.SQLitePath(t)})
	if !strings.Contains(log, `"burst_counters":"in process"`) {
		t.Error("the server did not announce in-process burst counters")
	}
}

func TestAcceptancePostgresRedis(t *testing.T) {
	bin := binary(t)
	pg := testenv.PostgresURL(t)
	rdb, prefix := testenv.Redis(t)
	log := acceptance(t, bin, []string{
		"RR_DATABASE_URL=" + pg,
		"RR_REDIS_URL=" + testenv.RedisURL(t),
		"RR_REDIS_PREFIX=" + prefix,
	})
	if !strings.Contains(log, `"burst_counters":"shared through Redis"`) {
		t.Error("the server did not announce Redis burst counters")
	}
	// The counters live under the prefix, and the tables in the test's schema (the
	// URL's search_path): nothing leaked into shared namespaces.
	n := 0
	iter := rdb.Scan(t.Context(), 0, prefix+"*", 100).Iterator()
	for iter.Next(t.Context()) {
		n++
	}
	if err := iter.Err(); err != nil || n == 0 {
		t.Errorf("%d Redis keys under the test prefix (%v), want some", n, err)
	}
	var keys int
	if err := testenv.OpenPostgres(t, pg).Get(&keys, `SELECT count(*) FROM api_keys`); err != nil || keys == 0 {
		t.Errorf("api_keys in the test schema: %d, %v", keys, err)
	}
}

// instance is a running server.
type instance struct {
	t     *testing.T
	bin   string
	env   []string
	base  string // http://127.0.0.1:port
	admin string
	log   *testenv.Buffer
	cmd   *exec.Cmd
	gone  chan struct{} // closed when the process has exited
	// waitErr is the process's exit error, set before gone closes.
	waitErr error
	client  *http.Client
}

// baseEnv is the environment without any RR_ variable of the test runner's.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RR_") {
			env = append(env, kv)
		}
	}
	return env
}

// start runs the binary with env on free loopback ports and waits until it
// announces its addresses.
func start(t *testing.T, bin string, env []string) *instance {
	t.Helper()
	env = append(append(baseEnv(),
		"RR_ADDR=127.0.0.1:0",
		"RR_ADMIN_ADDR=127.0.0.1:0",
		"RR_LOG_FORMAT=json",
	), env...)
	in := &instance{
		t: t, bin: bin, env: env, log: &testenv.Buffer{}, gone: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second},
	}
	in.cmd = exec.Command(bin, "serve")
	in.cmd.Env = env
	in.cmd.Dir = t.TempDir()
	in.cmd.SysProcAttr = childAttr()
	stderr, err := in.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			in.log.Write([]byte(line + "\n"))
			var rec struct {
				Msg       string `json:"msg"`
				Addr      string `json:"addr"`
				AdminAddr string `json:"admin_addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "releaseradar listening" {
				addrs <- [2]string{rec.Addr, rec.AdminAddr}
			}
		}
		in.waitErr = in.cmd.Wait()
		close(in.gone)
	}()
	t.Cleanup(func() { in.stop(false) })
	select {
	case a := <-addrs:
		in.base, in.admin = "http://"+a[0], "http://"+a[1]
	case <-in.gone:
		t.Fatalf("server exited before listening: %v\n%s", in.waitErr, in.log)
	case <-time.After(90 * time.Second):
		t.Fatalf("server did not announce its address within 90 s\n%s", in.log)
	}
	return in
}

// stop sends SIGTERM and waits for a clean exit; strict fails the test otherwise.
func (in *instance) stop(strict bool) {
	select {
	case <-in.gone:
		return
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.gone:
		if strict && in.waitErr != nil {
			in.t.Errorf("server exit after SIGTERM: %v", in.waitErr)
		}
	case <-time.After(30 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.gone
		if strict {
			in.t.Error("server did not stop within 30 s of SIGTERM")
		}
	}
}

// admin runs `releaseradar admin args…` against the instance's database and
// returns its stdout, trimmed; its stderr joins the run's log.
func (in *instance) adminCmd(args ...string) string {
	in.t.Helper()
	out, code := in.adminRun(args...)
	if code != 0 {
		in.t.Fatalf("admin %v: exit %d\n%s", args, code, in.log)
	}
	return out
}

func (in *instance) adminRun(args ...string) (string, int) {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.bin, append([]string{"admin"}, args...)...)
	cmd.Env = in.env
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, in.log
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return strings.TrimSpace(stdout.String()), code
}

// response is a finished request.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) problem(t *testing.T) (status int, detail string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, r.body)
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Title == "" {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Status != r.status {
		t.Fatalf("problem status %d on a %d response", p.Status, r.status)
	}
	return p.Status, p.Detail
}

// do sends a request; headers are name, value pairs.
func (in *instance) do(method, url string, body []byte, headers ...string) response {
	in.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		in.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := in.client.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	in.checkContract(in.t, req, body, resp, b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// contract is the OpenAPI document's validator (internal/openapi), built once.
var contract = sync.OnceValues(openapi.NewValidator)

// checkContract fails t when the OpenAPI document does not allow the answer resp
// (whose body was body) to req (whose body was reqBody). Requests to the admin
// listener are not the public API's and are not checked.
func (in *instance) checkContract(t testing.TB, req *http.Request, reqBody []byte, resp *http.Response, body []byte) {
	t.Helper()
	if !strings.HasPrefix(req.URL.String(), in.base+"/") {
		return
	}
	v, err := contract()
	if err != nil {
		t.Errorf("the OpenAPI document: %v", err) // Errorf: callers may run on other goroutines
		return
	}
	if err := v.Validate(req, reqBody, resp, body); err != nil {
		t.Errorf("the OpenAPI document does not allow an answer: %v", err) // names the route, the status and the reason
	}
}

func (in *instance) get(path string, headers ...string) response {
	in.t.Helper()
	return in.do(http.MethodGet, in.base+path, nil, headers...)
}

// wantProblem checks a problem+json answer's status and detail ("" skips it).
func wantProblem(t *testing.T, name string, r response, status int, detail string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", name, r.status, status, r.body)
	}
	_, got := r.problem(t)
	if detail != "" && got != detail {
		t.Fatalf("%s: detail %q, want %q", name, got, detail)
	}
}

// keysList is the body of GET /keys.
type keysList struct {
	UserID string `json:"user_id"`
	Keys   []struct {
		ID               string  `json:"id"`
		Masked           string  `json:"masked"`
		Plan             string  `json:"plan"`
		Status           string  `json:"status"`
		MonthlyCallLimit int64   `json:"monthly_call_limit"`
		CallsUsed        int64   `json:"calls_used"`
		CycleStart       string  `json:"cycle_start"`
		CycleResetsAt    string  `json:"cycle_resets_at"`
		CreatedAt        string  `json:"created_at"`
		LastUsedAt       *string `json:"last_used_at"`
	} `json:"keys"`
	RevealPending bool `json:"reveal_pending"`
}

func (in *instance) keys(token string) keysList {
	in.t.Helper()
	r := in.get("/keys", "Authorization", "Bearer "+token)
	if r.status != http.StatusOK {
		in.t.Fatalf("GET /keys: %d %s", r.status, r.body)
	}
	var kl keysList
	if err := json.Unmarshal(r.body, &kl); err != nil {
		in.t.Fatalf("GET /keys body %s: %v", r.body, err)
	}
	return kl
}

var maskedKey = regexp.MustCompile(`^\*\*\*\*…[A-Za-z0-9_-]{4}$`)

// acceptance runs the eight checks of issue 5 against one server and returns the
// run's log.
func acceptance(t *testing.T, bin string, env []string) string {
	env = append(env,
		"RR_PLAN_RATES=pro=20-M",
		"RR_STRIPE_WEBHOOK_SECRET="+e2eWebhookSecret,
		"RR_STRIPE_PRICE_PRO="+e2ePricePro,
		"RR_CORS_ORIGINS="+e2eOrigin,
	)
	in := start(t, bin, env)
	var raws []string // every raw key the run saw; none may reach the log
	search := "/events/search?q=earnings"

	t.Run("1 missing and bad keys, public feed", func(t *testing.T) {
		wantProblem(t, "no key", in.get(search), 401, "Missing x-api-key")
		wantProblem(t, "bad key", in.get(search, "x-api-key", "bad"), 403, "Invalid or revoked API key")
		r := in.get("/events/public")
		if r.status != 200 {
			t.Fatalf("public feed: %d %s", r.status, r.body)
		}
		if cc := r.header.Get("Cache-Control"); cc != "public, max-age=120" {
			t.Errorf("public feed Cache-Control %q", cc)
		}
		if r.header.Get("X-RateLimit-Limit") != "30" {
			t.Errorf("public feed X-RateLimit-Limit %q, want 30 (plan public)", r.header.Get("X-RateLimit-Limit"))
		}
		n := countItems(t, r.body)
		if n == 0 || n > 50 {
			t.Fatalf("public feed holds %d items, want 1..50", n)
		}
		for _, internal := range []string{"ingest_id", "raw_source_url", "analyst_notes", "internal_confidence", "ingest.releaseradar.internal"} {
			if bytes.Contains(r.body, []byte(internal)) {
				t.Errorf("public feed shows internal field %q", internal)
			}
		}
	})

	t.Run("2 monthly quota", func(t *testing.T) {
		raw := in.adminCmd("grant", "--user", "quota-user", "--plan", "pro", "--limit", "3")
		raws = append(raws, raw)
		// Bad input is answered and spends nothing.
		r := in.get(search+"&limit=abc", "x-api-key", raw)
		wantProblem(t, "bad input", r, 400, `Invalid parameter "limit": must be an integer from 1 to 100`)
		if got := r.header.Get("X-Quota-Remaining"); got != "3" || r.header.Get("X-Quota-Limit") != "3" {
			t.Fatalf("bad input: X-Quota-Remaining %q, X-Quota-Limit %q; want 3, 3 (nothing spent)", got, r.header.Get("X-Quota-Limit"))
		}
		for i, want := range []string{"2", "1", "0"} {
			r := in.get(search, "x-api-key", raw)
			if r.status != 200 {
				t.Fatalf("call %d: %d %s", i+1, r.status, r.body)
			}
			if got := r.header.Get("X-Quota-Remaining"); got != want {
				t.Fatalf("call %d: X-Quota-Remaining %q, want %q", i+1, got, want)
			}
			if r.header.Get("X-Quota-Limit") != "3" || r.header.Get("X-Quota-Reset") == "" {
				t.Fatalf("call %d: quota headers %v", i+1, r.header)
			}
		}
		r = in.get(search, "x-api-key", raw)
		wantProblem(t, "fourth call", r, 429, "Monthly API quota exceeded")
		if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
		if r.header.Get("X-Quota-Remaining") != "0" {
			t.Fatalf("refusal X-Quota-Remaining %q", r.header.Get("X-Quota-Remaining"))
		}
	})

	t.Run("3 burst limit", func(t *testing.T) {
		raw := in.adminCmd("grant", "--user", "burst-user", "--plan", "pro")
		raws = append(raws, raw)
		const calls = 100
		var wg sync.WaitGroup
		statuses := make([]int, calls)
		details := make([]string, calls)
		for i := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest(http.MethodGet, in.base+search, nil)
				req.Header.Set("x-api-key", raw)
				resp, err := in.client.Do(req)
				if err != nil {
					statuses[i] = -1
					details[i] = err.Error()
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				in.checkContract(t, req, nil, resp, b)
				statuses[i] = resp.StatusCode
				var p struct{ Detail string }
				_ = json.Unmarshal(b, &p)
				details[i] = p.Detail
				if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
					details[i] = "no Retry-After"
				}
			}()
		}
		wg.Wait()
		ok, limited := 0, 0
		for i, s := range statuses {
			switch {
			case s == 200:
				ok++
			case s == 429 && details[i] == "Rate limit exceeded":
				limited++
			default:
				t.Errorf("call %d: status %d %q", i, s, details[i])
			}
		}
		if ok != 20 || limited != 80 {
			t.Fatalf("%d succeeded and %d were rate-limited; want 20 and 80", ok, limited)
		}
		token := in.adminCmd("token", "--user", "burst-user")
		kl := in.keys(token)
		if len(kl.Keys) != 1 || kl.Keys[0].CallsUsed != 20 {
			t.Fatalf("after the burst: %+v, want one key with calls_used 20", kl.Keys)
		}
	})

	t.Run("4 plan rank", func(t *testing.T) {
		body := []byte(`{"holdings":[{"ticker":"AAPL","weight":0.5}]}`)
		pro := in.adminCmd("grant", "--user", "rank-pro", "--plan", "pro")
		team := in.adminCmd("grant", "--user", "rank-team", "--plan", "team")
		raws = append(raws, pro, team)
		r := in.do(http.MethodPost, in.base+"/portfolio/impact", body, "x-api-key", pro, "Content-Type", "application/json")
		wantProblem(t, "pro key", r, 402, "Upgrade required for this endpoint")
		r = in.do(http.MethodPost, in.base+"/portfolio/impact", body, "x-api-key", team, "Content-Type", "application/json")
		if r.status != 200 {
			t.Fatalf("team key: %d %s", r.status, r.body)
		}
	})

	t.Run("5 rotation", func(t *testing.T) {
		old := in.adminCmd("grant", "--user", "rotate-user", "--plan", "pro")
		raws = append(raws, old)
		if r := in.get(search, "x-api-key", old); r.status != 200 {
			t.Fatalf("old key before rotation: %d %s", r.status, r.body)
		}
		token := in.adminCmd("token", "--user", "rotate-user")

		wantProblem(t, "bad token", in.get("/keys", "Authorization", "Bearer "+token+"x"), 401, "")
		wantProblem(t, "no token", in.get("/keys"), 401, "")
		cross := in.do(http.MethodPost, in.base+"/keys/rotate", nil,
			"Cookie", "rr_session="+token, "Origin", "https://evil.example")
		wantProblem(t, "cross-site cookie rotation", cross, 403, "")

		r := in.do(http.MethodPost, in.base+"/keys/rotate", nil, "Authorization", "Bearer "+token)
		if r.status != 200 {
			t.Fatalf("rotate: %d %s", r.status, r.body)
		}
		var nk struct{ Key string }
		if err := json.Unmarshal(r.body, &nk); err != nil || !strings.HasPrefix(nk.Key, "rr_live_") {
			t.Fatalf("rotate body %s", r.body)
		}
		raws = append(raws, nk.Key)
		wantProblem(t, "old key after rotation", in.get(search, "x-api-key", old), 403, "Invalid or revoked API key")
		if r := in.get(search, "x-api-key", nk.Key); r.status != 200 {
			t.Fatalf("new key: %d %s", r.status, r.body)
		}

		list := in.get("/keys", "Authorization", "Bearer "+token)
		for _, secret := range []string{old, nk.Key, hashOf(old), hashOf(nk.Key), "key_hash", "rr_live_"} {
			if bytes.Contains(list.body, []byte(secret)) {
				t.Fatalf("GET /keys shows %q: %s", secret, list.body)
			}
		}
		kl := in.keys(token)
		if kl.UserID != "rotate-user" || len(kl.Keys) != 2 {
			t.Fatalf("GET /keys: %+v, want rotate-user's two keys", kl)
		}
		active := 0
		for _, k := range kl.Keys {
			if !maskedKey.MatchString(k.Masked) {
				t.Errorf("masked %q", k.Masked)
			}
			if k.CycleResetsAt == "" || k.CreatedAt == "" || k.Plan != "pro" {
				t.Errorf("key view %+v", k)
			}
			if k.Status == "active" {
				active++
				if want := "****…" + nk.Key[len(nk.Key)-4:]; k.Masked != want {
					t.Errorf("active key masked %q, want %q", k.Masked, want)
				}
			}
		}
		if active != 1 {
			t.Fatalf("%d active keys, want 1", active)
		}
		// Another user's token sees none of these keys.
		other := in.keys(in.adminCmd("token", "--user", "someone-else"))
		if other.UserID != "someone-else" || len(other.Keys) != 0 {
			t.Fatalf("someone-else sees %+v", other)
		}
	})

	t.Run("6 webhook key revealed once", func(t *testing.T) {
		user := "stripe-user"
		now := time.Now().Unix()
		checkout := map[string]any{
			"id": "cs_test_e2e", "object": "checkout.session", "mode": "subscription", "status": "complete",
			"payment_status": "paid", "client_reference_id": user, "customer": "cus_e2e", "subscription": "sub_e2e",
		}
		sub := map[string]any{
			"id": "sub_e2e", "object": "subscription", "customer": "cus_e2e", "status": "active", "created": now,
			"items": map[string]any{"object": "list", "data": []any{map[string]any{
				"id": "si_e2e", "object": "subscription_item", "price": map[string]any{"id": e2ePricePro, "object": "price"},
			}}},
		}
		in.webhook(t, "evt_e2e_checkout", "checkout.session.completed", checkout, now)
		in.webhook(t, "evt_e2e_sub", "customer.subscription.created", sub, now)

		token := in.adminCmd("token", "--user", user)
		if kl := in.keys(token); !kl.RevealPending || len(kl.Keys) != 1 || kl.Keys[0].MonthlyCallLimit != 10000 {
			t.Fatalf("after checkout: %+v, want one pro key waiting to be revealed", kl)
		}
		r := in.do(http.MethodPost, in.base+"/keys/reveal", nil, "Authorization", "Bearer "+token)
		if r.status != 200 {
			t.Fatalf("first reveal: %d %s", r.status, r.body)
		}
		var nk struct{ Key string }
		if err := json.Unmarshal(r.body, &nk); err != nil || !strings.HasPrefix(nk.Key, "rr_live_") {
			t.Fatalf("reveal body %s", r.body)
		}
		raws = append(raws, nk.Key)
		if r := in.get(search, "x-api-key", nk.Key); r.status != 200 {
			t.Fatalf("revealed key: %d %s", r.status, r.body)
		}
		r = in.do(http.MethodPost, in.base+"/keys/reveal", nil, "Authorization", "Bearer "+token)
		if r.status != 404 && r.status != 410 {
			t.Fatalf("second reveal: %d %s, want 404 or 410", r.status, r.body)
		}
		r.problem(t)
		if in.keys(token).RevealPending {
			t.Fatal("a key is still pending after the reveal")
		}
	})

	t.Run("8 bad input", func(t *testing.T) {
		raw := in.adminCmd("grant", "--user", "fuzz-user", "--plan", "team")
		raws = append(raws, raw)
		long := strings.Repeat("a", 8000)
		for _, path := range []string{
			"/events/search?limit=abc",
			"/events/search?limit=0",
			"/events/search?limit=100000",
			"/events/search?from=notadate",
			"/events/search?to=2025-13-45",
			"/events/99999999",
			"/events/abc",
			"/impact/99999999",
			"/companies/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
			"/companies?q=" + long,
			"/events/search?q=" + long,
			"/events/search?ticker=%3Cb%3E",
		} {
			r := in.get(path, "x-api-key", raw)
			if r.status < 400 || r.status > 499 {
				t.Errorf("%.80s: status %d, want 4xx; body %.200s", path, r.status, r.body)
				continue
			}
			r.problem(t)
			if bytes.Contains(r.body, []byte("<script>")) {
				t.Errorf("%.80s: the body echoes markup: %s", path, r.body)
			}
		}
		for _, body := range []string{`{`, `{"holdings":[{"ticker":"AAPL","weight":"x"}]}`, `{"holdings":[]}`} {
			r := in.do(http.MethodPost, in.base+"/portfolio/impact", []byte(body), "x-api-key", raw, "Content-Type", "application/json")
			if r.status != 400 {
				t.Errorf("portfolio body %s: status %d, want 400", body, r.status)
				continue
			}
			r.problem(t)
		}
		big := []byte(`{"holdings":[{"ticker":"` + strings.Repeat("A", 100<<10) + `","weight":0.5}]}`)
		r := in.do(http.MethodPost, in.base+"/portfolio/impact", big, "x-api-key", raw, "Content-Type", "application/json")
		wantProblem(t, "100 KiB body", r, 413, "")
		wantProblem(t, "unknown route", in.get("/nowhere"), 404, "No such route")
		wantProblem(t, "wrong method", in.do(http.MethodDelete, in.base+search, nil, "x-api-key", raw), 405, "")
		if r := in.get("/events/public"); r.status != 200 {
			t.Fatalf("public feed after bad input: %d", r.status)
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := in.do(http.MethodGet, in.admin+p, nil); r.status != 200 {
				t.Fatalf("%s after bad input: %d %s", p, r.status, r.body)
			}
		}
	})

	t.Run("CORS", func(t *testing.T) {
		pre := in.do(http.MethodOptions, in.base+search, nil, "Origin", e2eOrigin,
			"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "x-api-key")
		if pre.status >= 300 || pre.header.Get("Access-Control-Allow-Origin") != e2eOrigin {
			t.Fatalf("preflight from an allowed origin: %d %v", pre.status, pre.header)
		}
		if pre.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Fatal("preflight allows credentials")
		}
		bad := in.do(http.MethodOptions, in.base+search, nil, "Origin", "https://evil.example",
			"Access-Control-Request-Method", "GET")
		if bad.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("preflight from another origin allowed: %v", bad.header)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		r := in.do(http.MethodGet, in.admin+"/metrics", nil)
		if r.status != 200 {
			t.Fatalf("/metrics: %d", r.status)
		}
		for _, want := range []string{
			`releaseradar_http_requests_total{method="GET",plan="pro",route="/events/search",status="200"}`,
			`releaseradar_quota_refusals_total{plan="pro"} 1`,
			`tollgate_ratelimit_decisions_total{kind="key",plan="pro",result="limited"} 80`,
			`releaseradar_webhook_events_total{outcome="granted",type="customer.subscription.created"} 1`,
			`releaseradar_http_request_duration_seconds_bucket`,
			`tollgate_ratelimit_decisions_total`,
		} {
			if !bytes.Contains(r.body, []byte(want)) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if bytes.Contains(r.body, []byte("rr_live_")) || bytes.Contains(r.body, []byte(`route="/events/99999999"`)) {
			t.Error("/metrics holds a raw key or a raw path")
		}
	})

	in.stop(true)
	t.Run("7 no raw key in the log", func(t *testing.T) {
		log := in.log.String()
		if len(raws) < 8 {
			t.Fatalf("only %d raw keys collected", len(raws))
		}
		for _, raw := range raws {
			if strings.Contains(log, raw) || strings.Contains(log, raw[len(apikeyPrefix):]) {
				t.Fatalf("the log holds a raw key")
			}
		}
		if strings.Contains(log, e2eWebhookSecret) {
			t.Fatal("the log holds the webhook secret")
		}
		// The access log names the key by the first 8 hex digits of its hash.
		if want := `"key":"` + hashOf(raws[0])[:8] + `"`; !strings.Contains(log, want) {
			t.Fatalf("no access log line with %s", want)
		}
		if !strings.Contains(log, `"msg":"request"`) || !strings.Contains(log, `"ms":`) {
			t.Fatal("no access log lines")
		}
	})
	return in.log.String()
}

const apikeyPrefix = "rr_live_"

func hashOf(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// countItems counts the events of a feed body: a JSON array, or an object with
// one array field.
func countItems(t *testing.T, body []byte) int {
	t.Helper()
	var arr []json.RawMessage
	if json.Unmarshal(body, &arr) == nil {
		return len(arr)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatalf("feed body is not JSON: %.200s", body)
	}
	for _, v := range obj {
		if json.Unmarshal(v, &arr) == nil {
			return len(arr)
		}
	}
	t.Fatalf("feed body has no array: %.200s", body)
	return 0
}

// webhook posts a signed Stripe event and expects 200.
func (in *instance) webhook(t *testing.T, id, typ string, object map[string]any, created int64) {
	t.Helper()
	obj, _ := json.Marshal(object)
	payload, _ := json.Marshal(map[string]any{
		"id": id, "object": "event", "api_version": stripe.APIVersion, "created": created,
		"livemode": false, "type": typ, "data": map[string]any{"object": json.RawMessage(obj)},
		"pending_webhooks": 1, "request": map[string]any{"id": nil, "idempotency_key": nil},
	})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: e2eWebhookSecret, Timestamp: time.Now(),
	})
	r := in.do(http.MethodPost, in.base+"/billing/webhook", payload,
		"Content-Type", "application/json", "Stripe-Signature", signed.Header)
	if r.status != 200 {
		t.Fatalf("webhook %s: %d %s", typ, r.status, r.body)
	}
}

// TestGracefulShutdown sends SIGTERM while a request is in flight (its body still
// arriving) and checks that the request completes and the process then exits 0.
func TestGracefulShutdown(t *testing.T) {
	bin := binary(t)
	in := start(t, bin, []string{"RR_DATABASE_URL=sqlite:" + testenv.SQLitePath(t)})
	key := in.adminCmd("grant", "--user", "slow-user", "--plan", "team")

	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, in.base+"/portfolio/impact", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", key)
	req.Header.Set("Content-Type", "application/json")
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := in.client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		in.checkContract(t, req, []byte(`{"holdings":[{"ticker":"AAPL","weight":0.5}]}`), resp, b)
		done <- result{status: resp.StatusCode}
	}()
	if _, err := pw.Write([]byte(`{"holdings":[{"ticker":"AAPL",`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the handler is now waiting for the rest of the body
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.gone:
		t.Fatalf("the server exited with a request in flight: %v", in.waitErr)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := pw.Write([]byte(`"weight":0.5}]}`)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	select {
	case r := <-done:
		if r.err != nil || r.status != http.StatusOK {
			t.Fatalf("in-flight request: %d, %v", r.status, r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the in-flight request did not complete")
	}
	select {
	case <-in.gone:
		if in.waitErr != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", in.waitErr, in.log)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the server did not exit after its last request")
	}
	if !strings.Contains(in.log.String(), `"msg":"stopped"`) {
		t.Fatalf("no shutdown line in the log:\n%s", in.log)
	}
}
