package queue

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// openTest opens a queue in dir whose timers never fire on their own, so
// tests decide when group commits and cursor writes happen.
func openTest(t *testing.T, dir string, mod func(*Options)) (*Queue, *logSink) {
	t.Helper()
	sink := &logSink{}
	o := Options{Dir: dir, SyncInterval: time.Hour, CursorInterval: time.Hour, Logger: sink.logger()}
	if mod != nil {
		mod(&o)
	}
	q, err := Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q, sink
}

// wantIDs checks that recs carry exactly the mkRecs indexes in want, in order.
func wantIDs(t *testing.T, recs []Record, want []int) {
	t.Helper()
	if len(recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if id := idOf(t, r); id != want[i] {
			t.Fatalf("record %d: id %d, want %d", i, id, want[i])
		}
		if i > 0 && r.Seq <= recs[i-1].Seq {
			t.Fatalf("record %d: seq %d after %d", i, r.Seq, recs[i-1].Seq)
		}
	}
}

func span(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestReopenAfterCloseResumesExactly(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, func(o *Options) { o.SegmentBytes = 16 << 10 })
	in := appendN(t, q, 0, 1000, 64, 100)
	if recs, err := q.Next(300); err != nil || len(recs) != 300 {
		t.Fatalf("next: %d, %v", len(recs), err)
	}
	if err := q.Ack(in[249].Seq); err != nil {
		t.Fatal(err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q2, _ := openTest(t, dir, func(o *Options) { o.SegmentBytes = 16 << 10 })
	if st := q2.Stats(); st.PendingRecords != 750 || st.CorruptBytes != 0 {
		t.Fatalf("stats after reopen %+v", st)
	}
	select {
	case <-q2.Ready(): // the backlog is announced
	default:
		t.Fatal("Ready not signalled for the backlog")
	}
	wantIDs(t, drain(t, q2, 100), span(250, 1000))
	more := appendN(t, q2, 1000, 1, 1, 10)
	if more[0].Seq != in[999].Seq+1 {
		t.Fatalf("seq after clean restart %d, want %d", more[0].Seq, in[999].Seq+1)
	}
}

func TestCrashRedeliversOnlyUnpersistedAcks(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, func(o *Options) { o.SegmentBytes = 16 << 10 })
	in := appendN(t, q, 0, 1000, 50, 100)
	if err := q.Sync(); err != nil {
		t.Fatal(err)
	}
	drain(t, q, 100)
	q.Ack(in[299].Seq)
	q.maintain(time.Now()) // the flusher's periodic cursor write
	q.Ack(in[599].Seq)     // acknowledged, not persisted yet
	crash(q)

	q2, _ := openTest(t, dir, nil)
	// Records 300..599 come again (at-least-once), nothing is lost.
	wantIDs(t, drain(t, q2, 100), span(300, 1000))
	if more := appendN(t, q2, 1000, 1, 1, 10); more[0].Seq <= in[999].Seq {
		t.Fatalf("seq %d reused", more[0].Seq)
	}
}

func TestPowerCutLosesOnlyUnsynced(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	synced := appendN(t, q, 0, 500, 50, 100)
	if err := q.Sync(); err != nil {
		t.Fatal(err)
	}
	unsynced := appendN(t, q, 500, 100, 50, 100)
	spillNoSync(t, q) // written, in the page cache, not on the medium
	if got := drain(t, q, 1000); len(got) != 600 {
		t.Fatalf("read %d", len(got)) // the sender may have published these
	}
	torn := appendRecordFrame(nil, &unsynced[0], unsynced[0].Seq, 0)[:37]
	powerCut(t, q, torn)

	q2, sink := openTest(t, dir, nil)
	st := q2.Stats()
	if st.CorruptRecords != 1 || st.CorruptBytes != uint64(len(torn)) {
		t.Fatalf("stats %+v", st)
	}
	if n := sink.count("torn"); n != 1 {
		t.Fatalf("torn tail logged %d times:\n%s", n, sink)
	}
	wantIDs(t, drain(t, q2, 100), span(0, 500))
	// Numbers the sender saw before the cut are never handed out again.
	more := appendN(t, q2, 600, 1, 1, 10)
	if more[0].Seq <= unsynced[99].Seq {
		t.Fatalf("seq %d reused after power cut (last handed out %d)", more[0].Seq, unsynced[99].Seq)
	}
	if synced[499].Seq >= more[0].Seq {
		t.Fatal("order")
	}
}

func TestTruncatedLastRecord(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	in := appendN(t, q, 0, 10, 1, 100)
	q.Sync()
	crash(q)
	path := segFiles(t, dir)[0]
	fi, _ := os.Stat(path)
	if err := os.Truncate(path, fi.Size()-20); err != nil {
		t.Fatal(err)
	}

	q2, sink := openTest(t, dir, nil)
	st := q2.Stats()
	if st.CorruptRecords != 1 || st.CorruptBytes != uint64(frameSize(&in[9])-20) {
		t.Fatalf("stats %+v", st)
	}
	if n := sink.count("torn"); n != 1 {
		t.Fatalf("logged %d times", n)
	}
	wantIDs(t, drain(t, q2, 100), span(0, 9))
	q2.Close()

	q3, _ := openTest(t, dir, nil) // repaired for good: nothing to cut again
	if st := q3.Stats(); st.CorruptBytes != 0 {
		t.Fatalf("stats after second open %+v", st)
	}
	wantIDs(t, drain(t, q3, 100), span(0, 9))
}

func TestZeroFilledTail(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	appendN(t, q, 0, 10, 3, 100)
	q.Sync()
	crash(q)
	appendFile(t, segFiles(t, dir)[0], make([]byte, 4096))

	q2, _ := openTest(t, dir, nil)
	if st := q2.Stats(); st.CorruptBytes != 4096 || st.CorruptRecords != 0 {
		t.Fatalf("stats %+v", st)
	}
	wantIDs(t, drain(t, q2, 100), span(0, 10)) // no phantom records
	appendN(t, q2, 10, 5, 5, 100)
	wantIDs(t, drain(t, q2, 100), span(10, 15))
}

func TestFlippedByteMidSegment(t *testing.T) {
	topicEnd := frameHeaderSize + recordFixed + len(testTopic)
	for _, where := range []struct {
		name  string
		delta int
	}{
		{"length", 1},
		{"crc", 5},
		{"seq", frameHeaderSize + 4},
		{"topic", frameHeaderSize + recordFixed + 2},
		{"payload", topicEnd + 30},
	} {
		for _, sealed := range []bool{true, false} {
			name := where.name + "/unsealed"
			if sealed {
				name = where.name + "/sealed"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				q, _ := openTest(t, dir, nil)
				in := appendN(t, q, 0, 100, 10, 64)
				if sealed {
					q.Close()
				} else {
					q.Sync()
					crash(q)
				}
				path := segFiles(t, dir)[0]
				off := segHeaderSize + 40*frameSize(&in[0]) + int64(where.delta)
				flipByte(t, path, off)

				q2, sink := openTest(t, dir, nil)
				want := append(span(0, 40), span(41, 100)...)
				wantIDs(t, drain(t, q2, 7), want)
				st := q2.Stats()
				if st.CorruptRecords != 1 || st.CorruptBytes < uint64(frameSize(&in[0])) {
					t.Fatalf("stats %+v", st)
				}
				q2.Rewind() // reading the damage again does not count it again
				wantIDs(t, drain(t, q2, 100), want)
				if st2 := q2.Stats(); st2.CorruptRecords != 1 || st2.CorruptBytes != st.CorruptBytes {
					t.Fatalf("counted twice: %+v", st2)
				}
				if n := sink.count("corrupt records skipped"); n != 1 {
					t.Fatalf("logged %d times:\n%s", n, sink)
				}
			})
		}
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestMissingOrCorruptCursor(t *testing.T) {
	for _, tc := range []struct {
		name, log string
		damage    func(path string) error
	}{
		{"missing", "no cursor file", os.Remove},
		{"corrupt", "cursor file unusable", func(p string) error { return os.WriteFile(p, []byte("garbage, not a cursor at all...."), 0o600) }},
		{"truncated", "cursor file unusable", func(p string) error { return os.Truncate(p, 7) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			q, _ := openTest(t, dir, nil)
			in := appendN(t, q, 0, 10, 10, 50)
			q.Sync() // all ten on disk, the acknowledged ones too
			drain(t, q, 100)
			q.Ack(in[4].Seq)
			q.Close()
			if err := tc.damage(filepath.Join(dir, cursorName)); err != nil {
				t.Fatal(err)
			}
			q2, sink := openTest(t, dir, nil)
			if sink.count(tc.log) != 1 {
				t.Fatalf("log:\n%s", sink)
			}
			wantIDs(t, drain(t, q2, 100), span(0, 10)) // from the oldest record present
			if more := appendN(t, q2, 10, 1, 1, 10); more[0].Seq <= in[9].Seq {
				t.Fatalf("seq %d reused", more[0].Seq)
			}
		})
	}
}

func TestGarbageFilesInDir(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, func(o *Options) { o.SegmentBytes = 4 << 10 })
	appendN(t, q, 0, 100, 5, 100)
	q.Close()
	if len(segFiles(t, dir)) < 3 {
		t.Fatal("want several segments")
	}
	garbage := bytes.Repeat([]byte("not a segment "), 70) // 980 bytes
	os.WriteFile(filepath.Join(dir, segName(2)), garbage, 0o600)
	os.WriteFile(filepath.Join(dir, segName(3)), []byte("FBQSEG"), 0o600) // torn at creation
	os.WriteFile(filepath.Join(dir, "junk.txt"), []byte("hello"), 0o600)
	os.Mkdir(filepath.Join(dir, segName(4)), 0o700)

	q2, sink := openTest(t, dir, func(o *Options) { o.SegmentBytes = 4 << 10 })
	wantIDs(t, drain(t, q2, 100), span(0, 100))
	if st := q2.Stats(); st.CorruptBytes != uint64(len(garbage)+6) {
		t.Fatalf("stats %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(2)+corruptSuffix)); err != nil {
		t.Fatalf("garbage segment not moved aside: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(3))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("torn segment not removed: %v", err)
	}
	if sink.count("moving the file aside") != 1 || sink.count("not segments") != 1 {
		t.Fatalf("log:\n%s", sink)
	}
	q2.Close()
	_, sink3 := openTest(t, dir, func(o *Options) { o.SegmentBytes = 4 << 10 })
	if sink3.count("moved aside earlier") != 1 {
		t.Fatalf("log:\n%s", sink3)
	}
}

func TestSegmentsDeletedAfterAck(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, func(o *Options) {
		o.SegmentBytes = 4 << 10
		o.CursorInterval = 5 * time.Millisecond
	})
	appendN(t, q, 0, 500, 10, 100)
	n := len(segFiles(t, dir))
	if n < 10 {
		t.Fatalf("%d segments", n)
	}
	out := drain(t, q, 100)
	q.Ack(out[249].Seq)
	eventually(t, "half the segments removed", func() bool {
		st := q.Stats()
		return st.Segments == len(segFiles(t, dir)) && st.PendingRecords == 250 && st.Segments <= n/2+1
	})
	q.Ack(out[499].Seq)
	// The newest segment stays: it records the Seq high-water mark.
	eventually(t, "all but the newest segment removed", func() bool {
		return len(segFiles(t, dir)) == 1 && q.Stats().Segments == 1
	})
}

func TestSeqContinuesAcrossRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stop    func(*Queue)
		noGap   bool
		rmCurso bool
	}{
		{"close", func(q *Queue) { q.Close() }, true, false},
		{"crash", crash, false, false},
		{"close-lost-cursor", func(q *Queue) { q.Close() }, true, true},
		{"crash-lost-cursor", crash, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			q, _ := openTest(t, dir, func(o *Options) { o.SegmentBytes = 4 << 10 })
			in := appendN(t, q, 0, 200, 10, 100)
			q.Sync()
			out := drain(t, q, 1000)
			q.Ack(out[len(out)-1].Seq)
			q.maintain(time.Now()) // fully drained: only the newest segment is left
			tc.stop(q)
			if tc.rmCurso {
				os.Remove(filepath.Join(dir, cursorName))
			}
			q2, _ := openTest(t, dir, nil)
			if !tc.rmCurso {
				if got := drain(t, q2, 100); len(got) != 0 {
					t.Fatalf("drained queue delivered %d records", len(got))
				}
			}
			more := appendN(t, q2, 200, 1, 1, 10)
			last := in[199].Seq
			if more[0].Seq <= last || (tc.noGap && more[0].Seq != last+1) {
				t.Fatalf("seq %d after %d", more[0].Seq, last)
			}
		})
	}
}

// TestBatchFlagKept: the batch mark of a record survives staging, the disk
// and a restart.
func TestBatchFlagKept(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	if err := q.Append([]Record{{Topic: "a", Payload: []byte("1"), QoS: 1, Batch: true}, {Topic: "b", Payload: []byte("2"), QoS: 1}}); err != nil {
		t.Fatal(err)
	}
	check := func(where string, recs []Record) {
		t.Helper()
		if len(recs) != 2 || !recs[0].Batch || recs[1].Batch {
			t.Fatalf("%s: %+v, want the first record marked for batching and only it", where, recs)
		}
	}
	recs, err := q.Next(10)
	if err != nil {
		t.Fatal(err)
	}
	check("staged", recs)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, _ = openTest(t, dir, nil)
	defer q.Close()
	recs, err = q.Next(10)
	if err != nil {
		t.Fatal(err)
	}
	check("after a restart", recs)
}

// TestOldestTime: Stats.OldestTime is the enqueue time of the oldest
// pending record — staged, on disk after a commit, and after a restart — and
// zero once everything is acknowledged.
func TestOldestTime(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	t0 := time.Unix(1_700_000_000, 0)
	recs := make([]Record, 10)
	for i := range recs {
		recs[i] = Record{Time: t0.Add(time.Duration(i) * time.Second), Topic: "a", Payload: []byte("x"), QoS: 1}
	}
	if err := q.Append(recs); err != nil {
		t.Fatal(err)
	}
	if got := q.Stats().OldestTime; !got.Equal(t0) {
		t.Fatalf("staged: OldestTime %v, want %v", got, t0)
	}
	if err := q.Ack(recs[2].Seq); err != nil {
		t.Fatal(err)
	}
	if got := q.Stats().OldestTime; !got.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("staged, three acknowledged: OldestTime %v, want %v", got, t0.Add(3*time.Second))
	}
	if err := q.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := q.Stats().OldestTime; !got.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("on disk: OldestTime %v, want %v (the segment starts with the oldest pending record)", got, t0.Add(3*time.Second))
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q, _ = openTest(t, dir, nil)
	defer q.Close()
	if got := q.Stats().OldestTime; !got.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("after a restart: OldestTime %v, want %v", got, t0.Add(3*time.Second))
	}
	if err := q.Ack(recs[9].Seq); err != nil {
		t.Fatal(err)
	}
	if got := q.Stats().OldestTime; !got.IsZero() {
		t.Fatalf("all acknowledged: OldestTime %v, want zero", got)
	}
}
