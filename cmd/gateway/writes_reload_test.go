package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestWritesFollowAReload: after a reload that changes a bus, commands go to
// the new bus and its points: a point that stopped being writable is
// refused, a new writable point is written.
func TestWritesFollowAReload(t *testing.T) {
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{1: {}}})
	brokerAddr := loopbackAddr(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	write := func(points string) {
		t.Helper()
		text := `
gateway: {id: it, data_dir: "` + dir + `"}
broker: {listen: "` + brokerAddr + `"}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: ` + dev.Addr + `
    devices:
      - name: drive
        unit: 1
        interval: 1h
        points:
` + points
		if err := os.WriteFile(path, []byte(withoutHTTP(text)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("          - {name: speed, table: holding, address: 0, writable: true}\n")
	_, logs, hup := runGatewayFile(t, path)

	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "it/#", QoS: 1})
	command := func(point, payload string) map[string]any {
		t.Helper()
		sub.Reset()
		testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "it/drive/" + point + "/set", Payload: []byte(payload), QoS: 1})
		res := sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/drive/"+point+"/set/result" })
		return jsonOf(t, res.Payload)
	}
	sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool {
		return m.Topic == "it/drive/availability" && string(m.Payload) == "online"
	})
	if r := command("speed", "11"); r["ok"] != true {
		t.Fatalf("before the reload: %v", r)
	}

	write("          - {name: speed, table: holding, address: 0}\n          - {name: ramp, table: holding, address: 1, writable: true}\n")
	hup <- syscall.SIGHUP
	waitUntil(t, 10*time.Second, "the reload", func() bool { return strings.Contains(logs.String(), "config reloaded") })
	sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/drive/ramp" })
	if r := command("speed", "12"); r["ok"] != false || !strings.Contains(r["error"].(string), "it is not writable") {
		t.Errorf("speed after the reload: %v", r)
	}
	if r := command("ramp", "13"); r["ok"] != true || r["value"] != 13.0 {
		t.Errorf("ramp after the reload: %v", r)
	}
	if got := dev.Get(1, testpeer.Holding, 0, 2); got[0] != 11 || got[1] != 13 {
		t.Errorf("device holds %v, want [11 13]", got)
	}
}
