package localbroker

import (
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// plantUsers are the accounts of the example: a read-only HMI, a
// SCADA that may also set, and an admin without rules (full access).
func plantUsers(t *testing.T) []User {
	return []User{
		{Username: "hmi", PasswordHash: hash(t, "hmi-pw"), ACL: []ACLRule{{Filter: "plant1/#", Access: "read"}}},
		{Username: "scada", PasswordHash: hash(t, "scada-pw"), ACL: []ACLRule{
			{Filter: "plant1/+/+/set", Access: "write"}, {Filter: "plant1/#", Access: "readwrite"}}},
		{Username: "admin", PasswordHash: hash(t, "admin-pw")},
		{Username: "dev", PasswordHash: hash(t, "dev-pw"), ACL: []ACLRule{{Filter: "devices/%u/%c/#", Access: "readwrite"}}},
	}
}

// inlineRecorder is what the device side (the writes) sees: an in-process
// subscription.
type inlineRecorder struct {
	mu  sync.Mutex
	got []string
}

func (r *inlineRecorder) handle(topic string, payload []byte, _ bool, _ byte, _ string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, topic+" "+string(payload))
}

func (r *inlineRecorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func TestAuthentication(t *testing.T) {
	b := startWith(t, Config{Users: plantUsers(t)}, nil)
	pub := func(user, pw string) error {
		return testpeer.TryPublish(t, testpeer.PubOptions{Addr: b.Addr(), Topic: "plant1/x", Payload: []byte("1"), QoS: 1, Username: user, Password: pw})
	}
	if err := pub("", ""); err == nil {
		t.Error("anonymous client admitted although users are configured")
	}
	if err := pub("hmi", "wrong"); err == nil {
		t.Error("wrong password admitted")
	}
	if err := pub("nobody", "hmi-pw"); err == nil {
		t.Error("unknown user admitted")
	}
	if err := pub("scada", "scada-pw"); err != nil {
		t.Errorf("scada refused: %v", err)
	}
	// MQTT 5 sees the reason code.
	c := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), V5: true, Username: "hmi", Password: "nope"})
	if ack := c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); ack.RC != 0x86 {
		t.Errorf("MQTT 5 wrong password: CONNACK %#x, want 0x86", ack.RC)
	}
	if st := b.Stats(); st.AuthFailures < 4 {
		t.Errorf("auth failures counted: %d, want 4", st.AuthFailures)
	}
	if !b.Users().Verify("hmi", "hmi-pw") || b.Users().Verify("hmi", "scada-pw") {
		t.Error("Users.Verify")
	}
}

// TestReadOnlyUser: an HMI account reads values, but its …/set publishes
// never reach the device side or any subscriber; they are counted.
func TestReadOnlyUser(t *testing.T) {
	b := startWith(t, Config{Users: plantUsers(t)}, nil)
	device := &inlineRecorder{}
	unsub, err := b.Subscribe("plant1/+/+/set", device.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	if err := b.Publish("plant1/pump/speed", []byte("1500"), true, 1); err != nil {
		t.Fatal(err)
	}
	admin := testpeer.Subscribe(t, testpeer.SubOptions{Addr: b.Addr(), Filter: "#", QoS: 1, Username: "admin", Password: "admin-pw"})
	hmi := testpeer.Subscribe(t, testpeer.SubOptions{Addr: b.Addr(), Filter: "plant1/#", QoS: 1, Username: "hmi", Password: "hmi-pw"})
	hmi.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return m.Topic == "plant1/pump/speed" && string(m.Payload) == "1500" })

	// 3.1.1 at QoS 0 and 1 (acknowledged, dropped), MQTT 5 at QoS 1
	// (PUBACK 0x87).
	for _, qos := range []int{0, 1} {
		testpeer.Publish(t, testpeer.PubOptions{Addr: b.Addr(), Topic: "plant1/pump/speed/set", Payload: []byte("1200"), QoS: qos, Username: "hmi", Password: "hmi-pw"})
	}
	v5 := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), V5: true, Username: "hmi", Password: "hmi-pw"})
	v5.Send(map[string]any{"op": "pub", "topic": "plant1/pump/speed/set", "payload": "1100", "qos": 1})
	v5.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "puback" })
	// The SCADA account may set: its command arrives, and after it
	// everything earlier would have.
	testpeer.Publish(t, testpeer.PubOptions{Addr: b.Addr(), Topic: "plant1/pump/speed/set", Payload: []byte("1300"), QoS: 1, Username: "scada", Password: "scada-pw"})
	admin.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return m.Topic == "plant1/pump/speed/set" })
	if got := device.list(); len(got) != 1 || got[0] != "plant1/pump/speed/set 1300" {
		t.Errorf("the device side saw %q, want only scada's 1300", got)
	}
	for _, m := range admin.Messages() {
		if m.Topic == "plant1/pump/speed/set" && string(m.Payload) != "1300" {
			t.Errorf("a denied command reached a subscriber: %v", m)
		}
	}
	if st := b.Stats(); st.PublishesDenied != 3 {
		t.Errorf("denied publishes counted: %d, want 3", st.PublishesDenied)
	}
	// Outside its grant, a subscription is refused with the return code.
	for _, v5 := range []bool{false, true} {
		c := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: b.Addr(), V5: v5, Username: "hmi", Password: "hmi-pw"})
		c.Send(map[string]any{"op": "sub", "filter": "#", "qos": 1})
		ack := c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "suback" })
		want := 0x80
		if v5 {
			want = 0x87
		}
		if len(ack.Codes) != 1 || ack.Codes[0] != want {
			t.Errorf("v5=%v: SUBACK %v for #, want %#x", v5, ack.Codes, want)
		}
	}
	if st := b.Stats(); st.SubscriptionsRefused != 2 {
		t.Errorf("refused subscriptions counted: %d, want 2", st.SubscriptionsRefused)
	}
}

// TestACLSubstitution: %u and %c give each device its own branch.
func TestACLSubstitution(t *testing.T) {
	b := startWith(t, Config{Users: plantUsers(t)}, nil)
	seen := &inlineRecorder{}
	unsub, err := b.Subscribe("devices/#", seen.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	for _, topic := range []string{"devices/dev/cam1/status", "devices/dev/cam2/status", "devices/other/cam1/status"} {
		testpeer.Publish(t, testpeer.PubOptions{Addr: b.Addr(), ClientID: "cam1", Topic: topic, Payload: []byte("x"), QoS: 1, Username: "dev", Password: "dev-pw"})
	}
	if got := seen.list(); len(got) != 1 || got[0] != "devices/dev/cam1/status x" {
		t.Errorf("got %q, want only devices/dev/cam1/status", got)
	}
}

// TestTLSListeners: a TLS listener with a generated CA; with client_ca_file
// a client without a certificate, or with one from another CA, is refused;
// use_identity_as_username takes the CN as the user.
func TestTLSListeners(t *testing.T) {
	certs := testpeer.GenerateCerts(t, t.TempDir())
	users := plantUsers(t)
	users = append(users, User{Username: certs.ClientName, ACL: []ACLRule{{Filter: "plant1/#", Access: "read"}}})
	b := startWith(t, Config{Users: users, Listeners: []ListenerConfig{
		{Type: "tls", Address: "127.0.0.1:0", CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile},
		{Type: "tls", Address: "127.0.0.1:0", CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile,
			ClientCAFile: certs.CAFile, UseIdentityAsUsername: true},
	}}, nil)
	if err := b.Publish("plant1/pump/speed", []byte("1500"), true, 1); err != nil {
		t.Fatal(err)
	}
	addrs := b.Addrs()
	// Server certificate and password.
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: addrs[0], Filter: "plant1/#", QoS: 1, CAFile: certs.CAFile, Username: "hmi", Password: "hmi-pw"})
	sub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return string(m.Payload) == "1500" })
	// Client certificate: the CN is the user, with its read-only ACL.
	certSub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: addrs[1], Filter: "plant1/#", QoS: 1, CAFile: certs.CAFile,
		CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile})
	certSub.WaitFor(t, 5*time.Second, func(m testpeer.Message) bool { return string(m.Payload) == "1500" })
	testpeer.Publish(t, testpeer.PubOptions{Addr: addrs[1], Topic: "plant1/pump/speed/set", Payload: []byte("1"), QoS: 1,
		CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile})
	if st := b.Stats(); st.PublishesDenied != 1 {
		t.Errorf("the certificate user's publish: %d denied, want 1 (read-only)", st.PublishesDenied)
	}
	for name, o := range map[string]testpeer.PubOptions{
		"no client certificate":    {CAFile: certs.CAFile, Username: "admin", Password: "admin-pw"},
		"untrusted certificate":    {CAFile: certs.CAFile, CertFile: certs.UntrustedCertFile, KeyFile: certs.UntrustedKeyFile},
		"server not trusted by it": {CAFile: certs.UntrustedCertFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile},
	} {
		o.Addr, o.Topic, o.Payload, o.QoS = addrs[1], "plant1/x", []byte("1"), 1
		if err := testpeer.TryPublish(t, o); err == nil {
			t.Errorf("%s: admitted", name)
		}
	}
	if err := testpeer.TryPublish(t, testpeer.PubOptions{Addr: addrs[0], Topic: "plant1/x", Payload: []byte("1"), Username: "hmi", Password: "hmi-pw"}); err == nil {
		t.Error("plain MQTT on a TLS listener admitted")
	}
}

// TestWebSocketListeners: MQTT over WebSocket, plain and over TLS, with
// paho (the transport browser HMIs use).
func TestWebSocketListeners(t *testing.T) {
	certs := testpeer.GenerateCerts(t, t.TempDir())
	b := startWith(t, Config{Users: plantUsers(t), Listeners: []ListenerConfig{
		{Type: "ws", Address: "127.0.0.1:0"},
		{Type: "wss", Address: "127.0.0.1:0", CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile},
	}}, nil)
	if err := b.Publish("plant1/pump/speed", []byte("1500"), true, 1); err != nil {
		t.Fatal(err)
	}
	seen := &inlineRecorder{}
	unsub, err := b.Subscribe("plant1/hmi/#", seen.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	for i, addr := range b.Addrs() {
		o := testpeer.PahoOptions{Addr: addr, WebSocket: true, V5: i == 0, Username: "scada", Password: "scada-pw"}
		if i == 1 {
			o.CAFile = certs.CAFile
		}
		c := testpeer.StartPaho(t, o)
		if ack := c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); ack.RC != 0 {
			t.Fatalf("%s: connack %+v", addr, ack)
		}
		c.Send(map[string]any{"op": "sub", "filter": "plant1/pump/#", "qos": 1})
		c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "msg" && e.Payload == "1500" })
		c.Send(map[string]any{"op": "pub", "topic": "plant1/hmi/note", "payload": addr, "qos": 1})
		c.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "puback" })
		bad := testpeer.StartPaho(t, testpeer.PahoOptions{Addr: addr, WebSocket: true, CAFile: o.CAFile, Username: "scada", Password: "x"})
		if ack := bad.WaitEvent(t, 5*time.Second, func(e testpeer.PahoEvent) bool { return e.Ev == "connack" }); ack.RC == 0 {
			t.Errorf("%s: wrong password admitted", addr)
		}
	}
	if got := strings.Join(seen.list(), ","); strings.Count(got, "plant1/hmi/note") != 2 {
		t.Errorf("publishes over WebSocket: %q", got)
	}
}
