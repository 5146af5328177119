package bridgebench

import (
	"encoding/json"
	"sync"

	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestQuotaDrain: records per second into a cloud that takes at most 100
// publishes per second per connection (AWS IoT Core's quota, and its 100
// unacknowledged publishes: an AWS-like proxy at 20 ms round trip), the
// gateway set to max_rate: 100, with and without batching. The backlog is
// BENCH_QUOTA_BACKLOG records (default 100,000); without batching only
// BENCH_QUOTA_SECONDS (default 10) of the drain are measured, since at 100
// records/s the whole backlog would take 17 minutes.
func TestQuotaDrain(t *testing.T) {
	skipUnlessEnabled(t)
	n := intEnv("BENCH_QUOTA_BACKLOG", 100000)
	secs := intEnv("BENCH_QUOTA_SECONDS", 10)
	cloud := testpeer.StartMosquitto(t, cloudOptions(4*n))
	bin := buildGateway(t)
	fmt.Printf("\nbacklog of %d records into an AWS-like upstream (100 unacknowledged, 20 ms round trip), max_rate: 100\n", n)
	for _, batch := range []bool{false, true} {
		prefix := fmt.Sprintf("quota%v/", batch)
		proxy := testpeer.StartProxyWith(t, cloud.Addr(), testpeer.ProxyOptions{Delay: 10 * time.Millisecond, MaxUnacked: 100})
		dir := t.TempDir()
		local := freeAddr(t)
		rule := fmt.Sprintf(`{filter: "bench/#", prefix: "%s"}`, prefix)
		filter := prefix + "bench/#"
		if batch {
			rule = fmt.Sprintf(`{filter: "bench/#", prefix: "%s", batch: {topic: "%sbatch", max_records: 500, max_bytes: 120KiB, max_delay: 1s}}`, prefix, prefix)
			filter = prefix + "batch"
		}
		path := filepath.Join(dir, "gateway.yaml")
		err := os.WriteFile(path, fmt.Appendf(nil, `gateway: {id: plant1, data_dir: %s}
log: {level: %s}
broker: {listen: "%s"}
bridge:
  upstreams: [{url: "tcp://%s"}]
  max_rate: 100
  forward: [%s]
  buffer: {max_bytes: 2GiB}
`, filepath.Join(dir, "data"), logLevel(), local, proxy.Addr(), rule), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		g := startGateway(t, bin, path, filepath.Join(dir, "gateway.log"))
		waitUntil(t, 20*time.Second, 20*time.Millisecond, "gateway connected", func() bool { return proxy.Conns() > 0 })
		cnt := newRecordCounter(t, cloud.Addr(), filter)
		proxy.Cut()
		publishAll(t, local, "bench/quota", stampedLines(n))
		queueDir := filepath.Join(dir, "data", "queue")
		waitUntil(t, 120*time.Second, 50*time.Millisecond, "backlog on disk", func() bool { return queuedRecords(queueDir, prefix+"bench/quota") >= n })
		restored := time.Now()
		proxy.Restore()
		limit := time.Duration(secs) * time.Second
		if batch {
			limit = 10 * time.Minute
		}
		cnt.wait(n, limit)
		elapsed := time.Since(restored)
		recs, pubs := cnt.counts()
		fmt.Printf("  batch %-5v: %6d records in %d publishes, %v after the link returned: %8.0f records/s, %5.1f publishes/s; proxy: %v\n",
			batch, recs, pubs, elapsed.Round(time.Millisecond), float64(recs)/elapsed.Seconds(), float64(pubs)/elapsed.Seconds(), proxy.Stats())
		g.stop(15)
		keepLog(t, filepath.Join(dir, "gateway.log"), fmt.Sprintf("gateway-quota-%v.log", batch))
	}
}

// recordCounter counts publishes and the records in them (a batch holds
// many) at a subscriber on the upstream.
type recordCounter struct {
	mu         sync.Mutex
	recs, pubs int
	seen       map[uint64]bool
}

func newRecordCounter(t *testing.T, addr, filter string) *recordCounter {
	t.Helper()
	c := &recordCounter{seen: map[uint64]bool{}}
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("records-%d", time.Now().UnixNano())).SetAutoReconnect(false)
	cl := mqtt.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("counter connect: %v", tok.Error())
	}
	tok := cl.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		var doc struct {
			Format  string
			Records []struct{ Seq uint64 }
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.pubs++
		if json.Unmarshal(m.Payload(), &doc) == nil && doc.Format != "" {
			for _, r := range doc.Records {
				if !c.seen[r.Seq] {
					c.seen[r.Seq] = true
					c.recs++
				}
			}
			return
		}
		c.recs++
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("counter subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return c
}

func (c *recordCounter) counts() (recs, pubs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recs, c.pubs
}

// wait waits until n records arrived or limit passed.
func (c *recordCounter) wait(n int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if r, _ := c.counts(); r >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publishAll publishes every line (QoS 1) with paho and waits until the
// broker acknowledged each: mosquitto_pub -l may close its connection
// with PUBACKs unread, and the reset then discards what the broker had
// not read yet, which large backlogs need to avoid.
func publishAll(t *testing.T, addr, topic string, lines [][]byte) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("all-%d", time.Now().UnixNano())).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher: %v", tok.Error())
	}
	defer c.Disconnect(100)
	toks := make([]mqtt.Token, len(lines))
	for i, l := range lines {
		toks[i] = c.Publish(topic, 1, false, l)
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
			t.Fatalf("publisher: message %d: %v", i, tok.Error())
		}
	}
}
