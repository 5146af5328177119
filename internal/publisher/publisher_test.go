package publisher

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

type msg struct {
	topic   string
	payload string
	retain  bool
}

type fakeBroker struct {
	mu   sync.Mutex
	msgs []msg
	fail error
}

func (b *fakeBroker) Publish(topic string, payload []byte, retain bool, _ byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	b.msgs = append(b.msgs, msg{topic, string(payload), retain})
	return nil
}

func (b *fakeBroker) take() []msg {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.msgs
	b.msgs = nil
	return out
}

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))

func setup(points ...*adapters.Point) (*Publisher, *fakeBroker) {
	for i, p := range points {
		p.ID = i
	}
	b := &fakeBroker{}
	return New(b, points, nil), b
}

func TestPayloads(t *testing.T) {
	v := &adapters.Point{Topic: "plant1/meter1/voltage", Unit: "V"}
	s := &adapters.Point{Topic: "plant1/meter1/serial"}
	p, b := setup(v, s)
	p.Publish([]adapters.Sample{
		{Point: v, Value: adapters.Float32(229.8), Time: t0},
		{Point: s, Value: adapters.String(`SN "7"`), Time: t0},
	})
	got := b.take()
	want := []msg{
		{"plant1/meter1/voltage", `{"value":229.8,"ts":"2026-11-26T09:00:00.123Z","quality":"good","unit":"V"}`, true},
		{"plant1/meter1/serial", `{"value":"SN \"7\"","ts":"2026-11-26T09:00:00.123Z","quality":"good"}`, true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
		if !json.Valid([]byte(got[i].payload)) {
			t.Errorf("invalid JSON: %s", got[i].payload)
		}
	}
}

func TestOnChangeAndDeadband(t *testing.T) {
	oc := &adapters.Point{Topic: "t/oc"}
	db := &adapters.Point{Topic: "t/db", Deadband: 0.5}
	ev := &adapters.Point{Topic: "t/ev", Publish: adapters.EveryPoll}
	p, b := setup(oc, db, ev)
	poll := func(ocv int64, dbv float64, evv bool) []string {
		p.Publish([]adapters.Sample{
			{Point: oc, Value: adapters.Int(ocv), Time: t0},
			{Point: db, Value: adapters.Float64(dbv), Time: t0},
			{Point: ev, Value: adapters.Bool(evv), Time: t0},
		})
		var topics []string
		for _, m := range b.take() {
			topics = append(topics, m.topic)
		}
		return topics
	}
	steps := []struct {
		oc   int64
		db   float64
		ev   bool
		want string
	}{
		{1, 10, true, "t/oc t/db t/ev"}, // first values always go out
		{1, 10.2, true, "t/ev"},         // unchanged; within deadband; every_poll
		{2, 10.4, true, "t/oc t/ev"},    // drift 0.4 from last published 10: still within
		{2, 10.5, false, "t/db t/ev"},   // 0.5 from 10: published
		{2, 10.1, false, "t/ev"},        // 0.4 from 10.5
	}
	for i, s := range steps {
		if got := strings.Join(poll(s.oc, s.db, s.ev), " "); got != s.want {
			t.Errorf("step %d: published %q, want %q", i, got, s.want)
		}
	}
	if st := p.Stats(); st.Published != 9 || st.Unchanged != 6 {
		t.Errorf("stats %+v", st)
	}
}

func TestBadQualityOncePerChange(t *testing.T) {
	pt := &adapters.Point{Topic: "t/x", Unit: "V"}
	p, b := setup(pt)
	timeout := errors.New("unit 3 holding 0..9: no response (timeout)")
	exc := errors.New("unit 3 holding 0..9: modbus exception 2 (illegal data address)")
	publish := func(s adapters.Sample) []msg {
		s.Point, s.Time = pt, t0
		p.Publish([]adapters.Sample{s})
		return b.take()
	}
	if got := publish(adapters.Sample{Value: adapters.Int(5)}); len(got) != 1 {
		t.Fatalf("good value: %v", got)
	}
	got := publish(adapters.Sample{Err: timeout})
	want := `{"quality":"bad","error":"unit 3 holding 0..9: no response (timeout)","ts":"2026-11-26T09:00:00.123Z"}`
	if len(got) != 1 || got[0].payload != want || !got[0].retain {
		t.Fatalf("bad: %+v, want %s", got, want)
	}
	if got := publish(adapters.Sample{Err: timeout}); len(got) != 0 {
		t.Errorf("repeated error republished: %v", got)
	}
	if got := publish(adapters.Sample{Err: exc}); len(got) != 1 {
		t.Errorf("a different error must be published: %v", got)
	}
	// Recovery publishes at once, even with the same value as before the
	// outage: no stale value stays dressed as fresh, no fresh one is held back.
	if got := publish(adapters.Sample{Value: adapters.Int(5)}); len(got) != 1 || !strings.Contains(got[0].payload, `"quality":"good"`) {
		t.Errorf("recovery: %v", got)
	}
}

func TestBrokerFailureRetriesNextTime(t *testing.T) {
	pt := &adapters.Point{Topic: "t/x"}
	p, b := setup(pt)
	b.fail = errors.New("broker closed")
	p.Publish([]adapters.Sample{{Point: pt, Value: adapters.Int(1), Time: t0}})
	b.fail = nil
	p.Publish([]adapters.Sample{{Point: pt, Value: adapters.Int(1), Time: t0}})
	if got := b.take(); len(got) != 1 {
		t.Errorf("a value that failed to publish must be tried again: %v", got)
	}
	if st := p.Stats(); st.Failed != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAvailability(t *testing.T) {
	p, b := setup()
	d := &adapters.Device{Name: "m", AvailabilityTopic: "plant1/m/availability"}
	p.Availability(d, true)
	p.Availability(d, false)
	got := b.take()
	if len(got) != 2 || got[0].payload != "online" || got[1].payload != "offline" || !got[0].retain {
		t.Errorf("availability: %+v", got)
	}
}

// BenchmarkPublish measures the publisher's share of the per-point cost: a
// batch of 125 changing float32 points, as one full register read yields.
func BenchmarkPublish(b *testing.B) {
	points := make([]*adapters.Point, 125)
	for i := range points {
		points[i] = &adapters.Point{Topic: "plant1/meter1/p" + string(rune('a'+i%26)), Unit: "V", Publish: adapters.EveryPoll}
	}
	p, _ := setup(points...)
	p.broker = nopBroker{}
	samples := make([]adapters.Sample, len(points))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := time.Now()
		for j := range samples {
			samples[j] = adapters.Sample{Point: points[j], Value: adapters.Float32(float32(i + j)), Time: now}
		}
		p.Publish(samples)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(points)), "ns/point")
}

type nopBroker struct{}

func (nopBroker) Publish(string, []byte, bool, byte) error { return nil }
