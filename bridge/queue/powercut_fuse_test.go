package queue_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
	"github.com/fieldbridge/fieldbridge/internal/testpeer/powercut"
)

// The queue through real power cuts: it runs on a testpeer/powercut file
// system, where only fsynced data and fsynced directory entries survive a
// Cut, and the last unsynced writes may be torn. Only the public API is
// used, so that the test holds for any implementation of the queue.

// Queue options under test: the default group commit, and segments small
// enough that rolls, seals, removals and their directory fsyncs happen
// many times per run.
const (
	pcSyncInterval = queue.DefaultSyncInterval
	pcSegmentBytes = 16 << 10
	// pcSlack is added to the sync interval for records that must survive
	// without an explicit Sync: the flusher may run a little late. Time in
	// which the test process did not run at all (a loaded machine) is not
	// counted (powercut.StallMeter). The measured loss window is logged.
	pcSlack = 200 * time.Millisecond
)

// pcPayload is the payload of record id: its id, then filler derived from
// it, so that any damaged or reused record is recognised.
func pcPayload(id uint64) []byte {
	p := strconv.AppendUint(nil, id, 10)
	p = append(p, '|')
	return append(p, bytes.Repeat([]byte{byte('a' + id%26)}, int(id*7919%300))...)
}

// pcRec is what the test knows of an appended record.
type pcRec struct {
	seq, id uint64
	at      time.Time // Append returned
}

// pcModel is what the test knows across cuts.
type pcModel struct {
	ids     map[uint64]uint64 // Seq → id of every record ever appended
	lost    map[uint64]bool   // Seq of records lost in a cut
	backlog []pcRec           // in the queue, unacknowledged, at the start of the lifetime
	maxSeq  uint64            // highest Seq ever handed out
	nextID  uint64
	// onMedium tells, for a report, whether the card still holds record id.
	onMedium func(id uint64) bool
	// stalls: time the test process (queue and file system alike) did not
	// run does not count towards a record's age.
	stalls *powercut.StallMeter
}

func newModel(t *testing.T) *pcModel {
	return &pcModel{ids: map[uint64]uint64{}, lost: map[uint64]bool{}, nextID: 1, stalls: powercut.StartStallMeter(t)}
}

// lifetime is one run of the queue between two cuts: a writer appending at
// a steady pace (with an occasional explicit Sync) and a sender reading,
// acknowledging with a lag and rewinding now and then, as the bridge does.
type lifetime struct {
	q        *queue.Queue
	log      *syncBuf
	linkDown bool
	stop     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	appended []pcRec
	syncedN  int    // appended[:syncedN] were covered by a successful Sync
	acked    uint64 // highest Seq acknowledged (counted just before Ack)
	frozen   bool   // the power is off: acknowledgements no longer count
	atCut    string // the queue's and the file system's state at the cut, for a report
	lastSync time.Time
	seqErr   error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openQueue(t *testing.T, dir string) (*queue.Queue, *syncBuf) {
	t.Helper()
	log := &syncBuf{}
	q, err := queue.Open(queue.Options{
		Dir:          dir,
		SegmentBytes: pcSegmentBytes,
		SyncInterval: pcSyncInterval,
		Logger:       slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("Open after a power cut: %v\nqueue log:\n%s", err, log)
	}
	// Closed before the file system's cleanup unmounts, also when the test
	// stops early; Close is idempotent.
	t.Cleanup(func() { q.Close() })
	return q, log
}

// start runs the writer and the sender on q.
// start runs the writer, and the sender unless linkDown (an outage: the
// records pile up unacknowledged), on q.
func (m *pcModel) start(q *queue.Queue, log *syncBuf, seed uint64, linkDown bool) *lifetime {
	lt := &lifetime{q: q, log: log, stop: make(chan struct{}), linkDown: linkDown}
	lt.wg.Add(1)
	go lt.write(rand.New(rand.NewPCG(seed, 1)), m.nextID, m.maxSeq)
	if !linkDown {
		lt.wg.Add(1)
		go lt.send(rand.New(rand.NewPCG(seed, 2)))
	}
	return lt
}

func (lt *lifetime) stopped() bool {
	select {
	case <-lt.stop:
		return true
	default:
		return false
	}
}

func (lt *lifetime) write(rng *rand.Rand, nextID, maxSeq uint64) {
	defer lt.wg.Done()
	for !lt.stopped() {
		recs := make([]queue.Record, 1+rng.IntN(8))
		ids := make([]uint64, len(recs))
		for i := range recs {
			ids[i] = nextID
			recs[i] = queue.Record{Topic: fmt.Sprintf("pc/%d", nextID%3), Payload: pcPayload(nextID), QoS: 1}
			nextID++
		}
		if err := lt.q.Append(recs); err != nil {
			return // the cut
		}
		now := time.Now()
		lt.mu.Lock()
		for i, r := range recs {
			if r.Seq <= maxSeq && lt.seqErr == nil {
				lt.seqErr = fmt.Errorf("Append numbered a record %d after %d was handed out: Seq reused or not increasing", r.Seq, maxSeq)
			}
			maxSeq = max(maxSeq, r.Seq)
			lt.appended = append(lt.appended, pcRec{seq: r.Seq, id: ids[i], at: now})
		}
		n := len(lt.appended)
		lt.mu.Unlock()
		if rng.IntN(10) == 0 {
			if lt.q.Sync() != nil {
				return
			}
			lt.mu.Lock()
			lt.syncedN = n
			lt.lastSync = time.Now()
			lt.mu.Unlock()
		}
		time.Sleep(time.Duration(rng.IntN(4000)) * time.Microsecond) // the pace of the plant
	}
}

func (lt *lifetime) send(rng *rand.Rand) {
	defer lt.wg.Done()
	var delivered []uint64 // Seq of the last batches, for acknowledging with a lag
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	for !lt.stopped() {
		recs, err := lt.q.Next(1 + rng.IntN(64))
		if err != nil {
			return
		}
		if len(recs) == 0 {
			wait.Reset(20 * time.Millisecond)
			select {
			case <-lt.q.Ready():
			case <-wait.C:
			case <-lt.stop:
				return
			}
			continue
		}
		delivered = append(delivered, recs[len(recs)-1].Seq)
		switch r := rng.IntN(40); {
		case r < 12 && len(delivered) > 2: // the PUBACK of a batch sent earlier
			// Counted before Ack: an acknowledgement the queue may have
			// persisted is never missing from the model. Ack keeps working
			// in memory after a cut; those no longer count.
			seq := delivered[len(delivered)-3]
			lt.mu.Lock()
			if lt.frozen {
				lt.mu.Unlock()
				return
			}
			lt.acked = max(lt.acked, seq)
			lt.mu.Unlock()
			if lt.q.Ack(seq) != nil {
				return
			}
		case r == 39: // a reconnect: resend from the oldest unacknowledged
			lt.q.Rewind()
			delivered = delivered[:0]
		}
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond) // the round trip
	}
}

// cutResult are the figures of one cut.
type cutResult struct {
	appended, required, returned int
	lost                         int           // not synced, not acknowledged, not returned
	lostAge                      time.Duration // oldest lost record's age at the cut
	dups                         int           // acknowledged before the cut, returned after
	resurrected                  int           // of dups: acknowledged before an earlier cut
	stall                        time.Duration // longest stall of the test process in the lifetime
	corruptRecords, corruptBytes uint64
	cutTook, reopenTook          time.Duration
}

// check compares what the reopened queue returns (got, drained with Next)
// with what the lifetime did before the cut at cutAt, returns the broken
// promises, and updates the model for the next lifetime.
func (m *pcModel) check(lt *lifetime, cutAt time.Time, got []queue.Record) (cutResult, []string) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if lt.seqErr != nil {
		fail("%v", lt.seqErr)
	}
	for _, r := range lt.appended {
		m.ids[r.seq] = r.id
		m.nextID = max(m.nextID, r.id+1)
		m.maxSeq = max(m.maxSeq, r.seq)
	}

	type want struct {
		rec      pcRec
		required bool
		why      string
	}
	var expected []want
	window := pcSyncInterval + pcSlack
	for _, r := range m.backlog {
		// Already on the medium before this lifetime began.
		expected = append(expected, want{r, r.seq > lt.acked, "on the medium before this lifetime"})
	}
	for i, r := range lt.appended {
		why := fmt.Sprintf("appended %v before the cut", cutAt.Sub(r.at).Round(time.Millisecond))
		if i < lt.syncedN {
			why += fmt.Sprintf(", covered by a Sync that returned %v before the cut", cutAt.Sub(lt.lastSync).Round(time.Millisecond))
		}
		stalled := m.stalls.Stalled(r.at, cutAt)
		if stalled > 0 {
			why += fmt.Sprintf(" (of which the process was stalled %v)", stalled.Round(time.Millisecond))
		}
		synced := i < lt.syncedN || cutAt.Sub(r.at)-stalled > window
		expected = append(expected, want{r, synced && r.seq > lt.acked, why})
	}
	res := cutResult{appended: len(lt.appended)}
	if len(lt.appended) > 0 {
		res.stall = m.stalls.Longest(lt.appended[0].at, cutAt)
	}
	bySeq := make(map[uint64]bool, len(got))
	var prev uint64
	for _, g := range got {
		if g.Seq <= prev {
			fail("Next returned Seq %d after %d: reordered or repeated", g.Seq, prev)
		}
		prev = g.Seq
		bySeq[g.Seq] = true
		id, known := m.ids[g.Seq]
		switch {
		case !known:
			fail("Next returned Seq %d, never appended (payload %.40q)", g.Seq, g.Payload)
		case !bytes.Equal(g.Payload, pcPayload(id)):
			fail("Seq %d came back with another payload (%.40q, want record %d): reused or damaged", g.Seq, g.Payload, id)
		case m.lost[g.Seq]:
			fail("Seq %d, lost in an earlier cut, came back", g.Seq)
		}
	}
	inExpected := make(map[uint64]bool, len(expected))
	var missing []uint64
	var whyMissing []string
	for _, w := range expected {
		inExpected[w.rec.seq] = true
		if w.required {
			res.required++
		}
		switch {
		case bySeq[w.rec.seq] && w.rec.seq <= lt.acked:
			res.dups++
		case bySeq[w.rec.seq]:
		case w.required:
			missing = append(missing, w.rec.seq)
			if len(whyMissing) < 5 {
				where := "gone from the card"
				if m.onMedium != nil && m.onMedium(w.rec.id) {
					where = "still on the card, not returned by Next"
				}
				whyMissing = append(whyMissing, fmt.Sprintf("Seq %d %s, %s", w.rec.seq, w.why, where))
			}
		case w.rec.seq > lt.acked:
			res.lost++
			res.lostAge = max(res.lostAge, cutAt.Sub(w.rec.at))
			m.lost[w.rec.seq] = true
		}
	}
	if len(missing) > 0 {
		fail("%d records that were synced (or older than %v at the cut) and not acknowledged (acknowledged through %d) are gone: Seq %v; %s; %s",
			len(missing), pcSyncInterval+pcSlack, lt.acked, firstN(missing, 20), strings.Join(whyMissing, "; "), lt.atCut)
	}
	for seq := range bySeq {
		if !inExpected[seq] && m.ids[seq] != 0 && !m.lost[seq] {
			// Acknowledged in an earlier lifetime and not returned after
			// the cut that followed, now returned again: the persisted
			// acknowledgements went back. At-least-once allows it (a
			// duplicate, in order), but it is worth seeing.
			res.dups++
			res.resurrected++
		}
	}
	res.returned = len(got)
	m.backlog = m.backlog[:0]
	for _, g := range got {
		m.backlog = append(m.backlog, pcRec{seq: g.Seq, id: m.ids[g.Seq]})
	}
	return res, problems
}

func firstN(s []uint64, n int) []uint64 { return s[:min(n, len(s))] }

// drainAll reads everything the queue returns after Open.
func drainAll(t *testing.T, q *queue.Queue) []queue.Record {
	t.Helper()
	var out []queue.Record
	for {
		recs, err := q.Next(512)
		if err != nil {
			t.Fatalf("Next after a power cut: %v", err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
	}
}

// pcTotals sums the figures of a mode for the log and bench/powercut.
type pcTotals struct {
	cuts, checked                           int
	appended, required, returned, lost, dup int
	maxDup, resurrected                     int
	maxLostAge, maxStall                    time.Duration
	corruptRecords, corruptBytes            uint64
	cutTook, reopenTook                     time.Duration
}

func (s *pcTotals) add(r cutResult) {
	s.checked++
	s.appended += r.appended
	s.required += r.required
	s.returned += r.returned
	s.lost += r.lost
	s.dup += r.dups
	s.maxDup = max(s.maxDup, r.dups)
	s.resurrected += r.resurrected
	s.maxLostAge = max(s.maxLostAge, r.lostAge)
	s.maxStall = max(s.maxStall, r.stall)
	s.corruptRecords += r.corruptRecords
	s.corruptBytes += r.corruptBytes
}

func (s *pcTotals) log(t *testing.T, mode string) {
	t.Helper()
	per := func(d time.Duration) time.Duration {
		if s.cuts == 0 {
			return 0
		}
		return (d / time.Duration(s.cuts)).Round(time.Microsecond)
	}
	// One line with a fixed prefix, collected by bench/powercut/run.sh.
	t.Logf("powercut figures: queue %s: cuts=%d checked=%d appended=%d required=%d returned=%d "+
		"lost_unsynced=%d max_lost_age=%v sync_window=%v duplicates=%d max_duplicates_per_cut=%d acked_before_an_earlier_cut=%d "+
		"corrupt_records=%d corrupt_bytes=%d cut_time=%v reopen_time=%v longest_stall=%v",
		mode, s.cuts, s.checked, s.appended, s.required, s.returned,
		s.lost, s.maxLostAge.Round(time.Millisecond), pcSyncInterval, s.dup, s.maxDup, s.resurrected,
		s.corruptRecords, s.corruptBytes, per(s.cutTook), per(s.reopenTook), s.maxStall.Round(time.Millisecond))
}

// cutOnce lets lt run for d, cuts the power with tear, stops what ran,
// remounts and reopens the queue.
func cutOnce(t *testing.T, fsys *powercut.FS, lt *lifetime, d time.Duration, tear powercut.Tear) (powercut.CutReport, *queue.Queue, *syncBuf, time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	<-timer.C
	lt.mu.Lock()
	before := lt.q.Stats() // memory only: no file system operation
	rep := fsys.Cut(tear)
	lt.frozen = true
	lt.atCut = fmt.Sprintf("at the cut: queue %d appended, %d group commits and seals since Open; file system: %d operations served so far, last fsync %v before the cut",
		before.Appended, before.Syncs, fsys.Stats().Ops, rep.At.Sub(fsys.Stats().LastFsync).Round(time.Millisecond))
	lt.mu.Unlock()
	close(lt.stop)
	lt.wg.Wait()
	_ = lt.q.Close() // EIO: the medium is gone; this frees the files
	start := time.Now()
	fsys.Remount()
	q, log := openQueue(t, filepath.Join(fsys.Dir(), "queue"))
	return rep, q, log, time.Since(start)
}

func logCut(t *testing.T, n int, lt *lifetime, rep powercut.CutReport, d time.Duration, r cutResult) {
	t.Helper()
	link := "up"
	if lt.linkDown {
		link = "down"
	}
	t.Logf("cut %d after %v (link %s), tear %s (%d files torn): appended %d, required %d, returned %d, lost unsynced %d "+
		"(oldest %v before the cut), duplicates %d, corrupt %d records/%d bytes; cut %v, remount+open %v; longest stall %v",
		n, d.Round(time.Millisecond), link, rep.Tear, len(rep.Torn), r.appended, r.required, r.returned, r.lost,
		r.lostAge.Round(time.Millisecond), r.dups, r.corruptRecords, r.corruptBytes,
		rep.Took.Round(time.Microsecond), r.reopenTook.Round(time.Microsecond), r.stall.Round(time.Millisecond))
}

// queueDirLost reports that the queue's directory itself is not on the
// card: the symptom of a directory never fsynced into its parent (the
// first-start bug issue 6 found), which loses every record in it.
func queueDirLost(fsys *powercut.FS) bool {
	_, _, ok := fsys.Durable("queue")
	return !ok
}

// onMedium reports whether the card holds record id (its topic and payload)
// in any file of the queue directory.
func onMedium(fsys *powercut.FS) func(id uint64) bool {
	return func(id uint64) bool {
		needle := append([]byte(fmt.Sprintf("pc/%d", id%3)), pcPayload(id)...)
		_, names, _ := fsys.Durable("queue")
		for _, n := range names {
			if data, _, _ := fsys.Durable("queue/" + n); bytes.Contains(data, needle) {
				return true
			}
		}
		return false
	}
}

// report fails t with the broken promises of one cut.
func report(t *testing.T, problems []string, fsys *powercut.FS, rep powercut.CutReport, log *syncBuf) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Logf("seed %d; torn files %v; queue log after the cut:\n%s", fsys.Seed(), rep.Torn, log)
	}
}

// TestQueuePowerCuts runs the queue through repeated power cuts at random
// moments, with every kind of torn tail: from a fresh data directory (the
// first start of a new gateway) and in steady state (a directory that has
// been in use). After every cut Open must succeed and every record that
// was synced (by Sync, or by the group commit: appended more than
// SyncInterval plus slack before the cut) and not acknowledged must come
// out of Next, in order, unchanged, with no Seq reused.
func TestQueuePowerCuts(t *testing.T) {
	powercut.Require(t)
	t.Run("fresh", func(t *testing.T) {
		runs := powercut.Runs(t, 6)
		var tot pcTotals
		for run := range runs {
			fsys := powercut.Mount(t, powercut.Options{})
			rng := rand.New(rand.NewPCG(fsys.Seed(), 3))
			m := newModel(t)
			m.onMedium = onMedium(fsys)
			dir := filepath.Join(fsys.Dir(), "queue")
			q, log := openQueue(t, dir)
			lt := m.start(q, log, fsys.Seed(), run%2 == 0)
			d := time.Duration(20+rng.IntN(400)) * time.Millisecond
			rep, q, log, reopen := cutOnce(t, fsys, lt, d, powercut.Tears[rng.IntN(len(powercut.Tears))])
			tot.cuts++
			tot.cutTook += rep.Took
			tot.reopenTook += reopen
			res, problems := m.check(lt, rep.At, drainAll(t, q))
			st := q.Stats()
			res.corruptRecords, res.corruptBytes, res.cutTook, res.reopenTook = st.CorruptRecords, st.CorruptBytes, rep.Took, reopen
			q.Close()
			if len(problems) > 0 && queueDirLost(fsys) {
				problems = append(problems, "the queue directory itself is not on the card: it was never fsynced into its parent")
			}
			logCut(t, run, lt, rep, d, res)
			report(t, problems, fsys, rep, log)
			tot.add(res)
		}
		tot.log(t, "fresh")
	})
	t.Run("steady", func(t *testing.T) {
		runs := powercut.Runs(t, 10)
		fsys := powercut.Mount(t, powercut.Options{})
		rng := rand.New(rand.NewPCG(fsys.Seed(), 3))
		m := newModel(t)
		m.onMedium = onMedium(fsys)
		dir := filepath.Join(fsys.Dir(), "queue")

		// A directory that has been in use: records queued, a clean
		// shutdown, and the kernel has written everything back since.
		q, log := openQueue(t, dir)
		lt := m.start(q, log, fsys.Seed(), false)
		time.Sleep(200 * time.Millisecond) // let the workload fill a few segments
		close(lt.stop)
		lt.wg.Wait()
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		fsys.SyncAll()
		q, log = openQueue(t, dir)
		if _, problems := m.check(lt, time.Now().Add(time.Hour), drainAll(t, q)); len(problems) > 0 {
			t.Fatalf("across a clean shutdown: %v; log:\n%s", problems, log)
		}

		// Then cut after cut: the gateway restarts on what the card holds
		// and runs until the next cut.
		var tot pcTotals
		for run := range runs {
			q.Rewind() // the check read everything: send it again
			lt := m.start(q, log, fsys.Seed()+uint64(run), rng.IntN(3) == 0)
			d := time.Duration(50+rng.IntN(1150)) * time.Millisecond
			rep, q2, log2, reopen := cutOnce(t, fsys, lt, d, powercut.Tears[rng.IntN(len(powercut.Tears))])
			q, log = q2, log2
			tot.cuts++
			tot.cutTook += rep.Took
			tot.reopenTook += reopen
			res, problems := m.check(lt, rep.At, drainAll(t, q))
			st := q.Stats()
			res.corruptRecords, res.corruptBytes, res.cutTook, res.reopenTook = st.CorruptRecords, st.CorruptBytes, rep.Took, reopen
			logCut(t, run, lt, rep, d, res)
			tot.add(res)
			if report(t, problems, fsys, rep, log); len(problems) > 0 {
				break
			}
		}
		if err := q.Close(); err != nil {
			t.Errorf("Close after the last check: %v", err)
		}
		tot.log(t, "steady")
	})
}
