package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestDemoWrites runs the command shown at the top of configs/demo.yaml
// against the built-in simulator: the setpoint changes and the result says
// so; a value above the point's max is refused.
func TestDemoWrites(t *testing.T) {
	data, err := os.ReadFile("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	brokerAddr, simAddr := loopbackAddr(t), loopbackAddr(t)
	text := strings.ReplaceAll(string(data), "127.0.0.1:1885", brokerAddr)
	text = strings.ReplaceAll(text, "127.0.0.1:5020", simAddr)
	text = strings.ReplaceAll(text, "./data", t.TempDir())
	runGateway(t, text)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "demo/pump_drive/#"})
	sub.WaitFor(t, 15*time.Second, func(m testpeer.Message) bool { return m.Topic == "demo/pump_drive/speed_setpoint" })

	for _, c := range []struct {
		payload string
		ok      bool
		value   any
		err     string
	}{
		{`{"value": 1200, "id": "demo-1"}`, true, 1200.0, ""},
		{`{"value": 5000, "id": "demo-2"}`, false, nil, "5000 is above the point's max of 3000"},
	} {
		sub.Reset()
		testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "demo/pump_drive/speed_setpoint/set", Payload: []byte(c.payload)})
		res := sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "demo/pump_drive/speed_setpoint/set/result" })
		r := jsonOf(t, res.Payload)
		if r["ok"] != c.ok || r["value"] != c.value || (c.err != "" && !strings.Contains(r["error"].(string), c.err)) {
			t.Errorf("%s: %s", c.payload, res.Payload)
		}
	}
	sub.Reset()
	testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "demo/pump_drive/running/set", Payload: []byte("true")})
	res := sub.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "demo/pump_drive/running/set/result" })
	if r := jsonOf(t, res.Payload); r["ok"] != false || !strings.Contains(r["error"].(string), "discrete input, which is read-only") {
		t.Errorf("running: %s", res.Payload)
	}
}
