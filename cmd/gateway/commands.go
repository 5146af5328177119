package main

import (
	"context"
	"errors"
	"flag"
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

func cmdRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := configFlag(fs)
	pprofAddr := fs.String("pprof", "", "serve Go's pprof profiles on this `address` (e.g. 127.0.0.1:6060) for diagnosis")
	if ok, code := parse(fs, args, stderr); !ok {
		return code
	}
	cfg, err := config.Load(*path, config.Options{})
	if err != nil {
		printProblems(stderr, err)
		return exitConfig
	}
	log := newLogger(cfg.Log, stderr)
	if *pprofAddr != "" {
		stopProfiling, err := servePprof(*pprofAddr, log)
		if err != nil {
			log.Error("cannot serve pprof", "err", err)
			return exitFail
		}
		defer stopProfiling()
	}
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w.String())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := startGateway(ctx, cfg, log)
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			printProblems(stderr, err)
			return exitConfig
		}
		log.Error("cannot start", "err", err)
		return exitFail
	}
	g.notifySystemd(ctx)
	g.wait(ctx)
	return exitOK
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := configFlag(fs)
	if ok, code := parse(fs, args, stderr); !ok {
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
			fmt.Fprintln(stderr, w.String())
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
	for _, a := range built {
		fmt.Fprintln(w)
		if d, ok := a.(adapters.Describer); ok {
			d.Describe(w)
		}
	}
}

func printProblems(w io.Writer, err error) {
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(w, p.String())
		}
		fmt.Fprintf(w, "%d error(s)\n", len(ps))
		return
	}
	fmt.Fprintln(w, err)
}

func cmdSimulate(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	listen := fs.String("listen", simulator.DefaultListen, "Modbus TCP `address` to serve on")
	if ok, code := parse(fs, args, stderr); !ok {
		return code
	}
	log := newLogger(config.Log{Level: "info", Format: "text"}, stderr)
	sim, err := simulator.New(simulator.Config{Listen: *listen}, log)
	if err == nil {
		err = sim.Start()
	}
	if err != nil {
		log.Error("cannot start the simulator", "err", err)
		return exitFail
	}
	log.Info("device simulator listening (unit 1: power meter, unit 2: pump drive); Ctrl-C stops", "addr", sim.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = sim.Close()
	return exitOK
}

// newLogger builds the gateway's one logger. It writes to stderr: under
// systemd that is the journal, which adds its own timestamps.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(c.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
