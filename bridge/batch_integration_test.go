package bridge_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestQuotaCloud: a cloud like AWS IoT Core — a broker that stops reading
// a client with 100 unacknowledged publishes, behind a 20 ms round trip —
// with max_rate 100 and a batching rule. A backlog of 20,000 records
// queued during an outage arrives whole, in order, in batches within every
// bound; the publishes stay within max_rate; the README's consumer snippet
// unpacks a batch taken from mosquitto.
func TestQuotaCloud(t *testing.T) {
	const n = 20000
	const maxRate = 100.0
	m := cloud(t, testpeer.MosquittoOptions{MaxQueuedMessages: n})
	proxy := testpeer.StartProxyWith(t, m.Addr(), testpeer.ProxyOptions{Delay: 10 * time.Millisecond, MaxUnacked: 100})
	local := startLocal(t)
	cfg := forwardConfig("tcp://" + proxy.Addr())
	delay := 200 * time.Millisecond
	cfg.MaxRate = maxRate
	cfg.Forward[0].Batch = &bridge.Batch{Topic: "site-a/plant1/batch", MaxRecords: 500, MaxBytes: 32 << 10, MaxDelay: &delay}
	br := startBridge(t, local, cfg)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/batch", QoS: 1})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })

	proxy.Cut()
	testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/q", QoS: 1}, numbered(n))
	waitFor(t, 20*time.Second, "the backlog queued", func() bool { return br.Stats().Queued >= n })
	start := time.Now()
	proxy.Restore()

	seen := make([]bool, n)
	got := 0
	var lastSeq uint64
	var batches []testpeer.Message
	waitFor(t, 60*time.Second, "every record in the cloud", func() bool {
		msgs := sub.Messages()
		for _, msg := range msgs[len(batches):] {
			batches = append(batches, msg)
			if len(msg.Payload) > 32<<10 {
				t.Fatalf("a batch of %d bytes, max_bytes is 32KiB", len(msg.Payload))
			}
			var doc struct {
				Format  string
				Records []struct {
					Seq         uint64
					Topic, Text string
					TS          time.Time
					Payload     json.RawMessage
				}
			}
			if err := json.Unmarshal(msg.Payload, &doc); err != nil || doc.Format != "fieldbridge-batch/1" {
				t.Fatalf("batch %q: %v", msg.Payload, err)
			}
			if len(doc.Records) > 500 || len(doc.Records) == 0 {
				t.Fatalf("a batch of %d records, max_records is 500", len(doc.Records))
			}
			for _, r := range doc.Records {
				// At-least-once: a resend after a reconnect starts again
				// from the oldest unacknowledged record.
				if r.Seq <= lastSeq && got < n {
					t.Logf("resend from seq %d (after %d)", r.Seq, lastSeq)
				}
				lastSeq = r.Seq
				k, err := strconv.Atoi(strings.Fields(r.Text)[0])
				if err != nil || r.Topic != "site-a/plant1/q" || r.TS.IsZero() {
					t.Fatalf("record %+v", r)
				}
				if !seen[k] {
					seen[k] = true
					got++
				}
			}
		}
		return got == n
	})
	elapsed := time.Since(start)
	st := br.Stats()
	ps := proxy.Stats()
	t.Logf("%d records in %d batches, %v after the link returned; proxy: %v; window %d, round trip %v",
		n, len(batches), elapsed.Round(time.Millisecond), ps, st.Window, st.RoundTrip)
	if ps.MaxUnacked > 100 {
		t.Errorf("the broker saw %d unacknowledged publishes, its limit is 100", ps.MaxUnacked)
	}
	// One publish per batch (plus the birth): the rate limit allows
	// maxRate per second after a burst of a tenth of a second.
	if allowed := maxRate*elapsed.Seconds() + maxRate/10 + 2; float64(len(batches)) > allowed {
		t.Errorf("%d publishes in %v, max_rate %v allows %.0f", len(batches), elapsed, maxRate, allowed)
	}
	if st.Reconnects > 1 || st.ConnectionsLost > 1 {
		t.Errorf("the broker's limit was taken for a dead link: %+v", st)
	}

	// The README's consumer, on a real batch from mosquitto.
	out := runConsumerSnippet(t, batches[0].Payload)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) < 2 || !strings.Contains(lines[0], "site-a/plant1/q") {
		t.Fatalf("the README's consumer printed:\n%s", out)
	}
}

// TestMaxRateHeld: max_rate holds over 10 s to within a few percent
// against a real broker, and the backlog waits on disk meanwhile.
func TestMaxRateHeld(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 12 s")
	}
	const rate = 100.0
	m := cloud(t, testpeer.MosquittoOptions{})
	local := startLocal(t)
	cfg := forwardConfig("tcp://" + m.Addr())
	cfg.MaxRate = rate
	br := startBridge(t, local, cfg)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/rate", QoS: 1})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })
	testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/rate", QoS: 1}, numbered(1200))
	sub.WaitCount(t, 1100, 20*time.Second)
	msgs := sub.Messages()
	// The steady state: from the 100th message (after the burst) over 10 s.
	first := msgs[100].Time
	var count int
	for _, msg := range msgs[100:] {
		if msg.Time.Sub(first) < 10*time.Second {
			count++
		}
	}
	got := float64(count) / 10
	t.Logf("%.1f msg/s over 10 s at max_rate %v; backlog %d while limited", got, rate, br.Stats().Pending)
	if got > rate*1.03 || got < rate*0.95 {
		t.Errorf("%.1f msg/s over 10 s, want max_rate %v within a few percent", got, rate)
	}
}

// runConsumerSnippet runs the Python consumer shown in the README on a
// batch and returns what it printed (one line per record).
func runConsumerSnippet(t *testing.T, batch []byte) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- batch-consumer[^>]*-->\\s*```python\\n(.*?)```\\s*<!-- /batch-consumer -->")
	m := re.FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no batch-consumer snippet between its markers")
	}
	dir := t.TempDir()
	batchFile := filepath.Join(dir, "batch.json")
	if err := os.WriteFile(batchFile, batch, 0o644); err != nil {
		t.Fatal(err)
	}
	script := string(m[1]) + fmt.Sprintf("\nimport sys\nfor rec in unpack(open(%q, 'rb').read()):\n    print(*rec)\n", batchFile)
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("FIELDBRIDGE_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s is missing (required because FIELDBRIDGE_REQUIRE_PEERS=1)", py)
		}
		t.Skipf("%s is missing", py)
	}
	out, err := exec.Command(py, "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("the README's consumer failed: %v\n%s", err, out)
	}
	return string(out)
}

// TestSlowBroker: a broker that acknowledges each publish 200 ms late and
// stops reading at 100 unacknowledged ones (AWS IoT Core's limit) is
// back-pressure, not a dead link: no zombie detection, no reconnect, no
// resend, nothing lost, and the rate is what the limit allows. A link that
// then goes silent with the window full is still noticed within about two
// keepalives.
func TestSlowBroker(t *testing.T) {
	const n = 2000
	m := cloud(t, testpeer.MosquittoOptions{MaxQueuedMessages: 4 * n})
	proxy := testpeer.StartProxyWith(t, m.Addr(), testpeer.ProxyOptions{Delay: 10 * time.Millisecond, MaxUnacked: 100, AckDelay: 200 * time.Millisecond})
	local := startLocal(t)
	cfg := forwardConfig("tcp://" + proxy.Addr())
	cfg.Keepalive = 2 * time.Second // ack_timeout 2 s: far below the oldest message's wait
	br := startBridge(t, local, cfg)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/slow", QoS: 1})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })

	start := time.Now()
	testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/slow", QoS: 1}, numbered(n))
	sub.WaitCount(t, n, 60*time.Second)
	elapsed := time.Since(start)
	st, ps := br.Stats(), proxy.Stats()
	t.Logf("%d messages in %v (the limit allows %d/s); proxy: %v; window %d, round trip %v", n, elapsed.Round(time.Millisecond), 100*1000/200, ps, st.Window, st.RoundTrip)
	checkSequence(t, sub.Messages(), n, 0, 0)
	if st.ConnectionsLost != 0 || st.Resent != 0 || st.Reconnects != 0 {
		t.Errorf("a slow broker was taken for a dead link: %+v", st)
	}
	if ps.MaxUnacked > 100 || ps.Stalls == 0 {
		t.Errorf("proxy %v: want the broker's limit of 100 reached and held", ps)
	}

	// Silence with the window full: blackhole while a backlog drains.
	sub.Reset()
	testpeer.PublishLines(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/slow", QoS: 1}, numbered(n))
	waitFor(t, 10*time.Second, "the window full", func() bool { return br.Stats().InFlight >= 100 })
	proxy.Blackhole(true)
	silent := time.Now()
	waitFor(t, 4*cfg.Keepalive+time.Second, "the silent link noticed", func() bool { return br.Stats().ConnectionsLost == 1 })
	t.Logf("silent link noticed after %v (keepalive %v)", time.Since(silent).Round(time.Millisecond), cfg.Keepalive)
	proxy.Blackhole(false)
	waitFor(t, 60*time.Second, "the rest delivered", func() bool { return br.Stats().Pending == 0 })
}
