// Command gateway is the fieldbridge industrial edge gateway: it polls
// fieldbus devices and publishes their values into an embedded MQTT broker.
//
//	gateway run --config FILE     run until SIGINT/SIGTERM (the default)
//	gateway check --config FILE   validate the config and print the poll plan
//	gateway simulate [--listen]   run the built-in Modbus TCP device simulator
//	gateway passwd                print a password's bcrypt hash (broker.users)
//	gateway version               print the version
package main

import (
	"errors"
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

// run dispatches a command line; the only os.Exit is in main.
func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return cmdRun(args, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "simulate":
		return cmdSimulate(args, stderr)
	case "passwd":
		return cmdPasswd(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "gateway: unknown command %q\n\n", cmd)
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: gateway [command] [flags]

commands:
  run       run the gateway until SIGINT/SIGTERM (default)
  check     validate the config and print the poll plan, without touching devices
  simulate  run the built-in Modbus TCP device simulator (the demo's device)
  passwd    print the bcrypt hash of a password, for broker.users
  version   print the version

Run 'gateway <command> -h' for the command's flags.
`)
}

// configFlag adds -config/--config to fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", defaultConfig, "path of the YAML config `file`")
}

// parse parses flags; it reports whether to go on and the exit code if not.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) (bool, int) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, exitOK
		}
		return false, exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gateway %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false, exitUsage
	}
	return true, 0
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
