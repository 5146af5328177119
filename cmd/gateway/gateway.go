package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/httpapi"
	"github.com/fieldbridge/fieldbridge/internal/publisher"
	"github.com/fieldbridge/fieldbridge/internal/simulator"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

var _ bridge.Source = (*localbroker.Broker)(nil)

// gateway is a running gateway: the parts and the goroutines that own them.
type gateway struct {
	log      *slog.Logger
	broker   *localbroker.Broker
	sim      *simulator.Simulator
	adapters []adapters.Adapter
	pub      *publisher.Publisher
	bridge   *bridge.Bridge
	http     *httpapi.Server
	wg       sync.WaitGroup

	// The bridge has its own context: it stops after the broker, so that
	// it queues everything the broker handed it before closing the queue.
	stopBridge context.CancelFunc
	bridgeDone chan struct{}
}

// startGateway builds and starts everything a config names. On error, what
// was started is stopped again.
func startGateway(ctx context.Context, cfg *config.Config, log *slog.Logger) (g *gateway, err error) {
	g = &gateway{log: log}
	defer func() {
		if err != nil {
			g.stopServices()
		}
	}()
	g.adapters, err = cfg.Build(log)
	if err != nil {
		return nil, err
	}
	if cfg.Simulator != nil {
		g.sim, err = simulator.New(*cfg.Simulator, log.With("component", "simulator"))
		if err != nil {
			return nil, err
		}
		if err = g.sim.Start(); err != nil {
			return nil, err
		}
		log.Info("device simulator listening", "addr", g.sim.Addr())
	}
	g.broker, err = localbroker.New(cfg.Broker, log)
	if err != nil {
		return nil, err
	}
	if err = g.broker.Start(); err != nil {
		return nil, err
	}
	if cfg.Bridge != nil {
		if err = g.startBridge(*cfg.Bridge, log); err != nil {
			return nil, err
		}
	}
	points := adapters.Number(g.adapters)
	g.pub = publisher.New(g.broker, points, log.With("component", "publisher"))
	sink, err := g.startHTTP(cfg, log)
	if err != nil {
		return nil, err
	}
	for _, a := range g.adapters {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			supervise(ctx, log, func(ctx context.Context) error { return a.Run(ctx, sink) })
		}()
	}
	log.Info("gateway running", "gateway", cfg.Gateway.ID, "adapters", len(g.adapters), "points", len(points), "broker", g.broker.Addr())
	return g, nil
}

// startBridge opens the bridge's queue and runs the bridge until
// stopServices. It starts before the adapters; what they publish before its
// subscriptions are in place reaches it as retained values.
func (g *gateway) startBridge(cfg bridge.Config, log *slog.Logger) error {
	b, err := bridge.New(cfg, g.broker, log)
	if err != nil {
		return err
	}
	g.bridge = b
	ctx, cancel := context.WithCancel(context.Background())
	g.stopBridge, g.bridgeDone = cancel, make(chan struct{})
	go func() {
		defer close(g.bridgeDone)
		if err := b.Run(ctx); err != nil {
			log.Error("bridge stopped", "err", err)
		}
	}()
	return nil
}

// wait blocks until ctx ends, then shuts down in order: adapters finish
// their in-flight request and stop, the broker closes, the bridge queues
// and syncs what it was handed, says goodbye upstream and closes its queue,
// and the simulator closes.
func (g *gateway) wait(ctx context.Context) {
	<-ctx.Done()
	g.log.Info("shutting down")
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	g.wg.Wait()
	g.stopServices()
	g.log.Info("stopped")
}

func (g *gateway) stopServices() {
	if g.http != nil {
		_ = g.http.Close()
	}
	if g.broker != nil {
		_ = g.broker.Close()
	}
	if g.stopBridge != nil {
		g.stopBridge()
		<-g.bridgeDone
	}
	if g.sim != nil {
		_ = g.sim.Close()
	}
}

// supervise runs fn until ctx ends. A panic or an unexpected return is logged
// and fn is started again after a backoff: one broken adapter must not take
// the gateway, and every other bus, down with it.
func supervise(ctx context.Context, log *slog.Logger, fn func(context.Context) error) {
	backoff := time.Second
	for {
		err := runRecovered(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("returned before shutdown")
		}
		log.Error("adapter stopped; restarting", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, time.Minute)
	}
}

func runRecovered(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return fn(ctx)
}

// notifySystemd tells systemd the gateway is up and feeds its watchdog while
// ctx lives and every adapter makes progress: a stuck bus stops the feeding,
// and systemd restarts the gateway. Without systemd (NOTIFY_SOCKET unset) it
// does nothing.
func (g *gateway) notifySystemd(ctx context.Context) {
	if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil || !ok {
		return
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	g.log.Debug("systemd watchdog enabled", "interval", interval)
	t := time.NewTicker(interval / 2)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer t.Stop()
		stuck := false
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				if err := g.healthy(now); err != nil {
					if !stuck {
						g.log.Error("not feeding the systemd watchdog: the gateway will be restarted", "err", err)
						stuck = true
					}
					continue
				}
				stuck = false
				_, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog)
			}
		}
	}()
}

// healthy is nil while every adapter that can tell makes progress.
func (g *gateway) healthy(now time.Time) error {
	for _, a := range g.adapters {
		if h, ok := a.(adapters.HealthChecker); ok {
			if err := h.Healthy(now); err != nil {
				return err
			}
		}
	}
	return nil
}
