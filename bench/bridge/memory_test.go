package bridgebench

import (
	"fmt"
	"path/filepath"
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
	config := writeGatewayConfig(t, dir, local, proxy.Addr(), "ours/", 20)
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
