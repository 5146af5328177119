package httpapi

import (
	"sync"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

// Recorder is the Sink between the adapters and the publisher: it keeps
// the latest reading of every point and the availability of every device
// for the status page and the metrics, and passes everything on unchanged.
//
// It costs the poll path one uncontended lock and a few stores per batch,
// and allocates nothing: values and errors are kept as they come and
// rendered only when a page or a scrape asks.
type Recorder struct {
	next    adapters.Sink
	start   time.Time
	devices []*deviceRec
	byDev   map[*adapters.Device]*deviceRec
	devOf   []*deviceRec // indexed by Point.ID
}

var _ adapters.Sink = (*Recorder)(nil)

// Availability states of a device.
const (
	stateUnknown = iota // not polled yet
	stateOnline
	stateOffline
)

// deviceRec is one device's latest state. Its lock is taken by the device's
// bus goroutine for a batch and by readers for a copy.
type deviceRec struct {
	dev    *adapters.Device
	mu     sync.Mutex
	state  int
	since  time.Time // of the state
	points []pointRec
	base   int // Point.ID of points[0]; a device's points are numbered consecutively

	lastErr     error
	lastErrTime time.Time
}

// pointRec is a point's latest sample.
type pointRec struct {
	seen     bool
	value    adapters.Value
	err      error
	at       time.Time // of the latest sample, good or bad
	lastGood time.Time
}

// NewRecorder builds a recorder for the devices of as, whose points must
// be numbered already (adapters.Number), passing samples on to next. start
// is what the age of a point never read good counts from.
func NewRecorder(as []adapters.Adapter, next adapters.Sink, start time.Time) *Recorder {
	r := &Recorder{next: next, start: start, byDev: map[*adapters.Device]*deviceRec{}}
	for _, a := range as {
		for _, d := range a.Devices() {
			dr := &deviceRec{dev: d, points: make([]pointRec, len(d.Points))}
			if len(d.Points) > 0 {
				dr.base = d.Points[0].ID
			}
			for i, p := range d.Points {
				if p.ID != dr.base+i {
					panic("httpapi: the points of a device are not numbered consecutively (call adapters.Number)")
				}
				for p.ID >= len(r.devOf) {
					r.devOf = append(r.devOf, nil)
				}
				r.devOf[p.ID] = dr
			}
			r.devices = append(r.devices, dr)
			r.byDev[d] = dr
		}
	}
	return r
}

// Publish records the samples and hands them on. The samples of one batch
// are one request's, so of one device; a batch that mixes devices (another
// adapter might) is still recorded correctly, device by device.
func (r *Recorder) Publish(samples []adapters.Sample) {
	for i := 0; i < len(samples); {
		dr := r.deviceOf(samples[i].Point)
		j := i + 1
		for j < len(samples) && r.deviceOf(samples[j].Point) == dr {
			j++
		}
		if dr != nil {
			dr.record(samples[i:j])
		}
		i = j
	}
	r.next.Publish(samples)
}

// device is the record of d, nil if d is not one of r's devices (or r is
// nil: a bus without a recorder shows its devices and counters only).
func (r *Recorder) device(d *adapters.Device) *deviceRec {
	if r == nil {
		return nil
	}
	return r.byDev[d]
}

func (r *Recorder) deviceOf(p *adapters.Point) *deviceRec {
	if p == nil || p.ID < 0 || p.ID >= len(r.devOf) {
		return nil
	}
	return r.devOf[p.ID]
}

func (dr *deviceRec) record(samples []adapters.Sample) {
	dr.mu.Lock()
	for i := range samples {
		s := &samples[i]
		k := s.Point.ID - dr.base
		if k < 0 || k >= len(dr.points) || dr.dev.Points[k] != s.Point {
			continue // not a point of this gateway's numbering
		}
		pr := &dr.points[k]
		pr.seen, pr.value, pr.err, pr.at = true, s.Value, s.Err, s.Time
		if s.Err == nil {
			pr.lastGood = s.Time
		} else {
			dr.lastErr, dr.lastErrTime = s.Err, s.Time
		}
	}
	dr.mu.Unlock()
}

// Availability records a device going online or offline and hands it on.
func (r *Recorder) Availability(d *adapters.Device, online bool) {
	if dr := r.byDev[d]; dr != nil {
		dr.mu.Lock()
		dr.state, dr.since = stateOffline, time.Now()
		if online {
			dr.state = stateOnline
		}
		dr.mu.Unlock()
	}
	r.next.Availability(d, online)
}

// deviceSnap is a copy of a device's state taken under its lock.
type deviceSnap struct {
	dev         *adapters.Device
	state       int
	since       time.Time
	points      []pointRec
	lastErr     error
	lastErrTime time.Time
}

// snapshot copies a device's state; withPoints false leaves the points out
// (the metrics need only the aggregates, see aggregate).
func (dr *deviceRec) snapshot(withPoints bool) deviceSnap {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	s := deviceSnap{dev: dr.dev, state: dr.state, since: dr.since, lastErr: dr.lastErr, lastErrTime: dr.lastErrTime}
	if withPoints {
		s.points = append([]pointRec(nil), dr.points...)
	}
	return s
}

// aggregate is what the metrics need of a device's points, computed under
// its lock without copying them.
type aggregate struct {
	bad, total int
	stalest    time.Time // oldest last-good time; start for a point never good
}

func (dr *deviceRec) aggregate(start time.Time) aggregate {
	dr.mu.Lock()
	defer dr.mu.Unlock()
	a := aggregate{total: len(dr.points)}
	for i := range dr.points {
		p := &dr.points[i]
		if p.seen && p.err != nil {
			a.bad++
		}
		good := p.lastGood
		if good.IsZero() {
			good = start
		}
		if i == 0 || good.Before(a.stalest) {
			a.stalest = good
		}
	}
	return a
}

// Inherit takes over what prev recorded of the devices and points that r
// has too, matched by name: the latest value, quality and time of each
// point, each device's availability and last error, and the start that
// ages of points never read good count from. A reload that restarts a bus
// gives it a new recorder; inheriting keeps the page and the metrics
// continuous while the new bus makes its first cycle (a device does not
// drop to "unknown" and device_up to 0 merely because its bus was
// restarted), and a point's age keeps counting from its last good value.
// Call it before r records anything, once prev's bus has stopped.
func (r *Recorder) Inherit(prev *Recorder) {
	if prev == nil {
		return
	}
	r.start = prev.start
	old := make(map[string]*deviceRec, len(prev.devices))
	for _, dr := range prev.devices {
		old[dr.dev.Name] = dr
	}
	for _, dr := range r.devices {
		was := old[dr.dev.Name]
		if was == nil {
			continue
		}
		dr.mu.Lock()
		was.mu.Lock()
		dr.state, dr.since, dr.lastErr, dr.lastErrTime = was.state, was.since, was.lastErr, was.lastErrTime
		byName := make(map[string]int, len(was.points))
		for k, p := range was.dev.Points {
			byName[p.Name] = k
		}
		for k, p := range dr.dev.Points {
			if j, ok := byName[p.Name]; ok {
				dr.points[k] = was.points[j]
			}
		}
		was.mu.Unlock()
		dr.mu.Unlock()
	}
}
