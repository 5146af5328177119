package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// batchDoc is a batch message as a consumer decodes it.
type batchDoc struct {
	Format  string        `json:"format"`
	Records []batchRecord `json:"records"`
}

type batchRecord struct {
	Seq     uint64          `json:"seq"`
	Topic   string          `json:"topic"`
	TS      time.Time       `json:"ts"`
	Payload json.RawMessage `json:"payload"`
	Text    *string         `json:"text"`
	Base64  []byte          `json:"base64"`
	Retain  bool            `json:"retain"`
}

// bytes returns the record's payload as it was published.
func (r batchRecord) bytes(t testing.TB) []byte {
	t.Helper()
	n := 0
	var out []byte
	if r.Payload != nil {
		n++
		out = r.Payload
	}
	if r.Text != nil {
		n++
		out = []byte(*r.Text)
	}
	if r.Base64 != nil {
		n++
		out = r.Base64
	}
	if n != 1 {
		t.Fatalf("record %d carries %d of payload/text/base64, want exactly one", r.Seq, n)
	}
	return out
}

func decodeBatch(t testing.TB, payload []byte) batchDoc {
	t.Helper()
	var d batchDoc
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("batch is not the documented JSON: %v\n%s", err, payload)
	}
	if d.Format != batchFormat {
		t.Fatalf("format %q, want %q", d.Format, batchFormat)
	}
	return d
}

// batchConfig is a forward rule for plant1/# that batches.
func batchConfig(b Batch) func(*Config) {
	return func(c *Config) {
		if b.Topic == "" {
			b.Topic = "site-a/plant1/batch"
		}
		c.Forward[0].Batch = &b
	}
}

// fillBatch appends n records of the batching rule, payloads "0", "1", …
func fillBatch(t *testing.T, q store, n int, payload func(i int) []byte) {
	t.Helper()
	recs := make([]queue.Record, n)
	for i := range recs {
		p := []byte(strconv.Itoa(i))
		if payload != nil {
			p = payload(i)
		}
		recs[i] = queue.Record{Topic: "site-a/plant1/x", Payload: p, QoS: 1, Batch: true}
	}
	if err := q.Append(recs); err != nil {
		t.Fatal(err)
	}
}

// TestBatchPacks: a backlog goes out in full batches, the rest once its
// oldest record has waited max_delay; every record arrives once, in order,
// and leaves the queue.
func TestBatchPacks(t *testing.T) {
	delay := 50 * time.Millisecond
	b, q := memBridge(t, batchConfig(Batch{MaxRecords: 10, MaxDelay: &delay}))
	fillBatch(t, q, 95, nil)
	c := &fakeConn{}
	_, stop := runPump(b, c)
	waitFor(t, 5*time.Second, "all acknowledged", func() bool { return q.Stats().PendingRecords == 0 })
	stop()
	pubs := c.published()
	if len(pubs) != 10 {
		t.Fatalf("%d publishes, want 9 full batches and 1 of 5", len(pubs))
	}
	next := 0
	for i, p := range pubs {
		if p.Topic != "site-a/plant1/batch" || p.QoS != 1 || p.Retain {
			t.Fatalf("publish %d: topic %q qos %d retain %v", i, p.Topic, p.QoS, p.Retain)
		}
		d := decodeBatch(t, p.Payload)
		want := 10
		if i == 9 {
			want = 5
		}
		if len(d.Records) != want {
			t.Fatalf("batch %d holds %d records, want %d", i, len(d.Records), want)
		}
		for _, r := range d.Records {
			if r.Topic != "site-a/plant1/x" || string(r.bytes(t)) != strconv.Itoa(next) || r.Seq != uint64(next+1) || r.TS.IsZero() {
				t.Fatalf("batch %d: record %+v, want number %d", i, r, next)
			}
			next++
		}
	}
	if st := b.Stats(); st.Batches != 10 || st.Acked != 95 || st.Forwarded != 95 {
		t.Errorf("stats: batches %d, acked %d, forwarded %d", st.Batches, st.Acked, st.Forwarded)
	}
}

// TestBatchBacklogFillsBatches: records queued long ago (an outage's
// backlog) still travel in full batches: max_delay counts from when a batch
// opens.
func TestBatchBacklogFillsBatches(t *testing.T) {
	delay := 10 * time.Millisecond
	b, q := memBridge(t, batchConfig(Batch{MaxRecords: 100, MaxDelay: &delay}))
	recs := make([]queue.Record, 1000)
	for i := range recs {
		recs[i] = queue.Record{Time: time.Now().Add(-time.Hour), Topic: "site-a/plant1/x", Payload: []byte(strconv.Itoa(i)), QoS: 1, Batch: true}
	}
	if err := q.Append(recs); err != nil {
		t.Fatal(err)
	}
	c := &fakeConn{}
	_, stop := runPump(b, c)
	waitFor(t, 5*time.Second, "all acknowledged", func() bool { return q.Stats().PendingRecords == 0 })
	stop()
	if n := len(c.published()); n != 10 {
		t.Fatalf("%d batches for 1000 old records, want 10 full ones", n)
	}
}

// TestBatchBounds: no batch exceeds max_bytes; a record too large for any
// batch is sent on its own topic, in its place in the order.
func TestBatchBounds(t *testing.T) {
	delay := time.Duration(0)
	b, q := memBridge(t, batchConfig(Batch{MaxBytes: 2048, MaxDelay: &delay}))
	fillBatch(t, q, 200, func(i int) []byte {
		if i == 57 {
			return bytes.Repeat([]byte("z"), 3000) // larger than any batch
		}
		return fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, bytes.Repeat([]byte("p"), i%50))
	})
	c := &fakeConn{}
	_, stop := runPump(b, c)
	waitFor(t, 5*time.Second, "all acknowledged", func() bool { return q.Stats().PendingRecords == 0 })
	stop()
	next := 0
	for _, p := range c.published() {
		if p.Topic == "site-a/plant1/x" {
			if next != 57 || len(p.Payload) != 3000 {
				t.Fatalf("record %d sent on its own (%d bytes), want only the oversized 57", next, len(p.Payload))
			}
			next++
			continue
		}
		if len(p.Payload) > 2048 {
			t.Fatalf("batch of %d bytes, max_bytes 2048", len(p.Payload))
		}
		for _, r := range decodeBatch(t, p.Payload).Records {
			var v struct{ I int }
			if err := json.Unmarshal(r.bytes(t), &v); err != nil || v.I != next {
				t.Fatalf("record %s, want number %d", r.Payload, next)
			}
			next++
		}
	}
	if next != 200 {
		t.Fatalf("%d records delivered, want 200", next)
	}
	if st := b.Stats(); st.BatchOversize != 1 {
		t.Errorf("BatchOversize %d, want 1", st.BatchOversize)
	}
}

// TestBatchHoldsItsRecords: records of an open or unconfirmed batch are
// never acknowledged in the queue, whatever later publishes are confirmed;
// when the link dies, the next connection sends the batch's records again,
// whole.
func TestBatchHoldsItsRecords(t *testing.T) {
	delay := 20 * time.Millisecond
	b, q := memBridge(t, func(c *Config) {
		c.Forward = append(c.Forward, ForwardRule{Filter: "plant1/#", Prefix: "site-b/"})
		batchConfig(Batch{MaxRecords: 100, MaxDelay: &delay})(c)
	})
	// Interleaved: batched records on site-a/, plain ones on site-b/.
	var recs []queue.Record
	for i := range 30 {
		r := queue.Record{Topic: "site-a/plant1/x", Payload: []byte(strconv.Itoa(i)), QoS: 1, Batch: true}
		if i%3 == 1 {
			r = queue.Record{Topic: "site-b/plant1/x", Payload: []byte(strconv.Itoa(i)), QoS: 1}
		}
		recs = append(recs, r)
	}
	if err := q.Append(recs); err != nil {
		t.Fatal(err)
	}
	// The first link confirms the plain records and never the batch.
	first := &fakeConn{onPublish: func(_ int, rec queue.Record, tok *fakeToken) {
		if rec.Topic == "site-b/plant1/x" {
			tok.complete(nil)
		}
	}}
	l, stop := runPump(b, first)
	waitFor(t, 5*time.Second, "the batch sent", func() bool {
		for _, p := range first.published() {
			if p.Topic == "site-a/plant1/batch" {
				return true
			}
		}
		return false
	})
	if acked := q.Stats().Acked; acked != 0 {
		t.Fatalf("%d records acknowledged while the batch holding record 1 is unconfirmed", acked)
	}
	l.kill(errors.New("connection lost"))
	stop()

	second := &fakeConn{}
	_, stop = runPump(b, second)
	waitFor(t, 5*time.Second, "all acknowledged", func() bool { return q.Stats().PendingRecords == 0 })
	stop()
	var lost, again []string
	for _, p := range first.published() {
		if p.Topic == "site-a/plant1/batch" {
			for _, r := range decodeBatch(t, p.Payload).Records {
				lost = append(lost, string(r.bytes(t)))
			}
		}
	}
	for _, p := range second.published() {
		if p.Topic == "site-a/plant1/batch" {
			for _, r := range decodeBatch(t, p.Payload).Records {
				again = append(again, string(r.bytes(t)))
			}
		}
	}
	if len(lost) != 20 || fmt.Sprint(lost) != fmt.Sprint(again) {
		t.Fatalf("batch lost with the link: %v; sent again: %v", lost, again)
	}
}

// TestMaxRate: with max_rate the publishes never exceed the rate (plus a
// burst of a tenth of a second), batches counting one each.
func TestMaxRate(t *testing.T) {
	const rate = 200.0
	b, q := memBridge(t, func(c *Config) { c.MaxRate = rate })
	fill(t, q, 5000)
	c := &fakeConn{}
	start := time.Now()
	_, stop := runPump(b, c)
	time.Sleep(time.Second) // the rate is what is measured: a fixed span
	stop()
	elapsed := time.Since(start)
	n := len(c.published()) // the birth is not sent by runPump
	limit := rate*elapsed.Seconds() + rate/10 + 1
	t.Logf("%d publishes in %v at max_rate %v", n, elapsed.Round(time.Millisecond), rate)
	if float64(n) > limit {
		t.Fatalf("%d publishes in %v, max_rate %v allows %.0f", n, elapsed, rate, limit)
	}
	if float64(n) < rate*elapsed.Seconds()/2 {
		t.Fatalf("%d publishes in %v: the limiter holds back far more than max_rate %v", n, elapsed, rate)
	}
}

// FuzzBatchRecord: whatever a topic and payload hold, a record's JSON is
// valid, and the payload comes back byte for byte — verbatim JSON, text or
// base64.
func FuzzBatchRecord(f *testing.F) {
	f.Add("site-a/plant1/m/v", []byte(`{"value":231.5,"ts":"2026-12-01T00:00:00Z"}`), true)
	f.Add("a/b", []byte("online"), false)
	f.Add("a/\"quoted\"\\/x", []byte{0, 1, 2, 0xff}, false)
	f.Add("t", []byte(""), false)
	f.Add("t", []byte(" 42.50 "), false)
	f.Add("t\n\x01", []byte("line\nbreak\t\u2028"), true)
	f.Add("t", []byte("\"\xff\""), false) // JSON to Go, but not UTF-8
	f.Fuzz(func(t *testing.T, topic string, payload []byte, retain bool) {
		rec := queue.Record{Seq: 7, Time: time.Unix(1_700_000_000, 123456789), Topic: topic, Payload: payload, Retain: retain}
		out := appendBatchRecord(nil, &rec)
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("invalid JSON or UTF-8: %q", out)
		}
		var r batchRecord
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		got := r.bytes(t)
		if r.Payload != nil {
			// JSON is embedded as is; the decoder trims nothing inside it
			// but the whitespace around it.
			if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(payload)) {
				t.Fatalf("payload %q came back as %q", payload, got)
			}
		} else if !bytes.Equal(got, payload) {
			t.Fatalf("payload %q came back as %q", payload, got)
		}
		if utf8.ValidString(topic) && r.Topic != topic {
			t.Fatalf("topic %q came back as %q", topic, r.Topic)
		}
		if r.Seq != 7 || !r.TS.Equal(rec.Time) || r.Retain != retain {
			t.Fatalf("record %+v", r)
		}
	})
}
