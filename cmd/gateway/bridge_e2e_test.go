package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// The gateway as a process, for what only a process can show: a kill -9
// loses nothing that reached the queue, and the broker publishes the will.

// gatewayBinary builds the gateway once per test binary.
var gatewayBinary = struct {
	once sync.Once
	path string
	err  error
}{}

func buildGateway(t *testing.T) string {
	t.Helper()
	gatewayBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "fieldbridge-gateway-")
		if err != nil {
			gatewayBinary.err = err
			return
		}
		bin := filepath.Join(dir, "gateway")
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			gatewayBinary.err = fmt.Errorf("go build: %w\n%s", err, out)
			return
		}
		gatewayBinary.path = bin
	})
	if gatewayBinary.err != nil {
		t.Fatal(gatewayBinary.err)
	}
	return gatewayBinary.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if gatewayBinary.path != "" {
		os.RemoveAll(filepath.Dir(gatewayBinary.path))
	}
	os.Exit(code)
}

// gatewayProc is one run of the gateway binary.
type gatewayProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeBridgeConfig writes the config of the tests that cut links and kill
// processes: plant1/# bridged to upstream as site-a/…, with short
// keepalive, timeouts and backoff so that they heal within a second.
func writeBridgeConfig(t *testing.T, path, dataDir, local, upstream, level string) {
	t.Helper()
	err := os.WriteFile(path, fmt.Appendf(nil, `
gateway: {id: plant1, data_dir: %s}
log: {level: %s}
broker: {listen: "%s"}
bridge:
  upstreams: [{url: "tcp://%s"}]
  keepalive: 2s
  connect_timeout: 2s
  backoff_initial: 50ms
  backoff_max: 200ms
  forward: [{filter: "plant1/#", prefix: "site-a/"}]
`, dataDir, level, local, upstream), 0o644)
	if err != nil {
		t.Fatal(err)
	}
}

// startGatewayProc runs the binary with config; it is stopped by pid in
// cleanup (SIGTERM, then SIGKILL) if the test did not end it.
func startGatewayProc(t *testing.T, bin, config string) *gatewayProc {
	t.Helper()
	p := &gatewayProc{cmd: exec.Command(bin, "run", "--config", config), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("gateway pid %d output:\n%s", p.cmd.Process.Pid, p.out)
		}
	})
	return p
}

func (p *gatewayProc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// kill9 ends the process with SIGKILL, by pid, and waits for it.
func (p *gatewayProc) kill9(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// queuedRecords counts the records written to the queue's segment files,
// following the format in bridge/queue/doc.go: a 24-byte header, then
// frames of length u32, crc u32 and a body whose first byte is 1 for a
// record. Only another process can look while the gateway holds the lock.
func queuedRecords(t *testing.T, dir string) int {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	n := 0
	for _, s := range segs {
		b, err := os.ReadFile(s)
		if err != nil {
			continue // removed meanwhile
		}
		for off := 24; off+8 <= len(b); {
			l := int(binary.LittleEndian.Uint32(b[off:]))
			if l == 0 || off+8+l > len(b) {
				break
			}
			if b[off+8] == 1 {
				n++
			}
			off += 8 + l
		}
	}
	return n
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBridgeKill9 runs the gateway (no adapters: broker and bridge only)
// against mosquitto behind a proxy. A kill -9 makes the broker publish the
// will; messages queued during an outage survive a kill -9 and all arrive
// once the link is back.
func TestBridgeKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (builds the gateway, runs mosquitto)")
	}
	const n = 20000
	bin := buildGateway(t)
	m := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{MaxQueuedMessages: 2*n + 100})
	proxy := testpeer.StartProxy(t, m.Addr())
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/#", QoS: 1})

	dir := t.TempDir()
	local := freeAddr(t)
	config := filepath.Join(dir, "gateway.yaml")
	writeBridgeConfig(t, config, filepath.Join(dir, "data"), local, proxy.Addr(), "debug")
	status := func(payload string) func(testpeer.Message) bool {
		return func(msg testpeer.Message) bool {
			return msg.Topic == "site-a/plant1/status" && string(msg.Payload) == payload
		}
	}

	// The will: a gateway that dies without a word is reported offline.
	gw := startGatewayProc(t, bin, config)
	sub.WaitFor(t, 20*time.Second, status("online"))
	sub.Reset()
	gw.kill9(t)
	sub.WaitFor(t, 10*time.Second, status("offline"))

	// The outage: the link is cut, messages queue on disk, the gateway is
	// killed, started again, and the link comes back.
	gw = startGatewayProc(t, bin, config)
	sub.WaitFor(t, 20*time.Second, status("online"))
	proxy.Cut()
	testpeer.PublishLines(t, testpeer.PubOptions{Addr: local, Topic: "plant1/crash", QoS: 1}, numberedLines(n))
	queueDir := filepath.Join(dir, "data", "queue")
	waitUntil(t, 20*time.Second, "all messages written to the queue", func() bool { return queuedRecords(t, queueDir) >= n })
	gw.kill9(t)
	if out := gw.out.String(); strings.Contains(out, "dropping messages") {
		t.Fatalf("the gateway dropped messages:\n%s", out)
	}

	sub.Reset()
	gw = startGatewayProc(t, bin, config)
	waitUntil(t, 20*time.Second, "the restarted gateway to try the cut link", func() bool {
		return strings.Contains(gw.out.String(), "cannot connect to upstream")
	})
	proxy.Restore()
	got := make([]bool, n)
	waitUntil(t, 60*time.Second, "every queued message in the cloud", func() bool {
		missing := 0
		for _, msg := range sub.Messages() {
			var k int
			if msg.Topic == "site-a/plant1/crash" {
				if _, err := fmt.Sscanf(string(msg.Payload), "%d", &k); err == nil && k < n {
					got[k] = true
				}
			}
		}
		for _, ok := range got {
			if !ok {
				missing++
			}
		}
		return missing == 0
	})
	if !strings.Contains(gw.out.String(), fmt.Sprintf("backlog=%d", n)) {
		t.Errorf("the restarted gateway did not report a backlog of %d", n)
	}
}

func numberedLines(n int) [][]byte {
	lines := make([][]byte, n)
	for i := range lines {
		lines[i] = fmt.Appendf(nil, "%06d %s", i, strings.Repeat("x", 100))
	}
	return lines
}
