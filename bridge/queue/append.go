package queue

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Append adds the batch to the log, all or nothing, and numbers its records
// (writing Seq, and Time when it was zero, back into recs). The records are
// readable with Next at once. With SyncInterval > 0 they are staged in
// memory and the group commit writes them, at most SyncInterval after
// Append, unless they have been acknowledged by then: a record the cloud
// acknowledges within the sync window never touches the disk. With
// SyncInterval 0 Append writes and fsyncs the batch before it returns.
//
// After Append returns, recs[i].Seq != 0 exactly when the record is in the
// log. Errors wrap ErrFull (quota), ErrInvalidRecord, ErrClosed or the cause
// of a failed write (ENOSPC, EIO): a write that Append has to do itself,
// with SyncInterval 0 or when the staged records exceed StagingBytes. After
// a failed write the log is as before and the next Append tries again, so a
// full disk heals by itself once space returns. With SyncInterval 0 an
// fsync failure is reported although the records were appended (their Seq
// is set): do not append them again.
func (q *Queue) Append(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	size, err := checkBatch(recs)
	if err != nil {
		return err
	}
	n := uint64(len(recs))

	q.wmu.Lock()
	defer q.wmu.Unlock()
	if q.isClosed() {
		return ErrClosed
	}
	if q.opts.SyncInterval > 0 {
		// Bound the memory: write out what is staged before staging more.
		// While nothing is being acknowledged (an outage, a backlog), the
		// records are bound for the disk anyway: write them in small
		// chunks, which stay in the CPU cache between Append and write(2).
		limit := q.opts.StagingBytes
		q.mu.Lock()
		live := q.stg.live
		if q.lastAck == 0 || q.now()-q.lastAck > int64(q.opts.SyncInterval) {
			limit = min(limit, idleStagingBytes)
		}
		q.mu.Unlock()
		if live > 0 && live+size > limit {
			if err := q.spill(false); err != nil {
				return err
			}
			q.kickFlusher()
		}
	}
	if err := q.makeRoom(size, n); err != nil {
		return err
	}
	if err := q.reserve(n); err != nil {
		return q.writeFailed(err)
	}

	now := time.Now()
	at := q.now()
	first := q.nextSeq
	var newest int64
	buf, offs := q.wbuf[:0], q.woffs[:0]
	for i := range recs {
		t := recs[i].Time
		if t.IsZero() {
			t = now
		}
		ns := t.UnixNano()
		newest = max(newest, ns)
		offs = append(offs, len(buf))
		buf = appendRecordFrame(buf, &recs[i], first+uint64(i), ns)
	}
	if cap(buf) <= 1<<20 {
		q.wbuf, q.woffs = buf, offs // reuse, unless one huge batch would pin its memory
	} else {
		q.wbuf, q.woffs = nil, nil
	}

	if q.opts.SyncInterval == 0 {
		// sync: always: write and fsync before returning, as one batch.
		if err := q.writeFrames(buf, first, first+n-1, newest, at, false, true); err != nil {
			return err
		}
	} else {
		q.mu.Lock()
		wasIdle := q.stg.liveCount() == 0
		q.stg.add(buf, offs, first, at, newest)
		q.lastSeq = first + n - 1
		q.st.Appended += n
		if wasIdle && (q.armed == 0 || q.armed > at+int64(q.opts.SyncInterval)) {
			signal(q.kick) // a new commit deadline
		}
		q.mu.Unlock()
	}

	q.nextSeq += n
	for i := range recs {
		recs[i].Seq = first + uint64(i)
		if recs[i].Time.IsZero() {
			recs[i].Time = now
		}
	}
	signal(q.ready)
	if q.opts.SyncInterval == 0 {
		if err := q.fsyncActive(); err != nil {
			return fmt.Errorf("queue: records %d..%d appended but not synced: %w", first, first+n-1, err)
		}
	}
	return nil
}

// checkBatch validates a batch before anything is written, clearing the
// Seq of every record (set again only when the batch is in), and returns
// its size as frames.
func checkBatch(recs []Record) (int64, error) {
	var size int64
	for i := range recs {
		recs[i].Seq = 0
		if err := validate(&recs[i]); err != nil {
			return 0, fmt.Errorf("queue: append record %d of %d: %w", i+1, len(recs), err)
		}
		size += frameSize(&recs[i])
	}
	return size, nil
}

// reserve makes sure the cursor file has reserved the next n numbers before
// any record carrying them is written, so that no number can be handed out
// twice, whatever a power cut destroys. Caller holds wmu.
func (q *Queue) reserve(n uint64) error {
	if q.nextSeq+n-1 <= q.reserved {
		return nil
	}
	q.cmu.Lock()
	defer q.cmu.Unlock()
	res := q.nextSeq + n - 1 + seqReserveBlock
	if err := q.persistLocked(res); err != nil {
		return err
	}
	q.reserved = res
	return nil
}

// writable returns the segment the next size bytes go to, sealing the active
// one when they would overflow it and creating a new one, named base (the
// Seq of the first record it will hold), when needed. A commit is never
// split, so one Append lives in one segment. Caller holds wmu.
func (q *Queue) writable(size int64, base uint64) (*segment, error) {
	q.mu.Lock()
	s, roll := q.active, q.rollNext
	q.rollNext = false
	q.mu.Unlock()
	if s != nil && (roll || (s.count > 0 && s.size+size+sealFrameSize > q.opts.SegmentBytes)) {
		if err := q.retire(s, true); err != nil {
			q.log.Warn("queue: sealing segment failed; Open will repair it", "segment", s.name(), "err", err)
		}
		s = nil
	}
	if s != nil {
		return s, nil
	}
	ns, err := q.createSegment(base)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.segs = append(q.segs, ns)
	q.active = ns
	q.used += ns.size
	q.dirDirty = true
	q.mu.Unlock()
	return ns, nil
}

// retire ends writing to s: sealed (seal frame, fsync, close) when it is
// healthy, only closed after a failed write, whose leftovers Open cuts off.
// A segment without records is removed instead, so that its name is free
// for the next segment. Caller holds wmu.
func (q *Queue) retire(s *segment, seal bool) error {
	var err error
	var sealBytes int64
	if s.count == 0 {
		s.f.Close()
		q.mu.Lock()
		q.dropFromList(s)
		q.mu.Unlock()
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("queue: remove empty segment %s: %w", s.name(), rerr)
		}
		q.mu.Lock()
		q.dirDirty = true
		q.mu.Unlock()
		return err
	}
	if seal {
		sealBytes, err = q.sealSegment(s)
	} else {
		s.f.Close()
	}
	q.mu.Lock()
	s.f = nil
	s.sealed = true
	s.size += sealBytes
	q.used += sealBytes
	if seal && err == nil {
		s.synced = s.size
		q.st.Syncs++
	}
	if err != nil {
		q.st.WriteErrors++
	}
	if q.active == s {
		q.active = nil
	}
	q.mu.Unlock()
	return err
}

// dropFromList removes s from the bookkeeping. Caller holds mu.
func (q *Queue) dropFromList(s *segment) {
	for i, t := range q.segs {
		if t == s {
			q.segs = append(q.segs[:i], q.segs[i+1:]...)
			q.used -= s.size
			break
		}
	}
	if q.active == s {
		q.active = nil
	}
}

// undoWrite cuts a failed, possibly partial write off the active segment.
// If even that fails the segment is retired and the next Append starts a
// new one; the committed size keeps the reader away from the leftovers
// either way. Caller holds wmu.
func (q *Queue) undoWrite(s *segment) {
	if err := s.f.Truncate(s.size); err != nil {
		q.log.Error("queue: cannot cut failed write off segment, retiring it", "segment", s.name(), "err", err)
		q.retire(s, false)
	}
}

// writeFailed counts a failed write and logs the first of a series.
func (q *Queue) writeFailed(err error) error {
	q.mu.Lock()
	q.st.WriteErrors++
	q.mu.Unlock()
	if q.failing.CompareAndSwap(false, true) {
		q.log.Error("queue: writes failing; retrying until they succeed", "dir", q.dir, "err", err)
	}
	return err
}

// writeRecovered ends a write-error episode.
func (q *Queue) writeRecovered() {
	if q.failing.Load() && q.failing.CompareAndSwap(true, false) {
		q.log.Info("queue: writes succeed again", "dir", q.dir)
	}
}

// noteWritten counts bytes written outside Append's batch path.
func (q *Queue) noteWritten(n int) {
	q.mu.Lock()
	q.st.BytesWritten += uint64(n)
	q.mu.Unlock()
}
