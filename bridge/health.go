package bridge

import (
	"fmt"
	"sync"
	"time"
)

// Health, for the systemd watchdog: the gateway stops feeding it while the
// bridge makes no progress that its own timeouts would have forced. A link
// whose acknowledgements stop is dropped by the sender after ack_timeout,
// and a failed connection is retried within backoff_max; when neither
// happens, a goroutine is stuck (a bug, or a driver that never returns),
// and a restart is the cure.

// stuckSlack is added to those timeouts before the bridge counts as stuck.
const stuckSlack = 30 * time.Second

// health remembers when the counters last moved, between Healthy calls.
type health struct {
	mu                  sync.Mutex
	acked, attempts     uint64
	ackedAt, attemptsAt time.Time
}

// Healthy returns nil while the bridge makes progress: messages in flight
// are acknowledged, or a lost connection is being retried. It is meant to
// be called periodically (the watchdog's interval); the first call only
// takes note of the counters.
func (b *Bridge) Healthy(now time.Time) error {
	select {
	case <-b.stopped:
		return nil
	default:
	}
	if !b.running.Load() {
		return nil
	}
	c := b.rules() // not b.cfg, which a reload may be replacing
	h := &b.health
	h.mu.Lock()
	defer h.mu.Unlock()
	acked := b.st.acked.Load()
	attempts := b.st.connects.Load() + b.st.connectFailures.Load()
	if h.ackedAt.IsZero() || acked != h.acked {
		h.acked, h.ackedAt = acked, now
	}
	if h.attemptsAt.IsZero() || attempts != h.attempts {
		h.attempts, h.attemptsAt = attempts, now
	}
	b.mu.Lock()
	connected := b.conn
	b.mu.Unlock()
	if pending := b.q.Stats().PendingRecords; connected && pending > 0 {
		limit := c.AckTimeout + stuckSlack
		if c.MaxRate > 0 {
			limit += time.Duration(float64(time.Second) / c.MaxRate) // a slow max_rate spaces the publishes
		}
		if d := now.Sub(h.ackedAt); d > limit {
			return fmt.Errorf("bridge stuck: connected with %d message(s) queued and none acknowledged for %s, although ack_timeout is %s", pending, d.Round(time.Second), c.AckTimeout)
		}
		return nil
	}
	h.ackedAt = now // nothing is waiting to be sent
	if !connected {
		if d, limit := now.Sub(h.attemptsAt), 2*c.ConnectTimeout+c.BackoffMax+stuckSlack; d > limit {
			return fmt.Errorf("bridge stuck: no connection attempt finished for %s (connect_timeout %s, backoff_max %s)", d.Round(time.Second), c.ConnectTimeout, c.BackoffMax)
		}
		return nil
	}
	h.attemptsAt = now // connected: no attempt is due
	return nil
}
