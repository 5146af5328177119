package bridge

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// Batch messages. A forward rule with batch packs its queued records into
// one MQTT message per batch, on the batch topic, as JSON (UTF-8):
//
//	{"format":"fieldbridge-batch/1","records":[
//	  {"seq":1041,"topic":"site-a/plant1/meter1/voltage","ts":"2026-12-01T20:53:26.123456789Z","payload":{"value":231.5,"quality":"good"}},
//	  {"seq":1042,"topic":"site-a/plant1/meter1/availability","ts":"2026-12-01T20:53:26.2Z","text":"online"},
//	  {"seq":1043,"topic":"site-a/plant1/raw","ts":"2026-12-01T20:53:26.3Z","base64":"AAEC/w==","retain":true}
//	]}
//
// Each record carries its cloud topic (the rule's prefix included), its
// enqueue time (RFC 3339, UTC, nanoseconds) and its payload, in exactly one
// of three keys: "payload" holds a payload that is valid JSON, copied byte
// for byte; "text" one that is other valid UTF-8, as a JSON string; "base64"
// anything else, standard base64. "retain" appears, true, when the message
// would have been retained. "seq" is the queue's sequence number: unique
// and increasing per gateway, never reused, so a consumer can drop the
// duplicates that at-least-once delivery allows after a reconnect. Records
// appear in queue order. The format name changes only with an
// incompatible change; new keys may be added.
const (
	batchFormat = "fieldbridge-batch/1"
	batchHead   = `{"format":"` + batchFormat + `","records":[`
	batchTail   = `]}`
)

// batchRule is a forward rule that batches.
type batchRule struct {
	filter, prefix string
	cfg            *Batch
	qos            byte
}

// openBatch is a batch being filled.
type openBatch struct {
	buf   []byte // head and the records so far
	n     int
	first uint64    // Seq of its first record
	last  uint64    // and of its newest
	due   time.Time // max_delay after it was opened
}

// batcher holds the open batches of one connection, one per batching rule.
type batcher struct {
	rules   []batchRule
	open    []*openBatch
	scratch []byte
}

func newBatcher(rules []ForwardRule) *batcher {
	b := &batcher{}
	for i := range rules {
		r := &rules[i]
		if r.Batch != nil {
			b.rules = append(b.rules, batchRule{filter: r.Filter, prefix: r.Prefix, cfg: r.Batch, qos: byte(*r.QoS)})
		}
	}
	b.open = make([]*openBatch, len(b.rules))
	return b
}

// ruleFor returns the index of the batching rule a record belongs to, or
// -1: a record queued by a batching rule that is no longer configured (or
// no longer matches) is sent on its own.
func (b *batcher) ruleFor(rec *queue.Record) int {
	if !rec.Batch {
		return -1
	}
	for i := range b.rules {
		r := &b.rules[i]
		if local, ok := strings.CutPrefix(rec.Topic, r.prefix); ok && match(r.filter, local) {
			return i
		}
	}
	return -1
}

// batchMsg is a closed batch, ready to publish.
type batchMsg struct {
	topic   string
	qos     byte
	payload []byte
	records int
	last    uint64 // Seq of its newest record
}

// add puts rec into rule i's batch. It returns a batch to publish when one
// closed: the open batch when rec did not fit (rec then starts the next) or
// when rec filled it. oversize reports a record that fits no batch: the
// caller sends it on its own.
func (b *batcher) add(i int, rec *queue.Record, now time.Time) (out *batchMsg, oversize bool) {
	r := &b.rules[i]
	b.scratch = appendBatchRecord(b.scratch[:0], rec)
	limit := int(r.cfg.MaxBytes)
	if len(batchHead)+len(b.scratch)+len(batchTail) > limit {
		return nil, true
	}
	ob := b.open[i]
	if ob != nil && len(ob.buf)+1+len(b.scratch)+len(batchTail) > limit {
		out = b.close(i)
		ob = nil
	}
	if ob == nil {
		// The clock starts when the batch opens, not when its first record
		// was queued: draining a backlog, the records are old, and the
		// batches must fill all the same.
		ob = &openBatch{buf: append(make([]byte, 0, min(limit, 64<<10)), batchHead...), first: rec.Seq, due: now.Add(*r.cfg.MaxDelay)}
		b.open[i] = ob
	} else {
		ob.buf = append(ob.buf, ',')
	}
	ob.buf = append(ob.buf, b.scratch...)
	ob.n++
	ob.last = rec.Seq
	if ob.n >= r.cfg.MaxRecords && out == nil {
		out = b.close(i)
	}
	return out, false
}

// close ends rule i's open batch and returns it.
func (b *batcher) close(i int) *batchMsg {
	ob := b.open[i]
	b.open[i] = nil
	r := &b.rules[i]
	return &batchMsg{topic: r.cfg.Topic, qos: r.qos, payload: append(ob.buf, batchTail...), records: ob.n, last: ob.last}
}

// due closes and returns the first open batch, in rule order, that has been
// open for max_delay by now; nil when none has.
func (b *batcher) due(now time.Time) *batchMsg {
	for i, ob := range b.open {
		if ob != nil && !now.Before(ob.due) {
			return b.close(i)
		}
	}
	return nil
}

// nextDue is when the next open batch falls due (zero: none is open).
func (b *batcher) nextDue() time.Time {
	var t time.Time
	for _, ob := range b.open {
		if ob != nil && (t.IsZero() || ob.due.Before(t)) {
			t = ob.due
		}
	}
	return t
}

// firstOpen is the Seq of the oldest record in an open batch, or 0.
func (b *batcher) firstOpen() uint64 {
	var first uint64
	for _, ob := range b.open {
		if ob != nil && (first == 0 || ob.first < first) {
			first = ob.first
		}
	}
	return first
}

// appendBatchRecord appends the JSON object of one record.
func appendBatchRecord(dst []byte, rec *queue.Record) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, rec.Seq, 10)
	dst = append(dst, `,"topic":`...)
	dst = appendJSONString(dst, rec.Topic)
	dst = append(dst, `,"ts":"`...)
	dst = rec.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	p := rec.Payload
	text := utf8.Valid(p)
	switch {
	case len(p) > 0 && text && json.Valid(p): // UTF-8 too: Go's json.Valid does not check it
		dst = append(dst, `,"payload":`...)
		dst = append(dst, p...)
	case text:
		dst = append(dst, `,"text":`...)
		dst = appendJSONString(dst, string(p))
	default:
		dst = append(dst, `,"base64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, p)
		dst = append(dst, '"')
	}
	if rec.Retain {
		dst = append(dst, `,"retain":true`...)
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, everything else as is. Invalid UTF-8 (which
// MQTT forbids in topics, and which payloads take only as base64) becomes
// U+FFFD, so that the output is always valid JSON.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
