package main

// The hostile-input sweep of issue 12: a table of hostile requests sent to the
// built server on SQLite and on PostgreSQL — every method on every route, NUL and
// invalid UTF-8 in every parameter and path variable, huge and malformed headers,
// huge and malformed JSON — checking that nothing is a 5xx, that every 4xx the
// server writes is problem+json, that every 405 carries Allow, that bad text is a
// 400 naming its parameter, and that the database is unchanged afterwards. Beside
// it, in-process tests of the session cookie behind a trusted proxy and of the
// burst limit on failed dashboard-token attempts.
//
// Answers that are Go's own, not the server's, and so not problem+json: net/http
// answers a request it cannot parse before any handler runs, in text/plain, and
// closes the connection: 431 for headers over RR's 64 KiB (MaxHeaderBytes), 400
// for a malformed request line, header line or Host, a control byte in a header,
// an invalid or repeated Content-Length, 501 for a Transfer-Encoding other than
// chunked, 505 for an unsupported HTTP version, 417 for an Expect other than
// 100-continue. The sweep sends each of them and checks that it is exactly that
// answer (goOwn).

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/web"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// sweepRoutes are the routes of docs/API.md, each at a path that reaches it, with
// the methods it serves.
var sweepRoutes = []struct {
	path  string
	allow string // the Allow header of its 405s
}{
	{"/events/public", "GET, HEAD"},
	{"/events/search", "GET"},
	{"/events/1", "GET"},
	{"/impact/1", "GET"},
	{"/companies", "GET"},
	{"/companies/AAPL", "GET"},
	{"/portfolio/impact", "POST"},
	{"/keys", "GET"},
	{"/keys/rotate", "POST"},
	{"/keys/reveal", "POST"},
	{"/billing/webhook", "POST"},
	{"/account/", "GET, HEAD"},
	{web.PagePath, "GET, HEAD"},
	{web.AssetsPath + "app.css", "GET, HEAD"},
	{web.AssetsPath + "app.js", "GET, HEAD"},
	{web.SessionPath, "POST"},
	{web.LogoutPath, "POST"},
	{"/", "GET, HEAD"},
}

var sweepMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "get", "X-NONSENSE"}

// hostileText are %-encoded values that are not UTF-8 text without NUL bytes.
var hostileText = []string{"%00", "AAPL%00", "%00%00%00", "%FF%FE", "%C3", "%C0%80", "%ED%A0%80", "a%F4%90%80%80"}

// textDetail is the detail of a 400 for such text in param.
func textDetail(param string) string {
	return `Invalid parameter "` + param + `": must be UTF-8 text without NUL bytes`
}

func TestSweepSQLite(t *testing.T) {
	bin := binary(t)
	path := testenv.SQLitePath(t)
	sweep(t, bin, "sqlite:"+path, func(t *testing.T) *sqlx.DB { return testenv.OpenSQLite(t, path) })
}

func TestSweepPostgres(t *testing.T) {
	bin := binary(t)
	pg := testenv.PostgresURL(t)
	sweep(t, bin, pg, func(t *testing.T) *sqlx.DB { return testenv.OpenPostgres(t, pg) })
}

// sweeper sends the sweep's requests and checks each answer.
type sweeper struct {
	t    *testing.T
	in   *instance
	sent int
	seen map[int]int // answers by status
}

// check checks one answer to what: no 5xx; problem+json on every 4xx (for HEAD,
// its Content-Type); Allow on a 405; status and detail when wanted (0, "": any).
func (s *sweeper) check(what, method string, r response, status int, detail string) {
	t := s.t
	t.Helper()
	s.sent++
	s.seen[r.status]++
	if r.status >= 500 {
		t.Errorf("%s: status %d: %.300s", what, r.status, r.body)
		return
	}
	if status != 0 && r.status != status {
		t.Errorf("%s: status %d, want %d: %.300s", what, r.status, status, r.body)
		return
	}
	if r.status < 400 {
		return
	}
	if r.status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
		t.Errorf("%s: 405 without Allow", what)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: %d with Content-Type %q: %.300s", what, r.status, ct, r.body)
		return
	}
	if method == http.MethodHead {
		return
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != r.status || p.Title == "" || p.Detail == "" {
		t.Errorf("%s: problem body %.300s (%v)", what, r.body, err)
		return
	}
	if detail != "" && p.Detail != detail {
		t.Errorf("%s: detail %q, want %q", what, p.Detail, detail)
	}
}

func sweep(t *testing.T, bin, dbURL string, open func(t *testing.T) *sqlx.DB) {
	in := start(t, bin, []string{
		"RR_DATABASE_URL=" + dbURL,
		// Limits far above the sweep's traffic, so that every request reaches the
		// code it aims at instead of a 429.
		"RR_PLAN_RATES=public=100000-M,pro=100000-M,team=100000-M",
		"RR_STRIPE_WEBHOOK_SECRET=" + e2eWebhookSecret,
		"RR_CORS_ORIGINS=" + e2eOrigin,
		"RR_TRUSTED_PROXIES=127.0.0.0/8",
	})
	key := in.adminCmd("grant", "--user", "sweep-user", "--plan", "team")
	token := in.adminCmd("token", "--user", "sweep-user")
	db := open(t)
	before := snapshot(t, db)
	s := &sweeper{t: t, in: in, seen: map[int]int{}}
	began := time.Now()

	t.Run("every method on every route", func(t *testing.T) {
		s.t = t
		for _, rt := range sweepRoutes {
			for _, m := range sweepMethods {
				what := m + " " + rt.path
				r := in.do(m, in.base+rt.path, nil)
				if slices.Contains(strings.Split(rt.allow, ", "), m) {
					s.check(what, m, r, 0, "")
					continue
				}
				s.check(what, m, r, http.StatusMethodNotAllowed, "")
				if got := r.header.Get("Allow"); got != rt.allow {
					t.Errorf("%s: Allow %q, want %q", what, got, rt.allow)
				}
			}
		}
		for _, m := range sweepMethods {
			s.check(m+" /nowhere", m, in.do(m, in.base+"/nowhere/at/all", nil), http.StatusNotFound, "")
			s.check(m+" /account/nowhere", m, in.do(m, in.base+"/account/nowhere", nil), http.StatusNotFound, "")
		}
	})

	t.Run("bad text in every parameter", func(t *testing.T) {
		s.t = t
		withKey := []string{"x-api-key", key}
		portfolio := []byte(`{"holdings":[{"ticker":"AAPL","weight":0.5}]}`)
		// Market routes: every parameter they read, and one they do not.
		params := []struct {
			method, path string
			names        []string
			body         []byte
		}{
			{"GET", "/events/search", []string{"q", "ticker", "type", "from", "to", "limit", "cursor", "x"}, nil},
			{"GET", "/companies", []string{"q", "x"}, nil},
			{"GET", "/events/public", []string{"x"}, nil},
			{"GET", "/events/1", []string{"x"}, nil},
			{"GET", "/impact/1", []string{"x"}, nil},
			{"GET", "/companies/AAPL", []string{"x"}, nil},
			{"POST", "/portfolio/impact", []string{"x"}, portfolio},
		}
		for _, p := range params {
			for _, name := range p.names {
				for _, v := range hostileText {
					target := p.path + "?" + name + "=" + v
					r := in.do(p.method, in.base+target, p.body, append(withKey, "Content-Type", "application/json")...)
					s.check(p.method+" "+target, p.method, r, http.StatusBadRequest, textDetail(name))
				}
			}
		}
		// Path variables.
		for _, pv := range []struct{ prefix, param string }{{"/events/", "id"}, {"/impact/", "event_id"}, {"/companies/", "ticker"}} {
			for _, v := range hostileText {
				r := in.get(pv.prefix+v, withKey...)
				s.check("GET "+pv.prefix+v, "GET", r, http.StatusBadRequest, textDetail(pv.param))
			}
			// Raw bytes that are not UTF-8, not %-encoded.
			r := in.raw(s.t, "GET "+pv.prefix+"A\xff\xfe HTTP/1.1\r\nHost: x\r\nx-api-key: "+key+"\r\nConnection: close\r\n\r\n")
			s.check("GET "+pv.prefix+"<raw 0xff>", "GET", r, http.StatusBadRequest, textDetail(pv.param))
		}
		s.check("a path variable holding /", "GET", in.get("/companies/A%2FB", withKey...), http.StatusNotFound, "")
		// Query strings that url.ParseQuery would have cut silently.
		for _, q := range []string{"q=%zz", "q=a;b", "%zz=1", "%00=1", "q%FF=1"} {
			s.check("GET /companies?"+q, "GET", in.get("/companies?"+q, withKey...), http.StatusBadRequest, "")
		}
		// Everywhere else: no 5xx, problem+json; the dashboard is asked without a
		// valid token where an answer would change something.
		for _, v := range hostileText {
			for _, c := range []struct {
				method, path string
				hdr          []string
			}{
				{"GET", "/keys?x=", []string{"Authorization", "Bearer " + token}},
				{"GET", "/keys?x=", nil},
				{"POST", "/keys/rotate?x=", nil},
				{"POST", "/keys/reveal?x=", []string{"Authorization", "Bearer " + v}},
				{"POST", "/billing/webhook?x=", nil},
				{"GET", web.PagePath + "?signin=", nil},
				{"GET", web.PagePath + "?signin=", []string{"Cookie", web.CookieName + "=" + token}},
				{"POST", web.SessionPath + "?x=", []string{"Content-Type", "application/json"}},
				{"POST", web.LogoutPath + "?x=", nil},
				{"GET", web.AssetsPath + "app.js?v=", nil},
			} {
				s.check(c.method+" "+c.path+v, c.method, in.do(c.method, in.base+c.path+v, nil, c.hdr...), 0, "")
			}
		}
	})

	t.Run("huge and malformed headers", func(t *testing.T) {
		s.t = t
		big := strings.Repeat("a", 60<<10)
		for _, c := range []struct {
			name, method, path string
			hdr                []string
			status             int
		}{
			{"60 KiB header", "GET", "/events/search", []string{"X-Padding", big}, 401},
			{"60 KiB key", "GET", "/events/search", []string{"x-api-key", big}, 403},
			{"key of high bytes", "GET", "/events/search", []string{"x-api-key", "rr_live_\xff\xfe\x80"}, 403},
			{"60 KiB bearer", "GET", "/keys", []string{"Authorization", "Bearer " + big}, 401},
			{"bearer of high bytes", "GET", "/keys", []string{"Authorization", "Bearer \xff\xfe"}, 401},
			{"basic auth", "GET", "/keys", []string{"Authorization", "Basic Zm9vOmJhcg=="}, 401},
			{"empty bearer", "GET", "/keys", []string{"Authorization", "Bearer "}, 401},
			{"junk cookie", "GET", "/keys", []string{"Cookie", web.CookieName + "=\xff\xfe; a=b; ;;; =; rr_session="}, 401},
			{"many cookies", "GET", "/keys", []string{"Cookie", strings.Repeat("c=d; ", 5000)}, 401},
			{"junk cookie on the page", "GET", web.PagePath, []string{"Cookie", web.CookieName + "=junk"}, 200},
			{"junk X-Forwarded-For", "GET", "/events/search", []string{"X-Forwarded-For", "not, an, address, ::ffff:zz, 999.1.1.1, " + strings.Repeat("1.2.3.4,", 2000)}, 401},
			{"junk X-Forwarded-Proto", "POST", web.SessionPath, []string{"X-Forwarded-Proto", "https\xff, ftp", "Content-Type", "application/json"}, 401},
			{"junk Content-Type", "POST", web.SessionPath, []string{"Content-Type", "application/json; charset=\"; boundary"}, 0},
			{"junk Origin on a cookie POST", "POST", "/keys/rotate", []string{"Cookie", web.CookieName + "=" + token, "Origin", "null"}, 403},
			{"junk Sec-Fetch-Site", "POST", "/keys/reveal", []string{"Cookie", web.CookieName + "=" + token, "Sec-Fetch-Site", "\xff"}, 403},
			{"junk preflight", "OPTIONS", "/events/search", []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "\xff", "Access-Control-Request-Headers", big[:1000]}, 0},
			{"huge If-None-Match", "GET", "/events/public", []string{"If-None-Match", big}, 200},
			{"Range on an asset", "GET", web.AssetsPath + "app.js", []string{"Range", "bytes=99999999-"}, 200},
			{"If-Match on an asset", "GET", web.AssetsPath + "app.css", []string{"If-Match", `"nope"`}, 200},
		} {
			s.check(c.name, c.method, in.do(c.method, in.base+c.path, nil, c.hdr...), c.status, "")
		}
		// Requests net/http itself refuses before any handler (see the file comment).
		const end = "\r\n\r\n"
		for _, c := range []struct {
			name, req string
			status    int
		}{
			{"headers over 64 KiB", "GET /events/public HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 100<<10) + end, 431},
			{"NUL in a header", "GET /events/public HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b" + end, 400},
			{"space in a header name", "GET /events/public HTTP/1.1\r\nHost: x\r\nBad Name: v" + end, 400},
			{"no colon", "GET /events/public HTTP/1.1\r\nHost: x\r\nnocolon" + end, 400},
			{"no Host", "GET /events/public HTTP/1.1" + end, 400},
			{"two Hosts", "GET /events/public HTTP/1.1\r\nHost: a\r\nHost: b" + end, 400},
			{"junk Host", "GET /events/public HTTP/1.1\r\nHost: a b\xff" + end, 400},
			{"junk Content-Length", "POST /portfolio/impact HTTP/1.1\r\nHost: x\r\nContent-Length: abc" + end, 400},
			{"two Content-Lengths", "POST /portfolio/impact HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2" + end + "ab", 400},
			{"gzip Transfer-Encoding", "POST /portfolio/impact HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip" + end, 501},
			{"Expect", "POST /portfolio/impact HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 2" + end + "{}", 417},
			{"HTTP/9.9", "GET /events/public HTTP/9.9\r\nHost: x" + end, 505},
			{"junk request line", "\x00\x01\x02 / HTTP/1.1\r\nHost: x" + end, 400},
			{"NUL in the target", "GET /events/\x00 HTTP/1.1\r\nHost: x" + end, 400},
			{"bad escape in the path", "GET /events/%zz HTTP/1.1\r\nHost: x" + end, 400},
		} {
			r := in.raw(s.t, c.req)
			s.sent++
			s.seen[r.status]++
			if r.status != c.status || r.header.Get("Content-Type") == "application/problem+json" {
				t.Errorf("%s: %d %q, want net/http's own %d", c.name, r.status, r.header.Get("Content-Type"), c.status)
			}
		}
		// Obsolete line folding is accepted by net/http (it joins the lines).
		s.check("line folding", "GET", in.raw(s.t, "GET /events/public HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\nConnection: close"+end), http.StatusOK, "")
		// A malformed chunked body reaches the handler, which refuses it.
		r := in.raw(s.t, "POST /portfolio/impact HTTP/1.1\r\nHost: x\r\nx-api-key: "+key+
			"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close"+end+"zz\r\n{}\r\n0"+end)
		s.check("malformed chunked body", "POST", r, http.StatusBadRequest, "")
	})

	t.Run("huge and malformed JSON", func(t *testing.T) {
		s.t = t
		many := make([]string, 51)
		for i := range many {
			many[i] = fmt.Sprintf(`{"ticker":"T%d","weight":0.01}`, i)
		}
		bodies := []struct {
			name, body string
			status     int
		}{
			{"empty", "", 400},
			{"open brace", "{", 400},
			{"array", "[]", 400},
			{"null", "null", 400},
			{"empty object", "{}", 400},
			{"string", `"holdings"`, 400},
			{"NUL in a ticker", `{"holdings":[{"ticker":"AAPL\u0000","weight":0.5}]}`, 400},
			{"raw NUL", "{\"holdings\":[{\"ticker\":\"A\x00\",\"weight\":0.5}]}", 400},
			{"invalid UTF-8", "{\"holdings\":[{\"ticker\":\"\xff\xfe\",\"weight\":0.5}]}", 400},
			{"lone surrogate", `{"holdings":[{"ticker":"\ud800","weight":0.5}]}`, 400},
			{"byte order mark", "\xef\xbb\xbf{\"holdings\":[{\"ticker\":\"AAPL\",\"weight\":0.5}]}", 400},
			{"huge unknown field", `{"holdings":[{"ticker":"AAPL","weight":0.5}],"` + strings.Repeat("x", 50000) + `":1}`, 400},
			{"NUL in a field name", `{"hold\u0000ings":[]}`, 400},
			{"huge number", `{"holdings":[{"ticker":"AAPL","weight":1e999}]}`, 400},
			{"wrong type", `{"holdings":[{"ticker":["AAPL"],"weight":0.5}]}`, 400},
			{"deep nesting", `{"holdings":` + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + `}`, 400},
			{"51 holdings", `{"holdings":[` + strings.Join(many, ",") + `]}`, 400},
			{"trailing data", `{"holdings":[{"ticker":"AAPL","weight":0.5}]}{}`, 400},
			{"unlisted ticker", `{"holdings":[{"ticker":"ZZZZ","weight":0.5}]}`, 400},
			{"100 KiB", `{"holdings":[{"ticker":"` + strings.Repeat("A", 100<<10) + `","weight":0.5}]}`, 413},
			{"2 MiB", `{"holdings":"` + strings.Repeat("A", 2<<20) + `"}`, 413},
		}
		for _, b := range bodies {
			r := in.do("POST", in.base+"/portfolio/impact", []byte(b.body), "x-api-key", key, "Content-Type", "application/json")
			s.check("portfolio: "+b.name, "POST", r, b.status, "")
		}
		// A body longer than the limit without a Content-Length (chunked).
		r := in.raw(s.t, "POST /portfolio/impact HTTP/1.1\r\nHost: x\r\nx-api-key: "+key+"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
			strconv.FormatInt(200<<10, 16)+"\r\n"+strings.Repeat(" ", 200<<10)+"\r\n0\r\n\r\n")
		s.check("portfolio: 200 KiB chunked", "POST", r, http.StatusBadRequest, "Invalid request body: must be at most 65536 bytes")
		for _, b := range bodies {
			for _, target := range []string{web.SessionPath, "/billing/webhook", "/keys/rotate"} {
				r := in.do("POST", in.base+target, []byte(b.body), "Content-Type", "application/json", "Stripe-Signature", "t=1,v1=00")
				s.check(target+": "+b.name, "POST", r, 0, "")
			}
		}
		r = in.do("POST", in.base+web.SessionPath, []byte("token="+strings.Repeat("%00", 3000)), "Content-Type", "application/x-www-form-urlencoded")
		s.check("sign-in form of NULs", "POST", r, 0, "")
	})

	t.Run("admin listener", func(t *testing.T) {
		s.t = t
		// serve.go's admin mux answers in text/plain, not problem+json: it is the
		// operators' listener, not the public API. Checked here: no 5xx (the
		// database is up, so /readyz is 200) and Allow on every 405.
		for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
			for _, m := range sweepMethods {
				r := in.do(m, in.admin+p, nil)
				s.sent++
				s.seen[r.status]++
				switch {
				case r.status >= 500:
					t.Errorf("admin %s %s: %d %.200s", m, p, r.status, r.body)
				case m == "GET" || m == "HEAD":
					if r.status != http.StatusOK {
						t.Errorf("admin %s %s: %d", m, p, r.status)
					}
				case r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD":
					t.Errorf("admin %s %s: %d, Allow %q; want 405 with Allow GET, HEAD", m, p, r.status, r.header.Get("Allow"))
				}
			}
		}
		if r := in.do("GET", in.admin+"/nowhere?x=%00", nil); r.status != http.StatusNotFound {
			t.Errorf("admin /nowhere: %d", r.status)
		}
	})

	s.t = t
	in.stop(true)
	after := snapshot(t, db)
	compareSnapshots(t, before, after)
	log := in.log.String()
	for _, bad := range []string{"handler panicked", "a dependency is unavailable"} {
		if strings.Contains(log, bad) {
			t.Errorf("the log says %q", bad)
		}
	}
	statuses := make([]int, 0, len(s.seen))
	for st := range s.seen {
		statuses = append(statuses, st)
	}
	sort.Ints(statuses)
	var sum []string
	for _, st := range statuses {
		sum = append(sum, fmt.Sprintf("%d×%d", s.seen[st], st))
	}
	t.Logf("%d requests in %v: %s; %d tables unchanged", s.sent, time.Since(began).Round(time.Millisecond), strings.Join(sum, " "), len(before))
}

// raw sends req, as it is, on a new connection and reads one answer.
func (in *instance) raw(t *testing.T, req string) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(in.base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	// The server may answer and close before it has read everything.
	go func() { _, _ = io.WriteString(conn, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("raw %.60q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// tableState is a table's row count and a digest of its rows, in a fixed order.
type tableState struct {
	rows   int
	digest string
	sample []string // the rows, for a report
}

// unsnapshotted are the columns a snapshot leaves out, by table. quota_granted is
// the quota store's scratch column: the single-statement reservation writes what
// it grants there and reads it back in the same statement (RETURNING), and
// nothing else reads it. A refused call's reservation is given back (calls_used
// returns to what it was, which the snapshot checks) but leaves quota_granted at
// 1 where a fresh key had 0.
var unsnapshotted = map[string]string{"api_keys": "quota_granted"}

// unsnapshottedTables are the tables a snapshot leaves out. quota_journal is the
// quota store's log of reservation and release tokens, kept an hour so that a
// reservation whose COMMIT lost its answer can be looked up: a refused call's
// reservation and its give-back each write one. The quota itself (calls_used) is
// in the snapshot.
var unsnapshottedTables = map[string]bool{"quota_journal": true}

// snapshot reads every table of db's schema (on SQLite every table, the full-text
// index's shadow tables included).
func snapshot(t *testing.T, db *sqlx.DB) map[string]tableState {
	t.Helper()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
	if db.DriverName() == "postgres" {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`
	}
	var tables []string
	if err := db.Select(&tables, q); err != nil {
		t.Fatal(err)
	}
	if len(tables) < 5 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	out := make(map[string]tableState, len(tables))
	for _, name := range tables {
		if unsnapshottedTables[name] {
			continue
		}
		rows, err := db.Queryx(`SELECT * FROM "` + name + `"`)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var lines []string
		for rows.Next() {
			vals, err := rows.SliceScan()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var b strings.Builder
			for i, v := range vals {
				if unsnapshotted[name] == cols[i] {
					continue
				}
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				fmt.Fprintf(&b, "%s=%q|", cols[i], fmt.Sprint(v))
			}
			lines = append(lines, b.String())
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rows.Close()
		sort.Strings(lines)
		h := sha256.New()
		for _, l := range lines {
			h.Write([]byte(l + "\n"))
		}
		out[name] = tableState{rows: len(lines), digest: hex.EncodeToString(h.Sum(nil)), sample: lines}
	}
	return out
}

// compareSnapshots fails t for every table whose rows changed, showing the rows
// that differ.
func compareSnapshots(t *testing.T, before, after map[string]tableState) {
	t.Helper()
	for name, b := range before {
		a, ok := after[name]
		if !ok {
			t.Errorf("table %s is gone", name)
			continue
		}
		if a.digest == b.digest {
			continue
		}
		gone, added := diffRows(b.sample, a.sample)
		t.Errorf("table %s changed: %d rows, then %d\n  before: %.500s\n  after:  %.500s", name, b.rows, a.rows, gone, added)
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("table %s appeared", name)
		}
	}
}

func diffRows(before, after []string) (gone, added []string) {
	in := func(s []string, x string) bool { i := sort.SearchStrings(s, x); return i < len(s) && s[i] == x }
	for _, r := range before {
		if !in(after, r) {
			gone = append(gone, r)
		}
	}
	for _, r := range after {
		if !in(before, r) {
			added = append(added, r)
		}
	}
	return gone, added
}

// TestSecureCookieBehindProxy: the session cookie is Secure when the sign-in came
// through a proxy of RR_TRUSTED_PROXIES that says https, and only then.
func TestSecureCookieBehindProxy(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["RR_TRUSTED_PROXIES"] = "10.0.0.0/8, 2001:db8::/32"
	p := newInProcess(t, env, nil)
	token, err := p.app.signer.Issue("cookie-user", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, peer, proto string
		secure            bool
	}{
		{"trusted proxy, https", "10.1.2.3:4444", "https", true},
		{"trusted IPv6 proxy, https", "[2001:db8::7]:4444", "HTTPS", true},
		{"trusted IPv4-mapped proxy, https", "[::ffff:10.9.9.9]:4444", "https", true},
		{"trusted proxy, chain starting https", "10.1.2.3:4444", "https, http", true},
		{"trusted proxy, http", "10.1.2.3:4444", "http", false},
		{"trusted proxy, no header", "10.1.2.3:4444", "", false},
		{"untrusted client claiming https", "203.0.113.9:4444", "https", false},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodPost, web.SessionPath, strings.NewReader(url.Values{"token": {token}}.Encode()))
		r.RemoteAddr = tc.peer
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tc.proto != "" {
			r.Header.Set("X-Forwarded-Proto", tc.proto)
		}
		w := httptest.NewRecorder()
		p.handler.ServeHTTP(w, r)
		var c *http.Cookie
		for _, ck := range w.Result().Cookies() {
			if ck.Name == web.CookieName {
				c = ck
			}
		}
		if w.Code != http.StatusSeeOther || c == nil || c.Value != token {
			t.Errorf("%s: status %d, cookie %v; want 303 and the session cookie", tc.name, w.Code, c)
			continue
		}
		if c.Secure != tc.secure {
			t.Errorf("%s: Secure %v, want %v", tc.name, c.Secure, tc.secure)
		}
	}
}

// TestDashboardTokenBurst: a dashboard request or sign-in whose token is missing
// or invalid spends its address's burst budget before its 401; once the budget
// is spent the address gets 429 with Retry-After, while good tokens, and other
// addresses, still get through.
func TestDashboardTokenBurst(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	env["RR_PLAN_RATES"] = "public=4-M"
	p := newInProcess(t, env, nil)
	good, err := p.app.signer.Issue("burst-user", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	send := func(addr, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.RemoteAddr = addr
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		p.handler.ServeHTTP(w, r)
		return w
	}
	attempts := []struct {
		name, method, target, body string
		hdr                        []string
		refused                    int
	}{
		{"bad bearer", "GET", "/keys", "", []string{"Authorization", "Bearer " + good + "x"}, 401},
		{"no token", "POST", "/keys/rotate", "", nil, 401},
		{"bad cookie", "POST", "/keys/reveal", "", []string{"Cookie", web.CookieName + "=forged"}, 401},
		{"bad sign-in", "POST", web.SessionPath, `{"token":"forged"}`, []string{"Content-Type", "application/json"}, 401},
		{"bad sign-in form", "POST", web.SessionPath, "token=forged", []string{"Content-Type", "application/x-www-form-urlencoded"}, 303},
		{"page with a bad cookie", "GET", web.PagePath, "", []string{"Cookie", web.CookieName + "=forged"}, 200},
	}
	for i, a := range attempts {
		addr := fmt.Sprintf("198.51.100.%d:5000", i+1)
		for n := range 4 {
			if w := send(addr, a.method, a.target, a.body, a.hdr...); w.Code != a.refused {
				t.Fatalf("%s, attempt %d: status %d, want %d: %s", a.name, n+1, w.Code, a.refused, w.Body)
			}
		}
		w := send(addr, a.method, a.target, a.body, a.hdr...)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Content-Type") != "application/problem+json" || w.Header().Get("Retry-After") == "" {
			t.Errorf("%s, attempt 5: status %d %q, Retry-After %q; want a problem+json 429 with Retry-After",
				a.name, w.Code, w.Header().Get("Content-Type"), w.Header().Get("Retry-After"))
		}
		if len(w.Result().Cookies()) != 0 || w.Header().Get("Location") != "" {
			t.Errorf("%s, attempt 5: the refusal also set %q, Location %q", a.name, w.Header().Values("Set-Cookie"), w.Header().Get("Location"))
		}
		// A good token from the spent address still works; so does the next address.
		if w := send(addr, "GET", "/keys", "", "Authorization", "Bearer "+good); w.Code != http.StatusOK {
			t.Errorf("%s: a good token after the limit: %d %s", a.name, w.Code, w.Body)
		}
	}
	if w := send("198.51.100.200:5000", "GET", "/keys", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("another address: %d, want 401", w.Code)
	}
}

// TestAllowOn405: the Allow header of an API 405 lists the methods the matched
// path serves, from the router's own routes.
func TestAllowOn405(t *testing.T) {
	t.Parallel()
	p := newInProcess(t, sqliteEnv(t), nil)
	for _, rt := range sweepRoutes {
		for _, m := range []string{"PUT", "DELETE"} {
			w := httptest.NewRecorder()
			p.handler.ServeHTTP(w, httptest.NewRequest(m, rt.path, nil))
			if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != rt.allow || w.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s %s: %d, Allow %q, %q; want a problem+json 405 with Allow %q", m, rt.path, w.Code, w.Header().Get("Allow"), w.Header().Get("Content-Type"), rt.allow)
			}
			if !bytes.Contains(w.Body.Bytes(), []byte(`"status":405`)) {
				t.Errorf("%s %s: body %s", m, rt.path, w.Body)
			}
		}
	}
}
