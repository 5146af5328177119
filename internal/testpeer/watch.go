package testpeer

import (
	"sync"
	"time"
)

// entryLog is what a client driver has seen so far (messages, events),
// guarded by its mutex, with a channel closed and replaced on every
// addition.
type entryLog[T any] struct {
	mu      *sync.Mutex
	entries *[]T
	changed *chan struct{}
}

// waitEnd is how a watch ended.
type waitEnd int

const (
	found waitEnd = iota
	timedOut
	exited // the client exited, and nothing it left matched
)

// watch returns the first entry (so far or later) that match accepts. It
// gives up after timeout, or once done is closed (the client exited) and
// no entry left behind matches. A timeout of 0 looks only at the entries
// so far.
func (l entryLog[T]) watch(timeout time.Duration, done <-chan struct{}, match func(T) bool) (T, waitEnd) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen, ended := 0, false
	for {
		l.mu.Lock()
		entries, changed := (*l.entries)[seen:], *l.changed
		l.mu.Unlock()
		for _, e := range entries {
			if match(e) {
				return e, found
			}
		}
		seen += len(entries)
		var zero T
		switch {
		case ended:
			return zero, exited
		case timeout <= 0:
			return zero, timedOut
		}
		select {
		case <-changed:
		case <-done:
			ended = true // one more look at what it left
		case <-deadline.C:
			return zero, timedOut
		}
	}
}
