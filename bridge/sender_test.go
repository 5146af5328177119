package bridge

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge/queue"
)

func memBridge(t *testing.T, edit func(*Config)) (*Bridge, *queue.Memory) {
	t.Helper()
	q := queue.NewMemory(0, queue.DropOldest)
	return newBridge(checkedConfig(t, edit), newFakeSource(), q, testLogger()), q
}

// payloads lists the payloads of recs as numbers.
func payloads(t *testing.T, recs []queue.Record) []int {
	t.Helper()
	out := make([]int, len(recs))
	for i, r := range recs {
		n, err := strconv.Atoi(string(r.Payload))
		if err != nil {
			t.Fatalf("payload %q", r.Payload)
		}
		out[i] = n
	}
	return out
}

// TestWindowInOrder: tokens completing in any order still acknowledge the
// queue in order, and no more than Inflight messages are ever in flight.
func TestWindowInOrder(t *testing.T) {
	const n, w = 2000, 7
	b, q := memBridge(t, func(c *Config) { c.Inflight = Inflight{N: w} })
	fill(t, q, n)
	c := &fakeConn{onPublish: func(_ int, _ queue.Record, tok *fakeToken) {
		go func() {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			tok.complete(nil)
		}()
	}}
	_, stop := runPump(b, c)
	waitFor(t, 10*time.Second, "all acknowledged", func() bool { return q.Stats().PendingRecords == 0 })
	stop()
	got := payloads(t, c.published())
	if len(got) != n {
		t.Fatalf("%d published, want %d", len(got), n)
	}
	for i, p := range got {
		if p != i {
			t.Fatalf("publish %d carries record %d", i, p)
		}
	}
	if c.maxInflight > w {
		t.Errorf("%d in flight at once, window is %d", c.maxInflight, w)
	}
	if st := b.Stats(); st.Acked != n || st.Forwarded != n || st.Resent != 0 || st.InFlight != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestWindowResendsAfterError: a failed publish kills the link; the next
// connection resends from the oldest unacknowledged record, so nothing is
// missing and the duplicates stay within the window.
func TestWindowResendsAfterError(t *testing.T) {
	const n, w, failAt = 500, 10, 137
	b, q := memBridge(t, func(c *Config) { c.Inflight = Inflight{N: w} })
	fill(t, q, n)
	first := &fakeConn{onPublish: func(i int, _ queue.Record, tok *fakeToken) {
		if i == failAt {
			tok.complete(errors.New("connection reset"))
			return
		}
		if i < failAt {
			tok.complete(nil)
		} // after the failure: never answered
	}}
	l, stop := runPump(b, first)
	select {
	case <-l.dead:
	case <-time.After(5 * time.Second):
		t.Fatal("the link survived a failed publish")
	}
	stop()
	if err := l.cause(); err == nil {
		t.Fatalf("cause %v", err)
	}
	acked := q.Stats().Acked
	if acked != failAt {
		t.Fatalf("acked %d, want %d (everything before the failure)", acked, failAt)
	}

	second := &fakeConn{}
	_, stop = runPump(b, second)
	waitFor(t, 5*time.Second, "the rest acknowledged", func() bool { return q.Stats().PendingRecords == 0 })
	stop()
	resent := payloads(t, second.published())
	if resent[0] != failAt {
		t.Fatalf("second connection starts at record %d, want %d", resent[0], failAt)
	}
	for i, p := range resent {
		if p != failAt+i {
			t.Fatalf("second connection: publish %d carries record %d", i, p)
		}
	}
	firstSent := len(first.published())
	if dups := firstSent - failAt; dups > w {
		t.Errorf("%d records sent on the first link after the failure, window %d", dups, w)
	}
	if st := b.Stats(); st.Resent != uint64(firstSent-failAt) {
		t.Errorf("Resent = %d, want %d", st.Resent, firstSent-failAt)
	}
}

// TestWindowAckTimeout: a link on which acknowledgements stop (a zombie) is
// killed after ack_timeout, and nothing is acknowledged.
func TestWindowAckTimeout(t *testing.T) {
	b, q := memBridge(t, func(c *Config) { c.Inflight = Inflight{N: 5}; c.AckTimeout = 200 * time.Millisecond })
	fill(t, q, 20)
	c := &fakeConn{onPublish: func(int, queue.Record, *fakeToken) {}}
	start := time.Now()
	l, stop := runPump(b, c)
	defer stop()
	select {
	case <-l.dead:
	case <-time.After(5 * time.Second):
		t.Fatal("zombie link not detected")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("killed after %v, before the ack timeout", d)
	}
	if len(c.published()) != 5 || q.Stats().Acked != 0 {
		t.Errorf("published %d, acked %d", len(c.published()), q.Stats().Acked)
	}
}

// TestNoAckAfterLinkDeath: a token that completes once its connection is
// gone does not acknowledge its record: only the current connection counts.
func TestNoAckAfterLinkDeath(t *testing.T) {
	b, q := memBridge(t, func(c *Config) { c.Inflight = Inflight{N: 1} })
	fill(t, q, 1)
	var tok *fakeToken
	published := make(chan struct{})
	c := &fakeConn{onPublish: func(_ int, _ queue.Record, t *fakeToken) { tok = t; close(published) }}
	l, stop := runPump(b, c)
	<-published
	l.kill(errors.New("connection lost"))
	tok.complete(nil)
	stop()
	if st := q.Stats(); st.Acked != 0 || st.PendingRecords != 1 {
		t.Errorf("queue %+v: a token of a dead link acknowledged its record", st)
	}
}

// TestPumpShutdownWaitsForInflight: at shutdown the sender stops and the
// acknowledgements of what is in flight are still taken.
func TestPumpShutdownWaitsForInflight(t *testing.T) {
	b, q := memBridge(t, func(c *Config) { c.Inflight = Inflight{N: 4} })
	fill(t, q, 4)
	var toks []*fakeToken
	all := make(chan struct{})
	c := &fakeConn{onPublish: func(i int, _ queue.Record, t *fakeToken) {
		toks = append(toks, t)
		if i == 3 {
			close(all)
		}
	}}
	l, stop := runPump(b, c)
	<-all
	go func() {
		time.Sleep(50 * time.Millisecond)
		for _, t := range toks {
			t.complete(nil)
		}
	}()
	stop()
	if l.isDead() || q.Stats().Acked != 4 {
		t.Errorf("dead %v, acked %d; want the window acknowledged before the pump returned", l.isDead(), q.Stats().Acked)
	}
}

// congestedConn is a fakeConn whose write buffer the test fills.
type congestedConn struct {
	*fakeConn
	full atomic.Bool
	room chan struct{}
}

func (c *congestedConn) congested() (bool, <-chan struct{}) { return c.full.Load(), c.room }

// TestPumpWaitsForRoom: while the connection's write buffer is full (a
// broker that reads slowly) the sender publishes nothing more, but goes on
// taking acknowledgements; when there is room it carries on.
func TestPumpWaitsForRoom(t *testing.T) {
	b, q := memBridge(t, nil)
	fill(t, q, 100)
	var toks []*fakeToken
	var mu sync.Mutex
	c := &congestedConn{room: make(chan struct{}, 1)}
	c.fakeConn = &fakeConn{onPublish: func(i int, _ queue.Record, tok *fakeToken) {
		mu.Lock()
		toks = append(toks, tok)
		mu.Unlock()
		if i == 9 {
			c.full.Store(true) // the buffer fills after ten publishes
		}
	}}
	_, stop := runPump(b, c)
	defer stop()
	waitFor(t, 5*time.Second, "ten publishes", func() bool { return len(c.published()) == 10 })
	mu.Lock()
	for _, tok := range toks {
		tok.complete(nil)
	}
	mu.Unlock()
	waitFor(t, 5*time.Second, "the ten acknowledged", func() bool { return q.Stats().Acked == 10 })
	if n := len(c.published()); n != 10 {
		t.Fatalf("%d publishes while the write buffer was full, want 10", n)
	}
	c.fakeConn.mu.Lock()
	c.fakeConn.onPublish = nil // acknowledge the rest at once
	c.fakeConn.mu.Unlock()
	c.full.Store(false)
	c.room <- struct{}{}
	waitFor(t, 5*time.Second, "the rest", func() bool { return q.Stats().PendingRecords == 0 })
}
