package transport

import (
	"errors"
	"sync/atomic"
)

// Stats are cumulative counters of one transport since it was created. Take
// two snapshots and subtract them to get the figures of a poll cycle: requests
// and bytes on the wire are what a serial bus runs out of.
type Stats struct {
	Requests        uint64 // calls of Send with a well-formed request
	Responses       uint64 // valid replies returned (exception replies included)
	Timeouts        uint64 // Send returned ErrTimeout
	FrameErrors     uint64 // Send returned ErrFrame
	TransportErrors uint64 // Send returned a dial, open, read or write error
	Broadcasts      uint64 // broadcast requests sent (Send returned ErrNoResponse)
	Connects        uint64 // successful dials (TCP) or opens (serial)
	BytesWritten    uint64 // request bytes written to the line
	BytesRead       uint64 // bytes read from the line, discarded ones included
	BytesDiscarded  uint64 // bytes read that were not part of an accepted reply
}

// counters is the live, lock-free form of Stats: Send updates it while Stats
// may be read from a metrics goroutine.
type counters struct {
	requests, responses, timeouts, frameErrors, transportErrors, broadcasts atomic.Uint64
	connects, bytesWritten, bytesRead, bytesDiscarded                       atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Requests:        c.requests.Load(),
		Responses:       c.responses.Load(),
		Timeouts:        c.timeouts.Load(),
		FrameErrors:     c.frameErrors.Load(),
		TransportErrors: c.transportErrors.Load(),
		Broadcasts:      c.broadcasts.Load(),
		Connects:        c.connects.Load(),
		BytesWritten:    c.bytesWritten.Load(),
		BytesRead:       c.bytesRead.Load(),
		BytesDiscarded:  c.bytesDiscarded.Load(),
	}
}

// record counts the outcome of one Send. A Send cut short by Close counts as
// a request with no outcome.
func (c *counters) record(err error) {
	switch {
	case err == nil:
		c.responses.Add(1)
	case errors.Is(err, ErrClosed):
	case errors.Is(err, ErrNoResponse):
		c.broadcasts.Add(1)
	case errors.Is(err, ErrTimeout):
		c.timeouts.Add(1)
	case errors.Is(err, ErrFrame):
		c.frameErrors.Add(1)
	default:
		c.transportErrors.Add(1)
	}
}

func (c *counters) read(n int) {
	if n > 0 {
		c.bytesRead.Add(uint64(n))
	}
}

func (c *counters) discarded(n int) {
	if n > 0 {
		c.bytesDiscarded.Add(uint64(n))
	}
}

func (c *counters) written(n int) {
	if n > 0 {
		c.bytesWritten.Add(uint64(n))
	}
}
