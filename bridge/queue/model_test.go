package queue

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The model test drives a Queue with random sequences of Append, Next, Ack,
// Rewind, commits (with and without fsync), cursor writes, kill -9, power
// cuts and clean restarts, and checks it against a simple model after every
// step: Next returns exactly the unacknowledged records in Seq order, none
// skipped or repeated between rewinds; Stats counts them; after a restart
// every synced (or, after kill -9, written) unacknowledged record is back,
// nothing at or below the persisted cursor comes back, duplicates are only
// records acknowledged after it, and no Seq is ever handed out twice.

type model struct {
	t    testing.TB
	dir  string
	q    *Queue
	opts func(*Options)

	ids     map[uint64]int // every record appended: Seq → payload id
	nextID  int
	maxSeq  uint64   // highest Seq handed out
	live    []uint64 // unacknowledged records, in order
	readPos int      // live[:readPos] handed out since the last rewind
	acked   uint64
	written map[uint64]bool // known to be in a segment file (page cache)
	synced  map[uint64]bool // known to be on the medium
}

const (
	opAppend = iota
	opNext
	opAck
	opRewind
	opSync
	opSpill
	opCursor
	opKill
	opPowerCut
	opRestart
	numOps
)

func newModel(t testing.TB) *model {
	m := &model{
		t:       t,
		dir:     memDir(t),
		ids:     map[uint64]int{},
		written: map[uint64]bool{},
		synced:  map[uint64]bool{},
	}
	m.opts = func(o *Options) {
		o.SyncInterval = time.Hour // commits happen only as steps of the test
		o.CursorInterval = time.Hour
		o.SegmentBytes = 2 << 10
		o.StagingBytes = 700 // Append writes by itself now and then
	}
	m.open()
	return m
}

func (m *model) open() {
	o := Options{Dir: m.dir}
	m.opts(&o)
	q, err := Open(o)
	if err != nil {
		m.t.Fatalf("open: %v", err)
	}
	m.q = q
}

func (m *model) step(op int, arg int) {
	t, q := m.t, m.q
	switch op {
	case opAppend:
		recs := mkRecs(m.nextID, 1+arg%6, 10+arg%90)
		if err := q.Append(recs); err != nil {
			t.Fatalf("append: %v", err)
		}
		for i, r := range recs {
			if r.Seq <= m.maxSeq {
				t.Fatalf("seq %d handed out again (max so far %d)", r.Seq, m.maxSeq)
			}
			m.maxSeq = r.Seq
			m.ids[r.Seq] = m.nextID + i
			m.live = append(m.live, r.Seq)
		}
		m.nextID += len(recs)
	case opNext:
		n := 1 + arg%12
		recs, err := q.Next(n)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		want := m.live[m.readPos:min(m.readPos+n, len(m.live))]
		if len(recs) != len(want) {
			t.Fatalf("next(%d) returned %d records, want %v", n, len(recs), want)
		}
		for i, r := range recs {
			if r.Seq != want[i] || idOf(t, r) != m.ids[r.Seq] {
				t.Fatalf("next(%d): record %d is seq %d id %d, want seq %d id %d", n, i, r.Seq, idOf(t, r), want[i], m.ids[want[i]])
			}
		}
		m.readPos += len(recs)
	case opAck:
		if m.readPos == 0 {
			return
		}
		k := 1 + arg%m.readPos
		seq := m.live[k-1]
		if err := q.Ack(seq); err != nil {
			t.Fatalf("ack: %v", err)
		}
		m.acked = seq
		m.live = m.live[k:]
		m.readPos -= k
	case opRewind:
		q.Rewind()
		m.readPos = 0
	case opSync:
		if err := q.Sync(); err != nil {
			t.Fatalf("sync: %v", err)
		}
		for _, s := range m.live {
			m.written[s], m.synced[s] = true, true
		}
	case opSpill:
		spillNoSync(t, q)
		for _, s := range m.live {
			m.written[s] = true
		}
	case opCursor:
		q.maintain(time.Now())
	case opKill, opPowerCut, opRestart:
		m.restart(op)
	}
	if op != opKill && op != opPowerCut && op != opRestart {
		if st := q.Stats(); st.PendingRecords != uint64(len(m.live)) {
			t.Fatalf("after op %d: %d records pending, model has %d", op, st.PendingRecords, len(m.live))
		}
	}
}

// restart stops the queue (op says how), opens it again and checks what
// came back.
func (m *model) restart(op int) {
	t, q := m.t, m.q
	var must map[uint64]bool // what has to survive
	switch op {
	case opKill:
		crash(q)
		must = m.written
	case opPowerCut:
		powerCut(t, q, []byte{0x37, 0, 0, 0, 1, 2, 3})
		must = m.synced
	case opRestart:
		if err := q.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		must = map[uint64]bool{}
		for _, s := range m.live {
			must[s] = true
		}
	}
	durable := q.persisted.acked
	if durable > m.acked {
		t.Fatalf("persisted cursor %d beyond the acknowledgements %d", durable, m.acked)
	}
	m.open()
	got := drain(t, m.q, 50)
	var seqs []uint64
	for i, r := range got {
		if i > 0 && r.Seq <= got[i-1].Seq {
			t.Fatalf("after restart: seq %d after %d", r.Seq, got[i-1].Seq)
		}
		id, ok := m.ids[r.Seq]
		if !ok || idOf(t, r) != id {
			t.Fatalf("after restart: seq %d carries id %d, appended as %d (%v)", r.Seq, idOf(t, r), id, ok)
		}
		if r.Seq <= durable {
			t.Fatalf("after restart: seq %d at or below the persisted cursor %d came back", r.Seq, durable)
		}
		seqs = append(seqs, r.Seq)
	}
	for _, s := range m.live {
		if must[s] && !slices.Contains(seqs, s) {
			t.Fatalf("after restart (op %d): unacknowledged seq %d was on disk and is lost; got %v", op, s, seqs)
		}
	}
	if op == opRestart && !slices.Equal(seqs, m.live) {
		t.Fatalf("after a clean restart got %v, want %v", seqs, m.live)
	}
	// The new truth: what came back is pending, duplicates included.
	m.live = seqs
	m.acked = durable
	m.written, m.synced = map[uint64]bool{}, map[uint64]bool{}
	for _, s := range seqs {
		m.written[s], m.synced[s] = true, true
	}
	m.q.Rewind()
	m.readPos = 0
	if st := m.q.Stats(); st.PendingRecords != uint64(len(seqs)) {
		t.Fatalf("after restart %d records pending, %d delivered", st.PendingRecords, len(seqs))
	}
}

// opWeights makes appends, reads and acknowledgements common and restarts
// rare (about one step in 40), so that a process lifetime sees several
// commits.
var opWeights = [numOps]int{opAppend: 8, opNext: 8, opAck: 6, opRewind: 2, opSync: 3, opSpill: 2, opCursor: 2, opKill: 1, opPowerCut: 1, opRestart: 1}

// runModel interprets ops two bytes a step.
func runModel(t testing.TB, ops []byte) {
	var table []int
	for op, w := range opWeights {
		for range w {
			table = append(table, op)
		}
	}
	m := newModel(t)
	defer func() { m.q.Close() }()
	for i := 0; i+1 < len(ops); i += 2 {
		m.step(table[int(ops[i])%len(table)], int(ops[i+1]))
	}
}

func TestQueueModel(t *testing.T) {
	for seed := range uint64(25) {
		rng := rand.New(rand.NewPCG(seed, 99))
		ops := make([]byte, 600)
		for i := range ops {
			ops[i] = byte(rng.IntN(256))
		}
		runModel(t, ops)
	}
}

func FuzzQueueModel(f *testing.F) {
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 7))
		ops := make([]byte, 200)
		for i := range ops {
			ops[i] = byte(rng.IntN(256))
		}
		f.Add(ops)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 600 {
			ops = ops[:600]
		}
		runModel(t, ops)
	})
}
