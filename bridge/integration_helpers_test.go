package bridge_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// Integration tests: an in-process local broker, the bridge, and mosquitto
// as the cloud, on loopback ports.

// source adapts the local broker to bridge.Source (localbroker.Handler is a
// defined type; see cmd/gateway).
type source struct{ *localbroker.Broker }

func (s source) Subscribe(filter string, h func(string, []byte, bool, byte, string)) (func(), error) {
	return s.Broker.Subscribe(filter, h)
}

func startLocal(t *testing.T) *localbroker.Broker {
	t.Helper()
	cfg := localbroker.Config{Listen: "127.0.0.1:0"}
	cfg.Check(failReporter{t})
	b, err := localbroker.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

type failReporter struct{ t *testing.T }

func (r failReporter) Errorf(path, format string, args ...any) { r.t.Fatalf(path+": "+format, args...) }
func (r failReporter) Warnf(path, format string, args ...any)  {}

// logBuffer collects the bridge's log for assertions (and prints it with
// FIELDBRIDGE_TEST_LOG set).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if os.Getenv("FIELDBRIDGE_TEST_LOG") != "" {
		os.Stderr.Write(p)
	}
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// running is a bridge run by a test.
type running struct {
	*bridge.Bridge
	log  *logBuffer
	stop func()
}

// startBridge checks cfg (gateway id plant1) and runs a bridge on local
// until the test ends or stop is called.
func startBridge(t *testing.T, local *localbroker.Broker, cfg bridge.Config) *running {
	t.Helper()
	cfg.Check("plant1", t.TempDir(), failReporter{t})
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := bridge.New(cfg, source{local}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	r := &running{Bridge: b, log: logs}
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("bridge Run: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("bridge log:\n%s", logs)
		}
	})
	return r
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// numbered returns n lines "000000 xxxx…" for PublishLines.
func numbered(n int) [][]byte {
	lines := make([][]byte, n)
	pad := strings.Repeat("x", 100)
	for i := range lines {
		lines[i] = fmt.Appendf(nil, "%06d %s", i, pad)
	}
	return lines
}

// checkSequence asserts that msgs carry all of 0..n-1 as numbered made
// them, in order: a resend after a reconnect may go back (at most window
// messages per reconnect), but never skip one ahead.
func checkSequence(t *testing.T, msgs []testpeer.Message, n, window int, reconnects uint64) {
	t.Helper()
	seen := make([]bool, n)
	prev, dups := -1, 0
	for i, m := range msgs {
		k, err := strconv.Atoi(string(bytes.Fields(m.Payload)[0]))
		if err != nil || k < 0 || k >= n {
			t.Fatalf("message %d: unexpected payload %q", i, m.Payload)
		}
		if k > prev+1 {
			t.Fatalf("message %d carries %d after %d: %d..%d skipped (order broken)", i, k, prev, prev+1, k-1)
		}
		if seen[k] {
			dups++
		}
		seen[k] = true
		prev = k
	}
	for k, ok := range seen {
		if !ok {
			t.Fatalf("message %d never arrived", k)
		}
	}
	if limit := window * int(reconnects); dups > limit {
		t.Errorf("%d duplicates, more than the window (%d) per reconnect (%d)", dups, window, reconnects)
	}
	t.Logf("%d messages received for %d sent: %d duplicates over %d reconnect(s)", len(msgs), n, dups, reconnects)
}
