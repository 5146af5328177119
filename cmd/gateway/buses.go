package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/httpapi"
	"github.com/fieldbridge/fieldbridge/internal/publisher"
)

// bus is one running adapter (a bus, in Modbus terms), with what a reload
// needs to decide whether it changed and to stop it alone.
type bus struct {
	name      string
	gatewayID string          // topics depend on it
	entry     adapters.Config // the checked config it was built from
	a         adapters.Adapter
	pub       *publisher.Publisher
	rec       *httpapi.Recorder // in front of pub: what the status page and the metrics read
	sink      *busSink
	stop      context.CancelFunc
	done      chan struct{}

	// cycledBefore: this bus replaced one that had completed a poll cycle
	// (see httpapi.Bus.CycledBefore).
	cycledBefore bool
}

// startBus runs the i-th adapter of cfg until ctx ends or stopBus. Each bus
// has its own publisher (a bus restarted by a reload starts with fresh
// change detection: it publishes every value once, as at start) and its
// own recorder for the HTTP side, which takes over what prev, the stopped
// bus of the same name a reload replaces (nil if none), had recorded.
func (g *gateway) startBus(ctx context.Context, cfg *config.Config, i int, a adapters.Adapter, prev *bus) *bus {
	e := cfg.Adapters[i]
	built := []adapters.Adapter{a}
	points := adapters.Number(built)
	pub := publisher.New(g.broker, points, g.log.With("component", "publisher", "adapter", e.Name))
	// The recorder is in the chain even with the HTTP side off: it costs
	// the poll path no allocation, and a reload may turn the side on.
	rec := httpapi.NewRecorder(built, pub, time.Now())
	ctx, cancel := context.WithCancel(ctx)
	b := &bus{
		name: e.Name, gatewayID: cfg.Gateway.ID, entry: e.Config, a: a,
		pub: pub, rec: rec, sink: &busSink{Sink: rec}, stop: cancel, done: make(chan struct{}),
	}
	if prev != nil {
		rec.Inherit(prev.rec)
		b.cycledBefore = prev.cycledBefore || prev.firstCycleDone()
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(b.done)
		supervise(ctx, g.log, func(ctx context.Context) error { return a.Run(ctx, b.sink) })
	}()
	return b
}

// firstCycleDone reports whether the bus has polled every device once.
func (b *bus) firstCycleDone() bool {
	r, ok := b.a.(adapters.StatusReporter)
	return ok && r.Status().FirstCycleDone
}

// stopBus stops a bus and waits until its in-flight request has finished.
// Its devices are reported offline as it stops, except those whose
// availability topic is in still: they live on in the bus that replaces it,
// which reports them itself.
func (b *bus) stopAndWait(still map[string]bool) {
	b.sink.still.Store(&still)
	b.stop()
	<-b.done
}

// busSink is the sink of one bus.
type busSink struct {
	adapters.Sink
	still atomic.Pointer[map[string]bool] // set when a reload stops the bus
}

func (s *busSink) Availability(d *adapters.Device, online bool) {
	if !online {
		if still := s.still.Load(); still != nil && (*still)[d.AvailabilityTopic] {
			return
		}
	}
	s.Sink.Availability(d, online)
}

// countPoints is the number of points of the adapters.
func countPoints(as []adapters.Adapter) int {
	n := 0
	for _, a := range as {
		for _, d := range a.Devices() {
			n += len(d.Points)
		}
	}
	return n
}

// currentBuses is a snapshot of the running buses.
func (g *gateway) currentBuses() []*bus {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buses
}
