package main

// The fault suite of issue 12: the built server on PostgreSQL and Redis, each
// reached through a fault proxy (internal/faultproxy), under steady load from a
// few goroutines, while the test cuts a dependency, slows it or stops the server.
// The machine's own PostgreSQL and Redis are never touched: only the proxies are.
//
// Every case prints its figures with t.Logf (requests sent, statuses by route and
// phase, metered 200s against calls_used read straight from the database after a
// graceful stop, latencies), so that a run's -v output can be quoted.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/apikey"

	"github.com/jmoiron/sqlx"
	stripe "github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/releaseradar/tollgate/internal/faultproxy"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// Load and timing of the fault cases. The load is modest on purpose: a 2-core CI
// machine runs the server, PostgreSQL, Redis and this test (with -race) at once.
const (
	faultWorkers  = 4
	faultPause    = 8 * time.Millisecond   // between two requests of one worker
	faultWarmUp   = 600 * time.Millisecond // load before the fault
	faultOutage   = 2 * time.Second
	faultRecovery = 10 * time.Second        // the most a recovery may take
	faultTail     = 700 * time.Millisecond  // load after recovery
	faultTimeout  = time.Second             // RR_REQUEST_TIMEOUT of the latency case
	faultSlack    = 1500 * time.Millisecond // over RR_REQUEST_TIMEOUT, for a loaded machine
)

// faultRig is one server on PostgreSQL and Redis through their proxies, with a
// pro key and a dashboard token of its own user.
type faultRig struct {
	t        *testing.T
	in       *instance
	pg, rd   *faultproxy.Proxy
	db       *sqlx.DB // straight to PostgreSQL, not through the proxy
	user     string
	key      string
	token    string
	logStart int // where the server's own log starts, after the admin commands
	events   atomic.Int64
}

func newFaultRig(t *testing.T, env ...string) *faultRig {
	t.Helper()
	bin := binary(t)
	pgURL := testenv.PostgresURL(t)
	redisURL := testenv.RedisURL(t)
	_, prefix := testenv.Redis(t)
	pg, pgThrough := faultproxy.ForURL(t, pgURL)
	rd, redisThrough := faultproxy.ForURL(t, redisURL)
	r := &faultRig{t: t, pg: pg, rd: rd, db: testenv.OpenPostgres(t, pgURL), user: testenv.Unique("fault-")}
	r.in = start(t, bin, append([]string{
		"RR_DATABASE_URL=" + pgThrough,
		"RR_REDIS_URL=" + redisThrough,
		"RR_REDIS_PREFIX=" + prefix,
		// Burst limits out of the way: the load must not be refused with 429.
		"RR_PLAN_RATES=public=1000000-M,pro=1000000-M,team=1000000-M",
		"RR_STRIPE_WEBHOOK_SECRET=" + e2eWebhookSecret,
		"RR_STRIPE_PRICE_PRO=" + e2ePricePro,
	}, env...))
	r.key = r.in.adminCmd("grant", "--user", r.user, "--plan", "pro", "--limit", "100000000")
	r.token = r.in.adminCmd("token", "--user", r.user)
	r.logStart = len(r.in.log.String())
	return r
}

// target is one kind of request of the load.
type target struct {
	route   string // method and route template, as the reports name it
	metered bool   // a 200 spends one call of the rig's key
	cached  bool   // may be served from the server's memory with the database down
	req     func() *http.Request
}

func (r *faultRig) targets() []*target {
	get := func(path string, header ...string) func() *http.Request {
		return func() *http.Request {
			req, _ := http.NewRequest(http.MethodGet, r.in.base+path, nil)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			return req
		}
	}
	return []*target{
		{route: "GET /events/search", metered: true, req: get("/events/search?q=earnings", "x-api-key", r.key)},
		{route: "GET /events/public", cached: true, req: get("/events/public")},
		{route: "GET /companies/{ticker}", metered: true, req: get("/companies/AAPL", "x-api-key", r.key)},
		{route: "GET /keys", req: get("/keys", "Authorization", "Bearer "+r.token)},
		{route: "GET /events/search", metered: true, req: get("/events/search?q=earnings", "x-api-key", r.key)},
		{route: "POST /billing/webhook", req: r.webhookRequest},
	}
}

// webhookRequest is a signed customer.subscription.updated event, a new one each
// time, for a customer no user is bound to: the server records it in the
// database and answers 200 "unbound".
func (r *faultRig) webhookRequest() *http.Request {
	n := r.events.Add(1)
	now := time.Now().Unix()
	sub := map[string]any{
		"id": fmt.Sprintf("sub_fault_%d", n), "object": "subscription", "customer": fmt.Sprintf("cus_fault_%d", n),
		"status": "active", "created": now,
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": fmt.Sprintf("si_fault_%d", n), "object": "subscription_item",
			"price": map[string]any{"id": e2ePricePro, "object": "price"},
		}}},
	}
	obj, _ := json.Marshal(sub)
	payload, _ := json.Marshal(map[string]any{
		"id": fmt.Sprintf("evt_fault_%s_%d", r.user, n), "object": "event", "api_version": stripe.APIVersion,
		"created": now, "livemode": false, "type": "customer.subscription.updated",
		"data":             map[string]any{"object": json.RawMessage(obj)},
		"pending_webhooks": 1, "request": map[string]any{"id": nil, "idempotency_key": nil},
	})
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload: payload, Secret: e2eWebhookSecret, Timestamp: time.Now(),
	})
	req, _ := http.NewRequest(http.MethodPost, r.in.base+"/billing/webhook", bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signed.Header)
	return req
}

// shot is one request of the load and its answer.
type shot struct {
	target     *target
	start, end time.Time
	status     int // 0: no answer
	err        error
	header     http.Header
	body       []byte // at most 512 bytes
}

func (s shot) took() time.Duration { return s.end.Sub(s.start) }

// load sends the rig's targets from faultWorkers goroutines until halted.
type load struct {
	targets []*target
	client  *http.Client
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	shots   []shot
	open    map[int]time.Time // worker → when its request under way was sent
}

func (r *faultRig) startLoad() *load {
	l := &load{
		targets: r.targets(),
		client: &http.Client{
			Timeout:   20 * time.Second, // far over any bound asserted: a slow answer is measured, not cut
			Transport: &http.Transport{MaxIdleConnsPerHost: faultWorkers, DisableCompression: true},
		},
		stop: make(chan struct{}),
		open: make(map[int]time.Time),
	}
	for i := range faultWorkers {
		l.wg.Add(1)
		go l.worker(i)
	}
	r.t.Cleanup(l.halt)
	return l
}

func (l *load) worker(i int) {
	defer l.wg.Done()
	for n := i; ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		tg := l.targets[n%len(l.targets)]
		l.mu.Lock()
		l.open[i] = time.Now()
		l.mu.Unlock()
		s := l.send(tg)
		l.mu.Lock()
		delete(l.open, i)
		l.shots = append(l.shots, s)
		l.mu.Unlock()
		pause := faultPause
		if s.err != nil {
			pause = 50 * time.Millisecond // a refused connection must not spin
		}
		select {
		case <-l.stop:
			return
		case <-time.After(pause):
		}
	}
}

func (l *load) send(t *target) shot {
	s := shot{target: t, start: time.Now()}
	resp, err := l.client.Do(t.req())
	if err != nil {
		s.end, s.err = time.Now(), err
		return s
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	s.end = time.Now()
	s.status, s.header = resp.StatusCode, resp.Header
	if err != nil {
		s.err = err
	}
	s.body = body[:min(len(body), 512)]
	return s
}

// halt stops the workers and waits for their last requests.
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *load) snapshot() []shot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.shots)
}

// underWay counts the requests sent more than d ago and not yet answered.
func (l *load) underWay(d time.Duration) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.open {
		if time.Since(at) > d {
			n++
		}
	}
	return n
}

// waitFor waits until a finished request satisfies ok and returns it; false when
// none did within d.
func (l *load) waitFor(d time.Duration, ok func(shot) bool) (shot, bool) {
	deadline := time.Now().Add(d)
	for {
		for _, s := range l.snapshot() {
			if ok(s) {
				return s, true
			}
		}
		if time.Now().After(deadline) {
			return shot{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tally counts answers by route and status ("error" for no answer).
type tally map[string]map[string]int

func count(shots []shot, keep func(shot) bool) (tally, int) {
	t, n := tally{}, 0
	for _, s := range shots {
		if keep != nil && !keep(s) {
			continue
		}
		n++
		st := "error"
		if s.err == nil {
			st = strconv.Itoa(s.status)
		}
		if t[s.target.route] == nil {
			t[s.target.route] = map[string]int{}
		}
		t[s.target.route][st]++
	}
	return t, n
}

func (t tally) String() string {
	if len(t) == 0 {
		return "none"
	}
	var routes []string
	for r := range t {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	var b strings.Builder
	for i, r := range routes {
		if i > 0 {
			b.WriteString("; ")
		}
		var sts []string
		for st := range t[r] {
			sts = append(sts, st)
		}
		sort.Strings(sts)
		b.WriteString(r + ":")
		for _, st := range sts {
			fmt.Fprintf(&b, " %s×%d", st, t[r][st])
		}
	}
	return b.String()
}

// statuses counts answers by status alone.
func statuses(shots []shot) string {
	m := map[string]int{}
	for _, s := range shots {
		st := "error"
		if s.err == nil {
			st = strconv.Itoa(s.status)
		}
		m[st]++
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func metered200(shots []shot) int64 {
	var n int64
	for _, s := range shots {
		if s.target.metered && s.err == nil && s.status == http.StatusOK {
			n++
		}
	}
	return n
}

// describe names a request for an error message.
func (s shot) describe() string {
	if s.err != nil {
		return fmt.Sprintf("%s (sent %s, %v): no answer: %v", s.target.route, s.start.Format("15:04:05.000"), s.took().Round(time.Millisecond), s.err)
	}
	return fmt.Sprintf("%s (sent %s, %v): %d %s; body %.200s", s.target.route, s.start.Format("15:04:05.000"),
		s.took().Round(time.Millisecond), s.status, s.header.Get("Content-Type"), s.body)
}

// checkAnswers fails the test for every request that got no answer, or an answer
// other than 200 and a well-formed 503 (problem+json, Retry-After of at least a
// second). At most a few of each kind are shown.
func checkAnswers(t *testing.T, what string, shots []shot) {
	t.Helper()
	shown := map[string]int{}
	report := func(kind string, s shot, why string) {
		shown[kind]++
		if shown[kind] <= 3 {
			t.Errorf("%s: %s%s", what, s.describe(), why)
		}
	}
	for _, s := range shots {
		switch {
		case s.err != nil:
			report("error", s, "")
		case s.status == http.StatusOK:
		case s.status == http.StatusServiceUnavailable:
			if why := bad503(s); why != "" {
				report("503", s, ": "+why)
			}
		default:
			report(strconv.Itoa(s.status), s, "")
		}
	}
	for kind, n := range shown {
		if n > 3 {
			t.Errorf("%s: %d requests in all answered %s like the ones above", what, n, kind)
		}
	}
}

// bad503 says what is wrong with a 503, or "".
func bad503(s shot) string {
	if ra, err := strconv.Atoi(s.header.Get("Retry-After")); err != nil || ra < 1 {
		return fmt.Sprintf("Retry-After %q, want whole seconds ≥ 1", s.header.Get("Retry-After"))
	}
	if ct := s.header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Sprintf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(s.body, &p); err != nil || p.Status != 503 || p.Title == "" {
		return "not a problem body with status 503"
	}
	return ""
}

// checkLog fails the test for a panic or a 500 in the server's log, or for a line
// of its own that is not JSON (RR_LOG_FORMAT=json: a library writing its own
// lines breaks log pipelines).
func (r *faultRig) checkLog(t *testing.T) {
	t.Helper()
	log := r.in.log.String()
	for _, bad := range []string{`"msg":"handler panicked"`, "panic:", "goroutine ", `"status":500`} {
		if i := strings.Index(log, bad); i >= 0 {
			t.Errorf("the server's log holds %q: …%.300s…", bad, log[max(i-100, 0):])
		}
	}
	plain := 0
	for line := range strings.SplitSeq(log[r.logStart:], "\n") {
		if line == "" {
			continue
		}
		if !json.Valid([]byte(line)) {
			if plain++; plain <= 3 {
				t.Errorf("a log line that is not JSON: %.300s", line)
			}
		}
	}
	if plain > 3 {
		t.Errorf("%d log lines in all are not JSON", plain)
	}
}

// stopAndCount stops the server gracefully (SIGTERM: it writes back what it holds
// in memory, such as leased quota) and returns calls_used of the rig's key, read
// straight from the database.
func (r *faultRig) stopAndCount(t *testing.T) int64 {
	t.Helper()
	select {
	case <-r.in.gone:
		t.Fatalf("the server exited during the fault: %v", r.in.waitErr)
	default:
	}
	r.in.stop(true)
	return r.callsUsed(t)
}

func (r *faultRig) callsUsed(t *testing.T) int64 {
	t.Helper()
	var used int64
	if err := r.db.Get(&used, `SELECT COALESCE(SUM(calls_used), 0) FROM api_keys WHERE user_id = $1`, r.user); err != nil {
		t.Fatalf("read calls_used: %v", err)
	}
	return used
}

// readyz answers the admin listener's /readyz.
func (r *faultRig) readyz() (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(r.in.admin + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// failures summarises the server's log lines for failed dependencies: how many of
// each first path segment and error, digits folded, most frequent first.
func (r *faultRig) failures(top int) string {
	counts := map[string]int{}
	for line := range strings.SplitSeq(r.in.log.String()[r.logStart:], "\n") {
		var rec struct {
			Msg, Path, Err, Error string
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec.Msg {
		case "request failed: a dependency is unavailable":
		case "stripe webhook failed; Stripe will retry":
			rec.Path, rec.Err = "/billing/webhook", rec.Error
		default:
			continue
		}
		e := digits.ReplaceAllString(rec.Err, "N")
		counts[fmt.Sprintf("%s %.110s", rec.Path, e)]++
	}
	if len(counts) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if counts[keys[i]] != counts[keys[j]] {
			return counts[keys[i]] > counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i == top {
			fmt.Fprintf(&b, "\n      … %d more kinds", len(keys)-top)
			break
		}
		fmt.Fprintf(&b, "\n      %d× %s", counts[k], k)
	}
	return b.String()
}

var digits = regexp.MustCompile(`[0-9]+`)

// recovered waits, after a fault ended at restored, for a metered 200 sent after
// it, and fails the test when none comes within faultRecovery.
func (l *load) recovered(t *testing.T, restored time.Time) time.Time {
	t.Helper()
	s, ok := l.waitFor(faultRecovery, func(s shot) bool {
		return s.target.metered && s.err == nil && s.status == 200 && !s.start.Before(restored)
	})
	if !ok {
		l.halt()
		after, _ := count(l.snapshot(), func(s shot) bool { return !s.start.Before(restored) })
		t.Fatalf("no metered request served within %v of the end of the fault; since then: %s", faultRecovery, after)
	}
	return s.end
}

// checkTail fails the test unless every request sent from since on was answered
// 200, and every route was asked at least once.
func (l *load) checkTail(t *testing.T, since time.Time, shots []shot) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range shots {
		if s.start.Before(since) {
			continue
		}
		seen[s.target.route] = true
		if s.err != nil || s.status != 200 {
			t.Errorf("after recovery: %s", s.describe())
		}
	}
	for _, tg := range l.targets {
		if !seen[tg.route] {
			t.Errorf("after recovery: no %s was sent", tg.route)
		}
	}
}

// TestFaultPostgresCut cuts PostgreSQL under load: only 503s (problem+json,
// Retry-After) and cached public-feed 200s while it is down, no 500 and no panic,
// recovery without a restart, and afterwards calls_used equals the metered 200s.
func TestFaultPostgresCut(t *testing.T) {
	r := newFaultRig(t)
	l := r.startLoad()
	time.Sleep(faultWarmUp)

	cutAt := time.Now()
	r.pg.Cut()
	time.Sleep(faultOutage / 2)
	readyStatus, readyBody := r.readyz()
	time.Sleep(faultOutage - faultOutage/2)
	restoredAt := time.Now()
	r.pg.Restore()

	recoveredAt := l.recovered(t, restoredAt)
	tailFrom := recoveredAt.Add(300 * time.Millisecond)
	time.Sleep(time.Until(tailFrom.Add(faultTail)))
	l.halt()
	shots := l.snapshot()
	used := r.stopAndCount(t)

	before, nb := count(shots, func(s shot) bool { return s.end.Before(cutAt) })
	during, nd := count(shots, func(s shot) bool { return !s.start.Before(cutAt) && s.end.Before(restoredAt) })
	after, na := count(shots, func(s shot) bool { return !s.start.Before(restoredAt) })
	ok200 := metered200(shots)
	t.Logf("PostgreSQL cut for %v under %d workers: %d requests; statuses %s", restoredAt.Sub(cutAt).Round(time.Millisecond),
		faultWorkers, len(shots), statuses(shots))
	t.Logf("  before the cut (%d): %s", nb, before)
	t.Logf("  during the cut (%d): %s", nd, during)
	t.Logf("  after the restore (%d): %s", na, after)
	t.Logf("  recovery: first metered 200 %v after the restore; /readyz during the cut: %d %q",
		recoveredAt.Sub(restoredAt).Round(time.Millisecond), readyStatus, readyBody)
	t.Logf("  metered 200s %d, calls_used %d", ok200, used)
	t.Logf("  failures the server logged: %s", r.failures(8))

	checkAnswers(t, "PostgreSQL cut", shots)
	// Within the first moments of the cut a metered request may still be served
	// without the database: its key from the verified-key cache, whose entries
	// live at most apikey.DefaultFallbackTTL once the key-change channel is down
	// (it goes down with the cut), its call from a lease, its answer from the
	// answer cache; the quota stays exact (checked below). Requests sent later than
	// that, plus a margin for the proxy to close its connections, must not be.
	const cutSettle = apikey.DefaultFallbackTTL + 250*time.Millisecond
	for _, s := range shots {
		if !s.start.Before(cutAt.Add(cutSettle)) && s.end.Before(restoredAt) && s.err == nil && s.status == 200 && !s.target.cached {
			t.Errorf("served with PostgreSQL cut, from no cache: %s", s.describe())
		}
	}
	if nd == 0 {
		t.Error("no request was sent and answered during the cut")
	}
	if readyStatus != http.StatusServiceUnavailable || !strings.Contains(readyBody, "database") {
		t.Errorf("/readyz with PostgreSQL cut: %d %q, want 503 naming the database", readyStatus, readyBody)
	}
	l.checkTail(t, tailFrom, shots)
	r.checkLog(t)
	if used != ok200 {
		t.Errorf("calls_used %d after the cut, want %d (the metered 200s): %+d charged but not served", used, ok200, used-ok200)
	}
}

// TestFaultPostgresFlap cuts PostgreSQL again and again under load, for a tenth of
// a second each time, so that the cuts catch requests at every step of the gate
// (key lookup, quota, handler, give-back): still only 200s and 503s, and no call
// charged without being served.
func TestFaultPostgresFlap(t *testing.T) {
	r := newFaultRig(t)
	l := r.startLoad()
	time.Sleep(faultWarmUp)

	const (
		flaps = 10
		up    = 150 * time.Millisecond
		down  = 100 * time.Millisecond
		// Between cuts every database round trip takes this much longer, so that a
		// request spends its time spread over its steps rather than in the client.
		latency = 20 * time.Millisecond
	)
	firstCut := time.Now()
	for range flaps {
		r.pg.Latency(latency)
		time.Sleep(up)
		r.pg.Cut()
		time.Sleep(down)
		r.pg.Restore()
	}
	restoredAt := time.Now()

	recoveredAt := l.recovered(t, restoredAt)
	tailFrom := recoveredAt.Add(300 * time.Millisecond)
	time.Sleep(time.Until(tailFrom.Add(faultTail)))
	l.halt()
	shots := l.snapshot()
	used := r.stopAndCount(t)

	during, nd := count(shots, func(s shot) bool { return s.end.After(firstCut) && s.start.Before(restoredAt) })
	ok200 := metered200(shots)
	t.Logf("PostgreSQL cut %d times for %v (%v apart, %v slower between cuts) under %d workers: %d requests; statuses %s",
		flaps, down, up, latency, faultWorkers, len(shots), statuses(shots))
	t.Logf("  while flapping (%d): %s", nd, during)
	t.Logf("  recovery: first metered 200 %v after the last restore", recoveredAt.Sub(restoredAt).Round(time.Millisecond))
	t.Logf("  metered 200s %d, calls_used %d", ok200, used)
	t.Logf("  failures the server logged: %s", r.failures(8))

	checkAnswers(t, "PostgreSQL flapping", shots)
	l.checkTail(t, tailFrom, shots)
	r.checkLog(t)
	if used != ok200 {
		t.Errorf("calls_used %d after the flapping, want %d (the metered 200s): %+d charged but not served", used, ok200, used-ok200)
	}
}

// TestFaultRedisCut cuts Redis under load: the burst limiter fails open, so every
// request is served; afterwards calls_used equals the metered 200s.
func TestFaultRedisCut(t *testing.T) {
	r := newFaultRig(t)
	l := r.startLoad()
	time.Sleep(faultWarmUp)

	cutAt := time.Now()
	r.rd.Cut()
	time.Sleep(faultOutage / 2)
	readyStatus, readyBody := r.readyz()
	time.Sleep(faultOutage - faultOutage/2)
	restoredAt := time.Now()
	r.rd.Restore()

	// Counted by Redis again: a burst answer with X-RateLimit-Remaining, which a
	// fail-open answer does not carry.
	counted := func(s shot) bool { return s.err == nil && s.header.Get("X-RateLimit-Remaining") != "" }
	back, ok := l.waitFor(faultRecovery, func(s shot) bool { return !s.start.Before(restoredAt) && counted(s) })
	if !ok {
		t.Errorf("no request was counted by Redis within %v of its restore", faultRecovery)
		back.end = time.Now()
	}
	tailFrom := back.end.Add(300 * time.Millisecond)
	time.Sleep(time.Until(tailFrom.Add(faultTail)))
	l.halt()
	shots := l.snapshot()
	used := r.stopAndCount(t)

	duringKeep := func(s shot) bool { return !s.start.Before(cutAt) && s.end.Before(restoredAt) }
	during, nd := count(shots, duringKeep)
	failOpen := 0
	for _, s := range shots {
		if duringKeep(s) && !counted(s) {
			failOpen++
		}
	}
	ok200 := metered200(shots)
	t.Logf("Redis cut for %v under %d workers: %d requests; statuses %s", restoredAt.Sub(cutAt).Round(time.Millisecond),
		faultWorkers, len(shots), statuses(shots))
	t.Logf("  during the cut (%d, %d of them let through uncounted): %s", nd, failOpen, during)
	t.Logf("  counted by Redis again %v after the restore; /readyz during the cut: %d %q",
		back.end.Sub(restoredAt).Round(time.Millisecond), readyStatus, readyBody)
	t.Logf("  metered 200s %d, calls_used %d", ok200, used)

	for _, s := range shots {
		if s.err != nil || s.status != http.StatusOK {
			t.Errorf("Redis cut, the burst limiter fails open: %s", s.describe())
		}
	}
	if failOpen == 0 {
		t.Error("no request during the cut went uncounted: was Redis cut at all?")
	}
	if readyStatus != http.StatusOK || !strings.Contains(readyBody, "redis") {
		t.Errorf("/readyz with Redis cut: %d %q, want 200 (the limiter fails open) naming redis", readyStatus, readyBody)
	}
	r.checkLog(t)
	if used != ok200 {
		t.Errorf("calls_used %d after the Redis cut, want %d (the metered 200s): %+d", used, ok200, used-ok200)
	}
}

// TestFaultPostgresLatency slows PostgreSQL far beyond RR_REQUEST_TIMEOUT: requests
// waiting on it are answered 503 within the timeout (plus slack) instead of
// piling up, and recover when it is fast again.
func TestFaultPostgresLatency(t *testing.T) {
	r := newFaultRig(t, "RR_REQUEST_TIMEOUT="+faultTimeout.String())
	l := r.startLoad()
	time.Sleep(faultWarmUp)

	const latency = 5 * time.Second // longer than the window: nothing gets through slowly
	window := faultOutage + time.Second
	slowAt := time.Now()
	r.pg.Latency(latency)
	time.Sleep(window)
	restoredAt := time.Now()
	r.pg.Restore()

	recoveredAt := l.recovered(t, restoredAt)
	tailFrom := recoveredAt.Add(300 * time.Millisecond)
	time.Sleep(time.Until(tailFrom.Add(faultTail)))
	l.halt()
	shots := l.snapshot()
	used := r.stopAndCount(t)

	// Every request the slow database may have held up: those in flight when it
	// turned slow too.
	slowKeep := func(s shot) bool { return s.end.After(slowAt) && s.start.Before(restoredAt) }
	during, nd := count(shots, slowKeep)
	var waits []time.Duration // those not served from a cache
	pending := 0              // still waiting at the restore
	var late []shot           // answered after the bound
	bound := faultTimeout + faultSlack
	for _, s := range shots {
		if !slowKeep(s) {
			continue
		}
		if s.end.After(restoredAt) {
			pending++
		}
		if s.target.cached && s.status == 200 {
			continue
		}
		waits = append(waits, s.took())
		if s.took() > bound {
			late = append(late, s)
		}
	}
	slices.Sort(waits)
	pct := func(p float64) time.Duration {
		if len(waits) == 0 {
			return 0
		}
		return waits[min(int(p*float64(len(waits))), len(waits)-1)].Round(time.Millisecond)
	}
	ok200 := metered200(shots)
	t.Logf("PostgreSQL %v slower for %v, RR_REQUEST_TIMEOUT=%v, %d workers: %d requests; statuses %s",
		latency, window.Round(time.Millisecond), faultTimeout, faultWorkers, len(shots), statuses(shots))
	t.Logf("  answered or sent while slow (%d): %s", nd, during)
	t.Logf("  waits of the %d not served from a cache: min %v, median %v, p90 %v, max %v; %d still waiting at the restore",
		len(waits), pct(0), pct(0.5), pct(0.9), pct(1), pending)
	t.Logf("  recovery: first metered 200 %v after the restore", recoveredAt.Sub(restoredAt).Round(time.Millisecond))
	t.Logf("  metered 200s %d, calls_used %d", ok200, used)
	t.Logf("  failures the server logged: %s", r.failures(8))

	checkAnswers(t, "PostgreSQL slow", shots)
	for i, s := range late {
		if i == 3 {
			t.Errorf("%d requests in all were answered after the bound", len(late))
			break
		}
		t.Errorf("with PostgreSQL %v slower and RR_REQUEST_TIMEOUT=%v, answered after %v (bound %v): %s",
			latency, faultTimeout, s.took().Round(time.Millisecond), bound, s.describe())
	}
	if len(waits) == 0 {
		t.Error("no request waited on the slow database")
	}
	l.checkTail(t, tailFrom, shots)
	r.checkLog(t)
	if used != ok200 {
		t.Errorf("calls_used %d after the slow database, want %d (the metered 200s): %+d charged but not served", used, ok200, used-ok200)
	}
}

// TestFaultSIGTERMUnderLoad stops the server with SIGTERM while requests are in
// flight (PostgreSQL made slow so that they are): every request sent before the
// signal is answered, the process exits 0, and calls_used equals the metered 200s.
func TestFaultSIGTERMUnderLoad(t *testing.T) {
	r := newFaultRig(t)
	l := r.startLoad()
	time.Sleep(faultWarmUp / 2)
	// Every database round trip now takes this much longer, so each request is
	// in the server for several of them when the signal comes.
	const latency = 150 * time.Millisecond
	r.pg.Latency(latency)
	time.Sleep(faultWarmUp)
	// Signal when at least half the workers have a request well under way.
	const margin = 50 * time.Millisecond
	for deadline := time.Now().Add(5 * time.Second); l.underWay(2*margin) < faultWorkers/2; {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d requests under way after 5 s of slow database", faultWorkers/2)
		}
		time.Sleep(5 * time.Millisecond)
	}

	sigAt := time.Now()
	if err := r.in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.in.gone:
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatalf("the server did not exit within %v of SIGTERM", shutdownGrace+5*time.Second)
	}
	exitedAt := time.Now()
	l.halt()
	shots := l.snapshot()
	if r.in.waitErr != nil {
		t.Errorf("exit after SIGTERM under load: %v", r.in.waitErr)
	}
	if !strings.Contains(r.in.log.String(), `"msg":"stopped"`) {
		t.Error("no shutdown line in the log")
	}
	used := r.callsUsed(t)

	// Sent before the signal, with a margin for the client's own scheduling: the
	// server has read these, so it must answer them.
	sentBefore := func(s shot) bool { return s.start.Before(sigAt.Add(-margin)) }
	inFlight := 0
	for _, s := range shots {
		if !sentBefore(s) {
			continue
		}
		if s.end.After(sigAt) {
			inFlight++
		}
		if s.err != nil || s.status != http.StatusOK {
			t.Errorf("sent before SIGTERM: %s", s.describe())
		}
	}
	before, nb := count(shots, sentBefore)
	edge, ne := count(shots, func(s shot) bool { return !sentBefore(s) && s.start.Before(sigAt) })
	after, na := count(shots, func(s shot) bool { return !s.start.Before(sigAt) })
	var slowest time.Duration
	for _, s := range shots {
		if sentBefore(s) && s.end.After(sigAt) {
			slowest = max(slowest, s.end.Sub(sigAt))
		}
	}
	ok200 := metered200(shots)
	t.Logf("SIGTERM under %d workers, PostgreSQL %v slower: %d requests; statuses %s; exit %v after the signal",
		faultWorkers, latency, len(shots), statuses(shots), exitedAt.Sub(sigAt).Round(time.Millisecond))
	t.Logf("  sent before the signal (%d, %d of them in flight at it, the last answered %v after it): %s",
		nb, inFlight, slowest.Round(time.Millisecond), before)
	t.Logf("  sent within %v before it (%d, not checked): %s", margin, ne, edge)
	t.Logf("  sent after it (%d, refused or answered): %s", na, after)
	t.Logf("  metered 200s %d, calls_used %d", ok200, used)
	if inFlight == 0 {
		t.Error("no request was in flight at the signal: the case proved nothing")
	}
	for _, s := range shots {
		if s.err == nil && s.status != http.StatusOK && s.status != http.StatusServiceUnavailable {
			t.Errorf("around SIGTERM: %s", s.describe())
		}
	}
	r.checkLog(t)
	if used != ok200 {
		t.Errorf("calls_used %d after SIGTERM, want %d (the metered 200s): %+d", used, ok200, used-ok200)
	}
}
