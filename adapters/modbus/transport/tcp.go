package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/goburrow/modbus"
)

var _ modbus.Transporter = (*TCP)(nil)

const mbapLen = 7

// TCPConfig configures a Modbus TCP connection to one device or gateway.
type TCPConfig struct {
	// Address is the device's host:port, usually port 502.
	Address string
	// Timeout bounds one request: writing it and reading the whole reply;
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// DialTimeout bounds connecting; 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// Logger gets the connection going away and coming back (warn, info)
	// and, at debug level, every frame in hex. Nil discards.
	Logger *slog.Logger
}

// TCP is a Modbus TCP transport. The connection is dialled by the first Send
// and dropped on any error, a timeout or a bad frame included, so that a late
// reply can never be read as the answer to a later request: Modbus TCP devices
// answer in order, and once one answer is missed every following transaction
// id would be off by one. The next Send redials.
type TCP struct {
	addr  string
	d     dialer
	log   *slog.Logger
	st    counters
	link  linkState
	deflt time.Duration
	cur   atomic.Int64
	buf   [MaxTCPADU]byte
}

// NewTCP returns a transport for the device in cfg, checking the config but
// not connecting yet.
func NewTCP(cfg TCPConfig) (*TCP, error) {
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("tcp transport: address %q: %w", cfg.Address, err)
	}
	t := &TCP{
		addr:  cfg.Address,
		d:     dialer{addr: cfg.Address, dialTimeout: orDefault(cfg.DialTimeout, DefaultDialTimeout)},
		log:   orDiscard(cfg.Logger),
		deflt: orDefault(cfg.Timeout, DefaultTimeout),
	}
	t.cur.Store(int64(t.deflt))
	return t, nil
}

// SetTimeout sets the timeout of the following requests; d <= 0 restores the
// configured one.
func (t *TCP) SetTimeout(d time.Duration) { t.cur.Store(int64(orDefault(d, t.deflt))) }

// Stats returns the transport's counters so far.
func (t *TCP) Stats() Stats { return t.st.snapshot() }

// Close closes the connection; a pending Send returns ErrClosed at once.
func (t *TCP) Close() error { return t.d.close() }

// Send writes one Modbus TCP request (MBAP header and PDU, as built by
// goburrow's TCP packager) and returns the reply: its transaction and unit
// ids are the request's, its protocol id is 0, and its function and length
// fit the request. It implements modbus.Transporter. Unit 0 is sent like any
// other: TCP devices answer it. See the package documentation for the error
// kinds.
func (t *TCP) Send(req []byte) ([]byte, error) {
	if err := checkTCPRequest(req); err != nil {
		return nil, fmt.Errorf("%s: %w", t.addr, err)
	}
	t.st.requests.Add(1)
	resp, err := t.send(req)
	t.st.record(err)
	return resp, err
}

func checkTCPRequest(req []byte) error {
	if len(req) < mbapLen+1 || len(req) > MaxTCPADU {
		return fmt.Errorf("invalid modbus tcp request of %d bytes", len(req))
	}
	if pid, n := binary.BigEndian.Uint16(req[2:]), int(binary.BigEndian.Uint16(req[4:])); pid != 0 || n != len(req)-6 {
		return fmt.Errorf("invalid modbus tcp request header (protocol id %d, length %d for %d bytes)", pid, n, len(req))
	}
	return nil
}

func (t *TCP) send(req []byte) ([]byte, error) {
	timeout := time.Duration(t.cur.Load())
	var c net.Conn
	for { // at most twice: an idle connection found dead is redialled once
		conn, poll, fresh, err := t.d.get()
		if err != nil {
			if errors.Is(err, errClosing) {
				return nil, closedError(t.addr)
			}
			t.link.fail(t.log, "cannot connect", err)
			return nil, err
		}
		if fresh {
			t.st.connects.Add(1)
			t.log.Debug("connected", "address", t.addr)
		}
		c = conn
		// Nothing may be waiting on a connection we keep only while every
		// reply came in time; if something is, or the device closed the
		// idle connection, start afresh before writing anything.
		n, err := flushConn(conn, poll, t.buf[:])
		t.st.read(n)
		t.st.discarded(n)
		if err == nil && n == 0 {
			break
		}
		if fresh {
			if err == nil {
				break // bytes sent on connect (a banner?): discarded
			}
			return nil, t.fail(c, &ioError{op: "read", name: t.addr, err: err})
		}
		t.d.drop(conn)
		t.log.Debug("dropped idle connection", "address", t.addr, "stale_bytes", n, "err", err)
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, t.fail(c, &ioError{op: "set deadline", name: t.addr, err: netCause(err)})
	}
	t.debugHex("tx", req)
	n, err := c.Write(req)
	t.st.written(n)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, t.fail(c, &kindError{kind: ErrTimeout, msg: fmt.Sprintf("write %s: timeout after %v", t.addr, timeout), cause: err})
		}
		return nil, t.fail(c, &ioError{op: "write", name: t.addr, err: netCause(err)})
	}
	size, err := readTCPFrame(c, t.addr, req, t.buf[:], &t.st)
	if err != nil {
		return nil, t.fail(c, t.readError(err, timeout))
	}
	t.debugHex("rx", t.buf[:size])
	t.link.ok(t.log, "connection working again", "address", t.addr)
	return bytes.Clone(t.buf[:size]), nil
}

// tcpReadError is what readTCPFrame reports when the reader failed: the
// counts make the timeout message.
type tcpReadError struct {
	got, want int
	err       error
}

func (e *tcpReadError) Error() string { return e.err.Error() }

func (e *tcpReadError) Unwrap() error { return e.err }

func (t *TCP) readError(err error, timeout time.Duration) error {
	var re *tcpReadError
	if !errors.As(err, &re) {
		return err // a frame error, already specific
	}
	if errors.Is(re.err, os.ErrDeadlineExceeded) {
		return timeoutError("read", t.addr, timeout, re.got, re.want, re.err)
	}
	if re.err == io.EOF || re.err == io.ErrUnexpectedEOF {
		return &ioError{op: "read", name: t.addr, err: fmt.Errorf("connection closed by peer (%d of %d bytes)", re.got, re.want)}
	}
	return &ioError{op: "read", name: t.addr, err: netCause(re.err)}
}

// readTCPFrame reads the reply to Modbus TCP request req from r into buf
// (MaxTCPADU bytes) and returns its length. The reply is checked before it
// is returned; reading stops at the first header field that is wrong. It
// reads at most MaxTCPADU bytes. Errors are *tcpReadError for a failed read
// and ErrFrame-kind errors for a wrong reply.
func readTCPFrame(r io.Reader, name string, req, buf []byte, st *counters) (int, error) {
	k, err := io.ReadFull(r, buf[:mbapLen])
	st.read(k)
	if err != nil {
		return 0, &tcpReadError{got: k, want: mbapLen, err: err}
	}
	tid, wantTid := binary.BigEndian.Uint16(buf), binary.BigEndian.Uint16(req)
	pid := binary.BigEndian.Uint16(buf[2:])
	length := int(binary.BigEndian.Uint16(buf[4:]))
	switch {
	case tid != wantTid:
		st.discarded(mbapLen)
		return 0, frameErrorf("%s: transaction id mismatch (got 0x%04x, want 0x%04x)", name, tid, wantTid)
	case pid != 0:
		st.discarded(mbapLen)
		return 0, frameErrorf("%s: protocol id 0x%04x, want 0", name, pid)
	case length < 2 || length > MaxTCPADU-6:
		st.discarded(mbapLen)
		return 0, frameErrorf("%s: invalid length %d in header", name, length)
	case buf[6] != req[6]:
		st.discarded(mbapLen)
		return 0, frameErrorf("%s: unit id mismatch (got %d, want %d)", name, buf[6], req[6])
	}
	size := 6 + length
	k, err = io.ReadFull(r, buf[mbapLen:size])
	st.read(k)
	if err != nil {
		st.discarded(mbapLen + k)
		return 0, &tcpReadError{got: mbapLen + k, want: size, err: err}
	}
	rep := replyFor(req[mbapLen:])
	if why := rep.checkPDU(buf[mbapLen:size]); why.what != badNone {
		st.discarded(size)
		return 0, frameErrorf("%s: %v", name, why)
	}
	return size, nil
}

// fail drops the connection whatever went wrong: see TCP.
func (t *TCP) fail(c net.Conn, err error) error {
	t.d.drop(c)
	if t.d.isClosed() {
		return closedError(t.addr)
	}
	var ioe *ioError
	if errors.As(err, &ioe) {
		t.link.fail(t.log, "connection lost", err)
	} else {
		t.log.Debug("dropping connection after error", "address", t.addr, "err", err)
	}
	return err
}

func (t *TCP) debugHex(msg string, b []byte) {
	if t.log.Enabled(context.Background(), slog.LevelDebug) {
		t.log.Debug(msg, "address", t.addr, "adu", fmt.Sprintf("% x", b))
	}
}
