package bridge_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestReconfigureUnderLoad: while messages stream in at about 1,000 per
// second, the bridge is reconfigured with a new forward rule, a changed
// window (the session reconnects), the old rule removed, and a buffer
// change (not applied). Every message reaches mosquitto under at least one
// of the prefixes, and in order on each cloud topic.
func TestReconfigureUnderLoad(t *testing.T) {
	m := cloud(t, testpeer.MosquittoOptions{})
	local := startLocal(t)
	queueDir := t.TempDir()
	base := forwardConfig("tcp://" + m.Addr())
	base.Buffer.Dir = queueDir
	br := startBridge(t, local, base)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filters: []string{"site-a/plant1/load", "site-b/plant1/load"}, QoS: 1})
	waitFor(t, 10*time.Second, "connected", func() bool { return br.Stats().Connected })

	ctx, stop := context.WithCancel(context.Background())
	var sent int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			if err := local.Publish("plant1/load", fmt.Appendf(nil, "%06d", sent), false, 1); err != nil {
				return
			}
			sent++
		}
	}()

	checked := func(edit func(*bridge.Config)) bridge.Config {
		c := forwardConfig("tcp://" + m.Addr())
		c.Buffer.Dir = queueDir
		edit(&c)
		c.Check("plant1", t.TempDir(), failReporter{t})
		return c
	}
	steps := []struct {
		name       string
		cfg        bridge.Config
		notApplied string
	}{
		{"add a rule", checked(func(c *bridge.Config) {
			c.Forward = append(c.Forward, bridge.ForwardRule{Filter: "plant1/#", Prefix: "site-b/"})
		}), ""},
		{"change the window", checked(func(c *bridge.Config) {
			c.Forward = append(c.Forward, bridge.ForwardRule{Filter: "plant1/#", Prefix: "site-b/"})
			c.Inflight = bridge.Inflight{N: 5}
		}), ""},
		{"remove the first rule", checked(func(c *bridge.Config) {
			c.Forward = []bridge.ForwardRule{{Filter: "plant1/#", Prefix: "site-b/"}}
			c.Inflight = bridge.Inflight{N: 5}
			c.StatusTopic = "site-a/plant1/status" // as before: no reconnect
		}), ""},
		{"buffer change", checked(func(c *bridge.Config) {
			c.Forward = []bridge.ForwardRule{{Filter: "plant1/#", Prefix: "site-b/"}}
			c.Inflight = bridge.Inflight{N: 5}
			c.StatusTopic = "site-a/plant1/status"
			c.Buffer.MaxBytes = 2 << 20
		}), "buffer.max_bytes"},
	}
	for _, s := range steps {
		before := br.Stats().Queued
		waitFor(t, 10*time.Second, "messages flowing before "+s.name, func() bool { return br.Stats().Queued > before+200 })
		notApplied, err := br.Reconfigure(s.cfg)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := strings.Join(notApplied, ","); got != s.notApplied {
			t.Errorf("%s: not applied %q, want %q", s.name, got, s.notApplied)
		}
	}
	before := br.Stats().Queued
	waitFor(t, 10*time.Second, "messages flowing after the last reload", func() bool { return br.Stats().Queued > before+200 })
	stop()
	wg.Wait()
	waitFor(t, 30*time.Second, "queue drained", func() bool { st := br.Stats(); return st.Pending == 0 && st.Connected })

	// Every message, under either prefix; the last one surely under site-b.
	sub.WaitFor(t, 30*time.Second, func(msg testpeer.Message) bool {
		return msg.Topic == "site-b/plant1/load" && string(msg.Payload) == fmt.Sprintf("%06d", sent-1)
	})
	got := make([]bool, sent)
	highest := map[string]int{} // per cloud topic
	for i, msg := range sub.Messages() {
		k, err := strconv.Atoi(string(bytes.TrimSpace(msg.Payload)))
		if err != nil || k < 0 || k >= sent {
			t.Fatalf("message %d: unexpected payload %q", i, msg.Payload)
		}
		// A resend after the reconnect may go back; nothing skips ahead on
		// a topic while its rule is in force.
		if prev, ok := highest[msg.Topic]; !ok || k > prev {
			if ok && k > prev+1 {
				t.Fatalf("%s: %d after %d: %d..%d skipped (order broken)", msg.Topic, k, prev, prev+1, k-1)
			}
			highest[msg.Topic] = k
		}
		got[k] = true
	}
	for k, ok := range got {
		if !ok {
			t.Fatalf("message %d of %d never reached the cloud", k, sent)
		}
	}
	st := br.Stats()
	if st.HandoffOverflow+st.DroppedFull+st.DroppedShutdown != 0 {
		t.Errorf("drops: %+v", st)
	}
	if st.Reconnects != 1 {
		t.Errorf("%d reconnects, want 1 (the window change only)", st.Reconnects)
	}
	t.Logf("%d messages sent, %d received, %d resent, %d reconnect(s)", sent, sub.Count(), st.Resent, st.Reconnects)
}

// TestReconfigureRejects: an unchecked config and a stopped bridge are
// errors, and change nothing.
func TestReconfigureRejects(t *testing.T) {
	local := startLocal(t)
	br := startBridge(t, local, forwardConfig("tcp://127.0.0.1:1"))
	if _, err := br.Reconfigure(forwardConfig("tcp://127.0.0.1:1")); err == nil {
		t.Error("an unchecked config was accepted")
	}
	br.stop()
	c := forwardConfig("tcp://127.0.0.1:1")
	c.Check("plant1", t.TempDir(), failReporter{t})
	if _, err := br.Reconfigure(c); err == nil {
		t.Error("a stopped bridge was reconfigured")
	}
}
