package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// Source is the local broker as the bridge sees it: *localbroker.Broker
// satisfies it. Subscribe's handler runs on the publisher's goroutine and
// its payload is valid only during the call; origin names the publisher, so
// that messages the bridge itself published (PublishAs with its origin) are
// never sent back up.
type Source interface {
	Subscribe(filter string, h func(topic string, payload []byte, retain bool, qos byte, origin string)) (unsubscribe func(), err error)
	PublishAs(origin, topic string, payload []byte, retain bool, qos byte) error
}

// store is the part of the queue the bridge uses: *queue.Queue in
// production, *queue.Memory in unit tests.
type store interface {
	Append(recs []queue.Record) error
	Next(max int) ([]queue.Record, error)
	Ack(seq uint64) error
	Rewind()
	Ready() <-chan struct{}
	Sync() error
	Stats() queue.Stats
	Close() error
}

var (
	_ store = (*queue.Queue)(nil)
	_ store = (*queue.Memory)(nil)
)

// Bridge forwards local messages to a cloud broker through the durable
// queue, and cloud commands to the local broker.
type Bridge struct {
	cfg    Config
	src    Source
	q      store
	log    *slog.Logger
	origin string // the PublishAs origin of downlink messages
	in     *handoff
	dial   dialFunc // how a connection is made; tests replace it

	running     atomic.Bool
	reconf      chan reconfigure // Reconfigure's requests to Run
	stopped     chan struct{}    // closed when Run returns
	live        atomic.Pointer[Config]
	health      health
	st          counters
	sentThrough uint64 // highest Seq ever published; owned by the session goroutine

	mu       sync.Mutex
	upstream string // redacted URL of the current or last upstream
	conn     bool
}

// New opens the queue (buffer.dir) of a checked Config. Nothing is
// subscribed or connected until Run. The queue's files are repaired, never
// refused: New fails only when the directory cannot be used at all.
func New(cfg Config, src Source, log *slog.Logger) (*Bridge, error) {
	if !cfg.checked {
		return nil, errors.New("bridge: config not checked (call Config.Check first)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q, err := queue.Open(queue.Options{
		Dir:          cfg.Buffer.Dir,
		MaxBytes:     int64(cfg.Buffer.MaxBytes),
		MaxAge:       *cfg.Buffer.MaxAge,
		WhenFull:     cfg.Buffer.WhenFull.policy(),
		SyncInterval: cfg.Buffer.Sync.interval(),
		Logger:       log.With("component", "queue"),
	})
	if err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	return newBridge(cfg, src, q, log.With("component", "bridge")), nil
}

func newBridge(cfg Config, src Source, q store, log *slog.Logger) *Bridge {
	setPahoLogger(log)
	b := &Bridge{
		cfg:     cfg,
		src:     src,
		q:       q,
		log:     log,
		origin:  "fieldbridge-bridge/" + cfg.clientID,
		reconf:  make(chan reconfigure),
		stopped: make(chan struct{}),
	}
	b.in = newHandoff(&b.st, log)
	b.dial = b.dialPaho
	return b
}

// Run forwards until ctx ends, then shuts down in order: it stops taking
// new messages, writes what was handed off to the queue and syncs it,
// stops sending, waits briefly for the acknowledgements of messages in
// flight, publishes "offline", disconnects (so the will does not fire) and
// closes the queue. Unacknowledged messages stay queued for the next start.
// Run returns an error only when it cannot start (a rejected subscription)
// or the queue fails to close cleanly; connection problems are retried for
// as long as it runs.
func (b *Bridge) Run(ctx context.Context) (err error) {
	if !b.running.CompareAndSwap(false, true) {
		return errors.New("bridge: Run called twice")
	}
	defer close(b.stopped)
	defer func() {
		if cerr := b.q.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("bridge: close queue: %w", cerr)
		}
	}()

	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		b.guard("queue writer", func() { b.in.runWriter(b.q) })
	}()

	rs := &runState{subs: map[ruleKey]func(){}, applied: b.cfg}
	stopIntake := func() {
		rs.unsubscribeAll()
		b.in.close()  // waits for handlers still running
		writer.Wait() // the writer appends the rest and syncs
	}
	b.setLive(b.cfg)
	if err := b.subscribeForward(rs, b.cfg.Forward); err != nil {
		stopIntake()
		return err
	}
	b.log.Info("bridge running", "upstreams", len(b.cfg.Upstreams), "forward_rules", len(b.cfg.Forward),
		"subscribe_rules", len(b.cfg.Subscribe), "status_topic", b.cfg.StatusTopic,
		"queue", b.cfg.Buffer.Dir, "backlog", b.q.Stats().PendingRecords)

	b.startSession(ctx, rs)
	b.serveReconfigure(ctx, rs) // until ctx ends
	stopIntake()
	rs.stopSession()
	st := b.Stats()
	// forwarded counts publishes, resends included; acked the messages the
	// cloud confirmed: forwarded minus acked were resent or in flight.
	b.log.Info("bridge stopped", "backlog", st.Pending, "forwarded", st.Forwarded, "acked", st.Acked, "resent", st.Resent)
	return nil
}

// Close releases the queue of a Bridge whose Run was never called (Run
// closes it itself). It is idempotent.
func (b *Bridge) Close() error { return b.q.Close() }

// setConnected records the link state for Stats.
func (b *Bridge) setConnected(on bool, upstream string) {
	b.mu.Lock()
	b.conn, b.upstream = on, upstream
	b.mu.Unlock()
}

// guard runs fn, and runs it again after a panic (logged with its stack)
// until it returns: a bug met by one message or one connection must not
// stop a bridge that runs unattended for years.
func (b *Bridge) guard(name string, fn func()) {
	for b.panicked(name, fn) {
		time.Sleep(100 * time.Millisecond) // no hot loop on a panic that repeats
	}
}

func (b *Bridge) panicked(name string, fn func()) (panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			b.log.Error(name+" panicked; restarting it", "panic", p, "stack", string(debug.Stack()))
			panicked = true
		}
	}()
	fn()
	return false
}

// sleep waits d or until ctx ends; it reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
