package modbus

import (
	"errors"
	"fmt"

	"github.com/goburrow/modbus"

	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
)

// failKind classifies why a transaction failed; it decides retries, device
// state and what the published error says.
type failKind uint8

const (
	failNone failKind = iota
	// failException: the device answered with a Modbus exception. A
	// definitive answer: not retried, the device is alive.
	failException
	// failNoReply: timeout, or a Modbus TCP gateway saying its target did
	// not answer (exceptions 10/11).
	failNoReply
	// failFrame: a reply arrived but was malformed (CRC, length, ids).
	failFrame
	// failLink: the port or connection itself failed (vanished USB
	// adapter, refused or reset TCP connection). Affects the whole bus.
	failLink
	// failClosed: the transport was closed (shutdown).
	failClosed
)

func (k failKind) String() string {
	switch k {
	case failException:
		return "exception"
	case failNoReply:
		return "no reply"
	case failFrame:
		return "bad frame"
	case failLink:
		return "link"
	case failClosed:
		return "closed"
	}
	return "ok"
}

var exceptionNames = map[byte]string{
	1: "illegal function", 2: "illegal data address", 3: "illegal data value",
	4: "server device failure", 5: "acknowledge", 6: "server device busy",
	8: "memory parity error", 10: "gateway path unavailable",
	11: "gateway target device failed to respond",
}

// ExceptionError is a Modbus exception reply.
type ExceptionError struct{ Code byte }

func (e *ExceptionError) Error() string {
	if name, ok := exceptionNames[e.Code]; ok {
		return fmt.Sprintf("modbus exception %d (%s)", e.Code, name)
	}
	return fmt.Sprintf("modbus exception %d", e.Code)
}

// classify sorts a transaction error. sendErr is what the transport's Send
// returned for the transaction: errors goburrow makes itself (after a
// successful Send) are about the reply's content.
func classify(err, sendErr error) (failKind, error) {
	if err == nil {
		return failNone, nil
	}
	if sendErr == nil {
		var me *modbus.ModbusError
		if errors.As(err, &me) {
			e := &ExceptionError{Code: me.ExceptionCode}
			if me.ExceptionCode == 10 || me.ExceptionCode == 11 {
				return failNoReply, e
			}
			return failException, e
		}
		return failFrame, fmt.Errorf("bad reply: %w", err)
	}
	switch {
	case errors.Is(sendErr, transport.ErrClosed):
		return failClosed, sendErr
	case errors.Is(sendErr, transport.ErrTimeout):
		return failNoReply, sendErr
	case errors.Is(sendErr, transport.ErrFrame):
		return failFrame, sendErr
	}
	return failLink, sendErr
}

// ReadError is what a point's bad-quality payload says: where and why, in
// words that stay the same from one failed cycle to the next (so it is
// published once per change, not every poll).
type ReadError struct {
	Where string // e.g. "unit 3 holding 40..47"
	Kind  failKind
	Err   error
}

func (e *ReadError) Error() string {
	switch e.Kind {
	case failNoReply:
		var ex *ExceptionError
		if errors.As(e.Err, &ex) {
			return e.Where + ": " + ex.Error()
		}
		return e.Where + ": no response (timeout)"
	case failFrame:
		return e.Where + ": bad response frame"
	case failLink:
		return e.Where + ": " + e.Err.Error()
	}
	return e.Where + ": " + e.Err.Error()
}

func (e *ReadError) Unwrap() error { return e.Err }

// detail is the full error for logs, with the transport's specifics (byte
// counts, CRC values) that the published text leaves out.
func (e *ReadError) detail() string { return e.Where + ": " + e.Err.Error() }
