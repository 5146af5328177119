package bridgebench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestOutageMemory: the gateway's resident memory while a long outage
// piles up on disk stays flat: the backlog lives in the queue's files.
func TestOutageMemory(t *testing.T) {
	skipUnlessEnabled(t)
	total := intEnv("BENCH_OUTAGE", 500000)
	const chunk = 50000
	cloud := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	proxy := testpeer.StartProxy(t, cloud.Addr())
	bin := buildGateway(t)
	dir := t.TempDir()
	local := freeAddr(t)
	config := writeGatewayConfig(t, dir, local, proxy.Addr(), "ours/", 0)
	queueDir := filepath.Join(dir, "data", "queue")
	g := startGateway(t, bin, config, filepath.Join(dir, "gateway.log"))
	waitUntil(t, 20*time.Second, 20*time.Millisecond, "gateway connected", func() bool { return proxy.Conns() > 0 })
	proxy.Cut()

	msgs := lines(chunk)
	fmt.Printf("\nresident memory of the gateway during an outage (payload %d bytes)\n", len(msgs[0]))
	fmt.Printf("%10s %10s\n", "queued", "RSS")
	fmt.Printf("%10d %7d KiB\n", 0, g.rssKiB(t))
	for queued := chunk; queued <= total; queued += chunk {
		testpeer.PublishLines(t, testpeer.PubOptions{Addr: local, Topic: "bench/memory", QoS: 1}, msgs)
		waitUntil(t, 60*time.Second, 100*time.Millisecond, "backlog on disk", func() bool { return queuedRecords(queueDir, "ours/bench/memory") >= queued })
		if queued%100000 == 0 || queued == chunk {
			fmt.Printf("%10d %7d KiB\n", queued, g.rssKiB(t))
		}
	}
}

// TestWindowMemory: the gateway's resident memory while its window is at
// its largest: a backlog of BENCH_WINDOW_BACKLOG (default 200,000) records
// drained over a 300 ms round trip, where the window grows to
// max_inflight (16,384) publishes in flight.
func TestWindowMemory(t *testing.T) {
	skipUnlessEnabled(t)
	n := intEnv("BENCH_WINDOW_BACKLOG", 200000)
	cloud := testpeer.StartMosquitto(t, cloudOptions(2*n))
	proxy := testpeer.StartProxyWith(t, cloud.Addr(), testpeer.ProxyOptions{Delay: 150 * time.Millisecond})
	bin := buildGateway(t)
	dir := t.TempDir()
	local := freeAddr(t)
	path := filepath.Join(dir, "gateway.yaml")
	err := os.WriteFile(path, fmt.Appendf(nil, `gateway: {id: plant1, data_dir: %s}
log: {level: debug}
broker: {listen: "%s"}
bridge:
  upstreams: [{url: "tcp://%s"}]
  forward: [{filter: "bench/#", prefix: "win/"}]
  buffer: {max_bytes: 2GiB}
`, filepath.Join(dir, "data"), local, proxy.Addr()), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "gateway.log")
	g := startGateway(t, bin, path, logPath)
	waitUntil(t, 20*time.Second, 20*time.Millisecond, "gateway connected", func() bool { return proxy.Conns() > 0 })
	cnt := newStampCounter(t, cloud.Addr(), "win/bench/#")
	proxy.Cut()
	publishAll(t, local, "bench/window", stampedLines(n))
	queueDir := filepath.Join(dir, "data", "queue")
	waitUntil(t, 120*time.Second, 50*time.Millisecond, "backlog on disk", func() bool { return queuedRecords(queueDir, "win/bench/window") >= n })
	idle := g.rssKiB(t)
	proxy.Restore()
	peak := idle
	deadline := time.Now().Add(5 * time.Minute)
	for cnt.count() < n && time.Now().Before(deadline) {
		peak = max(peak, g.rssKiB(t))
		time.Sleep(50 * time.Millisecond)
	}
	first, last, got := cnt.span()
	logBytes, _ := os.ReadFile(logPath)
	maxWindow := 0
	for _, l := range strings.Split(string(logBytes), "\n") {
		if i := strings.Index(l, "msg=window "); i >= 0 {
			if j := strings.Index(l, " size="); j >= 0 {
				var w int
				fmt.Sscanf(l[j+6:], "%d", &w)
				maxWindow = max(maxWindow, w)
			}
		}
	}
	fmt.Printf("\nwindow at its largest: %d records over a 300 ms round trip, drained %d in %v (%.0f msg/s)\n", n, got, last.Sub(first).Round(time.Millisecond), float64(got)/last.Sub(first).Seconds())
	fmt.Printf("  largest window %d publishes; RSS %d KiB before the drain, %d KiB at the peak\n", maxWindow, idle, peak)
	g.stop(15)
}
