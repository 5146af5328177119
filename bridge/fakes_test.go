package bridge

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// testLogger shows the bridge's log when FIELDBRIDGE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("FIELDBRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// checkedConfig returns a checked config with one forward rule (plant1/# to
// site-a/), edited by edit before the check.
func checkedConfig(t *testing.T, edit func(*Config)) Config {
	t.Helper()
	c := Config{
		Upstreams: []Upstream{{URL: "tcp://127.0.0.1:1"}},
		Forward:   []ForwardRule{{Filter: "plant1/#", Prefix: "site-a/"}},
	}
	if edit != nil {
		edit(&c)
	}
	var p problems
	c.Check("plant1", t.TempDir(), &p)
	if len(p.errs) > 0 {
		t.Fatalf("config: %v", p.errs)
	}
	return c
}

// fakeSource is a local broker in miniature.
type fakeSource struct {
	mu       sync.Mutex
	handlers map[string]func(topic string, payload []byte, retain bool, qos byte, origin string)
	local    []published // PublishAs calls
}

type published struct {
	origin, topic string
	payload       string
	retain        bool
	qos           byte
}

func newFakeSource() *fakeSource {
	return &fakeSource{handlers: map[string]func(string, []byte, bool, byte, string){}}
}

func (s *fakeSource) Subscribe(filter string, h func(topic string, payload []byte, retain bool, qos byte, origin string)) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[filter] = h
	return func() {
		s.mu.Lock()
		delete(s.handlers, filter)
		s.mu.Unlock()
	}, nil
}

func (s *fakeSource) PublishAs(origin, topic string, payload []byte, retain bool, qos byte) error {
	s.mu.Lock()
	s.local = append(s.local, published{origin, topic, string(payload), retain, qos})
	s.mu.Unlock()
	s.publish(origin, topic, payload, retain, qos) // as the real broker: subscribers see it
	return nil
}

// publish delivers a message to every matching subscription, inline.
func (s *fakeSource) publish(origin, topic string, payload []byte, retain bool, qos byte) {
	s.mu.Lock()
	var hs []func(string, []byte, bool, byte, string)
	for f, h := range s.handlers {
		if match(f, topic) {
			hs = append(hs, h)
		}
	}
	s.mu.Unlock()
	for _, h := range hs {
		h(topic, payload, retain, qos, origin)
	}
}

// fakeToken is a paho token completed by the test.
type fakeToken struct {
	once   sync.Once
	done   chan struct{}
	err    error
	onDone func() // runs before done is closed
}

func newToken() *fakeToken { return &fakeToken{done: make(chan struct{})} }

func (t *fakeToken) complete(err error) {
	t.once.Do(func() {
		t.err = err
		if t.onDone != nil {
			t.onDone()
		}
		close(t.done)
	})
}

func (t *fakeToken) Wait() bool { <-t.done; return true }

func (t *fakeToken) WaitTimeout(d time.Duration) bool {
	select {
	case <-t.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (t *fakeToken) Done() <-chan struct{} { return t.done }

func (t *fakeToken) Error() error {
	select {
	case <-t.done:
		return t.err
	default:
		return nil
	}
}

var _ mqtt.Token = (*fakeToken)(nil)

// fakeConn is an upstream connection whose publishes the test controls:
// onPublish decides how each token completes (nil: at once, successfully).
type fakeConn struct {
	mu           sync.Mutex
	sent         []queue.Record
	inflight     int
	maxInflight  int
	onPublish    func(n int, rec queue.Record, tok *fakeToken)
	disconnected bool
	aborted      bool
}

func (c *fakeConn) Publish(topic string, qos byte, retain bool, payload []byte) mqtt.Token {
	tok := newToken()
	c.mu.Lock()
	rec := queue.Record{Topic: topic, QoS: qos, Retain: retain, Payload: payload}
	n := len(c.sent)
	c.sent = append(c.sent, rec)
	c.inflight++
	c.maxInflight = max(c.maxInflight, c.inflight)
	on := c.onPublish
	c.mu.Unlock()
	tok.onDone = func() {
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
	}
	if on == nil {
		tok.complete(nil)
	} else {
		on(n, rec, tok)
	}
	return tok
}

func (c *fakeConn) Subscribe(map[string]byte) mqtt.Token {
	tok := newToken()
	tok.complete(nil)
	return tok
}

func (c *fakeConn) Disconnect(time.Duration) {
	c.mu.Lock()
	c.disconnected = true
	c.mu.Unlock()
}

func (c *fakeConn) Abort() {
	c.mu.Lock()
	c.aborted = true
	c.mu.Unlock()
}

func (c *fakeConn) published() []queue.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]queue.Record(nil), c.sent...)
}

// fill appends n records with payloads "0", "1", … to q.
func fill(t *testing.T, q store, n int) {
	t.Helper()
	recs := make([]queue.Record, n)
	for i := range recs {
		recs[i] = queue.Record{Topic: "site-a/plant1/x", Payload: []byte(strconv.Itoa(i)), QoS: 1}
	}
	if err := q.Append(recs); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// runPump runs pump on c until the link dies or stop is called.
func runPump(b *Bridge, c publisher) (l *link, stop func()) {
	l = newLink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.pump(ctx, c, l, nil)
	}()
	return l, func() {
		cancel()
		<-done
	}
}
