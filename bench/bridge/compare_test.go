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
	rate := func(d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(r.drained) / d.Seconds()
	}
	return fmt.Sprintf("%-18s drained %d: %6v after restore (%6.0f msg/s), %6v first to last (%6.0f msg/s) | kill -9: %d of %d delivered, %d lost",
		r.name, r.drained, r.drainTotal.Round(time.Millisecond), rate(r.drainTotal), r.drainActive.Round(time.Millisecond), rate(r.drainActive),
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
// and for mosquitto's bridge, against one upstream mosquitto on loopback.
// The gateway runs with its default window (inflight: auto) and with the
// fixed window of 20 it had before (BENCH_INFLIGHTS=0,20,1000 chooses; 0 is
// auto).
func TestCompareBridges(t *testing.T) {
	skipUnlessEnabled(t)
	n := intEnv("BENCH_MESSAGES", 50000)
	msgs := lines(n)
	cloud := testpeer.StartMosquitto(t, cloudOptions(4*n))
	bin := buildGateway(t)
	var results []result
	for _, w := range intsEnv(t, "BENCH_INFLIGHTS", []int{0, 20}) {
		results = append(results, runGateway(t, bin, cloud, msgs, w))
	}
	results = append(results, runMosquittoBridge(t, cloud, msgs))
	fmt.Printf("\n%d messages of %d bytes, QoS 1, upstream mosquitto on loopback, links through a TCP proxy\n", n, len(msgs[0]))
	for _, r := range results {
		fmt.Println(r)
	}
	fmt.Println("after restore: from restoring the link to the last message at a subscriber on the upstream (includes the reconnect);")
	fmt.Println("first to last: between the first and the last message there. kill -9: during an outage, then restart, restore the link.")
}

// runGateway: outage, drain, then outage, kill -9, restart, restore.
func runGateway(t *testing.T, bin string, cloud *testpeer.Mosquitto, msgs [][]byte, inflight int) result {
	n := len(msgs)
	r := result{name: fmt.Sprintf("fieldbridge w=%d", inflight)}
	if inflight == 0 {
		r.name = "fieldbridge auto"
	}
	prefix := fmt.Sprintf("ours%d/", inflight)
	proxy := testpeer.StartProxy(t, cloud.Addr())
	cnt := newCounter(t, cloud.Addr(), prefix+"bench/#")
	dir := t.TempDir()
	local := freeAddr(t)
	config := writeGatewayConfig(t, dir, local, proxy.Addr(), prefix, inflight)
	logPath := filepath.Join(dir, "gateway.log")
	queueDir := filepath.Join(dir, "data", "queue")
	g := startGateway(t, bin, config, logPath)
	waitUntil(t, 20*time.Second, 20*time.Millisecond, "gateway connected", func() bool { return proxy.Conns() > 0 })

	proxy.Cut()
	publishAll(t, local, "bench/drain", msgs)
	waitUntil(t, 60*time.Second, 50*time.Millisecond, "backlog on disk", func() bool { return queuedRecords(queueDir, prefix+"bench/drain") >= n })
	start := time.Now()
	proxy.Restore()
	r.drained = cnt.wait(n, 30*time.Second)
	first, last, _ := cnt.window()
	r.drainTotal, r.drainActive = last.Sub(start), last.Sub(first)

	cnt.reset()
	proxy.Cut()
	publishAll(t, local, "bench/kill", msgs)
	r.killQueued = n
	waitUntil(t, 60*time.Second, 50*time.Millisecond, "backlog on disk", func() bool { return queuedRecords(queueDir, prefix+"bench/kill") >= n })
	g.stop(9)
	g = startGateway(t, bin, config, logPath)
	proxy.Restore()
	r.killDelivered = cnt.wait(n, 5*time.Second)
	g.stop(15)
	return r
}

// runMosquittoBridge: the same with a second mosquitto as the local broker,
// bridged upstream.
func runMosquittoBridge(t *testing.T, cloud *testpeer.Mosquitto, msgs [][]byte) result {
	n := len(msgs)
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
	publishAll(t, local.Addr(), "bench/drain", msgs)
	start := time.Now()
	proxy.Restore()
	r.drained = cnt.wait(n, 30*time.Second)
	first, last, _ := cnt.window()
	r.drainTotal, r.drainActive = last.Sub(start), last.Sub(first)

	cnt.reset()
	proxy.Cut()
	publishAll(t, local.Addr(), "bench/kill", msgs)
	r.killQueued = n
	local.Kill()
	local.Start()
	proxy.Restore()
	r.killDelivered = cnt.wait(n, 5*time.Second)
	return r
}
