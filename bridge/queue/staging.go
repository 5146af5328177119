package queue

// DefaultStagingBytes bounds the records held in memory between group
// commits; beyond it Append writes them out early.
const DefaultStagingBytes = 1 << 20

// idleStagingBytes is the staging bound while no acknowledgement has come
// for a sync interval: then the records will be written anyway.
const idleStagingBytes = 64 << 10

// staging is the tail of the log that is not on disk yet: records appended
// since the last commit, held as the frames a commit writes, so that a
// record the cloud acknowledges before its commit never touches the card.
// Records are numbered contiguously: ents[i] is record Seq first+i. All
// fields are guarded by Queue.mu; buf and ents change only under wmu too,
// so a writer holding wmu may read them without mu.
type staging struct {
	buf    []byte
	ents   []stEntry
	first  uint64 // Seq of ents[0]; meaningless while ents is empty
	head   int    // ents[:head] are acknowledged: dead, dropped at the next commit
	live   int64  // bytes of ents[head:]
	newest int64  // newest enqueue time (Unix ns) of the staged records
	// While a commit writes ents[head:] (it holds wmu, not mu), [wrFrom,
	// wrTo] is that range: records acknowledged meanwhile did reach the
	// disk and are not counted as AckedUnwritten.
	wrFrom, wrTo uint64
}

// stEntry locates one staged record.
type stEntry struct {
	off int   // of its frame in buf
	at  int64 // when Append staged it, ns on the queue's monotonic clock
}

// count is the number of records staged, acknowledged ones included.
func (s *staging) count() int { return len(s.ents) }

// last is the Seq of the newest staged record (first-1 when empty).
func (s *staging) last() uint64 { return s.first + uint64(len(s.ents)) - 1 }

// liveFirst is the Seq of the oldest staged record not acknowledged.
func (s *staging) liveFirst() uint64 { return s.first + uint64(s.head) }

// liveCount is the number of staged records not acknowledged.
func (s *staging) liveCount() int { return len(s.ents) - s.head }

// frame returns the frame of ents[i].
func (s *staging) frame(i int) []byte {
	end := len(s.buf)
	if i+1 < len(s.ents) {
		end = s.ents[i+1].off
	}
	return s.buf[s.ents[i].off:end]
}

// add stages a batch: frames holds n frames numbered from seq, starting at
// the offsets offs (relative to frames). Caller holds wmu and mu.
func (s *staging) add(frames []byte, offs []int, seq uint64, at, newest int64) {
	if s.head == len(s.ents) {
		s.reset() // everything acknowledged: start over, keeping the memory
	} else if dead := int64(s.ents[s.head].off); dead >= 64<<10 && dead >= s.live {
		s.compact()
	}
	if len(s.ents) == 0 {
		s.first = seq
		s.newest = newest
	}
	base := len(s.buf)
	s.buf = append(s.buf, frames...)
	for _, o := range offs {
		s.ents = append(s.ents, stEntry{off: base + o, at: at})
	}
	s.live += int64(len(frames))
	s.newest = max(s.newest, newest)
}

// trim drops the records numbered up to acked; it returns how many were live.
func (s *staging) trim(acked uint64) int {
	if len(s.ents) == 0 || acked < s.liveFirst() {
		return 0
	}
	h := len(s.ents)
	if acked < s.last() {
		h = int(acked-s.first) + 1
	}
	n := h - s.head
	s.head = h
	if h == len(s.ents) {
		s.live = 0
	} else {
		s.live = int64(len(s.buf) - s.ents[h].off)
	}
	return n
}

// reset empties the staging area, keeping its memory unless a huge batch
// made it large.
func (s *staging) reset() {
	if cap(s.buf) > 4*DefaultStagingBytes {
		s.buf, s.ents = nil, nil
	}
	s.buf, s.ents = s.buf[:0], s.ents[:0]
	s.head, s.live, s.newest = 0, 0, 0
}

// compact moves the live records to the front of the buffers.
func (s *staging) compact() {
	dead := s.ents[s.head].off
	n := copy(s.buf, s.buf[dead:])
	s.buf = s.buf[:n]
	k := copy(s.ents, s.ents[s.head:])
	s.ents = s.ents[:k]
	for i := range s.ents {
		s.ents[i].off -= dead
	}
	s.first += uint64(s.head)
	s.head = 0
}

// unacked counts the staged records numbered above done.
func (s *staging) unacked(done uint64) uint64 {
	if len(s.ents) == 0 || s.last() <= done {
		return 0
	}
	return s.last() - max(done, s.first-1)
}
