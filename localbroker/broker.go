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
	log       *slog.Logger
	srv       *mqtt.Server
	auth      *authHook
	subID     atomic.Int64
	origins   map[string]*mqtt.Client // guarded by mu
	closed    atomic.Bool
	closing   *atomic.Bool // shared with mochi's log handler
	sweepStop chan struct{}
	sweepDone chan struct{}

	mu        sync.Mutex
	cfg       Config      // in force; replaced by Reconfigure's Commit
	listeners []*listener // in config order
	nextID    int         // for listener ids; touched only by Start and Prepare

	// The limits a reload can change at once (reconfigure.go).
	connectTimeout, messageExpiry atomic.Int64 // time.Duration
	maxClients, maxConns          atomic.Int64

	// Security counters and guards (auth.go, listeners.go).
	sec                   secStats
	conns                 atomic.Int64
	refusedConns          atomic.Int64
	expired, aliasDropped atomic.Int64
	connLog, tlsLog       limiter
}

// New builds a broker from a checked config. Nothing listens until Start.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "broker")
	closing := new(atomic.Bool)
	caps := mqtt.NewDefaultServerCapabilities()
	// max_clients is enforced by fixHook.OnConnect, where a reload can
	// change it: mochi reads its own without synchronisation.
	caps.MaximumClients = math.MaxInt64
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.MaximumInflight = uint16(min(cfg.MaxInflight, math.MaxUint16))
	caps.ReceiveMaximum = uint16(min(cfg.MaxInflight, math.MaxUint16))
	caps.MaximumClientWritesPending = int32(cfg.MaxPending)
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry.Seconds())
	// No maximum message expiry: mochi would delete retained values older
	// than it. sweepExpired applies message_expiry to queued messages.
	caps.MaximumMessageExpiryInterval = 0
	caps.TopicAliasMaximum = topicAliasMaximum
	srv := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		// mochi reports every client connect at info level; that belongs
		// in debug output on a gateway that runs for years.
		Logger:                   slog.New(floorHandler{log.Handler(), slog.LevelWarn, closing, new(limiter)}),
		ClientNetWriteBufferSize: 16 << 10,
		ClientNetReadBufferSize:  4 << 10,
	})
	b := &Broker{cfg: cfg, log: log, srv: srv, origins: map[string]*mqtt.Client{}, closing: closing}
	b.setLimits(cfg)
	st, err := newAuthState(cfg, nil, nil)
	if err != nil {
		return nil, err
	}
	b.auth = &authHook{log: log, stats: &b.sec, b: b}
	b.auth.state.Store(st)
	for _, h := range []mqtt.Hook{b.auth, &fixHook{b: b}} {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	return b, nil
}

// newAuthState compiles a config's users and ACLs for the listeners ls.
// Passwords that verified under prev stay remembered for the users whose
// hash did not change.
func newAuthState(cfg Config, ls []*listener, prev *authState) (*authState, error) {
	users, err := NewUsers(cfg.Users)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	anonACL, err := compileACL(cfg.AnonymousACL)
	if err != nil {
		return nil, fmt.Errorf("broker: anonymous_acl: %w", err)
	}
	if prev != nil {
		users.inherit(prev.users)
	}
	st := &authState{users: users, anonymous: cfg.anonymous, anonACL: anonACL, identity: map[string]bool{}}
	for _, l := range ls {
		if l.conf.UseIdentityAsUsername {
			st.identity[l.id] = true
		}
	}
	return st, nil
}

// setLimits stores the limits that apply at once.
func (b *Broker) setLimits(cfg Config) {
	b.connectTimeout.Store(int64(cfg.ConnectTimeout))
	b.messageExpiry.Store(int64(cfg.MessageExpiry))
	b.maxClients.Store(int64(cfg.MaxClients))
	b.maxConns.Store(int64(cfg.MaxClients + max(16, cfg.MaxClients/4)))
}

// topicAliasMaximum is how many topic aliases a client may use towards the
// broker (advertised in the MQTT 5 CONNACK).
const topicAliasMaximum = 1024

// Start opens the listeners and starts serving. A listener that cannot
// open its address is a *ListenError.
func (b *Broker) Start() error {
	var ls []*listener
	for i, lc := range b.cfg.Listeners {
		l, err := b.openListener(lc)
		if err != nil {
			return listenError(i, lc, err)
		}
		ls = append(ls, l)
	}
	st, err := newAuthState(b.cfg, ls, b.auth.state.Load())
	if err != nil {
		return err
	}
	b.auth.state.Store(st)
	b.mu.Lock()
	b.listeners = ls
	b.mu.Unlock()
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	b.sweepStop, b.sweepDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(b.sweepDone)
		b.sweepExpired(b.sweepStop)
	}()
	for _, l := range ls {
		b.log.Info("mqtt broker listening", "type", l.conf.Type, "addr", l.g.Address())
	}
	return nil
}

// Addr is the address the first listener is bound to (useful with port 0).
func (b *Broker) Addr() string {
	if addrs := b.Addrs(); len(addrs) > 0 {
		return addrs[0]
	}
	return ""
}

// Addrs are the addresses the listeners are bound to, in config order.
func (b *Broker) Addrs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.listeners) == 0 {
		return b.cfg.Addresses()
	}
	out := make([]string, len(b.listeners))
	for i, l := range b.listeners {
		out[i] = l.g.Address()
	}
	return out
}

// Users verifies usernames and passwords against broker.users, as they are
// since the last reload (the HTTP endpoint uses it for basic
// authentication: ask again for each request).
func (b *Broker) Users() *Users { return b.auth.state.Load().users }

// authFailures counts a refused connection.
func (b *Broker) authFailures() { b.sec.authFailures.Add(1) }

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
	// AuthFailures counts connections refused for their credentials,
	// certificate or will topic.
	AuthFailures int64
	// PublishesDenied counts publishes dropped by the ACLs;
	// SubscriptionsRefused counts subscription filters refused.
	PublishesDenied, SubscriptionsRefused int64
	// ConnectionsRefused counts connections closed at once because the
	// listeners held max_clients plus headroom already.
	ConnectionsRefused int64
	// QueuedExpired counts messages for offline sessions dropped after
	// message_expiry; QueuedDropped those mochi queued with a topic alias
	// no new connection could resolve.
	QueuedExpired, QueuedDropped int64
	// InflightDropped counts QoS 1/2 messages not queued because a
	// client had max_inflight unacknowledged already.
	InflightDropped int64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	i := b.srv.Info
	return Stats{
		Clients:              atomic.LoadInt64(&i.ClientsConnected),
		Retained:             atomic.LoadInt64(&i.Retained),
		MessagesReceived:     atomic.LoadInt64(&i.MessagesReceived),
		MessagesSent:         atomic.LoadInt64(&i.MessagesSent),
		MessagesDropped:      atomic.LoadInt64(&i.MessagesDropped),
		AuthFailures:         b.sec.authFailures.Load(),
		PublishesDenied:      b.sec.publishesDenied.Load(),
		SubscriptionsRefused: b.sec.subscriptionsRefused.Load(),
		ConnectionsRefused:   b.refusedConns.Load(),
		QueuedExpired:        b.expired.Load(),
		QueuedDropped:        b.aliasDropped.Load(),
		InflightDropped:      atomic.LoadInt64(&i.InflightDropped),
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
	err := b.srv.Close()
	if b.sweepStop != nil {
		close(b.sweepStop)
		<-b.sweepDone
	}
	return err
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

// floorHandler drops mochi's records below a minimum level, and below Error
// once the broker is closing. mochi warns once per message it cannot queue
// for a client at max_inflight: a stuck QoS 1 subscriber would write a line
// per value polled; those pass once per 10 s (Stats counts them all).
type floorHandler struct {
	slog.Handler
	min     slog.Level
	closing *atomic.Bool
	quota   *limiter
}

func (h floorHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "client store quota reached" || r.Message == "packet ids exhausted" {
		n, ok := h.quota.allow(r.Time)
		if !ok {
			return nil
		}
		r.AddAttrs(slog.Int("not_logged", n))
	}
	return h.Handler.Handle(ctx, r)
}

func (h floorHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if h.closing.Load() && l < slog.LevelError {
		return false
	}
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h floorHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return floorHandler{h.Handler.WithAttrs(as), h.min, h.closing, h.quota}
}

func (h floorHandler) WithGroup(name string) slog.Handler {
	return floorHandler{h.Handler.WithGroup(name), h.min, h.closing, h.quota}
}
