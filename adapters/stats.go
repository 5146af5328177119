package adapters

import (
	"sync/atomic"
	"time"
)

// StatusReporter is implemented by adapters that count their traffic. The
// gateway's HTTP side (metrics, status page, readiness) reads it; an adapter
// without it still shows its devices and points, from the samples it emits.
type StatusReporter interface {
	// Status returns a snapshot. It is called from HTTP handlers while the
	// adapter runs, so it must be safe for concurrent use and cheap.
	Status() BusStatus
}

// BusStatus is a snapshot of one adapter (bus): counters since Build.
type BusStatus struct {
	// Name is the adapter's name; Endpoint says what it talks to, e.g.
	// "rtu /dev/ttyUSB0 19200 8E1".
	Name, Endpoint string
	// FirstCycleDone reports that every device on the bus has been polled
	// at least once (or found unreachable with the whole bus).
	FirstCycleDone bool
	// Devices are in the order of Adapter.Devices.
	Devices []DeviceStatus
	// BytesOut and BytesIn count bytes on the wire, framing included.
	BytesOut, BytesIn uint64
	// Durations are the times of the requests, from sending the request to
	// having the reply or giving up.
	Durations Histogram
	// Writes counts the outcomes of commands (Writer), for adapters that
	// take them.
	Writes WriteCounts
}

// WriteCounts are an adapter's command outcomes: OK acknowledged by the
// device; Refused before anything was sent (not writable, wrong type, out
// of range); Failed the others (not sent, refused by the device, unknown
// outcome).
type WriteCounts struct {
	OK, Refused, Failed uint64
}

// DeviceStatus is a snapshot of one device's counters.
type DeviceStatus struct {
	Device *Device
	// Address is the device's address on the bus, e.g. "unit 3".
	Address string
	// Requests counts transactions (retries included) by outcome.
	Requests [NumResults]uint64
}

// Result is the outcome of one request, as the metrics count it.
type Result uint8

// Results.
const (
	// ResultOK: a valid reply with data.
	ResultOK Result = iota
	// ResultTimeout: no reply in time (or a gateway saying its target did
	// not answer).
	ResultTimeout
	// ResultException: the device answered with a protocol exception.
	ResultException
	// ResultTransport: the port or connection itself failed.
	ResultTransport
	// ResultCRC: a reply arrived but was corrupt (checksum, length, ids).
	ResultCRC
	// NumResults is the number of results.
	NumResults
)

var resultNames = [NumResults]string{"ok", "timeout", "exception", "transport", "crc"}

// String is the result's metric label value.
func (r Result) String() string {
	if r < NumResults {
		return resultNames[r]
	}
	return "unknown"
}

// RequestCounters counts requests by Result, lock-free: the bus goroutine
// adds while HTTP handlers read.
type RequestCounters struct{ n [NumResults]atomic.Uint64 }

// Add counts one request.
func (c *RequestCounters) Add(r Result) {
	if r < NumResults {
		c.n[r].Add(1)
	}
}

// Snapshot returns the counts.
func (c *RequestCounters) Snapshot() (out [NumResults]uint64) {
	for i := range c.n {
		out[i] = c.n[i].Load()
	}
	return out
}

// DurationBuckets are the upper bounds of request-duration histograms:
// from a Modbus TCP device on a LAN (about a millisecond) to a slow serial
// line or a timeout (seconds).
var DurationBuckets = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// Histogram is a snapshot of a DurationHistogram. Counts[i] is the number
// of observations in (DurationBuckets[i-1], DurationBuckets[i]]; the last
// element counts those above every bound. Not cumulative.
type Histogram struct {
	Counts [len(DurationBuckets) + 1]uint64
	Sum    time.Duration
	Count  uint64
}

// DurationHistogram counts durations into DurationBuckets without locks or
// allocation, so that a poll loop can afford one observation per request.
type DurationHistogram struct {
	counts [len(DurationBuckets) + 1]atomic.Uint64
	sum    atomic.Int64
}

// Observe counts one duration.
func (h *DurationHistogram) Observe(d time.Duration) {
	i := 0
	for i < len(DurationBuckets) && d > DurationBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot returns the counts. Buckets are read one by one while
// observations go on, so Count is taken as their sum: it always agrees
// with the buckets.
func (h *DurationHistogram) Snapshot() Histogram {
	var out Histogram
	out.Sum = time.Duration(h.sum.Load())
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	return out
}
