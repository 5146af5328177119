package powercut

import (
	"os"
	"strconv"
	"testing"
)

// RunsEnv sets how many cuts each power-cut test makes per mode; the
// defaults keep CI short (FIELDBRIDGE_POWERCUT_RUNS=200 for a long run).
const RunsEnv = "FIELDBRIDGE_POWERCUT_RUNS"

// Runs returns the number of cuts per mode: RunsEnv, or def when unset.
func Runs(tb testing.TB, def int) int {
	tb.Helper()
	s := os.Getenv(RunsEnv)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive number", RunsEnv, s)
	}
	return n
}
