package queue

import "time"

// Stats are the queue's counters for the metrics endpoint. Counts are since
// Open, except PendingRecords, Bytes and Segments, which describe the log
// now (including records kept from before Open). Each record is counted once
// in Acked, Dropped, Expired or CorruptRecords, or is still pending; the
// exception is a record lost to corruption and later acknowledged past,
// which is in both CorruptRecords and Acked.
type Stats struct {
	// PendingRecords are in the log and not yet acknowledged, dropped or
	// expired (handed out by Next or not), staged ones included.
	PendingRecords uint64
	// Bytes is what the log occupies and MaxBytes limits: the segment files
	// (including acknowledged records whose segment is not removed yet) and
	// the staged records not acknowledged yet for Queue, the encoded size of
	// the records held for Memory.
	Bytes int64
	// StagedRecords and StagedBytes are the records held in memory until
	// the next group commit, not acknowledged yet (included in
	// PendingRecords and Bytes).
	StagedRecords uint64
	StagedBytes   int64
	// AckedUnwritten counts records acknowledged while still staged: they
	// never reached the disk. With Acked it shows how much of the traffic
	// the SD card was spared.
	AckedUnwritten uint64
	// OldestTime is when the oldest pending record was queued (zero when
	// nothing is pending): exact when it is staged or starts its segment,
	// otherwise the time of its segment's first record, at most one
	// segment's span (4 MiB of records) older.
	OldestTime time.Time
	// Appended counts records appended.
	Appended uint64
	// Acked counts records acknowledged.
	Acked uint64
	// Dropped counts records lost to the quota: refused batches under
	// DropNewest, unacknowledged records deleted under DropOldest.
	Dropped uint64
	// Expired counts records older than MaxAge skipped or deleted unsent.
	Expired uint64
	// CorruptRecords counts records found damaged (failed CRC, unreadable)
	// and skipped, from the gap they leave in the numbering; a torn tail cut
	// off at Open counts as one record, a zero-filled one as none.
	// CorruptBytes counts the bytes skipped, cut off or moved aside.
	CorruptRecords uint64
	CorruptBytes   uint64
	// Segments is the number of segment files.
	Segments int
	// Syncs counts successful data fsyncs (group commits and seals).
	Syncs uint64
	// WriteErrors counts failed writes, fsyncs and cursor updates.
	WriteErrors uint64
	// CursorWrites counts cursor file updates (one page each).
	CursorWrites uint64
	// BytesWritten counts bytes written to files (segments and cursor): with
	// Appended it shows the write volume the SD card sees.
	BytesWritten uint64
}

// Stats returns a snapshot of the counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.st
	st.Segments = len(q.segs)
	done := max(q.acked, q.lostThrough)
	for _, s := range q.segs {
		st.PendingRecords += s.unacked(done)
	}
	st.StagedRecords = q.stg.unacked(done)
	st.StagedBytes = q.stg.live
	st.PendingRecords += st.StagedRecords
	st.OldestTime = q.oldestTime(done)
	st.Bytes = q.used + q.stg.live
	return st
}

// oldestTime finds Stats.OldestTime. Caller holds mu.
func (q *Queue) oldestTime(done uint64) time.Time {
	for _, s := range q.segs {
		if s.unacked(done) > 0 {
			if s.firstTime == 0 {
				break // unknown: look no further than staging
			}
			return time.Unix(0, s.firstTime)
		}
	}
	if st := &q.stg; st.unacked(done) > 0 {
		for i := st.head; i < len(st.ents); i++ {
			if st.first+uint64(i) > done {
				if ns := frameTime(st.frame(i)); ns != 0 {
					return time.Unix(0, ns)
				}
				break
			}
		}
	}
	return time.Time{}
}
