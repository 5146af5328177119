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
	overrun bool          // the last schedule skipped cycles (log once)
	reqErr  []string      // last error text per request, "" when fine
}

// reset prepares the device for a new run: every device is due at once.
func (d *device) reset(now time.Time) {
	d.state = stateUnknown
	d.next = now
	d.backoff = 0
	d.overrun = false
	d.reqErr = make([]string, len(d.requests))
}

// schedule sets the next poll one interval after the one just made. A missed
// deadline is skipped, not queued: a bus that fell behind catches up by
// dropping cycles, never by bursting.
func (d *device) schedule(now time.Time, skipped func(int64) int64) {
	d.next = d.next.Add(d.cfg.Interval)
	if d.next.After(now) {
		if d.overrun {
			d.log.Info("poll cycle back within its interval")
			d.overrun = false
		}
		return
	}
	n := now.Sub(d.next)/d.cfg.Interval + 1
	d.next = d.next.Add(n * d.cfg.Interval)
	skipped(int64(n))
	if !d.overrun {
		d.log.Warn("polling fell behind its interval; skipping missed cycles",
			"interval", d.cfg.Interval, "skipped", int64(n))
		d.overrun = true
	}
}

// setRequestState records the outcome of request i and logs changes: a block
// that starts failing is logged once, and once more when it recovers.
func (d *device) setRequestState(i int, err *ReadError) {
	prev := d.reqErr[i]
	if err == nil {
		if prev != "" {
			d.log.Info("read ok again", "request", d.where(&d.requests[i]))
			d.reqErr[i] = ""
		}
		return
	}
	msg := err.Error()
	if msg == prev {
		return
	}
	d.reqErr[i] = msg
	// Silence and link failures are logged for the whole device or bus.
	if err.Kind == failException || err.Kind == failFrame || (err.Kind == failNoReply && d.state == stateOnline) {
		d.log.Warn("read failed", "err", err.detail())
	}
}

func (d *device) unitText() string { return fmt.Sprintf("unit %d", d.cfg.unit) }

// where names a request for errors: "unit 3 holding 40..47".
func (d *device) where(q *request) string {
	return fmt.Sprintf("unit %d %s %d..%d", d.cfg.unit, q.table, q.start, q.end()-1)
}
