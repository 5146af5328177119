// Command gateway is the fieldbridge industrial edge gateway: it polls
// fieldbus devices and publishes their values into an embedded MQTT broker.
//
//	gateway run --config FILE     run until SIGINT/SIGTERM; SIGHUP reloads (the default)
//	gateway check --config FILE   validate the config and print the poll plan
//	gateway simulate [--listen]   run the built-in Modbus TCP device simulator
//	gateway probe ...             read a register block every way, or --scan for unit ids
//	gateway read --config FILE    poll the configured points once and print them
//	gateway ports                 list serial ports (USB ids, /dev/serial/by-id names)
//	gateway passwd                print a password's bcrypt hash for broker.users
//	gateway version               print the version
//	gateway help [COMMAND]        list the commands, or explain one
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	_ "github.com/fieldbridge/fieldbridge/adapters/all"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1 // runtime failure
	exitUsage  = 2 // bad command line
	exitConfig = 3 // the config has errors
)

const defaultConfig = "/etc/fieldbridge/gateway.yaml"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line; the only os.Exit is in main. The
// commands are registered in the files that implement them (see command).
func run(args []string, stdout, stderr io.Writer) int {
	name := defaultCommand
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			usage(stdout)
			return exitOK
		case "-version", "--version":
			fmt.Fprintln(stdout, versionString())
			return exitOK
		}
		if !strings.HasPrefix(args[0], "-") {
			name, args = args[0], args[1:]
		}
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "gateway: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	return c.run(args, stdout, stderr)
}

// configFlag adds -config/--config to fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", defaultConfig, "path of the YAML config `file`")
}

func versionString() string {
	v := version
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			v += " (" + rev
			if dirty {
				v += ", modified"
			}
			v += ")"
		}
		v += " " + info.GoVersion
	}
	return "fieldbridge gateway " + v
}
