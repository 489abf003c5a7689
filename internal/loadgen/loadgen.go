// Package loadgen sends HTTP/1.1 requests over keep-alive loopback connections as
// fast as a server answers them, for the project's benchmarks: a small wrk.
//
// A Go net/http client spends more CPU a request than the handlers it measures,
// and on a 2-core machine the client and the server share the cores, so its cost
// would blur the difference between a bare handler and a gated one. loadgen writes
// a prepared request and reads the answer with a bufio.Reader, parsing only the
// status line and Content-Length: a few hundred nanoseconds a request.
package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Request is one request, sent as is. Header values must not hold CR or LF.
type Request struct {
	Method, Path string
	Header       map[string]string
	Body         []byte
}

// Bytes renders the request as it goes on the wire to host. Render each request
// once, before a run.
func (r Request) Bytes(host string) []byte {
	var b bytes.Buffer
	method := r.Method
	if method == "" {
		method = "GET"
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, r.Path, host)
	for k, v := range r.Header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if r.Body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.Body))
	}
	b.WriteString("\r\n")
	b.Write(r.Body)
	return b.Bytes()
}

// Result is what a run saw.
type Result struct {
	Requests int64
	Elapsed  time.Duration
	Statuses map[int]int64
	Errors   int64
}

// PerSecond returns the requests answered per second.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Run keeps conns connections to addr busy for d, each sending the requests next
// returns (Request.Bytes, given the connection's number and its request count) one
// after the other, and returns what they saw. A connection that fails is redialed;
// errors are counted, not returned.
func Run(addr string, conns int, d time.Duration, next func(conn int, n int64) []byte) Result {
	var (
		total, errs atomic.Int64
		mu          sync.Mutex
		statuses    = map[int]int64{}
		wg          sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[int]int64{}
			var n int64
			for time.Now().Before(deadline) {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					errs.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				br := bufio.NewReaderSize(conn, 16<<10)
				for time.Now().Before(deadline) {
					if _, err = conn.Write(next(c, n)); err != nil {
						break
					}
					var status int
					if status, err = readResponse(br); err != nil {
						break
					}
					local[status]++
					n++
				}
				if err != nil {
					errs.Add(1)
				}
				conn.Close()
			}
			total.Add(n)
			mu.Lock()
			for k, v := range local {
				statuses[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return Result{Requests: total.Load(), Elapsed: time.Since(start), Statuses: statuses, Errors: errs.Load()}
}

var errMalformed = errors.New("loadgen: malformed response")

// readResponse reads one response and returns its status. It needs a
// Content-Length (chunked answers are not read).
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, errMalformed
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, errMalformed
	}
	length := -1
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		if len(h) > 16 && (h[0] == 'C' || h[0] == 'c') && bytes.EqualFold(h[:15], []byte("content-length:")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(h[15:]))); err != nil {
				return 0, errMalformed
			}
		}
	}
	if length < 0 {
		return 0, errMalformed
	}
	if _, err := br.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}

// Flags of the benchmarks that use Bench.
var (
	// Duration is how long one measured run lasts.
	Duration = flag.Duration("loadgen.duration", 3*time.Second, "how long each loadgen run lasts")
	// Conns is how many keep-alive connections a run keeps busy.
	Conns = flag.Int("loadgen.conns", 64, "keep-alive connections of each loadgen run")
)

// Bench serves h on a loopback listener and, b.N times, keeps *Conns connections
// busy for *Duration with the requests of next (see Run), built for the listener's
// address by build. It reports the median run's requests a second (req/s) and fails
// b when any answer is not 200 or a connection failed. Run it with -benchtime=1x
// (one run a benchmark) and -count for several.
func Bench(b *testing.B, h http.Handler, build func(host string) func(conn int, n int64) []byte) float64 {
	b.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	next := build(addr)
	var rates []float64
	for range b.N {
		res := Run(addr, *Conns, *Duration, next)
		for status, n := range res.Statuses {
			if status != http.StatusOK {
				b.Fatalf("%d answers %d (of %d)", n, status, res.Requests)
			}
		}
		if res.Errors > 0 || res.Requests == 0 {
			b.Fatalf("%d connection errors, %d requests", res.Errors, res.Requests)
		}
		rates = append(rates, res.PerSecond())
	}
	slices.Sort(rates)
	rate := rates[len(rates)/2]
	b.ReportMetric(rate, "req/s")
	b.ReportMetric(1e9/rate, "ns/op")
	return rate
}

// Same returns a build function that sends req on every connection.
func Same(req Request) func(host string) func(int, int64) []byte {
	return func(host string) func(int, int64) []byte {
		raw := req.Bytes(host)
		return func(int, int64) []byte { return raw }
	}
}

// PerConn returns a build function whose connection c sends reqs[c % len(reqs)].
func PerConn(reqs ...Request) func(host string) func(int, int64) []byte {
	return func(host string) func(int, int64) []byte {
		raws := make([][]byte, len(reqs))
		for i, r := range reqs {
			raws[i] = r.Bytes(host)
		}
		return func(c int, _ int64) []byte { return raws[c%len(raws)] }
	}
}

// Rounds is how many bare/gated pairs Compare measures.
var Rounds = flag.Int("loadgen.rounds", 5, "bare/gated pairs each Compare measures")

// Warmup is how long Compare drives a handler, unmeasured, right before each
// measured run of it: what a handler does once after a pause (a gate sizing its
// quota leases and burst batches anew, caches refilling after the other
// handler's run) is not its throughput.
var Warmup = flag.Duration("loadgen.warmup", 500*time.Millisecond, "unmeasured load before each measured Compare run")

// Case is a handler under load and the requests it gets.
type Case struct {
	Handler http.Handler
	Build   func(host string) func(conn int, n int64) []byte
}

// Compare measures base and then subject, *Rounds times in turn (each run lasts
// *Duration with *Conns connections, after *Warmup of the same load unmeasured),
// and reports on b the median requests a second of each and the median of the
// pairs' ratios subject/base (x-bare): pairs measured back to back see the same
// machine, which drifts on a shared host.
// It fails b when an answer is not 200 or a connection failed.
func Compare(b *testing.B, base, subject Case) (ratio float64) {
	b.Helper()
	var servers [2]*httptest.Server
	var next [2]func(int, int64) []byte
	var addrs [2]string
	for i, c := range []Case{base, subject} {
		servers[i] = httptest.NewServer(c.Handler)
		defer servers[i].Close()
		addrs[i] = servers[i].Listener.Addr().String()
		next[i] = c.Build(addrs[i])
	}
	var rates [2][]float64
	var ratios []float64
	for range b.N * *Rounds {
		var pair [2]float64
		for i := range 2 {
			if *Warmup > 0 {
				Run(addrs[i], *Conns, *Warmup, next[i])
			}
			res := Run(addrs[i], *Conns, *Duration, next[i])
			for status, n := range res.Statuses {
				if status != http.StatusOK {
					b.Fatalf("%d answers %d (of %d)", n, status, res.Requests)
				}
			}
			if res.Errors > 0 || res.Requests == 0 {
				b.Fatalf("%d connection errors, %d requests", res.Errors, res.Requests)
			}
			pair[i] = res.PerSecond()
			rates[i] = append(rates[i], pair[i])
		}
		ratios = append(ratios, pair[1]/pair[0])
	}
	median := func(xs []float64) float64 {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	b.ReportMetric(median(rates[0]), "bare-req/s")
	b.ReportMetric(median(rates[1]), "req/s")
	ratio = median(ratios)
	b.ReportMetric(ratio, "x-bare")
	b.ReportMetric(1e9/median(rates[1]), "ns/op")
	return ratio
}
