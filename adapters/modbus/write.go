package modbus

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Writes. A command is checked and encoded by Adapter.Write on the caller's
// goroutine, so a bad value never reaches the bus; it then waits in a short
// queue that the bus goroutine serves between two transactions, ahead of the
// next poll request. A transaction is never interrupted: a write waits at
// most for the one request on the wire.

var _ adapters.Writer = (*Adapter)(nil)

// writeQueueSize bounds the writes waiting for one bus. Commands come from
// people and control systems, a few a second at most; a queue this long
// means the bus cannot keep up, and the next command is refused rather than
// carried out seconds late.
const writeQueueSize = 32

// writePoint is what a write needs to know about one point, fixed at Build.
type writePoint struct {
	point    *adapters.Point
	dev      *device
	table    Table
	addr     uint16
	regs     uint16
	bit      int // >= 0: one bit of a holding register, read-modify-write
	codec    writeCodec
	multiple bool       // write_function 16: FC16 (FC15) even for one register (coil)
	dec      decodeFunc // read-back of a register point
	refusal  string     // why the point cannot be written; "" when it can
}

// writeJob is one checked command waiting for the bus.
type writeJob struct {
	wp    *writePoint
	data  []byte // register points: the encoded registers
	on    bool   // coils and bits
	value adapters.Value
	done  func(adapters.WriteResult)
}

// writer is the adapter's side of the queue.
type writer struct {
	points map[*adapters.Point]*writePoint
	queue  chan *writeJob

	mu      sync.Mutex
	running bool

	ok, failed, refused atomic.Int64
}

// newWritePoint prepares the write path of a point. Points that are not
// writable get one too, carrying the reason a command is refused.
func newWritePoint(d *device, pc *PointConfig, p *adapters.Point) *writePoint {
	wp := &writePoint{
		point: p, dev: d, table: pc.table, addr: uint16(*pc.Address), regs: uint16(pc.regs),
		bit: pc.spec.bit, codec: writeCodec{spec: pc.spec, min: pc.Min, max: pc.Max},
		multiple: d.cfg.WriteFunction == 16,
	}
	if !pc.table.bits() {
		wp.dec = newDecoder(pc.spec)
	}
	switch {
	case pc.table == Input:
		wp.refusal = "it is an input register, which is read-only"
	case pc.table == Discrete:
		wp.refusal = "it is a discrete input, which is read-only"
	case !pc.Writable:
		wp.refusal = "it is not writable (writable: true in the config allows commands)"
	}
	return wp
}

// Write checks a command and queues it for the bus (adapters.Writer).
func (a *Adapter) Write(c adapters.Command, done func(adapters.WriteResult)) {
	w := &a.writes
	wp := w.points[c.Point]
	if wp == nil {
		w.refused.Add(1)
		done(failure(adapters.ErrRefused, "no point %s/%s on bus %s", pointDevice(c.Point), pointName(c.Point), a.cfg.Name))
		return
	}
	job := &writeJob{wp: wp, value: c.Value, done: done}
	if err := wp.prepare(job); err != nil {
		w.refused.Add(1)
		done(failure(adapters.ErrRefused, "%s", err))
		return
	}
	w.mu.Lock()
	running := w.running
	queued := false
	if running {
		select {
		case w.queue <- job:
			queued = true
		default:
		}
	}
	w.mu.Unlock()
	switch {
	case !running:
		w.failed.Add(1)
		done(failure(adapters.ErrNotSent, "bus %s is not running", a.cfg.Name))
	case !queued:
		w.failed.Add(1)
		done(failure(adapters.ErrNotSent, "%d writes are already waiting for bus %s", writeQueueSize, a.cfg.Name))
	}
}

// prepare checks the value and encodes it. The error is the reason for a
// refusal, in the operator's terms.
func (wp *writePoint) prepare(job *writeJob) error {
	if wp.refusal != "" {
		return fmt.Errorf("point %s/%s cannot be written: %s", wp.dev.cfg.Name, wp.point.Name, wp.refusal)
	}
	var err error
	if wp.table == Coil || wp.bit >= 0 {
		job.on, err = boolOf(job.value)
	} else {
		job.data, err = wp.codec.encode(job.value)
	}
	if err != nil {
		return fmt.Errorf("%s/%s: %w", wp.dev.cfg.Name, wp.point.Name, err)
	}
	return nil
}

// startWrites opens the queue for a run of the bus.
func (a *Adapter) startWrites() {
	a.writes.mu.Lock()
	a.writes.running = true
	a.writes.mu.Unlock()
}

// stopWrites closes the queue and answers what is still in it: nothing
// queued is left without an answer.
func (a *Adapter) stopWrites(why string) {
	w := &a.writes
	w.mu.Lock()
	w.running = false
	w.mu.Unlock()
	for {
		select {
		case job := <-w.queue:
			w.failed.Add(1)
			job.done(failure(adapters.ErrNotSent, "bus %s %s", a.cfg.Name, why))
		default:
			return
		}
	}
}

func failure(kind error, format string, args ...any) adapters.WriteResult {
	return adapters.WriteResult{Err: &writeError{kind: kind, msg: fmt.Sprintf(format, args...)}, Time: time.Now()}
}

// writeError is a write's failure: a kind (adapters.ErrRefused …) and the
// words for the operator.
type writeError struct {
	kind error
	msg  string
}

func (e *writeError) Error() string { return e.kind.Error() + ": " + e.msg }

func (e *writeError) Is(target error) bool { return target == e.kind }

func pointDevice(p *adapters.Point) string {
	if p == nil {
		return "?"
	}
	return p.Device
}

func pointName(p *adapters.Point) string {
	if p == nil {
		return "?"
	}
	return p.Name
}

// WriteStats are the bus's write counters: commands acknowledged by the
// device, refused before the bus, and failed (not sent, refused by the
// device, unknown outcome).
type WriteStats struct {
	OK, Refused, Failed int64
}

// WriteStats returns the bus's write counters.
func (a *Adapter) WriteStats() WriteStats {
	w := &a.writes
	return WriteStats{OK: w.ok.Load(), Refused: w.refused.Load(), Failed: w.failed.Load()}
}

// describeWrites lists the device's writable points and the function code
// each command uses, for `gateway check`.
func (a *Adapter) describeWrites(w io.Writer, d *device) {
	var parts []string
	for _, p := range d.pub.Points {
		wp := a.writes.points[p]
		if wp == nil || wp.refusal != "" {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", p.Name, wp.functionText()))
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "    writable: %s\n", strings.Join(parts, ", "))
	}
}

// functionText names the requests a write of the point makes.
func (wp *writePoint) functionText() string {
	var fc string
	switch {
	case wp.table == Coil && wp.multiple:
		fc = "FC15"
	case wp.table == Coil:
		fc = "FC05"
	case wp.regs == 1 && !wp.multiple:
		fc = "FC06"
	default:
		fc = "FC16"
	}
	if wp.bit >= 0 {
		return fmt.Sprintf("FC03 then %s %s %d bit %d", fc, wp.table, wp.addr, wp.bit)
	}
	return fmt.Sprintf("%s %s %d", fc, wp.table, wp.addr)
}
