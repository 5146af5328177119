package localbroker

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket (subprotocol "mqtt", any path). It
// replaces mochi's, which binds only when serving (a port already in use is
// logged later instead of failing the start) and cannot report the port it
// got for ":0".
type wsListener struct {
	id, address string
	tls         *tls.Config
	maxMessage  int64

	mu        sync.Mutex
	ln        net.Listener
	srv       *http.Server
	establish listeners.EstablishFn
	upgrader  websocket.Upgrader
}

func newWebsocket(id, address string, conf *tls.Config, maxMessage int64) *wsListener {
	return &wsListener{id: id, address: address, tls: conf, maxMessage: maxMessage}
}

func (w *wsListener) ID() string { return w.id }

func (w *wsListener) Protocol() string {
	if w.tls != nil {
		return "wss"
	}
	return "ws"
}

func (w *wsListener) Address() string {
	if w.ln != nil {
		return w.ln.Addr().String()
	}
	return w.address
}

// Init binds the address.
func (w *wsListener) Init(l *slog.Logger) error {
	ln, err := net.Listen("tcp", w.address)
	if err != nil {
		return err
	}
	if w.tls != nil {
		ln = tls.NewListener(ln, w.tls)
	}
	w.ln = ln
	w.upgrader = websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Credentials travel inside MQTT, not in cookies: a page from
		// another origin gains nothing a direct connection would not.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	w.srv = &http.Server{
		Handler:           http.HandlerFunc(w.handle),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(slogWriter{l}, "", 0),
	}
	return nil
}

// Serve accepts connections until Close.
func (w *wsListener) Serve(establish listeners.EstablishFn) {
	w.mu.Lock()
	w.establish = establish
	w.mu.Unlock()
	_ = w.srv.Serve(w.ln)
}

func (w *wsListener) handle(rw http.ResponseWriter, r *http.Request) {
	c, err := w.upgrader.Upgrade(rw, r, nil)
	if err != nil {
		return // the upgrader answered with an HTTP error
	}
	c.SetReadLimit(w.maxMessage)
	w.mu.Lock()
	establish := w.establish
	w.mu.Unlock()
	_ = establish(w.id, &wsConn{Conn: c.NetConn(), ws: c})
	_ = c.Close()
}

// Close stops accepting and closes the listener's clients.
func (w *wsListener) Close(closeClients listeners.CloseFn) {
	closeClients(w.id)
	if w.srv != nil {
		_ = w.srv.Close()
	}
	if w.ln != nil {
		// The http.Server closes only a socket it served: one bound but
		// never served (a reload that was rejected) is closed here.
		_ = w.ln.Close()
	}
}

// wsConn is an MQTT byte stream over WebSocket binary messages; a message
// may hold several MQTT packets or part of one (MQTT-6.0.0-2).
type wsConn struct {
	net.Conn // the underlying connection: addresses, deadlines
	ws       *websocket.Conn
	r        io.Reader
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			kind, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if kind != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }

// ConnectionState is the TLS state of a wss connection, for
// use_identity_as_username.
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if t, ok := c.Conn.(*tls.Conn); ok {
		return t.ConnectionState()
	}
	return tls.ConnectionState{}
}

// slogWriter sends net/http's own log lines (bad handshakes) to debug.
type slogWriter struct{ l *slog.Logger }

func (s slogWriter) Write(p []byte) (int, error) {
	s.l.Debug(string(p))
	return len(p), nil
}
