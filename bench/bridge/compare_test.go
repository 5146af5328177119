package bridgebench

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// result is one side of the comparison.
type result struct {
	name          string
	drainTotal    time.Duration // link restored → last message
	drainActive   time.Duration // first → last message
	drained       int
	killQueued    int
	killDelivered int
}

func (r result) String() string {
	rate := func(d time.Duration) string {
		if d <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f msg/s", float64(r.drained)/d.Seconds())
	}
	return fmt.Sprintf("%-18s drain %6d in %8v (%s; %s from first to last message)  kill -9: %d of %d delivered, %d lost",
		r.name, r.drained, r.drainTotal.Round(time.Millisecond), rate(r.drainTotal), rate(r.drainActive),
		r.killDelivered, r.killQueued, r.killQueued-r.killDelivered)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestCompareBridges: the same outage, drain and kill -9, for the gateway
// and for mosquitto's bridge, against one upstream mosquitto.
func TestCompareBridges(t *testing.T) {
	skipUnlessEnabled(t)
	n := intEnv("BENCH_MESSAGES", 50000)
	msgs := lines(n)
	cloud := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{MaxQueuedMessages: 4 * n})
	var results []result

	// --- the gateway
	{
		r := result{name: "fieldbridge"}
		proxy := testpeer.StartProxy(t, cloud.Addr())
		cnt := newCounter(t, cloud.Addr(), "ours/bench/#")
		bin := buildGateway(t)
		dir := t.TempDir()
		local := freeAddr(t)
		config := writeGatewayConfig(t, dir, local, proxy.Addr())
		logPath := filepath.Join(dir, "gateway.log")
		queueDir := filepath.Join(dir, "data", "queue")
		g := startGateway(t, bin, config, logPath)
		waitUntil(t, 20*time.Second, 20*time.Millisecond, "gateway connected", func() bool { return proxy.Conns() > 0 })

		proxy.Cut()
		testpeer.PublishLines(t, testpeer.PubOptions{Addr: local, Topic: "bench/drain", QoS: 1}, msgs)
		waitUntil(t, 60*time.Second, 50*time.Millisecond, "backlog on disk", func() bool { return queuedRecords(queueDir) >= n })
		start := time.Now()
		proxy.Restore()
		r.drained = cnt.wait(n, 30*time.Second)
		first, last, _ := cnt.window()
		r.drainTotal, r.drainActive = last.Sub(start), last.Sub(first)

		// kill -9 during an outage
		cnt.reset()
		proxy.Cut()
		testpeer.PublishLines(t, testpeer.PubOptions{Addr: local, Topic: "bench/kill", QoS: 1}, msgs)
		r.killQueued = n
		waitUntil(t, 60*time.Second, 50*time.Millisecond, "backlog on disk", func() bool { return queuedRecords(queueDir) >= 2*n })
		g.stop(9)
		g = startGateway(t, bin, config, logPath)
		proxy.Restore()
		r.killDelivered = cnt.wait(n, 5*time.Second)
		results = append(results, r)
		t.Logf("gateway log: %s", logPath)
	}

	// --- mosquitto's bridge: a second mosquitto as the local broker
	{
		r := result{name: "mosquitto bridge"}
		proxy := testpeer.StartProxy(t, cloud.Addr())
		cnt := newCounter(t, cloud.Addr(), "mosq/bench/#")
		local := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{
			Persistence:       true,
			MaxQueuedMessages: 100000,
			ExtraConfig: []string{
				"connection cloud",
				"address " + proxy.Addr(),
				`topic bench/# out 1 "" mosq/`,
				"cleansession false",
				"restart_timeout 1 1",
			},
		})
		waitUntil(t, 20*time.Second, 20*time.Millisecond, "mosquitto bridge connected", func() bool { return proxy.Conns() > 0 })

		proxy.Cut()
		testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "bench/drain", QoS: 1}, msgs)
		start := time.Now()
		proxy.Restore()
		r.drained = cnt.wait(n, 30*time.Second)
		first, last, _ := cnt.window()
		r.drainTotal, r.drainActive = last.Sub(start), last.Sub(first)

		cnt.reset()
		proxy.Cut()
		testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "bench/kill", QoS: 1}, msgs)
		r.killQueued = n
		local.Kill()
		local.Start()
		proxy.Restore()
		r.killDelivered = cnt.wait(n, 5*time.Second)
		results = append(results, r)
	}

	fmt.Printf("\n%d messages of %d bytes, QoS 1, upstream mosquitto on loopback\n", n, len(msgs[0]))
	for _, r := range results {
		fmt.Println(r)
	}
	fmt.Println("(drain: from restoring the link to the last message at a subscriber on the upstream; it includes the reconnect)")
}
