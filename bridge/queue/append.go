package queue

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Append adds the batch to the log, all or nothing. It numbers the records
// (writing Seq, and Time when it was zero, back into recs) and hands them to
// the kernel in one write(2) before it returns; they reach the medium with
// the next group commit, or before Append returns when SyncInterval is 0.
//
// After Append returns, recs[i].Seq != 0 exactly when the record is in the
// log. Errors wrap ErrFull (quota), ErrInvalidRecord, ErrClosed or the cause
// of a failed write (ENOSPC, EIO); after a failed write the log is as before
// and the next Append tries again, so a full disk heals by itself once space
// returns. With SyncInterval 0 an fsync failure is reported although the
// records were appended (their Seq is set): do not append them again.
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
	if err := q.makeRoom(size, n); err != nil {
		return err
	}
	if err := q.reserve(n); err != nil {
		return q.writeFailed(err)
	}
	s, err := q.writable(size)
	if err != nil {
		return q.writeFailed(err)
	}

	now := time.Now()
	first := q.nextSeq
	var newest int64
	buf := q.wbuf[:0]
	for i := range recs {
		t := recs[i].Time
		if t.IsZero() {
			t = now
		}
		ns := t.UnixNano()
		newest = max(newest, ns)
		buf = appendRecordFrame(buf, &recs[i], first+uint64(i), ns)
	}
	if cap(buf) <= 1<<20 {
		q.wbuf = buf // reuse, unless one huge batch would pin its memory
	} else {
		q.wbuf = nil
	}
	// The writer alone changes s.size, so it may read it without mu.
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		q.undoWrite(s)
		return q.writeFailed(fmt.Errorf("queue: append %d records to segment %s: %w", n, s.name(), err))
	}

	q.mu.Lock()
	s.size += int64(len(buf))
	if s.count == 0 {
		s.first = first
	}
	s.count += n
	s.last = first + n - 1
	s.lastTime = max(s.lastTime, newest)
	q.lastSeq = s.last
	q.used += int64(len(buf))
	q.st.BytesWritten += uint64(len(buf))
	q.st.Appended += n
	q.mu.Unlock()

	q.nextSeq += n
	for i := range recs {
		recs[i].Seq = first + uint64(i)
		if recs[i].Time.IsZero() {
			recs[i].Time = now
		}
	}
	signal(q.ready)
	if q.opts.SyncInterval == 0 {
		if err := q.sync(); err != nil {
			return fmt.Errorf("queue: records %d..%d appended but not synced: %w", first, first+n-1, err)
		}
	} else {
		signal(q.kickSync)
	}
	q.writeRecovered()
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
// one when they would overflow it and creating a new one when needed. A
// batch is never split, so one Append lives in one segment. Caller holds wmu.
func (q *Queue) writable(size int64) (*segment, error) {
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
	ns, err := q.createSegment(q.nextSeq)
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
		q.log.Error("queue: writes failing; appends are refused until they succeed", "dir", q.dir, "err", err)
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

// Sync fsyncs appended records now instead of at the next group commit.
func (q *Queue) Sync() error {
	if q.isClosed() {
		return ErrClosed
	}
	return q.sync()
}

// sync is the group commit: it fsyncs the active segment and, after a
// segment was created or removed, the directory. It runs without mu, so
// Next and Ack go on during the fsync, and concurrently with write(2) to the
// same file: everything written before it started is covered.
func (q *Queue) sync() error {
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
	q.mu.Unlock()
	if f == nil && !dir {
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
		if err := syncDir(q.dir); err != nil {
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

// run is the flusher goroutine: group commits, cursor persistence and
// segment removal. Timers are armed only when there is work, so an idle
// gateway does not wake up. A panic is logged and the loop restarted: the
// queue must not stop committing.
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
	syncT := time.NewTimer(time.Hour)
	syncT.Stop()
	curT := time.NewTimer(time.Hour)
	curT.Stop()
	defer syncT.Stop()
	defer curT.Stop()
	var syncC, curC, expC <-chan time.Time
	if q.opts.MaxAge > 0 {
		tk := time.NewTicker(min(max(q.opts.MaxAge/10, time.Second), time.Minute))
		defer tk.Stop()
		expC = tk.C
	}
	for {
		select {
		case <-q.stop:
			return true
		case <-q.kickSync:
			if syncC == nil {
				syncT.Reset(q.opts.SyncInterval)
				syncC = syncT.C
			}
		case <-syncC:
			syncC = nil
			q.sync() // failures are counted and logged inside
		case <-q.kickAck:
			if curC == nil {
				curT.Reset(q.opts.CursorInterval)
				curC = curT.C
			}
		case <-curC:
			curC = nil
			q.maintain(time.Now())
		case now := <-expC:
			q.maintain(now)
		}
	}
}
