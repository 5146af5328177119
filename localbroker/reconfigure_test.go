package localbroker

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// freeAddr is a loopback address no one listens on (a moment ago).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// reconfigure applies next as a reload does: checked, prepared, committed.
func reconfigure(t *testing.T, b *Broker, next Config) []string {
	t.Helper()
	next.Check(failReporter{t})
	c, err := b.Prepare(next)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return c.Commit()
}

// numbered records the numbers published on one topic, in arrival order.
type numbered struct {
	mu  sync.Mutex
	got []int
}

func (n *numbered) handle(_ string, payload []byte, _ bool, _ byte, _ string) {
	k, _ := strconv.Atoi(string(payload))
	n.mu.Lock()
	n.got = append(n.got, k)
	n.mu.Unlock()
}

func (n *numbered) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.got)
}

// checkSequence fails unless got is exactly 0..sent-1 in order.
func checkSequence(t *testing.T, who string, got []int, sent int) {
	t.Helper()
	if len(got) != sent {
		t.Errorf("%s: %d of %d messages", who, len(got), sent)
	}
	for i, k := range got {
		if k != i {
			t.Errorf("%s: message %d is %d: lost or out of order", who, i, k)
			return
		}
	}
}

func disconnected(t *testing.T, c *testpeer.Paho, rc int) {
	t.Helper()
	e := c.WaitEvent(t, 10*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "disconnect" })
	if e.RC != rc {
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

// TestReconfigureWithClients: a reload that adds a TLS listener, removes a
// plain one, cuts a user from readwrite to read, revokes a user and
// changes a password, under load. The in-process subscription (the
// bridge's) and a client of the unchanged listener get every message, in
// order; the read-only user stays connected but publishes nothing more;
// the revoked user is disconnected, refused and its session deleted; the
// removed listener's clients are disconnected and its port closed; the
// user with a new password is disconnected, its session kept for the new
// password.
func TestReconfigureWithClients(t *testing.T) {
	certs := testpeer.GenerateCerts(t, t.TempDir())
	addrA, addrB, addrC := freeAddr(t), freeAddr(t), freeAddr(t)
	admin := User{Username: "admin", PasswordHash: hash(t, "admin-pw")}
	scadaHash := hash(t, "scada-pw")
	scada := func(access string) User {
		return User{Username: "scada", PasswordHash: scadaHash, ACL: []ACLRule{{Filter: "plant1/#", Access: access}}}
	}
	temp := User{Username: "temp", PasswordHash: hash(t, "temp-pw")}
	hmi := User{Username: "hmi", PasswordHash: hash(t, "hmi-pw"), ACL: []ACLRule{{Filter: "plant1/#", Access: "read"}}}
	hmi2 := hmi
	hmi2.PasswordHash = hash(t, "hmi-pw2")
	before := Config{Users: []User{admin, scada("readwrite"), temp, hmi}, Listeners: []ListenerConfig{
		{Type: "tcp", Address: addrA}, {Type: "tcp", Address: addrB}}}
	b := startWith(t, before, nil)

	bridge := &numbered{}
	unsub, err := b.Subscribe("plant1/load", bridge.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	device := &inlineRecorder{}
	unsubSet, err := b.Subscribe("plant1/+/+/set", device.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer unsubSet()
	if err := b.Publish("plant1/state", []byte("1"), true, 1); err != nil {
		t.Fatal(err)
	}

	watcher := testpeer.Subscribe(t, testpeer.SubOptions{Addr: addrA, Filter: "plant1/load", QoS: 1, Username: "admin", Password: "admin-pw"})
	sc := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrA, V5: true, Username: "scada", Password: "scada-pw"})
	sc.Send(map[string]any{"op": "sub", "filter": "plant1/state", "qos": 1})
	sc.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "msg" && e.Payload == "1" })
	sc.Send(map[string]any{"op": "pub", "topic": "plant1/pump/speed/set", "payload": "before", "qos": 1})
	waitFor(t, "scada's command before the reload", func() bool { return len(device.list()) == 1 })
	tmp := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrA, V5: true, Username: "temp", Password: "temp-pw"})
	testpeer.Subscribe(t, testpeer.SubOptions{Addr: addrA, Filter: "plant1/#", QoS: 1, ClientID: "temp-sub", Persistent: true, Username: "temp", Password: "temp-pw"})
	hm := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrA, V5: true, ClientID: "hmi-1", Persistent: true, SessionExpiry: 300, Username: "hmi", Password: "hmi-pw"})
	onB := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrB, V5: true, Username: "admin", Password: "admin-pw"})
	for _, c := range []*testpeer.Paho{tmp, hm, onB} {
		if e := c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); e.RC != 0 {
			t.Fatalf("connack %+v", e)
		}
	}

	// The load: numbered messages, published in-process as the adapters do.
	stop := make(chan struct{})
	var sent int
	var loadDone sync.WaitGroup
	loadDone.Add(1)
	go func() {
		defer loadDone.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := b.Publish("plant1/load", []byte(strconv.Itoa(sent)), false, 1); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			sent++
		}
	}()
	waitFor(t, "some load", func() bool { return bridge.count() > 200 })

	after := Config{Users: []User{admin, scada("read"), hmi2}, Listeners: []ListenerConfig{
		{Type: "tcp", Address: addrA},
		{Type: "tls", Address: addrC, CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile}}}
	if later := reconfigure(t, b, after); len(later) != 0 {
		t.Errorf("settings for the next start: %v", later)
	}
	if got := b.Addrs(); len(got) != 2 || got[0] != addrA || got[1] != addrC {
		t.Errorf("addresses %v, want %s and %s", got, addrA, addrC)
	}
	n := bridge.count()
	waitFor(t, "load after the reload", func() bool { return bridge.count() > n+200 })
	close(stop)
	loadDone.Wait()

	// The TLS listener serves, with the retained value.
	tlsSub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: addrC, Filter: "plant1/state", QoS: 1, CAFile: certs.CAFile, Username: "admin", Password: "admin-pw"})
	tlsSub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return string(m.Payload) == "1" })
	// The plain listener that was removed: its client is told, its port closed.
	disconnected(t, onB, 0x98)
	if c, err := net.DialTimeout("tcp", addrB, time.Second); err == nil {
		c.Close()
		t.Errorf("the removed listener %s still accepts connections", addrB)
	}
	// scada is read-only now: connected, reading, its command dropped.
	denied := b.Stats().PublishesDenied
	sc.Send(map[string]any{"op": "pub", "topic": "plant1/pump/speed/set", "payload": "after", "qos": 1})
	waitFor(t, "scada's command to be denied", func() bool { return b.Stats().PublishesDenied == denied+1 })
	if err := b.Publish("plant1/state", []byte("2"), true, 1); err != nil {
		t.Fatal(err)
	}
	sc.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "msg" && e.Payload == "2" })
	stillConnected(t, sc, "the read-only scada")
	if got := device.list(); len(got) != 1 {
		t.Errorf("the device side saw %q, want only the command from before the reload", got)
	}
	// temp is revoked: disconnected, refused, its session gone.
	disconnected(t, tmp, 0x87)
	tmp.Send(map[string]any{"op": "connect"})
	if e := tmp.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" && e.Conn == 2 }); e.RC != 0x86 {
		t.Errorf("the revoked user reconnecting: connack %#x, want 0x86", e.RC)
	}
	if _, ok := b.srv.Clients.Get("temp-sub"); ok {
		t.Error("the revoked user's persistent session was kept")
	}
	// hmi's password changed: disconnected, the old password refused, the
	// session there for the new one.
	disconnected(t, hm, 0x87)
	if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addrA, Topic: "plant1/x", Payload: []byte("1"), Username: "hmi", Password: "hmi-pw"}); err == nil {
		t.Error("hmi's old password still admitted")
	}
	hm2 := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrA, V5: true, ClientID: "hmi-1", Persistent: true, SessionExpiry: 300, Username: "hmi", Password: "hmi-pw2"})
	if e := hm2.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); e.RC != 0 || !e.SessionPresent {
		t.Errorf("hmi with its new password: connack %+v, want its session", e)
	}

	// Nothing lost, nothing out of order, for the in-process subscriber and
	// for the unchanged listener's client.
	watcher.WaitCount(t, sent, 20*time.Second)
	checkSequence(t, "the in-process subscription", bridge.got, sent)
	var got []int
	for _, m := range watcher.Messages() {
		k, _ := strconv.Atoi(string(m.Payload))
		got = append(got, k)
	}
	checkSequence(t, "the unchanged listener's client", got, sent)
	t.Logf("%d messages across the reload, all delivered in order", sent)
}

// TestReconfigureRejected: a listener that cannot open its address rejects
// the change, and the broker stays as it was: its listeners, their clients.
// A listener that moves to another type on its port gets it; a change that
// fails after that gives the port back to the old listener.
func TestReconfigureRejected(t *testing.T) {
	addrA := freeAddr(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	before := Config{Listeners: []ListenerConfig{{Type: "tcp", Address: addrA}}}
	b := startWith(t, before, nil)
	c := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrA, V5: true})
	intact := func(step string) {
		t.Helper()
		if got := b.Addrs(); len(got) != 1 || got[0] != addrA {
			t.Errorf("%s: addresses %v", step, got)
		}
		stillConnected(t, c, step)
		if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addrA, Topic: "plant1/x", Payload: []byte("1")}); err != nil {
			t.Errorf("%s: a new client: %v", step, err)
		}
	}
	prepareFails := func(step string, next Config, want string) {
		t.Helper()
		ch, err := b.Prepare(next)
		if err == nil {
			ch.Abort()
			t.Fatalf("%s: prepared", step)
		}
		var le *ListenError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a ListenError with %q", step, err, want)
		}
		intact(step)
	}

	next := Config{Listeners: []ListenerConfig{{Type: "tcp", Address: addrA}, {Type: "tcp", Address: busy.Addr().String()}}}
	next.Check(failReporter{t})
	prepareFails("a busy port", next, "address already in use")
	if ch, err := b.Prepare(next); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		if ch != nil {
			ch.Abort()
		}
		t.Errorf("a busy port: %v, want EADDRINUSE", err)
	}

	// A missing certificate (a config that skipped Check).
	prepareFails("a missing certificate", Config{Listeners: []ListenerConfig{{Type: "tcp", Address: addrA},
		{Type: "tls", Address: freeAddr(t), CertFile: filepath.Join(t.TempDir(), "missing.pem"), KeyFile: "k.pem"}}},
		"cert_file: cannot read")

	// tcp becomes ws on the same port, then the busy port fails: tcp is back.
	next = Config{Listeners: []ListenerConfig{{Type: "ws", Address: addrA}, {Type: "tcp", Address: busy.Addr().String()}}}
	next.Check(failReporter{t})
	prepareFails("a failure after a port changed hands", next, "address already in use")

	// Now for good: the ws listener takes the port, tcp clients are told.
	reconfigure(t, b, Config{Listeners: []ListenerConfig{{Type: "ws", Address: addrA}}})
	disconnected(t, c, 0x98)
	ws := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addrA, WebSocket: true})
	if e := ws.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); e.RC != 0 {
		t.Errorf("WebSocket on the port tcp had: %+v", e)
	}
}

// TestReconfigureLimits: max_clients applies at once; the limits mochi
// takes per connection are named for the next start.
func TestReconfigureLimits(t *testing.T) {
	addr := freeAddr(t)
	b := startWith(t, Config{Listeners: []ListenerConfig{{Type: "tcp", Address: addr}}}, nil)
	testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addr})
	later := reconfigure(t, b, Config{Listeners: []ListenerConfig{{Type: "tcp", Address: addr}}, MaxClients: 1, MaxInflight: 10, SessionExpiry: time.Minute})
	if strings.Join(later, ",") != "broker.max_inflight,broker.session_expiry" {
		t.Errorf("for the next start: %v", later)
	}
	v5 := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addr, V5: true})
	if e := v5.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); e.RC != 0x89 {
		t.Errorf("a second client with max_clients 1: connack %#x, want 0x89 (server busy)", e.RC)
	}
	if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addr, Topic: "x", Payload: []byte("1")}); err == nil {
		t.Error("a 3.1.1 client admitted beyond max_clients")
	}
	reconfigure(t, b, Config{Listeners: []ListenerConfig{{Type: "tcp", Address: addr}}})
	if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addr, Topic: "x", Payload: []byte("1")}); err != nil {
		t.Errorf("max_clients back to 64: %v", err)
	}
}

// TestReconfigureRenewsCertificate: a reload with the same config reads
// the certificate files again; the listener serves the new certificate to
// new connections and keeps its clients.
func TestReconfigureRenewsCertificate(t *testing.T) {
	first, second := testpeer.GenerateCerts(t, t.TempDir()), testpeer.GenerateCerts(t, t.TempDir())
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker.key")
	install := func(c testpeer.Certs) {
		for src, dst := range map[string]string{c.ServerCertFile: certFile, c.ServerKeyFile: keyFile} {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(first)
	addr := freeAddr(t)
	cfg := Config{Listeners: []ListenerConfig{{Type: "tls", Address: addr, CertFile: certFile, KeyFile: keyFile}}}
	b := startWith(t, cfg, nil)
	old := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addr, CAFile: first.CAFile})
	if e := old.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); e.RC != 0 {
		t.Fatalf("connack %+v", e)
	}
	install(second)
	reconfigure(t, b, cfg)
	if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addr, Topic: "x", Payload: []byte("1"), CAFile: second.CAFile}); err != nil {
		t.Errorf("the renewed certificate: %v", err)
	}
	if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addr, Topic: "x", Payload: []byte("1"), CAFile: first.CAFile}); err == nil {
		t.Error("the old certificate still served")
	}
	stillConnected(t, old, "the client of the renewed listener")
}

// TestReconfigureWhileClientsComeAndGo: reloads that change the ACLs while
// clients connect, publish and disconnect cleanly (mosquitto_pub, some with
// a will). Run with -race: mochi overwrites a client's will without
// synchronisation as the client leaves, so a reload must not read it there.
func TestReconfigureWhileClientsComeAndGo(t *testing.T) {
	pwHash := hash(t, "pw") // the same hash in every reload: a new one would disconnect the clients
	cfg := func(access string) Config {
		return Config{Listen: "127.0.0.1:0", Users: []User{{Username: "u", PasswordHash: pwHash,
			ACL: []ACLRule{{Filter: "churn/#", Access: access}}}}}
	}
	first := cfg("readwrite")
	first.Check(failReporter{t})
	b, err := New(first, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := &numbered{}
	if _, err := b.Subscribe("churn/n", got.handle); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	reloads := make(chan int)
	go func() {
		n := 0
		defer func() { reloads <- n }()
		// A reload every 2 ms: often enough to meet clients leaving, not
		// so often that the clients starve on a small machine.
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for access := "readwrite"; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if access == "readwrite" {
				access = "write"
			} else {
				access = "readwrite"
			}
			reconfigure(t, b, cfg(access))
		}
	}()
	const clients = 24
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := testpeer.PubOptions{Addr: b.Addr(), Topic: "churn/n", Payload: []byte(strconv.Itoa(i)), QoS: 1, Username: "u", Password: "pw"}
			if i%2 == 0 {
				o.Version = "mqttv5"
			}
			testpeer.Publish(t, o)
		}()
	}
	wg.Wait()
	close(stop)
	if n := <-reloads; n == 0 {
		t.Error("no reload ran while the clients came and went")
	}
	// mochi acknowledges a QoS 1 publish before it delivers it: the last
	// one may still be on its way when its mosquitto_pub has exited.
	waitFor(t, "every publish delivered", func() bool { return got.count() == clients })
}
