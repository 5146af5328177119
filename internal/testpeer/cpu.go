package testpeer

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ProcessCPU returns the user+system CPU time a process (all its threads)
// has used so far, from /proc/PID/stat, in clock ticks of 10 ms (USER_HZ
// is 100 on Linux).
func ProcessCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: count the fields
	// after its closing one. utime and stime are fields 14 and 15 of the
	// whole line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("testpeer: /proc/%d/stat: %q", pid, b)
	}
	return time.Duration(utime+stime) * time.Second / 100
}

// SelfCPU returns the user+system CPU time this process has used so far,
// to the microsecond (getrusage).
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
