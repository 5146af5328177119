package bridge

import (
	"fmt"
	"testing"
	"time"
)

// simLink is a discrete-event model of a path to a broker, for driving
// windowCtl without real time: a one-way delay each way, a broker that
// handles capacity messages per second in order, and optionally a
// per-client limit on unacknowledged publishes (AWS IoT Core's 100: a
// publish waits, unread, until the broker has acknowledged enough).
type simLink struct {
	oneWay   func(at time.Duration) time.Duration // one-way delay for a packet sent at a time
	capacity float64                              // messages/s at the broker (0 = unlimited)
	limit    int                                  // unacknowledged publishes the broker takes (0 = unlimited)
	ackDelay time.Duration                        // from handling a publish to sending its PUBACK (in parallel)

	handled []time.Duration // when the broker handled each message, in order
	done    []time.Duration // when it sent each PUBACK
}

// send returns when the acknowledgement of a publish sent at t arrives.
func (l *simLink) send(t time.Duration) time.Duration {
	admit := t + l.oneWay(t)
	i := len(l.done)
	if l.limit > 0 && i >= l.limit {
		admit = max(admit, l.done[i-l.limit]) // a slot frees when a PUBACK leaves
	}
	fin := admit
	if i > 0 {
		fin = max(fin, l.handled[i-1])
	}
	if l.capacity > 0 {
		fin += time.Duration(float64(time.Second) / l.capacity)
	}
	l.handled = append(l.handled, fin)
	ack := fin + l.ackDelay
	l.done = append(l.done, ack)
	return ack + l.oneWay(ack)
}

// simResult is what a simulated run measured.
type simResult struct {
	delivered int
	elapsed   time.Duration
	maxW      int
	endW      int
	maxLag    time.Duration // app-limited runs: longest from availability to ack
}

func (r simResult) rate() float64 { return float64(r.delivered) / r.elapsed.Seconds() }

// simulate drives a window over the link for dur of simulated time. With
// appRate 0 the sender always has a backlog; otherwise messages become
// available at appRate per second. every, if set, is called at each ack.
func simulate(c *windowCtl, l *simLink, appRate float64, dur time.Duration, every func(at time.Duration, c *windowCtl)) simResult {
	epoch := time.Unix(1_700_000_000, 0)
	type flight struct {
		ack   time.Duration
		avail time.Duration
		st    sendStamp
	}
	var (
		fifo    []flight
		now     time.Duration
		res     simResult
		nextApp time.Duration
		waiting []time.Duration // app messages available, not yet sent
	)
	for now < dur {
		// Messages that became available.
		if appRate > 0 {
			for nextApp <= now {
				waiting = append(waiting, nextApp)
				nextApp += time.Duration(float64(time.Second) / appRate)
			}
		}
		// Fill the window.
		limited := false
		for {
			if len(fifo) >= c.size() {
				limited = appRate == 0 || len(waiting) > 0
				break
			}
			avail := now
			if appRate > 0 {
				if len(waiting) == 0 {
					break
				}
				avail, waiting = waiting[0], waiting[1:]
			}
			appLimited := appRate > 0 && len(waiting) == 0
			st := c.sent(epoch.Add(now), true, appLimited)
			fifo = append(fifo, flight{ack: l.send(now), avail: avail, st: st})
		}
		res.maxW = max(res.maxW, c.size())
		// Next event: an acknowledgement, or the next app message.
		next := dur
		if len(fifo) > 0 {
			next = min(next, fifo[0].ack)
		}
		if appRate > 0 {
			next = min(next, nextApp)
		}
		now = next
		for len(fifo) > 0 && fifo[0].ack <= now {
			f := fifo[0]
			fifo = fifo[1:]
			c.acked(f.st, epoch.Add(now), limited)
			res.delivered++
			res.maxLag = max(res.maxLag, now-f.avail)
			if every != nil {
				every(now, c)
			}
		}
	}
	res.elapsed, res.endW = now, c.size()
	return res
}

func constDelay(d time.Duration) func(time.Duration) time.Duration {
	return func(time.Duration) time.Duration { return d }
}

// TestWindowFillsTheLink: with a backlog, the window grows until the
// broker, not the window, is the bottleneck, at every round trip.
func TestWindowFillsTheLink(t *testing.T) {
	for _, rtt := range []time.Duration{200 * time.Microsecond, 20 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond} {
		t.Run(fmt.Sprint(rtt), func(t *testing.T) {
			const capacity = 15000
			l := &simLink{oneWay: constDelay(rtt / 2), capacity: capacity}
			c := newWindowCtl(0, 65535, time.Unix(1_700_000_000, 0))
			var late simResult
			simulate(c, l, 0, 10*time.Second, nil)
			// Measure the steady state over the next 10 s.
			before := len(l.done)
			r := simulate(c, l, 0, 20*time.Second, nil)
			late.delivered = len(l.done) - before
			r.delivered = late.delivered
			r.elapsed = 10 * time.Second
			bdp := capacity * rtt.Seconds()
			t.Logf("rtt %v: %.0f msg/s of %d, window max %d end %d (BDP %.0f)", rtt, r.rate(), capacity, r.maxW, r.endW, bdp)
			if r.rate() < 0.9*capacity {
				t.Errorf("rate %.0f msg/s, want at least 90%% of the broker's %d", r.rate(), capacity)
			}
			if float64(r.endW) > 3*bdp+windowFloor && float64(r.endW) > windowInitial {
				t.Errorf("window %d, want about 2 × BDP (%.0f)", r.endW, bdp)
			}
		})
	}
}

// TestWindowBrokerLimit: a broker that takes 100 ms to acknowledge and
// stops reading after 100 unacknowledged publishes (AWS IoT Core's limit)
// is a bottleneck like any other: the rate is what the limit allows
// (100 per 100 ms), and the window settles near twice the path's BDP at
// that rate instead of piling messages into socket buffers.
func TestWindowBrokerLimit(t *testing.T) {
	const limit = 100
	rtt, slow := 100*time.Millisecond, 100*time.Millisecond
	l := &simLink{oneWay: constDelay(rtt / 2), limit: limit, ackDelay: slow}
	c := newWindowCtl(0, 65535, time.Unix(1_700_000_000, 0))
	r := simulate(c, l, 0, 60*time.Second, nil)
	want := limit / slow.Seconds()
	bdp := want * (rtt + slow).Seconds()
	t.Logf("limit %d, acks after %v, rtt %v: %.0f msg/s (limit allows %.0f), window max %d end %d (BDP %.0f)", limit, slow, rtt, r.rate(), want, r.maxW, r.endW, bdp)
	if r.rate() < 0.9*want {
		t.Errorf("rate %.0f, want about %.0f", r.rate(), want)
	}
	if float64(r.endW) > 3*bdp {
		t.Errorf("window ended at %d, want it near 2 × BDP (%.0f)", r.endW, bdp)
	}
}

// TestWindowFollowsThePath: when the round trip triples (an LTE cell
// change), the window grows to the new BDP within seconds; when it falls
// back, the window shrinks.
func TestWindowFollowsThePath(t *testing.T) {
	const capacity = 8000
	slow := func(at time.Duration) time.Duration {
		if at >= 20*time.Second && at < 60*time.Second {
			return 75 * time.Millisecond
		}
		return 25 * time.Millisecond
	}
	l := &simLink{oneWay: slow, capacity: capacity}
	c := newWindowCtl(0, 65535, time.Unix(1_700_000_000, 0))
	var samples []string
	rate := func(from, to time.Duration) float64 {
		n := 0
		for _, d := range l.done {
			if d >= from && d < to {
				n++
			}
		}
		return float64(n) / (to - from).Seconds()
	}
	var wAt40, wAt90 int
	simulate(c, l, 0, 100*time.Second, func(at time.Duration, c *windowCtl) {
		if wAt40 == 0 && at >= 40*time.Second {
			wAt40 = c.size()
		}
		if wAt90 == 0 && at >= 90*time.Second {
			wAt90 = c.size()
		}
	})
	for _, span := range [][2]time.Duration{{10 * time.Second, 20 * time.Second}, {20 * time.Second, 35 * time.Second}, {35 * time.Second, 60 * time.Second}, {75 * time.Second, 100 * time.Second}} {
		samples = append(samples, fmt.Sprintf("%v-%v: %.0f msg/s", span[0], span[1], rate(span[0], span[1])))
	}
	t.Logf("%v; window at 40 s %d, at 90 s %d", samples, wAt40, wAt90)
	if r := rate(35*time.Second, 60*time.Second); r < 0.9*capacity {
		t.Errorf("after the round trip tripled: %.0f msg/s, want the broker's %d", r, capacity)
	}
	if r := rate(75*time.Second, 100*time.Second); r < 0.9*capacity {
		t.Errorf("after it fell back: %.0f msg/s, want the broker's %d", r, capacity)
	}
	if wAt90 >= wAt40 {
		t.Errorf("window %d at 90 s, want it smaller than at 40 s (%d): the path got shorter", wAt90, wAt40)
	}
}

// TestWindowLiveTraffic: a steady stream below the link's capacity is sent
// as it comes: no message waits for the window.
func TestWindowLiveTraffic(t *testing.T) {
	for _, rtt := range []time.Duration{20 * time.Millisecond, 300 * time.Millisecond} {
		l := &simLink{oneWay: constDelay(rtt / 2), capacity: 30000}
		c := newWindowCtl(0, 65535, time.Unix(1_700_000_000, 0))
		r := simulate(c, l, 2000, 30*time.Second, nil)
		t.Logf("rtt %v, 2000 msg/s: delivered %d, longest lag %v, window %d", rtt, r.delivered, r.maxLag, r.endW)
		if r.maxLag > rtt+10*time.Millisecond {
			t.Errorf("rtt %v: a message waited %v from publication to acknowledgement, want about one round trip", rtt, r.maxLag)
		}
	}
}

// TestWindowFixed: inflight: N is the window, whatever the link does.
func TestWindowFixed(t *testing.T) {
	l := &simLink{oneWay: constDelay(50 * time.Millisecond), capacity: 10000}
	c := newWindowCtl(20, 65535, time.Unix(1_700_000_000, 0))
	r := simulate(c, l, 0, 10*time.Second, nil)
	if r.maxW != 20 || r.endW != 20 {
		t.Fatalf("window max %d end %d, want 20", r.maxW, r.endW)
	}
	if want := 20 / 0.1; r.rate() > want*1.01 {
		t.Errorf("rate %.0f over a fixed window of 20 at 100 ms, want at most %.0f", r.rate(), want)
	}
}

// TestWindowMaxInflight: max_inflight bounds the window.
func TestWindowMaxInflight(t *testing.T) {
	l := &simLink{oneWay: constDelay(150 * time.Millisecond), capacity: 100000}
	c := newWindowCtl(0, 3000, time.Unix(1_700_000_000, 0))
	r := simulate(c, l, 0, 20*time.Second, nil)
	if r.maxW > 3000 {
		t.Fatalf("window reached %d, want at most max_inflight 3000", r.maxW)
	}
	if r.endW != 3000 {
		t.Errorf("window %d at the end, want max_inflight 3000 (the path holds 30,000)", r.endW)
	}
}

func TestMaxFilter(t *testing.T) {
	var f maxFilter
	f.update(1, 10)
	f.update(2, 5)
	if f.max() != 10 {
		t.Fatalf("max %v, want 10", f.max())
	}
	for r := uint64(3); r <= 1+bwRounds; r++ {
		f.update(r, 5)
	}
	if f.max() != 10 {
		t.Fatalf("max %v before the window passed, want 10", f.max())
	}
	f.update(2+bwRounds+1, 5)
	if f.max() != 5 {
		t.Fatalf("max %v after the window passed, want 5", f.max())
	}
	f.update(40, 7)
	if f.max() != 7 {
		t.Fatalf("max %v, want the new maximum 7", f.max())
	}
}
