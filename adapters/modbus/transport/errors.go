package transport

import (
	"errors"
	"fmt"
	"time"
)

// Error kinds. Every error returned by Send is one of these kinds (test with
// errors.Is) or, if none matches, a transport error: the dial, open, read or
// write itself failed and the connection or port has been dropped.
var (
	// ErrTimeout reports that no reply, or only part of one, arrived before the
	// timeout. The message says how many of how many bytes arrived.
	ErrTimeout = errors.New("timeout")

	// ErrFrame reports that bytes arrived but were not a valid reply to the
	// request: bad CRC, wrong address, function or transaction id, an
	// impossible length, or noise on the line.
	ErrFrame = errors.New("invalid frame")

	// ErrClosed reports that the transport was closed, before or during Send.
	ErrClosed = errors.New("transport closed")

	// ErrNoResponse is returned by the RTU transports for a broadcast request
	// (unit 0): the request was sent and the devices were given
	// BroadcastTurnaround to act on it, but by definition none replies. For a
	// broadcast write it means success.
	ErrNoResponse = errors.New("no response expected to a broadcast")
)

// kindError carries one of the kinds above with a specific message, and the
// underlying cause if there is one. The message is written out in full so it
// can read like "read 10.0.0.5:502: timeout after 300ms (0 of 7 bytes)" rather
// than ending in the kind's name.
type kindError struct {
	kind  error
	msg   string
	cause error
}

func (e *kindError) Error() string { return e.msg }

// Is makes errors.Is(err, ErrTimeout) and friends work without putting the
// kind's text into the message.
func (e *kindError) Is(target error) bool { return target == e.kind }

func (e *kindError) Unwrap() error { return e.cause }

// Timeout lets code that knows only net.Error-style timeouts see ours.
func (e *kindError) Timeout() bool { return e.kind == ErrTimeout }

func frameErrorf(format string, args ...any) error {
	return &kindError{kind: ErrFrame, msg: fmt.Sprintf(format, args...)}
}

// timeoutError formats the byte counts of an incomplete reply: want < 0 means
// the length of the reply could not be known.
func timeoutError(op, name string, timeout time.Duration, got, want int, cause error) error {
	var msg string
	if want >= 0 {
		msg = fmt.Sprintf("%s %s: timeout after %v (%d of %d bytes)", op, name, timeout, got, want)
	} else {
		msg = fmt.Sprintf("%s %s: timeout after %v (%d bytes, reply length unknown)", op, name, timeout, got)
	}
	return &kindError{kind: ErrTimeout, msg: msg, cause: cause}
}

func closedError(name string) error {
	return &kindError{kind: ErrClosed, msg: name + ": transport closed"}
}

// ioError marks a failure of the line itself (read, write, flush): the owner
// must drop the connection or port and reopen it on the next Send.
type ioError struct {
	op, name string
	err      error
}

func (e *ioError) Error() string { return e.op + " " + e.name + ": " + e.err.Error() }

func (e *ioError) Unwrap() error { return e.err }
