package testpeer

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestRawSubscriberAndAcker: the benchmarks' MQTT ends against mosquitto
// and mosquitto_pub. The subscriber gets every message in order, which
// mosquitto (20 in flight per client) only sends on if it acknowledges
// them; mosquitto_pub finishes against the acker only if every publish is
// acknowledged.
func TestRawSubscriberAndAcker(t *testing.T) {
	const n = 2000
	m := StartMosquitto(t, MosquittoOptions{MaxQueuedMessages: n + 100, MaxInflightMessages: 20})
	var mu sync.Mutex
	var got []string
	StartRawSubscriber(t, m.Addr(), "raw-test", "raw/#", func(topic string, payload []byte, _ time.Time) {
		mu.Lock()
		got = append(got, topic+" "+string(payload))
		mu.Unlock()
	})
	lines := make([][]byte, n)
	for i := range lines {
		lines[i] = fmt.Appendf(nil, "%06d", i)
	}
	PublishLines(t, PubOptions{Addr: m.Addr(), Topic: "raw/a", QoS: 1}, lines)
	waitUntilT(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	}, "every message at the raw subscriber")
	mu.Lock()
	for i, g := range got {
		if want := "raw/a " + string(lines[i]); g != want {
			t.Fatalf("message %d = %q, want %q", i, g, want)
		}
	}
	mu.Unlock()

	PublishLines(t, PubOptions{Addr: StartAcker(t), Topic: "acked", QoS: 1}, lines)
}
