package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"go.bug.st/serial"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// The bus goroutine's side of writes: waiting for the next poll while
// serving writes, and carrying one write out.

// wait sleeps until the given time or ctx ends, carrying out writes that
// arrive meanwhile; it reports whether to go on.
func (b *bus) wait(ctx context.Context, until time.Time) bool {
	for {
		d := until.Sub(b.now())
		if d <= 0 {
			b.serveWrites(ctx)
			return ctx.Err() == nil
		}
		b.timer.Reset(d)
		select {
		case <-ctx.Done():
			b.timer.Stop()
			return false
		case <-b.timer.C:
			b.serveWrites(ctx)
			return true
		case job := <-b.a.writes.queue:
			b.timer.Stop()
			b.runWrite(ctx, job)
		}
	}
}

// serveWrites carries out the writes waiting now, between two poll
// requests. At most one queue's worth at a time, so that a stream of
// commands cannot stop the polling.
func (b *bus) serveWrites(ctx context.Context) {
	for range writeQueueSize {
		select {
		case job := <-b.a.writes.queue:
			b.runWrite(ctx, job)
		default:
			return
		}
	}
}

func (b *bus) runWrite(ctx context.Context, job *writeJob) {
	idle := b.a.stats.busySince.Load() == 0
	if idle {
		b.a.stats.busySince.Store(b.now().UnixNano())
	}
	res := b.write(ctx, job)
	if idle {
		b.a.stats.busySince.Store(0)
	}
	// The command router logs every outcome once, with the client that
	// sent the command; the bus adds its detail at debug level.
	w := &b.a.writes
	if res.Err == nil {
		w.ok.Add(1)
		job.wp.dev.log.Debug("write", "point", job.wp.point.Name, "value", job.value.String(), "read_back", res.ReadBack.String())
	} else {
		w.failed.Add(1)
		job.wp.dev.log.Debug("write failed", "point", job.wp.point.Name, "value", job.value.String(), "err", res.Err)
	}
	res.Time = b.now()
	job.done(res)
}

// write carries out one write: the read of a bit's register, the write, and
// the read-back, with nothing else on the bus in between.
func (b *bus) write(ctx context.Context, job *writeJob) adapters.WriteResult {
	wp := job.wp
	d := wp.dev
	switch {
	case ctx.Err() != nil:
		return failure(adapters.ErrNotSent, "bus %s is stopping", b.a.cfg.Name)
	case b.linkDown:
		return failure(adapters.ErrNotSent, "bus %s is unreachable (%s)", b.a.cfg.Name, b.linkErr)
	case d.state == stateOffline:
		// Fail at once rather than wait for the next probe, which may be a
		// minute away: the operator learns now that nothing was done.
		return failure(adapters.ErrNotSent, "device %s (unit %d) is not answering", d.cfg.Name, d.cfg.unit)
	}
	where := fmt.Sprintf("unit %d %s %d", d.cfg.unit, wp.table, wp.addr)
	data := job.data
	if wp.bit >= 0 {
		q := wp.request(1)
		reg, rerr := b.transact(ctx, d, &q, 0)
		if rerr != nil {
			return failure(adapters.ErrNotSent, "reading %s to change bit %d failed: %s", where, wp.bit, rerr.Error())
		}
		data = setBit(reg[:2], wp.codec.spec.order, wp.bit, job.on)
	}
	b.link.SetTimeout(d.cfg.Timeout)
	err := b.send(wp, data, job.on)
	b.a.stats.requests.Add(1)
	if b.a.cfg.DelayBetweenRequests > 0 {
		b.sleep(ctx, b.a.cfg.DelayBetweenRequests)
	}
	if kind, cause := classify(err, b.link.lastErr); kind != failNone {
		b.a.stats.count(kind)
		return writeFailure(where, kind, cause, d.cfg.Timeout)
	}
	res := adapters.WriteResult{}
	res.ReadBack, res.ReadBackErr = b.readBack(ctx, wp)
	return res
}

// send makes the write request with the function code the point needs.
func (b *bus) send(wp *writePoint, data []byte, on bool) error {
	c := wp.dev.client
	var err error
	switch {
	case wp.table == Coil && wp.multiple:
		var v byte
		if on {
			v = 1
		}
		_, err = c.WriteMultipleCoils(wp.addr, 1, []byte{v})
	case wp.table == Coil:
		var v uint16
		if on {
			v = 0xFF00
		}
		_, err = c.WriteSingleCoil(wp.addr, v)
	case len(data) == 2 && !wp.multiple:
		_, err = c.WriteSingleRegister(wp.addr, binary.BigEndian.Uint16(data))
	default:
		_, err = c.WriteMultipleRegisters(wp.addr, uint16(len(data)/2), data)
	}
	return err
}

// writeFailure words a failed write by what it means for the device.
func writeFailure(where string, kind failKind, cause error, timeout time.Duration) adapters.WriteResult {
	var ex *ExceptionError
	isEx := errors.As(cause, &ex)
	switch {
	case isEx && ex.Code == 10:
		return failure(adapters.ErrNotSent, "%s: %s", where, ex)
	case isEx && ex.Code == 11:
		return failure(adapters.ErrUnknownOutcome, "%s: %s: the device may or may not have applied the write", where, ex)
	case kind == failException:
		return failure(adapters.ErrDeviceRefused, "%s: %s", where, ex)
	case kind == failLink && neverSent(cause):
		return failure(adapters.ErrNotSent, "%s: %v", where, cause)
	case kind == failNoReply:
		return failure(adapters.ErrUnknownOutcome, "%s: no response within %s: the device may or may not have applied the write; read the point before sending it again", where, timeout)
	}
	return failure(adapters.ErrUnknownOutcome, "%s: %v: the device may or may not have applied the write", where, cause)
}

// neverSent reports transport errors that happen before a byte is written:
// a refused connection, a serial port that cannot be opened.
func neverSent(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortNotFound, serial.PortBusy, serial.PermissionDenied, serial.InvalidSerialPort:
			return true
		}
	}
	return false
}

// request is a read of the point's own registers (count of them, or its
// whole span when count is 0).
func (wp *writePoint) request(count uint16) request {
	if count == 0 {
		count = wp.regs
	}
	return request{table: wp.table, start: wp.addr, count: count}
}

// readBack reads the point after a write and publishes it at once, even if
// unchanged: subscribers see the value the device now holds.
func (b *bus) readBack(ctx context.Context, wp *writePoint) (adapters.Value, error) {
	q := wp.request(0)
	data, rerr := b.transact(ctx, wp.dev, &q, 0)
	if rerr != nil {
		return adapters.Value{}, fmt.Errorf("written, but the read-back failed: %s", rerr.Error())
	}
	s := adapters.Sample{Point: wp.point, Time: b.now(), Force: true}
	switch {
	case wp.table == Coil:
		s.Value = adapters.Bool(bitValue(data, 0))
	default:
		v, err := wp.dec(data[:2*int(wp.regs)])
		if err != nil {
			return adapters.Value{}, fmt.Errorf("written, but the value read back cannot be decoded: %w", err)
		}
		s.Value = v
	}
	b.samples = append(b.samples[:0], s)
	b.sink.Publish(b.samples)
	return s.Value, nil
}
