package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goburrow/modbus"
	"go.bug.st/serial"
)

var _ modbus.Transporter = (*Serial)(nil)

// SerialConfig configures a Modbus RTU bus on a local serial port.
type SerialConfig struct {
	// Device is the port's path: /dev/ttyUSB0, /dev/ttyAMA0, or better a
	// stable /dev/serial/by-id/… link.
	Device string
	// Baud is the line speed in bits per second. Required: a wrong guess
	// fails silently.
	Baud int
	// DataBits per character: 8, the only size RTU frames fit; 0 means 8.
	DataBits int
	// Parity is 'N', 'E' or 'O'; 0 means 'E', the Modbus default. The spec
	// wants 2 stop bits without parity, but 8N1 is common and works.
	Parity byte
	// StopBits is 1 or 2; 0 means 1.
	StopBits int
	// Timeout is the response timeout, counted from when the request has left
	// the wire; 0 means DefaultTimeout. SetTimeout changes it.
	Timeout time.Duration
	// Logger gets the port going away and coming back (warn, info) and, at
	// debug level, every frame in hex. Nil discards.
	Logger *slog.Logger
}

// port is the part of go.bug.st/serial's Port the transport uses: a seam for
// tests. SetRTS, SetDTR and the modem bits are left out on purpose: they fail
// on pseudo-terminals and RS-485 direction is the adapter's job.
type port interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	SetReadTimeout(t time.Duration) error
	ResetInputBuffer() error
	Close() error
}

type openFunc func(device string, mode *serial.Mode) (port, error)

func openSerial(device string, mode *serial.Mode) (port, error) {
	p, err := serial.Open(device, mode)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return p, nil
}

// Serial is a Modbus RTU transport on a local serial port. The port is opened
// by the first Send and again by the first Send after it failed (a USB
// adapter unplugged and plugged back): the caller paces the retries.
type Serial struct {
	dev   string
	mode  serial.Mode
	open  openFunc
	log   *slog.Logger
	st    counters
	eng   rtuEngine
	line  serialLine
	link  linkState
	deflt time.Duration
	cur   atomic.Int64 // timeout for the next Send

	mu      sync.Mutex
	port    port
	busy    bool // a Send is using port: only it may close it
	closed  bool
	closing atomic.Bool // seen by the line between two read slices
}

// NewSerial returns a transport for the port in cfg, checking the config but
// not opening the port yet.
func NewSerial(cfg SerialConfig) (*Serial, error) {
	return newSerial(cfg, openSerial)
}

func newSerial(cfg SerialConfig, open openFunc) (*Serial, error) {
	if cfg.Device == "" {
		return nil, errors.New("serial transport: no device")
	}
	if cfg.Baud <= 0 {
		return nil, fmt.Errorf("serial transport %s: baud rate %d: must be positive", cfg.Device, cfg.Baud)
	}
	mode := serial.Mode{BaudRate: cfg.Baud, DataBits: 8} // InitialStatusBits stays nil: it fails on ptys
	switch cfg.DataBits {
	case 0, 8:
	default:
		return nil, fmt.Errorf("serial transport %s: %d data bits: modbus rtu needs 8", cfg.Device, cfg.DataBits)
	}
	parity := cfg.Parity
	switch parity {
	case 0, 'E':
		parity, mode.Parity = 'E', serial.EvenParity
	case 'O':
		mode.Parity = serial.OddParity
	case 'N':
		mode.Parity = serial.NoParity
	default:
		return nil, fmt.Errorf("serial transport %s: parity %q: want 'N', 'E' or 'O'", cfg.Device, cfg.Parity)
	}
	stop := cfg.StopBits
	switch stop {
	case 0, 1:
		stop, mode.StopBits = 1, serial.OneStopBit
	case 2:
		mode.StopBits = serial.TwoStopBits
	default:
		return nil, fmt.Errorf("serial transport %s: %d stop bits: want 1 or 2", cfg.Device, cfg.StopBits)
	}
	s := &Serial{
		dev:   cfg.Device,
		mode:  mode,
		open:  open,
		log:   orDiscard(cfg.Logger),
		deflt: orDefault(cfg.Timeout, DefaultTimeout),
	}
	s.cur.Store(int64(s.deflt))
	s.eng = newRTUEngine(cfg.Device, s.log, &s.st,
		CharTime(cfg.Baud, 8, parity, stop), FrameGap(cfg.Baud, 8, parity, stop), serialMinSilence)
	s.line.closing = &s.closing
	return s, nil
}

// SetTimeout sets the response timeout for the following requests, counted
// from when a request has left the wire; d <= 0 restores the configured one.
func (s *Serial) SetTimeout(d time.Duration) { s.cur.Store(int64(orDefault(d, s.deflt))) }

// Stats returns the transport's counters so far.
func (s *Serial) Stats() Stats { return s.st.snapshot() }

// Send writes one RTU request (address, PDU, CRC, as built by goburrow's RTU
// packager) and returns the device's reply, checked for address, function,
// length and CRC. It implements modbus.Transporter. A broadcast (address 0)
// returns ErrNoResponse after BroadcastTurnaround. See the package
// documentation for the error kinds.
func (s *Serial) Send(req []byte) ([]byte, error) {
	if err := checkRTURequest(req); err != nil {
		return nil, fmt.Errorf("%s: %w", s.dev, err)
	}
	s.st.requests.Add(1)
	resp, err := s.send(req)
	s.st.record(err)
	return resp, err
}

func (s *Serial) send(req []byte) ([]byte, error) {
	p, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer s.release()
	s.line.port = p
	timeout := time.Duration(s.cur.Load())
	err = s.eng.prepare(&s.line, timeout)
	var resp []byte
	if err == nil {
		resp, err = s.eng.exchange(&s.line, req, timeout)
	}
	switch {
	case err == nil || errors.Is(err, ErrNoResponse):
		s.link.ok(s.log, "serial port working again", "port", s.dev)
		return resp, err
	case s.closing.Load():
		return nil, closedError(s.dev)
	}
	var ioe *ioError
	if errors.As(err, &ioe) {
		// The port is gone or broken (USB adapter unplugged: EIO, ENXIO,
		// or a read that returns nothing but "readable"). Reopen next time.
		s.dropPort()
		s.link.fail(s.log, "serial port failed", err)
	}
	return nil, err
}

// acquire opens the port if needed and marks it in use.
func (s *Serial) acquire() (port, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, closedError(s.dev)
	}
	if s.port == nil {
		p, err := s.open(s.dev, &s.mode)
		if err != nil {
			err = fmt.Errorf("open %s: %w", s.dev, err)
			s.link.fail(s.log, "cannot open serial port", err)
			return nil, err
		}
		s.port = p
		s.st.connects.Add(1)
		s.log.Debug("serial port open", "port", s.dev)
	}
	s.busy = true
	return s.port, nil
}

// release ends a Send's use of the port, closing it if Close came meanwhile.
func (s *Serial) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = false
	if s.closed && s.port != nil {
		s.port.Close()
		s.port = nil
	}
}

func (s *Serial) dropPort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.port != nil {
		s.port.Close()
		s.port = nil
	}
}

// Close closes the port and makes a pending Send return ErrClosed within
// one read slice (50 ms). While a Send is using the port, that Send closes it
// on its way out rather than Close: go.bug.st/serial releases the file
// descriptor before it stops its readers, and a descriptor number reused by
// another file in between would receive our reads and writes.
func (s *Serial) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.closing.Store(true)
	if s.busy || s.port == nil {
		return nil
	}
	err := s.port.Close()
	s.port = nil
	return err
}

// readSlice bounds one blocking read so that a Send notices Close quickly.
const readSlice = 50 * time.Millisecond

// serialLine adapts a go.bug.st/serial port to rtuLine. Its Read returns
// (0, nil) on timeout and, by default, has no timeout at all: every read here
// sets one, and treats 0 bytes as "not yet".
type serialLine struct {
	port    port
	closing *atomic.Bool
	scratch [MaxRTUADU]byte
}

func (l *serialLine) readBy(p []byte, deadline time.Time) (int, error) {
	for {
		if l.closing.Load() {
			return 0, errClosing
		}
		d := time.Until(deadline)
		if d < 0 {
			d = 0 // poll once
		}
		d = min(d, readSlice)
		if err := l.port.SetReadTimeout(d); err != nil {
			return 0, err
		}
		n, err := l.port.Read(p)
		if n > 0 || err != nil {
			return n, portError(err)
		}
		if !time.Now().Before(deadline) {
			return 0, nil
		}
	}
}

func (l *serialLine) write(p []byte) (int, error) {
	total := 0
	for total < len(p) {
		if l.closing.Load() {
			return total, errClosing
		}
		n, err := l.port.Write(p[total:])
		total += n
		if err != nil {
			return total, portError(err)
		}
		if n == 0 {
			return total, errors.New("write made no progress")
		}
	}
	return total, nil
}

// flushInput reads what is buffered without waiting, to count it, and then
// lets the driver drop whatever came in meanwhile.
func (l *serialLine) flushInput() (int, error) {
	total := 0
	for range 16 {
		if err := l.port.SetReadTimeout(0); err != nil {
			return total, err
		}
		n, err := l.port.Read(l.scratch[:])
		total += n
		if err != nil {
			return total, portError(err)
		}
		if n == 0 {
			break
		}
	}
	return total, portError(l.port.ResetInputBuffer())
}

// portError names go.bug.st/serial's "port closed" for what it means when we
// did not close the port: the device went away (its Read sees a readable port
// with nothing to read after a USB unplug).
func portError(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
		return fmt.Errorf("device disconnected: %w", err)
	}
	return err
}
