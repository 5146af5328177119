package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/adapters/modbus"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// reloadConfig is the config of TestReloadUnderLoad; the steps edit it.
type reloadConfig struct {
	dataDir, broker, device, cloud string
	lineInterval                   string
	extraDevice                    bool
	prefix                         string
}

func (c reloadConfig) String() string {
	extra := ""
	if c.extraDevice {
		extra = `
      - name: drive
        unit: 3
        interval: 100ms
        points: [{name: speed, table: holding, address: 0}]`
	}
	return fmt.Sprintf(`gateway: {id: it, data_dir: %s}
broker: {listen: %q}
adapters:
  - name: steady
    type: modbus
    transport: tcp
    address: %s
    timeout: 500ms
    devices:
      - name: boiler
        unit: 1
        interval: 50ms
        publish: every_poll
        points: [{name: temp, table: holding, address: 0}]
  - name: line
    type: modbus
    transport: tcp
    address: %s
    timeout: 500ms
    devices:
      - name: meter
        unit: 2
        interval: %s
        points: [{name: power, table: holding, address: 0}]%s
bridge:
  upstreams: [{url: "tcp://%s"}]
  keepalive: 2s
  connect_timeout: 2s
  backoff_initial: 50ms
  backoff_max: 200ms
  forward: [{filter: "it/load", prefix: %q}]
`, c.dataDir, c.broker, c.device, c.device, c.lineInterval, extra, c.cloud, c.prefix)
}

// TestReloadUnderLoad: the bridge forwards 1,000 messages a second to
// mosquitto while the config is reloaded five times (add a device, change
// an interval, change a forward rule, a broken file, revert). No message is
// missing, each cloud topic keeps the order, the untouched bus is never
// restarted and keeps polling through every reload, and the removed
// device is reported offline.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (pymodbus, mosquitto)")
	}
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{
		1: {Holding: map[uint16]uint16{0: 70}}, 2: {Holding: map[uint16]uint16{0: 5}}, 3: {Holding: map[uint16]uint16{0: 1500}},
	}})
	m := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{MaxQueuedMessages: 100000})
	dir := t.TempDir()
	cfg := reloadConfig{
		dataDir: filepath.Join(dir, "data"), broker: loopbackAddr(t), device: dev.Addr, cloud: m.Addr(),
		lineInterval: "200ms", prefix: "cloud-a/",
	}
	path := filepath.Join(dir, "gateway.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(withoutHTTP(text)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg.String())
	g, logs, hup := runGatewayFile(t, path)

	cloud := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filters: []string{"cloud-a/it/load", "cloud-b/it/load"}, QoS: 1})
	local := testpeer.Subscribe(t, testpeer.SubOptions{Addr: cfg.broker, Filter: "it/+/availability"})
	local.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool {
		return m.Topic == "it/boiler/availability" && string(m.Payload) == "online"
	})
	waitUntil(t, 10*time.Second, "the bridge connected", func() bool { return g.bridge.Stats().Connected })

	steady := g.currentBuses()[0]
	cycles := func() int64 { return steady.a.(*modbus.Adapter).Stats().Cycles }

	// The load: 1,000 numbered messages a second, published in-process as
	// an adapter would.
	stopLoad := publishLoad(t, t.Context(), g, "it/load")

	reloads := 0
	reload := func(step, text, want string) {
		t.Helper()
		write(text)
		before := cycles()
		reloads++
		hup <- syscall.SIGHUP
		waitUntil(t, 20*time.Second, step+": "+want, func() bool {
			return strings.Count(logs.String(), "msg=\"reloading the config\"") == reloads && strings.Contains(logs.String()[strings.LastIndex(logs.String(), "reloading the config"):], want)
		})
		// The untouched bus goes on polling across the reload.
		waitUntil(t, 10*time.Second, step+": the steady bus polling", func() bool { return cycles() >= before+3 })
		if buses := g.currentBuses(); len(buses) == 0 || buses[0] != steady {
			t.Fatalf("%s: the untouched bus was restarted", step)
		}
	}

	time.Sleep(300 * time.Millisecond) // some load before the first reload
	cfg.extraDevice = true
	reload("add a device", cfg.String(), "config reloaded")
	local.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool {
		return m.Topic == "it/drive/availability" && string(m.Payload) == "online"
	})
	cfg.lineInterval = "100ms"
	reload("change an interval", cfg.String(), "config reloaded")
	cfg.prefix = "cloud-b/"
	reload("change a forward rule", cfg.String(), "config reloaded")
	reload("a broken file", cfg.String()+"adapters: [\n", "config rejected")
	if !strings.Contains(logs.String(), "gateway.yaml:") {
		t.Errorf("the rejected config's problem was not logged with file:line:col")
	}
	reload("revert", reloadConfig{dataDir: cfg.dataDir, broker: cfg.broker, device: cfg.device, cloud: cfg.cloud, lineInterval: "200ms", prefix: "cloud-a/"}.String(), "config reloaded")
	local.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool {
		return m.Topic == "it/drive/availability" && string(m.Payload) == "offline"
	})
	time.Sleep(300 * time.Millisecond) // some load after the last reload
	sent := stopLoad()

	last := strconv.Itoa(sent - 1)
	cloud.WaitFor(t, 30*time.Second, func(m testpeer.Message) bool { return m.Topic == "cloud-a/it/load" && string(m.Payload) == last })
	got := make([]bool, sent)
	highest := map[string]int{}       // per cloud topic, of first arrivals
	seen := map[string]map[int]bool{} // per cloud topic
	dups := 0
	for i, msg := range cloud.Messages() {
		k, err := strconv.Atoi(string(bytes.TrimSpace(msg.Payload)))
		if err != nil || k < 0 || k >= sent {
			t.Fatalf("cloud message %d: unexpected payload %q", i, msg.Payload)
		}
		if seen[msg.Topic] == nil {
			seen[msg.Topic] = map[int]bool{}
		}
		// A resend after a reconnect repeats what its topic had; anything
		// new on a topic comes after everything before it.
		if !seen[msg.Topic][k] {
			if prev, ok := highest[msg.Topic]; ok && k < prev {
				t.Fatalf("%s: %d first arrived after %d (order broken)", msg.Topic, k, prev)
			}
			highest[msg.Topic] = k
			seen[msg.Topic][k] = true
		}
		if got[k] {
			dups++
		}
		got[k] = true
	}
	for k, ok := range got {
		if !ok {
			t.Fatalf("message %d of %d never reached the cloud", k, sent)
		}
	}
	for _, msg := range local.Messages() {
		if msg.Topic == "it/boiler/availability" && string(msg.Payload) == "offline" {
			t.Errorf("the untouched bus's device went offline during a reload")
		}
	}
	st := g.bridge.Stats()
	if st.HandoffOverflow+st.DroppedFull+st.DroppedShutdown != 0 {
		t.Errorf("drops: %+v", st)
	}
	t.Logf("%d messages sent over %d reloads, all received (%d duplicates, %d reconnects); the steady bus polled %d times", sent, reloads, dups, st.Reconnects, cycles())
}

// TestSIGHUPReloads: the gateway process reloads on SIGHUP instead of
// dying of it, telling systemd RELOADING=1 and then READY=1, and keeps
// running until SIGTERM, after which it exits 0.
func TestSIGHUPReloads(t *testing.T) {
	bin := buildGateway(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	config := writeConfig(t, dir, fmt.Sprintf("gateway: {id: plant1, data_dir: %s}\nbroker: {listen: %q}\n", filepath.Join(dir, "data"), freeAddr(t)))
	gw := &gatewayProc{cmd: exec.Command(bin, "run", "--config", config), out: &syncBuffer{}, done: make(chan struct{})}
	gw.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	gw.cmd.Stdout, gw.cmd.Stderr = gw.out, gw.out
	if err := gw.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = gw.cmd.Wait(); close(gw.done) }()
	defer func() {
		gw.signal(syscall.SIGKILL)
		<-gw.done
		if t.Failed() {
			t.Logf("gateway output:\n%s", gw.out)
		}
	}()
	expect := func(want string) {
		t.Helper()
		buf := make([]byte, 256)
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("notify: got %q (%v), want %q", buf[:n], err, want)
		}
	}
	expect("READY=1")
	for range 2 {
		gw.signal(syscall.SIGHUP)
		expect("RELOADING=1")
		expect("READY=1")
	}
	gw.signal(syscall.SIGTERM)
	select {
	case <-gw.done:
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if code := gw.cmd.ProcessState.ExitCode(); code != 0 || strings.Count(gw.out.String(), "config reloaded") != 2 {
		t.Fatalf("exit %d, want 0 after two reloads", code)
	}
}

// publishLoad publishes numbered messages ("0", "1", …) on topic into the
// gateway's broker, one a millisecond, as an adapter would, until the
// returned stop is called; stop returns how many were published.
func publishLoad(t *testing.T, ctx context.Context, g *gateway, topic string) (stop func() int) {
	t.Helper()
	loadCtx, cancel := context.WithCancel(ctx)
	sent := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tick.C:
			}
			if err := g.broker.Publish(topic, []byte(strconv.Itoa(sent)), false, 1); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			sent++
		}
	}()
	return func() int {
		cancel()
		<-done
		return sent
	}
}
