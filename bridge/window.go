package bridge

import (
	"math"
	"time"
)

// The window: how many QoS 1/2 publishes may be in flight (sent, not yet
// acknowledged) on a connection. A window of W carries at most W ÷ RTT
// messages per second, so on a 100 ms LTE link a window of 20 caps the
// bridge at 200 msg/s however fast the broker is; a window far beyond what
// the link needs only queues messages in socket buffers, which costs
// memory, latency and, after a reconnect, duplicates.
//
// inflight: auto sizes the window to the link the way BBR sizes a TCP
// congestion window, with acknowledgements in place of TCP's ACKs:
//
//   - it measures the round trip (RTprop: the smallest time from PUBLISH
//     to PUBACK, over the last rtpropWindow) and the delivery rate
//     (BtlBw: acknowledgements per second, the maximum over the last
//     bwRounds round trips, where a round trip ends when the publish that
//     was the newest at its start is acknowledged), so that their product
//     is what the path holds: its bandwidth-delay product, BDP;
//   - it starts at windowInitial and, while the window is what holds the
//     sender back, grows by one per acknowledgement — doubling per round
//     trip, as TCP's slow start — up to startupGain × BDP, until the
//     delivery rate stops growing (three rounds without +25 %): then the
//     broker, the path or a quota is the bottleneck;
//   - from then on the window is windowGain × BDP: twice what the path
//     holds, so that the link runs full and a path that gets faster is
//     noticed (the rate can double before the window binds again), never
//     below windowFloor nor above max_inflight; it shrinks as well as grows;
//   - a broker that accepts only so many unacknowledged messages and then
//     stops reading (AWS IoT Core: 100) shows as a delivery rate that does
//     not grow: the window settles at about twice what that rate needs,
//     and the rest waits in our queue instead of in socket buffers;
//   - every rtpropWindow without a new minimum round trip (the path may
//     have become slower, or the window's own queue hides the minimum) it
//     probes: half a BDP in flight for about two round trips, enough to
//     drain any queue it built, then takes the smallest round trip seen as
//     the new RTprop; when the window did not bind meanwhile, nothing of
//     ours queued, and the smallest round trip seen is taken without a
//     probe;
//   - acknowledgements of publishes sent while the sender had nothing more
//     to send (a trickle of live data) or was held by max_rate do not lower
//     the rate estimate: the bridge keeps what it learnt when a backlog
//     last tested the link, and drains the next backlog at full speed.
//
// QoS 0 publishes complete when written, without a round trip: they take
// a slot while paho holds them, but never feed the estimates.
//
// windowCtl is owned by the pump goroutine; it does no I/O and takes the
// time as an argument, so that tests can drive it through a simulated
// link.
type windowCtl struct {
	fixed   int // inflight: N; 0 = auto
	max     int
	initial int
	w       int

	// Delivery, counted in acknowledged publishes on this connection.
	delivered      uint64
	deliveredAt    time.Time // when the last one was acknowledged
	lastAckedSent  time.Time // send time of the last one acknowledged
	nextSerial     uint64    // serial of the next publish
	appLimitedTill uint64    // publishes up to this serial were sent app-limited

	rtprop   time.Duration
	rtpropAt time.Time
	// Since rtpropAt: the smallest round trip, and whether the window
	// bound at all (if not, no queue of ours can hide the minimum).
	sinceMin     time.Duration
	sinceLimited bool
	bw           maxFilter

	startup      bool
	fullBw       float64
	fullBwRounds int

	round    uint64
	roundEnd uint64 // the round ends when this serial is acknowledged

	probing    bool
	probeFrom  uint64 // samples of publishes after this serial count
	probeUntil uint64 // 0 until the first probe sample; then the exit serial
	probeMin   time.Duration
	probeStart time.Time
}

// Window constants (see the comment above).
const (
	windowInitial = 2048
	windowFloor   = 64
	windowGain    = 2
	startupGain   = 2.89 // 2/ln 2: doubling per round trip stays within it
	rtpropWindow  = 10 * time.Second
	bwRounds      = 10
	// probeMaxTime ends a probe that gets no answers (the link is dying:
	// the progress timeout deals with that).
	probeMaxTime = 2 * time.Second
)

// sendStamp is what the window remembers of one publish until it is
// acknowledged.
type sendStamp struct {
	serial        uint64
	sent          time.Time
	delivered     uint64    // acknowledged publishes when it was sent
	deliveredAt   time.Time // when the last of those was acknowledged
	lastAckedSent time.Time // and when that one had been sent
	appLimited    bool
	measured      bool // QoS 1/2: its acknowledgement is a round trip
}

func newWindowCtl(fixed, maxInflight int, now time.Time) *windowCtl {
	c := &windowCtl{fixed: fixed, max: maxInflight, startup: true, deliveredAt: now, lastAckedSent: now, nextSerial: 1,
		sinceMin: time.Duration(math.MaxInt64)}
	c.initial = min(windowInitial, maxInflight)
	c.w = c.initial
	if fixed > 0 {
		c.w = fixed
	}
	return c
}

// size is the number of publishes that may be in flight now.
func (c *windowCtl) size() int {
	if c.probing && c.fixed == 0 {
		return max(windowFloor, min(c.w, int(c.bdp()/2)))
	}
	return c.w
}

// bdp is the estimated bandwidth-delay product, in publishes.
func (c *windowCtl) bdp() float64 { return c.bw.max() * c.rtprop.Seconds() }

// sent stamps a publish. appLimited says the sender had nothing more to
// send, or a rate limit held it: its acknowledgement says nothing about
// what the link could carry.
func (c *windowCtl) sent(now time.Time, measured, appLimited bool) sendStamp {
	s := sendStamp{
		serial: c.nextSerial, sent: now, delivered: c.delivered, deliveredAt: c.deliveredAt,
		lastAckedSent: c.lastAckedSent, measured: measured,
	}
	c.nextSerial++
	if appLimited {
		c.appLimitedTill = s.serial
	}
	s.appLimited = s.serial <= c.appLimitedTill
	return s
}

// acked takes the acknowledgement of one publish, in the order they were
// sent. limited says the window was full when the sender last wanted to
// send: only then may it grow.
func (c *windowCtl) acked(s sendStamp, now time.Time, limited bool) {
	c.delivered++
	c.deliveredAt, c.lastAckedSent = now, s.sent
	if !s.measured {
		return
	}
	rtt := max(now.Sub(s.sent), time.Microsecond)
	switch {
	case c.rtprop == 0 || rtt <= c.rtprop:
		c.rtprop = rtt
		c.refreshed(now)
	case rtt <= c.rtprop+max(c.rtprop/8, 100*time.Microsecond):
		c.refreshed(now) // the minimum still holds, give or take jitter
	default:
		c.sinceMin = min(c.sinceMin, rtt)
		c.sinceLimited = c.sinceLimited || limited
	}

	// Delivery rate since this publish was sent: the longer of the send
	// and the acknowledgement intervals, so that acknowledgements taken
	// in a burst do not inflate it.
	interval := max(now.Sub(s.deliveredAt), s.sent.Sub(s.lastAckedSent))
	if interval > 0 {
		rate := float64(c.delivered-s.delivered) / interval.Seconds()
		if !s.appLimited || rate > c.bw.max() {
			c.bw.update(c.round, rate)
		}
	}
	if s.serial >= c.roundEnd {
		c.round++
		c.roundEnd = c.nextSerial - 1
		c.checkFullBw(limited && !s.appLimited)
	}
	if c.fixed > 0 {
		return
	}
	c.probe(s, rtt, now)
	c.resize(limited)
}

// checkFullBw ends the startup once three rounds in a row, with the
// window binding, did not raise the delivery rate by a quarter.
func (c *windowCtl) checkFullBw(limited bool) {
	if !c.startup || !limited {
		return
	}
	if bw := c.bw.max(); bw >= c.fullBw*1.25 {
		c.fullBw, c.fullBwRounds = bw, 0
		return
	}
	c.fullBwRounds++
	if c.fullBwRounds >= 3 {
		c.startup = false
	}
}

// refreshed notes that RTprop was confirmed at now.
func (c *windowCtl) refreshed(now time.Time) {
	c.rtpropAt = now
	c.sinceMin, c.sinceLimited = time.Duration(math.MaxInt64), false
}

// probe runs the round-trip probe: it starts when RTprop is older than
// rtpropWindow and ends about two round trips later. When the window did
// not bind since RTprop was last confirmed, nothing of ours queued, and the
// smallest round trip seen meanwhile is taken at once, without a probe.
func (c *windowCtl) probe(s sendStamp, rtt time.Duration, now time.Time) {
	if !c.probing {
		if now.Sub(c.rtpropAt) <= rtpropWindow || c.bw.max() == 0 {
			return
		}
		if !c.sinceLimited {
			c.rtprop = c.sinceMin
			c.refreshed(now)
			return
		}
		c.probing, c.probeFrom, c.probeUntil = true, c.nextSerial-1, 0
		c.probeMin, c.probeStart = time.Duration(math.MaxInt64), now
		return
	}
	if s.serial > c.probeFrom {
		c.probeMin = min(c.probeMin, rtt)
		if c.probeUntil == 0 {
			c.probeUntil = c.nextSerial - 1 // one more round at the probe's window
		}
	}
	if (c.probeUntil != 0 && s.serial >= c.probeUntil) || now.Sub(c.probeStart) > probeMaxTime {
		if c.probeMin < time.Duration(math.MaxInt64) {
			c.rtprop = c.probeMin
		}
		c.probing = false
		c.refreshed(now)
	}
}

// resize moves the window towards windowGain × BDP. During the startup it
// only grows, by one per acknowledgement while the window binds (doubling
// per round trip, as TCP's slow start), up to startupGain × BDP — and
// through the whole first window, before any estimate exists.
func (c *windowCtl) resize(limited bool) {
	bdp := c.bdp()
	if c.startup {
		if limited && (float64(c.w) < startupGain*bdp || c.delivered < uint64(c.initial)) {
			c.w = min(c.w+1, c.max)
		}
		return
	}
	target := int(math.Min(windowGain*bdp, float64(c.max)))
	target = max(target, min(windowFloor, c.max))
	switch {
	case c.w < target && limited:
		c.w++
	case c.w > target:
		c.w = target
	}
}

// maxFilter is the maximum of the samples of the last bwRounds rounds,
// kept as the best, second-best and third-best of successive parts of the
// window (Kathleen Nichols' windowed min/max estimator, which BBR uses), so
// that an old maximum expires without a full history of samples.
type maxFilter struct {
	s [3]filterSample
}

type filterSample struct {
	v     float64
	round uint64
}

// update adds a sample taken in round r.
func (f *maxFilter) update(r uint64, v float64) {
	in := filterSample{v: v, round: r}
	s := &f.s
	if v >= s[0].v || r-s[2].round > bwRounds {
		s[0], s[1], s[2] = in, in, in // a new maximum, or all expired
		return
	}
	if v >= s[1].v {
		s[1], s[2] = in, in
	} else if v >= s[2].v {
		s[2] = in
	}
	dt := r - s[0].round
	switch {
	case dt > bwRounds:
		// The best expired: the second and third move up (twice, if
		// the second has expired too).
		s[0], s[1], s[2] = s[1], s[2], in
		if r-s[0].round > bwRounds {
			s[0], s[1], s[2] = s[1], s[2], in
		}
	case s[1].round == s[0].round && dt > bwRounds/4:
		s[1], s[2] = in, in // a second choice from the second quarter
	case s[2].round == s[1].round && dt > bwRounds/2:
		s[2] = in // a third choice from the second half
	}
}

func (f *maxFilter) max() float64 { return f.s[0].v }
