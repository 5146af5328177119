package adapters

import (
	"errors"
	"time"
)

// Writes: a point marked writable accepts commands. The gateway parses a
// command's payload (ParseCommand), finds the point, and hands the value to
// the adapter that owns it through the Writer interface. The adapter checks
// the value against the point (type, range, limits) before anything touches
// the bus, carries the write out on the goroutine that owns the bus, reads
// the point back, and reports the outcome once.

// Command asks for one point to be set to a value.
type Command struct {
	// Point is the point to write, one of the adapter's own.
	Point *Point
	// Value is the new value in engineering units, as parsed from the
	// payload: the adapter converts it to the point's type or refuses it.
	Value Value
}

// WriteResult is the outcome of a command.
type WriteResult struct {
	// Err is nil when the device acknowledged the write. Otherwise it wraps
	// exactly one of ErrRefused, ErrNotSent, ErrDeviceRefused or
	// ErrUnknownOutcome (test with errors.Is), and says why in words meant
	// for the operator.
	Err error
	// ReadBack is the point's value read from the device after a
	// successful write (KindInvalid when there is none); ReadBackErr says
	// why a read-back after a successful write failed.
	ReadBack    Value
	ReadBackErr error
	// Time is when the outcome became known.
	Time time.Time
}

// Error kinds of WriteResult.Err. They say what happened on the bus, which
// is what an operator needs to know before trying again.
var (
	// ErrRefused: the command was refused before anything was sent (not
	// writable, read-only table, wrong type, out of range, outside the
	// point's limits). Sending it again will not help.
	ErrRefused = errors.New("refused")
	// ErrNotSent: the command was valid but was not sent (the device is
	// offline, the bus is down or stopping, too many writes queued). The
	// device is untouched.
	ErrNotSent = errors.New("not sent")
	// ErrDeviceRefused: the device answered with a Modbus exception (or its
	// protocol's equivalent): it did not apply the write.
	ErrDeviceRefused = errors.New("refused by the device")
	// ErrUnknownOutcome: the write was sent but no valid answer came back
	// (timeout, broken frame, connection lost). The device may or may not
	// have applied it: read the point before trying again.
	ErrUnknownOutcome = errors.New("unknown outcome")
)

// Writer is implemented by adapters whose points accept commands.
type Writer interface {
	// Write checks c against its point and, if it may be written, queues it
	// for the bus. done is called exactly once with the outcome: before
	// Write returns when the command is refused or cannot be queued,
	// otherwise later from the adapter's bus goroutine. done must not
	// block. Write is safe for concurrent use and never blocks.
	Write(c Command, done func(WriteResult))
}
