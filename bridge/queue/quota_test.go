package queue

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"
)

// dirBytes sums the sizes of the segment files in dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, p := range segFiles(t, dir) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func TestQuotaDropOldestOnDisk(t *testing.T) {
	const limit = 64 << 10
	dir := t.TempDir()
	q, sink := openTest(t, dir, func(o *Options) {
		o.MaxBytes = limit
		o.CursorInterval = 5 * time.Millisecond
	})
	for i := 0; i < 2000; i += 8 {
		appendN(t, q, i, 8, 8, 256)
		if st := q.Stats(); st.Bytes > limit || dirBytes(t, dir) != st.Bytes-st.StagedBytes {
			t.Fatalf("after %d: %d bytes accounted (%d staged), %d on disk, limit %d", i, st.Bytes, st.StagedBytes, dirBytes(t, dir), limit)
		}
	}
	st := q.Stats()
	out := drain(t, q, 100)
	if st.Dropped == 0 || uint64(len(out))+st.Dropped != 2000 || idOf(t, out[len(out)-1]) != 1999 {
		t.Fatalf("delivered %d, stats %+v", len(out), st)
	}
	if n := sink.count("quota reached"); n != 1 {
		t.Fatalf("quota logged %d times:\n%s", n, sink)
	}
	// Once the backlog is sent, the episode ends with one line.
	q.Ack(out[len(out)-1].Seq)
	eventually(t, "acknowledged segments removed", func() bool { return q.Stats().Segments == 1 })
	appendN(t, q, 2000, 8, 8, 256)
	if n := sink.count("below quota again"); n != 1 {
		t.Fatalf("end of episode logged %d times:\n%s", n, sink)
	}
}

func TestQuotaDropNewestOnDisk(t *testing.T) {
	const limit = 64 << 10
	dir := t.TempDir()
	q, sink := openTest(t, dir, func(o *Options) {
		o.MaxBytes = limit
		o.WhenFull = DropNewest
	})
	accepted, refused := 0, 0
	for i := 0; i < 500; i += 4 {
		err := q.Append(mkRecs(i, 4, 256))
		switch {
		case err == nil:
			accepted += 4
		case errors.Is(err, ErrFull):
			refused += 4
		default:
			t.Fatal(err)
		}
	}
	if st := q.Stats(); refused == 0 || st.Dropped != uint64(refused) || st.Bytes > limit || dirBytes(t, dir) > limit {
		t.Fatalf("refused %d, stats %+v", refused, q.Stats())
	}
	if n := sink.count("quota reached"); n != 1 {
		t.Fatalf("quota logged %d times", n)
	}
	out := drain(t, q, 100)
	wantIDs(t, out, span(0, accepted)) // the oldest data is kept
	// Acknowledged segments make room synchronously, without waiting for
	// the cursor timer.
	q.Ack(out[len(out)-1].Seq)
	appendN(t, q, 1000, 40, 4, 256)
}

func TestMaxAgeSkipsOldRecords(t *testing.T) {
	dir := t.TempDir()
	q, sink := openTest(t, dir, func(o *Options) {
		o.MaxAge = time.Hour
		o.SegmentBytes = 4 << 10
	})
	old := time.Now().Add(-2 * time.Hour)
	for i := 0; i < 100; i += 5 {
		recs := mkRecs(i, 5, 100)
		for j := range recs {
			recs[j].Time = old
		}
		if err := q.Append(recs); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, q, 100, 10, 5, 100)
	wantIDs(t, drain(t, q, 7), span(100, 110))
	if st := q.Stats(); st.Expired != 100 {
		t.Fatalf("stats %+v", st)
	}
	q.Rewind() // passing the expired records again does not count them again
	wantIDs(t, drain(t, q, 7), span(100, 110))
	q.maintain(time.Now()) // neither does removing their segments
	if st := q.Stats(); st.Expired != 100 || st.Segments > 2 || st.PendingRecords != 10 {
		t.Fatalf("stats %+v", st)
	}
	if n := sink.count("older than MaxAge expired"); n != 1 || sink.count("no longer expiring") != 1 {
		t.Fatalf("expiry logged %d times:\n%s", n, sink)
	}
}

func TestMaxAgeRemovesWholeSegments(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, func(o *Options) {
		o.MaxAge = time.Hour
		o.SegmentBytes = 4 << 10
	})
	old := time.Now().Add(-2 * time.Hour)
	for i := 0; i < 100; i += 5 {
		recs := mkRecs(i, 5, 100)
		for j := range recs {
			recs[j].Time = old
		}
		q.Append(recs)
	}
	appendN(t, q, 100, 10, 10, 100) // fresh records in the newest segment
	before := q.Stats().Segments
	q.maintain(time.Now()) // what the flusher's expiry ticker does
	st := q.Stats()
	if st.Segments >= before || st.Expired == 0 || dirBytes(t, dir) != st.Bytes-st.StagedBytes {
		t.Fatalf("before %d segments, stats %+v", before, st)
	}
	wantIDs(t, drain(t, q, 100), span(100, 110))
	if st := q.Stats(); st.Expired != 100 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRewindWithoutMarks(t *testing.T) {
	q, _ := openTest(t, t.TempDir(), func(o *Options) { o.SegmentBytes = 4 << 10 })
	in := appendN(t, q, 0, 300, 10, 100)
	for range 300 { // more Next calls than marks are kept
		if recs, _ := q.Next(1); len(recs) != 1 {
			t.Fatal("short read")
		}
	}
	q.Ack(in[9].Seq)
	q.Rewind()
	wantIDs(t, drain(t, q, 100), span(10, 300))
	q.Ack(in[150].Seq)
	q.Rewind()
	wantIDs(t, drain(t, q, 100), span(151, 300))
}

func TestLargeRecords(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, nil)
	in := appendN(t, q, 0, 6, 2, 1<<20) // larger than the read window
	appendN(t, q, 6, 100, 10, 100)
	wantIDs(t, drain(t, q, 3), span(0, 106))
	q.Close()
	q2, _ := openTest(t, dir, nil)
	out := drain(t, q2, 100)
	wantIDs(t, out, span(0, 106))
	if string(out[5].Payload) != string(in[5].Payload) {
		t.Fatal("payload differs")
	}
	if err := q2.Append([]Record{{Topic: "t", Payload: make([]byte, MaxPayload+1)}}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("oversized payload: %v", err)
	}
}

// TestMemoryStaysFlat: the backlog lives on disk, not in the heap.
func TestMemoryStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 20 MB")
	}
	q, _ := openTest(t, t.TempDir(), nil)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	appendN(t, q, 0, 1000, 64, 256)
	drain(t, q, 20)
	before := heap()
	batch := mkRecs(0, 64, 256)
	for range 1000 { // 64,000 records, ~20 MB
		for i := range batch {
			batch[i].Time = time.Time{}
		}
		if err := q.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	for n := 0; n < 32000; {
		recs, err := q.Next(20)
		if err != nil || len(recs) == 0 {
			t.Fatalf("next: %d, %v", len(recs), err)
		}
		n += len(recs)
		q.Ack(recs[len(recs)-1].Seq)
	}
	grew := int64(heap()) - int64(before)
	t.Logf("heap growth %d bytes", grew)
	if grew > 2<<20 {
		t.Fatalf("heap grew by %d bytes with a 20 MB backlog", grew)
	}
}

func TestPolicyText(t *testing.T) {
	for _, p := range []Policy{DropOldest, DropNewest} {
		b, err := p.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Policy
		if err := back.UnmarshalText(b); err != nil || back != p {
			t.Fatalf("%s: %v, %v", b, back, err)
		}
	}
	var p Policy
	if err := p.UnmarshalText([]byte("drop-random")); err == nil {
		t.Fatal("unknown policy accepted")
	}
}
