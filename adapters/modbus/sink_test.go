package modbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/adapters/modbus"
	"github.com/fieldbridge/fieldbridge/internal/config"
)

// recSink records everything an adapter emits, for assertions.
type recSink struct {
	mu      sync.Mutex
	cond    *sync.Cond
	last    map[string]adapters.Sample // by "device/point"
	count   map[string]int             // samples per "device/point"
	bad     map[string]int             // bad samples per "device/point"
	avail   map[string]bool
	changes []string // availability changes, "device=online"
}

func newRecSink() *recSink {
	s := &recSink{last: map[string]adapters.Sample{}, count: map[string]int{}, bad: map[string]int{}, avail: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *recSink) Publish(samples []adapters.Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sm := range samples {
		k := sm.Point.Device + "/" + sm.Point.Name
		s.last[k] = sm
		s.count[k]++
		if sm.Err != nil {
			s.bad[k]++
		}
	}
	s.cond.Broadcast()
}

func (s *recSink) Availability(d *adapters.Device, online bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.avail[d.Name] = online
	state := "offline"
	if online {
		state = "online"
	}
	s.changes = append(s.changes, d.Name+"="+state)
	s.cond.Broadcast()
}

// waitFor waits until cond (called with the lock held) holds.
func (s *recSink) waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s\nlast samples:\n%s\navailability changes: %v", timeout, what, s.dumpLocked(), s.changes)
		}
		s.cond.Wait()
	}
}

// value returns the last sample's JSON value or its error.
func (s *recSink) value(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.valueLocked(key)
}

func (s *recSink) valueLocked(key string) string {
	sm, ok := s.last[key]
	switch {
	case !ok:
		return "<none>"
	case sm.Err != nil:
		return "error: " + sm.Err.Error()
	}
	return sm.Value.String()
}

func (s *recSink) counts(key string) (total, bad int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[key], s.bad[key]
}

func (s *recSink) dumpLocked() string {
	var b strings.Builder
	for k := range s.last {
		fmt.Fprintf(&b, "  %s = %s (%d samples)\n", k, s.valueLocked(k), s.count[k])
	}
	return b.String()
}

// startBus loads a one-adapter config and runs its adapter until the test
// ends; it returns the adapter and a function that stops it and waits.
func startBus(t *testing.T, yaml string) (*modbus.Adapter, *recSink, func()) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), config.Options{})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if testing.Verbose() || os.Getenv("FB_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	built, err := cfg.Build(log)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	a := built[0].(*modbus.Adapter)
	sink := newRecSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx, sink); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("adapter did not stop within 10s")
			}
		})
	}
	t.Cleanup(stop)
	return a, sink, stop
}

// testWriter sends log lines to t.Log so they show only for failed tests.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
