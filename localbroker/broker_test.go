package localbroker

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

type received struct {
	topic, payload, origin string
	retain                 bool
	qos                    byte
}

// startBroker starts a broker with the defaults on a free loopback port.
func startBroker(t *testing.T) *Broker {
	t.Helper()
	return startWith(t, Config{}, nil)
}

type failReporter struct{ t *testing.T }

func (r failReporter) Errorf(path, format string, args ...any) { r.t.Fatalf(path+": "+format, args...) }
func (r failReporter) Warnf(path, format string, args ...any)  {}

func TestInlinePublishSubscribe(t *testing.T) {
	b := startBroker(t)
	if err := b.Publish("plant1/m/v", []byte("retained-before"), true, 1); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []received
	unsub, err := b.Subscribe("plant1/#", func(topic string, payload []byte, retain bool, qos byte, origin string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, received{topic, string(payload), origin, retain, qos})
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte("live")
	if err := b.Publish("plant1/m/w", buf, false, 0); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXX") // the caller may reuse its buffer after Publish
	if err := b.PublishAs("bridge-downlink", "plant1/m/set", []byte("42"), false, 1); err != nil {
		t.Fatal(err)
	}
	unsub()
	_ = b.Publish("plant1/m/after", []byte("x"), false, 0)
	mu.Lock()
	defer mu.Unlock()
	want := []received{
		{"plant1/m/v", "retained-before", "inline", true, 1},
		{"plant1/m/w", "live", "inline", false, 0},
		{"plant1/m/set", "42", "bridge-downlink", false, 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i].topic != want[i].topic || got[i].origin != want[i].origin || got[i].retain != want[i].retain {
			t.Errorf("message %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if got[0].payload != "retained-before" {
		t.Errorf("retained payload %q", got[0].payload)
	}
}

// TestTCPClients: real MQTT clients see retained values at once and live
// publishes from the gateway and from each other.
func TestTCPClients(t *testing.T) {
	b := startBroker(t)
	if err := b.Publish("plant1/meter1/voltage", []byte(`{"value":229.8}`), true, 1); err != nil {
		t.Fatal(err)
	}
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: b.Addr(), Filter: "plant1/#", QoS: 1})
	m := sub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return m.Topic == "plant1/meter1/voltage" })
	if !m.Retained || string(m.Payload) != `{"value":229.8}` {
		t.Errorf("retained value: %+v", m)
	}
	testpeer.Publish(t, testpeer.PubOptions{Addr: b.Addr(), Topic: "plant1/hmi/note", Payload: []byte("hello world"), QoS: 1})
	sub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool {
		return m.Topic == "plant1/hmi/note" && string(m.Payload) == "hello world" && !m.Retained
	})
	if st := b.Stats(); st.Clients < 1 || st.Retained < 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestClosed(t *testing.T) {
	b := startBroker(t)
	_ = b.Close()
	if err := b.Publish("a/b", []byte("x"), false, 0); err != ErrClosed {
		t.Errorf("publish after close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestCheckWarnsBeyondLoopback(t *testing.T) {
	var warned []string
	r := &collect{warn: &warned}
	for _, l := range []string{"0.0.0.0:1883", ":1883", "192.168.1.2:1883"} {
		c := Config{Listen: l}
		c.Check(r)
	}
	for _, l := range []string{"127.0.0.1:1883", "localhost:1883", "[::1]:1883"} {
		c := Config{Listen: l}
		c.Check(r)
	}
	if len(warned) != 3 {
		t.Errorf("warnings: %v", warned)
	}
	c := Config{}
	c.Check(r)
	if c.Listen != DefaultListen || c.MaxPending != defaultMaxPending {
		t.Errorf("defaults not filled: %+v", c)
	}
}

type collect struct{ warn *[]string }

func (c *collect) Errorf(path, format string, args ...any) {}
func (c *collect) Warnf(path, format string, args ...any) {
	*c.warn = append(*c.warn, path+": "+strings.TrimSpace(format))
}
