package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestFullStack: Debian's pymodbus as the field device, the gateway, and
// mosquitto_sub on the embedded broker — every edge a program no one here
// wrote. It checks the payloads a subscriber really gets: values with unit
// and quality, a bad-quality payload for a block answering exception 2,
// the availability of a live and of a dead device, and a change published
// on the next poll.
func TestFullStack(t *testing.T) {
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{
		Units: map[byte]testpeer.UnitSpec{
			1: {Holding: map[uint16]uint16{0: 0x4365, 1: 0xCCCD, 2: 0xFF33}, Coils: map[uint16]bool{0: true}},
			9: {Holding: map[uint16]uint16{0: 1}},
		},
		Silent:     []byte{9},
		Exceptions: []testpeer.ExceptionRange{{Unit: 1, Table: testpeer.Holding, Start: 100, End: 199, Code: 2}},
	})
	brokerAddr := loopbackAddr(t)
	cfg, err := config.Parse("stack.yaml", []byte(withoutHTTP(`
gateway: {id: it}
broker: {listen: "`+brokerAddr+`"}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: `+dev.Addr+`
    timeout: 300ms
    devices:
      - name: meter
        unit: 1
        interval: 200ms
        points:
          - {name: voltage, table: holding, address: 0, type: float32, unit: V}
          - {name: temp, table: holding, address: 2, type: int16, scale: 0.1, unit: "°C"}
          - {name: pump, table: coil, address: 0}
          - {name: missing, table: holding, address: 150}
      - name: dead
        unit: 9
        interval: 200ms
        points:
          - {name: x, table: holding, address: 0}
`)), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := startGateway(ctx, cfg, slog.New(slog.NewTextHandler(testLog{t}, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.wait(ctx, nil, "") }()
	defer func() { cancel(); wg.Wait() }()

	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "it/#"})
	payload := func(topic string, check func(map[string]any) bool) {
		t.Helper()
		sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool {
			if m.Topic != topic {
				return false
			}
			var v map[string]any
			if err := json.Unmarshal(m.Payload, &v); err != nil {
				t.Errorf("%s: payload %q is not JSON: %v", topic, m.Payload, err)
				return false
			}
			return check(v)
		})
	}
	good := func(value any, unit string) func(map[string]any) bool {
		return func(v map[string]any) bool {
			_, hasTS := v["ts"].(string)
			return v["value"] == value && v["quality"] == "good" && hasTS && (unit == "" || v["unit"] == unit)
		}
	}
	payload("it/meter/voltage", good(229.8, "V"))
	payload("it/meter/temp", good(-20.5, "°C"))
	payload("it/meter/pump", good(true, ""))
	payload("it/meter/missing", func(v map[string]any) bool {
		return v["quality"] == "bad" && v["value"] == nil &&
			strings.Contains(v["error"].(string), "modbus exception 2 (illegal data address)")
	})
	payload("it/dead/x", func(v map[string]any) bool {
		return v["quality"] == "bad" && strings.Contains(v["error"].(string), "no response")
	})
	availability := func(device, state string) {
		t.Helper()
		sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool {
			return m.Topic == "it/"+device+"/availability" && string(m.Payload) == state
		})
	}
	availability("meter", "online")
	availability("dead", "offline")

	// Everything is retained: a subscriber that comes later gets the
	// latest of every topic at once, flagged as retained (a live delivery
	// carries no retain flag in MQTT 3.1.1).
	late := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "it/#"})
	for _, topic := range []string{"it/meter/voltage", "it/meter/temp", "it/meter/pump", "it/meter/missing", "it/meter/availability", "it/dead/x", "it/dead/availability"} {
		late.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return m.Topic == topic && m.Retained })
	}

	dev.Set(1, testpeer.Holding, 0, 0x4366, 0x0000) // 230.0
	payload("it/meter/voltage", good(230.0, "V"))
	dev.SetSilent(9, false)
	availability("dead", "online")
	payload("it/dead/x", good(1.0, ""))
}
