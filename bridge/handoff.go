package bridge

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// The hand-off between the local broker and the queue. The broker calls the
// forward handler on the publisher's goroutine (an adapter's, or a network
// client's read loop), so the handler does no I/O: it copies the message
// into a bounded channel, and one writer goroutine appends whatever has
// accumulated to the queue in a single batch (one write(2)). A burst of tens
// of thousands of messages therefore costs a few hundred appends.
//
// When the channel is full, the handler holds the publisher back for up to
// handoffWait — the broker stops reading from that client, and TCP slows it
// down — and only then drops the message. Once a drop has happened, later
// messages that do not fit are dropped at once instead of each waiting
// again, until the writer has caught up (the channel is half empty): a
// stalled disk must not stall every adapter for handoffWait per sample. Each such episode is logged when it starts and
// when it ends, with its count.
const (
	handoffCap      = 8192     // messages in the channel
	handoffMaxBytes = 16 << 20 // topic and payload bytes in the channel (soft bound)
	batchMax        = 1024     // records per Append
	batchMaxBytes   = 1 << 20  // bytes per Append
	recordOverhead  = 64       // bookkeeping per message, for the byte bound
)

// handoffWait is how long a publisher is held back before its message is
// dropped (a variable for tests).
var handoffWait = 2 * time.Second

// writeRetry bounds the pause between attempts to append after a failed
// write (a full or failing disk); the batch is kept and tried again.
var writeRetry = struct{ min, max time.Duration }{100 * time.Millisecond, 5 * time.Second}

type handoff struct {
	st  *counters
	log *slog.Logger
	ch  chan queue.Record

	bytes       atomic.Int64 // of the records in ch
	overflowing atomic.Bool
	drops       episode

	spaceMu sync.Mutex
	space   chan struct{} // closed and replaced whenever the writer takes records

	mu     sync.RWMutex // held shared by handlers, exclusively by close
	closed bool
	done   chan struct{} // closed by close: the writer empties ch and returns
}

func newHandoff(st *counters, log *slog.Logger) *handoff {
	return &handoff{
		st: st, log: log,
		ch:    make(chan queue.Record, handoffCap),
		space: make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// forwardHandler returns the local subscription handler of one forward rule.
func (b *Bridge) forwardHandler(r *ForwardRule) func(topic string, payload []byte, retain bool, qos byte, origin string) {
	qos := byte(*r.QoS)
	keep := r.Retain == RetainKeep
	batch := r.Batch != nil
	return func(topic string, payload []byte, retain bool, _ byte, origin string) {
		if origin == b.origin {
			b.st.loopSkipped.Add(1) // it came from the cloud: never send it back
			return
		}
		cloud := r.Prefix + topic
		if b.rules().downlinkCovers(cloud) {
			// A command topic: it flows down only. Sent up, it would come
			// straight back down as a second command (MQTT 3.1.1 has no
			// "no local" subscription option).
			b.st.loopSkipped.Add(1)
			return
		}
		rec := queue.Record{
			Time:    time.Now(),
			Topic:   cloud,
			Payload: append([]byte(nil), payload...), // valid only during the call
			QoS:     qos,
			Retain:  retain && keep,
			Batch:   batch,
		}
		if len(rec.Topic) > maxTopicLen || len(rec.Payload) > queue.MaxPayload {
			b.st.invalid.Add(1)
			b.log.Warn("message too large for the queue, dropped", "topic", rec.Topic, "topic_bytes", len(rec.Topic), "payload_bytes", len(rec.Payload))
			return
		}
		b.in.put(rec)
	}
}

func recordSize(r *queue.Record) int64 { return int64(len(r.Topic)+len(r.Payload)) + recordOverhead }

// put hands rec to the writer, holding the caller back for up to
// handoffWait when the writer is behind.
func (h *handoff) put(rec queue.Record) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		h.st.shutdown.Add(1)
		return
	}
	size := recordSize(&rec)
	if h.tryPut(rec, size) {
		// The episode ends once the writer has caught up well (hysteresis:
		// a writer that barely keeps pace would start one per message).
		if h.overflowing.Load() && len(h.ch) < handoffCap/2 && h.overflowing.CompareAndSwap(true, false) {
			if n, d, ok := h.drops.finish(); ok {
				h.log.Warn("queue writer caught up; messages were dropped meanwhile", "dropped", n, "for", d.Round(time.Millisecond))
			}
		}
		return
	}
	if !h.overflowing.Load() {
		deadline := time.NewTimer(handoffWait)
		defer deadline.Stop()
		for {
			space := h.spaceSignal()
			if h.tryPut(rec, size) {
				return
			}
			select {
			case <-space:
				continue
			case <-deadline.C:
			}
			break
		}
	}
	h.st.overflow.Add(1)
	h.overflowing.Store(true)
	if h.drops.add(1) {
		h.log.Error("queue writer stalled: dropping messages until it catches up", "waited", handoffWait)
	}
}

// tryPut sends without blocking when the channel has room for size bytes
// (a single record larger than the bound goes into an empty channel).
func (h *handoff) tryPut(rec queue.Record, size int64) bool {
	if used := h.bytes.Load(); used > 0 && used+size > handoffMaxBytes {
		return false
	}
	select {
	case h.ch <- rec:
		h.bytes.Add(size)
		return true
	default:
		return false
	}
}

func (h *handoff) spaceSignal() <-chan struct{} {
	h.spaceMu.Lock()
	defer h.spaceMu.Unlock()
	return h.space
}

// took tells waiting handlers that the writer made room.
func (h *handoff) took(size int64) {
	h.bytes.Add(-size)
	h.spaceMu.Lock()
	close(h.space)
	h.space = make(chan struct{})
	h.spaceMu.Unlock()
}

// close stops taking messages: it waits for handlers still running (at
// most handoffWait each), then lets the writer finish.
func (h *handoff) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	h.mu.Unlock()
}

// runWriter is the writer goroutine: it batches records from the channel
// into the queue until close, then appends what is left and syncs.
func (h *handoff) runWriter(q store) {
	batch := make([]queue.Record, 0, batchMax)
	for {
		var stopping bool
		select {
		case rec := <-h.ch:
			batch = append(batch, rec)
		case <-h.done:
			stopping = true
		}
		batch = h.fill(batch)
		if len(batch) > 0 {
			h.append(q, batch, stopping)
			clear(batch) // release the payloads
			batch = batch[:0]
		}
		if stopping && len(h.ch) == 0 {
			if err := q.Sync(); err != nil && !errors.Is(err, queue.ErrClosed) {
				h.log.Error("queue: final sync failed", "err", err)
			}
			return
		}
	}
}

// fill adds what the channel holds, without waiting, up to the batch limits.
func (h *handoff) fill(batch []queue.Record) []queue.Record {
	var size int64
	for i := range batch {
		size += recordSize(&batch[i])
	}
	for len(batch) < batchMax && size < batchMaxBytes {
		select {
		case rec := <-h.ch:
			batch = append(batch, rec)
			size += recordSize(&rec)
			continue
		default:
		}
		break
	}
	if size > 0 {
		h.took(size)
	}
	return batch
}

// append writes one batch, retrying a failed write (full disk, I/O error)
// with growing pauses for as long as the bridge runs: the records stay in
// memory meanwhile and the handlers push back on publishers. While stopping,
// a failed batch is given up (it is counted as dropped at shutdown).
func (h *handoff) append(q store, batch []queue.Record, stopping bool) {
	pause := writeRetry.min
	for {
		err := q.Append(batch)
		switch {
		case err == nil:
			h.st.queued.Add(uint64(len(batch)))
			return
		case errors.Is(err, queue.ErrFull):
			return // counted and logged by the queue (when_full: drop_newest)
		case errors.Is(err, queue.ErrClosed), errors.Is(err, queue.ErrInvalidRecord):
			// ErrInvalidRecord cannot happen (the handler checks sizes);
			// neither can be retried.
			h.st.shutdown.Add(uint64(len(batch)))
			h.log.Error("queue refused messages", "count", len(batch), "err", err)
			return
		}
		h.st.writeErrors.Add(1)
		if stopping {
			h.st.shutdown.Add(uint64(len(batch)))
			h.log.Error("queue write failed at shutdown; messages lost", "count", len(batch), "err", err)
			return
		}
		// The queue logs the first failure of a series itself.
		select {
		case <-h.done:
			stopping = true
		case <-time.After(pause):
		}
		pause = min(2*pause, writeRetry.max)
	}
}

// episode tracks a run of drops, for logging it once when it starts and
// once when it ends.
type episode struct {
	mu    sync.Mutex
	on    bool
	n     uint64
	since time.Time
}

// add counts n drops and reports whether they start an episode.
func (e *episode) add(n uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n += n
	if e.on {
		return false
	}
	e.on, e.since = true, time.Now()
	return true
}

// finish ends the episode, returning its count and length.
func (e *episode) finish() (uint64, time.Duration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.on {
		return 0, 0, false
	}
	n, d := e.n, time.Since(e.since)
	e.on, e.n = false, 0
	return n, d, true
}
