package bridge

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

// fakeDialer hands out fakeConns, failing for the upstreams in down.
type fakeDialer struct {
	mu    sync.Mutex
	down  map[int]bool
	ups   []string // URL dialled, in order
	conns []*fakeConn
	links []*link
	setup func(*fakeConn)
}

func (d *fakeDialer) dial(b *Bridge) dialFunc {
	return func(_ context.Context, up *Upstream, l *link) (conn, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.ups = append(d.ups, up.URL)
		for i := range b.cfg.Upstreams {
			if &b.cfg.Upstreams[i] == up && d.down[i] {
				return nil, errors.New("connection refused")
			}
		}
		c := &fakeConn{}
		if d.setup != nil {
			d.setup(c)
		}
		d.conns = append(d.conns, c)
		d.links = append(d.links, l)
		return c, nil
	}
}

func (d *fakeDialer) snapshot() ([]string, []*fakeConn, []*link) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.ups...), append([]*fakeConn(nil), d.conns...), append([]*link(nil), d.links...)
}

func runBridge(t *testing.T, b *Bridge) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestFailoverBirthGoodbye: the first upstream refuses, the bridge moves
// on after failover_after attempts; on the second it publishes "online"
// before any data, forwards, and at shutdown publishes "offline" and
// disconnects cleanly (DISCONNECT, no will).
func TestFailoverBirthGoodbye(t *testing.T) {
	src := newFakeSource()
	q := queue.NewMemory(0, queue.DropOldest)
	b := newBridge(checkedConfig(t, func(c *Config) {
		c.Upstreams = []Upstream{{URL: "tcp://primary"}, {URL: "tcp://backup"}}
		c.BackoffInitial, c.BackoffMax = 10*time.Millisecond, 20*time.Millisecond
		c.FailoverAfter = 2
	}), src, q, testLogger())
	d := &fakeDialer{down: map[int]bool{0: true}}
	b.dial = d.dial(b)
	fill(t, q, 3) // a backlog from before the start
	stop := runBridge(t, b)

	waitFor(t, 5*time.Second, "connected", func() bool { return b.Stats().Connected })
	waitFor(t, 5*time.Second, "backlog forwarded", func() bool { return q.Stats().PendingRecords == 0 })
	src.publish("inline", "plant1/m/v", []byte("live"), true, 0)
	waitFor(t, 5*time.Second, "live message forwarded", func() bool { return b.Stats().Acked == 4 })
	stop()

	ups, conns, _ := d.snapshot()
	if want := []string{"tcp://primary", "tcp://primary", "tcp://backup"}; len(ups) != 3 || ups[0] != want[0] || ups[1] != want[1] || ups[2] != want[2] {
		t.Errorf("dialled %v, want %v", ups, want)
	}
	c := conns[0]
	sent := c.published()
	if len(sent) != 6 {
		t.Fatalf("published %d messages: %+v", len(sent), sent)
	}
	first, last := sent[0], sent[len(sent)-1]
	if first.Topic != "site-a/plant1/status" || string(first.Payload) != "online" || !first.Retain || first.QoS != 1 {
		t.Errorf("first publish %+v, want the retained birth", first)
	}
	if last.Topic != "site-a/plant1/status" || string(last.Payload) != "offline" || !last.Retain {
		t.Errorf("last publish %+v, want the retained offline status", last)
	}
	if live := sent[4]; live.Topic != "site-a/plant1/m/v" || string(live.Payload) != "live" || !live.Retain {
		t.Errorf("live publish %+v", live)
	}
	if !c.disconnected || c.aborted {
		t.Errorf("disconnected %v, aborted %v; want a clean DISCONNECT", c.disconnected, c.aborted)
	}
	if st := b.Stats(); st.Connects != 1 || st.ConnectFailures != 2 || st.Upstream != "tcp://backup:1883" {
		t.Errorf("stats %+v", st)
	}
}

// TestBrokenLinkAbortsAndRetries: a connection that stops working is
// dropped without DISCONNECT (so the broker publishes the will), and the
// bridge reconnects to the same upstream and resends.
func TestBrokenLinkAbortsAndRetries(t *testing.T) {
	q := queue.NewMemory(0, queue.DropOldest)
	b := newBridge(checkedConfig(t, func(c *Config) {
		c.BackoffInitial, c.BackoffMax = 10*time.Millisecond, 20*time.Millisecond
	}), newFakeSource(), q, testLogger())
	var mu sync.Mutex
	n := 0
	d := &fakeDialer{setup: func(c *fakeConn) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			c.onPublish = func(i int, _ queue.Record, tok *fakeToken) {
				if i == 0 {
					tok.complete(nil) // the birth
				} else {
					tok.complete(errors.New("broken pipe"))
				}
			}
		}
	}}
	b.dial = d.dial(b)
	fill(t, q, 10)
	stop := runBridge(t, b)
	waitFor(t, 5*time.Second, "all forwarded", func() bool { return q.Stats().PendingRecords == 0 })
	stop()
	_, conns, links := d.snapshot()
	if len(conns) != 2 {
		t.Fatalf("%d connections, want 2", len(conns))
	}
	if !conns[0].aborted || conns[0].disconnected {
		t.Errorf("broken connection: aborted %v, disconnected %v; want aborted only", conns[0].aborted, conns[0].disconnected)
	}
	if err := links[0].cause(); err == nil {
		t.Error("no cause recorded")
	}
	// Everything the broken link carried (after the birth) is sent again.
	if st := b.Stats(); st.ConnectionsLost != 1 || st.Reconnects != 1 || st.Resent != uint64(len(conns[0].published())-1) {
		t.Errorf("stats %+v", st)
	}
}

// TestBackoff: during the first fastRetries × backoff_initial of an
// outage every pause is about backoff_initial; after that the pause
// doubles up to backoff_max.
func TestBackoff(t *testing.T) {
	bo := backoff{min: time.Second, max: time.Minute}
	for i := range 5 {
		if d := bo.next(time.Duration(i) * time.Second); d < time.Second/2 || d > time.Second {
			t.Errorf("short outage, pause %d = %v, want within [0.5s, 1s]", i, d)
		}
	}
	wantMax := []time.Duration{2, 4, 8, 16, 32, 60, 60}
	for i, m := range wantMax {
		m *= time.Second
		d := bo.next(10*time.Second + time.Duration(i)*time.Minute)
		if d < m/2 || d > m {
			t.Errorf("long outage, pause %d = %v, want within [%v, %v]", i, d, m/2, m)
		}
	}
	bo.reset()
	if d := bo.next(time.Hour); d > time.Second {
		t.Errorf("after reset: %v", d)
	}
}

func TestGuardRestartsAfterPanic(t *testing.T) {
	b, _ := memBridge(t, nil)
	runs := 0
	b.guard("test", func() {
		runs++
		if runs < 3 {
			panic("boom")
		}
	})
	if runs != 3 {
		t.Errorf("ran %d times, want 3 (two panics, then a normal return)", runs)
	}
}
