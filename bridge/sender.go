package bridge

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// The window. One goroutine per connection (pump) reads records from the
// queue in order, publishes them while fewer than Inflight are
// unacknowledged, keeps (seq, token) in a FIFO, and waits on the oldest
// token only, with the ack timeout. When the oldest token completes
// without error on a link that is still alive, pump also takes every later
// token that has completed meanwhile, acknowledges the run with one
// cumulative queue.Ack, and refills the window: the refill goes out as a
// burst, which the connection writes in one go (see batchConn).
//
// Any error — a token with an error, no acknowledgement within AckTimeout,
// a lost connection — kills the link: pump returns, the session drops the
// connection, and the next connection starts with Rewind, from the oldest
// unacknowledged record. Acknowledgements are cumulative and taken strictly
// in FIFO order, so a record is never acknowledged before one sent
// earlier. The cloud may see the records of one window again after a
// reconnect (at-least-once), in their original order.
//
// Sending and confirming share one goroutine on purpose: every goroutine
// hand-off on the way from a PUBACK to the next PUBLISH adds to the time a
// slot of the window stays occupied, and with a window of 20 that time,
// not the CPU, bounds the rate at which a backlog drains.

// inflight is one publish awaiting its acknowledgement.
type inflight struct {
	seq uint64
	tok mqtt.Token
}

// publisher is what the window needs of a connection.
type publisher interface {
	Publish(topic string, qos byte, retain bool, payload []byte) mqtt.Token
}

// pump forwards queued records over one connection until ctx ends or the
// link dies. At shutdown it stops sending and waits up to shutdownGrace
// for the acknowledgements of what is in flight, so that a clean restart
// resends as little as possible.
func (b *Bridge) pump(ctx context.Context, c publisher, l *link) {
	b.q.Rewind()
	w := b.cfg.Inflight
	fifo := make([]inflight, 0, w)
	var pending []queue.Record // read from the queue, not yet published
	timer := time.NewTimer(b.cfg.AckTimeout)
	defer timer.Stop()
	var oldestSince time.Time // when fifo[0] became the oldest
	stop := ctx.Done()
	var grace <-chan time.Time
	defer b.st.inflight.Store(0)

	for {
		// Fill the window.
		for stop != nil && len(fifo) < w {
			if len(pending) == 0 {
				recs, err := b.q.Next(w - len(fifo))
				if err != nil {
					l.kill(fmt.Errorf("read queue: %w", err))
					return
				}
				if len(recs) == 0 {
					break
				}
				pending = recs
			}
			rec := pending[0]
			pending[0] = queue.Record{}
			pending = pending[1:]
			if len(fifo) == 0 {
				oldestSince = time.Now()
			}
			fifo = append(fifo, inflight{seq: rec.Seq, tok: c.Publish(rec.Topic, rec.QoS, rec.Retain, rec.Payload)})
			b.st.inflight.Add(1)
			b.st.forwarded.Add(1)
			if rec.Seq <= b.sentThrough {
				b.st.resent.Add(1)
			} else {
				b.sentThrough = rec.Seq
			}
		}

		if len(fifo) == 0 {
			if stop == nil {
				return // stopping, and nothing is in flight
			}
			select {
			case <-b.q.Ready():
			case <-stop:
				return
			case <-l.dead:
				return
			}
			continue
		}

		var ready <-chan struct{}
		if stop != nil && len(fifo) < w {
			ready = b.q.Ready()
		}
		// The deadline runs from when the oldest became the oldest, so that
		// new records arriving do not postpone it.
		timer.Reset(time.Until(oldestSince.Add(b.cfg.AckTimeout)))
		select {
		case <-fifo[0].tok.Done():
			var ok bool
			if fifo, ok = b.confirm(fifo, l); !ok {
				return
			}
			oldestSince = time.Now()
		case <-timer.C:
			l.kill(fmt.Errorf("no acknowledgement within %v (ack_timeout): link presumed dead", b.cfg.AckTimeout))
			return
		case <-ready:
		case <-stop:
			stop = nil
			grace = time.After(shutdownGrace)
		case <-grace:
			b.log.Warn("messages in flight not acknowledged at shutdown; they are sent again after the restart", "in_flight", len(fifo))
			l.kill(errShutdown)
			return
		case <-l.dead:
			return
		}
	}
}

// confirm acknowledges the run of completed tokens at the head of fifo (the
// first has completed) and returns the rest. It reports false when the link
// is dead or was killed: a token with an error, or one that completed on a
// connection that is no longer current, acknowledges nothing.
func (b *Bridge) confirm(fifo []inflight, l *link) ([]inflight, bool) {
	n := 0
	var failed error
	for n < len(fifo) && isDone(fifo[n].tok) {
		if err := fifo[n].tok.Error(); err != nil {
			failed = fmt.Errorf("publish: %w", err)
			break
		}
		n++
	}
	if l.isDead() {
		return fifo, false
	}
	if n > 0 {
		if err := b.q.Ack(fifo[n-1].seq); err != nil {
			l.kill(fmt.Errorf("acknowledge in queue: %w", err))
			return fifo, false
		}
		b.st.acked.Add(uint64(n))
		b.st.inflight.Add(-int64(n))
		k := copy(fifo, fifo[n:])
		clear(fifo[k:])
		fifo = fifo[:k]
	}
	if failed != nil {
		l.kill(failed)
		return fifo, false
	}
	return fifo, true
}

func isDone(tok mqtt.Token) bool {
	select {
	case <-tok.Done():
		return true
	default:
		return false
	}
}
