package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Defaults for zero config values.
const (
	// DefaultTimeout is the response timeout when the config leaves it 0.
	DefaultTimeout = time.Second
	// DefaultDialTimeout is the TCP connect timeout when the config leaves it 0.
	DefaultDialTimeout = 3 * time.Second
)

// errClosing is what the lines return once Close has begun; the transports
// turn it into ErrClosed with their name.
var errClosing = errors.New("closing")

// dialer owns the one TCP connection of a bus: dialled lazily, dropped on
// error, closed (and a pending dial cancelled) by Close from any goroutine.
// Closing a net.Conn from another goroutine is safe and unblocks its reads
// and writes, which is all Close needs.
type dialer struct {
	addr        string
	dialTimeout time.Duration

	mu     sync.Mutex
	conn   net.Conn
	poll   *pollReader
	closed bool
	cancel context.CancelFunc // of the dial in progress
}

// get returns the connection, dialling if there is none; fresh reports a new
// one.
func (d *dialer) get() (c net.Conn, poll *pollReader, fresh bool, err error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, nil, false, errClosing
	}
	if d.conn != nil {
		c, poll = d.conn, d.poll
		d.mu.Unlock()
		return c, poll, false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.dialTimeout)
	d.cancel = cancel
	d.mu.Unlock()

	var nd net.Dialer
	c, err = nd.DialContext(ctx, "tcp", d.addr)
	cancel()

	d.mu.Lock()
	defer d.mu.Unlock()
	d.cancel = nil
	if d.closed {
		if c != nil {
			c.Close()
		}
		return nil, nil, false, errClosing
	}
	if err != nil {
		return nil, nil, false, err
	}
	d.conn, d.poll = c, newPollReader(c)
	return c, d.poll, true, nil
}

// drop closes c if it is still the current connection, so the next get dials.
func (d *dialer) drop(c net.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == c && c != nil {
		c.Close()
		d.conn, d.poll = nil, nil
	}
}

func (d *dialer) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

func (d *dialer) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if d.cancel != nil {
		d.cancel()
	}
	var err error
	if d.conn != nil {
		err = d.conn.Close()
		d.conn, d.poll = nil, nil
	}
	return err
}

// peerGone reports errors that mean the other end closed or reset an idle
// connection: worth one transparent redial before a request is written.
func peerGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// netCause strips net.OpError's "read tcp a->b:" prefix, since our messages
// name the address already.
func netCause(err error) error {
	if err == nil {
		return nil // errors.As would allocate even for nil
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// tcpLine is the rtuLine of a serial device server.
type tcpLine struct {
	conn         net.Conn
	poll         *pollReader
	writeTimeout time.Duration
	scratch      [MaxRTUADU]byte
}

func (l *tcpLine) readBy(p []byte, deadline time.Time) (int, error) {
	if err := l.conn.SetReadDeadline(deadline); err != nil {
		return 0, netCause(err)
	}
	n, err := l.conn.Read(p)
	if n > 0 {
		return n, nil // an error comes back on the next read
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, netCause(err)
}

func (l *tcpLine) write(p []byte) (int, error) {
	if err := l.conn.SetWriteDeadline(time.Now().Add(l.writeTimeout)); err != nil {
		return 0, netCause(err)
	}
	n, err := l.conn.Write(p)
	return n, netCause(err)
}

// flushInput reads what the socket has buffered without waiting: a late
// reply that arrived between two requests. io.EOF means the peer closed.
func (l *tcpLine) flushInput() (int, error) {
	return flushConn(l.conn, l.poll, l.scratch[:])
}

// flushConn discards what c has buffered, without waiting. It reads a bounded
// amount so that a babbling peer cannot hold a request forever.
func flushConn(c net.Conn, poll *pollReader, buf []byte) (int, error) {
	// A read deadline in the past would fail even a non-blocking read.
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return 0, netCause(err)
	}
	total := 0
	for range 16 {
		n, err := readNow(c, poll, buf)
		total += n
		if err != nil || n == 0 {
			return total, netCause(err)
		}
	}
	return total, nil
}

// linkState logs a link going down and coming back once per change, not per
// request: a dead device polled every second must not flood the log. Only the
// goroutine that owns the bus touches it.
type linkState struct{ down bool }

func (s *linkState) fail(log *slog.Logger, msg string, err error) {
	if !s.down {
		s.down = true
		log.Warn(msg, "err", err)
		return
	}
	log.Debug(msg, "err", err)
}

// ok takes its one attribute as strings, not ...any, so that the success
// path of every request does not allocate.
func (s *linkState) ok(log *slog.Logger, msg, key, value string) {
	if s.down {
		s.down = false
		log.Info(msg, key, value)
	}
}

// orDiscard returns l, or a logger that drops everything if l is nil.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
