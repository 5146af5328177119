package modbus

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/goburrow/modbus"

	"github.com/fieldbridge/fieldbridge/adapters"
)

type devState uint8

const (
	stateUnknown devState = iota // not polled yet
	stateOnline
	stateOffline
)

// device is one unit on a bus: its fixed plan and its polling state, owned by
// the bus goroutine.
type device struct {
	cfg      *DeviceConfig
	pub      *adapters.Device
	requests []request
	log      *slog.Logger
	client   modbus.Client

	state   devState
	next    time.Time     // when the next poll is due
	backoff time.Duration // probe interval while offline
	reqErr  []string      // last error text per request, "" when fine

	counters deviceCounters // read by the metrics endpoint (monitor.go)

	// Overrun reporting: a saturated bus skips cycles now and then; that is
	// logged when it starts, summarised at most once a minute, and cleared
	// after a minute without skips — not once per skip.
	overrun      bool
	lastSkip     time.Time
	lastOverLog  time.Time
	skippedSince int64
}

// reset prepares the device for a new run: every device is due at once.
func (d *device) reset(now time.Time) {
	d.state = stateUnknown
	d.next = now
	d.backoff = 0
	d.overrun = false
	d.skippedSince = 0
	d.reqErr = make([]string, len(d.requests))
}

// overrunLogEvery bounds how often skipped cycles are reported.
const overrunLogEvery = time.Minute

// schedule sets the next poll one interval after the one just made. A missed
// deadline is skipped, not queued: a bus that fell behind catches up by
// dropping cycles, never by bursting.
func (d *device) schedule(now time.Time, skipped func(int64) int64) {
	d.next = d.next.Add(d.cfg.Interval)
	if d.next.After(now) {
		if d.overrun && now.Sub(d.lastSkip) >= overrunLogEvery {
			d.log.Info("polling keeps its interval again", "interval", d.cfg.Interval, "skipped", d.skippedSince)
			d.overrun, d.skippedSince = false, 0
		}
		return
	}
	n := now.Sub(d.next)/d.cfg.Interval + 1
	d.next = d.next.Add(n * d.cfg.Interval)
	skipped(int64(n))
	d.lastSkip = now
	d.skippedSince += int64(n)
	switch {
	case !d.overrun:
		d.log.Warn("polling fell behind its interval; skipping missed cycles",
			"interval", d.cfg.Interval, "skipped", int64(n))
		d.overrun, d.lastOverLog, d.skippedSince = true, now, 0
	case now.Sub(d.lastOverLog) >= overrunLogEvery:
		d.log.Warn("polling still falls behind its interval", "interval", d.cfg.Interval, "skipped_last_minute", d.skippedSince)
		d.lastOverLog, d.skippedSince = now, 0
	}
}

// setRequestState records the outcome of request i and logs changes: a block
// that starts failing is logged once, and once more when it recovers. It
// reports whether a no-reply failure is new, which the caller logs only if
// the device as a whole still answers (otherwise the device going offline
// says it all).
func (d *device) setRequestState(i int, err *ReadError) (newSilence bool) {
	prev := d.reqErr[i]
	if err == nil {
		if prev != "" && d.state == stateOnline { // else "device online" says it
			d.log.Info("read ok again", "request", d.where(&d.requests[i]))
		}
		d.reqErr[i] = ""
		return false
	}
	msg := err.Error()
	if msg == prev {
		return false
	}
	d.reqErr[i] = msg
	switch err.Kind {
	case failException, failFrame:
		d.log.Warn("read failed", "err", err.detail())
	case failNoReply:
		return true
	}
	return false
}

func (d *device) unitText() string { return fmt.Sprintf("unit %d", d.cfg.unit) }

// where names a request for errors: "unit 3 holding 40..47".
func (d *device) where(q *request) string {
	return fmt.Sprintf("unit %d %s %d..%d", d.cfg.unit, q.table, q.start, q.end()-1)
}
