package queue

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestFullDiskHealsItself: with sync: always every Append writes, so a full
// disk refuses batches, and accepts them again once space returns.
func TestFullDiskHealsItself(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS()
	q, sink := openTest(t, dir, func(o *Options) {
		o.openFile = fs.open
		o.SyncInterval = 0
	})
	var kept []int
	keep := func(recs []Record) {
		for _, r := range recs {
			kept = append(kept, idOf(t, r))
		}
	}
	keep(appendN(t, q, 0, 100, 10, 200))

	fs.setBudget(3000) // room for one more batch and part of the next
	id := 100
	var err error
	for range 5 {
		recs := mkRecs(id, 10, 200)
		id += 10
		if err = q.Append(recs); err != nil {
			if recs[0].Seq != 0 {
				t.Fatal("failed batch numbered")
			}
			break
		}
		keep(recs)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v", err)
	}
	if err := q.Append(mkRecs(id, 10, 200)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("second append on a full disk: %v", err)
	}
	id += 10
	if st := q.Stats(); st.WriteErrors < 2 {
		t.Fatalf("stats %+v", st)
	}

	fs.setBudget(-1) // space returns
	keep(appendN(t, q, id, 50, 10, 200))
	if sink.count("writes failing") != 1 || sink.count("writes succeed again") != 1 {
		t.Fatalf("log:\n%s", sink)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q2, _ := openTest(t, dir, nil)
	wantIDs(t, drain(t, q2, 100), kept)
	if st := q2.Stats(); st.CorruptBytes != 0 {
		t.Fatalf("partial write left behind: %+v", st)
	}
}

// TestFullDiskRandom fills the disk at random points, including segment
// creation, seals and cursor writes, and checks that exactly the batches
// Append accepted come back, in order.
func TestFullDiskRandom(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS()
	q, _ := openTest(t, dir, func(o *Options) {
		o.openFile = fs.open
		o.SegmentBytes = 4 << 10
		o.SyncInterval = 0
	})
	rng := rand.New(rand.NewPCG(7, 7))
	var kept []int
	id := 0
	for round := range 400 {
		switch round % 4 {
		case 0:
			fs.setBudget(rng.Int64N(3000))
		case 1:
			fs.setBudget(rng.Int64N(80)) // hits seals and headers
		default:
			fs.setBudget(-1)
		}
		recs := mkRecs(id, 1+rng.IntN(8), 150)
		id += len(recs)
		err := q.Append(recs)
		switch {
		case err == nil:
			for _, r := range recs {
				kept = append(kept, idOf(t, r))
			}
		case errors.Is(err, syscall.ENOSPC):
			if recs[0].Seq != 0 {
				// Only an fsync can fail after the write, and fsync has
				// room here: a numbered batch must have succeeded.
				t.Fatalf("round %d: numbered batch failed: %v", round, err)
			}
		default:
			t.Fatalf("round %d: %v", round, err)
		}
	}
	fs.setBudget(-1)
	q.Close()

	q2, sink := openTest(t, dir, nil)
	wantIDs(t, drain(t, q2, 100), kept)
	if st := q2.Stats(); st.CorruptRecords != 0 {
		t.Fatalf("stats %+v\n%s", st, sink)
	}
}

func TestFsyncFailureMovesToNewSegment(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS()
	q, sink := openTest(t, dir, func(o *Options) {
		o.openFile = fs.open
		o.SyncInterval = 0
	})
	appendN(t, q, 0, 10, 10, 100)
	fs.failSyncs(1)
	recs := mkRecs(10, 10, 100)
	err := q.Append(recs)
	if !errors.Is(err, syscall.EIO) || recs[0].Seq == 0 {
		t.Fatalf("append with failing fsync: %v (seq %d)", err, recs[0].Seq)
	}
	appendN(t, q, 20, 10, 10, 100)
	if n := len(segFiles(t, dir)); n != 2 {
		t.Fatalf("%d segments; want a fresh one after the failed fsync", n)
	}
	wantIDs(t, drain(t, q, 100), span(0, 30))
	if st := q.Stats(); st.WriteErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
	if sink.count("writes failing") != 1 {
		t.Fatalf("log:\n%s", sink)
	}
}

func TestOpenRefusesUnusableDir(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("no dir accepted")
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Open(Options{Dir: f}); err == nil {
		t.Fatal("file accepted as dir")
	}
	dir := t.TempDir()
	openTest(t, dir, nil)
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Fatal("second queue on a locked dir")
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(t.TempDir(), "ro")
		os.Mkdir(ro, 0o500)
		if _, err := Open(Options{Dir: ro}); err == nil {
			t.Fatal("read-only dir accepted")
		}
	}
}

func TestOpenCreatesDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	q, _ := openTest(t, dir, nil)
	appendN(t, q, 0, 1, 1, 1)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatal(err)
	}
}

func TestUnreadableSegmentIsSkipped(t *testing.T) {
	dir := t.TempDir()
	q, _ := openTest(t, dir, func(o *Options) { o.SegmentBytes = 4 << 10 })
	appendN(t, q, 0, 100, 5, 100)
	q.Close()
	fs := newFaultFS()
	q2, sink := openTest(t, dir, func(o *Options) { o.openFile = fs.open })
	bad := q2.segs[1]
	fs.failReads(bad.path)
	var want []int
	for id := range 100 {
		if seq := uint64(id + 1); seq < bad.first || seq > bad.last {
			want = append(want, id)
		}
	}
	wantIDs(t, drain(t, q2, 7), want)
	if st := q2.Stats(); st.CorruptRecords != bad.count || st.CorruptBytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	if sink.count("segment unreadable") != 1 {
		t.Fatalf("log:\n%s", sink)
	}
}

// TestRandomDamage damages random byte ranges of a segment (flipped bits,
// zeroed runs) and checks that exactly the records whose bytes are intact
// come back: resynchronisation loses nothing it does not have to.
func TestRandomDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 150 {
		dir := memDir(t)
		q, err := Open(Options{Dir: dir, SyncInterval: time.Hour, CursorInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		var offs []int64 // frame start offsets, and the end
		off := int64(segHeaderSize)
		for i := range 60 {
			recs := mkRecs(i, 1, 10+rng.IntN(200))
			if err := q.Append(recs); err != nil {
				t.Fatal(err)
			}
			offs = append(offs, off)
			off += frameSize(&recs[0])
		}
		offs = append(offs, off)
		sealed := iter%2 == 0
		if sealed {
			q.Close()
		} else {
			q.Sync()
			crash(q)
		}
		path := filepath.Join(dir, segName(1))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		before := bytes.Clone(data)
		for range 1 + rng.IntN(3) {
			end := int64(len(data)) // the seal too, when there is one
			from := segHeaderSize + rng.Int64N(end-segHeaderSize)
			to := min(from+1+rng.Int64N(40), end)
			zero := rng.IntN(2) == 0
			for p := from; p < to; p++ {
				if zero {
					data[p] = 0
				} else {
					data[p] ^= byte(1 + rng.IntN(255))
				}
			}
		}
		damaged := make([]bool, 60)
		for i := range damaged {
			damaged[i] = !bytes.Equal(data[offs[i]:offs[i+1]], before[offs[i]:offs[i+1]])
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var want []int
		for i, d := range damaged {
			if !d {
				want = append(want, i)
			}
		}
		q2, err := Open(Options{Dir: dir, SyncInterval: time.Hour, CursorInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		got := drain(t, q2, 13)
		var ids []int
		for _, r := range got {
			ids = append(ids, idOf(t, r))
		}
		if fmt.Sprint(ids) != fmt.Sprint(want) {
			t.Fatalf("iteration %d (sealed %v): got %v\nwant %v", iter, sealed, ids, want)
		}
		wantCorrupt := 60 - len(want)
		if !sealed && damaged[59] {
			// A damaged end of the segment being written looks like a torn
			// write and is cut off as one record, however many it held.
			run := 0
			for i := 59; i >= 0 && damaged[i]; i-- {
				run++
			}
			wantCorrupt -= run - 1
		}
		if st := q2.Stats(); st.CorruptRecords != uint64(wantCorrupt) {
			t.Fatalf("iteration %d: %d damaged %v, stats %+v", iter, 60-len(want), damaged, st)
		}
		q2.Close()
	}
}
