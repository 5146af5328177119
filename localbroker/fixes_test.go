package localbroker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// Each test here is one of the defects third-party clients found in the
// broker as configured before issue 7 (section 3); each failed then.

func startWith(t *testing.T, cfg Config, log *slog.Logger) *Broker {
	t.Helper()
	if cfg.Listen == "" && len(cfg.Listeners) == 0 {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Check(failReporter{t})
	b, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRetainedOutlivesMessageExpiry: a point that has not changed for
// longer than message_expiry is still there for a new subscriber.
func TestRetainedOutlivesMessageExpiry(t *testing.T) {
	b := startWith(t, Config{MessageExpiry: time.Second}, nil)
	if err := b.Publish("plant1/m/online", []byte("true"), true, 1); err != nil {
		t.Fatal(err)
	}
	// mochi's expiry runs once a second and deletes what is older than
	// the maximum: give it three runs past the expiry.
	time.Sleep(3500 * time.Millisecond)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: b.Addr(), Filter: "plant1/#", QoS: 1})
	m := sub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return m.Topic == "plant1/m/online" })
	if !m.Retained || string(m.Payload) != "true" {
		t.Errorf("retained value: %+v", m)
	}
	if st := b.Stats(); st.Retained < 1 {
		t.Errorf("stats: %+v", st)
	}
}

// TestConnackAdvertisesLimits: an MQTT 5 client learns the packet size the
// broker accepts and that it may use topic aliases.
func TestConnackAdvertisesLimits(t *testing.T) {
	b := startWith(t, Config{MaxPacketSize: 100000}, nil)
	c := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), V5: true})
	ack := c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" })
	if ack.RC != 0 {
		t.Fatalf("connack: %+v", ack)
	}
	if n, ok := ack.Prop("MaximumPacketSize"); !ok || n != 100000 {
		t.Errorf("CONNACK Maximum Packet Size: %d (present %v), want 100000; props %v", n, ok, ack.Props)
	}
	if n, ok := ack.Prop("TopicAliasMaximum"); !ok || n < 1 {
		t.Errorf("CONNACK Topic Alias Maximum: %d (present %v), want > 0; props %v", n, ok, ack.Props)
	}
	if n, ok := ack.Prop("ReceiveMaximum"); !ok || n != defaultMaxInflight {
		t.Errorf("CONNACK Receive Maximum: %d (present %v)", n, ok)
	}
}

// aliasTopics resolves the topics of a paho client's messages as a client
// must: an empty topic is only allowed with an alias that an earlier message
// on the same connection defined (MQTT-3.3.2-7: aliases do not survive a
// connection).
func aliasTopics(t *testing.T, evs []testpeer.PahoEvent) []testpeer.PahoEvent {
	t.Helper()
	aliases := map[int]map[int]string{} // conn -> alias -> topic
	var out []testpeer.PahoEvent
	for _, e := range evs {
		if e.Ev != "msg" {
			continue
		}
		if aliases[e.Conn] == nil {
			aliases[e.Conn] = map[int]string{}
		}
		alias, hasAlias := e.Prop("TopicAlias")
		switch {
		case e.Topic != "" && hasAlias:
			aliases[e.Conn][alias] = e.Topic
		case e.Topic == "" && !hasAlias:
			t.Errorf("connection %d: message %q with neither topic nor alias", e.Conn, e.Payload)
		case e.Topic == "":
			topic, ok := aliases[e.Conn][alias]
			if !ok {
				t.Errorf("connection %d: message %q uses topic alias %d, which this connection never defined (empty topic)", e.Conn, e.Payload, alias)
			}
			e.Topic = topic
		}
		out = append(out, e)
	}
	return out
}

// TestTopicAliasesAfterReconnect: messages queued for an offline MQTT 5
// session arrive with a topic the new connection can resolve.
func TestTopicAliasesAfterReconnect(t *testing.T) {
	b := startWith(t, Config{}, nil)
	c := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), V5: true, ClientID: "alias-test",
		Persistent: true, SessionExpiry: 300, TopicAliasMaximum: 10})
	c.Send(map[string]any{"op": "sub", "filter": "plant1/#", "qos": 1})
	c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "suback" })
	for _, v := range []string{"1", "2"} {
		if err := b.Publish("plant1/pump/speed_setpoint", []byte(v), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "msg" && e.Payload == "2" })
	c.Send(map[string]any{"op": "disconnect"})
	c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "disconnect" })
	waitFor(t, "the client to be gone", func() bool { return b.Stats().Clients == 0 })
	for _, v := range []string{"3", "4"} {
		if err := b.Publish("plant1/pump/speed_setpoint", []byte(v), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	c.Send(map[string]any{"op": "connect"})
	c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "msg" && e.Payload == "4" })
	for _, e := range aliasTopics(t, c.Events()) {
		if e.Topic != "plant1/pump/speed_setpoint" {
			t.Errorf("connection %d: message %q on topic %q", e.Conn, e.Payload, e.Topic)
		}
	}
}

// TestQueuedMessagesKeepOrder: what a persistent session missed arrives in
// the order it was published, even within one second (MQTT-4.6.0-2).
func TestQueuedMessagesKeepOrder(t *testing.T) {
	for _, v5 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v5=%v", v5), func(t *testing.T) {
			b := startWith(t, Config{}, nil)
			c := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), V5: v5, ClientID: "order-test",
				Persistent: true, SessionExpiry: 300})
			c.Send(map[string]any{"op": "sub", "filter": "plant1/#", "qos": 1})
			c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "suback" })
			c.Send(map[string]any{"op": "disconnect"})
			c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "disconnect" })
			waitFor(t, "the client to be gone", func() bool { return b.Stats().Clients == 0 })
			want := publishSetpoints(t, b, 30)
			c.Send(map[string]any{"op": "connect"})
			waitFor(t, "the queued messages", func() bool { return countMsgs(c) >= len(want) })
			var got []string
			for _, e := range c.Events() {
				if e.Ev == "msg" {
					got = append(got, e.Payload)
				}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("queued messages re-sent out of order:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func countMsgs(c *testpeer.Paho) int {
	n := 0
	for _, e := range c.Events() {
		if e.Ev == "msg" {
			n++
		}
	}
	return n
}

// publishSetpoints publishes n QoS 1 setpoints as fast as it can (within
// one second, as a client that lost messages saw) and returns them.
func publishSetpoints(t *testing.T, b *Broker, n int) []string {
	t.Helper()
	var want []string
	for i := 1; i <= n; i++ {
		v := fmt.Sprint(i * 10)
		want = append(want, v)
		if err := b.Publish("plant1/pump/speed_setpoint", []byte(v), false, 1); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

// TestPersistentResubscribe: mosquitto_sub -c subscribes again after
// reconnecting; its packet ids start at 1, like those mochi gave the
// messages it queued, and mochi took them for one namespace.
func TestPersistentResubscribe(t *testing.T) {
	b := startWith(t, Config{}, nil)
	opts := testpeer.SubOptions{Addr: b.Addr(), Filter: "plant1/#", QoS: 1, ClientID: "resub-test", Persistent: true}
	first := testpeer.Subscribe(t, opts)
	first.Stop()
	waitFor(t, "the subscriber to be gone", func() bool { return b.Stats().Clients == 0 })
	want := publishSetpoints(t, b, 10)
	again := testpeer.Subscribe(t, opts) // fails the test if the SUBACK refuses
	again.WaitCount(t, len(want), 10*time.Second)
	var got []string
	for _, m := range again.Messages() {
		got = append(got, string(m.Payload))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("queued messages:\n got %v\nwant %v", got, want)
	}
}

// TestShutdownWithoutProtocolError: a clean gateway shutdown closes MQTT
// 3.1.1 connections without a DISCONNECT (3.1.1 has no server DISCONNECT),
// and tells MQTT 5 clients "server shutting down".
func TestShutdownWithoutProtocolError(t *testing.T) {
	cfg := Config{Listen: "127.0.0.1:0"}
	cfg.Check(failReporter{t})
	b, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: b.Addr(), Filter: "plant1/#", QoS: 1})
	v5 := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), V5: true})
	waitFor(t, "both clients", func() bool { return b.Stats().Clients == 2 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	d := v5.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "disconnect" })
	if d.RC != 0x8B {
		t.Errorf("MQTT 5 client: disconnect reason %#x, want 0x8b (server shutting down)", d.RC)
	}
	// mosquitto_sub reconnects by itself: a broker on the same port shows
	// when it has, and whether it reported a protocol error first.
	again := startWith(t, Config{Listen: b.Addr()}, nil)
	waitFor(t, "mosquitto_sub to reconnect, or to report an error", func() bool {
		return again.Stats().Clients == 1 || strings.Contains(sub.Output(), "protocol error")
	})
	if out := sub.Output(); strings.Contains(out, "protocol error") {
		t.Errorf("mosquitto_sub reported a protocol error at shutdown:\n%s", out)
	}
}

// records is a slog handler that keeps every record.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) find(match func(slog.Record) bool) (slog.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		if match(rec) {
			return rec, true
		}
	}
	return slog.Record{}, false
}

// rawConnect opens a TCP connection and completes an MQTT 3.1.1 CONNECT.
func rawConnect(t *testing.T, addr, clientID string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, byte(len(clientID))}, clientID...)
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("connack %x: %v", ack, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// TestClientCloseLogsNoEmptyWarning: a client that closes its socket is
// ordinary; it costs at most a debug line that says what happened.
func TestClientCloseLogsNoEmptyWarning(t *testing.T) {
	logs := &records{}
	b := startWith(t, Config{}, slog.New(logs))
	c := rawConnect(t, b.Addr(), "closer")
	waitFor(t, "the client", func() bool { return b.Stats().Clients == 1 })
	c.Close()
	waitFor(t, "a log record of the closed connection", func() bool {
		_, ok := logs.find(func(r slog.Record) bool {
			return (r.Level >= slog.LevelWarn && r.Message == "") || strings.Contains(r.Message, "connection closed")
		})
		return ok
	})
	if r, ok := logs.find(func(r slog.Record) bool { return r.Level >= slog.LevelWarn }); ok {
		t.Errorf("a client closing its socket logged at %v: %q", r.Level, r.Message)
	}
}

// TestQueuedMessagesExpire: message_expiry still applies to what waits for
// an offline session (mochi's own expiry of it is off, with retained
// values' expiry).
func TestQueuedMessagesExpire(t *testing.T) {
	b := startWith(t, Config{MessageExpiry: time.Second}, nil)
	c := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), ClientID: "expiry-test", Persistent: true})
	c.Send(map[string]any{"op": "sub", "filter": "plant1/#", "qos": 1})
	c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "suback" })
	c.Send(map[string]any{"op": "disconnect"})
	c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "disconnect" })
	waitFor(t, "the client to be gone", func() bool { return b.Stats().Clients == 0 })
	publishSetpoints(t, b, 3)
	waitFor(t, "the queued messages to expire", func() bool { return b.Stats().QueuedExpired == 3 })
	if err := b.Publish("plant1/pump/speed_setpoint", []byte("fresh"), false, 1); err != nil {
		t.Fatal(err)
	}
	c.Send(map[string]any{"op": "connect"})
	c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "msg" && e.Payload == "fresh" })
	if n := countMsgs(c); n != 1 {
		t.Errorf("got %d messages after reconnecting, want only the fresh one:%v", n, c.Events())
	}
}

// TestExpiredSessionLosesSubscriptions: when an offline session expires,
// its subscriptions go with it. mochi deletes the client but leaves its
// subscriptions in the topic index, so HMIs that come and go with fresh
// persistent client ids would pile them up for as long as the gateway
// runs, each one looked at for every message.
func TestExpiredSessionLosesSubscriptions(t *testing.T) {
	for _, v5 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v5=%v", v5), func(t *testing.T) {
			b := startWith(t, Config{SessionExpiry: time.Second}, nil)
			id := fmt.Sprintf("expiry-test-%v", v5)
			c := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), V5: v5, ClientID: id, Persistent: true, SessionExpiry: 1})
			c.Send(map[string]any{"op": "sub", "filter": "plant1/#", "qos": 1})
			c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "suback" })
			subscribed := func() bool {
				_, ok := b.srv.Topics.Subscribers("plant1/pump/speed").Subscriptions[id]
				return ok
			}
			if !subscribed() || atomic.LoadInt64(&b.srv.Info.Subscriptions) != 1 {
				t.Fatalf("not subscribed: %d subscriptions", atomic.LoadInt64(&b.srv.Info.Subscriptions))
			}
			c.Send(map[string]any{"op": "disconnect"})
			c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "disconnect" })
			waitFor(t, "the session to expire", func() bool { _, ok := b.srv.Clients.Get(id); return !ok })
			if subscribed() || atomic.LoadInt64(&b.srv.Info.Subscriptions) != 0 {
				t.Errorf("the expired session is still subscribed (%d subscriptions)", atomic.LoadInt64(&b.srv.Info.Subscriptions))
			}
		})
	}
}
