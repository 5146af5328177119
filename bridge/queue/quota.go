package queue

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"
)

// makeRoom applies MaxBytes before a batch of size bytes and n records is
// written. Segments already acknowledged or expired go first; then the
// policy decides. Caller holds wmu.
func (q *Queue) makeRoom(size int64, n uint64) error {
	limit := q.opts.MaxBytes
	if limit <= 0 {
		return nil
	}
	need := size + segOverhead
	if need > limit {
		q.refuse(n)
		return fmt.Errorf("queue: batch of %d records (%d bytes) is larger than MaxBytes %d: %w", n, size, limit, ErrFull)
	}
	if q.fits(need) {
		return nil
	}
	if q.reclaimable(time.Now()) {
		q.maintain(time.Now())
		if q.fits(need) {
			return nil
		}
	}
	if q.opts.WhenFull == DropNewest {
		q.refuse(n)
		return fmt.Errorf("queue: MaxBytes %d reached, %d records refused: %w", limit, n, ErrFull)
	}
	for !q.fits(need) {
		if q.dropOldest() {
			continue
		}
		// All that is left is the active segment: seal it so it can go too.
		q.mu.Lock()
		s := q.active
		q.mu.Unlock()
		if s == nil || s.count == 0 {
			break
		}
		if err := q.retire(s, true); err != nil {
			q.log.Warn("queue: sealing segment failed; Open will repair it", "segment", s.name(), "err", err)
		}
	}
	if !q.fits(need) {
		q.refuse(n)
		return fmt.Errorf("queue: MaxBytes %d reached, %d records refused: %w", limit, n, ErrFull)
	}
	return nil
}

// fits reports whether need more bytes stay within MaxBytes, and ends a
// quota episode once the log has shrunk well below the limit: the hysteresis
// keeps a log hovering at the limit from logging on every batch.
func (q *Queue) fits(need int64) bool {
	q.mu.Lock()
	// Staged records count: a commit will write those not acknowledged.
	ok := q.used+q.stg.live+need <= q.opts.MaxBytes
	var n uint64
	var d time.Duration
	ended := false
	if q.full.on && q.used+q.stg.live+need <= q.opts.MaxBytes/4*3 {
		n, d, ended = q.full.finish()
	}
	q.mu.Unlock()
	if ended {
		q.log.Warn("queue: below quota again", "dir", q.dir, "policy", q.opts.WhenFull, "dropped", n, "for", d.Round(time.Second))
	}
	return ok
}

// refuse counts a batch turned away.
func (q *Queue) refuse(n uint64) {
	q.mu.Lock()
	q.st.Dropped += n
	started := q.full.add(n)
	q.mu.Unlock()
	if started {
		q.log.Warn("queue: quota reached, dropping records", "dir", q.dir, "policy", q.opts.WhenFull, "max_bytes", q.opts.MaxBytes)
	}
}

// dropOldest deletes the oldest segment unless it is the one being written,
// counting its unacknowledged records as dropped. Caller holds wmu.
func (q *Queue) dropOldest() bool {
	q.mu.Lock()
	if len(q.segs) == 0 || q.segs[0] == q.active {
		q.mu.Unlock()
		return false
	}
	s := q.segs[0]
	n := s.unacked(max(q.acked, q.lostThrough))
	q.lostThrough = max(q.lostThrough, s.last)
	q.st.Dropped += n
	started := q.full.add(n)
	q.dropFromList(s)
	q.dirDirty = true
	q.mu.Unlock()
	if started {
		q.log.Warn("queue: quota reached, dropping records", "dir", q.dir, "policy", q.opts.WhenFull, "max_bytes", q.opts.MaxBytes)
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.log.Error("queue: cannot remove dropped segment", "segment", s.name(), "err", err)
	}
	return true
}

// reclaimable reports whether maintain would free the oldest segment.
func (q *Queue) reclaimable(now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.segs) < 2 || q.segs[0] == q.active {
		return false
	}
	s := q.segs[0]
	return s.count == 0 || s.last <= q.acked || s.lastTime < q.expiryCutoff(now)
}

// expiryCutoff is the enqueue time (Unix ns) below which records expire.
func (q *Queue) expiryCutoff(now time.Time) int64 {
	if q.opts.MaxAge <= 0 {
		return math.MinInt64
	}
	return now.Add(-q.opts.MaxAge).UnixNano()
}

// maintain persists the cursor if it moved, then removes the segments it
// made redundant and the segments that expired. Removal waits for the
// cursor write, so a crash never finds the cursor behind a hole in the log.
func (q *Queue) maintain(now time.Time) {
	q.cmu.Lock()
	var err error
	q.mu.Lock()
	// Only acknowledgements of records on disk are worth a write: the
	// others cannot be delivered again.
	needed := min(q.acked, q.diskLast) > q.persisted.acked
	q.mu.Unlock()
	if needed {
		err = q.persistLocked(q.reserved)
	}
	done := q.persisted.acked
	q.cmu.Unlock()
	if err != nil {
		q.writeFailed(err)
		q.mu.Lock()
		q.curDirtyAt = q.now() // try again after another CursorInterval
		q.mu.Unlock()
	}
	if err := q.removeSegments(q.collectVictims(done, now)); err != nil {
		q.log.Error("queue: removing segments", "dir", q.dir, "err", err)
	}
}

// persistLocked writes the cursor if it changed. Caller holds cmu.
func (q *Queue) persistLocked(reserved uint64) error {
	q.mu.Lock()
	c := cursorState{acked: q.acked, reserved: max(reserved, q.acked)}
	q.mu.Unlock()
	if c == q.persisted {
		return nil
	}
	if err := q.writeCursor(c); err != nil {
		return err
	}
	q.persisted = c
	q.mu.Lock()
	q.durAcked = c.acked
	q.st.CursorWrites++
	if min(q.acked, q.diskLast) <= c.acked {
		q.curDirtyAt = 0
	}
	q.mu.Unlock()
	return nil
}

// collectVictims takes off the list, oldest first, the segments whose
// records are all acknowledged as of the persisted cursor (done) or expired.
// The newest segment stays even when drained: its name and records are a
// second record of the Seq high-water mark, should the cursor be lost.
func (q *Queue) collectVictims(done uint64, now time.Time) []*segment {
	q.mu.Lock()
	cutoff := q.expiryCutoff(now)
	var victims []*segment
	var expired uint64
	for len(q.segs) > 1 && q.segs[0] != q.active {
		s := q.segs[0]
		if !(s.count == 0 || s.last <= done) {
			if s.lastTime >= cutoff {
				break
			}
			expired += s.unacked(max(q.acked, q.lostThrough))
			q.lostThrough = max(q.lostThrough, s.last)
		}
		q.dropFromList(s)
		victims = append(victims, s)
	}
	q.st.Expired += expired
	started := expired > 0 && q.expiry.add(expired)
	q.mu.Unlock()
	if started {
		q.log.Warn("queue: records older than MaxAge expired", "dir", q.dir, "max_age", q.opts.MaxAge, "records", expired)
	}
	return victims
}

// removeSegments deletes the files of segments already off the list and
// fsyncs the directory.
func (q *Queue) removeSegments(victims []*segment) error {
	if len(victims) == 0 {
		return nil
	}
	var errs []error
	for _, s := range victims {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("queue: remove segment %s: %w", s.name(), err))
		}
	}
	if err := q.syncDir(q.dir); err != nil {
		q.mu.Lock()
		q.dirDirty = true
		q.mu.Unlock()
		errs = append(errs, fmt.Errorf("queue: %w", err))
	}
	return errors.Join(errs...)
}

// episode turns a run of drops into two log lines, one when it starts and
// one with the total when it ends, instead of one line per record.
type episode struct {
	on    bool
	n     uint64
	since time.Time
}

// add counts n events and reports whether this started the episode.
func (e *episode) add(n uint64) bool {
	started := !e.on
	if started {
		*e = episode{on: true, since: time.Now()}
	}
	e.n += n
	return started
}

// finish ends the episode and returns its total and duration.
func (e *episode) finish() (uint64, time.Duration, bool) {
	if !e.on {
		return 0, 0, false
	}
	n, d := e.n, time.Since(e.since)
	*e = episode{}
	return n, d, true
}
