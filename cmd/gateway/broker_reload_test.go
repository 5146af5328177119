package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestReloadBroker: SIGHUP applies broker: changes to the running gateway
// while the bridge forwards 1,000 messages a second to mosquitto and a bus
// polls pymodbus. The reload adds a TLS listener, removes a plain one, cuts
// a user from readwrite to read and revokes another; then a busy port and a
// missing certificate are rejected and the broker stays as it was. The
// cloud and a client of the unchanged listener get every message in order,
// the bus is never restarted and its values reach the new listener.
func TestReloadBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (pymodbus, mosquitto, paho)")
	}
	dev := testpeer.StartTCP(t, testpeer.DeviceSpec{Units: map[byte]testpeer.UnitSpec{1: {Holding: map[uint16]uint16{0: 70}}}})
	m := testpeer.StartMosquitto(t, testpeer.MosquittoOptions{MaxQueuedMessages: 100000})
	certs := testpeer.GenerateCerts(t, t.TempDir())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addrA, addrB, addrC := freeAddr(t), freeAddr(t), freeAddr(t)
	hashOf := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	admin := fmt.Sprintf("{username: admin, password_hash: %q}", hashOf("admin-pw"))
	scadaHash := hashOf("scada-pw")
	scada := func(access string) string {
		return fmt.Sprintf("{username: scada, password_hash: %q, acl: [{filter: \"it/#\", access: %s}]}", scadaHash, access)
	}
	temp := fmt.Sprintf("{username: temp, password_hash: %q}", hashOf("temp-pw"))
	dir := t.TempDir()
	text := func(listeners, users []string) string {
		return fmt.Sprintf(`gateway: {id: it, data_dir: %s}
broker:
  listeners:
    - %s
  users:
    - %s
adapters:
  - name: line
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
bridge:
  upstreams: [{url: "tcp://%s"}]
  keepalive: 2s
  connect_timeout: 2s
  backoff_initial: 50ms
  backoff_max: 200ms
  forward: [{filter: "it/load"}]
`, filepath.Join(dir, "data"), strings.Join(listeners, "\n    - "), strings.Join(users, "\n    - "), dev.Addr, m.Addr())
	}
	plain := func(addr string) string { return fmt.Sprintf("{type: tcp, address: %q}", addr) }
	tlsOn := func(addr, cert string) string {
		return fmt.Sprintf("{type: tls, address: %q, cert_file: %s, key_file: %s}", addr, cert, certs.ServerKeyFile)
	}

	path := filepath.Join(dir, "gateway.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(withoutHTTP(s)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(text([]string{plain(addrA), plain(addrB)}, []string{admin, scada("readwrite"), temp}))
	g, logs, hup := runGatewayFile(t, path)

	cloud := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "it/load", QoS: 1})
	watcher := testpeer.Subscribe(t, testpeer.SubOptions{Addr: addrA, Filter: "it/load", QoS: 1, Username: "admin", Password: "admin-pw"})
	values := testpeer.Subscribe(t, testpeer.SubOptions{Addr: addrA, Filter: "it/boiler/temp", Username: "admin", Password: "admin-pw"})
	values.WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return true })
	sc := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrA, V5: true, Username: "scada", Password: "scada-pw"})
	tmp := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrA, V5: true, Username: "temp", Password: "temp-pw"})
	onB := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrB, V5: true, Username: "admin", Password: "admin-pw"})
	for _, c := range []*testpeer.Paho{sc, tmp, onB} {
		if e := c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); e.RC != 0 {
			t.Fatalf("connack %+v", e)
		}
	}
	commands := &recorder{}
	unsub, err := g.broker.Subscribe("it/+/+/set", commands.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	sc.Send(map[string]any{"op": "pub", "topic": "it/boiler/temp/set", "payload": "before", "qos": 1})
	waitUntil(t, 5*time.Second, "scada's command before the reload", func() bool { return commands.count() == 1 })
	waitUntil(t, 10*time.Second, "the bridge connected", func() bool { return g.bridge.Stats().Connected })
	line := g.currentBuses()[0]

	stopLoad := publishLoad(t, t.Context(), g, "it/load")

	reloads := 0
	reload := func(step, want string) string {
		t.Helper()
		reloads++
		hup <- syscall.SIGHUP
		var out string
		waitUntil(t, 20*time.Second, step+": "+want, func() bool {
			all := logs.String()
			if strings.Count(all, "msg=\"reloading the config\"") != reloads {
				return false
			}
			out = all[strings.LastIndex(all, "reloading the config"):]
			return strings.Contains(out, "config reloaded") || strings.Contains(out, "config rejected")
		})
		if !strings.Contains(out, want) {
			t.Fatalf("%s: want %q in the reload's log:\n%s", step, want, out)
		}
		if buses := g.currentBuses(); len(buses) != 1 || buses[0] != line {
			t.Fatalf("%s: the bus was restarted", step)
		}
		return out
	}

	time.Sleep(200 * time.Millisecond) // some load before the reload
	write(text([]string{plain(addrA), tlsOn(addrC, certs.ServerCertFile)}, []string{admin, scada("read")}))
	out := reload("listeners, ACL and users changed", "broker reconfigured")
	if strings.Contains(out, "take effect only after a restart") {
		t.Errorf("a broker change still asks for a restart:\n%s", out)
	}
	if got := g.broker.Addrs(); len(got) != 2 || got[0] != addrA || got[1] != addrC {
		t.Errorf("broker addresses %v, want %s, %s", got, addrA, addrC)
	}
	// The polled values reach a client of the new TLS listener.
	testpeer.Subscribe(t, testpeer.SubOptions{Addr: addrC, Filter: "it/boiler/temp", CAFile: certs.CAFile, Username: "admin", Password: "admin-pw"}).
		WaitFor(t, 10*time.Second, func(m testpeer.Message) bool { return string(m.Payload) != "" })
	disconnected(t, onB, 0x98)
	disconnected(t, tmp, 0x87)
	if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addrA, Topic: "it/x", Payload: []byte("1"), Username: "temp", Password: "temp-pw"}); err == nil {
		t.Error("the revoked user still admitted")
	}
	denied := g.broker.Stats().PublishesDenied
	sc.Send(map[string]any{"op": "pub", "topic": "it/boiler/temp/set", "payload": "after", "qos": 1})
	waitUntil(t, 5*time.Second, "scada's command to be denied", func() bool { return g.broker.Stats().PublishesDenied == denied+1 })
	stillConnected(t, sc, "scada, now read-only")
	if commands.count() != 1 {
		t.Errorf("a read-only user's command went through: %v", commands.list())
	}

	// Rejected: a busy port, a missing certificate. Nothing changes.
	write(text([]string{plain(addrA), tlsOn(addrC, certs.ServerCertFile), plain(busy.Addr().String())}, []string{admin, scada("read")}))
	reload("a busy port", "config: broker: listeners[2] (tcp): listen on "+busy.Addr().String()+": address already in use — is another MQTT broker (mosquitto) running?")
	write(text([]string{plain(addrA), tlsOn(addrC, filepath.Join(dir, "missing.pem"))}, []string{admin, temp}))
	reload("a missing certificate", "broker.listeners[1].cert_file: cannot read "+filepath.Join(dir, "missing.pem"))
	if got := g.broker.Addrs(); len(got) != 2 || got[0] != addrA || got[1] != addrC {
		t.Errorf("after the rejected reloads: broker addresses %v", got)
	}
	if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addrA, Topic: "it/x", Payload: []byte("1"), Username: "temp", Password: "temp-pw"}); err == nil {
		t.Error("a rejected config's user admitted")
	}
	stillConnected(t, sc, "scada, after the rejected reloads")
	seen := values.Count()
	values.WaitCount(t, seen+3, 10*time.Second) // the bus still publishing to the unchanged listener

	time.Sleep(200 * time.Millisecond) // some load after the last reload
	sent := stopLoad()
	last := strconv.Itoa(sent - 1)
	cloud.WaitFor(t, 30*time.Second, func(m testpeer.Message) bool { return string(m.Payload) == last })
	watcher.WaitFor(t, 30*time.Second, func(m testpeer.Message) bool { return string(m.Payload) == last })
	for name, sub := range map[string]*testpeer.Sub{"the cloud": cloud, "the unchanged listener's client": watcher} {
		got := make([]bool, sent)
		prev := -1
		for _, msg := range sub.Messages() {
			k, err := strconv.Atoi(string(bytes.TrimSpace(msg.Payload)))
			if err != nil || k < 0 || k >= sent {
				t.Fatalf("%s: unexpected payload %q", name, msg.Payload)
			}
			if !got[k] && k < prev {
				t.Fatalf("%s: %d first arrived after %d", name, k, prev)
			}
			got[k], prev = true, max(prev, k)
		}
		for k, ok := range got {
			if !ok {
				t.Fatalf("%s: message %d of %d missing", name, k, sent)
			}
		}
	}
	if st := g.bridge.Stats(); st.HandoffOverflow+st.DroppedFull+st.DroppedShutdown != 0 {
		t.Errorf("bridge drops: %+v", st)
	}
	t.Logf("%d messages over %d reloads, all received by the cloud and the unchanged listener's client", sent, reloads)
}

// recorder records in-process deliveries.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) handle(topic string, payload []byte, _ bool, _ byte, _ string) {
	r.mu.Lock()
	r.got = append(r.got, topic+" "+string(payload))
	r.mu.Unlock()
}

func (r *recorder) count() int { return len(r.list()) }

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func disconnected(t *testing.T, c *testpeer.Paho, rc int) {
	t.Helper()
	if e := c.WaitEvent(t, 10*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "disconnect" }); e.RC != rc {
		t.Errorf("disconnect reason %#x, want %#x", e.RC, rc)
	}
}

func stillConnected(t *testing.T, c *testpeer.Paho, who string) {
	t.Helper()
	for _, e := range c.Events() {
		if e.Ev == "disconnect" || e.Ev == "error" {
			t.Errorf("%s: %+v", who, e)
		}
	}
}
