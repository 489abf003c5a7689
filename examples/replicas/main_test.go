package main

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/releaseradar/tollgate/examples/internal/proctest"
	"github.com/releaseradar/tollgate/internal/testenv"
)

// TestReplicas runs two processes on one PostgreSQL schema and one Redis prefix
// and checks that they enforce one quota and one burst budget per key. It skips
// without TOLLGATE_TEST_POSTGRES_URL and TOLLGATE_TEST_REDIS_URL (fails under
// CI=true).
func TestReplicas(t *testing.T) {
	pg := testenv.PostgresURL(t)
	_, prefix := testenv.Redis(t)
	bin := proctest.Build(t)
	env := []string{"DATABASE_URL=" + pg, "REDIS_URL=" + testenv.RedisURL(t), "REDIS_PREFIX=" + prefix}

	quotaKey := proctest.Run(t, bin, env, "issue", "--user", "quota-user", "--plan", "pro", "--limit", "3")
	burstKey := proctest.Run(t, bin, env, "issue", "--user", "burst-user", "--plan", "pro", "--limit", "100")
	raceKey := proctest.Run(t, bin, env, "issue", "--user", "race-user", "--plan", "team", "--limit", "7")

	var bases []string
	for range 2 {
		out := proctest.Start(t, bin, env, []string{"serve", "--addr", "127.0.0.1:0", "--rates", "pro=5-M,team=1000-M"}, "listening on ")
		bases = append(bases, out["listening on "])
	}
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(i int, key string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, bases[i%len(bases)]+"/hello", nil)
		req.Header.Set("x-api-key", key)
		resp, err := client.Do(req)
		if err != nil {
			return -1, err.Error()
		}
		defer resp.Body.Close()
		var body struct{ Detail string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Detail
	}

	t.Run("one monthly quota", func(t *testing.T) {
		for i, want := range []int{200, 200, 200, 429} {
			if s, d := call(i, quotaKey); s != want {
				t.Fatalf("call %d on replica %d: %d %q, want %d", i+1, i%2, s, d, want)
			}
		}
	})
	t.Run("one burst budget", func(t *testing.T) {
		ok, limited := 0, 0
		for i := range 10 {
			switch s, d := call(i, burstKey); {
			case s == 200:
				ok++
			case s == 429 && d == "Rate limit exceeded":
				limited++
			default:
				t.Fatalf("call %d: %d %q", i+1, s, d)
			}
		}
		if ok != 5 || limited != 5 {
			t.Fatalf("%d allowed, %d limited; want 5 and 5 (pro=5-M across both replicas)", ok, limited)
		}
	})
	t.Run("exact quota under concurrency", func(t *testing.T) {
		var mu sync.Mutex
		counts := map[int]int{}
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, _ := call(i, raceKey)
				mu.Lock()
				counts[s]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if counts[200] != 7 || counts[429] != 33 {
			t.Fatalf("statuses %v; want 7 × 200 and 33 × 429 (limit 7)", counts)
		}
	})
}
