package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// stuckAdapter is an adapter whose health the test controls.
type stuckAdapter struct{ stuck atomic.Bool }

func (*stuckAdapter) Devices() []*adapters.Device                    { return nil }
func (*stuckAdapter) Run(ctx context.Context, _ adapters.Sink) error { <-ctx.Done(); return nil }
func (a *stuckAdapter) Healthy(time.Time) error {
	if a.stuck.Load() {
		return errors.New("bus x stuck")
	}
	return nil
}

// TestWatchdog: with systemd's notify socket the gateway says READY, feeds
// the watchdog while its adapters are healthy, and stops feeding it while
// one is stuck (so systemd restarts it).
func TestWatchdog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "40000") // 40 ms: pings every 20 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	a := &stuckAdapter{}
	g := &gateway{log: slog.New(slog.DiscardHandler), buses: []*bus{{a: a}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); g.wg.Wait() }()
	g.notifySystemd(ctx)

	read := func(within time.Duration) (string, bool) {
		buf := make([]byte, 256)
		_ = conn.SetReadDeadline(time.Now().Add(within))
		n, err := conn.Read(buf)
		if err != nil {
			return "", false
		}
		return string(buf[:n]), true
	}
	if msg, ok := read(time.Second); !ok || msg != "READY=1" {
		t.Fatalf("first message %q, %v; want READY=1", msg, ok)
	}
	if msg, ok := read(time.Second); !ok || msg != "WATCHDOG=1" {
		t.Fatalf("healthy: %q, %v; want WATCHDOG=1", msg, ok)
	}
	a.stuck.Store(true)
	for { // drain a ping that may have been sent just before
		if _, ok := read(60 * time.Millisecond); !ok {
			break
		}
	}
	if msg, ok := read(200 * time.Millisecond); ok {
		t.Fatalf("stuck adapter: the watchdog was still fed (%q)", msg)
	}
	a.stuck.Store(false)
	if msg, ok := read(time.Second); !ok || msg != "WATCHDOG=1" {
		t.Fatalf("recovered: %q, %v; want WATCHDOG=1", msg, ok)
	}
}
