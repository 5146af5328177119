package testpeer

import (
	"sync"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	var mu sync.Mutex
	var entries []int
	changed := make(chan struct{})
	add := func(v int) {
		mu.Lock()
		entries = append(entries, v)
		close(changed)
		changed = make(chan struct{})
		mu.Unlock()
	}
	l := entryLog[int]{&mu, &entries, &changed}
	done := make(chan struct{})
	is := func(want int) func(int) bool { return func(v int) bool { return v == want } }

	add(1)
	if v, end := l.watch(0, done, is(1)); end != found || v != 1 {
		t.Errorf("an entry so far: %v %v", v, end)
	}
	if _, end := l.watch(0, done, is(2)); end != timedOut {
		t.Errorf("timeout 0 must not wait: %v", end)
	}
	go func() { time.Sleep(20 * time.Millisecond); add(2) }()
	if v, end := l.watch(5*time.Second, done, is(2)); end != found || v != 2 {
		t.Errorf("a later entry: %v %v", v, end)
	}
	if _, end := l.watch(30*time.Millisecond, done, is(3)); end != timedOut {
		t.Errorf("never: %v", end)
	}
	// An entry added just before the exit still counts; none after it.
	add(3)
	close(done)
	if v, end := l.watch(5*time.Second, done, is(3)); end != found || v != 3 {
		t.Errorf("left by an exited client: %v %v", v, end)
	}
	if _, end := l.watch(5*time.Second, done, is(4)); end != exited {
		t.Errorf("after the exit: %v", end)
	}
}
