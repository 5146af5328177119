package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the expected output of golden tests")

const wantMarker = "# ---- want (exit code, then output) ----"

// TestCheckGolden runs `gateway check` on every config under
// testdata/check. Each file is a config followed by its expected output as
// YAML comments after wantMarker, so the file:line:col in the expectations
// point into the file itself. Run with -update to rewrite them.
func TestCheckGolden(t *testing.T) {
	t.Setenv("FB_TEST_PORT", "1502")
	files, err := filepath.Glob("testdata/check/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	t.Chdir("testdata/check")
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			config, want, _ := strings.Cut(string(data), wantMarker+"\n")
			var out bytes.Buffer
			code := run([]string{"check", "--config", name}, &out, &out)
			got := fmt.Sprintf("exit %d\n%s", code, out.String())
			if *update {
				var b strings.Builder
				b.WriteString(config)
				b.WriteString(wantMarker + "\n")
				for _, line := range strings.Split(strings.TrimRight(got, "\n"), "\n") {
					b.WriteString(strings.TrimRight("# "+line, " ") + "\n")
				}
				if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			var exp strings.Builder
			for _, line := range strings.Split(strings.TrimRight(want, "\n"), "\n") {
				line = strings.TrimPrefix(line, "#")
				exp.WriteString(strings.TrimPrefix(line, " ") + "\n")
			}
			if strings.TrimRight(got, "\n") != strings.TrimRight(exp.String(), "\n") {
				t.Errorf("gateway check %s:\n--- got\n%s\n--- want\n%s", name, got, exp.String())
			}
		})
	}
}
