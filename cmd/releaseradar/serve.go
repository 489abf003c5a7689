package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/releaseradar/tollgate/apikey/pqnotify"
	aksql "github.com/releaseradar/tollgate/apikey/sqlstore"
	"github.com/releaseradar/tollgate/cmd/releaseradar/internal/market"
	"github.com/releaseradar/tollgate/entitlement"
	"github.com/releaseradar/tollgate/internal/sqldb"
	"github.com/releaseradar/tollgate/ratelimit"
	"github.com/releaseradar/tollgate/ratelimit/redisstore"
)

// Server limits.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	// shutdownGrace is how long in-flight requests may take to finish.
	shutdownGrace = 20 * time.Second
)

// server is the running API: the app plus the HTTP side.
type server struct {
	app    *app
	log    *slog.Logger
	obs    *observer
	errs   *errorWriter
	reg    *prometheus.Registry
	redis  *redis.Client // nil: burst counters in process
	market *market.API
	// stopListen stops the LISTEN for key changes (PostgreSQL); nil otherwise.
	stopListen func()
	ready      atomic.Bool
}

// serveCommand runs `releaseradar serve` until SIGINT or SIGTERM.
func serveCommand(args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("releaseradar serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lookup := flagLookup(fs, getenv)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "releaseradar serve: unexpected argument %q\n%s\n", fs.Arg(0), usage)
		return 2
	}
	cfg, err := loadConfig(lookup)
	if err != nil {
		fmt.Fprintln(stderr, "releaseradar:", err)
		return 1
	}
	log := newLogger(stderr, cfg.LogFormat)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// After the first signal, a second one stops the process at once.
	context.AfterFunc(ctx, stop)
	if err := serve(ctx, cfg, log); err != nil {
		fmt.Fprintln(stderr, "releaseradar:", err)
		return 1
	}
	return 0
}

// serve starts the API and admin listeners and serves until ctx ends, then lets
// in-flight requests finish and closes the database.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	s, err := newServer(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.close()

	apiLn, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return &settingError{env: "RR_ADDR", err: err}
	}
	adminLn, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		apiLn.Close()
		return &settingError{env: "RR_ADMIN_ADDR", err: err}
	}
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	apiSrv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errorLog,
	}
	adminSrv := &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errorLog,
	}

	errc := make(chan error, 2)
	go func() { errc <- apiSrv.Serve(apiLn) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	s.ready.Store(true)
	s.announce(apiLn.Addr().String(), adminLn.Addr().String())
	go s.prune(ctx)
	stopReporter := s.startReporter(ctx)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: letting in-flight requests finish", "grace", shutdownGrace.String())
	case serveErr = <-errc:
		log.Error("listener failed", "err", serveErr)
	}
	s.ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := apiSrv.Shutdown(sctx); err != nil {
		log.Error("API shutdown", "err", err)
	}
	if err := adminSrv.Shutdown(sctx); err != nil {
		log.Error("admin shutdown", "err", err)
	}
	// The reporter stops before the database closes; a meter event in flight is
	// abandoned, stays pending, and goes out with the same identifier on the next
	// start (Stripe counts it once). What the gate still holds of the ledger is
	// written as the app closes, and reported on the next start.
	stopReporter()
	log.Info("stopped")
	return serveErr
}

// newServer connects to Redis (when configured) and the database, and builds the
// gate, the handlers and the metrics around them.
func newServer(ctx context.Context, cfg config, log *slog.Logger) (*server, error) {
	s := &server{log: log, reg: prometheus.NewRegistry()}
	s.obs = newObserver(log, cfg.Catalog.Names(), planPublic, s.reg)
	s.errs = &errorWriter{log: log, failed: s.obs.dependencyFailed}

	var counters ratelimit.Store
	if cfg.RedisURL != "" {
		redis.SetLogger(redisLogger{log})
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, &settingError{env: "RR_REDIS_URL", err: errors.New("not a valid redis:// URL")}
		}
		// A request waits for its counter: keep Redis waits short, and let the
		// limiter's breaker and fail-open policy handle an outage rather than
		// go-redis's retries (with its defaults a closed port cost 1.7 s a call).
		opts.DialTimeout = 250 * time.Millisecond
		opts.MaxRetries = 1
		opts.DialerRetries = 1
		opts.ReadTimeout = 500 * time.Millisecond
		opts.WriteTimeout = 500 * time.Millisecond
		opts.PoolTimeout = time.Second
		s.redis = redis.NewClient(opts)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = s.redis.Ping(pctx).Err()
		cancel()
		if err != nil {
			s.close()
			return nil, &settingError{env: "RR_REDIS_URL", err: fmt.Errorf("cannot reach Redis: %w", err)}
		}
		if counters, err = redisstore.New(s.redis, cfg.RedisPrefix); err != nil {
			s.close()
			return nil, &settingError{env: "RR_REDIS_URL", err: err}
		}
	}
	a, err := openApp(ctx, cfg, log, hooks{
		counters:       counters,
		onError:        s.errs.write,
		observe:        s.obs.decision,
		observeWebhook: s.obs.webhookEvent,
	})
	if err != nil {
		s.close()
		return nil, err
	}
	s.app = a
	s.reg.MustRegister(collectors.NewDBStatsCollector(a.db.DB, "releaseradar"))
	s.reg.MustRegister(limiterMetrics(a.gate.Limiter())...)
	s.reg.MustRegister(gateMetrics(a.gate, s.obs)...)
	if a.reporter != nil {
		s.reg.MustRegister(reporterMetrics(a.reporter)...)
	}
	if sqldb.IsPostgres(a.db) {
		// Key changes of every replica reach this one's cache through LISTEN/NOTIFY;
		// while the channel is down the cache keeps entries one second at most.
		stop, err := pqnotify.Listen(ctx, cfg.DatabaseURL, aksql.DefaultChannel, func(h []string) { a.gate.ForgetKeys(h...) }, func(up bool) {
			a.gate.SetKeyChannel(up)
			s.obs.keyChannel(up)
			if !up {
				log.Warn("key change channel down: cached keys now live 1 s at most, until it is back")
			} else {
				log.Info("key change channel up: listening for key changes of every replica")
			}
		}, log)
		if err != nil {
			log.Warn("cannot listen for key changes; cached keys live 1 s at most", "err", err)
		} else {
			s.stopListen = stop
		}
	}
	ttl := cfg.CacheTTL
	if ttl == 0 {
		ttl = -1 // off
	}
	s.market = market.NewAPI(a.db, market.Config{Logger: log, OnError: s.errs.write, CacheTTL: ttl})
	return s, nil
}

func (s *server) close() {
	if s.stopListen != nil {
		s.stopListen()
	}
	if s.app != nil {
		s.app.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
}

// adminHandler serves /metrics, /healthz and /readyz on the admin listener.
func (s *server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: shutting down")
			return
		}
		report, ok := s.readiness(r.Context())
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "not ready\n"+report)
			return
		}
		fmt.Fprint(w, "ready\n"+report)
	})
	return mux
}

// readiness checks each dependency and reports one line for each; ok is false
// when one the server cannot serve without (the database) is down. Redis down
// leaves the server ready: the burst limiter fails open.
func (s *server) readiness(ctx context.Context) (report string, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var b strings.Builder
	ok = true
	if err := s.app.db.PingContext(ctx); err != nil {
		s.log.Warn("readyz: database unreachable", "err", err)
		b.WriteString("database: down\n")
		ok = false
	} else {
		b.WriteString("database: ok\n")
	}
	if s.redis != nil {
		if err := s.redis.Ping(ctx).Err(); err != nil {
			s.log.Warn("readyz: redis unreachable", "err", err)
			b.WriteString("redis: down (burst limits fail open)\n")
		} else {
			b.WriteString("redis: ok\n")
		}
	}
	return b.String(), ok
}

// redisLogger sends go-redis's own log lines through the server's logger, so a
// JSON log stays JSON during a Redis outage.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// eventRetention is how long processed webhook event IDs are kept for
// deduplication; Stripe retries an event for up to three days.
const eventRetention = 30 * 24 * time.Hour

// usageRetention is how long the usage ledger's minutes and the meter reports are
// kept: beyond the account page's 90 days and Stripe's 35, for `admin usage` to
// compare a year and its last month.
const usageRetention = 395 * 24 * time.Hour

// prune forgets old processed webhook event IDs, and ledger minutes and meter
// reports older than usageRetention, at start and then daily.
func (s *server) prune(ctx context.Context) {
	tick := time.NewTicker(24 * time.Hour)
	defer tick.Stop()
	for {
		n, err := s.app.ent.PruneEvents(ctx, eventRetention)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("pruning processed webhook events failed", "err", err)
		case n > 0:
			s.log.Info("pruned processed webhook events", "count", n)
		}
		minutes, reports, err := s.app.ents.PruneUsage(ctx, s.app.now().Add(-usageRetention))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("pruning the usage ledger failed", "err", err)
		case minutes > 0 || reports > 0:
			s.log.Info("pruned the usage ledger", "minutes", minutes, "reports", reports)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// startReporter runs the meter reporter, when there is one, until ctx ends or the
// returned function is called; that function returns once the reporter has
// stopped.
func (s *server) startReporter(ctx context.Context) (stop func()) {
	cfg := s.app.cfg
	if s.app.reporter == nil {
		if cfg.MeterEvent != "" {
			s.log.Warn("RR_STRIPE_METER_EVENT is set without RR_STRIPE_API_KEY: usage is not reported to Stripe")
		}
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.app.reporter.Run(ctx) // returns ctx's error
	}()
	s.log.Info("reporting usage to the Stripe Billing Meter", "event_name", cfg.MeterEvent,
		"interval", cfg.MeterInterval.String(), "grace", cfg.MeterGrace.String())
	return func() {
		cancel()
		<-done
	}
}

// reporterMetrics exports the meter reporter's counters.
func reporterMetrics(r *entitlement.Reporter) []prometheus.Collector {
	counter := func(name, help string, f func(entitlement.ReporterStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(r.Stats())) })
	}
	return []prometheus.Collector{
		counter("tollgate_meter_events_sent_total", "Meter events Stripe accepted (resends it already had included).",
			func(s entitlement.ReporterStats) uint64 { return s.Sent }),
		counter("tollgate_meter_events_duplicate_total", "Of the events sent, resends Stripe already had (counted once by Stripe).",
			func(s entitlement.ReporterStats) uint64 { return s.Duplicates }),
		counter("tollgate_meter_events_failed_total", "Meter event sends that failed; each is retried with backoff.",
			func(s entitlement.ReporterStats) uint64 { return s.Failed }),
		counter("tollgate_meter_reports_abandoned_total", "Reports given up: older than Stripe accepts.",
			func(s entitlement.ReporterStats) uint64 { return s.Abandoned }),
		counter("tollgate_meter_reports_unbilled_total", "Claims of calls of users without a Stripe customer, never sent.",
			func(s entitlement.ReporterStats) uint64 { return s.Unbilled }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_meter_pending",
			Help: "The reporter's backlog after its last pass: closed ledger minutes not claimed yet plus reports not sent yet.",
		}, func() float64 { return float64(r.Stats().Pending) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tollgate_meter_last_pass_timestamp_seconds",
			Help: "When the reporter's last pass ended, in unix seconds (0 before the first).",
		}, func() float64 {
			if t := r.Stats().LastPass; !t.IsZero() {
				return float64(t.UnixNano()) / 1e9
			}
			return 0
		}),
	}
}

// announce tells the operator where the server listens and how to get a key.
func (s *server) announce(apiAddr, adminAddr string) {
	cmd := "releaseradar"
	if strings.Contains(os.Args[0], "go-build") {
		cmd = "go run ./cmd/releaseradar"
	}
	burst := "in process"
	if s.redis != nil {
		burst = "shared through Redis"
	}
	s.log.Info("releaseradar listening",
		"addr", apiAddr,
		"url", "http://"+apiAddr,
		"admin_addr", adminAddr,
		"database", redactURL(s.app.cfg.DatabaseURL),
		"burst_counters", burst)
	s.log.Info("get an API key: "+cmd+" admin grant --user alice --plan pro",
		"try", "curl -H 'x-api-key: KEY' http://"+apiAddr+"/events/search?q=earnings")
	s.log.Info("manage keys in the browser: "+cmd+" admin token --user alice",
		"page", "http://"+apiAddr+"/account/api-keys")
}

// redactURL hides a password in a database URL.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}
