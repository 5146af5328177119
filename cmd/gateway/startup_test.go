package main

import (
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

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// Every startup failure is one clear log line and exit code 1, never a
// panic; a missing serial device is not a startup failure at all.

// runToExit runs the gateway binary and waits for it to exit by itself.
func runToExit(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String()
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the gateway did not exit; output:\n%s", out)
	}
	return 0, ""
}

// expectStartFailure asserts exit code 1 and one error line holding want.
func expectStartFailure(t *testing.T, code int, out, want string) {
	t.Helper()
	if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Fatalf("the gateway panicked:\n%s", out)
	}
	var errLines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "level=ERROR") {
			errLines = append(errLines, l)
		}
	}
	if code != exitFail || len(errLines) != 1 || !strings.Contains(errLines[0], want) {
		t.Fatalf("exit %d, want 1 and one error line with %q; output:\n%s", code, want, out)
	}
}

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestStartBrokerPortBusy: with Debian's mosquitto on the broker's port
// (as after `apt install mosquitto`), the gateway says so and exits 1.
func TestStartBrokerPortBusy(t *testing.T) {
	bin := buildGateway(t)
	m := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	dir := t.TempDir()
	config := writeConfig(t, dir, fmt.Sprintf("gateway: {id: plant1, data_dir: %s}\nbroker: {listen: %q}\n", filepath.Join(dir, "data"), m.Addr()))
	code, out := runToExit(t, exec.Command(bin, "--config", config))
	expectStartFailure(t, code, out, "cannot start: broker: listen on "+m.Addr()+": address already in use — is another MQTT broker (mosquitto) running?")
}

// TestStartSimulatorPortBusy: the same for the demo's simulator, after it
// (and with a bridge: its queue) had been opened.
func TestStartSimulatorPortBusy(t *testing.T) {
	bin := buildGateway(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	config := writeConfig(t, dir, fmt.Sprintf(`gateway: {id: plant1, data_dir: %s}
broker: {listen: %q}
simulator: {listen: %q}
bridge:
  upstreams: [{url: "tcp://127.0.0.1:1"}]
  forward: [{filter: "plant1/#"}]
`, filepath.Join(dir, "data"), freeAddr(t), l.Addr()))
	code, out := runToExit(t, exec.Command(bin, "--config", config))
	expectStartFailure(t, code, out, "cannot start: simulator: listen on "+l.Addr().String()+": address already in use")
}

// TestStartHTTPPortBusy: an http.listen the config names and another
// program holds stops the start before any bus polls, in one line; the
// default address taken is only a warning (httpapi's TestDefaultAddressTaken).
func TestStartHTTPPortBusy(t *testing.T) {
	bin := buildGateway(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	config := writeConfig(t, dir, fmt.Sprintf("gateway: {id: plant1, data_dir: %s}\nbroker: {listen: %q}\nhttp: {listen: %q}\n", filepath.Join(dir, "data"), freeAddr(t), l.Addr()))
	code, out := runToExit(t, exec.Command(bin, "--config", config))
	expectStartFailure(t, code, out, "cannot start: http: listen on "+l.Addr().String()+": address already in use — is another gateway running?")
	if strings.Contains(out, `msg="gateway running"`) {
		t.Errorf("the gateway started its buses before failing:\n%s", out)
	}
}

// TestStartDataDirUnwritable: a data_dir the gateway's user cannot write
// is named at start, with the user. As root (CI), the gateway runs as
// nobody, since root writes anywhere.
func TestStartDataDirUnwritable(t *testing.T) {
	bin := buildGateway(t)
	dir := t.TempDir()
	locked := filepath.Join(dir, "locked")
	if err := os.Mkdir(locked, 0o555); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(locked, "data")
	config := writeConfig(t, dir, fmt.Sprintf("gateway: {id: plant1, data_dir: %s}\nbroker: {listen: %q}\n", data, freeAddr(t)))
	cmd := exec.Command(bin, "--config", config)
	if os.Getuid() == 0 {
		for _, d := range []string{filepath.Dir(dir), dir, filepath.Dir(bin)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	code, out := runToExit(t, cmd)
	expectStartFailure(t, code, out, "cannot start: gateway.data_dir "+data+": permission denied (the gateway runs as ")
}

// TestStartSecondInstance: a second gateway on the same data_dir is
// refused by the queue's lock, which names the first one's pid.
func TestStartSecondInstance(t *testing.T) {
	bin := buildGateway(t)
	dir := t.TempDir()
	config := writeConfig(t, dir, fmt.Sprintf(`gateway: {id: plant1, data_dir: %s}
broker: {listen: %q}
bridge:
  upstreams: [{url: "tcp://127.0.0.1:1"}]
  forward: [{filter: "plant1/#"}]
`, filepath.Join(dir, "data"), freeAddr(t)))
	first := startGatewayProc(t, bin, config)
	waitUntil(t, 20*time.Second, "the first gateway running", func() bool { return strings.Contains(first.out.String(), "gateway running") })
	code, out := runToExit(t, exec.Command(bin, "--config", config))
	expectStartFailure(t, code, out, "is in use by process "+strconv.Itoa(first.cmd.Process.Pid)+": is another gateway running with the same data_dir?")
}

// TestStartWithoutSerialDevice: a USB adapter not plugged in yet does not
// stop the gateway: the bus reports it and retries.
func TestStartWithoutSerialDevice(t *testing.T) {
	bin := buildGateway(t)
	dir := t.TempDir()
	config := writeConfig(t, dir, fmt.Sprintf(`gateway: {id: plant1, data_dir: %s}
broker: {listen: %q}
adapters:
  - name: line1
    type: modbus
    transport: rtu
    device: %s
    baud: 19200
    devices:
      - name: meter
        unit: 1
        points: [{name: v, table: holding, address: 0}]
`, filepath.Join(dir, "data"), freeAddr(t), filepath.Join(dir, "ttyUSB-not-plugged")))
	gw := startGatewayProc(t, bin, config)
	waitUntil(t, 20*time.Second, "the bus to report the missing port", func() bool {
		out := gw.out.String()
		return strings.Contains(out, "gateway running") && strings.Contains(out, "bus unreachable; retrying with backoff")
	})
	select {
	case <-gw.done:
		t.Fatalf("the gateway exited:\n%s", gw.out)
	default:
	}
}
