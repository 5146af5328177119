package transport

import (
	"encoding/binary"
	"time"
)

// rtuLine is the byte pipe under the RTU engine: a serial port or a TCP socket
// to a serial device server. Tests put in-memory lines behind it.
type rtuLine interface {
	// readBy reads at least one byte into p, or returns (0, nil) once deadline
	// has passed without any. It never returns (0, nil) before the deadline
	// (go.bug.st/serial's Read does, on its own timeout: the serial line hides
	// that).
	readBy(p []byte, deadline time.Time) (int, error)
	// write writes the whole of p.
	write(p []byte) (int, error)
	// flushInput discards input that has already arrived, without waiting. It
	// returns how many bytes it saw go, as far as it can tell.
	flushInput() (int, error)
}

// frameReader assembles one RTU reply at a time from a line that hands out
// bytes in whatever pieces they arrive: one character per read on a real
// RS-485 line, a whole frame per read from a device server.
type frameReader struct {
	name    string        // port or address, for messages
	silence time.Duration // line silence that ends a reply of unknown length
	st      *counters
	buf     [MaxRTUADU]byte
	last    time.Time // when the last byte arrived

	// drainHook, if set, runs as a drain starts: tests use it to put a
	// late reply on the line at that very moment.
	drainHook func()
}

// readFrame reads the reply to RTU request req (at least 4 bytes, address
// first) and returns it, valid: its address and function are the request's
// (the function possibly with the exception bit), its length is the one its
// function code and the request imply, and its CRC is right. The result is a
// slice of the reader's buffer, valid until the next call.
//
// Bytes that cannot start the reply are skipped one by one ("hunting"), so a
// glitch byte from a transceiver switching direction, or the echo of the
// request from an adapter that does not suppress it, does not cost the
// request; at most MaxRTUADU bytes are read for one reply. As the serial line
// specification has it (§2.4.1), a frame from an unexpected address does not
// stop the wait: the reply may still come, and hunting goes on until the
// deadline, when the error is a frame error rather than a timeout because
// something did arrive. A frame whose header is right but whose CRC is wrong
// is not hunted through: it is a frame error at once and the caller drains
// the line.
//
// Errors: *kindError of kind ErrTimeout if too little arrived by deadline, of
// kind ErrFrame if bytes arrived that were not the reply, or *ioError if the
// line failed. timeout is the configured timeout, for messages.
func (fr *frameReader) readFrame(l rtuLine, req []byte, deadline time.Time, timeout time.Duration) ([]byte, error) {
	addr := req[0]
	r := replyFor(req[1 : len(req)-2])
	n := 0        // bytes of the candidate reply, in fr.buf[:n]
	total := 0    // its length once known (> 0), needMore, or openLen
	consumed := 0 // every byte read for this reply, skipped ones included
	skipped := 0
	var firstBad badReason
	for {
		if total > 0 && n >= total {
			break
		}
		var ask int
		switch {
		case total > 0:
			ask = total - n
		case total == openLen:
			ask = MaxRTUADU - n
		default:
			// Four bytes never reach past the end of a valid reply (the
			// shortest is 4, an exception 5) and settle every header.
			ask = 4 - n
			if ask <= 0 { // a count or FIFO header that needs one more byte
				ask = 1
			}
		}
		if consumed+ask > MaxRTUADU {
			ask = MaxRTUADU - consumed
		}
		if ask <= 0 {
			fr.st.discarded(n)
			return nil, frameErrorf("%s: no valid reply in %d bytes (%d skipped: %v)", fr.name, consumed, skipped, firstBad)
		}
		// Silence ends a reply of unknown length. It ends nothing else:
		// USB adapters deliver in bursts, so silence inside a frame is
		// not reliably seen from here.
		rd, bySilence := deadline, false
		if total == openLen && fr.silence > 0 {
			if s := fr.last.Add(fr.silence); s.Before(deadline) {
				rd, bySilence = s, true
			}
		}
		k, err := l.readBy(fr.buf[n:n+ask], rd)
		if err != nil {
			fr.st.read(k)
			fr.st.discarded(n + k)
			return nil, &ioError{op: "read", name: fr.name, err: err}
		}
		if k == 0 {
			switch {
			case bySilence:
				total = n
				continue
			case skipped > 0:
				fr.st.discarded(n)
				return nil, frameErrorf("%s: no valid reply: %d bytes skipped (%v)", fr.name, skipped+n, firstBad)
			}
			want := total
			if want <= 0 {
				want = ExpectedResponseLen(req)
			}
			fr.st.discarded(n)
			return nil, timeoutError("read", fr.name, timeout, n, want, nil)
		}
		fr.last = time.Now()
		fr.st.read(k)
		n += k
		consumed += k
		// Hunt: drop leading bytes until the buffer starts like the reply.
		for n > 0 {
			t, why := frameLen(addr, &r, fr.buf[:n])
			if why.what == badNone {
				total = t
				break
			}
			if skipped == 0 {
				firstBad = why
			}
			skipped++
			fr.st.discarded(1)
			copy(fr.buf[:], fr.buf[1:n])
			n--
			total = needMore
		}
	}
	frame := fr.buf[:n]
	if n < 4 {
		fr.st.discarded(n)
		return nil, frameErrorf("%s: short frame of %d bytes", fr.name, n)
	}
	if got, want := binary.LittleEndian.Uint16(frame[n-2:]), crc16(frame[:n-2]); got != want {
		fr.st.discarded(n)
		return nil, frameErrorf("%s: crc mismatch (got 0x%04x, want 0x%04x)", fr.name, got, want)
	}
	return frame, nil
}

// frameLen checks the start b of a candidate RTU reply and returns the frame's
// total length, needMore, or openLen, or why b cannot start the reply.
func frameLen(addr byte, r *reply, b []byte) (int, badReason) {
	if b[0] != addr {
		return 0, badReason{what: badAddress, got: int(b[0]), want: int(addr)}
	}
	pl, why := r.pduLen(b[1:])
	if why.what != badNone || pl <= 0 {
		return pl, why
	}
	return 1 + pl + 2, badReason{}
}

// drain reads and discards until the line has been silent for silence, or
// until bound. It resynchronises the line after an error: whatever is left of
// a bad or late reply must not be read as the next one. It returns how many
// bytes it discarded.
func (fr *frameReader) drain(l rtuLine, silence time.Duration, bound time.Time) (int, error) {
	if fr.drainHook != nil {
		fr.drainHook()
	}
	total := 0
	quiet := time.Now().Add(silence)
	for {
		d := quiet
		if bound.Before(d) {
			d = bound
		}
		k, err := l.readBy(fr.buf[:], d)
		fr.st.read(k)
		fr.st.discarded(k)
		total += k
		if err != nil {
			return total, &ioError{op: "read", name: fr.name, err: err}
		}
		if k == 0 {
			return total, nil
		}
		now := time.Now()
		fr.last = now
		if !now.Before(bound) {
			return total, nil
		}
		quiet = now.Add(silence)
	}
}
