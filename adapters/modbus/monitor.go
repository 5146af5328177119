package modbus

import (
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
)

var _ adapters.StatusReporter = (*Adapter)(nil)

// deviceCounters are what the metrics endpoint reads of one device while
// its bus goroutine updates them: atomics only, so the poll path neither
// locks nor allocates for them.
type deviceCounters struct {
	requests adapters.RequestCounters
	polled   atomic.Bool // polled at least once, or settled by a bus outage
}

// result maps the scheduler's failure kinds onto the metric's results.
// A Modbus TCP gateway's "no path" or "target did not answer" exceptions
// (10, 11) count as timeouts, as they do for the device's state: nothing
// answered from the device itself.
func result(k failKind) (adapters.Result, bool) {
	switch k {
	case failNone:
		return adapters.ResultOK, true
	case failNoReply:
		return adapters.ResultTimeout, true
	case failException:
		return adapters.ResultException, true
	case failLink:
		return adapters.ResultTransport, true
	case failFrame:
		return adapters.ResultCRC, true
	}
	return 0, false // closed at shutdown: not an outcome
}

// noteRequest counts one transaction of d that took took.
func (b *bus) noteRequest(d *device, k failKind, took time.Duration) {
	r, ok := result(k)
	if !ok {
		return
	}
	d.counters.requests.Add(r)
	b.a.stats.durations.Observe(took)
}

// notePolled records that d had a poll; a bus outage settles every device
// of the bus at once (they are all reported offline).
func (b *bus) notePolled(d *device) {
	d.counters.polled.Store(true)
	if b.linkDown {
		for _, o := range b.devices {
			o.counters.polled.Store(true)
		}
	}
}

// Status reports the bus's counters for metrics and the status page.
func (a *Adapter) Status() adapters.BusStatus {
	st := adapters.BusStatus{
		Name: a.cfg.Name, Endpoint: a.endpoint(), FirstCycleDone: true,
		Devices:   make([]adapters.DeviceStatus, len(a.devices)),
		Durations: a.stats.durations.Snapshot(),
	}
	ws := a.WriteStats()
	st.Writes = adapters.WriteCounts{OK: uint64(ws.OK), Refused: uint64(ws.Refused), Failed: uint64(ws.Failed)}
	for i, d := range a.devices {
		st.Devices[i] = adapters.DeviceStatus{Device: d.pub, Address: d.unitText(), Requests: d.counters.requests.Snapshot()}
		if !d.counters.polled.Load() {
			st.FirstCycleDone = false
		}
	}
	if l := a.stats.link.Load(); l != nil {
		ls := l.Stats()
		st.BytesOut, st.BytesIn = ls.BytesWritten, ls.BytesRead
	}
	return st
}
