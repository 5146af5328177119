package queue

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAckedBeforeCommitNeverWritten: while the cloud acknowledges every
// record within the sync window, no segment is written and no fsync done;
// a record still unacknowledged when its deadline comes is written alone.
func TestAckedBeforeCommitNeverWritten(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, func(o *Options) { o.SyncInterval = 30 * time.Millisecond })
	for i := 0; i < 200; i += 10 {
		appendN(t, q, i, 10, 10, 100)
		recs := drain(t, q, 100)
		if err := q.Ack(recs[len(recs)-1].Seq); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // across several commit deadlines
	}
	time.Sleep(100 * time.Millisecond)
	st := q.Stats()
	if len(segFiles(t, dir)) != 0 || st.Syncs != 0 || st.AckedUnwritten != 200 || st.Acked != 200 || st.PendingRecords != 0 {
		t.Fatalf("%d segment files, stats %+v", len(segFiles(t, dir)), st)
	}
	if st.BytesWritten != cursorFileSize || st.CursorWrites != 1 { // the Seq reservation, once
		t.Fatalf("stats %+v", st)
	}

	// Ten more, four acknowledged in time: the commit writes six.
	in := appendN(t, q, 200, 10, 10, 100)
	drain(t, q, 100)
	q.Ack(in[3].Seq)
	eventually(t, "the commit", func() bool { return q.Stats().Syncs > 0 && q.Stats().StagedRecords == 0 })
	crash(q)
	q2, _ := openTest(t, dir, nil)
	if st := q2.Stats(); st.PendingRecords != 6 {
		t.Fatalf("stats after crash %+v", st)
	}
	wantIDs(t, drain(t, q2, 100), span(204, 210))
}

// TestGapInSegment: records acknowledged before their commit leave a gap in
// the numbering of the segment they would have gone to. Pending counts and
// the loss count of damage after the gap stay exact.
func TestGapInSegment(t *testing.T) {
	for _, stop := range []string{"close", "crash"} {
		for _, damaged := range []bool{false, true} {
			t.Run(stop+map[bool]string{false: "", true: "/damaged"}[damaged], func(t *testing.T) {
				dir := t.TempDir()
				q, _ := openTest(t, dir, nil)
				in := appendN(t, q, 0, 10, 10, 100)
				q.Sync() // 0..9 on disk
				in = append(in, appendN(t, q, 10, 10, 10, 100)...)
				drain(t, q, 100)
				q.Ack(in[14].Seq) // 10..14 acknowledged while staged
				if err := q.Sync(); err != nil {
					t.Fatal(err) // 15..19 written after the gap
				}
				if q.persisted.acked < in[14].Seq {
					t.Fatalf("cursor %d not past the gap (%d)", q.persisted.acked, in[14].Seq)
				}
				if stop == "close" {
					q.Close()
				} else {
					crash(q)
				}
				want := span(15, 20)
				if damaged {
					off := segHeaderSize + 10*frameSize(&in[0]) + 40 // inside id 15
					flipByte(t, segFiles(t, dir)[0], off)
					want = span(16, 20)
				}
				q2, _ := openTest(t, dir, nil)
				if st := q2.Stats(); st.PendingRecords != 5 {
					t.Fatalf("stats %+v", st)
				}
				wantIDs(t, drain(t, q2, 100), want)
				if st := q2.Stats(); damaged && st.CorruptRecords != 1 {
					t.Fatalf("lost 1 record, counted %+v", st)
				}
			})
		}
	}
}

// TestRewindAcrossDiskAndStaging: Rewind resends from the oldest
// unacknowledged record wherever it is, before and after a commit moved
// records from staging to disk.
func TestRewindAcrossDiskAndStaging(t *testing.T) {
	q, _ := openTest(t, t.TempDir(), nil)
	in := appendN(t, q, 0, 10, 10, 100)
	q.Sync()
	in = append(in, appendN(t, q, 10, 10, 10, 100)...) // staged
	recs, _ := q.Next(15)
	wantIDs(t, recs, span(0, 15))
	q.Rewind()
	wantIDs(t, drain(t, q, 7), span(0, 20))
	q.Ack(in[12].Seq)
	q.Rewind()
	wantIDs(t, drain(t, q, 4), span(13, 20))
	q.Sync() // 13..19 to disk
	q.Rewind()
	wantIDs(t, drain(t, q, 4), span(13, 20))

	in = append(in, appendN(t, q, 20, 5, 5, 100)...)
	a, _ := q.Next(2)
	b, _ := q.Next(10)
	wantIDs(t, append(a, b...), span(20, 25))
	spillNoSync(t, q) // 20..24 move to disk behind the reader
	q.Ack(in[22].Seq)
	q.Rewind()
	wantIDs(t, drain(t, q, 100), span(23, 25))
	appendN(t, q, 25, 3, 3, 100)
	q.Rewind()
	wantIDs(t, drain(t, q, 2), span(23, 28))
	if st := q.Stats(); st.CorruptRecords != 0 || st.PendingRecords != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// TestNextRacesCommit runs the bridge's goroutines against commits that
// move records from staging to disk all the time (a tiny staging area and
// a loop calling Sync), with random rewinds: between two rewinds the
// sender sees every Seq once, in order, none skipped.
func TestNextRacesCommit(t *testing.T) {
	q, _ := openTest(t, t.TempDir(), func(o *Options) {
		o.SyncInterval = time.Millisecond
		o.StagingBytes = 2 << 10
		o.SegmentBytes = 32 << 10
		o.CursorInterval = time.Millisecond
	})
	const n = 20000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() { // writer; Seq i+1 is record i in a fresh queue
		defer wg.Done()
		for i := 0; i < n; i += 10 {
			if err := q.Append(mkRecs(i, 10, 30)); err != nil {
				t.Error(err)
				return
			}
			if i%100 == 0 {
				time.Sleep(100 * time.Microsecond) // let the sender catch up at times
			}
		}
	}()
	go func() { // commits at any moment
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := q.Sync(); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	rng := rand.New(rand.NewPCG(5, 6))
	var acked, want uint64 = 0, 1
	deadline := time.Now().Add(30 * time.Second)
	for acked < n {
		if time.Now().After(deadline) {
			t.Fatalf("stuck at ack %d, want %d", acked, want)
		}
		recs, err := q.Next(1 + rng.IntN(40))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Seq != want {
				t.Fatalf("got seq %d, want %d (acked %d)", r.Seq, want, acked)
			}
			if id := idOf(t, r); uint64(id+1) != r.Seq {
				t.Fatalf("seq %d carries record %d", r.Seq, id)
			}
			want++
		}
		if len(recs) == 0 {
			time.Sleep(20 * time.Microsecond)
		}
		switch k := rng.IntN(20); {
		case k == 0: // connection lost
			q.Rewind()
			want = acked + 1
		case k < 10 && want-1 > acked: // some PUBACKs arrive
			acked += 1 + rng.Uint64N(want-1-acked)
			if err := q.Ack(acked); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	st := q.Stats()
	if st.Acked != n || st.PendingRecords != 0 || st.CorruptRecords != 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d of %d records acknowledged before they were written", st.AckedUnwritten, n)
}

// TestCommitFailsAndHeals: a full disk or an I/O error fails the group
// commit; the records stay staged (readable, counted, retried) and reach the
// disk once it works again. Only when the staging area is full too does
// Append refuse new batches.
func TestCommitFailsAndHeals(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS()
	q, sink := openTest(t, dir, func(o *Options) {
		o.openFile = fs.open
		o.SyncInterval = 5 * time.Millisecond
		o.StagingBytes = 8 << 10
	})
	appendN(t, q, 0, 10, 10, 100)
	q.Sync()
	fs.setBudget(0)
	appendN(t, q, 10, 20, 5, 100) // staged: Append does not write
	eventually(t, "a failed commit", func() bool { return q.Stats().WriteErrors >= 2 })
	if st := q.Stats(); st.StagedRecords != 20 {
		t.Fatalf("stats %+v", st)
	}
	id := 30
	var err error
	for err == nil { // fill the staging area: then Append has to write itself
		recs := mkRecs(id, 10, 100)
		if err = q.Append(recs); err == nil {
			id += 10
		} else if recs[0].Seq != 0 {
			t.Fatal("refused batch numbered")
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append with full staging on a full disk: %v", err)
	}
	wantIDs(t, drain(t, q, 7), span(0, id)) // all readable meanwhile

	fs.setBudget(-1)
	eventually(t, "the commit after space returned", func() bool { return q.Stats().StagedRecords == 0 })
	if sink.count("writes failing") != 1 || sink.count("writes succeed again") != 1 {
		t.Fatalf("log:\n%s", sink)
	}
	crash(q)
	q2, _ := openTest(t, dir, nil)
	wantIDs(t, drain(t, q2, 100), span(0, id))
	if st := q2.Stats(); st.CorruptBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCommitFsyncErrorMovesToNewSegment(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS()
	q, _ := openTest(t, dir, func(o *Options) { o.openFile = fs.open })
	appendN(t, q, 0, 10, 10, 100)
	q.Sync()
	appendN(t, q, 10, 10, 10, 100)
	fs.failSyncs(1)
	if err := q.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("sync with failing fsync: %v", err)
	}
	appendN(t, q, 20, 10, 10, 100)
	if err := q.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := len(segFiles(t, dir)); n != 2 {
		t.Fatalf("%d segments; want a fresh one after the failed fsync", n)
	}
	q.Close()
	q2, _ := openTest(t, dir, nil)
	wantIDs(t, drain(t, q2, 100), span(0, 30))
}

// TestCloseWritesStaged: Close writes what is staged and unacknowledged,
// nothing else.
func TestCloseWritesStaged(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	in := appendN(t, q, 0, 20, 4, 100)
	drain(t, q, 6)
	q.Ack(in[4].Seq)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.BytesWritten-cursorFileSize-cursorSlotLen != uint64(segHeaderSize+15*frameSize(&in[0])+sealFrameSize) {
		t.Fatalf("wrote %d bytes for 15 records: %+v", st.BytesWritten, st)
	}
	q2, _ := openTest(t, dir, nil)
	wantIDs(t, drain(t, q2, 100), span(5, 20))
}

// TestCrashLosesOnlyStaged: a killed process loses the staged records, which
// were never synced, and nothing else; their numbers are not reused.
func TestCrashLosesOnlyStaged(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	appendN(t, q, 0, 10, 10, 100)
	q.Sync()
	staged := appendN(t, q, 10, 10, 10, 100)
	wantIDs(t, drain(t, q, 100), span(0, 20)) // the sender may have published them
	crash(q)
	q2, _ := openTest(t, dir, nil)
	wantIDs(t, drain(t, q2, 100), span(0, 10))
	if st := q2.Stats(); st.CorruptRecords != 0 || st.PendingRecords != 10 {
		t.Fatalf("stats %+v", st)
	}
	if more := appendN(t, q2, 20, 1, 1, 10); more[0].Seq <= staged[9].Seq {
		t.Fatalf("seq %d reused (staged up to %d)", more[0].Seq, staged[9].Seq)
	}
}

// TestReadsVersion1 opens a directory the release before staging left
// after a crash (testdata/v1: two sealed segments, an unsealed one, a
// version-1 cursor at record 30 of 100) and carries on with it.
func TestReadsVersion1(t *testing.T) {
	dir := t.TempDir()
	entries, err := os.ReadDir("testdata/v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata/v1", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q, sink := openTest(t, dir, nil)
	if st := q.Stats(); st.PendingRecords != 70 || st.CorruptBytes != 0 || st.Segments != 3 {
		t.Fatalf("stats %+v\n%s", st, sink)
	}
	out := drain(t, q, 100)
	wantIDs(t, out, span(30, 100))
	q.Ack(out[9].Seq)
	more := appendN(t, q, 100, 5, 5, 100)
	if more[0].Seq <= out[len(out)-1].Seq {
		t.Fatalf("seq %d reused", more[0].Seq)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, cursorName)); err != nil || fi.Size() != cursorFileSize {
		t.Fatalf("cursor not rewritten as version 2: %v %v", fi, err)
	}
	q2, _ := openTest(t, dir, nil)
	wantIDs(t, drain(t, q2, 100), span(40, 105))
}

// TestCursorSlots: the cursor alternates between its two slots; a torn or
// damaged slot leaves the other in force, one generation older.
func TestCursorSlots(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	in := appendN(t, q, 0, 10, 10, 10)
	q.Sync()
	drain(t, q, 100)
	for i := range 4 {
		q.Ack(in[i].Seq)
		q.maintain(time.Now())
	}
	gen := q.cur.gen
	crash(q)
	c, g, err := readCursor(dir)
	if err != nil || g != gen || c.acked != in[3].Seq {
		t.Fatalf("cursor %+v gen %d (want %d): %v", c, g, gen, err)
	}
	// Tear the newest slot: the one before it is in force.
	flipByte(t, filepath.Join(dir, cursorName), int64(gen%2)*cursorSlotPage+20)
	q2, _ := openTest(t, dir, nil)
	wantIDs(t, drain(t, q2, 100), span(3, 10))
	// Both slots damaged: from the oldest record, as without a cursor.
	q2.Close()
	b, _ := os.ReadFile(filepath.Join(dir, cursorName))
	b[5] ^= 1
	b[cursorSlotPage+5] ^= 1
	os.WriteFile(filepath.Join(dir, cursorName), b, 0o600)
	q3, sink := openTest(t, dir, nil)
	if sink.count("cursor file unusable") != 1 {
		t.Fatalf("log:\n%s", sink)
	}
	if got := drain(t, q3, 100); len(got) != 7 && len(got) != 10 {
		t.Fatalf("got %d records", len(got))
	}
}

// TestOpenFsyncsCreatedDirs: every directory level Open creates is fsynced
// into its parent, so the first power cut cannot take the queue directory.
func TestOpenFsyncsCreatedDirs(t *testing.T) {
	base := t.TempDir()
	var mu sync.Mutex
	var synced []string
	hook := func(dir string) error {
		mu.Lock()
		synced = append(synced, dir)
		mu.Unlock()
		return syncDir(dir)
	}
	dir := filepath.Join(base, "a", "b", "queue")
	q, err := Open(Options{Dir: dir, syncDir: hook, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	want := []string{base, filepath.Join(base, "a"), filepath.Join(base, "a", "b")}
	mu.Lock()
	got := append([]string(nil), synced...)
	mu.Unlock()
	if len(got) < len(want) {
		t.Fatalf("fsynced %v, want %v first", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("fsynced %v, want %v first", got, want)
		}
	}
	// The first segment's entry is fsynced with its first commit.
	appendN(t, q, 0, 1, 1, 10)
	mu.Lock()
	synced = nil
	mu.Unlock()
	q.Sync()
	mu.Lock()
	defer mu.Unlock()
	if len(synced) != 1 || synced[0] != dir {
		t.Fatalf("first commit fsynced %v", synced)
	}
}

// TestCommitPadsToPage: a commit that is about to be fsynced ends on a page
// boundary (a pad frame), so the next commit does not write that page
// again; pads are invisible to readers and a pad torn by a power cut is no
// lost record.
func TestCommitPadsToPage(t *testing.T) {
	for _, cut := range []bool{false, true} {
		dir := t.TempDir()
		q, _ := openTest(t, dir, nil)
		appendN(t, q, 0, 100, 10, 200) // about 6 pages
		q.Sync()
		if s := q.segs[0]; s.size%padMax != 0 {
			t.Fatalf("commit ended at %d, not on a page boundary", s.size)
		}
		appendN(t, q, 100, 2, 2, 20) // too small to be worth a pad
		q.Sync()
		if s := q.segs[0]; s.size%padMax == 0 {
			t.Fatalf("small commit padded to %d", s.size)
		}
		appendN(t, q, 102, 100, 10, 200)
		if cut {
			spillNoSync(t, q)
			q.segs[0].synced = q.segs[0].size // pretend, then tear the pad's page
			path := q.segs[0].path
			crash(q)
			appendFile(t, path, appendPadFrame(nil, 1000)[:300])
		} else {
			q.Close()
		}
		q2, sink := openTest(t, dir, nil)
		wantIDs(t, drain(t, q2, 64), span(0, 202))
		if st := q2.Stats(); st.CorruptRecords != 0 || (!cut && st.CorruptBytes != 0) {
			t.Fatalf("cut %v: stats %+v\n%s", cut, st, sink)
		}
	}
}
