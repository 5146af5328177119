package bridgebench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestGatewayWear: bytes the gateway process writes to disk (its
// /proc/PID/io write_bytes: every page dirtied counts 4 KiB) per byte of
// payload forwarded, at 100, 1,000 and 10,000 msg/s of 200-byte payloads
// for BENCH_WEAR_SECONDS (default 10), with the cloud link up (mosquitto on
// loopback) and down (cut: everything waits in the queue). Budget: at most
// 0.1 link up, 1.5 link down, at 1,000 msg/s. The data dir should be on a
// real disk (TMPDIR=/var/tmp; tmpfs counts nothing).
func TestGatewayWear(t *testing.T) {
	skipUnlessEnabled(t)
	secs := intEnv("BENCH_WEAR_SECONDS", 10)
	cloud := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{MaxQueuedMessages: 1000})
	bin := buildGateway(t)
	fmt.Printf("\nbytes written to disk by the gateway per payload byte (200-byte payloads, %d s each, sync 100ms)\n", secs)
	fmt.Printf("%10s %12s %12s\n", "msg/s", "link up", "link down")
	for _, rate := range []int{100, 1000, 10000} {
		var ratios []string
		for _, up := range []bool{true, false} {
			proxy := testpeer.StartProxy(t, cloud.Addr())
			dir := t.TempDir()
			local := freeAddr(t)
			path := filepath.Join(dir, "gateway.yaml")
			err := os.WriteFile(path, fmt.Appendf(nil, `gateway: {id: plant1, data_dir: %s}
log: {level: warn}
broker: {listen: "%s"}
bridge:
  upstreams: [{url: "tcp://%s"}]
  forward: [{filter: "bench/#", prefix: "wear/", retain: false}]
  buffer: {max_bytes: 2GiB}
`, filepath.Join(dir, "data"), local, proxy.Addr()), 0o644)
			if err != nil {
				t.Fatal(err)
			}
			g := startGateway(t, bin, path, filepath.Join(dir, "gateway.log"))
			waitUntil(t, 20*time.Second, 20*time.Millisecond, "gateway connected", func() bool { return proxy.Conns() > 0 })
			if !up {
				proxy.Cut()
			}
			time.Sleep(time.Second) // let the start's own writes (cursor, segment) settle
			before := writeBytes(t, g)
			payload := publishRate(t, local, rate, secs, 200)
			time.Sleep(300 * time.Millisecond) // the last group commit
			written := writeBytes(t, g) - before
			ratios = append(ratios, fmt.Sprintf("%12.3f", float64(written)/float64(payload)))
			g.stop(15)
		}
		fmt.Printf("%10d %s\n", rate, strings.Join(ratios, " "))
	}
}

// writeBytes reads write_bytes of the gateway process.
func writeBytes(t *testing.T, g *gateway) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no write_bytes in /proc/PID/io")
	return 0
}

// publishRate publishes rate msg/s of size-byte payloads (QoS 1) for secs
// seconds into the local broker, in bursts every 10 ms, and returns the
// payload bytes sent.
func publishRate(t *testing.T, addr string, rate, secs, size int) int64 {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("rate-%d", time.Now().UnixNano())).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher: %v", tok.Error())
	}
	defer c.Disconnect(100)
	payload := []byte(strings.Repeat("v", size))
	n := rate * secs
	start := time.Now()
	var last mqtt.Token
	for i := 0; i < n; i++ {
		if i%max(1, rate/100) == 0 {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d) // the pace is what is measured
			}
		}
		last = c.Publish("bench/wear", 1, false, payload)
	}
	if !last.WaitTimeout(30*time.Second) || last.Error() != nil {
		t.Fatalf("publisher: %v", last.Error())
	}
	return int64(n * size)
}
