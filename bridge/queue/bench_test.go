package queue

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchBatch is what the bridge's writer appends at once: 64 messages with
// 256-byte payloads on a realistic topic.
func benchBatch() []Record {
	recs := make([]Record, 64)
	for i := range recs {
		p := make([]byte, 256)
		for j := range p {
			p[j] = byte(i + j)
		}
		recs[i] = Record{Topic: testTopic, Payload: p, QoS: 1}
	}
	return recs
}

func benchOpen(b *testing.B, syncInterval time.Duration) *Queue {
	b.Helper()
	q, err := Open(Options{Dir: b.TempDir(), SyncInterval: syncInterval})
	if err != nil {
		b.Fatal(err)
	}
	return q
}

// appendRecords appends n records in batches of 64.
func appendRecords(b *testing.B, q *Queue, n int) {
	batch := benchBatch()
	for i := 0; i < n; i += len(batch) {
		recs := batch[:min(len(batch), n-i)]
		for j := range recs {
			recs[j].Time = time.Time{}
		}
		if err := q.Append(recs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppend: one op is one record; budget ≥ 100,000 records/s.
func BenchmarkAppend(b *testing.B) {
	q := benchOpen(b, DefaultSyncInterval)
	b.SetBytes(int64(len(testTopic) + 256))
	b.ReportAllocs()
	b.ResetTimer()
	appendRecords(b, q, b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	q.Close()
}

// BenchmarkAppendSyncAlways: the same with an fsync in every Append.
func BenchmarkAppendSyncAlways(b *testing.B) {
	q := benchOpen(b, 0)
	b.SetBytes(int64(len(testTopic) + 256))
	b.ResetTimer()
	appendRecords(b, q, b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	q.Close()
}

// BenchmarkDrain: the sender's side, Next(20) and Ack, over a backlog on disk.
func BenchmarkDrain(b *testing.B) {
	q := benchOpen(b, DefaultSyncInterval)
	appendRecords(b, q, b.N)
	q.Sync()
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		recs, err := q.Next(20)
		if err != nil || len(recs) == 0 {
			b.Fatalf("next after %d: %d, %v", n, len(recs), err)
		}
		n += len(recs)
		if err := q.Ack(recs[len(recs)-1].Seq); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	q.Close()
}

// BenchmarkWriteAmplification runs the production cycle: a writer appending
// batches while a sender reads windows of 20 and acknowledges them, group
// commit every 100 ms, cursor every second, then Close. It reports the bytes
// the kernel accounted as written to disk (/proc/self/io write_bytes, and
// net of cancelled_write_bytes) and the bytes this package wrote, each per
// byte enqueued (topic + payload), and the end-to-end rate. "full" pushes
// 200,000 records as fast as they go in batches of 64; the paced runs feed
// a steady rate for 5 s in batches every 10 ms, where each group commit
// rewrites a partly filled page. Run with -benchtime=1x.
func BenchmarkWriteAmplification(b *testing.B) {
	b.Run("full", func(b *testing.B) { runCycle(b, 200_000, 0, DefaultSyncInterval) })
	for _, rate := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("rate=%d/s", rate), func(b *testing.B) { runCycle(b, rate*5, rate, DefaultSyncInterval) })
	}
	// The lever for a slow gateway: a longer group-commit interval.
	b.Run("rate=100/s,sync=1s", func(b *testing.B) { runCycle(b, 500, 100, time.Second) })
}

// runCycle appends n records, at rate records/s (0 = as fast as possible),
// while draining and acknowledging them.
func runCycle(b *testing.B, n, rate int, syncInterval time.Duration) {
	for range b.N {
		dir := b.TempDir()
		before := readProcIO(b)
		start := time.Now()
		q, err := Open(Options{Dir: dir, SyncInterval: syncInterval})
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rate == 0 {
				appendRecords(b, q, n)
				return
			}
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			per := max(rate/100, 1)
			for sent := 0; sent < n; sent += per {
				<-tick.C
				appendRecords(b, q, min(per, n-sent))
			}
		}()
		for got := 0; got < n; {
			recs, err := q.Next(20)
			if err != nil {
				b.Fatal(err)
			}
			if len(recs) == 0 {
				<-q.Ready()
				continue
			}
			got += len(recs)
			q.Ack(recs[len(recs)-1].Seq)
		}
		wg.Wait()
		elapsed := time.Since(start)
		st := q.Stats()
		if err := q.Close(); err != nil {
			b.Fatal(err)
		}
		after := readProcIO(b)
		enq := float64(n * (len(testTopic) + 256))
		written := float64(after["write_bytes"] - before["write_bytes"])
		cancelled := float64(after["cancelled_write_bytes"] - before["cancelled_write_bytes"])
		b.ReportMetric(written/enq, "disk-B/enq-B")
		b.ReportMetric((written-cancelled)/enq, "net-disk-B/enq-B")
		b.ReportMetric(float64(st.BytesWritten)/enq, "logical-B/enq-B")
		b.ReportMetric(float64(n)/elapsed.Seconds(), "e2e-records/s")
	}
}

// readProcIO parses /proc/self/io; it skips the benchmark where there is none.
func readProcIO(b *testing.B) map[string]int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	defer f.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if ok {
			m[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return m
}
