package main

import (
	"context"
	"sync/atomic"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/config"
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
	sink      *busSink
	stop      context.CancelFunc
	done      chan struct{}
}

// startBus runs the i-th adapter of cfg until ctx ends or stopBus. Each bus
// has its own publisher (a bus restarted by a reload starts with fresh
// change detection: it publishes every value once, as at start).
func (g *gateway) startBus(ctx context.Context, cfg *config.Config, i int, a adapters.Adapter) *bus {
	e := cfg.Adapters[i]
	points := adapters.Number([]adapters.Adapter{a})
	pub := publisher.New(g.broker, points, g.log.With("component", "publisher", "adapter", e.Name))
	ctx, cancel := context.WithCancel(ctx)
	b := &bus{
		name: e.Name, gatewayID: cfg.Gateway.ID, entry: e.Config, a: a,
		pub: pub, sink: &busSink{Sink: pub}, stop: cancel, done: make(chan struct{}),
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(b.done)
		supervise(ctx, g.log, func(ctx context.Context) error { return a.Run(ctx, b.sink) })
	}()
	return b
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
