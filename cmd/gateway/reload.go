package main

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/localbroker"
)

// Reloading (SIGHUP, `systemctl reload fieldbridge`). The new config is
// loaded and checked exactly as `gateway check` does; with any error it is
// rejected, every problem is logged, and the running config stays. Otherwise
// only what changed restarts:
//
//   - a bus whose entry changed (settings, devices, points) is stopped and
//     started again; a new one is started, a removed one stopped, and the
//     devices that are gone get "offline". Buses that did not change keep
//     polling, untouched.
//   - the bridge is reconfigured in place (bridge.Reconfigure): its queue
//     stays open and keeps taking messages, so nothing is lost.
//   - the broker is reconfigured in place (localbroker.Change, broker.go):
//     listeners added and removed, users, ACLs and anonymous access applied
//     to new connections and to the connected clients' next messages; the
//     in-process subscriptions (publisher, bridge) and the clients of
//     unchanged listeners are not touched. A listener that cannot open its
//     address rejects the whole reload, as a config error would.
//   - the simulator restarts if its settings changed; the log level changes.
//   - the HTTP side (status page, metrics, health) moves its listener in
//     place if the http section changed (see applyHTTP); it reads the buses
//     and the bridge as they are after the reload, a restarted bus's
//     recorder takes over what its predecessor had shown, and readiness,
//     once earned, stays.
//
// The log format, the bridge's buffer and some broker limits take effect
// only at the next start: a reload that changes them says so.

// reload re-reads the config at path and applies it. It runs on the
// goroutine of wait, so reloads never overlap.
func (g *gateway) reload(ctx context.Context, path string) {
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReloading)
	defer func() { _, _ = daemon.SdNotify(false, daemon.SdNotifyReady) }()
	g.log.Info("reloading the config", "file", path)
	next, err := config.Load(path, config.Options{})
	var built []adapters.Adapter
	if err == nil {
		built, err = next.Build(g.log)
	}
	if err != nil {
		g.logProblems(err)
		g.log.Error("config rejected: the gateway keeps running with the config it had", "file", path)
		return
	}
	broker, err := g.prepareBroker(next)
	if err != nil {
		g.log.Error("config: " + err.Error())
		g.log.Error("config rejected: the gateway keeps running with the config it had", "file", path)
		return
	}
	for _, w := range next.Warnings {
		g.log.Warn("config: " + w.String())
	}
	g.apply(ctx, next, built, broker)
}

// logProblems logs each problem of a rejected config as `gateway check`
// prints it.
func (g *gateway) logProblems(err error) {
	var ps config.Problems
	if !errors.As(err, &ps) {
		g.log.Error("config: " + err.Error())
		return
	}
	for _, p := range ps {
		g.log.Error("config: " + p.String())
	}
}

// apply switches from g.cfg to next, whose adapters are built and whose
// broker change is prepared.
func (g *gateway) apply(ctx context.Context, next *config.Config, built []adapters.Adapter, broker *localbroker.Change) {
	old := g.cfg
	var later []string // changes that take effect at the next start

	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(next.Log.Level))); err == nil && level != g.level.Level() {
		g.level.Set(level)
	}
	if !strings.EqualFold(old.Log.Format, next.Log.Format) {
		later = append(later, "log.format")
	}
	later = append(later, broker.Commit()...)
	if old.Gateway.DataDir != next.Gateway.DataDir {
		later = append(later, "gateway.data_dir")
	}

	if !reflect.DeepEqual(old.Simulator, next.Simulator) {
		if g.sim != nil {
			_ = g.sim.Close()
			g.sim = nil
		}
		if next.Simulator != nil {
			if err := g.startSimulator(*next.Simulator); err != nil {
				g.log.Error("reload: the simulator cannot start", "err", err)
			}
		}
	}

	later = append(later, g.applyBridge(old, next)...)
	g.applyHTTP(old, next)
	stopped, started, kept := g.applyBuses(ctx, next, built)
	g.cfg = next
	g.log.Info("config reloaded", "buses_kept", kept, "buses_restarted_or_added", started, "buses_stopped", stopped)
	if len(later) > 0 {
		g.log.Warn("these settings changed and take effect only after a restart (systemctl restart fieldbridge)", "settings", strings.Join(later, ", "))
	}
}

// applyBridge reconfigures, starts or stops the bridge. It returns the
// settings that need a restart.
func (g *gateway) applyBridge(old, next *config.Config) []string {
	switch {
	case next.Bridge == nil && g.bridge == nil:
		return nil
	case next.Bridge == nil:
		g.log.Info("the bridge was removed from the config: stopping it (queued messages stay on disk)")
		g.closeBridge()
		return nil
	case g.bridge == nil:
		b, err := bridge.New(*next.Bridge, g.broker, g.log)
		if err != nil {
			g.log.Error("reload: the bridge cannot start", "err", err)
			return nil
		}
		g.runBridge(b)
		return nil
	}
	if old.Bridge != nil && reflect.DeepEqual(*old.Bridge, *next.Bridge) {
		return nil
	}
	notApplied, err := g.bridge.Reconfigure(*next.Bridge)
	if err != nil {
		g.log.Error("reload: the bridge keeps its settings", "err", err)
		return nil
	}
	for i := range notApplied {
		notApplied[i] = "bridge." + notApplied[i]
	}
	return notApplied
}

// applyBuses stops the buses that changed or went away, then starts the new
// and changed ones; the others keep running. Stopping first frees what a new
// bus may need (a serial port that moved to another entry).
func (g *gateway) applyBuses(ctx context.Context, next *config.Config, built []adapters.Adapter) (stopped, started, kept int) {
	current := g.currentBuses()

	still := map[string]bool{} // availability topics of every device in next
	for _, a := range built {
		for _, d := range a.Devices() {
			still[d.AvailabilityTopic] = true
		}
	}
	byName := map[string]*bus{}
	for _, b := range current {
		byName[b.name] = b
	}
	keep := map[string]*bus{}
	for i := range next.Adapters {
		e := &next.Adapters[i]
		if b, ok := byName[e.Name]; ok && b.gatewayID == next.Gateway.ID && reflect.DeepEqual(b.entry, e.Config) {
			keep[e.Name] = b
		}
	}
	var wg sync.WaitGroup
	for _, b := range current {
		if keep[b.name] == b {
			continue
		}
		stopped++
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.stopAndWait(still)
		}()
	}
	wg.Wait()

	buses := make([]*bus, 0, len(built))
	for i, a := range built {
		if b, ok := keep[next.Adapters[i].Name]; ok {
			buses = append(buses, b)
			kept++
			continue
		}
		buses = append(buses, g.startBus(ctx, next, i, a, byName[next.Adapters[i].Name]))
		started++
	}
	g.mu.Lock()
	g.buses = buses
	g.mu.Unlock()
	g.updateCommands(next.Gateway.ID, buses)
	if stopped > 0 || started > 0 {
		g.log.Info("buses reloaded", "restarted_or_added", names(buses, keep, false), "kept", names(buses, keep, true))
	}
	return stopped, started, kept
}

func names(buses []*bus, keep map[string]*bus, kept bool) string {
	var out []string
	for _, b := range buses {
		if (keep[b.name] == b) == kept {
			out = append(out, b.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
