package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/goburrow/modbus"
)

var _ modbus.Transporter = (*RTUOverTCP)(nil)

// RTUOverTCPConfig configures a Modbus RTU bus behind a serial device server
// (Moxa NPort, USR-TCP232, …) that passes raw RTU frames over a TCP socket.
type RTUOverTCPConfig struct {
	// Address is the device server's host:port.
	Address string
	// Timeout is the response timeout; 0 means DefaultTimeout. It should
	// cover the network's round trip as well as the device's turnaround.
	Timeout time.Duration
	// DialTimeout bounds connecting; 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// Baud is the serial line's speed behind the device server, if known.
	// It is used only for timing (t3.5 between frames, the request's time
	// on the wire, counted as 11-bit characters); 0 leaves the serial-side
	// timing to the device server.
	Baud int
	// Logger gets the connection going away and coming back (warn, info)
	// and, at debug level, every frame in hex. Nil discards.
	Logger *slog.Logger
}

// RTUOverTCP is a Modbus RTU transport over a TCP connection to a serial
// device server. Frames are found as on a serial line: by the length the
// request implies, and by silence. The connection is dialled by the first
// Send, kept across timeouts and bad frames (after draining what is left of
// them), and dropped on an I/O error: the next Send redials.
type RTUOverTCP struct {
	addr  string
	d     dialer
	log   *slog.Logger
	st    counters
	eng   rtuEngine
	line  tcpLine
	link  linkState
	deflt time.Duration
	cur   atomic.Int64
}

// NewRTUOverTCP returns a transport for the device server in cfg, checking
// the config but not connecting yet.
func NewRTUOverTCP(cfg RTUOverTCPConfig) (*RTUOverTCP, error) {
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("rtu over tcp transport: address %q: %w", cfg.Address, err)
	}
	if cfg.Baud < 0 {
		return nil, fmt.Errorf("rtu over tcp transport %s: baud rate %d: must not be negative", cfg.Address, cfg.Baud)
	}
	t := &RTUOverTCP{
		addr:  cfg.Address,
		d:     dialer{addr: cfg.Address, dialTimeout: orDefault(cfg.DialTimeout, DefaultDialTimeout)},
		log:   orDiscard(cfg.Logger),
		deflt: orDefault(cfg.Timeout, DefaultTimeout),
	}
	t.cur.Store(int64(t.deflt))
	t.eng = newRTUEngine(cfg.Address, t.log, &t.st,
		CharTime(cfg.Baud, 8, 'E', 1), FrameGap(cfg.Baud, 8, 'E', 1), netMinSilence)
	return t, nil
}

// SetTimeout sets the response timeout for the following requests; d <= 0
// restores the configured one.
func (t *RTUOverTCP) SetTimeout(d time.Duration) { t.cur.Store(int64(orDefault(d, t.deflt))) }

// Stats returns the transport's counters so far.
func (t *RTUOverTCP) Stats() Stats { return t.st.snapshot() }

// Send writes one RTU request (address, PDU, CRC) and returns the reply,
// checked for address, function, length and CRC. It implements
// modbus.Transporter. A broadcast (address 0) returns ErrNoResponse after
// BroadcastTurnaround. See the package documentation for the error kinds.
func (t *RTUOverTCP) Send(req []byte) ([]byte, error) {
	if err := checkRTURequest(req); err != nil {
		return nil, fmt.Errorf("%s: %w", t.addr, err)
	}
	t.st.requests.Add(1)
	resp, err := t.send(req)
	t.st.record(err)
	return resp, err
}

func (t *RTUOverTCP) send(req []byte) ([]byte, error) {
	timeout := time.Duration(t.cur.Load())
	t.line.writeTimeout = timeout
	var c net.Conn
	for attempt := 0; ; attempt++ {
		conn, poll, fresh, err := t.d.get()
		if err != nil {
			if errors.Is(err, errClosing) {
				return nil, closedError(t.addr)
			}
			t.link.fail(t.log, "cannot connect to device server", err)
			return nil, err
		}
		if fresh {
			t.st.connects.Add(1)
			t.log.Debug("connected", "address", t.addr)
		}
		c = conn
		t.line.conn, t.line.poll = conn, poll
		err = t.eng.prepare(&t.line, timeout)
		if err == nil {
			break
		}
		var ioe *ioError
		if !fresh && attempt == 0 && errors.As(err, &ioe) && peerGone(err) {
			// Device servers close idle connections; that is no reason
			// to fail a request that has not been sent yet.
			t.d.drop(conn)
			t.log.Debug("connection closed by peer while idle, redialling", "address", t.addr)
			continue
		}
		return nil, t.fail(c, err)
	}
	resp, err := t.eng.exchange(&t.line, req, timeout)
	if err != nil && !errors.Is(err, ErrNoResponse) {
		return nil, t.fail(c, err)
	}
	t.link.ok(t.log, "device server reachable again", "address", t.addr)
	return resp, err
}

// fail drops the connection after an I/O error; after a timeout or a bad
// frame the engine has drained the socket and the connection stays.
func (t *RTUOverTCP) fail(c net.Conn, err error) error {
	if t.d.isClosed() {
		return closedError(t.addr)
	}
	var ioe *ioError
	if errors.As(err, &ioe) {
		t.d.drop(c)
		t.link.fail(t.log, "connection to device server lost", err)
	}
	return err
}

// Close closes the connection; a pending Send returns ErrClosed at once.
func (t *RTUOverTCP) Close() error { return t.d.close() }
