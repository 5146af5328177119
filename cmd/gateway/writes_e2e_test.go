package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/config"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// Commands through the whole gateway, every edge a real program: Debian's
// pymodbus as the device, mosquitto_pub/mosquitto_sub as MQTT 3.1.1 clients,
// Debian's python3-paho-mqtt as an MQTT 5 client, mosquitto as the cloud.

// runGateway starts the gateway in-process on a config; stop ends it and
// waits (also done in cleanup).
func runGateway(t *testing.T, yaml string) (g *gateway, logs *syncBuffer, stop func()) {
	t.Helper()
	cfg, err := config.Parse("writes.yaml", []byte(withoutHTTP(yaml)), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	g, err = startGateway(ctx, cfg, slog.New(slog.NewTextHandler(io.MultiWriter(testLog{t}, logs), nil)), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.wait(ctx, nil, "") }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return g, logs, stop
}

// jsonOf decodes a JSON object payload.
func jsonOf(t *testing.T, p []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(p, &v); err != nil {
		t.Fatalf("payload %q is not a JSON object: %v", p, err)
	}
	return v
}

const writesDevice = `
    devices:
      - name: pump
        unit: 1
        interval: 500ms
        points:
          - {name: speed, table: holding, address: 0, writable: true, min: 0, max: 3000, unit: rpm}
          - {name: pressure, table: holding, address: 1, type: float32, order: CDAB, writable: true, unit: bar}
          - {name: ack, table: holding, address: 5, type: bool, bit: 2, writable: true}
          - {name: enable, table: coil, address: 0, writable: true}
          - {name: flow, table: input, address: 0, scale: 0.1}
`

func writesSpec() testpeer.DeviceSpec {
	return testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{
		1: {Holding: map[uint16]uint16{0: 1500, 5: 0x00F0}, Input: map[uint16]uint16{0: 123}},
	}}
}

// TestWritesFromLocalClients: a command from mosquitto_pub lands in the
// device, the new value is published before the result, and the result
// carries the id and the read-back; an MQTT 5 client gets the result on its
// response topic with its correlation data; refused and retained commands
// leave the device as it was.
func TestWritesFromLocalClients(t *testing.T) {
	dev := testpeer.StartTCP(t, writesSpec())
	brokerAddr := loopbackAddr(t)
	runGateway(t, `
gateway: {id: it}
broker: {listen: "`+brokerAddr+`"}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: `+dev.Addr+`
    timeout: 1s
`+writesDevice)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "it/#", QoS: 1})
	sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/pump/speed" })

	// command → value → result, in that order.
	sub.Reset()
	testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "it/pump/speed/set", Payload: []byte(`{"value": 1200, "id": "a1"}`), QoS: 1})
	res := sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/pump/speed/set/result" })
	r := jsonOf(t, res.Payload)
	if r["ok"] != true || r["id"] != "a1" || r["value"] != 1200.0 || r["error"] != nil {
		t.Errorf("result %s", res.Payload)
	}
	if got := dev.Get(1, testpeer.Holding, 0, 1); got[0] != 1200 {
		t.Errorf("device holds %d", got[0])
	}
	msgs := sub.Messages()
	valueAt := slices.IndexFunc(msgs, func(m testpeer.Message) bool {
		return m.Topic == "it/pump/speed" && jsonOf(t, m.Payload)["value"] == 1200.0
	})
	resultAt := slices.IndexFunc(msgs, func(m testpeer.Message) bool { return m.Topic == "it/pump/speed/set/result" })
	if valueAt < 0 || valueAt > resultAt {
		t.Errorf("the new value must be published before the result: %v", msgs)
	}

	// A bit, a float in CDAB, a coil as 0/1.
	for _, c := range []struct{ point, payload string }{{"ack", "true"}, {"pressure", "2.5"}, {"enable", "1"}} {
		testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "it/pump/" + c.point + "/set", Payload: []byte(c.payload), QoS: 1})
		res := sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/pump/"+c.point+"/set/result" })
		if r := jsonOf(t, res.Payload); r["ok"] != true || r["id"] != nil {
			t.Errorf("%s: %s", c.point, res.Payload)
		}
	}
	if got := dev.Get(1, testpeer.Holding, 1, 5); !slices.Equal(got, []uint16{0x0000, 0x4020, 0, 0, 0x00F4}) {
		t.Errorf("holding 1..5 = %04x: want 2.5 low word first, and bit 2 set beside the other bits", got)
	}
	if !dev.GetBits(1, testpeer.Coil, 0, 1)[0] {
		t.Error("coil not set")
	}

	// MQTT 5: the result also goes to the response topic, with the
	// correlation data.
	resp, err := testpeer.Request(t, testpeer.RequestOptions{
		Addr: brokerAddr, Topic: "it/pump/speed/set", Payload: `{"value": 900, "id": 5}`,
		ResponseTopic: "hmi/replies/7", CorrelationData: []byte("req-42\x00"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := jsonOf(t, []byte(resp.Payload)); r["ok"] != true || r["id"] != 5.0 || r["value"] != 900.0 ||
		!bytes.Equal(resp.CorrelationData, []byte("req-42\x00")) || resp.ContentType != "application/json" {
		t.Errorf("MQTT 5 response %+v", resp)
	}
	// The same result reaches it/# on its own time: wait for it, so that
	// the refusals below cannot take it for theirs.
	sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool {
		return m.Topic == "it/pump/speed/set/result" && jsonOf(t, m.Payload)["id"] == 5.0
	})

	// Refusals: the result says why, the device is untouched.
	before := len(dev.Functions(1))
	for _, c := range []struct{ topic, payload, err string }{
		{"it/pump/speed/set", "5000", "5000 is above the point's max of 3000"},
		{"it/pump/speed/set", `"fast"`, "wrong type"},
		{"it/pump/flow/set", "1", "it is an input register, which is read-only"},
		{"it/pump/nothing/set", "1", `device pump has no point "nothing"`},
		{"it/tank/level/set", "1", `no device "tank"`},
	} {
		sub.Reset()
		testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: c.topic, Payload: []byte(c.payload), QoS: 1})
		res := sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == c.topic+"/result" })
		if r := jsonOf(t, res.Payload); r["ok"] != false || !strings.Contains(r["error"].(string), c.err) {
			t.Errorf("%s %s: %s, want an error with %q", c.topic, c.payload, res.Payload, c.err)
		}
	}
	// A retained command is refused and removed from the broker.
	sub.Reset()
	testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "it/pump/speed/set", Payload: []byte("777"), QoS: 1, Retain: true})
	res = sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/pump/speed/set/result" })
	if r := jsonOf(t, res.Payload); r["ok"] != false || !strings.Contains(r["error"].(string), "retained command is never carried out") {
		t.Errorf("retained: %s", res.Payload)
	}
	for _, fc := range dev.Functions(1)[before:] {
		if fc != 1 && fc != 3 && fc != 4 {
			t.Errorf("a refused command reached the device: function %d", fc)
		}
	}
	if got := dev.Get(1, testpeer.Holding, 0, 1); got[0] != 900 {
		t.Errorf("device holds %d after refused commands, want 900", got[0])
	}
	// Nothing retained is left on the command topic: a new subscriber's
	// first message there is the next live command, not the 777.
	late := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "it/pump/speed/set", QoS: 1})
	testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "it/pump/speed/set", Payload: []byte("901"), QoS: 1})
	late.WaitCount(t, 1, 10*time.Second)
	if first := late.Messages()[0]; string(first.Payload) != "901" {
		t.Errorf("a new subscriber to the command topic got %v first", first)
	}
}

// TestWritesThroughTheBridge: a command published on the cloud broker comes
// down the bridge, is carried out, and its result goes up through the
// forward rules. A retained command on the cloud broker is replayed on
// every subscribe — at the first connect and after a restart — and is never
// carried out.
func TestWritesThroughTheBridge(t *testing.T) {
	dev := testpeer.StartTCP(t, writesSpec())
	cloud := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{})
	testpeer.Publish(t, testpeer.PubOptions{Addr: cloud.Addr(), Topic: "site/it/pump/speed/set", Payload: []byte("999"), QoS: 1, Retain: true})
	csub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: cloud.Addr(), Filter: "site/#", QoS: 1})
	cfg := `
gateway: {id: it, data_dir: "` + t.TempDir() + `"}
broker: {listen: "` + loopbackAddr(t) + `"}
bridge:
  upstreams: [{url: "tcp://` + cloud.Addr() + `"}]
  backoff_max: 1s
  forward: [{filter: "it/#", prefix: "site/"}]
  subscribe: [{filter: "site/it/+/+/set", strip_prefix: "site/"}]
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: ` + dev.Addr + `
` + writesDevice
	writes := func() int {
		n := 0
		for _, fc := range dev.Functions(1) {
			if fc == 5 || fc == 6 || fc == 15 || fc == 16 {
				n++
			}
		}
		return n
	}
	command := func(value, id string) {
		t.Helper()
		csub.Reset()
		testpeer.Publish(t, testpeer.PubOptions{Addr: cloud.Addr(), Topic: "site/it/pump/speed/set", Payload: []byte(`{"value": ` + value + `, "id": "` + id + `"}`), QoS: 1})
		res := csub.WaitFor(t, 15*time.Second, func(m testpeer.Message) bool { return m.Topic == "site/it/pump/speed/set/result" })
		if r := jsonOf(t, res.Payload); r["ok"] != true || r["id"] != id || r["value"] != mustFloat(t, value) {
			t.Errorf("result in the cloud: %s", res.Payload)
		}
		csub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool {
			return m.Topic == "site/it/pump/speed" && jsonOf(t, m.Payload)["value"] == mustFloat(t, value)
		})
		if got := dev.Get(1, testpeer.Holding, 0, 1)[0]; got != uint16(mustFloat(t, value)) {
			t.Errorf("device holds %d, want %s", got, value)
		}
	}

	ignored := func(logs *syncBuffer) {
		t.Helper()
		waitUntil(t, 10*time.Second, "the bridge dropping the retained command", func() bool {
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, "retained cloud message ignored") && strings.Contains(line, "topic=site/it/pump/speed/set") {
					return true
				}
			}
			return false
		})
	}
	_, logs, stop := runGateway(t, cfg)
	csub.WaitFor(t, 15*time.Second, func(m testpeer.Message) bool { return m.Topic == "site/it/status" && string(m.Payload) == "online" })
	ignored(logs)
	command("1234", "c1")
	if n := writes(); n != 1 {
		t.Errorf("%d writes reached the device, want 1: the retained 999 must not be carried out", n)
	}

	// Restart: the cloud replays the retained command on the new
	// subscription; it is dropped again.
	stop()
	csub.Reset()
	_, logs, _ = runGateway(t, cfg)
	csub.WaitFor(t, 15*time.Second, func(m testpeer.Message) bool { return m.Topic == "site/it/status" && string(m.Payload) == "online" })
	ignored(logs)
	command("1235", "c2")
	if n := writes(); n != 2 {
		t.Errorf("%d writes reached the device, want 2: the retained 999 must never be carried out", n)
	}
}

func mustFloat(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatal(err)
	}
	return f
}
