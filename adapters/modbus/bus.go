package modbus

import (
	"context"
	"fmt"
	"time"

	"github.com/goburrow/modbus"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// bus is the state of one running bus, owned by the goroutine in Adapter.Run.
// Nothing here is shared, so nothing here is locked (counters excepted).
type bus struct {
	a       *Adapter
	link    *recordingLink
	sink    adapters.Sink
	devices []*device
	timer   *time.Timer
	now     func() time.Time
	samples []adapters.Sample // reused for every request's batch

	linkDown    bool
	linkErr     string
	linkRetry   time.Time
	linkBackoff time.Duration
}

// recordingLink remembers the error of the last Send, so a failed
// transaction can be attributed to the transport (timeout, vanished port) or
// to the reply's content (checked by goburrow after a good Send) without
// matching error strings.
type recordingLink struct {
	link
	lastErr error
}

func (r *recordingLink) Send(adu []byte) ([]byte, error) {
	resp, err := r.link.Send(adu)
	r.lastErr = err
	return resp, err
}

func newBus(a *Adapter, l link, sink adapters.Sink) *bus {
	b := &bus{a: a, link: &recordingLink{link: l}, sink: sink, now: time.Now}
	a.stats.link.Store(b.link)
	b.timer = time.NewTimer(time.Hour)
	b.timer.Stop()
	start := b.now()
	for _, d := range a.devices {
		d.client = modbus.NewClient2(a.packager(d.cfg.unit), b.link)
		d.reset(start)
		b.devices = append(b.devices, d)
	}
	return b
}

// run is the bus loop: wait for the most overdue device, poll it, repeat.
func (b *bus) run(ctx context.Context) {
	defer b.shutdown()
	for ctx.Err() == nil {
		d := b.nextDevice()
		at := d.next
		if b.linkDown && b.linkRetry.After(at) {
			at = b.linkRetry
		}
		if !b.wait(ctx, at) { // serves writes meanwhile
			return
		}
		b.a.stats.busySince.Store(b.now().UnixNano())
		b.poll(ctx, d)
		b.notePolled(d)
		b.a.stats.busySince.Store(0)
	}
}

// nextDevice is the device due first; ties go to the earlier-listed device.
func (b *bus) nextDevice() *device {
	best := b.devices[0]
	for _, d := range b.devices[1:] {
		if d.next.Before(best.next) {
			best = d
		}
	}
	return best
}

// sleep waits for d or until ctx ends; it reports whether to go on.
func (b *bus) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	b.timer.Reset(d)
	select {
	case <-ctx.Done():
		b.timer.Stop()
		return false
	case <-b.timer.C:
		return true
	}
}

// shutdown tells subscribers the devices are no longer being polled.
func (b *bus) shutdown() {
	for _, d := range b.devices {
		if d.state == stateOnline {
			b.sink.Availability(d.pub, false)
		}
	}
}

// poll runs one cycle of a device. An offline device is only probed: its
// first request, once, without retries — a dead device costs at most one
// timeout per backoff period, so the others on the bus keep their rates.
func (b *bus) poll(ctx context.Context, d *device) {
	probe := d.state == stateOffline
	answered := false
	var lastFail *ReadError
	var silent []*ReadError // blocks that newly stopped answering
	b.a.stats.cycles.Add(1)
	for i := range d.requests {
		if ctx.Err() != nil {
			return
		}
		b.serveWrites(ctx) // writes jump the queue, between two requests
		q := &d.requests[i]
		tries := d.cfg.retries
		if probe || (lastFail != nil && !answered) {
			// Either the device is believed dead, or this cycle has seen
			// only silence so far: one attempt is enough to tell.
			tries = 0
		}
		data, rerr := b.transact(ctx, d, q, tries)
		if rerr == nil {
			answered = true
			d.setRequestState(i, nil)
			b.emitValues(d, q, data)
			continue
		}
		switch rerr.Kind {
		case failClosed:
			return
		case failLink:
			b.linkFailed(rerr)
			return
		case failException:
			answered = true // the device is alive; only this block is bad
		default:
			lastFail = rerr
		}
		if d.setRequestState(i, rerr) {
			silent = append(silent, rerr)
		}
		b.emitError(q, rerr)
		if probe && rerr.Kind != failException {
			break
		}
	}
	b.linkUp()
	now := b.now()
	switch {
	case answered:
		for _, e := range silent {
			d.log.Warn("read failed", "err", e.detail())
		}
		if d.state != stateOnline {
			// Back from an outage: the cycles missed while it lasted
			// are not an overrun. Start the schedule afresh.
			d.next = now
		}
		b.setOnline(d)
		d.schedule(now, b.a.stats.skipped.Add)
	case lastFail != nil:
		b.setOffline(d, lastFail, true)
	default:
		d.schedule(now, b.a.stats.skipped.Add) // never poll the same device in a tight loop
	}
}

// transact performs one request with retries and classifies the outcome.
func (b *bus) transact(ctx context.Context, d *device, q *request, tries int) ([]byte, *ReadError) {
	b.link.SetTimeout(d.cfg.Timeout)
	for attempt := 0; ; attempt++ {
		start := b.now()
		data, err := b.read(d, q)
		took := b.now().Sub(start)
		b.a.stats.requests.Add(1)
		if b.a.cfg.DelayBetweenRequests > 0 {
			b.sleep(ctx, b.a.cfg.DelayBetweenRequests)
		}
		kind, cause := classify(err, b.link.lastErr)
		if kind == failNone && len(data) < q.dataBytes() {
			kind, cause = failFrame, fmt.Errorf("reply has %d data bytes, want %d", len(data), q.dataBytes())
		}
		b.noteRequest(d, kind, took)
		if kind == failNone {
			return data, nil
		}
		b.a.stats.count(kind)
		rerr := &ReadError{Where: d.where(q), Kind: kind, Err: cause}
		retryable := kind == failFrame || kind == failLink || (kind == failNoReply && !isException(cause))
		if !retryable || attempt >= tries || ctx.Err() != nil {
			return nil, rerr
		}
		d.log.Debug("retrying", "request", d.where(q), "attempt", attempt+1, "err", cause)
	}
}

func isException(err error) bool {
	_, ok := err.(*ExceptionError)
	return ok
}

func (b *bus) read(d *device, q *request) ([]byte, error) {
	switch q.table {
	case Coil:
		return d.client.ReadCoils(q.start, q.count)
	case Discrete:
		return d.client.ReadDiscreteInputs(q.start, q.count)
	case Input:
		return d.client.ReadInputRegisters(q.start, q.count)
	}
	return d.client.ReadHoldingRegisters(q.start, q.count)
}

// emitValues decodes a reply and hands the batch to the sink.
func (b *bus) emitValues(d *device, q *request, data []byte) {
	now := b.now()
	s := b.samples[:0]
	for i := range q.reads {
		r := &q.reads[i]
		sm := adapters.Sample{Point: r.point, Time: now}
		if r.dec == nil {
			sm.Value = adapters.Bool(bitValue(data, r.off))
		} else if v, err := r.dec(data[2*r.off : 2*(r.off+r.regs)]); err != nil {
			b.a.stats.decodeErrors.Add(1)
			sm.Err = fmt.Errorf("%s %s: %w", d.unitText(), r.point.Name, err)
		} else {
			sm.Value = v
		}
		s = append(s, sm)
	}
	b.samples = s
	b.sink.Publish(s)
}

// emitError marks every point of a request bad.
func (b *bus) emitError(q *request, err error) {
	now := b.now()
	s := b.samples[:0]
	for i := range q.reads {
		s = append(s, adapters.Sample{Point: q.reads[i].point, Err: err, Time: now})
	}
	b.samples = s
	b.sink.Publish(s)
}

// linkFailed handles a port or connection failure: every device on the bus
// is unreachable. Logged once per outage; retried with backoff.
func (b *bus) linkFailed(err *ReadError) {
	now := b.now()
	if !b.linkDown {
		b.linkDown = true
		b.linkBackoff = b.a.cfg.BackoffInitial
		b.a.log.Warn("bus unreachable; retrying with backoff", "err", err.Err)
		for _, d := range b.devices {
			for i := range d.requests {
				q := &d.requests[i]
				e := &ReadError{Where: d.where(q), Kind: failLink, Err: err.Err}
				d.setRequestState(i, e)
				b.emitError(q, e)
			}
			b.setOffline(d, err, false) // the bus-level message covers every device
		}
	} else {
		b.linkBackoff = min(2*b.linkBackoff, b.a.cfg.BackoffMax)
	}
	b.linkErr = err.Err.Error()
	b.linkRetry = now.Add(b.linkBackoff)
}

func (b *bus) linkUp() {
	if b.linkDown {
		b.linkDown = false
		b.a.log.Info("bus reachable again", "after", b.linkErr)
		b.linkErr = ""
	}
}

func (b *bus) setOnline(d *device) {
	if d.state != stateOnline {
		if d.state == stateOffline {
			d.log.Info("device online")
		}
		d.state = stateOnline
		d.backoff = 0
		b.sink.Availability(d.pub, true)
	}
}

// setOffline marks a device dead and schedules its next probe.
func (b *bus) setOffline(d *device, err *ReadError, logIt bool) {
	now := b.now()
	if d.state != stateOffline {
		if logIt {
			d.log.Warn("device not answering; probing with backoff", "err", err.detail())
		}
		d.state = stateOffline
		d.backoff = b.a.cfg.BackoffInitial
		b.sink.Availability(d.pub, false)
	} else {
		d.backoff = min(2*d.backoff, b.a.cfg.BackoffMax)
	}
	d.next = now.Add(d.backoff)
}
