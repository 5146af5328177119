package localbroker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// listener is one running listener: its config entry, its mochi id (the
// clients' Net.Listener) and what a reload can change in place.
type listener struct {
	id   string
	conf ListenerConfig
	g    *guard
	tls  *tlsSwitch // tls and wss only
}

// ListenError is a listener that could not open its address (at Start,
// or when a reload adds it).
type ListenError struct {
	// Key is the config key: "listen" (the shorthand) or "listeners[N]".
	Key string
	// Type and Address are the listener's, as configured.
	Type, Address string
	Err           error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("broker: %s listener on %s: %v", e.Type, e.Address, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

func listenError(i int, l ListenerConfig, err error) error {
	key := fmt.Sprintf("listeners[%d]", i)
	if l.fromListen {
		key = "listen"
	}
	return &ListenError{Key: key, Type: l.Type, Address: l.Address, Err: err}
}

// openListener makes the listener of one config entry with a new id and
// binds its address. It is registered with mochi but does not serve yet.
func (b *Broker) openListener(l ListenerConfig) (*listener, error) {
	b.nextID++
	ln := &listener{id: fmt.Sprintf("%s%d", l.Type, b.nextID-1), conf: l}
	if l.Type == "tls" || l.Type == "wss" {
		conf, err := loadedTLS(l)
		if err != nil {
			return nil, err
		}
		ln.tls = new(tlsSwitch)
		ln.tls.cur.Store(conf)
	}
	g, err := b.newGuard(ln, &connSet{m: map[net.Conn]struct{}{}})
	if err != nil {
		return nil, err
	}
	if err := b.srv.AddListener(g); err != nil {
		return nil, err
	}
	ln.g = g
	return ln, nil
}

// newGuard builds the mochi listener of ln, wrapped in the guard.
func (b *Broker) newGuard(ln *listener, conns *connSet) (*guard, error) {
	var conf *tls.Config
	if ln.tls != nil {
		conf = ln.tls.listenerConfig()
	}
	var inner listeners.Listener
	switch ln.conf.Type {
	case "tcp", "tls":
		inner = listeners.NewTCP(listeners.Config{ID: ln.id, Address: ln.conf.Address, TLSConfig: conf})
	case "ws", "wss":
		// The packet size in force: a reload cannot change mochi's.
		inner = newWebsocket(ln.id, ln.conf.Address, conf, int64(b.srv.Options.Capabilities.MaximumPacketSize)+8)
	default:
		return nil, fmt.Errorf("unknown listener type %q", ln.conf.Type)
	}
	return &guard{Listener: inner, b: b, conns: conns}, nil
}

// guard wraps a mochi listener with what every listener must have: a cap on
// connections (mochi's max_clients counts only those past CONNECT, and each
// connection costs its buffers before that), a deadline for the TLS
// handshake and the CONNECT, a log line with a message when a
// connection ends (mochi's listeners log a warning with an empty message,
// for a client that merely closed its socket), and the set of its open
// connections, so that closing the listener closes every one of them, also
// those still before their CONNECT.
type guard struct {
	listeners.Listener
	b     *Broker
	conns *connSet
}

// connSet is a listener's open connections. Once closed, it takes none.
type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	closed bool
}

func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// closeAll closes every connection; with final, the set takes no more.
func (s *connSet) closeAll(final bool) {
	s.mu.Lock()
	s.closed = s.closed || final
	cs := make([]net.Conn, 0, len(s.m))
	for c := range s.m {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// Serve runs the listener with the guarded establish function.
func (g *guard) Serve(establish listeners.EstablishFn) {
	g.Listener.Serve(func(id string, c net.Conn) error {
		b := g.b
		if n, limit := b.conns.Add(1), b.maxConns.Load(); n > limit {
			b.conns.Add(-1)
			b.refusedConns.Add(1)
			_ = c.Close()
			if n, ok := b.connLog.allow(time.Now()); ok {
				b.log.Warn("mqtt connection refused: too many connections", "limit", limit, "remote", c.RemoteAddr().String(), "listener", id, "refusals_not_logged", n)
			}
			return nil
		}
		defer b.conns.Add(-1)
		if !g.conns.add(c) {
			_ = c.Close() // accepted while the listener was closing
			return nil
		}
		defer g.conns.remove(c)
		_ = c.SetDeadline(time.Now().Add(time.Duration(b.connectTimeout.Load())))
		err := establish(id, c)
		g.logEnd(id, c, err)
		return nil
	})
}

// stopAccepting closes the socket; the connections it accepted stay.
func (g *guard) stopAccepting() { g.Listener.Close(func(string) {}) }

// Close is mochi's, at shutdown: the clients are told the server is
// shutting down.
func (g *guard) Close(listeners.CloseFn) { g.shut(packets.ErrServerShuttingDown) }

// shut stops accepting, disconnects the listener's clients with code (MQTT
// 5 clients see it; 3.1.1 ones are closed without a DISCONNECT, see
// fixHook) and closes every other connection it accepted. It returns how
// many clients it disconnected.
func (g *guard) shut(code packets.Code) int {
	g.stopAccepting()
	return g.dropClients(code, true)
}

// dropClients disconnects the listener's clients and closes the
// connections still before their CONNECT; with final, it takes no more.
func (g *guard) dropClients(code packets.Code, final bool) int {
	n := 0
	for _, cl := range g.b.srv.Clients.GetAll() {
		// (Not mochi's GetByListener: it read-locks the clients twice,
		// which deadlocks against a waiting writer.)
		if cl.Net.Listener == g.ID() && !cl.Net.Inline && !cl.Closed() {
			_ = g.b.srv.DisconnectClient(cl, code)
			n++
		}
	}
	g.conns.closeAll(final)
	return n
}

// logEnd says why a connection ended: a failed TLS handshake (a missing or
// untrusted client certificate) at info, the ordinary rest at debug.
func (g *guard) logEnd(id string, c net.Conn, err error) {
	log := g.b.log
	remote := c.RemoteAddr().String()
	if tc, ok := c.(*tls.Conn); ok && !tc.ConnectionState().HandshakeComplete && err != nil {
		g.b.authFailures()
		if n, ok := g.b.tlsLog.allow(time.Now()); ok {
			log.Info("mqtt connection refused: TLS handshake failed", "err", err, "remote", remote, "listener", id, "refusals_not_logged", n)
		}
		return
	}
	switch {
	case err == nil:
		log.Debug("mqtt client disconnected", "remote", remote, "listener", id)
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, packets.CodeDisconnect), errors.Is(err, packets.ErrServerShuttingDown):
		log.Debug("mqtt client connection closed", "err", err, "remote", remote, "listener", id)
	case errors.Is(err, packets.ErrBadUsernameOrPassword):
		log.Debug("mqtt client connection closed: refused", "remote", remote, "listener", id)
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			log.Debug("mqtt client connection closed: timed out (no CONNECT within connect_timeout, or keepalive expired)", "err", err, "remote", remote, "listener", id)
			return
		}
		log.Debug("mqtt client connection closed", "err", err, "remote", remote, "listener", id)
	}
}
