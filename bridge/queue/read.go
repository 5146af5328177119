package queue

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"time"
)

// maxMarks bounds the rewind marks: one per Next call that returned records.
// The sender's window is at most 20 records, so a few dozen cover it; when
// they do not, Rewind scans from the start of the segment instead.
const maxMarks = 64

// reader is the read cursor, owned by the sender through rmu.
type reader struct {
	base  uint64   // segment being read; when it is gone, the next one
	off   int64    // offset of the next frame in it; 0 means just after the header
	last  uint64   // records numbered up to here are not returned (again)
	prev  uint64   // Seq of the last valid frame seen in this segment, for resync and loss counts
	f     file     // read handle of segment fSeg
	fSeg  *segment // by identity: an empty segment may be replaced by one of the same name
	win   window
	marks []mark
}

// mark remembers where a record handed out by Next lives, so that Rewind
// can go back to it without scanning. For a record handed out from staging
// it is where the disk ended then: a commit can only write the record at or
// after that place. prev is the reader's prev to restore there.
type mark struct {
	seq, base, prev uint64
	off             int64
}

func (r *reader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
		r.win = window{}
	}
}

// tally collects what one pass over a segment found, to be booked under mu.
type tally struct {
	expired        uint64
	expMin, expMax uint64
	damage         []damage
	delivered      bool
}

// damage is a region of a segment that failed its CRC.
type damage struct {
	from, to int64
	lost     uint64 // records lost in it, from the gap in the numbering
}

// Next returns up to max records after the read cursor, in Seq order, and
// advances the cursor past them. It does not block: with nothing to read it
// returns an empty slice (wait on Ready). Records older than MaxAge are
// skipped and counted as expired; damaged records are skipped, counted and
// logged, and reading resumes at the next valid record. The records are
// copies the caller may keep.
func (q *Queue) Next(max int) ([]Record, error) {
	if max <= 0 {
		return nil, nil
	}
	q.rmu.Lock()
	defer q.rmu.Unlock()
	r := &q.rd
	now := time.Now()
	var out []Record
	for len(out) < max {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			if len(out) == 0 {
				return nil, ErrClosed
			}
			break
		}
		s := q.segAtOrAfter(r.base)
		if s != nil && (s.base != r.base || r.off == 0) {
			r.base, r.off, r.prev = s.base, segHeaderSize, 0
			if s.first > 0 {
				r.prev = s.first - 1
			}
		}
		if s != nil && r.off >= s.size && s.sealed {
			r.base, r.off = s.base+1, 0
			q.mu.Unlock()
			continue
		}
		cutoff := q.expiryCutoff(now)
		if s == nil || r.off >= s.size {
			// The disk is read to its end: the rest is staged. The check and
			// the read share one hold of mu, and a commit moves records from
			// staging to a segment within one hold of mu too, so no record
			// can slip between the two and be skipped.
			var t tally
			q.readStaged(r, &out, max, &t, cutoff)
			q.mu.Unlock()
			q.book(nil, &t)
			break
		}
		end, done, acked, maxSeq, segLast := s.size, s.sealed, q.acked, q.lastSeq, s.last
		q.mu.Unlock()

		if err := r.open(q, s); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Removed since the snapshot (acknowledged, dropped or
				// expired: counted by whoever removed it) or by hand.
				q.log.Warn("queue: segment vanished while reading", "segment", s.name())
				r.base, r.off = s.base+1, 0
				continue
			}
			return out, err
		}
		r.win.reset(r.f, end)
		var t tally
		err := q.readFrames(r, s, &out, max, &t, end, acked, maxSeq, segLast, cutoff)
		if err != nil && done {
			// An unreadable sector stays unreadable: skip the rest of the
			// segment as damaged instead of failing every Next from now on.
			q.log.Error("queue: segment unreadable, skipping the rest of it", "segment", s.name(), "offset", r.off, "err", err)
			d := damage{from: r.off, to: end}
			if from := above(r.prev, acked); segLast > from {
				d.lost = segLast - from
			}
			t.damage = append(t.damage, d)
			r.off, err = end, nil
		}
		q.book(s, &t)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// above is max for uint64, where Next's parameter shadows the builtin.
func above(a, b uint64) uint64 { return max(a, b) }

// readStaged hands out staged records after the read cursor. Caller holds mu.
func (q *Queue) readStaged(r *reader, out *[]Record, max int, t *tally, cutoff int64) {
	st := &q.stg
	if st.liveCount() == 0 {
		return
	}
	seq := r.last + 1
	if lf := st.liveFirst(); seq < lf {
		seq = lf
	}
	for ; seq <= st.last() && len(*out) < max; seq++ {
		f, _, err := decodeFrame(st.frame(int(seq - st.first)))
		if err != nil {
			panic(fmt.Sprintf("queue: staged record %d does not decode: %v", seq, err))
		}
		r.last = seq
		if f.timeNs < cutoff {
			if t.expired == 0 {
				t.expMin = seq
			}
			t.expired++
			t.expMax = seq
			continue
		}
		if len(*out) == 0 {
			r.pushMark(mark{seq: seq, base: r.base, off: r.off, prev: r.prev})
		}
		*out = append(*out, f.record())
		t.delivered = true
	}
}

// readFrames decodes frames of segment s from r.off up to end into out.
func (q *Queue) readFrames(r *reader, s *segment, out *[]Record, max int, t *tally, end int64, acked, maxSeq, segLast uint64, cutoff int64) error {
	for r.off < end && len(*out) < max {
		start := r.off
		f, n, ok, err := r.win.frameAt(start)
		if err != nil {
			return fmt.Errorf("queue: read segment %s at offset %d: %w", s.name(), start, err)
		}
		if ok && f.kind == kindRecord && (f.seq <= r.prev || f.seq > maxSeq) {
			ok = false // valid bytes, but not in this log's order
		}
		if !ok {
			next, found, err := r.win.resync(start+1, r.prev, maxSeq)
			if err != nil {
				return fmt.Errorf("queue: read segment %s at offset %d: %w", s.name(), start, err)
			}
			upTo := segLast // lost up to the end of the segment ...
			if found {
				if g, _, ok, _ := r.win.frameAt(next); ok && g.kind == kindRecord {
					upTo = g.seq - 1 // ... or up to the next valid record
				}
			}
			// Records at or below the cursor are delivered already, and
			// records acknowledged before their commit were never written:
			// only the numbers above it count as lost.
			d := damage{from: start, to: next}
			if from := above(r.prev, acked); upTo > from {
				d.lost = upTo - from
			}
			t.damage = append(t.damage, d)
			r.off = next
			continue
		}
		r.off += int64(n)
		if f.kind == kindSeal {
			r.off = end
			continue
		}
		if f.kind == kindPad {
			continue
		}
		r.prev = f.seq
		if f.seq <= r.last || f.seq <= acked {
			continue
		}
		r.last = f.seq
		if f.timeNs < cutoff {
			if t.expired == 0 {
				t.expMin = f.seq
			}
			t.expired++
			t.expMax = f.seq
			continue
		}
		if len(*out) == 0 {
			r.pushMark(mark{seq: f.seq, base: s.base, off: start, prev: f.seq - 1})
		}
		*out = append(*out, f.record())
		t.delivered = true
	}
	return nil
}

// book enters a pass's findings in the counters, each damaged region and
// each expired record once however often Rewind makes the reader pass it.
func (q *Queue) book(s *segment, t *tally) {
	if t.expired == 0 && len(t.damage) == 0 && !t.delivered {
		return
	}
	var report []damage
	var expStarted bool
	var expN uint64
	var expD time.Duration
	var expEnded bool
	q.mu.Lock()
	for _, d := range t.damage { // only disk reads find damage: s != nil
		if d.from < s.badUpTo {
			continue
		}
		s.badUpTo = d.to
		q.st.CorruptBytes += uint64(d.to - d.from)
		q.st.CorruptRecords += d.lost
		report = append(report, d)
	}
	if t.expired > 0 && t.expMax > q.lostThrough {
		n := t.expired
		if t.expMin <= q.lostThrough {
			n = min(n, t.expMax-q.lostThrough)
		}
		q.lostThrough = t.expMax
		q.st.Expired += n
		expStarted = q.expiry.add(n)
	} else if t.delivered && t.expired == 0 {
		expN, expD, expEnded = q.expiry.finish()
	}
	q.mu.Unlock()
	for _, d := range report {
		q.log.Warn("queue: corrupt records skipped", "segment", s.name(), "offset", d.from, "bytes", d.to-d.from, "records", d.lost)
	}
	if expStarted {
		q.log.Warn("queue: records older than MaxAge expired", "dir", q.dir, "max_age", q.opts.MaxAge)
	}
	if expEnded {
		q.log.Info("queue: records no longer expiring", "dir", q.dir, "expired", expN, "for", expD.Round(time.Second))
	}
}

// open makes r.f the read handle of s.
func (r *reader) open(q *Queue, s *segment) error {
	if r.f != nil && r.fSeg == s {
		return nil
	}
	r.closeFile()
	f, err := q.openFile(s.path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("queue: open segment %s for reading: %w", s.name(), err)
	}
	r.f, r.fSeg = f, s
	return nil
}

func (r *reader) pushMark(m mark) {
	if len(r.marks) == maxMarks {
		r.marks = append(r.marks[:0], r.marks[1:]...)
	}
	r.marks = append(r.marks, m)
}

// segAtOrAfter returns the oldest segment whose base is at least base.
// Caller holds mu.
func (q *Queue) segAtOrAfter(base uint64) *segment {
	i := sort.Search(len(q.segs), func(i int) bool { return q.segs[i].base >= base })
	if i == len(q.segs) {
		return nil
	}
	return q.segs[i]
}

// Rewind moves the read cursor back to the oldest unacknowledged record, so
// that the next Next resends everything not acknowledged yet. It is cheap:
// Next remembers where the records it handed out live, and only when the
// sender has read far ahead of its acknowledgements does the next Next scan
// from the start of a segment.
func (q *Queue) Rewind() {
	q.rmu.Lock()
	defer q.rmu.Unlock()
	r := &q.rd
	q.mu.Lock()
	defer q.mu.Unlock()
	acked := q.acked
	r.last = acked
	// The newest mark at or before the first unacknowledged record.
	for i := len(r.marks) - 1; i >= 0; i-- {
		m := r.marks[i]
		if m.seq > acked+1 {
			continue
		}
		if s := q.segAtOrAfter(m.base); s != nil && s.base == m.base {
			r.base, r.off, r.prev = m.base, m.off, m.prev
			r.marks = append(r.marks[:0], r.marks[i:]...)
			return
		}
		break
	}
	// No usable mark: scan from the start of the oldest segment that holds
	// an unacknowledged record, skipping the acknowledged ones; when none
	// does, the disk has nothing to resend and the reader goes to its end.
	r.marks = r.marks[:0]
	r.base, r.off = 0, 0
	for _, s := range q.segs {
		if s.count == 0 || s.last <= acked {
			continue
		}
		r.base = s.base
		return
	}
	if n := len(q.segs); n > 0 {
		s := q.segs[n-1]
		r.base = s.base + 1
		if !s.sealed {
			r.base, r.off, r.prev = s.base, s.size, s.last
		}
	}
}

// Ack acknowledges every record with Seq <= seq. Acknowledgements are
// cumulative: a lower seq than before is a no-op, and seq beyond the newest
// record counts as the newest. Staged records it covers are dropped and
// never written. When it covers records on disk, the cursor file is written
// within CursorInterval; segments become removable once it has been.
func (q *Queue) Ack(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	seq = min(seq, q.lastSeq)
	if seq <= q.acked {
		return nil
	}
	from := max(q.acked, q.lostThrough)
	for _, s := range q.segs {
		if s.first > seq {
			break
		}
		q.st.Acked += s.unacked(from) - s.unacked(max(seq, from))
	}
	st := &q.stg
	q.st.Acked += st.unacked(from) - st.unacked(max(seq, from))
	q.acked = seq
	q.lastAck = q.now()
	if n := st.trim(seq); n > 0 {
		if st.wrTo != 0 {
			// A commit is writing [wrFrom, wrTo]: those reach the disk.
			lo, hi := st.liveFirst()-uint64(n), st.liveFirst()-1
			if a, b := max(lo, st.wrFrom), min(hi, st.wrTo); b >= a {
				n -= int(b - a + 1)
			}
		}
		q.dropStaged(n)
	}
	q.noteAckedOnDisk()
	return nil
}
