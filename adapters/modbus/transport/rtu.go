package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// rtuEngine runs RTU transactions on a line; Serial and RTUOverTCP own one
// each and differ only in the line they give it.
type rtuEngine struct {
	frameReader
	log      *slog.Logger
	charTime time.Duration // one character on the wire, 0 if the baud rate is unknown
	gap      time.Duration // t3.5 before a request, 0 if the baud rate is unknown
	lastTx   time.Time     // when the last request left the wire
}

func newRTUEngine(name string, log *slog.Logger, st *counters, charTime, gap, minSilence time.Duration) rtuEngine {
	return rtuEngine{
		frameReader: frameReader{name: name, silence: maxDur(gap, minSilence), st: st},
		log:         log,
		charTime:    charTime,
		gap:         gap,
	}
}

// checkRTURequest rejects what no RTU packager produces, before anything is
// sent: the frame reader relies on a request of at least address, function
// and CRC.
func checkRTURequest(req []byte) error {
	switch {
	case len(req) < 4 || len(req) > MaxRTUADU:
		return fmt.Errorf("invalid rtu request of %d bytes", len(req))
	case req[1]&0x80 != 0:
		return fmt.Errorf("invalid rtu request: function 0x%02x has the exception bit", req[1])
	}
	return nil
}

// prepare makes the line ready for a request: input that arrived since the
// last transaction (a late reply, noise) is discarded, then the line must be
// silent for t3.5 since the last byte sent or received. The wait is spent
// reading, so that a byte arriving during it restarts it and is discarded too.
// A line that never falls silent within timeout is a frame error.
func (e *rtuEngine) prepare(l rtuLine, timeout time.Duration) error {
	k, err := l.flushInput()
	e.st.read(k)
	e.st.discarded(k)
	if err != nil {
		return &ioError{op: "flush", name: e.name, err: err}
	}
	now := time.Now()
	if k > 0 {
		e.last = now
		e.debug("discarded stale input", "bytes", k)
	}
	if e.gap <= 0 {
		return nil
	}
	quiet := e.last
	if e.lastTx.After(quiet) {
		quiet = e.lastTx
	}
	quiet = quiet.Add(e.gap)
	bound := now.Add(timeout)
	discarded := 0
	for now.Before(quiet) {
		if discarded > 0 && bound.Before(quiet) {
			e.st.discarded(discarded)
			return frameErrorf("%s: line not silent: %d bytes discarded in %v", e.name, discarded, timeout)
		}
		k, err := l.readBy(e.buf[:], quiet)
		e.st.read(k)
		discarded += k
		if err != nil {
			e.st.discarded(discarded)
			return &ioError{op: "read", name: e.name, err: err}
		}
		now = time.Now()
		if k > 0 {
			e.last = now
			quiet = now.Add(e.gap)
		} else {
			break // readBy waited until quiet
		}
	}
	e.st.discarded(discarded)
	if discarded > 0 {
		e.debug("discarded input before request", "bytes", discarded)
	}
	return nil
}

// exchange writes req and reads its reply. After a timeout or a bad frame it
// drains the line until it is silent, so that the rest of a late or broken
// reply cannot be taken for the next one. An *ioError means the line is
// broken and must be reopened.
func (e *rtuEngine) exchange(l rtuLine, req []byte, timeout time.Duration) ([]byte, error) {
	e.debugHex("tx", req)
	n, err := l.write(req)
	e.st.written(n)
	if err != nil {
		return nil, &ioError{op: "write", name: e.name, err: err}
	}
	// Write returns when the bytes are in the kernel's buffer; the device
	// can only start answering once the last one has left the wire.
	sent := time.Now().Add(time.Duration(len(req)) * e.charTime)
	e.lastTx = sent
	if req[0] == 0 {
		// Broadcast: nobody answers; let the devices act on it. Anything
		// heard meanwhile is noise or a misbehaving device.
		if k, err := e.drain(l, BroadcastTurnaround, sent.Add(BroadcastTurnaround)); err != nil {
			return nil, err
		} else if k > 0 {
			e.debug("discarded input after broadcast", "bytes", k)
		}
		return nil, &kindError{kind: ErrNoResponse, msg: e.name + ": broadcast sent, no response expected"}
	}
	frame, err := e.readFrame(l, req, sent.Add(timeout), timeout)
	if err != nil {
		var ioe *ioError
		if errors.As(err, &ioe) {
			return nil, err
		}
		k, derr := e.drain(l, e.silence, time.Now().Add(timeout))
		if derr != nil {
			return nil, derr
		}
		e.debug("rtu error", "err", err, "drained", k)
		return nil, err
	}
	e.debugHex("rx", frame)
	return bytes.Clone(frame), nil
}

func (e *rtuEngine) debug(msg string, args ...any) {
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug(msg, append(args, "port", e.name)...)
	}
}

// debugHex logs a frame at debug level; the check keeps the hex formatting
// off the hot path when debug is off.
func (e *rtuEngine) debugHex(msg string, b []byte) {
	if e.log.Enabled(context.Background(), slog.LevelDebug) {
		e.log.Debug(msg, "port", e.name, "adu", fmt.Sprintf("% x", b))
	}
}
