package localbroker

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
	"golang.org/x/crypto/bcrypt"
)

// rawSubscriber connects a minimal MQTT 3.1.1 client that subscribes to
// filter at QoS 0 and discards everything it receives, costing the broker
// process nothing but the socket.
func rawSubscriber(tb testing.TB, addr, filter string, creds ...string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 1, 'b'}
	if len(creds) == 2 {
		body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60, 0, 1, 'b'}
		for _, s := range creds {
			body = append(append(body, 0, byte(len(s))), s...)
		}
		connect = append([]byte{0x10, byte(len(body))}, body...)
	}
	sub := append([]byte{0x82, byte(5 + len(filter)), 0, 1, 0, byte(len(filter))}, filter...)
	sub = append(sub, 0)
	if _, err := c.Write(append(connect, sub...)); err != nil {
		tb.Fatal(err)
	}
	ack := make([]byte, 9) // CONNACK (4) + SUBACK (5)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, ack); err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() { defer close(done); _, _ = io.Copy(io.Discard, c) }()
	tb.Cleanup(func() { c.Close(); <-done })
}

// BenchmarkPublishRetained is mochi's own cost per value as the gateway
// publishes it: inline, retained, ~80-byte JSON payload, 4,000 distinct
// topics, one TCP subscriber on everything. Everything the gateway adds
// (polling, decoding, encoding) comes on top of this.
//
// With auth=on the subscriber is a user whose two ACL rules are checked
// for every message delivered to it.
func BenchmarkPublishRetained(b *testing.B) {
	hash, err := bcrypt.GenerateFromPassword([]byte("bench"), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		subscribers int
		auth        bool
	}{{0, false}, {1, false}, {1, true}} {
		name := fmt.Sprintf("subscribers=%d", tc.subscribers)
		if tc.auth {
			name += "/auth=on"
		}
		subscribers := tc.subscribers
		b.Run(name, func(b *testing.B) {
			cfg := Config{Listen: "127.0.0.1:0"}
			var creds []string
			if tc.auth {
				cfg.Users = []User{{Username: "hmi", PasswordHash: string(hash), ACL: []ACLRule{
					{Filter: "bench/+/+/set", Access: "deny"}, {Filter: "bench/#", Access: "read"}}}}
				creds = []string{"hmi", "bench"}
			}
			cfg.Check(nopReporter{})
			br, err := New(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := br.Start(); err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			for i := 0; i < subscribers; i++ {
				rawSubscriber(b, br.Addr(), "bench/#", creds...)
			}
			topics := make([]string, 4000)
			for i := range topics {
				topics[i] = fmt.Sprintf("bench/dev%d/r%d", i/500, i%500)
			}
			payload := []byte(`{"value":1234,"ts":"2026-11-26T10:00:00.123Z","quality":"good","unit":"V"}`)
			b.ReportAllocs()
			c0 := testpeer.SelfCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := br.Publish(topics[i%len(topics)], payload, true, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// Process CPU, so mochi's per-client writer goroutine counts too.
			b.ReportMetric(float64((testpeer.SelfCPU()-c0).Nanoseconds())/float64(b.N)/1000, "µs-cpu/op")
		})
	}
}

type nopReporter struct{}

func (nopReporter) Errorf(string, string, ...any) {}
func (nopReporter) Warnf(string, string, ...any)  {}
