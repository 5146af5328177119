package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/fieldbridge/fieldbridge/adapters"
	"github.com/fieldbridge/fieldbridge/internal/config"
)

func init() {
	register(command{
		name:    "read",
		summary: "poll the configured points once and print them (no broker, no bridge)",
		usage:   "read [--config FILE] [--device NAME] [--point NAME] [--json]",
		about: `Read polls the points of the config once, with the planner and decoders of a
running gateway, and prints what the gateway would publish: per point its
value, unit, quality, the raw registers and the request that read them. It
starts neither the broker nor the bridge. A serial line has room for one
master: stop a gateway that polls the same line first. --device and --point
pick points by name.

Exit codes: 0 every point read good, 1 a point read bad, 2 no point matches,
3 the config has errors.`,
		run: cmdRead,
	})
}

// cmdRead polls the configured points once with the real planner and
// decoders and prints what a running gateway would publish, without the
// broker or the bridge. Exit 0 when every point read good, 1 otherwise.
func cmdRead(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("read")
	path := configFlag(fs)
	device := fs.String("device", "", "read only this device")
	point := fs.String("point", "", "read only points of this name")
	asJSON := fs.Bool("json", false, "print JSON")
	if ok, code := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	cfg, err := config.Load(*path, config.Options{})
	if err != nil {
		printProblems(stderr, err)
		return exitConfig
	}
	// Warnings of the transports go to stderr; the table is what matters.
	log := newLogger(config.Log{Level: "error"}, stderr, new(slog.LevelVar))
	built, err := cfg.Build(log)
	if err != nil {
		printProblems(stderr, err)
		return exitConfig
	}
	adapters.Number(built)
	want := func(p *adapters.Point) bool {
		return (*device == "" || p.Device == *device) && (*point == "" || p.Name == *point)
	}
	if n := countWanted(built, want); n == 0 {
		fmt.Fprintf(stderr, "gateway read: no point matches --device %q --point %q in %s\n", *device, *point, cfg.Path)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var all []adapters.Reading
	failed := false
	for _, a := range built {
		if countWanted([]adapters.Adapter{a}, want) == 0 {
			continue
		}
		r, ok := a.(adapters.OnceReader)
		if !ok {
			fmt.Fprintf(stderr, "gateway read: adapter %s cannot read once\n", a.Devices()[0].Adapter)
			failed = true
			continue
		}
		rs, err := r.ReadOnce(ctx, want)
		if err != nil {
			fmt.Fprintln(stderr, "gateway read:", err)
			failed = true
		}
		all = append(all, rs...)
	}
	for _, r := range all {
		failed = failed || r.Err != nil
	}
	if *asJSON {
		writeReadingsJSON(stdout, all)
	} else {
		writeReadings(stdout, all)
	}
	if failed {
		return exitFail
	}
	return exitOK
}

func countWanted(as []adapters.Adapter, want func(*adapters.Point) bool) int {
	n := 0
	for _, a := range as {
		for _, d := range a.Devices() {
			for _, p := range d.Points {
				if want(p) {
					n++
				}
			}
		}
	}
	return n
}

// writeReadings prints the table: a bad point shows its error in place of
// the value.
func writeReadings(w io.Writer, rs []adapters.Reading) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "device\tpoint\tvalue\tunit\tquality\traw\tsource")
	for _, r := range rs {
		// Values as published (strings quoted, so that an empty one shows).
		value, quality := r.Value.String(), "good"
		if r.Err != nil {
			value, quality = r.Err.Error(), "bad"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Point.Device, r.Point.Name, value, orDash(r.Point.Unit), quality, orDash(r.Raw), r.Source)
	}
	_ = tw.Flush()
}

func writeReadingsJSON(w io.Writer, rs []adapters.Reading) {
	var b strings.Builder
	b.WriteString("[")
	for i, r := range rs {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  {\"device\": ")
		b.Write(adapters.AppendJSONString(nil, r.Point.Device))
		b.WriteString(", \"point\": ")
		b.Write(adapters.AppendJSONString(nil, r.Point.Name))
		if r.Err == nil {
			b.WriteString(", \"value\": ")
			b.Write(r.Value.AppendJSON(nil))
			b.WriteString(", \"quality\": \"good\"")
		} else {
			b.WriteString(", \"value\": null, \"quality\": \"bad\", \"error\": ")
			b.Write(adapters.AppendJSONString(nil, r.Err.Error()))
		}
		if r.Point.Unit != "" {
			b.WriteString(", \"unit\": ")
			b.Write(adapters.AppendJSONString(nil, r.Point.Unit))
		}
		b.WriteString(", \"raw\": ")
		b.Write(adapters.AppendJSONString(nil, r.Raw))
		b.WriteString(", \"source\": ")
		b.Write(adapters.AppendJSONString(nil, r.Source))
		b.WriteString("}")
	}
	b.WriteString("\n]\n")
	_, _ = io.WriteString(w, b.String())
}
