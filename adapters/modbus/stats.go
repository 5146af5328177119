package modbus

import (
	"sync/atomic"

	"github.com/fieldbridge/fieldbridge/adapters"

	"github.com/fieldbridge/fieldbridge/adapters/modbus/transport"
)

// busStats are cumulative counters of a bus, read by metrics and benchmarks
// while the bus goroutine updates them.
type busStats struct {
	cycles, skipped, requests                    atomic.Int64
	exceptions, noReply, frameErrors, linkErrors atomic.Int64
	decodeErrors                                 atomic.Int64
	link                                         atomic.Pointer[recordingLink]
	busySince                                    atomic.Int64 // unix ns a poll started, 0 when idle
	durations                                    adapters.DurationHistogram
}

func (s *busStats) count(k failKind) {
	switch k {
	case failException:
		s.exceptions.Add(1)
	case failNoReply:
		s.noReply.Add(1)
	case failFrame:
		s.frameErrors.Add(1)
	case failLink:
		s.linkErrors.Add(1)
	}
}

// Stats is a snapshot of a bus's counters.
type Stats struct {
	// Cycles is the number of device poll cycles run; Skipped the number of
	// cycles dropped because the bus fell behind.
	Cycles, Skipped int64
	// Requests counts transactions, retries included.
	Requests int64
	// Failures by kind.
	Exceptions, NoReply, FrameErrors, LinkErrors, DecodeErrors int64
	// Link is the transport's own byte and frame accounting.
	Link transport.Stats
}

// Stats returns the bus counters.
func (a *Adapter) Stats() Stats {
	s := &a.stats
	out := Stats{
		Cycles: s.cycles.Load(), Skipped: s.skipped.Load(), Requests: s.requests.Load(),
		Exceptions: s.exceptions.Load(), NoReply: s.noReply.Load(), FrameErrors: s.frameErrors.Load(),
		LinkErrors: s.linkErrors.Load(), DecodeErrors: s.decodeErrors.Load(),
	}
	if l := s.link.Load(); l != nil {
		out.Link = l.Stats()
	}
	return out
}
