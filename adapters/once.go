package adapters

import "context"

// OnceReader is implemented by adapters that can read their points once,
// outside the poll loop, for commissioning (`gateway read`): the same
// planner and decoders as a running gateway, without a broker.
type OnceReader interface {
	// ReadOnce connects, reads every point for which want returns true
	// (all points if want is nil), and disconnects. The readings are in
	// the order of Devices and their Points. The error is for a bus that
	// cannot be used at all (a port that does not exist); a device that
	// does not answer gives readings with Err set.
	ReadOnce(ctx context.Context, want func(*Point) bool) ([]Reading, error)
}

// Reading is one point read by ReadOnce.
type Reading struct {
	Point *Point
	// Value is meaningful when Err is nil.
	Value Value
	Err   error
	// Source says where the value is, e.g. "unit 1 holding 40..41".
	Source string
	// Raw is what was on the wire for the point, e.g. "4049 0fdb" (register
	// words in hex) or "1" (a coil); empty when nothing was read.
	Raw string
}
