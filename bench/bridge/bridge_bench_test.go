// Package bridgebench compares the gateway's cloud bridge with mosquitto's
// own bridge doing the same job: drain a backlog built during an outage,
// and survive a kill -9 during the outage. It also records the gateway's
// resident memory while a long outage piles up on disk. Run it with
// bench/bridge/run.sh; `go test ./...` skips it.
package bridgebench

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

const enableEnv = "FIELDBRIDGE_BENCH_BRIDGE"

func skipUnlessEnabled(t *testing.T) {
	if os.Getenv(enableEnv) == "" {
		t.Skipf("benchmark: set %s=1 (bench/bridge/run.sh does)", enableEnv)
	}
}

// intEnv reads a count from the environment.
func intEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// counter subscribes to the cloud (a testpeer.RawSubscriber) and records, per
// topic, which message numbers arrived and when the first and the last
// came.
type counter struct {
	mu          sync.Mutex
	seen        map[int]bool
	total       int
	first, last time.Time
	changed     chan struct{}
}

func newCounter(t *testing.T, addr, filter string) *counter {
	t.Helper()
	c := &counter{seen: map[int]bool{}, changed: make(chan struct{}, 1)}
	testpeer.StartRawSubscriber(t, addr, fmt.Sprintf("bench-%d", time.Now().UnixNano()), filter, func(_ string, p []byte, now time.Time) {
		sp := strings.IndexByte(string(p), ' ')
		if sp < 0 {
			return
		}
		k, err := strconv.Atoi(string(p[:sp]))
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.total == 0 {
			c.first = now
		}
		c.total++
		c.seen[k] = true
		c.last = now
		c.mu.Unlock()
		select {
		case c.changed <- struct{}{}:
		default:
		}
	})
	return c
}

func (c *counter) reset() {
	c.mu.Lock()
	c.seen, c.total = map[int]bool{}, 0
	c.mu.Unlock()
}

func (c *counter) distinct() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// wait waits until n distinct messages arrived, or until nothing arrived
// for quiet; it returns the distinct count.
func (c *counter) wait(n int, quiet time.Duration) int {
	for {
		if d := c.distinct(); d >= n {
			return d
		}
		select {
		case <-c.changed:
		case <-time.After(quiet):
			return c.distinct()
		}
	}
}

func (c *counter) window() (first, last time.Time, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first, c.last, c.total
}

func lines(n int) [][]byte {
	out := make([][]byte, n)
	pad := strings.Repeat("x", 100)
	for i := range out {
		out[i] = fmt.Appendf(nil, "%07d %s", i, pad)
	}
	return out
}

// gateway is a run of the gateway binary.
type gateway struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func buildGateway(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gateway")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/fieldbridge/fieldbridge/cmd/gateway").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startGateway(t *testing.T, bin, config, logPath string) *gateway {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"run", "--config", config}
	// BENCH_PPROF=ADDR serves the gateway's profiles there (go tool pprof
	// http://ADDR/debug/pprof/profile).
	if addr := os.Getenv("BENCH_PPROF"); addr != "" {
		args = append(args, "--pprof", addr)
	}
	g := &gateway{cmd: exec.Command(bin, args...), done: make(chan struct{}), log: f}
	// BENCH_GATEWAY_ENV adds settings for the gateway alone (e.g.
	// GOMAXPROCS=1), not for the measuring subscribers in this process.
	if extra := os.Getenv("BENCH_GATEWAY_ENV"); extra != "" {
		g.cmd.Env = append(os.Environ(), strings.Fields(extra)...)
	}
	g.cmd.Stdout, g.cmd.Stderr = f, f
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = g.cmd.Wait()
		f.Close()
		close(g.done)
	}()
	t.Cleanup(func() { g.stop(syscall.SIGTERM) })
	return g
}

func (g *gateway) stop(sig syscall.Signal) {
	select {
	case <-g.done:
		return
	default:
	}
	_ = syscall.Kill(g.cmd.Process.Pid, sig)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.done
	}
}

// rssKiB reads VmRSS of the process.
func (g *gateway) rssKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// queuedRecords counts the records on topic in the queue's segment files
// (format in bridge/queue/doc.go: a 24-byte segment header, frames of
// length u32, crc u32 and body; a record body is kind 1, flags, topic
// length u16, seq u64, time i64, topic, payload).
func queuedRecords(dir, topic string) int {
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	n := 0
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		for off := 24; off+8 <= len(b); {
			l := int(binary.LittleEndian.Uint32(b[off:]))
			if l == 0 || off+8+l > len(b) {
				break
			}
			body := b[off+8 : off+8+l]
			if body[0] == 1 && len(body) >= 20 {
				tl := int(binary.LittleEndian.Uint16(body[2:]))
				if 20+tl <= len(body) && string(body[20:20+tl]) == topic {
					n++
				}
			}
			off += 8 + l
		}
	}
	return n
}

func waitUntil(t *testing.T, timeout, poll time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(poll)
	}
}

func writeGatewayConfig(t *testing.T, dir, local, upstream, prefix string, inflight int) string {
	t.Helper()
	path := filepath.Join(dir, "gateway.yaml")
	err := os.WriteFile(path, fmt.Appendf(nil, `gateway: {id: plant1, data_dir: %s}
log: {level: info}
broker: {listen: "%s"}
bridge:
  upstreams: [{url: "tcp://%s"}]
  keepalive: 5s
  inflight: %s
  backoff_initial: 50ms
  backoff_max: 100ms
  forward: [{filter: "bench/#", prefix: "%s"}]
  buffer: {max_bytes: 2GiB}
`, filepath.Join(dir, "data"), local, upstream, inflightText(inflight), prefix), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// inflightText is the inflight setting: a number, or auto for 0.
func inflightText(n int) string {
	if n == 0 {
		return "auto"
	}
	return strconv.Itoa(n)
}

// cloudOptions configures the upstream mosquitto of a benchmark. Its
// max_inflight_messages (20 by default) limits how many QoS 1 messages it
// has unacknowledged towards the measuring subscriber: 20 per round trip to
// that subscriber, which would cap what is measured (at ~25,000 msg/s here)
// below what either bridge delivers. The bridges are measured, not the
// subscriber.
func cloudOptions(queued int) testpeer.MosquittoOptions {
	return testpeer.MosquittoOptions{MaxQueuedMessages: queued, MaxInflightMessages: 65535}
}

// intsEnv reads a comma-separated list of numbers from the environment.
func intsEnv(t *testing.T, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, n)
	}
	return out
}
