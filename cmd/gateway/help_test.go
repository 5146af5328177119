package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestHelpGolden compares the help of the gateway and of every command
// with testdata/help/*.txt (rewritten with -update). A new command needs
// its golden file: run the test with -update and read the result.
func TestHelpGolden(t *testing.T) {
	cases := map[string][]string{"gateway": {"--help"}}
	for name := range commands {
		cases[name] = []string{name, "--help"}
	}
	names := make([]string, 0, len(cases))
	for n := range cases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(cases[name], &stdout, &stderr); code != exitOK || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			golden := filepath.Join("testdata", "help", name+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if stdout.String() != string(want) {
				t.Errorf("gateway %s:\n--- got\n%s\n--- want\n%s", strings.Join(cases[name], " "), stdout.String(), want)
			}
		})
	}
}

// TestCommandLine: the ways to ask for help and the version, and the
// mistakes a new user makes.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string // substrings of stdout, stderr
		noOutput bool   // nothing on stdout
	}{
		{args: []string{"-h"}, out: "commands:\n  check"},
		{args: []string{"help"}, out: "commands:\n  check"},
		{args: []string{"help", "check"}, out: "usage: gateway check [--config FILE]"},
		{args: []string{"check", "-h"}, out: "usage: gateway check [--config FILE]"},
		{args: []string{"--version"}, out: "fieldbridge gateway "},
		{args: []string{"version"}, out: "fieldbridge gateway "},
		{args: []string{"nope"}, code: exitUsage, err: `unknown command "nope"`, noOutput: true},
		{args: []string{"help", "nope"}, code: exitUsage, err: `unknown command "nope"`, noOutput: true},
		{args: []string{"run", "--nope"}, code: exitUsage, err: "gateway run: flag provided but not defined: -nope\nRun 'gateway run --help' for its flags.", noOutput: true},
		{args: []string{"check", "configs/demo.yaml"}, code: exitUsage, err: `unexpected argument "configs/demo.yaml" (did you mean --config configs/demo.yaml?)`, noOutput: true},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) || (tc.noOutput && stdout.Len() > 0) {
			t.Errorf("gateway %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), code, stdout.String(), stderr.String())
		}
	}
}
