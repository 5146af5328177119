package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// Commands and the broker's ACLs, every edge a real program: pymodbus as
// the device, mosquitto_pub/mosquitto_sub (MQTT 3.1.1) and paho (MQTT 5)
// as clients that log in.

// aclUsers are the broker users of TestCommandsUnderACLs; hmiWrites gives
// hmi the right to send commands. The hashes are made once: a new hash is
// a new password to a reload, which disconnects the user's clients.
func aclUsers(hashes [3]string, hmiWrites bool) string {
	hmiSet := "deny"
	if hmiWrites {
		hmiSet = "write"
	}
	return fmt.Sprintf(`  users:
    - username: hmi
      password_hash: %q
      acl:
        - {filter: "it/+/+/set", access: %s}
        - {filter: "it/#", access: read}
    - username: scada
      password_hash: %q
      acl:
        - {filter: "it/+/+/set", access: write}
        - {filter: "replies/%%u/#", access: readwrite}
        - {filter: "it/#", access: read}
    - username: viewer
      password_hash: %q
      acl:
        - {filter: "it/+/+/set/result", access: deny}
        - {filter: "it/+/+/set", access: deny}
        - {filter: "it/#", access: read}
`, hashes[0], hmiSet, hashes[1], hashes[2])
}

// TestCommandsUnderACLs: a read-only user's command never reaches the
// device (over MQTT 3.1.1 and 5): no write, no result, the denial counted;
// a user who may write commands is carried out, and its result reaches
// only those who may read it; an MQTT 5 response topic works through the
// authenticated listener, but only where the requester may publish itself
// (the gateway publishes past the ACLs); and after a reload that grants
// hmi commands and restarts the bus, hmi's command lands on the new bus.
func TestCommandsUnderACLs(t *testing.T) {
	dev := testpeer.StartTCP(t, writesSpec())
	brokerAddr, httpAddr := loopbackAddr(t), loopbackAddr(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	hashes := [3]string{bcryptHash(t, "hmi-pw"), bcryptHash(t, "scada-pw"), bcryptHash(t, "viewer-pw")}
	write := func(hmiWrites bool, interval string) {
		t.Helper()
		text := `
gateway: {id: it, data_dir: "` + dir + `"}
broker:
  listen: "` + brokerAddr + `"
` + aclUsers(hashes, hmiWrites) + `
http: {listen: "` + httpAddr + `"}
adapters:
  - name: bus
    type: modbus
    transport: tcp
    address: ` + dev.Addr + `
    timeout: 1s
` + strings.Replace(writesDevice, "interval: 500ms", "interval: "+interval, 1)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(false, "500ms")
	g, logs, hup := runGatewayFile(t, path)

	hmi := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "it/#", QoS: 1, Username: "hmi", Password: "hmi-pw"})
	viewer := testpeer.Subscribe(t, testpeer.SubOptions{Addr: brokerAddr, Filter: "it/#", QoS: 1, Username: "viewer", Password: "viewer-pw"})
	for _, s := range []*testpeer.Sub{hmi, viewer} {
		s.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/pump/speed" })
	}
	writesSeen := func() int {
		return len(slices.DeleteFunc(dev.Functions(1), func(fc int) bool { return fc != 5 && fc != 6 && fc != 15 && fc != 16 }))
	}

	// hmi may read, not command: over 3.1.1 the publish is acknowledged
	// and dropped, over 5 refused with 0x87. Either way the broker decides
	// before its acknowledgement, so once acknowledged it can never reach
	// the router.
	testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "it/pump/speed/set", Payload: []byte(`{"value": 1200, "id": "h1"}`), QoS: 1, Username: "hmi", Password: "hmi-pw"})
	v5 := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: brokerAddr, V5: true, Username: "hmi", Password: "hmi-pw"})
	v5.Send(map[string]any{"op": "pub", "topic": "it/pump/speed/set", "payload": `{"value": 1201, "id": "h2"}`, "qos": 1})
	v5.WaitEvent(t, 10*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "puback" })
	if got := dev.Get(1, testpeer.Holding, 0, 1); got[0] != 1500 || writesSeen() != 0 {
		t.Fatalf("after hmi's commands the device holds %d and saw %d writes", got[0], writesSeen())
	}
	if st := g.broker.Stats(); st.PublishesDenied != 2 {
		t.Errorf("broker counted %d denied publishes, want 2", st.PublishesDenied)
	}

	// scada may: carried out, and its result is the first and only one
	// hmi sees (a result for hmi's commands would have come before it).
	testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "it/pump/speed/set", Payload: []byte(`{"value": 1300, "id": "s1"}`), QoS: 1, Username: "scada", Password: "scada-pw"})
	res := hmi.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/pump/speed/set/result" })
	if r := jsonOf(t, res.Payload); r["id"] != "s1" || r["ok"] != true || r["value"] != 1300.0 {
		t.Errorf("first result hmi sees: %s", res.Payload)
	}
	for _, m := range hmi.Messages() {
		if m.Topic == "it/pump/speed/set" {
			t.Errorf("hmi received a command, which its ACL denies reading: %v", m)
		}
	}
	if got := dev.Get(1, testpeer.Holding, 0, 1); got[0] != 1300 || writesSeen() != 1 {
		t.Errorf("device holds %d after %d writes, want 1300 after one", got[0], writesSeen())
	}
	// viewer sees the new value, never a result: a message published after
	// the result reaches it, the result did not.
	if err := g.broker.Publish("it/marker", []byte("after the result"), false, 1); err != nil {
		t.Fatal(err)
	}
	viewer.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/marker" })
	sawValue := false
	for _, m := range viewer.Messages() {
		if strings.HasPrefix(m.Topic, "it/pump/speed/set") {
			t.Errorf("viewer received %v, which its ACL denies", m)
		}
		sawValue = sawValue || m.Topic == "it/pump/speed" && jsonOf(t, m.Payload)["value"] == 1300.0
	}
	if !sawValue {
		t.Error("viewer did not see the new value")
	}

	// MQTT 5 through the authenticated listener: the result comes back on
	// scada's response topic with its correlation data.
	resp, err := testpeer.Request(t, testpeer.RequestOptions{
		Addr: brokerAddr, Username: "scada", Password: "scada-pw",
		Topic: "it/pump/speed/set", Payload: `{"value": 1400, "id": "s2"}`,
		ResponseTopic: "replies/scada/1", CorrelationData: []byte("corr-1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := jsonOf(t, []byte(resp.Payload)); r["id"] != "s2" || r["ok"] != true || r["value"] != 1400.0 || !bytes.Equal(resp.CorrelationData, []byte("corr-1")) {
		t.Errorf("MQTT 5 response %+v", resp)
	}

	// A response topic scada may not publish to (a value topic) gets no
	// reply, and neither does a command topic it may publish to: the
	// reply there would be taken for a command (it has a "value") and
	// carried out on the pressure point. The results still come.
	sc := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: brokerAddr, V5: true, Username: "scada", Password: "scada-pw"})
	for _, f := range []string{"it/pump/speed", "it/pump/pressure/set/result", "it/pump/speed/set/result", "replies/scada/#"} {
		sc.Send(map[string]any{"op": "sub", "filter": f, "qos": 1})
	}
	waitSubacks(t, sc, 4)
	denied := g.broker.Stats().PublishesDenied
	before := writesSeen()
	for i, rt := range []string{"it/pump/speed", "it/pump/pressure/set", "replies/scada/2"} {
		sc.Send(map[string]any{"op": "pub", "topic": "it/pump/speed/set", "payload": fmt.Sprintf(`{"value": %d, "id": "r%d"}`, 1450+i, i), "qos": 1,
			"props": map[string]any{"ResponseTopic": rt, "CorrelationData": "00"}})
	}
	// Commands of one client to one bus are answered in order: once the
	// third reply is in, the first two would have been too.
	sc.WaitEvent(t, 10*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "msg" && e.Topic == "replies/scada/2" })
	results := 0
	for _, e := range sc.Events() {
		switch {
		case e.Ev != "msg":
		case e.Topic == "it/pump/speed/set/result":
			results++
		case e.Topic == "it/pump/speed" && strings.Contains(e.Payload, `"ok"`):
			t.Errorf("a reply was published on the value topic: %s", e.Payload)
		case e.Topic == "it/pump/pressure/set/result":
			t.Errorf("the reply on a command topic was carried out: %s", e.Payload)
		}
	}
	if results != 3 {
		t.Errorf("%d results, want 3", results)
	}
	if got := g.broker.Stats().PublishesDenied - denied; got != 1 {
		t.Errorf("%d more denied publishes, want 1 (the withheld response topic)", got)
	}
	if n := writesSeen() - before; n != 3 {
		t.Errorf("%d writes for three commands", n)
	}
	if p := dev.Get(1, testpeer.Holding, 1, 2); p[0] != 0 || p[1] != 0 {
		t.Errorf("pressure registers %v: a reply was carried out as a command", p)
	}
	if !strings.Contains(logs.String(), "the client may not publish there") {
		t.Error("the withheld response topic is not logged")
	}

	// The counters on /metrics, read with scada's credentials.
	m := scrapeAs(t, "http://"+httpAddr, "scada", "scada-pw")
	for series, want := range map[string]float64{
		`fieldbridge_broker_publishes_denied_total`:                  3,
		`fieldbridge_commands_received_total`:                        5,
		`fieldbridge_commands_total{result="ok"}`:                    5,
		`fieldbridge_modbus_writes_total{adapter="bus",result="ok"}`: 5,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}

	// A reload grants hmi commands and restarts the bus (a new interval):
	// hmi's next command is carried out, on the new bus.
	write(true, "400ms")
	hup <- syscall.SIGHUP
	waitUntil(t, 10*time.Second, "the reload", func() bool { return strings.Contains(logs.String(), "config reloaded") })
	hmi.Reset()
	testpeer.Publish(t, testpeer.PubOptions{Addr: brokerAddr, Topic: "it/pump/speed/set", Payload: []byte(`{"value": 1600, "id": "h3"}`), QoS: 1, Username: "hmi", Password: "hmi-pw"})
	res = hmi.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return m.Topic == "it/pump/speed/set/result" })
	if r := jsonOf(t, res.Payload); r["id"] != "h3" || r["ok"] != true || r["value"] != 1600.0 {
		t.Errorf("hmi's command after the reload: %s", res.Payload)
	}
	if got := dev.Get(1, testpeer.Holding, 0, 1); got[0] != 1600 {
		t.Errorf("device holds %d, want 1600", got[0])
	}
	if !strings.Contains(logs.String(), "buses reloaded") {
		t.Error("the bus was not restarted by the reload")
	}
}

// waitSubacks waits for n SUBACKs, each granting its filter.
func waitSubacks(t *testing.T, c *testpeer.Paho, n int) {
	t.Helper()
	seen := 0
	c.WaitEvent(t, 10*time.Second, func(e testpeer.PahoEvent) bool {
		if e.Ev == "suback" {
			if len(e.Codes) != 1 || e.Codes[0] >= 0x80 {
				t.Fatalf("subscription refused: %+v", e)
			}
			seen++
		}
		return seen == n
	})
}
