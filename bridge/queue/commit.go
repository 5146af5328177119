package queue

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// writeFrames writes the frames of records first..last (contiguous) to the
// active segment, rolling it when they do not fit. staged marks the live
// records of the staging area, which leave it in the same critical section
// in which the segment takes them over, so that every record is in exactly
// one of the two at any moment; otherwise buf is a batch that Append writes
// directly (sync: always), counted as appended here. at is when the oldest
// record was appended, for the commit deadline. pad asks for a pad frame up
// to the next page boundary when an fsync follows (see padding). Caller
// holds wmu.
func (q *Queue) writeFrames(buf []byte, first, last uint64, newest, at int64, staged, pad bool) error {
	n := last - first + 1
	size := int64(len(buf))
	s, err := q.writable(size, first)
	if err != nil {
		return q.writeFailed(err)
	}
	var padding int
	if pad {
		padding = q.padding(s, size)
	}
	// Within a segment, every Seq above the persisted cursor is present
	// (lost records excepted): that is what lets Stats and the reader count
	// from the numbering. Records acknowledged before their commit leave a
	// gap, so the cursor must pass it before the records after it are
	// written.
	q.mu.Lock()
	gap := s.count > 0 && first > s.last+1 && first-1 > q.durAcked
	q.mu.Unlock()
	if gap {
		q.cmu.Lock()
		err := q.persistLocked(q.reserved)
		q.cmu.Unlock()
		if err != nil {
			return q.writeFailed(err)
		}
	}
	// The writer alone changes s.size, so it may read it without mu.
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		q.undoWrite(s)
		return q.writeFailed(fmt.Errorf("queue: write %d records to segment %s: %w", n, s.name(), err))
	}
	if padding > 0 {
		q.padBuf = appendPadFrame(q.padBuf[:0], padding)
		if _, err := s.f.WriteAt(q.padBuf, s.size+size); err != nil {
			q.undoWrite(s)
			return q.writeFailed(fmt.Errorf("queue: pad segment %s: %w", s.name(), err))
		}
		size += int64(padding)
	}
	q.mu.Lock()
	s.size += size
	if s.count == 0 {
		s.first = first
		s.firstTime = frameTime(buf)
	}
	s.count += n
	s.last = last
	s.lastTime = max(s.lastTime, newest)
	q.used += size
	q.diskLast = last
	if staged {
		q.stg.reset()
		q.stg.wrFrom, q.stg.wrTo = 0, 0
	} else {
		q.lastSeq = last
		q.st.Appended += n
	}
	q.st.BytesWritten += uint64(size)
	if q.unsyncedAt == 0 {
		q.unsyncedAt = at
	}
	q.mu.Unlock()
	q.writeRecovered()
	return nil
}

// padding returns the length of the pad frame that ends a write of size
// bytes to s on a page boundary, or 0. After an fsync the kernel counts (and
// the card writes) a page again when the next commit adds to it: ending a
// commit that is about to be fsynced on a page boundary saves that page
// once per commit — half a page per commit on average, e.g. 0.1 bytes per
// payload byte at 1,000 records/s during an outage. The pad costs the same
// bytes of space, so it is used only where it is at most a quarter of the
// commit (a commit of at least 4 pages), and only where it fits the segment
// and the quota. Caller holds wmu.
func (q *Queue) padding(s *segment, size int64) int {
	end := s.size + size
	rem := (padMax - end%padMax) % padMax
	if rem < minFrameSize || rem*4 > size || end+rem+sealFrameSize > q.opts.SegmentBytes {
		return 0
	}
	if q.opts.MaxBytes > 0 {
		q.mu.Lock()
		over := q.used+q.stg.live+size+rem+segOverhead > q.opts.MaxBytes
		q.mu.Unlock()
		if over {
			return 0
		}
	}
	return int(rem)
}

// spill writes the staged records not acknowledged yet to the active segment
// and forgets the acknowledged ones; the fsync is left to the caller (pad:
// one follows at once). The
// records stay readable from staging while they are written, so Next never
// waits for the disk; only after the write does the segment's committed size
// take them over, in the same critical section that empties the staging
// area. On a failed write the staging area is kept as it was and the next
// commit tries again. Caller holds wmu.
func (q *Queue) spill(pad bool) error {
	q.mu.Lock()
	st := &q.stg
	q.dropStaged(st.trim(q.acked))
	if st.liveCount() == 0 {
		st.reset()
		q.mu.Unlock()
		return nil
	}
	from, last := st.liveFirst(), st.last()
	buf := st.buf[st.ents[st.head].off:] // only wmu holders change buf
	at, newest := st.ents[st.head].at, st.newest
	st.wrFrom, st.wrTo = from, last
	q.mu.Unlock()

	err := q.writeFrames(buf, from, last, newest, at, true, pad)
	if err != nil {
		q.mu.Lock()
		st.wrFrom, st.wrTo = 0, 0
		q.mu.Unlock()
	}
	return err
}

// dropStaged counts n live staged records dropped because they were
// acknowledged before their commit. Caller holds mu.
func (q *Queue) dropStaged(n int) {
	q.st.AckedUnwritten += uint64(n)
}

// Sync writes the staged records not acknowledged yet and fsyncs them now,
// instead of at the next group commit.
func (q *Queue) Sync() error {
	if q.isClosed() {
		return ErrClosed
	}
	return q.commit()
}

// commit is the group commit: it writes what is staged and not acknowledged,
// then fsyncs. Records written but not fsynced count as unsynced until the
// fsync succeeds.
func (q *Queue) commit() error {
	q.wmu.Lock()
	err := q.spill(true)
	q.wmu.Unlock()
	if err != nil {
		return err
	}
	return q.fsyncActive()
}

// fsyncActive fsyncs the active segment and, after a segment was created or
// removed, the directory. It runs without wmu and mu, so Append, Next and
// Ack go on during the fsync, and concurrently with write(2) to the same
// file: everything written before it started is covered.
func (q *Queue) fsyncActive() error {
	q.smu.Lock()
	defer q.smu.Unlock()
	q.mu.Lock()
	s := q.active
	var f file
	var size int64
	if s != nil && s.size > s.synced {
		f, size = s.f, s.size
	}
	dir := q.dirDirty
	q.dirDirty = false
	unsynced := q.unsyncedAt
	q.mu.Unlock()
	if f == nil && !dir {
		q.mu.Lock()
		if q.unsyncedAt == unsynced && (q.active == nil || q.active.size <= q.active.synced) {
			q.unsyncedAt = 0 // sealed meanwhile, which fsyncs
		}
		q.mu.Unlock()
		return nil
	}
	var ferr, derr error
	if f != nil {
		// ErrClosed: the writer sealed the segment meanwhile, fsyncing it.
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			ferr = fmt.Errorf("queue: fsync segment %s: %w", s.name(), err)
		}
	}
	if dir {
		if err := q.syncDir(q.dir); err != nil {
			derr = fmt.Errorf("queue: %w", err)
		}
	}
	q.mu.Lock()
	if f != nil {
		if ferr == nil {
			s.synced = max(s.synced, size)
			q.st.Syncs++
		} else {
			// After a failed fsync the kernel may have dropped the dirty
			// pages and a retry would report success falsely: write on in a
			// fresh segment.
			q.rollNext = true
		}
	}
	if ferr == nil && q.unsyncedAt == unsynced && (q.active == nil || q.active.size <= q.active.synced) {
		// Nothing was written during the fsync; otherwise the deadline stays
		// and the next commit comes at once.
		q.unsyncedAt = 0
	}
	if derr != nil {
		q.dirDirty = true
	}
	err := errors.Join(ferr, derr)
	q.mu.Unlock()
	if err != nil {
		return q.writeFailed(err)
	}
	return nil
}

// kickFlusher wakes the flusher to look at its deadlines again.
func (q *Queue) kickFlusher() { signal(q.kick) }

// deadlines returns when the next group commit and the next cursor write
// are due (0 = nothing to do). The commit is due SyncInterval after the
// oldest record that is neither acknowledged nor fsynced was appended: while
// the cloud acknowledges every record within the sync window, the deadline
// keeps moving and no commit ever comes. Caller holds mu.
func (q *Queue) deadlines() (commitAt, cursorAt int64) {
	oldest := q.unsyncedAt
	if q.stg.liveCount() > 0 {
		if at := q.stg.ents[q.stg.head].at; oldest == 0 || at < oldest {
			oldest = at
		}
	}
	if oldest != 0 {
		commitAt = max(oldest+int64(q.opts.SyncInterval), q.retryAt)
	}
	if q.curDirtyAt != 0 {
		cursorAt = q.curDirtyAt + int64(q.opts.CursorInterval)
	}
	return commitAt, cursorAt
}

// noteAckedOnDisk starts the cursor deadline when an acknowledgement covers
// a record on disk that the persisted cursor does not. Caller holds mu.
func (q *Queue) noteAckedOnDisk() {
	if q.curDirtyAt != 0 || min(q.acked, q.diskLast) <= q.durAcked {
		return
	}
	q.curDirtyAt = q.now()
	if q.armed == 0 || q.armed > q.curDirtyAt+int64(q.opts.CursorInterval) {
		signal(q.kick)
	}
}

// run is the flusher goroutine: group commits, cursor persistence and
// segment removal, each when its deadline comes. The timer is armed only
// when there is work, so an idle gateway does not wake up. A panic is
// logged and the loop restarted: the queue must not stop committing.
func (q *Queue) run() {
	defer q.wg.Done()
	for !q.runOnce() {
	}
}

func (q *Queue) runOnce() (stopped bool) {
	defer func() {
		if p := recover(); p != nil {
			q.log.Error("queue: flusher panicked, restarting it", "panic", p)
		}
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var expC <-chan time.Time
	if q.opts.MaxAge > 0 {
		tk := time.NewTicker(min(max(q.opts.MaxAge/10, time.Second), time.Minute))
		defer tk.Stop()
		expC = tk.C
	}
	for {
		select {
		case <-q.stop:
			return true
		case <-q.kick:
		case <-timer.C:
		case now := <-expC:
			q.maintain(now)
		}
		if next := q.flushDue(); next > 0 {
			timer.Reset(time.Duration(next - q.now()))
		} else {
			timer.Stop()
		}
	}
}

// flushDue does what is due now and returns when the next deadline comes
// (0 = none), recorded in q.armed for the writers' benefit.
func (q *Queue) flushDue() int64 {
	q.mu.Lock()
	commitAt, cursorAt := q.deadlines()
	q.mu.Unlock()
	now := q.now()
	if commitAt != 0 && commitAt <= now {
		if err := q.commit(); err != nil {
			// Failures are counted and logged inside; the records stay
			// staged or unsynced and the commit is tried again shortly.
			q.mu.Lock()
			q.retryAt = q.now() + int64(max(q.opts.SyncInterval, 10*time.Millisecond))
			q.mu.Unlock()
		} else {
			q.mu.Lock()
			q.retryAt = 0
			q.mu.Unlock()
		}
	}
	if cursorAt != 0 && cursorAt <= now {
		q.maintain(time.Now())
	}
	q.mu.Lock()
	commitAt, cursorAt = q.deadlines()
	next := commitAt
	if cursorAt != 0 && (next == 0 || cursorAt < next) {
		next = cursorAt
	}
	q.armed = next
	q.mu.Unlock()
	return next
}
