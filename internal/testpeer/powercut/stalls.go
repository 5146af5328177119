package powercut

import (
	"sync"
	"testing"
	"time"
)

// StallMeter notices when the test process did not run: a goroutine that
// wakes every few milliseconds and notes each gap much longer than that. A
// promise with a deadline ("synced within 100 ms") can only be checked in
// time during which the program under test could run; on a loaded machine
// (CI shares two cores between several jobs) a process may be stopped for a
// second. Subtract Stalled from a wall-clock age to get the time the
// program had.
type StallMeter struct {
	mu     sync.Mutex
	stalls []stall
	stop   chan struct{}
	done   chan struct{}
}

type stall struct{ from, to time.Time }

// stallTick is the meter's pace; a gap of more than stallMin is a stall.
const (
	stallTick = 5 * time.Millisecond
	stallMin  = 25 * time.Millisecond
)

// StartStallMeter starts a meter; it stops in cleanup.
func StartStallMeter(tb testing.TB) *StallMeter {
	m := &StallMeter{stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	tb.Cleanup(func() {
		close(m.stop)
		<-m.done
	})
	return m
}

func (m *StallMeter) run() {
	defer close(m.done)
	tick := time.NewTicker(stallTick)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-m.stop:
			return
		case now := <-tick.C:
			now = time.Now() // the tick's own time is when it was due
			if now.Sub(last) > stallMin {
				m.mu.Lock()
				m.stalls = append(m.stalls, stall{from: last.Add(stallTick), to: now})
				m.mu.Unlock()
			}
			last = now
		}
	}
}

// Stalled returns how much of [from, to] the process spent stalled.
func (m *StallMeter) Stalled(from, to time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var d time.Duration
	for _, s := range m.stalls {
		a, b := s.from, s.to
		if a.Before(from) {
			a = from
		}
		if b.After(to) {
			b = to
		}
		if b.After(a) {
			d += b.Sub(a)
		}
	}
	return d
}

// Longest returns the longest stall in [from, to], for test logs.
func (m *StallMeter) Longest(from, to time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var d time.Duration
	for _, s := range m.stalls {
		if s.to.After(from) && s.from.Before(to) {
			d = max(d, s.to.Sub(s.from))
		}
	}
	return d
}
