package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// conn is one established connection to an upstream, as the session uses
// it. pahoConn is the real one; tests put fakes behind it.
type conn interface {
	Publish(topic string, qos byte, retain bool, payload []byte) mqtt.Token
	// Subscribe subscribes to the filters (filter → QoS) of the subscribe
	// rules; the handlers were set up when the connection was made.
	Subscribe(filters map[string]byte) mqtt.Token
	// Disconnect sends DISCONNECT (so the broker discards the will) and
	// closes the connection, waiting at most quiesce for the send: the
	// clean goodbye at shutdown.
	Disconnect(quiesce time.Duration)
	// Abort closes the network connection without DISCONNECT, so that the
	// broker publishes the will: the gateway is offline until it is back.
	Abort()
}

// dialFunc makes a connection to up. The connection kills l when it is
// lost. It returns when the connection is up or failed (bounded by the
// connect timeout, also after ctx ended).
type dialFunc func(ctx context.Context, up *Upstream, l *link) (conn, error)

// link is the fate of one connection: killed once, with the first reason,
// by whichever goroutine notices the problem first (paho's connection-lost
// callback, the acker, the sender).
type link struct {
	once sync.Once
	dead chan struct{}
	err  error
}

func newLink() *link { return &link{dead: make(chan struct{})} }

func (l *link) kill(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.dead)
	})
}

func (l *link) isDead() bool {
	select {
	case <-l.dead:
		return true
	default:
		return false
	}
}

// cause is why the link died; valid once dead is closed.
func (l *link) cause() error {
	<-l.dead
	return l.err
}

// errShutdown ends a link at shutdown.
var errShutdown = errors.New("bridge stopping")

// writeFloor is the shortest write deadline of a connection.
const writeFloor = 2 * time.Second

type pahoConn struct {
	c  mqtt.Client
	mu sync.Mutex
	nc net.Conn   // the network connection, set by paho's connect goroutine
	bc *batchConn // paho's view of it
}

// congested reports whether the connection's write buffer is so full that
// the sender should wait (the broker reads slowly), and a channel
// signalled when there is room again.
func (p *pahoConn) congested() (bool, <-chan struct{}) {
	p.mu.Lock()
	bc := p.bc
	p.mu.Unlock()
	if bc == nil {
		return false, nil
	}
	return bc.congested()
}

func (p *pahoConn) Publish(topic string, qos byte, retain bool, payload []byte) mqtt.Token {
	return p.c.Publish(topic, qos, retain, payload)
}

func (p *pahoConn) Subscribe(filters map[string]byte) mqtt.Token {
	return p.c.SubscribeMultiple(filters, nil)
}

func (p *pahoConn) Disconnect(quiesce time.Duration) {
	p.c.Disconnect(uint(quiesce.Milliseconds()))
}

// Abort closes the socket under paho: its reader fails, it reports the
// connection lost and stops its goroutines. paho offers no other way to
// drop a connection without sending DISCONNECT.
func (p *pahoConn) Abort() {
	p.mu.Lock()
	nc := p.nc
	p.mu.Unlock()
	if nc != nil {
		_ = nc.Close()
	}
}

// open makes the network connection for paho (its CustomOpenConnectionFn):
// TCP, TLS, or a websocket through paho's own websocket code. Making it
// here lets Abort close the socket, and puts batchConn between paho and
// the socket.
func (p *pahoConn) open(cfg *Config, tc *tls.Config) mqtt.OpenConnectionFunc {
	return func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		d := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: cfg.Keepalive}
		var nc net.Conn
		var err error
		switch u.Scheme {
		case "ws", "wss":
			nc, err = mqtt.NewWebsocket(u.String(), tc, cfg.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
		default:
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
			defer cancel()
			if tc != nil {
				nc, err = (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", u.Host)
			} else {
				nc, err = d.DialContext(ctx, "tcp", u.Host)
			}
		}
		if err != nil {
			return nil, err
		}
		// The deadline of each 64 KiB write: a socket that takes nothing
		// for this long is dead. Never under writeFloor, so that a short
		// ack_timeout does not take a slow link's TCP retransmits (200 ms
		// at least on Linux) for a dead one.
		bc := newBatchConn(nc, max(cfg.AckTimeout, writeFloor))
		p.mu.Lock()
		p.nc, p.bc = nc, bc
		p.mu.Unlock()
		return bc, nil
	}
}

// dialPaho connects with a fresh paho client. A client per connection is
// the simplest way never to trust a token from an earlier connection: paho
// completes the tokens of messages it resent after its own reconnect
// without a PUBACK, which is why its auto-reconnect and connect-retry stay
// off and this package alone reconnects.
func (b *Bridge) dialPaho(ctx context.Context, up *Upstream, l *link) (conn, error) {
	cfg := &b.cfg
	var tc *tls.Config
	if schemes[up.u.Scheme].tls {
		var kerr *keyError
		if tc, kerr = cfg.TLS.load(); kerr != nil {
			return nil, fmt.Errorf("tls settings: %w", kerr)
		}
	}
	pc := &pahoConn{}
	opts := mqtt.NewClientOptions()
	opts.AddBroker(up.u.String())
	opts.SetCustomOpenConnectionFn(pc.open(cfg, tc))
	opts.SetClientID(cfg.clientID)
	opts.SetUsername(cfg.Username)
	opts.SetPassword(string(cfg.Password))
	opts.SetProtocolVersion(4) // MQTT 3.1.1; no silent fallback to 3.1
	opts.SetCleanSession(*cfg.CleanSession)
	opts.SetAutoReconnect(false)
	opts.SetConnectRetry(false)
	opts.SetResumeSubs(false)
	opts.SetStore(noStore{})
	opts.SetKeepAlive(cfg.Keepalive)
	// A ping unanswered for this long drops the link: with the keepalive
	// before it, a dead link is noticed within about 2 × keepalive.
	opts.SetPingTimeout(min(cfg.Keepalive, 10*time.Second))
	opts.SetConnectTimeout(cfg.ConnectTimeout)
	// Bounds a write stuck on a full socket buffer, and paho's hand-over of
	// a publish to its writer (30 s when unset).
	opts.SetWriteTimeout(cfg.AckTimeout)
	opts.SetOrderMatters(true)
	// Downlink messages are acknowledged once published locally, not
	// before (see downlinkHandler).
	opts.SetAutoAckDisabled(true)
	opts.SetBinaryWill(cfg.StatusTopic, []byte(statusOffline), 1, true)
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		l.kill(fmt.Errorf("connection lost: %w", err))
	})
	pc.c = mqtt.NewClient(opts)
	for i := range cfg.Subscribe {
		r := &cfg.Subscribe[i]
		pc.c.AddRoute(r.Filter, b.downlinkHandler(r))
	}
	tok := pc.c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// paho's attempt ends by itself within the connect timeout; wait
		// for it so that no connection outlives the bridge.
		<-tok.Done()
		if tok.Error() == nil {
			pc.c.Disconnect(0)
		}
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, explainRefusal(err, cfg.clientID)
	}
	return pc, nil
}

// explainRefusal adds what to check to the broker's terse CONNACK codes.
func explainRefusal(err error, clientID string) error {
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return fmt.Errorf("the broker refused the credentials (username, password, client certificate): %w", err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Errorf("the broker rejected client_id %q: %w", clientID, err)
	}
	return err
}

// noStore is paho's message store, empty: a connection never resumes an
// earlier one (each has a fresh client), and the queue is the store that
// matters. paho's MemoryStore would cost a map insert and delete under a
// lock per message, and hold what the queue holds anyway.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}

var _ mqtt.Store = noStore{}
