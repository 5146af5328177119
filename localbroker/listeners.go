package localbroker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// keyError is a TLS problem and the config key it belongs to.
type keyError struct {
	key string
	err error
}

// serverTLS loads a tls or wss listener's certificate and client CAs.
func serverTLS(l ListenerConfig) (*tls.Config, *keyError) {
	switch {
	case l.CertFile == "":
		return nil, &keyError{"cert_file", fmt.Errorf("a %s listener needs cert_file and key_file (the server certificate and its key, PEM)", l.Type)}
	case l.KeyFile == "":
		return nil, &keyError{"key_file", errors.New("cert_file needs key_file (the server certificate's private key, PEM)")}
	}
	cert, err := tls.LoadX509KeyPair(l.CertFile, l.KeyFile)
	if err != nil {
		key := "cert_file"
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Path == l.KeyFile {
			key = "key_file"
		}
		return nil, &keyError{key, fmt.Errorf("cannot load the server certificate: %w", err)}
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if l.ClientCAFile != "" {
		pem, err := os.ReadFile(l.ClientCAFile)
		if err != nil {
			return nil, &keyError{"client_ca_file", fmt.Errorf("cannot read: %w", errors.Unwrap(err))}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &keyError{"client_ca_file", fmt.Errorf("%s holds no PEM certificate", l.ClientCAFile)}
		}
		conf.ClientCAs, conf.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// newListener builds the mochi listener for one config entry, wrapped in
// the guard.
func (b *Broker) newListener(i int, l ListenerConfig) (listeners.Listener, error) {
	id := fmt.Sprintf("%s%d", l.Type, i)
	conf := l.tls
	if conf == nil && (l.Type == "tls" || l.Type == "wss") {
		var kerr *keyError
		if conf, kerr = serverTLS(l); kerr != nil {
			return nil, fmt.Errorf("%s: %w", kerr.key, kerr.err)
		}
	}
	var inner listeners.Listener
	switch l.Type {
	case "tcp":
		inner = listeners.NewTCP(listeners.Config{ID: id, Address: l.Address})
	case "tls":
		inner = listeners.NewTCP(listeners.Config{ID: id, Address: l.Address, TLSConfig: conf})
	case "ws", "wss":
		inner = newWebsocket(id, l.Address, conf, int64(b.cfg.MaxPacketSize)+8)
	default:
		return nil, fmt.Errorf("unknown listener type %q", l.Type)
	}
	return &guard{Listener: inner, b: b}, nil
}

// guard wraps a mochi listener with what every listener must have: a cap on
// connections (mochi's max_clients counts only those past CONNECT, and each
// connection costs its buffers before that), a deadline for the TLS
// handshake and the CONNECT, and a log line with a message when a
// connection ends (mochi's listeners log a warning with an empty message,
// for a client that merely closed its socket).
type guard struct {
	listeners.Listener
	b *Broker
}

// Serve runs the listener with the guarded establish function.
func (g *guard) Serve(establish listeners.EstablishFn) {
	g.Listener.Serve(func(id string, c net.Conn) error {
		b := g.b
		if n := b.conns.Add(1); n > int64(b.maxConns) {
			b.conns.Add(-1)
			b.refusedConns.Add(1)
			_ = c.Close()
			if n, ok := b.connLog.allow(time.Now()); ok {
				b.log.Warn("mqtt connection refused: too many connections", "limit", b.maxConns, "remote", c.RemoteAddr().String(), "listener", id, "refusals_not_logged", n)
			}
			return nil
		}
		defer b.conns.Add(-1)
		_ = c.SetDeadline(time.Now().Add(b.cfg.ConnectTimeout))
		err := establish(id, c)
		g.logEnd(id, c, err)
		return nil
	})
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
