package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

type published struct {
	topic, payload string
	retain         bool
	correlation    string
}

type fakeBroker struct {
	mu      sync.Mutex
	msgs    []published
	cleared []string
}

func (b *fakeBroker) Publish(topic string, payload []byte, retain bool, _ byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, published{topic: topic, payload: string(payload), retain: retain})
	return nil
}

func (b *fakeBroker) PublishResponse(topic string, payload, corr []byte, _ byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, published{topic: topic, payload: string(payload), correlation: string(corr)})
	return nil
}

func (b *fakeBroker) ClearRetained(topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleared = append(b.cleared, topic)
}

func (b *fakeBroker) take() []published {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.msgs
	b.msgs = nil
	return out
}

// fakeAdapter accepts every write of a writable point and reads back the
// value it was given; with hold set, it keeps the callbacks instead.
type fakeAdapter struct {
	devices []*adapters.Device
	mu      sync.Mutex
	got     []adapters.Command
	hold    bool
	held    []func(adapters.WriteResult)
}

func (a *fakeAdapter) Devices() []*adapters.Device                    { return a.devices }
func (a *fakeAdapter) Run(ctx context.Context, _ adapters.Sink) error { <-ctx.Done(); return nil }

func (a *fakeAdapter) Write(c adapters.Command, done func(adapters.WriteResult)) {
	a.mu.Lock()
	a.got = append(a.got, c)
	hold := a.hold
	if hold {
		a.held = append(a.held, done)
	}
	a.mu.Unlock()
	switch {
	case hold:
	case !c.Point.Writable:
		done(adapters.WriteResult{Err: fmt.Errorf("%w: not writable", adapters.ErrRefused), Time: time.Now()})
	default:
		done(adapters.WriteResult{ReadBack: c.Value, Time: time.Date(2026, 12, 1, 10, 0, 0, 5e6, time.UTC)})
	}
}

type plainAdapter struct{ fakeAdapter }

func setup(t *testing.T) (*Router, *fakeBroker, *fakeAdapter, context.CancelFunc) {
	t.Helper()
	fa := &fakeAdapter{devices: []*adapters.Device{{Name: "pump", Points: []*adapters.Point{
		{Device: "pump", Name: "speed", Writable: true},
		{Device: "pump", Name: "running"},
	}}}}
	// An adapter that takes no commands at all.
	ro := struct{ adapters.Adapter }{&plainAdapter{fakeAdapter{devices: []*adapters.Device{{Name: "meter", Points: []*adapters.Point{{Device: "meter", Name: "v"}}}}}}}
	b := &fakeBroker{}
	r := New("plant1", []adapters.Adapter{fa, ro}, b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, b, fa, cancel
}

// waitMsgs waits for n messages.
func waitMsgs(t *testing.T, b *fakeBroker, n int) []published {
	t.Helper()
	var got []published
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < n {
		got = append(got, b.take()...)
		if time.Now().After(deadline) {
			t.Fatalf("got %d messages, want %d: %+v", len(got), n, got)
		}
		time.Sleep(time.Millisecond)
	}
	return got
}

func result(t *testing.T, m published) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(m.payload), &v); err != nil {
		t.Fatalf("result %q is not JSON: %v", m.payload, err)
	}
	return v
}

func TestRouterResults(t *testing.T) {
	r, b, fa, _ := setup(t)
	if Filter != "+/+/+/set" {
		t.Errorf("filter %s", Filter)
	}
	cases := []struct {
		topic, payload string
		ok             bool
		id             any
		errPart        string
	}{
		{"plant1/pump/speed/set", "1200", true, nil, ""},
		{"plant1/pump/speed/set", `{"value": 12.5, "id": "abc"}`, true, "abc", ""},
		{"plant1/pump/speed/set", `{"value": 1, "id": 42}`, true, 42.0, ""},
		{"plant1/pump/speed/set", `{"valu": 1, "id": "x"}`, false, "x", `unknown key "valu"`},
		{"plant1/pump/speed/set", "fast", false, nil, "is not JSON"},
		{"plant1/pump/nope/set", "1", false, nil, `device pump has no point "nope"`},
		{"plant1/tank/level/set", "1", false, nil, `no device "tank"`},
		{"plant1/pump/running/set", "fast", false, nil, "not writable"}, // the adapter says why, before the payload
		{"plant1/meter/v/set", "1", false, nil, "its adapter takes no commands"},
	}
	for _, c := range cases {
		r.Handle(Message{Topic: c.topic, Payload: []byte(c.payload)})
		m := waitMsgs(t, b, 1)[0]
		v := result(t, m)
		if m.topic != c.topic+"/result" || m.retain {
			t.Errorf("%s %s: result on %s (retain %v)", c.topic, c.payload, m.topic, m.retain)
		}
		if v["ok"] != c.ok || v["id"] != c.id {
			t.Errorf("%s %s: %s", c.topic, c.payload, m.payload)
		}
		if _, ok := v["ts"].(string); !ok {
			t.Errorf("%s: no ts in %s", c.topic, m.payload)
		}
		if c.ok {
			if v["value"] == nil || v["error"] != nil {
				t.Errorf("%s %s: %s", c.topic, c.payload, m.payload)
			}
		} else if e, _ := v["error"].(string); !strings.Contains(e, c.errPart) || !strings.HasPrefix(e, "refused: ") {
			t.Errorf("%s %s: error %q, want refused: …%s", c.topic, c.payload, e, c.errPart)
		}
	}
	if len(fa.got) != 4 {
		t.Errorf("adapter got %d commands, want 4 (3 good, 1 for a point that is not writable)", len(fa.got))
	}
	if got := fa.got[1].Value; got.String() != "12.5" {
		t.Errorf("value handed over: %v", got)
	}
	if st := r.Stats(); st.Received != 9 || st.OK != 3 || st.Refused != 6 {
		t.Errorf("stats %+v", st)
	}
}

func TestRouterRetainedCommandsAreNeverCarriedOut(t *testing.T) {
	r, b, fa, _ := setup(t)
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte(`{"value": 1, "id": "r"}`), Retain: true})
	m := waitMsgs(t, b, 1)[0]
	if v := result(t, m); v["ok"] != false || v["id"] != "r" || !strings.Contains(v["error"].(string), "retained command is never carried out") {
		t.Errorf("retained: %s", m.payload)
	}
	// The deletion of a retained message asks for nothing.
	r.Handle(Message{Topic: "plant1/pump/speed/set", Retain: true})
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("5")})
	if m := waitMsgs(t, b, 1); len(m) != 1 || result(t, m[0])["ok"] != true {
		t.Errorf("after the deletion: %+v", m)
	}
	if len(fa.got) != 1 || fa.got[0].Value.String() != "5" {
		t.Errorf("adapter got %+v", fa.got)
	}
	if len(b.cleared) != 1 || b.cleared[0] != "plant1/pump/speed/set" {
		t.Errorf("cleared %v", b.cleared)
	}
}

func TestRouterResponseTopic(t *testing.T) {
	r, b, _, _ := setup(t)
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("7"), ResponseTopic: "hmi/replies/1", CorrelationData: []byte{0, 1, 2}})
	got := waitMsgs(t, b, 2)
	if got[0].topic != "plant1/pump/speed/set/result" || got[1].topic != "hmi/replies/1" || got[1].correlation != "\x00\x01\x02" || got[0].payload != got[1].payload {
		t.Errorf("%+v", got)
	}
	// A response topic that is not a topic is ignored, the result stays.
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("7"), ResponseTopic: "hmi/#"})
	if got := waitMsgs(t, b, 1); len(got) != 1 {
		t.Errorf("%+v", got)
	}
	// A command topic as response topic: the reply would be taken for a
	// command (it has a "value") and carried out on another point.
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("7"), ResponseTopic: "plant1/pump/other/set"})
	// A response topic the broker withheld (the client may not publish
	// there) gets nothing either.
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("8"), ResponseDenied: "plant1/pump/speed"})
	// The router is sequential: once the next reply is out, nothing else
	// can follow from those two.
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("9"), ResponseTopic: "hmi/replies/2"})
	got = waitMsgs(t, b, 4)
	if len(got) != 4 || got[0].topic != "plant1/pump/speed/set/result" || got[1].topic != "plant1/pump/speed/set/result" ||
		got[2].topic != "plant1/pump/speed/set/result" || got[3].topic != "hmi/replies/2" {
		t.Errorf("%+v", got)
	}
}

// TestRouterAnswersWhatIsLeftAtShutdown: every command queued when the
// gateway stops gets a result, carried out or "not sent".
func TestRouterAnswersWhatIsLeftAtShutdown(t *testing.T) {
	fa := &fakeAdapter{devices: []*adapters.Device{{Name: "pump", Points: []*adapters.Point{{Device: "pump", Name: "speed", Writable: true}}}}}
	b := &fakeBroker{}
	r := New("plant1", []adapters.Adapter{fa}, b, nil)
	for range 20 {
		r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte(`{"value":1,"id":"q"}`)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx)
	got := b.take()
	if len(got) != 20 {
		t.Fatalf("%d results for 20 commands", len(got))
	}
	stopped := 0
	for _, m := range got {
		v := result(t, m)
		switch {
		case v["ok"] == true:
		case v["error"] == "not sent: the gateway is stopping" && v["id"] == "q":
			stopped++
		default:
			t.Errorf("result %s", m.payload)
		}
	}
	if stopped == 0 {
		t.Error("with the context already done, queued commands must be answered as not sent")
	}
}

func TestAppendResult(t *testing.T) {
	ts := time.Date(2026, 12, 1, 9, 0, 0, 123e6, time.FixedZone("CET", 3600))
	cases := []struct {
		id   string
		res  adapters.WriteResult
		want string
	}{
		{`"a"`, adapters.WriteResult{ReadBack: adapters.Int(1200), Time: ts}, `{"id":"a","ok":true,"value":1200,"ts":"2026-12-01T08:00:00.123Z"}`},
		{"", adapters.WriteResult{Err: errors.New(`unknown outcome: "x"`), Time: ts}, `{"id":null,"ok":false,"error":"unknown outcome: \"x\"","ts":"2026-12-01T08:00:00.123Z"}`},
		{"7", adapters.WriteResult{ReadBackErr: errors.New("written, but the read-back failed"), Time: ts}, `{"id":7,"ok":true,"error":"written, but the read-back failed","ts":"2026-12-01T08:00:00.123Z"}`},
	}
	for _, c := range cases {
		var id []byte
		if c.id != "" {
			id = []byte(c.id)
		}
		if got := string(appendResult(nil, id, c.res)); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
	}
}

// TestRouterUpdate: a reload hands the router new adapters (and maybe a new
// gateway id); commands for another id are ignored, not answered.
func TestRouterUpdate(t *testing.T) {
	r, b, fa, _ := setup(t)
	r.Handle(Message{Topic: "other/pump/speed/set", Payload: []byte("1")})
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("2")})
	if got := waitMsgs(t, b, 1); len(got) != 1 || got[0].topic != "plant1/pump/speed/set/result" {
		t.Errorf("%+v", got)
	}
	next := &fakeAdapter{devices: []*adapters.Device{{Name: "tank", Points: []*adapters.Point{{Device: "tank", Name: "level", Writable: true}}}}}
	r.Update("plant2", []adapters.Adapter{next})
	r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("3")}) // the old id: ignored
	r.Handle(Message{Topic: "plant2/pump/speed/set", Payload: []byte("4")})
	r.Handle(Message{Topic: "plant2/tank/level/set", Payload: []byte("5")})
	got := waitMsgs(t, b, 2)
	if len(got) != 2 || !strings.Contains(got[0].payload, `no device \"pump\"`) || got[1].topic != "plant2/tank/level/set/result" {
		t.Errorf("%+v", got)
	}
	if len(fa.got) != 1 || len(next.got) != 1 || next.got[0].Value.String() != "5" {
		t.Errorf("old adapter got %v, new %v", fa.got, next.got)
	}
	if st := r.Stats(); st.Received != 3 {
		t.Errorf("stats %+v: commands for another gateway are not counted", st)
	}
}

// TestRouterCountsWhatItCannotQueue: the broker's handler never blocks; a
// command beyond the queue is dropped and counted.
func TestRouterCountsWhatItCannotQueue(t *testing.T) {
	r := New("plant1", nil, &fakeBroker{}, nil)
	for range queueSize + 3 {
		r.Handle(Message{Topic: "plant1/pump/speed/set", Payload: []byte("1")})
	}
	if st := r.Stats(); st.Dropped != 3 {
		t.Errorf("stats %+v", st)
	}
}
