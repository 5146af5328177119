package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one subcommand. A new command is one register call, in the
// file that implements it:
//
//	func init() {
//		register(command{
//			name:    "probe",
//			summary: "ask a device for its identity, touching nothing else",
//			usage:   "probe --port PORT [flags]",
//			about:   "Probe sends …",
//			run:     cmdProbe,
//		})
//	}
//
// and its run function parses its flags with newFlagSet(name), so that
// `gateway probe --help` prints the usage, the about text and the flags.
type command struct {
	// name is the word on the command line.
	name string
	// summary is the one line of `gateway --help`.
	summary string
	// usage is the synopsis, without "gateway ".
	usage string
	// about is the text of `gateway NAME --help`, above the flags.
	about string
	// run runs the command with its arguments (the name removed) and
	// returns the exit code.
	run func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

// register adds a command; a duplicate name is a programming error.
func register(c command) {
	if _, dup := commands[c.name]; dup || c.name == "" || c.run == nil {
		panic(fmt.Sprintf("gateway: bad or duplicate command %q", c.name))
	}
	commands[c.name] = c
}

func init() {
	register(command{
		name:    "help",
		summary: "list the commands, or explain one: help COMMAND",
		usage:   "help [COMMAND]",
		about:   "Help lists every command with one line each; 'gateway help COMMAND' is 'gateway COMMAND --help'.",
		run:     cmdHelp,
	})
	register(command{
		name:    "version",
		summary: "print the version (also: gateway --version)",
		usage:   "version",
		about:   "Version prints the gateway's version, the commit it was built from and the Go version.",
		run: func(args []string, stdout, stderr io.Writer) int {
			if ok, code := parse(newFlagSet("version"), args, stdout, stderr); !ok {
				return code
			}
			fmt.Fprintln(stdout, versionString())
			return exitOK
		},
	})
}

// defaultCommand runs when the command line starts with a flag.
const defaultCommand = "run"

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("help")
	fs.SetOutput(io.Discard)
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "gateway help: %v\n", err)
		return exitUsage
	}
	args = fs.Args()
	if len(args) == 0 {
		usage(stdout)
		return exitOK
	}
	c, ok := commands[args[0]]
	if !ok || len(args) > 1 {
		fmt.Fprintf(stderr, "gateway help: unknown command %q\n\n", strings.Join(args, " "))
		usage(stderr)
		return exitUsage
	}
	return c.run([]string{"--help"}, stdout, stderr)
}

// usage prints the list of commands, sorted by name.
func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	width := 0
	for name := range commands {
		names = append(names, name)
		width = max(width, len(name))
	}
	sort.Strings(names)
	fmt.Fprint(w, `fieldbridge gateway: polls fieldbus devices (Modbus RTU and TCP), publishes their
values into an MQTT broker embedded in the gateway, and bridges chosen topics
to a cloud broker with store-and-forward.

usage: gateway COMMAND [flags]

commands:
`)
	for _, name := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, name, commands[name].summary)
	}
	fmt.Fprintf(w, `
Without a command the gateway runs: 'gateway --config FILE' is 'gateway %s --config FILE'.
'gateway COMMAND --help' says what a command does and lists its flags.
The config is %s unless --config names another.
Exit codes: 0 ok, 1 runtime failure, 2 bad command line, 3 config errors.
`, defaultCommand, defaultConfig)
}

// newFlagSet returns the flag set of a registered command. Its usage text
// (for --help and -h) is the command's synopsis, its about text and its
// flags.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		c := commands[name]
		w := fs.Output()
		fmt.Fprintf(w, "usage: gateway %s\n\n%s\n", c.usage, wrap(c.about, 78))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(w, "\nflags (-flag and --flag both work):\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses a command's flags. It reports whether to go on, and the exit
// code if not: --help prints the command's help on stdout and exits 0; a
// bad flag or a stray argument is explained on stderr and exits 2.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (bool, int) {
	fs.SetOutput(io.Discard) // the flag package would print the whole usage on any error
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return false, exitOK
	}
	fs.SetOutput(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gateway %s: %v\nRun 'gateway %s --help' for its flags.\n", fs.Name(), err, fs.Name())
		return false, exitUsage
	}
	if fs.NArg() > 0 {
		arg := fs.Arg(0)
		hint := ""
		if fs.Lookup("config") != nil && (strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")) {
			hint = fmt.Sprintf(" (did you mean --config %s?)", arg)
		}
		fmt.Fprintf(stderr, "gateway %s: unexpected argument %q%s\nRun 'gateway %s --help' for its flags.\n", fs.Name(), arg, hint, fs.Name())
		return false, exitUsage
	}
	return true, 0
}

// wrap breaks text into lines of at most width characters, keeping the
// paragraphs (blank lines) and lines that start with spaces (examples).
func wrap(text string, width int) string {
	var out strings.Builder
	for i, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		if i > 0 {
			out.WriteString("\n\n")
		}
		if strings.HasPrefix(para, " ") {
			out.WriteString(para)
			continue
		}
		n := 0
		for j, word := range strings.Fields(para) {
			switch {
			case j == 0:
			case n+1+len(word) > width:
				out.WriteByte('\n')
				n = 0
			default:
				out.WriteByte(' ')
				n++
			}
			out.WriteString(word)
			n += len(word)
		}
	}
	return out.String()
}
