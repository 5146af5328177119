package bridge

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// startWriter runs the hand-off writer of b until the test ends.
func startWriter(t *testing.T, b *Bridge, q store) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.in.runWriter(q)
	}()
	t.Cleanup(func() {
		b.in.close()
		<-done
	})
}

func subscribeForward(t *testing.T, b *Bridge, src *fakeSource) {
	t.Helper()
	for i := range b.cfg.Forward {
		if _, err := src.Subscribe(b.cfg.Forward[i].Filter, b.forwardHandler(&b.cfg.Forward[i])); err != nil {
			t.Fatal(err)
		}
	}
}

func TestForwardHandlerMapsAndCopies(t *testing.T) {
	zero := 0
	src := newFakeSource()
	q := queue.NewMemory(0, queue.DropOldest)
	b := newBridge(checkedConfig(t, func(c *Config) {
		c.Forward = append(c.Forward, ForwardRule{Filter: "plant1/+/alarm", Prefix: "alarms/", QoS: &zero, Retain: RetainFalse})
	}), src, q, testLogger())
	startWriter(t, b, q)
	subscribeForward(t, b, src)

	buf := []byte("229.8")
	src.publish("inline", "plant1/m/alarm", buf, true, 0)
	copy(buf, "XXXXX") // the broker reuses its buffer after the call
	waitFor(t, 2*time.Second, "two records queued", func() bool { return q.Stats().PendingRecords == 2 })
	recs, err := q.Next(10)
	if err != nil {
		t.Fatal(err)
	}
	byTopic := map[string]queue.Record{}
	for _, r := range recs {
		byTopic[r.Topic] = r
	}
	if r := byTopic["site-a/plant1/m/alarm"]; string(r.Payload) != "229.8" || r.QoS != 1 || !r.Retain || r.Time.IsZero() {
		t.Errorf("rule 0 record %+v", r)
	}
	if r := byTopic["alarms/plant1/m/alarm"]; string(r.Payload) != "229.8" || r.QoS != 0 || r.Retain {
		t.Errorf("rule 1 record %+v", r)
	}
}

// fakeMessage is a message received from the cloud.
type fakeMessage struct {
	topic    string
	payload  []byte
	qos      byte
	retained bool
	acked    atomic.Bool
}

func (m *fakeMessage) Duplicate() bool   { return false }
func (m *fakeMessage) Qos() byte         { return m.qos }
func (m *fakeMessage) Retained() bool    { return m.retained }
func (m *fakeMessage) Topic() string     { return m.topic }
func (m *fakeMessage) MessageID() uint16 { return 1 }
func (m *fakeMessage) Payload() []byte   { return m.payload }
func (m *fakeMessage) Ack()              { m.acked.Store(true) }

var _ mqtt.Message = (*fakeMessage)(nil)

// TestLoopProtection: a command from the cloud is published locally on a
// topic the forward rule covers, and is not sent back up; neither is a
// local message on a cloud topic the downlink covers; retained cloud
// messages are dropped unless accepted.
func TestLoopProtection(t *testing.T) {
	src := newFakeSource()
	q := queue.NewMemory(0, queue.DropOldest)
	b := newBridge(checkedConfig(t, func(c *Config) {
		c.Subscribe = []SubscribeRule{{Filter: "site-a/plant1/+/+/set", StripPrefix: "site-a/"}}
	}), src, q, testLogger())
	startWriter(t, b, q)
	subscribeForward(t, b, src)
	down := b.downlinkHandler(&b.cfg.Subscribe[0])

	cmd := &fakeMessage{topic: "site-a/plant1/pump/speed/set", payload: []byte("42"), qos: 1}
	down(nil, cmd)
	stale := &fakeMessage{topic: "site-a/plant1/pump/speed/set", payload: []byte("7"), qos: 1, retained: true}
	down(nil, stale)
	src.publish("hmi", "plant1/pump/speed", []byte("41"), false, 0) // ordinary local traffic
	// A local command (an HMI's) on a topic the downlink covers: sent up, it
	// would come back down as a second command.
	src.publish("hmi", "plant1/pump/speed/set", []byte("40"), false, 1)

	if !cmd.acked.Load() || !stale.acked.Load() {
		t.Error("downlink messages not acknowledged")
	}
	src.mu.Lock()
	local := append([]published(nil), src.local...)
	src.mu.Unlock()
	if len(local) != 1 || local[0] != (published{b.origin, "plant1/pump/speed/set", "42", false, 1}) {
		t.Fatalf("published locally: %+v", local)
	}
	waitFor(t, 2*time.Second, "local traffic queued", func() bool { return q.Stats().Appended == 1 })
	recs, _ := q.Next(10)
	if len(recs) != 1 || recs[0].Topic != "site-a/plant1/pump/speed" {
		t.Errorf("queued %+v; want only the local traffic", recs)
	}
	st := b.Stats()
	if st.LoopSkipped != 2 || st.DownlinkReceived != 2 || st.DownlinkRetainedIgnored != 1 {
		t.Errorf("stats %+v", st)
	}
}

// gatedStore is a queue whose Append blocks while the gate is closed: a
// stalled disk.
type gatedStore struct {
	*queue.Memory
	mu      sync.Mutex
	gate    chan struct{}
	blocked atomic.Bool // an Append waits at the gate
}

func newGatedStore() *gatedStore {
	return &gatedStore{Memory: queue.NewMemory(0, queue.DropOldest)}
}

func (s *gatedStore) stall() {
	s.mu.Lock()
	s.gate = make(chan struct{})
	s.mu.Unlock()
}

func (s *gatedStore) release() {
	s.mu.Lock()
	close(s.gate)
	s.gate = nil
	s.mu.Unlock()
}

func (s *gatedStore) Append(recs []queue.Record) error {
	s.mu.Lock()
	g := s.gate
	s.mu.Unlock()
	if g != nil {
		s.blocked.Store(true)
		<-g
		s.blocked.Store(false)
	}
	return s.Memory.Append(recs)
}

// TestHandoffBackpressure: with the writer stalled, the publisher is held
// back for handoffWait before a message is dropped; during the episode
// further messages drop at once; a short stall loses nothing.
func TestHandoffBackpressure(t *testing.T) {
	old := handoffWait
	handoffWait = 150 * time.Millisecond
	t.Cleanup(func() { handoffWait = old })

	src := newFakeSource()
	q := newGatedStore()
	b := newBridge(checkedConfig(t, nil), src, q, testLogger())
	startWriter(t, b, q)
	subscribeForward(t, b, src)

	// A short stall: the publisher waits, nothing is lost.
	q.stall()
	go func() {
		time.Sleep(50 * time.Millisecond)
		q.release()
	}()
	for range handoffCap + 2*batchMax {
		src.publish("pub", "plant1/x", []byte("v"), false, 1)
	}
	waitFor(t, 5*time.Second, "all queued", func() bool { return b.Stats().Queued == handoffCap+2*batchMax })
	if st := b.Stats(); st.HandoffOverflow != 0 {
		t.Fatalf("dropped %d during a short stall", st.HandoffOverflow)
	}

	// A long stall: the channel fills, the next message waits handoffWait
	// and is dropped, the one after is dropped at once.
	q.stall()
	src.publish("pub", "plant1/x", []byte("v"), false, 1)
	waitFor(t, 5*time.Second, "writer stalled", q.blocked.Load)
	for range handoffCap {
		src.publish("pub", "plant1/x", []byte("v"), false, 1)
	}
	start := time.Now()
	src.publish("pub", "plant1/x", []byte("dropped"), false, 1)
	if d := time.Since(start); d < handoffWait {
		t.Errorf("first drop after %v, want the publisher held back %v", d, handoffWait)
	}
	start = time.Now()
	src.publish("pub", "plant1/x", []byte("dropped too"), false, 1)
	if d := time.Since(start); d > handoffWait/2 {
		t.Errorf("second drop after %v: the episode should drop at once", d)
	}
	if st := b.Stats(); st.HandoffOverflow != 2 {
		t.Errorf("overflow = %d, want 2", st.HandoffOverflow)
	}
	q.release()
	waitFor(t, 5*time.Second, "backlog written", func() bool { return len(b.in.ch) == 0 })
	src.publish("pub", "plant1/x", []byte("after"), false, 1)
	if b.in.overflowing.Load() {
		t.Error("episode not ended after the writer caught up")
	}
}

// TestHandoffCloseFlushes: what was handed off before close is appended
// and synced.
func TestHandoffCloseFlushes(t *testing.T) {
	src := newFakeSource()
	q := newGatedStore()
	b := newBridge(checkedConfig(t, nil), src, q, testLogger())
	subscribeForward(t, b, src)
	q.stall()
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.in.runWriter(q)
	}()
	for range 3000 {
		src.publish("pub", "plant1/x", []byte("v"), false, 1)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		q.release()
	}()
	b.in.close()
	<-done
	if st := q.Stats(); st.Appended != 3000 {
		t.Errorf("appended %d of 3000 at close", st.Appended)
	}
	src.publish("pub", "plant1/x", []byte("late"), false, 1)
	if st := b.Stats(); st.DroppedShutdown != 1 {
		t.Errorf("a message after close: DroppedShutdown = %d", st.DroppedShutdown)
	}
}
