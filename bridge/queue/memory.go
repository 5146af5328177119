package queue

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Memory is a bounded in-memory queue with the method set of Queue, for unit
// tests of the bridge. It keeps Queue's semantics (numbering, Next, Ack,
// Rewind, Ready, quota policies, Stats) without durability or MaxAge, and
// counts a record's size as Queue encodes it, so quotas compare. DropOldest
// drops single records rather than segments.
//
// Records returned by Next share their payload with the queue: do not modify
// them.
type Memory struct {
	mu       sync.Mutex
	maxBytes int64
	policy   Policy
	recs     []Record // not yet acknowledged, oldest first
	read     int      // index in recs of the next record Next returns
	bytes    int64    // encoded size of recs
	nextSeq  uint64
	acked    uint64
	closed   bool
	st       Stats
	ready    chan struct{}
}

// NewMemory returns an empty Memory holding at most maxBytes (0 = no limit).
func NewMemory(maxBytes int64, policy Policy) *Memory {
	return &Memory{maxBytes: maxBytes, policy: policy, nextSeq: 1, ready: make(chan struct{}, 1)}
}

// Append adds the batch, all or nothing, numbering it like Queue.Append.
// The payloads are copied.
func (m *Memory) Append(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	size, err := checkBatch(recs)
	if err != nil {
		return err
	}
	n := uint64(len(recs))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.maxBytes > 0 {
		if size > m.maxBytes || (m.policy == DropNewest && m.bytes+size > m.maxBytes) {
			m.st.Dropped += n
			return fmt.Errorf("queue: memory limit %d bytes reached, %d records refused: %w", m.maxBytes, n, ErrFull)
		}
		drop := 0
		for m.bytes+size > m.maxBytes {
			m.bytes -= frameSize(&m.recs[drop])
			drop++
		}
		if drop > 0 {
			m.remove(drop)
			m.st.Dropped += uint64(drop)
		}
	}
	now := time.Now()
	for i := range recs {
		r := recs[i]
		r.Seq = m.nextSeq
		m.nextSeq++
		if r.Time.IsZero() {
			r.Time = now
		}
		if r.Payload != nil {
			r.Payload = append([]byte(nil), r.Payload...)
		}
		m.recs = append(m.recs, r)
		recs[i].Seq, recs[i].Time = r.Seq, r.Time
	}
	m.bytes += size
	m.st.Appended += n
	signal(m.ready)
	return nil
}

// remove forgets the k oldest records.
func (m *Memory) remove(k int) {
	clear(m.recs[:k]) // release the payloads
	m.recs = m.recs[k:]
	m.read = max(m.read-k, 0)
}

// Sync does nothing: Memory is not durable.
func (m *Memory) Sync() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Next returns up to max records after the read cursor, like Queue.Next.
func (m *Memory) Next(max int) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if max <= 0 || m.read >= len(m.recs) {
		return nil, nil
	}
	k := min(max, len(m.recs)-m.read)
	out := make([]Record, k)
	copy(out, m.recs[m.read:m.read+k])
	m.read += k
	return out, nil
}

// Ready is signalled, coalescing, when Append added records.
func (m *Memory) Ready() <-chan struct{} { return m.ready }

// Ack acknowledges every record with Seq <= seq, like Queue.Ack.
func (m *Memory) Ack(seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	seq = min(seq, m.nextSeq-1)
	if seq <= m.acked {
		return nil
	}
	k := sort.Search(len(m.recs), func(i int) bool { return m.recs[i].Seq > seq })
	for i := range k {
		m.bytes -= frameSize(&m.recs[i])
	}
	m.remove(k)
	m.acked = seq
	m.st.Acked += uint64(k)
	return nil
}

// Rewind moves the read cursor back to the oldest unacknowledged record.
func (m *Memory) Rewind() {
	m.mu.Lock()
	m.read = 0
	m.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	st.PendingRecords = uint64(len(m.recs))
	st.Bytes = m.bytes
	if len(m.recs) > 0 {
		st.OldestTime = m.recs[0].Time
	}
	return st
}

// Close marks the queue closed; it is idempotent.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}
