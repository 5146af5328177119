package testpeer

import (
	"sync"
	"time"
)

// delayLine carries the bytes of one direction of a proxied connection
// from its reader to its writer, each chunk written a fixed time after it
// arrived: a link with that much one-way latency and no bandwidth cap, as
// a long-haul path is for a gateway's few megabits. The reader is held
// back only when maxBytes are in the line (then TCP slows the sender, as
// a full path would).
type delayLine struct {
	delay func() time.Duration

	mu      sync.Mutex
	cond    *sync.Cond
	q       []chunk
	bytes   int
	max     int
	lastDue time.Time
	closed  bool
	ended   bool          // the reader is done: drain, then end
	wake    chan struct{} // closed and replaced when a chunk arrives or the line closes
}

type chunk struct {
	data []byte
	due  time.Time
}

func newDelayLine(delay func() time.Duration, maxBytes int) *delayLine {
	l := &delayLine{delay: delay, max: maxBytes, wake: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// push stamps data (which the line keeps) with its due time. It blocks while
// the line is full and reports false once the line is closed.
func (l *delayLine) push(data []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for !l.closed && l.bytes > 0 && l.bytes+len(data) > l.max {
		l.cond.Wait()
	}
	if l.closed || l.ended {
		return false
	}
	// Due times never go backwards, also when the delay is shortened:
	// a link does not reorder bytes.
	due := time.Now().Add(l.delay())
	if due.Before(l.lastDue) {
		due = l.lastDue
	}
	l.lastDue = due
	l.q = append(l.q, chunk{data: data, due: due})
	l.bytes += len(data)
	close(l.wake)
	l.wake = make(chan struct{})
	return true
}

// popDue waits until the oldest chunk is due and returns it joined with
// every later chunk already due, so that a backlog leaves in large writes.
// It returns nil once the line is closed (chunks still in it are dropped,
// as bytes in flight are when a link breaks).
func (l *delayLine) popDue(buf []byte) []byte {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil
		}
		if len(l.q) == 0 {
			if l.ended {
				l.mu.Unlock()
				return nil
			}
			wake := l.wake
			l.mu.Unlock()
			<-wake
			continue
		}
		now := time.Now()
		if wait := l.q[0].due.Sub(now); wait > 0 {
			wake := l.wake
			l.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-wake: // a close, or a new chunk (no earlier than this one)
			}
			t.Stop()
			continue
		}
		out := buf[:0]
		n := 0
		for n < len(l.q) && !l.q[n].due.After(now) && len(out) < 256<<10 {
			out = append(out, l.q[n].data...)
			l.bytes -= len(l.q[n].data)
			l.q[n] = chunk{}
			n++
		}
		l.q = l.q[n:]
		l.cond.Broadcast()
		l.mu.Unlock()
		return out
	}
}

// end says no more chunks will come: the writer gets what is in the line,
// each at its due time, and then nil (a FIN travels behind the data).
func (l *delayLine) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended && !l.closed {
		l.ended = true
		close(l.wake)
		l.wake = make(chan struct{})
	}
}

// close drops what is in the line and releases both ends.
func (l *delayLine) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.q = nil
	close(l.wake)
	l.cond.Broadcast()
}
