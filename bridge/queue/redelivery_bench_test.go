package queue

import (
	"sync"
	"testing"
	"time"
)

// BenchmarkRedeliveryAfterCut measures how many records acknowledged before
// a power cut are delivered again after it, with the flusher's own timing
// (sync and cursor interval 100 ms): "steady" at 1,000 records/s with the
// cloud acknowledging within 1–5 ms, "drain" while a 100,000-record backlog
// on disk is sent and acknowledged at 20,000 records/s (about what the
// bridge drains to a broker on loopback). The bound
// (package documentation): records in flight plus records on disk
// acknowledged since the last cursor write. Run with -benchtime=1x.
func BenchmarkRedeliveryAfterCut(b *testing.B) {
	b.Run("steady", func(b *testing.B) {
		for range b.N {
			dir := b.TempDir()
			q, err := Open(Options{Dir: dir, SyncInterval: DefaultSyncInterval})
			if err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); fastCloud(b, q, stop) }()
			payload := make([]byte, wearPayload)
			tick := time.NewTicker(10 * time.Millisecond)
			for range 200 { // 2 s at 1,000 records/s
				<-tick.C
				recs := make([]Record, 10)
				for j := range recs {
					recs[j] = Record{Topic: testTopic, Payload: payload, QoS: 1}
				}
				if err := q.Append(recs); err != nil {
					b.Fatal(err)
				}
			}
			tick.Stop()
			reportRedelivery(b, q, dir, func() { close(stop); wg.Wait() })
		}
	})
	b.Run("drain", func(b *testing.B) {
		for range b.N {
			dir := b.TempDir()
			q, err := Open(Options{Dir: dir, SyncInterval: DefaultSyncInterval})
			if err != nil {
				b.Fatal(err)
			}
			appendRecords(b, q, 100_000)
			if err := q.Sync(); err != nil {
				b.Fatal(err)
			}
			var sent int
			start := time.Now()
			for sent < 50_000 { // half the backlog, then the cut
				time.Sleep(time.Until(start.Add(time.Duration(sent) * 50 * time.Microsecond)))
				recs, err := q.Next(100)
				if err != nil || len(recs) == 0 {
					b.Fatalf("next: %v", err)
				}
				sent += len(recs)
				q.Ack(recs[len(recs)-1].Seq)
			}
			reportRedelivery(b, q, dir, func() {})
		}
	})
}

// reportRedelivery cuts the power under q (after stop has quiesced its
// users), reopens dir and reports how many acknowledged records come back.
func reportRedelivery(b *testing.B, q *Queue, dir string, stop func()) {
	stop()
	q.mu.Lock()
	acked := q.acked
	q.mu.Unlock()
	powerCut(b, q, nil)
	q2, err := Open(Options{Dir: dir, SyncInterval: DefaultSyncInterval})
	if err != nil {
		b.Fatal(err)
	}
	defer q2.Close()
	dups := 0
	for {
		recs, err := q2.Next(1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.Seq <= acked {
				dups++
			}
		}
	}
	b.ReportMetric(float64(dups), "redelivered")
}
