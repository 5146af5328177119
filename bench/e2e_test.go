package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// buildGateway builds the gateway binary into dir.
func buildGateway(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "gateway")
	out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "../cmd/gateway").CombinedOutput()
	if err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// procStat returns a process's CPU time (user+system) and peak RSS.
func procStat(tb testing.TB, pid int) (cpu time.Duration, peakRSS int64) {
	cpu = testpeer.ProcessCPU(tb, pid)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			peakRSS = kb << 10
		}
	}
	return cpu, peakRSS
}

// gatewayProcess runs the gateway binary on a config until the test ends.
func gatewayProcess(tb testing.TB, bin, config string, env ...string) *exec.Cmd {
	tb.Helper()
	dir := tb.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(dir, "gateway.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		if tb.Failed() {
			log, _ := os.ReadFile(logf.Name())
			tb.Logf("gateway log:\n%s", log)
		}
	})
	return cmd
}

func waitListening(tb testing.TB, addr string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s never accepted a connection", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingSub runs mosquitto_sub on filter and counts the messages it prints.
func countingSub(tb testing.TB, addr, filter string) *atomic.Int64 {
	tb.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("mosquitto_sub", "-h", host, "-p", port, "-t", filter, "-q", "0", "-F", "%t")
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Skipf("mosquitto_sub: %v", err)
	}
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReaderSize(out, 1<<16)
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				n.Add(1)
			}
			if err != nil && err != bufio.ErrBufferFull {
				return
			}
		}
	}()
	tb.Cleanup(func() { _ = cmd.Process.Kill(); <-done; _ = cmd.Wait() })
	return &n
}

// BenchmarkEndToEnd polls Debian's pymodbus over Modbus TCP with a separate
// gateway process: 8 devices × 500 holding registers every 100 ms, publish
// every_poll, one mosquitto_sub on everything. It reports the gateway's CPU
// per point, the rate the subscriber received and the gateway's peak RSS.
// FB_BENCH_DEVICES, FB_BENCH_REGISTERS and FB_BENCH_SECONDS change the load.
func BenchmarkEndToEnd(b *testing.B) {
	devices, registers, seconds := envInt("FB_BENCH_DEVICES", 8), envInt("FB_BENCH_REGISTERS", 500), envInt("FB_BENCH_SECONDS", 10)
	spec := testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{}}
	for d := 1; d <= devices; d++ {
		regs := map[uint16]uint16{}
		for r := 0; r < registers; r++ {
			regs[uint16(r)] = uint16(d*1000 + r)
		}
		spec.Units[byte(d)] = testpeer.UnitSpec{Holding: regs}
	}
	dev := testpeer.StartTCP(b, spec)
	bin := buildGateway(b, b.TempDir())
	brokerAddr := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	cfg := strings.Replace(loadConfig("bench", dev.Addr, devices, registers, 100*time.Millisecond),
		`listen: "127.0.0.1:0"`, `listen: "`+brokerAddr+`"`, 1)
	cmd := gatewayProcess(b, bin, cfg)
	waitListening(b, brokerAddr)
	received := countingSub(b, brokerAddr, "bench/#")

	time.Sleep(2 * time.Second) // warm up
	c0, _ := procStat(b, cmd.Process.Pid)
	n0, t0 := received.Load(), time.Now()
	b.ResetTimer()
	time.Sleep(time.Duration(seconds) * time.Second * time.Duration(b.N))
	b.StopTimer()
	c1, peak := procStat(b, cmd.Process.Pid)
	n1, t1 := received.Load(), time.Now()
	points := float64(n1 - n0)
	want := float64(devices*registers) / 0.1
	b.ReportMetric(float64((c1-c0).Nanoseconds())/points/1000, "µs-cpu/point")
	b.ReportMetric(points/t1.Sub(t0).Seconds(), "points/s")
	b.ReportMetric(want, "points/s-target")
	b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-RSS")
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
