package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/bridge"
	cmdrouter "github.com/fieldbridge/fieldbridge/internal/commands"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/httpapi"
	"github.com/fieldbridge/fieldbridge/internal/simulator"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

var _ bridge.Source = (*localbroker.Broker)(nil)

// gateway is a running gateway: the parts and the goroutines that own them.
type gateway struct {
	log    *slog.Logger
	level  *slog.LevelVar // the log level, changed by a reload
	cfg    *config.Config // in force; read and replaced by the goroutine running wait
	broker *localbroker.Broker
	sim    *simulator.Simulator
	bridge *bridge.Bridge
	http   *httpapi.Server // nil only if the start failed before it
	// commands routes …/set commands to the buses; a reload updates it.
	commands *cmdrouter.Router
	wg       sync.WaitGroup // the buses' goroutines and the watchdog's

	// running is set once every part has started: until then /readyz
	// says "gateway: starting".
	running atomic.Bool

	mu    sync.Mutex // guards buses and bridge, read by the watchdog and the HTTP side while a reload replaces them
	buses []*bus     // in config order

	// The bridge has its own context: it stops after the broker, so that
	// it queues everything the broker handed it before closing the queue.
	stopBridge context.CancelFunc
	bridgeDone chan struct{}
}

// startGateway builds and starts everything a config names. On error, what
// was started is stopped again. level is the logger's level, which a reload
// sets (nil: a reload leaves the level alone).
func startGateway(ctx context.Context, cfg *config.Config, log *slog.Logger, level *slog.LevelVar) (*gateway, error) {
	if level == nil {
		level = new(slog.LevelVar)
	}
	g := &gateway{log: log, level: level, cfg: cfg}
	if err := g.start(ctx, cfg); err != nil {
		g.stopServices()
		return nil, err
	}
	return g, nil
}

// start starts the parts in the order they depend on each other. The queue
// is opened (and locked) before anything listens, so that a second gateway
// on the same data_dir is refused by name, not by a busy port.
func (g *gateway) start(ctx context.Context, cfg *config.Config) error {
	log := g.log
	built, err := cfg.Build(log)
	if err != nil {
		return err
	}
	if err := prepareDataDir(cfg.Gateway.DataDir); err != nil {
		return err
	}
	if g.broker, err = localbroker.New(cfg.Broker, log); err != nil {
		return err
	}
	if cfg.Bridge != nil {
		if g.bridge, err = bridge.New(*cfg.Bridge, g.broker, log); err != nil {
			return err
		}
	}
	if cfg.Simulator != nil {
		if err := g.startSimulator(*cfg.Simulator); err != nil {
			return err
		}
	}
	if err := g.broker.Start(); err != nil {
		return explainBroker(err)
	}
	if g.bridge != nil {
		g.runBridge(g.bridge)
	}
	if err := g.startCommands(ctx, cfg.Gateway.ID, built); err != nil {
		return err
	}
	// The HTTP side binds before any bus touches a device, so that a busy
	// port fails the start cleanly; it reads the buses as they are
	// started, and is not ready before they all are.
	if err := g.startHTTP(cfg); err != nil {
		return err
	}
	buses := make([]*bus, 0, len(built))
	for i, a := range built {
		buses = append(buses, g.startBus(ctx, cfg, i, a, nil))
	}
	g.mu.Lock()
	g.buses = buses
	g.mu.Unlock()
	g.running.Store(true)
	log.Info("gateway running", "gateway", cfg.Gateway.ID, "adapters", len(built), "points", countPoints(built), "broker", g.broker.Addr())
	return nil
}

func (g *gateway) startSimulator(cfg simulator.Config) error {
	sim, err := simulator.New(cfg, g.log.With("component", "simulator"))
	if err == nil {
		err = sim.Start()
	}
	if err != nil {
		return explainListen(err, "simulator", cfg.Listen, "is another gateway or simulator running?")
	}
	g.sim = sim
	g.log.Info("device simulator listening", "addr", sim.Addr())
	return nil
}

// runBridge runs the bridge until stopServices. It starts before the
// adapters; what they publish before its subscriptions are in place reaches
// it as retained values.
func (g *gateway) runBridge(b *bridge.Bridge) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	g.mu.Lock()
	g.bridge, g.stopBridge, g.bridgeDone = b, cancel, done
	g.mu.Unlock()
	go func() {
		defer close(done)
		if err := b.Run(ctx); err != nil {
			g.log.Error("bridge stopped", "err", err)
		}
	}()
}

// closeBridge stops the bridge, or releases the queue of one never run.
func (g *gateway) closeBridge() {
	switch {
	case g.stopBridge != nil:
		g.stopBridge()
		<-g.bridgeDone
	case g.bridge != nil:
		_ = g.bridge.Close()
	}
	g.mu.Lock()
	g.bridge, g.stopBridge, g.bridgeDone = nil, nil, nil
	g.mu.Unlock()
}

// currentBridge is the running bridge, or nil.
func (g *gateway) currentBridge() *bridge.Bridge {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.bridge
}

// wait runs until ctx ends, reloading the config from path on every signal
// on reload, then shuts down in order: adapters finish their in-flight
// request and stop, the broker closes, the bridge queues and syncs what it
// was handed, says goodbye upstream and closes its queue, and the simulator
// closes.
func (g *gateway) wait(ctx context.Context, reload <-chan os.Signal, path string) {
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-reload:
			g.reload(ctx, path)
		}
	}
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
	g.closeBridge()
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

// healthy is nil while the bridge and every adapter that can tell make
// progress.
func (g *gateway) healthy(now time.Time) error {
	if b := g.currentBridge(); b != nil {
		if err := b.Healthy(now); err != nil {
			return err
		}
	}
	for _, b := range g.currentBuses() {
		if h, ok := b.a.(adapters.HealthChecker); ok {
			if err := h.Healthy(now); err != nil {
				return err
			}
		}
	}
	return nil
}
