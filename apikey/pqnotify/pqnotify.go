// Package pqnotify listens on a PostgreSQL notification channel, on lib/pq's
// pq.Listener, and hands what it hears to an apikey.Authenticator: the hashes of
// keys that apikey/sqlstore changed in any process, and the channel's state.
//
// apikey/sqlstore notifies the channel (sqlstore.DefaultChannel unless its
// Config.Channel says otherwise) with a key's hash in the transaction that
// changes the key, so a listener hears of the change when, and only if, it
// commits. Wire a listener to an Authenticator with
//
//	stop, err := pqnotify.Listen(ctx, dsn, sqlstore.DefaultChannel,
//		func(hashes []string) { auth.Forget(hashes...) }, auth.SetChannel, logger)
//
// and call stop at shutdown. A payload is one hash; an empty payload (NOTIFY
// tollgate_keys, from psql) means every key, and makes every listening process
// forget its whole cache.
//
// # Connection loss
//
// While the connection is down, notifications are lost. The listener says so
// with onState(false) as soon as it knows: when the connection fails, or when it
// stops answering the pings sent every Config.PingInterval (a connection can
// die silently, say behind a NAT that dropped it: then the listener closes it
// itself). The Authenticator then serves no cache entry older than its
// FallbackTTL. The listener reconnects on its own, with a backoff between
// Config.MinReconnect and Config.MaxReconnect; once it listens again it calls
// onChange(nil), meaning "forget everything" (what changed meanwhile is
// unknown), then onState(true). It logs each loss, failed attempt and recovery;
// the caller counts them through onState.
package pqnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Config holds a listener's timings. The zero value is usable.
type Config struct {
	// MinReconnect is the first wait before reconnecting after a loss, doubled
	// after each failed attempt up to MaxReconnect. Zero means 250 ms and 10 s.
	MinReconnect, MaxReconnect time.Duration
	// PingInterval is how often the connection is checked; PingTimeout how long
	// a check may take before the connection is taken for dead. Zero means 5 s
	// each. They bound how long a silently dead connection goes unnoticed.
	PingInterval, PingTimeout time.Duration
	// DialTimeout bounds each TCP connection attempt. Zero means 10 s.
	DialTimeout time.Duration
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MinReconnect, 250*time.Millisecond)
	def(&c.MaxReconnect, 10*time.Second)
	def(&c.PingInterval, 5*time.Second)
	def(&c.PingTimeout, 5*time.Second)
	def(&c.DialTimeout, 10*time.Second)
	c.MaxReconnect = max(c.MaxReconnect, c.MinReconnect)
	return c
}

// Listen is Config{}.Listen.
func Listen(ctx context.Context, dsn, channel string, onChange func(hashes []string), onState func(up bool), logger *slog.Logger) (stop func(), err error) {
	return Config{}.Listen(ctx, dsn, channel, onChange, onState, logger)
}

// Listen connects to the PostgreSQL server at dsn (a lib/pq connection string or
// URL) on a connection of its own and listens on channel (case-sensitive, at
// most 63 bytes). It returns once it listens, having called onChange(nil) and
// onState(true) (unless the new connection was lost already: then they come with
// the reconnection), or with an error: the first connection attempt's, or ctx's
// if ctx ends first (ctx bounds the start only). The dsn must reach PostgreSQL
// itself or a pooler in session mode: LISTEN does not survive transaction
// pooling. From then on, each notification
// on channel calls onChange with its payload ([]string{hash}; nil for an empty
// payload, meaning every key), and the connection's state calls onState as the
// package doc says, until stop.
//
// onChange and onState are called one at a time, from one goroutine, in the
// order of events; they must return quickly (the connection is not read while
// they run) and must not call stop. Once stop returns, neither is called again.
// onState may be nil. A nil logger means slog.Default().
func (c Config) Listen(ctx context.Context, dsn, channel string, onChange func(hashes []string), onState func(up bool), logger *slog.Logger) (stop func(), err error) {
	if channel == "" || len(channel) > 63 || strings.IndexByte(channel, 0) >= 0 {
		return nil, fmt.Errorf("pqnotify: channel %q is not a channel name (1 to 63 bytes, no NUL)", channel)
	}
	if onChange == nil {
		return nil, errors.New("pqnotify: onChange is nil")
	}
	if onState == nil {
		onState = func(bool) {}
	}
	if logger == nil {
		logger = slog.Default()
	}
	c = c.withDefaults()
	l := &listener{
		channel:  channel,
		onChange: onChange,
		onState:  onState,
		logger:   logger.With("channel", channel),
		events:   make(chan event),
		done:     make(chan struct{}),
	}
	l.dialer = newDialer(c.DialTimeout)
	l.pl = pq.NewDialListener(l.dialer, dsn, c.MinReconnect, c.MaxReconnect, l.event)

	// The first connection: pl.Listen waits for it (retrying forever), so watch
	// the events for its failure.
	listened := make(chan error, 1)
	go func() { listened <- l.pl.Listen(channel) }()
	lost := false // the first connection was lost already
	for waiting := true; waiting; {
		select {
		case err := <-listened:
			if err != nil {
				l.shutdown()
				return nil, fmt.Errorf("pqnotify: listen: %w", err)
			}
			waiting = false
		case ev := <-l.events:
			switch ev.typ {
			case pq.ListenerEventConnectionAttemptFailed:
				l.shutdown()
				<-listened
				return nil, fmt.Errorf("pqnotify: connect: %w", ev.err)
			case pq.ListenerEventDisconnected:
				lost = true
			}
		case <-ctx.Done():
			l.shutdown()
			<-listened
			return nil, fmt.Errorf("pqnotify: connect: %w", ctx.Err())
		}
	}
	if !lost { // else the reconnection reports it
		l.logger.Info("pqnotify: listening")
		l.listening()
	}
	l.wg.Add(2)
	go l.loop()
	go l.pinger(c.PingInterval, c.PingTimeout)
	return func() {
		l.shutdown()
		l.wg.Wait()
	}, nil
}

// listener is one Listen's state.
type listener struct {
	channel  string
	onChange func([]string)
	onState  func(bool)
	logger   *slog.Logger
	pl       *pq.Listener
	dialer   *dialer
	// events carries pq's events and the pinger's to loop, unbuffered: pq's
	// goroutine waits until loop has taken an event before it goes on (and
	// sends the notifications that follow it), so loop sees them in order.
	events chan event
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	up     bool // loop's own
}

// event is a pq.Listener event, or evPingTimeout.
type event struct {
	typ pq.ListenerEventType
	err error
}

// evPingTimeout is the pinger's event: the connection did not answer in time.
const evPingTimeout pq.ListenerEventType = -1

// event is pq.Listener's callback.
func (l *listener) event(typ pq.ListenerEventType, err error) {
	select {
	case l.events <- event{typ, err}:
	case <-l.done:
	}
}

// listening reports that the listener listens (again): what changed while it
// did not is unknown.
func (l *listener) listening() {
	l.onChange(nil)
	l.up = true
	l.onState(true)
}

// down reports the connection lost, once.
func (l *listener) down() {
	if l.up {
		l.up = false
		l.onState(false)
	}
}

// loop delivers notifications and events until stop.
func (l *listener) loop() {
	defer l.wg.Done()
	for {
		select {
		case <-l.done:
			return
		case ev := <-l.events:
			switch ev.typ {
			case pq.ListenerEventDisconnected:
				l.logger.Warn("pqnotify: connection lost; key changes go unheard until it is back", "err", ev.err)
				l.down()
			case evPingTimeout:
				l.logger.Warn("pqnotify: connection does not answer; closing it", "err", ev.err)
				l.down()
			case pq.ListenerEventConnectionAttemptFailed:
				l.logger.Warn("pqnotify: reconnection failed", "err", ev.err)
			}
		case n, ok := <-l.pl.Notify:
			switch {
			case !ok: // closed by stop
				return
			case n == nil: // reconnected and listening again (after ListenerEventReconnected)
				l.logger.Info("pqnotify: listening again")
				l.listening()
			case n.Channel != l.channel:
			case n.Extra == "":
				l.onChange(nil)
			default:
				l.onChange([]string{n.Extra})
			}
		}
	}
}

// pinger checks the connection every interval; when a check takes longer than
// timeout, it reports the connection down and closes it, so that pq reconnects.
func (l *listener) pinger(interval, timeout time.Duration) {
	defer l.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		res := make(chan error, 1)
		go func() { res <- l.pl.Ping() }() // returns at once while disconnected
		timer := time.NewTimer(timeout)
		select {
		case <-res:
		case <-timer.C:
			l.event(evPingTimeout, fmt.Errorf("no answer to a ping in %v", timeout))
			l.dialer.closeCurrent()
			select {
			case <-res:
			case <-l.done:
			}
		case <-l.done:
		}
		timer.Stop()
	}
}

// shutdown stops the listener; loop and pinger return soon after.
func (l *listener) shutdown() {
	l.once.Do(func() {
		close(l.done)
		l.dialer.close() // wakes whatever waits on the socket, so Close can lock
		_ = l.pl.Close()
		go func() { // let pq's goroutine deliver what it holds and end
			for range l.pl.Notify {
			}
		}()
	})
}

// dialer is the pq.Dialer of a listener: it keeps the connection it made last,
// so that the pinger can close a connection that stopped answering (pq itself
// would wait on it as long as TCP does), and it turns on TCP keep-alives.
type dialer struct {
	timeout time.Duration
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	conn    net.Conn
}

func newDialer(timeout time.Duration) *dialer {
	ctx, cancel := context.WithCancel(context.Background())
	return &dialer{timeout: timeout, ctx: ctx, cancel: cancel}
}

func (d *dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	nd := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3,
	}}
	conn, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx.Err() != nil {
		conn.Close()
		return nil, net.ErrClosed
	}
	d.conn = conn
	return conn, nil
}

// closeCurrent closes the connection made last.
func (d *dialer) closeCurrent() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
	}
}

// close closes the connection made last and fails every dial from now on.
func (d *dialer) close() {
	d.cancel()
	d.closeCurrent()
}
