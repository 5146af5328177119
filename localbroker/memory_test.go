package localbroker

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// stuckSubscriber subscribes to filter and then never reads: the broker's
// writes to it back up.
func stuckSubscriber(t *testing.T, addr, id, filter string, qos byte) {
	t.Helper()
	c := rawConnect(t, addr, id)
	sub := append([]byte{0x82, byte(5 + len(filter)), 0, 1, 0, byte(len(filter))}, filter...)
	if _, err := c.Write(append(sub, qos)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 5)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
}

func heapAndRSS() (heap uint64, rss string) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			rss = strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return m.HeapAlloc, rss
}

// TestMemoryBounded: a client flooding the broker, and clients subscribed
// to # that never read, cost a bounded amount of memory: what max_pending
// and max_inflight allow, and no more however long it goes on.
func TestMemoryBounded(t *testing.T) {
	b := startWith(t, Config{}, nil)
	stuckSubscriber(t, b.Addr(), "stuck0", "#", 0)
	stuckSubscriber(t, b.Addr(), "stuck1", "#", 1)
	topics := make([]string, 4000)
	for i := range topics {
		topics[i] = fmt.Sprintf("plant1/dev%d/r%d", i/500, i%500)
	}
	payload := []byte(`{"value":1234,"ts":"2026-11-26T10:00:00.123Z","quality":"good","unit":"V"}`)
	flood := bytes.Repeat([]byte("x"), 200)
	lines := make([][]byte, 5000)
	for i := range lines {
		lines[i] = flood
	}
	phase := func(n int) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			testpeer.PublishLines(t, testpeer.PubOptions{Addr: b.Addr(), Topic: "plant1/flood", QoS: 0}, lines)
		}()
		for i := 0; i < n; i++ {
			if err := b.Publish(topics[i%len(topics)], payload, true, 1); err != nil {
				t.Error(err)
				break
			}
		}
		<-done
	}
	base, baseRSS := heapAndRSS()
	var heaps []uint64
	report := fmt.Sprintf("live heap %.1f MiB (RSS %s) at start", float64(base)/(1<<20), baseRSS)
	for i := 0; i < 7; i++ {
		phase(8000)
		h, rss := heapAndRSS()
		heaps = append(heaps, h)
		report += fmt.Sprintf("; %.1f MiB (RSS %s)", float64(h)/(1<<20), rss)
	}
	st := b.Stats()
	t.Logf("%s after each 13,000 messages; dropped for the stuck clients: %d queued, %d QoS 1 over max_inflight", report, st.MessagesDropped, st.InflightDropped)
	if st.MessagesDropped == 0 {
		t.Error("nothing dropped: the subscribers were not stuck")
	}
	// Once the stuck clients' queues are full, more messages cost nothing.
	if grow := int64(heaps[6]) - int64(heaps[4]); grow > 4<<20 {
		t.Errorf("heap grew by %.1f MiB over the last two phases: not bounded", float64(grow)/(1<<20))
	}
}
