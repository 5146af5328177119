package queue

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// factory makes an empty queue for one conformance test.
type factory func(t *testing.T, maxBytes int64, policy Policy) queueAPI

func TestConformanceMemory(t *testing.T) {
	runConformance(t, func(t *testing.T, maxBytes int64, policy Policy) queueAPI {
		m := NewMemory(maxBytes, policy)
		t.Cleanup(func() { m.Close() })
		return m
	})
}

func TestConformanceDisk(t *testing.T) {
	runConformance(t, diskFactory(10*time.Millisecond))
}

func TestConformanceDiskSyncAlways(t *testing.T) {
	runConformance(t, diskFactory(0))
}

// TestConformanceDiskSmallStaging: a staging area of 1 KiB, so that Append
// writes staged records out early all the time.
func TestConformanceDiskSmallStaging(t *testing.T) {
	runConformance(t, diskFactoryStaging(10*time.Millisecond, 1<<10))
}

func diskFactory(syncInterval time.Duration) factory {
	return diskFactoryStaging(syncInterval, 0)
}

func diskFactoryStaging(syncInterval time.Duration, staging int64) factory {
	return func(t *testing.T, maxBytes int64, policy Policy) queueAPI {
		q, err := Open(Options{Dir: t.TempDir(), MaxBytes: maxBytes, WhenFull: policy, SyncInterval: syncInterval, CursorInterval: 5 * time.Millisecond, StagingBytes: staging})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}
}

// runConformance is the one suite every queue implementation must pass.
func runConformance(t *testing.T, newQ factory) {
	t.Run("OrderAndSeq", func(t *testing.T) {
		q := newQ(t, 0, DropOldest)
		in := appendN(t, q, 0, 300, 64, 256)
		for i := 1; i < len(in); i++ {
			if in[i].Seq <= in[i-1].Seq {
				t.Fatalf("seq %d after %d", in[i].Seq, in[i-1].Seq)
			}
		}
		out := drain(t, q, 7)
		if len(out) != len(in) {
			t.Fatalf("got %d records, want %d", len(out), len(in))
		}
		for i := range in {
			a, b := in[i], out[i]
			if a.Seq != b.Seq || a.Topic != b.Topic || !bytes.Equal(a.Payload, b.Payload) || a.QoS != b.QoS || a.Retain != b.Retain || !a.Time.Equal(b.Time) {
				t.Fatalf("record %d: got %+v, want %+v", i, b, a)
			}
		}
		if st := q.Stats(); st.Appended != 300 || st.PendingRecords != 300 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("Fields", func(t *testing.T) {
		q := newQ(t, 0, DropOldest)
		stamp := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
		in := []Record{
			{Topic: "a", Payload: nil, QoS: 0},
			{Topic: "", Payload: []byte{0}, QoS: 2, Retain: true, Time: stamp},
			{Topic: "x/y", Payload: bytes.Repeat([]byte{0xff}, 100000), QoS: 1},
		}
		before := time.Now()
		if err := q.Append(in); err != nil {
			t.Fatal(err)
		}
		if in[0].Time.Before(before) || !in[1].Time.Equal(stamp) {
			t.Fatalf("times not set as documented: %v %v", in[0].Time, in[1].Time)
		}
		out := drain(t, q, 10)
		if len(out) != 3 || len(out[0].Payload) != 0 || !out[1].Time.Equal(stamp) || !out[1].Retain || out[1].QoS != 2 || !bytes.Equal(out[2].Payload, in[2].Payload) {
			t.Fatalf("got %+v", out)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		q := newQ(t, 0, DropOldest)
		recs := []Record{{Topic: "ok"}, {Topic: "bad", QoS: 3}}
		if err := q.Append(recs); !errors.Is(err, ErrInvalidRecord) {
			t.Fatalf("err = %v", err)
		}
		if recs[0].Seq != 0 || q.Stats().Appended != 0 {
			t.Fatal("a refused batch left records behind")
		}
	})

	t.Run("EmptyAndZero", func(t *testing.T) {
		q := newQ(t, 0, DropOldest)
		if recs, err := q.Next(10); err != nil || len(recs) != 0 {
			t.Fatalf("next on empty = %v, %v", recs, err)
		}
		if err := q.Append(nil); err != nil {
			t.Fatal(err)
		}
		appendN(t, q, 0, 3, 3, 10)
		if recs, err := q.Next(0); err != nil || len(recs) != 0 {
			t.Fatalf("next(0) = %v, %v", recs, err)
		}
	})

	t.Run("AckAndRewind", func(t *testing.T) {
		q := newQ(t, 0, DropOldest)
		in := appendN(t, q, 0, 10, 10, 50)
		if got := drain(t, q, 4); len(got) != 10 {
			t.Fatalf("got %d", len(got))
		}
		if err := q.Ack(in[4].Seq); err != nil {
			t.Fatal(err)
		}
		if err := q.Ack(in[1].Seq); err != nil { // stale: no-op
			t.Fatal(err)
		}
		q.Rewind()
		got := drain(t, q, 3)
		if len(got) != 5 || got[0].Seq != in[5].Seq {
			t.Fatalf("after rewind got %d records from %d, want 5 from %d", len(got), got[0].Seq, in[5].Seq)
		}
		st := q.Stats()
		if st.Acked != 5 || st.PendingRecords != 5 {
			t.Fatalf("stats %+v", st)
		}
		if err := q.Ack(in[9].Seq + 1000); err != nil { // beyond the newest: clamps
			t.Fatal(err)
		}
		q.Rewind()
		if got := drain(t, q, 3); len(got) != 0 {
			t.Fatalf("acked records returned: %d", len(got))
		}
		if st := q.Stats(); st.Acked != 10 || st.PendingRecords != 0 {
			t.Fatalf("stats %+v", st)
		}
		more := appendN(t, q, 10, 2, 2, 50)
		if more[0].Seq <= in[9].Seq {
			t.Fatalf("seq %d reused", more[0].Seq)
		}
		if got := drain(t, q, 3); len(got) != 2 || got[0].Seq != more[0].Seq {
			t.Fatalf("got %+v", got)
		}
	})

	t.Run("WindowResend", func(t *testing.T) {
		// The sender's loop: a window of W in flight, acks in order, and on
		// a connection error a rewind to the oldest unacknowledged record.
		q := newQ(t, 0, DropOldest)
		in := appendN(t, q, 0, 2000, 64, 40)
		const W = 20
		rng := rand.New(rand.NewPCG(1, 2))
		var inflight []Record
		var acked []uint64
		for rounds := 0; len(acked) < len(in); rounds++ {
			if rounds > 100000 {
				t.Fatal("no progress")
			}
			recs, err := q.Next(W - len(inflight))
			if err != nil {
				t.Fatal(err)
			}
			inflight = append(inflight, recs...)
			if rng.IntN(10) == 0 { // connection lost
				inflight = inflight[:0]
				q.Rewind()
				continue
			}
			k := rng.IntN(len(inflight) + 1)
			for _, r := range inflight[:k] {
				if err := q.Ack(r.Seq); err != nil {
					t.Fatal(err)
				}
				acked = append(acked, r.Seq)
			}
			inflight = inflight[k:]
		}
		for i := range in {
			if acked[i] != in[i].Seq {
				t.Fatalf("ack %d: seq %d, want %d (gap or reorder)", i, acked[i], in[i].Seq)
			}
		}
	})

	t.Run("Ready", func(t *testing.T) {
		q := newQ(t, 0, DropOldest)
		select {
		case <-q.Ready():
			t.Fatal("ready before any append")
		default:
		}
		appendN(t, q, 0, 1, 1, 10)
		appendN(t, q, 1, 1, 1, 10)
		select {
		case <-q.Ready():
		case <-time.After(5 * time.Second):
			t.Fatal("not signalled after append")
		}
		select {
		case <-q.Ready():
			t.Fatal("signals did not coalesce")
		default:
		}
		if got := drain(t, q, 10); len(got) != 2 {
			t.Fatalf("got %d", len(got))
		}
	})

	t.Run("QuotaDropNewest", func(t *testing.T) {
		const limit = 32 << 10
		q := newQ(t, limit, DropNewest)
		var kept []Record
		refused := 0
		for i := 0; i < 300; i++ {
			recs := mkRecs(i, 1, 256)
			err := q.Append(recs)
			switch {
			case err == nil:
				kept = append(kept, recs...)
			case errors.Is(err, ErrFull):
				refused++
				if recs[0].Seq != 0 {
					t.Fatal("refused record numbered")
				}
			default:
				t.Fatal(err)
			}
			if b := q.Stats().Bytes; b > limit {
				t.Fatalf("%d bytes used, limit %d", b, limit)
			}
		}
		st := q.Stats()
		if refused == 0 || st.Dropped != uint64(refused) || st.Appended != uint64(len(kept)) {
			t.Fatalf("refused %d, stats %+v", refused, st)
		}
		out := drain(t, q, 50)
		if len(out) != len(kept) || out[len(out)-1].Seq != kept[len(kept)-1].Seq {
			t.Fatalf("delivered %d of %d kept", len(out), len(kept))
		}
		if err := q.Ack(out[len(out)-1].Seq); err != nil {
			t.Fatal(err)
		}
		appendN(t, q, 1000, 20, 1, 256) // room again once acknowledged
	})

	t.Run("QuotaDropOldest", func(t *testing.T) {
		const limit = 32 << 10
		q := newQ(t, limit, DropOldest)
		in := appendN(t, q, 0, 1000, 8, 256)
		st := q.Stats()
		if st.Bytes > limit || st.Dropped == 0 || st.Appended != 1000 || st.PendingRecords+st.Dropped != 1000 {
			t.Fatalf("stats %+v", st)
		}
		out := drain(t, q, 64)
		if uint64(len(out))+st.Dropped != 1000 {
			t.Fatalf("delivered %d + dropped %d != 1000", len(out), st.Dropped)
		}
		if out[len(out)-1].Seq != in[len(in)-1].Seq {
			t.Fatal("newest record not delivered")
		}
		for i := 1; i < len(out); i++ {
			if out[i].Seq <= out[i-1].Seq {
				t.Fatalf("order broken at %d", i)
			}
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		// The bridge's goroutines: a writer, a sender reading a window of
		// 20, an acker confirming PUBACKs in order, a metrics reader.
		q := newQ(t, 0, DropOldest)
		const n = 20000
		var wg sync.WaitGroup
		stop := make(chan struct{})
		inflight := make(chan Record, 20)
		wg.Add(3)
		go func() { // writer
			defer wg.Done()
			for i := 0; i < n; i += 100 {
				if err := q.Append(mkRecs(i, 100, 64)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() { // metrics
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					q.Stats()
				}
			}
		}()
		go func() { // sender
			defer wg.Done()
			defer close(inflight)
			deadline := time.After(20 * time.Second)
			for sent := 0; sent < n; {
				recs, err := q.Next(20)
				if err != nil {
					t.Error(err)
					return
				}
				if len(recs) == 0 {
					select {
					case <-q.Ready():
					case <-deadline:
						t.Errorf("stuck after %d", sent)
						return
					}
					continue
				}
				for _, r := range recs {
					inflight <- r // blocks while 20 are unconfirmed
				}
				sent += len(recs)
			}
		}()
		// acker
		var last uint64
		next := 0
		for r := range inflight {
			if id := idOf(t, r); id != next || r.Seq <= last {
				t.Fatalf("got id %d seq %d, want id %d after seq %d", id, r.Seq, next, last)
			}
			last = r.Seq
			next++
			if err := q.Ack(r.Seq); err != nil {
				t.Fatal(err)
			}
		}
		close(stop)
		wg.Wait()
		if next != n {
			t.Fatalf("confirmed %d of %d", next, n)
		}
		if st := q.Stats(); st.Acked != n || st.PendingRecords != 0 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("Closed", func(t *testing.T) {
		q := newQ(t, 0, DropOldest)
		appendN(t, q, 0, 3, 3, 10)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
		if err := q.Append(mkRecs(0, 1, 1)); !errors.Is(err, ErrClosed) {
			t.Fatalf("append after close: %v", err)
		}
		if _, err := q.Next(1); !errors.Is(err, ErrClosed) {
			t.Fatalf("next after close: %v", err)
		}
		if err := q.Ack(1); !errors.Is(err, ErrClosed) {
			t.Fatalf("ack after close: %v", err)
		}
	})
}
