package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// TestHealthySenderStuck: connected, messages queued, no acknowledgement
// for longer than ack_timeout allows: unhealthy; acknowledged: healthy.
func TestHealthySenderStuck(t *testing.T) {
	q := queue.NewMemory(0, queue.DropOldest)
	b := newBridge(checkedConfig(t, func(c *Config) { c.AckTimeout = time.Hour }), newFakeSource(), q, testLogger())
	var tok *fakeToken
	d := &fakeDialer{setup: func(c *fakeConn) {
		c.onPublish = func(n int, _ queue.Record, t *fakeToken) {
			if n == 0 {
				t.complete(nil) // the birth
			} else {
				tok = t // the data: held
			}
		}
	}}
	b.dial = d.dial(b)
	runBridge(t, b)
	waitFor(t, 5*time.Second, "connected", func() bool { return b.Stats().Connected })
	fill(t, q, 1)
	waitFor(t, 5*time.Second, "the message in flight", func() bool { return b.Stats().InFlight == 1 })

	t0 := time.Now()
	if err := b.Healthy(t0); err != nil {
		t.Fatalf("first look: %v", err)
	}
	if err := b.Healthy(t0.Add(time.Hour)); err != nil {
		t.Fatalf("within ack_timeout: %v", err)
	}
	if err := b.Healthy(t0.Add(time.Hour + stuckSlack + time.Second)); err == nil {
		t.Fatal("no acknowledgement for ack_timeout + slack: still healthy")
	}
	tok.complete(nil)
	waitFor(t, 5*time.Second, "acknowledged", func() bool { return b.Stats().Acked == 1 })
	if err := b.Healthy(t0.Add(2 * time.Hour)); err != nil {
		t.Fatalf("after the acknowledgement: %v", err)
	}
}

// TestHealthySessionStuck: a connection attempt that never returns makes
// the bridge unhealthy once connect_timeout and backoff_max have passed.
func TestHealthySessionStuck(t *testing.T) {
	b := newBridge(checkedConfig(t, nil), newFakeSource(), queue.NewMemory(0, queue.DropOldest), testLogger())
	dialing := make(chan struct{})
	b.dial = func(ctx context.Context, _ *Upstream, _ *link) (conn, error) {
		close(dialing)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	runBridge(t, b)
	<-dialing
	t0 := time.Now()
	if err := b.Healthy(t0); err != nil {
		t.Fatalf("first look: %v", err)
	}
	limit := 2*b.cfg.ConnectTimeout + b.cfg.BackoffMax + stuckSlack
	if err := b.Healthy(t0.Add(limit - time.Second)); err != nil {
		t.Fatalf("within the limit: %v", err)
	}
	if err := b.Healthy(t0.Add(limit + time.Second)); err == nil {
		t.Fatal("an attempt stuck beyond its timeouts: still healthy")
	}
}
