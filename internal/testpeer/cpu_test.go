package testpeer

import (
	"os"
	"testing"
	"time"
)

// TestProcessCPU: /proc's figure for this process follows getrusage's, to
// within its 10 ms ticks, after some CPU is spent.
func TestProcessCPU(t *testing.T) {
	p0, s0 := ProcessCPU(t, os.Getpid()), SelfCPU()
	for x := 0; SelfCPU()-s0 < 200*time.Millisecond; x++ {
		_ = x * x
	}
	p, s := ProcessCPU(t, os.Getpid())-p0, SelfCPU()-s0
	if d := p - s; d < -30*time.Millisecond || d > 30*time.Millisecond {
		t.Errorf("/proc says %v, getrusage %v", p, s)
	}
}
