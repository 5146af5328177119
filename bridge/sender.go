package bridge

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/time/rate"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// The sender. One goroutine per connection (pump) reads records from the
// queue in order, publishes them while the window (window.go) has room
// and the rate limit (max_rate) allows, keeps every publish in a FIFO
// with its token, and waits on the oldest token only. When it completes
// without error on a link that is still alive, pump takes every later
// token that has completed meanwhile, acknowledges the run with one
// cumulative queue.Ack, and refills the window; the refill goes out as a
// burst, which the connection writes in one go (see batchConn).
//
// Each publish acknowledges the queue up to its ackThrough: the newest
// record read so far, unless an open batch still holds an older one, in
// which case only up to the record before it. A batch acknowledges its
// records when it is confirmed itself. So a record leaves the queue only
// once it, and every record before it, was confirmed on the current
// connection.
//
// Any error — a token with an error, no acknowledgement at all for
// ack_timeout while publishes are in flight, a lost connection — kills the
// link: pump returns, the session drops the connection, and the next
// connection starts with Rewind, from the oldest unacknowledged record.
// The cloud may see again what was in flight when the link died (at most
// the window), in its original order.
//
// The birth message ("online") is the first publish of every connection,
// sent with the data rather than one round trip before it.
//
// Sending and confirming share one goroutine on purpose: every goroutine
// hand-off on the way from a PUBACK to the next PUBLISH adds to the time a
// slot of the window stays occupied.

// readAhead is how many records pump reads from the queue at a time.
const readAhead = 256

// inflight is one publish awaiting its acknowledgement.
type inflight struct {
	tok        mqtt.Token
	stamp      sendStamp
	ackThrough uint64 // queue.Ack up to here once confirmed; 0: nothing new
	records    int    // queue records it carries (0 for the birth)
	birth      bool
}

// publisher is what the window needs of a connection.
type publisher interface {
	Publish(topic string, qos byte, retain bool, payload []byte) mqtt.Token
}

// congestible is a connection that can say its write buffer is full (the
// broker reads slowly): the sender then waits for room instead of
// blocking in Publish, where it could take no acknowledgements.
type congestible interface {
	congested() (bool, <-chan struct{})
}

// outgoing is the next publish: one record, or a batch.
type outgoing struct {
	topic   string
	qos     byte
	retain  bool
	payload []byte
	records int
	lastSeq uint64 // of the newest record it carries
	batch   bool
}

// sender is the state of one pump.
type sender struct {
	b    *Bridge
	c    publisher
	l    *link
	win  *windowCtl
	lim  *rate.Limiter
	bat  *batcher
	fifo []inflight

	pending     []queue.Record  // read from the queue, not yet sent
	readThrough uint64          // Seq of the newest record taken from pending
	limited     bool            // the window, not the queue or the rate, held the sender back
	room        <-chan struct{} // set by fill when the connection's write buffer is full
	lastAck     uint64          // the highest ackThrough passed to the queue
	progress    time.Time       // last acknowledgement, or when the window went from empty to busy

	// For the debug log of the window: the last round and size logged.
	loggedAt   time.Time
	loggedSize int
}

// pump forwards queued records over one connection until ctx ends or the
// link dies; birth, if not nil, is the token of the status message sent
// first. At shutdown it stops sending and waits up to shutdownGrace for the
// acknowledgements of what is in flight, so that a clean restart resends
// as little as possible.
func (b *Bridge) pump(ctx context.Context, c publisher, l *link, birth mqtt.Token) {
	b.q.Rewind()
	now := time.Now()
	s := &sender{
		b: b, c: c, l: l, progress: now,
		win: newWindowCtl(b.cfg.Inflight.N, b.cfg.MaxInflight, now),
		bat: newBatcher(b.cfg.Forward),
	}
	if b.cfg.MaxRate > 0 {
		s.lim = rate.NewLimiter(rate.Limit(b.cfg.MaxRate), max(1, int(b.cfg.MaxRate/10)))
	}
	if birth != nil {
		if s.lim != nil {
			s.lim.AllowN(now, 1) // the birth is a publish too
		}
		s.fifo = append(s.fifo, inflight{tok: birth, stamp: s.win.sent(now, true, true), birth: true})
	}
	defer func() {
		b.st.inflight.Store(0)
		w := s.win
		b.log.Debug("window at the end of the connection", "window", w.size(), "round_trip", w.rtprop, "delivery_rate", int(w.bw.max()),
			"startup", w.startup, "rounds", w.round, "acknowledged", w.delivered)
	}()
	s.run(ctx.Done())
}

func (s *sender) run(stop <-chan struct{}) {
	b, l := s.b, s.l
	// Timers are reused: with Go 1.23 semantics Reset and Stop leave no
	// stale value in their channels.
	ackT, wakeT := time.NewTimer(time.Hour), time.NewTimer(time.Hour)
	defer ackT.Stop()
	defer wakeT.Stop()
	var grace <-chan time.Time
	for {
		var rateAt time.Time
		if stop != nil {
			var ok bool
			if rateAt, ok = s.fill(time.Now()); !ok {
				return
			}
		}
		b.st.inflight.Store(int64(len(s.fifo)))
		b.st.window.Store(int64(s.win.size()))
		if len(s.fifo) == 0 && stop == nil {
			return // stopping, and nothing is in flight
		}

		// What to wait for besides the link and the oldest token.
		var ready <-chan struct{}
		if stop != nil && len(s.fifo) < s.win.size() && len(s.pending) == 0 && rateAt.IsZero() && s.room == nil {
			ready = b.q.Ready()
		}
		var wake <-chan time.Time
		if stop != nil {
			at := rateAt
			if d := s.bat.nextDue(); !d.IsZero() && (at.IsZero() || d.Before(at)) {
				at = d
			}
			if !at.IsZero() {
				wakeT.Reset(max(time.Until(at), 0))
				wake = wakeT.C
			}
		}
		var head <-chan struct{}
		var ackC <-chan time.Time
		if len(s.fifo) > 0 {
			head = s.fifo[0].tok.Done()
			ackT.Reset(time.Until(s.progress.Add(b.cfg.AckTimeout)))
			ackC = ackT.C
		}
		select {
		case <-head:
			if !s.confirm() {
				return
			}
		case <-ackC:
			l.kill(fmt.Errorf("no acknowledgement for %v with %d publishes in flight (ack_timeout): link presumed dead", b.cfg.AckTimeout, len(s.fifo)))
			return
		case <-ready:
		case <-s.room:
		case <-wake:
		case <-stop:
			stop = nil
			grace = time.After(shutdownGrace)
		case <-grace:
			b.log.Warn("messages in flight not acknowledged at shutdown; they are sent again after the restart", "in_flight", len(s.fifo))
			l.kill(errShutdown)
			return
		case <-l.dead:
			return
		}
		ackT.Stop()
		wakeT.Stop()
	}
}

// fill publishes while the window, the rate limit, the connection's write
// buffer and the queue allow. It returns when the rate limit next allows a
// publish (zero when it is not what stopped it), and false when the link
// was killed. s.room is set when the write buffer is what stopped it.
func (s *sender) fill(now time.Time) (rateAt time.Time, ok bool) {
	s.limited, s.room = false, nil
	cc, _ := s.c.(congestible)
	for {
		if len(s.fifo) >= s.win.size() {
			s.limited = s.haveMore()
			return time.Time{}, true
		}
		if cc != nil {
			if full, room := cc.congested(); full {
				s.room = room
				return time.Time{}, true
			}
		}
		if s.lim != nil {
			if tok := s.lim.TokensAt(now); tok < 1 {
				wait := time.Duration((1 - tok) / float64(s.lim.Limit()) * float64(time.Second))
				return now.Add(max(wait, time.Millisecond)), true
			}
		}
		out, ok, err := s.next(now)
		if err != nil {
			s.l.kill(fmt.Errorf("read queue: %w", err))
			return time.Time{}, false
		}
		if !ok {
			return time.Time{}, true
		}
		if s.lim != nil {
			s.lim.AllowN(now, 1)
		}
		s.send(out, now)
	}
}

// haveMore reports whether records wait to be sent.
func (s *sender) haveMore() bool {
	if len(s.pending) == 0 {
		_ = s.refill()
	}
	return len(s.pending) > 0
}

func (s *sender) refill() error {
	recs, err := s.b.q.Next(readAhead)
	if err != nil {
		return err
	}
	s.pending = recs
	return nil
}

// next returns the next publish: a batch that is due, or the next record
// (packed into its batch when its rule batches, until a batch closes).
func (s *sender) next(now time.Time) (outgoing, bool, error) {
	for {
		if m := s.bat.due(now); m != nil {
			return s.batchOut(m), true, nil
		}
		if len(s.pending) == 0 {
			if err := s.refill(); err != nil {
				return outgoing{}, false, err
			}
			if len(s.pending) == 0 {
				return outgoing{}, false, nil
			}
		}
		rec := s.pending[0]
		s.pending[0] = queue.Record{}
		s.pending = s.pending[1:]
		s.readThrough = rec.Seq
		if i := s.bat.ruleFor(&rec); i >= 0 {
			m, oversize := s.bat.add(i, &rec, now)
			if oversize {
				s.b.st.batchOversize.Add(1)
				s.b.log.Warn("record too large for a batch, sent on its own", "topic", rec.Topic, "payload_bytes", len(rec.Payload), "max_bytes", s.bat.rules[i].cfg.MaxBytes)
				return single(&rec), true, nil
			}
			if m != nil {
				return s.batchOut(m), true, nil
			}
			continue
		}
		return single(&rec), true, nil
	}
}

func single(rec *queue.Record) outgoing {
	return outgoing{topic: rec.Topic, qos: rec.QoS, retain: rec.Retain, payload: rec.Payload, records: 1, lastSeq: rec.Seq}
}

func (s *sender) batchOut(m *batchMsg) outgoing {
	return outgoing{topic: m.topic, qos: m.qos, payload: m.payload, records: m.records, lastSeq: m.last, batch: true}
}

// ackPoint is how far the queue may be acknowledged once everything sent
// so far is confirmed: up to the newest record read, but not up to a
// record still waiting in an open batch.
func (s *sender) ackPoint() uint64 {
	if first := s.bat.firstOpen(); first != 0 {
		return min(s.readThrough, first-1)
	}
	return s.readThrough
}

func (s *sender) send(o outgoing, now time.Time) {
	b := s.b
	if len(s.fifo) == 0 {
		s.progress = now // the ack timeout runs from the first publish in flight
	}
	appLimited := !s.haveMore()
	if s.lim != nil {
		appLimited = appLimited || s.lim.TokensAt(now) < 1
	}
	st := s.win.sent(now, o.qos > 0, appLimited)
	s.fifo = append(s.fifo, inflight{
		tok: s.c.Publish(o.topic, o.qos, o.retain, o.payload), stamp: st,
		ackThrough: s.ackPoint(), records: o.records,
	})
	b.st.forwarded.Add(uint64(o.records))
	if o.batch {
		b.st.batches.Add(1)
	}
	if o.lastSeq != 0 {
		if o.lastSeq <= b.sentThrough {
			b.st.resent.Add(uint64(o.records))
		} else {
			b.sentThrough = o.lastSeq
		}
	}
}

// confirm takes the run of completed tokens at the head of the FIFO (the
// first has completed). It reports false when the link is dead or was
// killed: a token with an error, or one that completed on a connection that
// is no longer current, acknowledges nothing.
func (s *sender) confirm() bool {
	b, l := s.b, s.l
	now := time.Now()
	n, records := 0, 0
	through := s.lastAck
	var failed error
	for n < len(s.fifo) && isDone(s.fifo[n].tok) {
		f := &s.fifo[n]
		if err := f.tok.Error(); err != nil {
			failed = fmt.Errorf("publish: %w", err)
			if f.birth {
				failed = fmt.Errorf("status message: %w", err)
			}
			break
		}
		s.win.acked(f.stamp, now, s.limited)
		b.st.rtprop.Store(int64(s.win.rtprop))
		through = max(through, f.ackThrough)
		records += f.records
		n++
	}
	if l.isDead() {
		return false
	}
	s.logWindow(now)
	if n > 0 {
		if through > s.lastAck {
			if err := b.q.Ack(through); err != nil {
				l.kill(fmt.Errorf("acknowledge in queue: %w", err))
				return false
			}
			s.lastAck = through
		}
		s.progress = now
		b.st.acked.Add(uint64(records))
		k := copy(s.fifo, s.fifo[n:])
		clear(s.fifo[k:])
		s.fifo = s.fifo[:k]
	}
	if failed != nil {
		l.kill(failed)
		return false
	}
	return true
}

// logWindow logs the window's state at debug level when its size moved by
// a quarter, and at most once a second otherwise while it is busy.
func (s *sender) logWindow(now time.Time) {
	w := s.win
	size := w.size()
	if now.Sub(s.loggedAt) < time.Second && (size*4 < s.loggedSize*5 && size*5 > s.loggedSize*4) {
		return
	}
	s.loggedAt, s.loggedSize = now, size
	s.b.log.Debug("window", "size", size, "in_flight", len(s.fifo), "round_trip", w.rtprop, "delivery_rate", int(w.bw.max()),
		"startup", w.startup, "probing", w.probing, "limited", s.limited, "round", w.round)
}

func isDone(tok mqtt.Token) bool {
	select {
	case <-tok.Done():
		return true
	default:
		return false
	}
}
