// Package localbroker runs the MQTT broker embedded in the gateway (mochi-mqtt):
// adapters publish into it in-process, local clients (HMIs, Node-RED,
// mosquitto_sub) subscribe over TCP, and the cloud bridge subscribes
// in-process to the topics it forwards.
package localbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Handler receives publishes seen by an in-process subscription. The payload
// is only valid during the call: copy it to keep it. origin is the id of the
// client that published: "inline" for Publish, the origin given to
// PublishAs, or a network client's id.
//
// It is an alias, not a defined type, so that consumers (the bridge) can
// declare the same function type and be satisfied by *Broker as it is.
type Handler = func(topic string, payload []byte, retain bool, qos byte, origin string)

// Broker is the embedded broker.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	srv     *mqtt.Server
	tcp     *listeners.TCP
	subID   atomic.Int64
	mu      sync.Mutex
	origins map[string]*mqtt.Client
	closed  atomic.Bool
	closing *atomic.Bool // shared with mochi's log handler
}

// New builds a broker from a checked config. Nothing listens until Start.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "broker")
	closing := new(atomic.Bool)
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(cfg.MaxClients)
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.MaximumInflight = uint16(min(cfg.MaxInflight, math.MaxUint16))
	caps.ReceiveMaximum = uint16(min(cfg.MaxInflight, math.MaxUint16))
	caps.MaximumClientWritesPending = int32(cfg.MaxPending)
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry.Seconds())
	caps.MaximumMessageExpiryInterval = int64(cfg.MessageExpiry.Seconds())
	caps.TopicAliasMaximum = 1024
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		// mochi reports every client connect at info level; that belongs
		// in debug output on a gateway that runs for years.
		Logger:                   slog.New(floorHandler{log.Handler(), slog.LevelWarn, closing}),
		ClientNetWriteBufferSize: 16 << 10,
		ClientNetReadBufferSize:  4 << 10,
	})
	// Authentication and ACLs come with their own hook; until then the
	// listener defaults to loopback and check warns when it does not.
	if err := srv.AddHook(new(allowHook), nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return &Broker{cfg: cfg, log: log, srv: srv, origins: map[string]*mqtt.Client{}, closing: closing}, nil
}

// Start opens the listener and starts serving.
func (b *Broker) Start() error {
	b.tcp = listeners.NewTCP(listeners.Config{ID: "tcp", Address: b.cfg.Listen})
	if err := b.srv.AddListener(b.tcp); err != nil {
		return fmt.Errorf("broker: listen on %s: %w", b.cfg.Listen, err)
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.log.Info("mqtt broker listening", "addr", b.Addr())
	return nil
}

// Addr is the address the listener is bound to (useful with port 0).
func (b *Broker) Addr() string {
	if b.tcp == nil {
		return b.cfg.Listen
	}
	return b.tcp.Address()
}

// ErrClosed is returned by publishes after Close.
var ErrClosed = errors.New("broker closed")

// Publish delivers a message in-process (no TCP hop). mochi copies the
// payload for retained storage and for each subscriber, so the caller may
// reuse it after Publish returns. QoS applies towards subscribers.
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	return b.srv.Publish(topic, payload, retain, qos)
}

// PublishAs is Publish with a named origin, so in-process subscribers can
// tell where a message came from (the bridge uses it to never forward a
// message from the cloud back to the cloud).
func (b *Broker) PublishAs(origin, topic string, payload []byte, retain bool, qos byte) error {
	if b.closed.Load() {
		return ErrClosed
	}
	b.mu.Lock()
	cl, ok := b.origins[origin]
	if !ok {
		cl = b.srv.NewClient(nil, mqtt.LocalListener, origin, true)
		b.origins[origin] = cl
	}
	b.mu.Unlock()
	return b.srv.InjectPacket(cl, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    uint16(qos), // mochi checks that QoS>0 packets carry an id
	})
}

// Subscribe calls handler for every message matching filter, including the
// retained ones at once. The handler runs on the publisher's goroutine: it
// must not do I/O — hand the message off and return. (Blocking briefly is
// how it pushes back on a publisher faster than the consumer.)
func (b *Broker) Subscribe(filter string, handler Handler) (unsubscribe func(), err error) {
	id := int(b.subID.Add(1))
	fn := func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		handler(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, pk.FixedHeader.Qos, pk.Origin)
	}
	if err := b.srv.Subscribe(filter, id, fn); err != nil {
		return nil, fmt.Errorf("broker: subscribe %q: %w", filter, err)
	}
	return func() { _ = b.srv.Unsubscribe(filter, id) }, nil
}

// Stats are the broker's counters.
type Stats struct {
	Clients, Retained, MessagesReceived, MessagesSent, MessagesDropped int64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	i := b.srv.Info
	return Stats{
		Clients:          atomic.LoadInt64(&i.ClientsConnected),
		Retained:         atomic.LoadInt64(&i.Retained),
		MessagesReceived: atomic.LoadInt64(&i.MessagesReceived),
		MessagesSent:     atomic.LoadInt64(&i.MessagesSent),
		MessagesDropped:  atomic.LoadInt64(&i.MessagesDropped),
	}
}

// Close stops the broker: it lets the clients' writers deliver what is
// queued for them (the devices' last "offline", for one) for up to
// flushLimit, then disconnects every client and stops the listener.
func (b *Broker) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.quiesce(flushLimit)
	// Disconnecting clients makes mochi warn about every connection it
	// closes itself: expected at shutdown, so not worth a line each.
	b.closing.Store(true)
	return b.srv.Close()
}

// flushLimit bounds how long Close waits for queued messages to go out.
const flushLimit = time.Second

// quiesce waits until the broker has written nothing for a few
// milliseconds, or for limit. mochi does not expose its per-client queues;
// the count of messages sent going still means they are empty.
func (b *Broker) quiesce(limit time.Duration) {
	const step, still = 10 * time.Millisecond, 3
	deadline := time.Now().Add(limit)
	last, quiet := atomic.LoadInt64(&b.srv.Info.MessagesSent), 0
	for quiet < still && time.Now().Before(deadline) {
		time.Sleep(step)
		n := atomic.LoadInt64(&b.srv.Info.MessagesSent)
		if n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
	}
}

// allowHook lets every client connect and use every topic. It stands in for
// the authentication hook (bcrypt password file, ACLs) of a later release;
// mochi's own auth hook compares plaintext passwords and pulls in yaml.v3.
type allowHook struct{ mqtt.HookBase }

func (*allowHook) ID() string { return "allow-all" }

func (*allowHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (*allowHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (*allowHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// floorHandler drops mochi's records below a minimum level, and below Error
// once the broker is closing.
type floorHandler struct {
	slog.Handler
	min     slog.Level
	closing *atomic.Bool
}

func (h floorHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if h.closing.Load() && l < slog.LevelError {
		return false
	}
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h floorHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return floorHandler{h.Handler.WithAttrs(as), h.min, h.closing}
}

func (h floorHandler) WithGroup(name string) slog.Handler {
	return floorHandler{h.Handler.WithGroup(name), h.min, h.closing}
}
