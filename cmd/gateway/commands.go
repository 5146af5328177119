package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/simulator"
)

func init() {
	register(command{
		name:    "run",
		summary: "run until SIGINT/SIGTERM; SIGHUP reloads the config (the default command)",
		usage:   "run [--config FILE] [--pprof ADDR]",
		about: `Run polls the devices of the config, publishes their values into the embedded
MQTT broker and runs the cloud bridge, until SIGINT or SIGTERM; then it stops
cleanly (in-flight requests finish, the devices go offline, the queue is
synced) and exits 0. It also serves Prometheus metrics (/metrics), /healthz,
/readyz and a status page (/) on 127.0.0.1:8980, unless the http section says
otherwise.

SIGHUP (systemctl reload fieldbridge) re-reads the config. A config with
errors is rejected and logged, and the running one stays; otherwise only what
changed restarts, and no queued message is lost.

A startup failure is one log line and exit code 1; a config with errors
prints every problem and exits 3.`,
		run: cmdRun,
	})
	register(command{
		name:    "check",
		summary: "validate the config and print the poll plan, touching no device",
		usage:   "check [--config FILE]",
		about: `Check loads and validates the config exactly as run does, and prints what the
gateway will do: the poll plan of every bus with its cost on the wire, and the
bridge. It reports every problem at once, each with file:line:col and its key
path, and exits 3 if there are errors, 0 otherwise (warnings alone do not fail
it). It opens no port and creates nothing.`,
		run: cmdCheck,
	})
	register(command{
		name:    "simulate",
		summary: "run the built-in Modbus TCP device simulator (the demo's device)",
		usage:   "simulate [--listen ADDR]",
		about: `Simulate serves the demo's Modbus TCP devices until SIGINT or SIGTERM: unit 1 is
a power meter, unit 2 a pump drive; every data type appears in every byte
order (register map: internal/simulator/MAP.md).`,
		run: cmdSimulate,
	})
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run")
	path := configFlag(fs)
	pprofAddr := fs.String("pprof", "", "serve Go's pprof profiles on this `address` (e.g. 127.0.0.1:6060) for diagnosis")
	if ok, code := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	// SIGHUP is caught from the start: before the gateway runs, a reload
	// has nothing to do, and the default action would kill the process.
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	cfg, err := config.Load(*path, config.Options{})
	if err != nil {
		printProblems(stderr, err)
		return exitConfig
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg.Log, stderr, level)
	if *pprofAddr != "" {
		stopProfiling, err := servePprof(*pprofAddr, log)
		if err != nil {
			log.Error("cannot start: pprof: " + err.Error())
			return exitFail
		}
		defer stopProfiling()
	}
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w.String())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := startGateway(ctx, cfg, log, level)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			printProblems(stderr, err)
			return exitConfig
		}
		log.Error("cannot start: " + err.Error())
		return exitFail
	}
	drain(reload) // a SIGHUP during the start: the config just loaded is the newest
	g.notifySystemd(ctx)
	g.wait(ctx, reload, *path)
	return exitOK
}

func drain(c <-chan os.Signal) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check")
	path := configFlag(fs)
	if ok, code := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	cfg, err := config.Load(*path, config.Options{})
	if err == nil {
		var built []adapters.Adapter
		if built, err = cfg.Build(slog.New(slog.DiscardHandler)); err == nil {
			printPlan(stdout, cfg, built)
		}
	}
	if cfg != nil {
		for _, w := range cfg.Warnings {
			printLines(stderr, prioWarning, w.String())
		}
	}
	if err != nil {
		printProblems(stderr, err)
		return exitConfig
	}
	return exitOK
}

func printPlan(w io.Writer, cfg *config.Config, built []adapters.Adapter) {
	devices, points := 0, 0
	for _, a := range built {
		for _, d := range a.Devices() {
			devices++
			points += len(d.Points)
		}
	}
	fmt.Fprintf(w, "%s: ok — gateway %s, %d adapter(s), %d device(s), %d point(s); broker on %s\n",
		cfg.Path, cfg.Gateway.ID, len(built), devices, points, strings.Join(cfg.Broker.Addresses(), ", "))
	cfg.Broker.Describe(w)
	if cfg.Simulator != nil {
		fmt.Fprintf(w, "simulator on %s\n", cfg.Simulator.Listen)
	}
	if cfg.Bridge != nil {
		cfg.Bridge.Describe(w)
	}
	cfg.HTTP.Describe(w, len(cfg.Broker.Users) > 0)
	for _, a := range built {
		fmt.Fprintln(w)
		if d, ok := a.(adapters.Describer); ok {
			d.Describe(w)
		}
	}
}

// printProblems prints every problem of a config, one per line (with the
// journal's error priority under systemd), then their count.
func printProblems(w io.Writer, err error) {
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			printLines(w, prioErr, p.String())
		}
		printLines(w, prioErr, fmt.Sprintf("%d error(s)", len(ps)))
		return
	}
	printLines(w, prioErr, err.Error())
}

func cmdSimulate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("simulate")
	listen := fs.String("listen", simulator.DefaultListen, "Modbus TCP `address` to serve on")
	if ok, code := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	log := newLogger(config.Log{Level: "info", Format: "text"}, stderr, new(slog.LevelVar))
	sim, err := simulator.New(simulator.Config{Listen: *listen}, log)
	if err == nil {
		err = sim.Start()
	}
	if err != nil {
		log.Error("cannot start: " + explainListen(err, "simulator", *listen, "is another simulator or gateway running?").Error())
		return exitFail
	}
	log.Info("device simulator listening (unit 1: power meter, unit 2: pump drive); Ctrl-C stops", "addr", sim.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = sim.Close()
	return exitOK
}
