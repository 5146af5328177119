package bridge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Payloads of the status topic.
const (
	statusOnline  = "online"
	statusOffline = "offline"
)

// shutdownGrace bounds each step of a clean disconnect: waiting for the
// acknowledgements of messages in flight, and for the "offline" message.
const shutdownGrace = 2 * time.Second

// runSessions is the one place that (re)connects: until ctx ends it
// connects, forwards until the connection fails, and pauses with
// exponential backoff and jitter before the next attempt. After
// FailoverAfter failed attempts in a row on one upstream it moves to the
// next. Failures are logged when they start or change, not on every
// attempt.
func (b *Bridge) runSessions(ctx context.Context) {
	bo := backoff{min: b.cfg.BackoffInitial, max: b.cfg.BackoffMax}
	var (
		idx         int       // the upstream tried now
		failsHere   int       // failed attempts in a row on it
		failures    int       // failed attempts in a row, all upstreams
		lastErr     string    // the last failure logged
		outageSince time.Time // zero while connected
		upSince     time.Time
		// troubleSince starts the backoff's clock: at the first failure
		// after a connection that held, not at every short-lived one.
		troubleSince time.Time
	)
	for {
		up := &b.cfg.Upstreams[idx]
		shown := up.u.Redacted()
		b.setConnected(false, shown)
		onUp := func() {
			upSince = time.Now()
			b.setConnected(true, shown)
			b.st.connects.Add(1)
			attrs := []any{"upstream", shown, "backlog", b.q.Stats().PendingRecords}
			if !outageSince.IsZero() {
				attrs = append(attrs, "failed_attempts", failures, "outage", time.Since(outageSince).Round(time.Millisecond))
			}
			b.log.Info("connected to upstream", attrs...)
			failures, lastErr, outageSince = 0, "", time.Time{}
		}
		established, err := b.connection(ctx, up, onUp)
		b.setConnected(false, shown)
		if ctx.Err() != nil {
			return
		}
		if established {
			b.st.lost.Add(1)
			uptime := time.Since(upSince)
			b.log.Warn("upstream connection lost; reconnecting", "upstream", shown, "err", err, "was_up", uptime.Round(time.Millisecond))
			failsHere, outageSince = 0, time.Now()
			// A connection that held resets the backoff; one dropped at
			// once (a broker that accepts and then kicks us) does not, so
			// that it is not hammered.
			if uptime >= b.cfg.Keepalive {
				bo.reset()
				troubleSince = time.Time{}
			}
		} else {
			b.st.connectFailures.Add(1)
			if outageSince.IsZero() {
				outageSince = time.Now()
			}
			failures++
			failsHere++
			if msg := err.Error(); msg != lastErr {
				b.log.Warn("cannot connect to upstream; retrying", "upstream", shown, "err", err)
				lastErr = msg
			} else {
				b.log.Debug("cannot connect to upstream; retrying", "upstream", shown, "err", err, "attempt", failures)
			}
			if n := len(b.cfg.Upstreams); failsHere >= b.cfg.FailoverAfter && n > 1 {
				idx, failsHere, lastErr = (idx+1)%n, 0, ""
				b.log.Warn("failing over to the next upstream", "from", shown, "to", b.cfg.Upstreams[idx].u.Redacted(), "after_attempts", b.cfg.FailoverAfter)
			}
		}
		if troubleSince.IsZero() {
			troubleSince = time.Now()
		}
		if !sleep(ctx, bo.next(time.Since(troubleSince))) {
			return
		}
	}
}

// connection runs one connection: dial, birth, downlink subscriptions,
// forwarding. It reports whether the connection was established (the
// broker accepted it: CONNACK proves the link end to end) and why it ended
// (nil at shutdown).
func (b *Bridge) connection(ctx context.Context, up *Upstream, onUp func()) (bool, error) {
	l := newLink()
	c, err := b.dial(ctx, up, l)
	if err != nil {
		return false, err
	}
	onUp()
	// The birth goes first, and the data right behind it on the same
	// connection: the cloud sees "online" before the backlog, and the
	// backlog starts one round trip sooner than if the birth were awaited.
	birth := c.Publish(b.cfg.StatusTopic, 1, true, []byte(statusOnline))
	subscribed := make(chan struct{})
	go func() {
		defer close(subscribed)
		if err := b.subscribe(ctx, l, c); err != nil && ctx.Err() == nil {
			l.kill(err)
		}
	}()
	b.pump(ctx, c, l, birth)
	err = b.end(ctx, c, l)
	<-subscribed
	return true, err
}

// end closes a connection. At shutdown, on a healthy link, it says goodbye;
// otherwise it drops the connection without DISCONNECT so that the broker
// publishes the will: the cloud then sees "offline" for as long as the
// gateway is away, not a stale "online".
func (b *Bridge) end(ctx context.Context, c conn, l *link) error {
	if ctx.Err() != nil && !l.isDead() {
		b.goodbye(c, l)
		return nil
	}
	l.kill(errShutdown)
	c.Abort()
	return l.cause()
}

// subscribe makes the downlink subscriptions. A filter the broker refuses
// (no permission) is logged and the connection kept: the uplink matters
// more than one command topic.
func (b *Bridge) subscribe(ctx context.Context, l *link, c conn) error {
	if len(b.cfg.Subscribe) == 0 {
		return nil
	}
	filters := make(map[string]byte, len(b.cfg.Subscribe))
	for _, r := range b.cfg.Subscribe {
		filters[r.Filter] = byte(*r.QoS)
	}
	tok := c.Subscribe(filters)
	if err := b.await(ctx, l, tok, "subscribe"); err != nil {
		return err
	}
	st, ok := tok.(*mqtt.SubscribeToken)
	if !ok {
		return nil
	}
	var refused []string
	for f, code := range st.Result() {
		if code >= 0x80 {
			refused = append(refused, f)
		}
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		b.log.Error("the cloud broker refused subscriptions: commands on them will not arrive", "filters", refused)
	}
	return nil
}

// goodbye publishes "offline" and disconnects; DISCONNECT tells the broker
// to discard the will, which would otherwise say "offline" too, but only
// after 1.5 × keepalive.
func (b *Bridge) goodbye(c conn, l *link) {
	tok := c.Publish(b.cfg.StatusTopic, 1, true, []byte(statusOffline))
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := b.await(ctx, l, tok, "offline status"); err != nil {
		b.log.Warn("could not publish offline status at shutdown; the broker sends the will instead", "err", err)
	}
	c.Disconnect(500 * time.Millisecond)
	b.log.Info("disconnected from upstream")
}

// await waits for a token, the death of the link, the ack timeout or ctx.
func (b *Bridge) await(ctx context.Context, l *link, tok mqtt.Token, what string) error {
	t := time.NewTimer(b.cfg.AckTimeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-l.dead:
		return fmt.Errorf("%s: %w", what, l.err)
	case <-t.C:
		return fmt.Errorf("%s: not acknowledged within %v", what, b.cfg.AckTimeout)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, errShutdown)
	}
}

// backoff is exponential with jitter: each pause is drawn from [d/2, d],
// where d doubles from min up to max. The jitter keeps a fleet of gateways
// that lost the cloud together from reconnecting in lock step. For the
// first fastRetries × min of an outage d stays at min, so that a link back
// after a short outage (a router reboot, an LTE cell change) is used again
// within about min, not after a step that has meanwhile grown.
type backoff struct {
	min, max, cur time.Duration
}

// fastRetries is how many backoff_initial periods an outage lasts before
// the pause starts to grow: 10 s at the default of 1 s.
const fastRetries = 10

// next returns the pause before the next attempt of an outage that has
// lasted outage so far.
func (b *backoff) next(outage time.Duration) time.Duration {
	switch {
	case b.cur == 0 || outage < fastRetries*b.min:
		b.cur = b.min
	default:
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }
