package queue

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// wearPayload is the payload size of the SD-card wear budget: 200 bytes.
const wearPayload = 200

// BenchmarkSDWear measures what the SD card sees at a steady load: bytes
// the kernel accounts as written (/proc/self/io write_bytes: every page
// dirtied counts 4096) per payload byte, with group commit every 100 ms.
// "up" runs a fast cloud: a consumer Next()s every record and acknowledges
// it 1–5 ms later; "down" acknowledges nothing. The queue is opened and
// warmed up for a second before the measurement, so that only the steady
// state counts. Budget: up ≤ 0.1, down ≤ 1.5. The temp dir must be on a
// real disk (TMPDIR=/var/tmp): tmpfs counts nothing. Run with -benchtime=1x.
func BenchmarkSDWear(b *testing.B) {
	for _, link := range []string{"up", "down"} {
		for _, rate := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("link=%s/rate=%d", link, rate), func(b *testing.B) {
				for range b.N {
					runWear(b, rate, link == "up", 5*time.Second)
				}
			})
		}
	}
}

// runWear appends rate records/s for warm-up + d and reports the figures of d.
func runWear(b *testing.B, rate int, up bool, d time.Duration) {
	q, err := Open(Options{Dir: b.TempDir(), SyncInterval: DefaultSyncInterval})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if up {
		wg.Add(1)
		go func() { defer wg.Done(); fastCloud(b, q, stop) }()
	}
	payload := make([]byte, wearPayload)
	produce := func(dur time.Duration) int {
		// A batch every 10 ms, as the bridge's writer does under load.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		per := max(rate/100, 1)
		every := max(100/rate, 1) // below 100/s: one record every few ticks
		n := 0
		end := time.Now().Add(dur)
		for i := 0; time.Now().Before(end); i++ {
			<-tick.C
			if i%every != 0 {
				continue
			}
			recs := make([]Record, per)
			for j := range recs {
				recs[j] = Record{Topic: testTopic, Payload: payload, QoS: 1}
			}
			if err := q.Append(recs); err != nil {
				b.Error(err)
				return n
			}
			n += per
		}
		return n
	}
	produce(time.Second) // warm-up: Open, the first cursor write, segment creation
	before := readProcIO(b)
	st0 := q.Stats()
	n := produce(d)
	after := readProcIO(b)
	st1 := q.Stats()
	close(stop)
	wg.Wait()
	payloadBytes := float64(n * wearPayload)
	b.ReportMetric(float64(after["write_bytes"]-before["write_bytes"])/payloadBytes, "disk-B/payload-B")
	b.ReportMetric(float64(st1.BytesWritten-st0.BytesWritten)/payloadBytes, "logical-B/payload-B")
	b.ReportMetric(float64(st1.Syncs-st0.Syncs)/d.Seconds(), "fsyncs/s")
	b.ReportMetric(float64(n)/d.Seconds(), "records/s")
}

// fastCloud is a sender on a fast link: it reads every record as soon as it
// is queued and acknowledges it 1–5 ms later, in order, like a cloud broker's
// PUBACKs.
func fastCloud(b *testing.B, q *Queue, stop <-chan struct{}) {
	type flight struct {
		seq uint64
		due time.Time
	}
	fifo := make(chan flight, 100000)
	done := make(chan struct{})
	go func() { // the PUBACK collector
		defer close(done)
		for f := range fifo {
			time.Sleep(time.Until(f.due))
			if err := q.Ack(f.seq); err != nil {
				return
			}
		}
	}()
	defer func() { close(fifo); <-done }()
	rng := rand.New(rand.NewPCG(1, 1))
	for {
		recs, err := q.Next(100)
		if err != nil {
			b.Error(err)
			return
		}
		if len(recs) == 0 {
			select {
			case <-q.Ready():
				continue
			case <-stop:
				return
			}
		}
		now := time.Now()
		for _, r := range recs {
			fifo <- flight{r.Seq, now.Add(time.Millisecond + time.Duration(rng.IntN(4000))*time.Microsecond)}
		}
	}
}
