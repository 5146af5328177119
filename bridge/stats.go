package bridge

import (
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// Stats are the bridge's counters for the metrics endpoint. Counts are
// since New; Pending, InFlight, Connected and Upstream describe now. Each
// message a forward rule receives (once per matching rule) ends up in
// Queued, HandoffOverflow, DroppedInvalid, DroppedShutdown or LoopSkipped;
// each queued one is then acknowledged (Acked), still Pending, or counted
// in DroppedFull, Expired or Corrupt.
type Stats struct {
	// Queued counts messages written to the queue by this bridge.
	Queued uint64
	// Forwarded counts publishes sent upstream, resends included.
	Forwarded uint64
	// Acked counts messages the cloud broker confirmed (QoS 1 and 2), or
	// that were written to the connection (QoS 0), and that left the queue.
	Acked uint64
	// Resent counts messages sent again after a connection was lost before
	// they were acknowledged (they may reach the cloud twice).
	Resent uint64
	// Pending is what the queue holds unacknowledged, including the backlog
	// from before the start.
	Pending uint64
	// InFlight is how many publishes are sent and not yet acknowledged.
	InFlight int
	// Window is how many may be (inflight: auto adapts it; see window.go).
	Window int
	// RoundTrip is the smallest time from a publish to its acknowledgement
	// seen lately on the current connection (0 before the first).
	RoundTrip time.Duration
	// Batches counts batch messages sent (resends included); each carries
	// one or more records, counted in Forwarded. BatchOversize counts
	// records too large for any batch, sent on their own.
	Batches, BatchOversize uint64

	// DroppedFull counts messages lost to buffer.max_bytes (when_full).
	DroppedFull uint64
	// Expired counts queued messages older than buffer.max_age, dropped.
	Expired uint64
	// Corrupt counts queued messages lost to damage on disk.
	Corrupt uint64
	// HandoffOverflow counts messages dropped because the queue writer did
	// not keep up even after the publisher was held back (a stalled disk).
	HandoffOverflow uint64
	// DroppedInvalid counts messages the queue cannot hold (topic over
	// 65535 bytes, payload over 16 MiB).
	DroppedInvalid uint64
	// DroppedShutdown counts messages that arrived while the bridge was
	// stopping, after it had stopped taking new ones.
	DroppedShutdown uint64
	// QueueWriteErrors counts failed writes to the queue (each is retried).
	QueueWriteErrors uint64
	// LoopSkipped counts local messages not forwarded because the bridge's
	// own downlink had published them, or because a subscribe rule covers
	// their cloud topic (see ForwardRule).
	LoopSkipped uint64

	// Connected reports whether a connection to Upstream is up now.
	Connected bool
	// Upstream is the current (or last tried) upstream URL.
	Upstream string
	// Connects counts connections established (birth acknowledged);
	// Reconnects those after the first; ConnectFailures failed attempts;
	// ConnectionsLost connections that ended other than by shutdown.
	Connects, Reconnects, ConnectFailures, ConnectionsLost uint64

	// DownlinkReceived counts cloud messages received by subscribe rules;
	// DownlinkFailed those that could not be published locally;
	// DownlinkRetainedIgnored retained ones dropped (accept_retained off).
	DownlinkReceived, DownlinkFailed, DownlinkRetainedIgnored uint64

	// Queue are the queue's own counters.
	Queue queue.Stats
}

// counters are updated by the goroutines that own each event.
type counters struct {
	queued, forwarded, acked, resent                      atomic.Uint64
	overflow, invalid, shutdown, writeErrors, loopSkipped atomic.Uint64
	connects, connectFailures, lost                       atomic.Uint64
	downReceived, downFailed, downRetained                atomic.Uint64
	batches, batchOversize                                atomic.Uint64
	inflight, window, rtprop                              atomic.Int64
}

// Stats returns a snapshot of the counters.
func (b *Bridge) Stats() Stats {
	q := b.q.Stats()
	c := &b.st
	st := Stats{
		Queued:                  c.queued.Load(),
		Forwarded:               c.forwarded.Load(),
		Acked:                   c.acked.Load(),
		Resent:                  c.resent.Load(),
		Pending:                 q.PendingRecords,
		InFlight:                int(c.inflight.Load()),
		Window:                  int(c.window.Load()),
		RoundTrip:               time.Duration(c.rtprop.Load()),
		Batches:                 c.batches.Load(),
		BatchOversize:           c.batchOversize.Load(),
		DroppedFull:             q.Dropped,
		Expired:                 q.Expired,
		Corrupt:                 q.CorruptRecords,
		HandoffOverflow:         c.overflow.Load(),
		DroppedInvalid:          c.invalid.Load(),
		DroppedShutdown:         c.shutdown.Load(),
		QueueWriteErrors:        c.writeErrors.Load(),
		LoopSkipped:             c.loopSkipped.Load(),
		Connects:                c.connects.Load(),
		ConnectFailures:         c.connectFailures.Load(),
		ConnectionsLost:         c.lost.Load(),
		DownlinkReceived:        c.downReceived.Load(),
		DownlinkFailed:          c.downFailed.Load(),
		DownlinkRetainedIgnored: c.downRetained.Load(),
		Queue:                   q,
	}
	if st.Connects > 0 {
		st.Reconnects = st.Connects - 1
	}
	b.mu.Lock()
	st.Connected, st.Upstream = b.conn, b.upstream
	b.mu.Unlock()
	return st
}
