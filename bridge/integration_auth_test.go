package bridge_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fieldbridge/fieldbridge/bridge"
	"github.com/fieldbridge/fieldbridge/internal/testpeer"
)

// TestTLSClientCertificate: TLS with a generated CA and a client
// certificate that the broker requires and takes the username from.
func TestTLSClientCertificate(t *testing.T) {
	dir := t.TempDir()
	certs := testpeer.GenerateCerts(t, dir)
	m := cloud(t, testpeer.MosquittoOptions{TLS: &testpeer.MosquittoTLS{
		CAFile: certs.CAFile, CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile,
		RequireCertificate: true, UseIdentityAsUsername: true,
	}})
	local := startLocal(t)
	cfg := forwardConfig("tls://" + m.TLSAddr())
	cfg.TLS = bridge.TLS{CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile}
	br := startBridge(t, local, cfg)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/#", QoS: 1})
	waitFor(t, 10*time.Second, "connected over TLS", func() bool { return br.Stats().Connected })
	testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/tls", Payload: []byte("secure"), QoS: 1})
	sub.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool {
		return msg.Topic == "site-a/plant1/tls" && string(msg.Payload) == "secure"
	})
	if !strings.Contains(m.Log(), certs.ClientName) {
		t.Errorf("the broker log does not name the client certificate %q", certs.ClientName)
	}
}

// TestTLSWrongCA: a broker certificate from another CA is refused with a
// clear error, logged once, counted and retried; the bridge keeps running
// and queueing.
func TestTLSWrongCA(t *testing.T) {
	dir := t.TempDir()
	certs := testpeer.GenerateCerts(t, dir)
	m := cloud(t, testpeer.MosquittoOptions{TLS: &testpeer.MosquittoTLS{
		CAFile: certs.CAFile, CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile,
	}})
	local := startLocal(t)
	cfg := forwardConfig("tls://" + m.TLSAddr())
	cfg.TLS.CAFile = filepath.Join(dir, "untrusted-ca.pem") // GenerateCerts' second CA
	br := startBridge(t, local, cfg)
	waitFor(t, 10*time.Second, "several attempts", func() bool { return br.Stats().ConnectFailures >= 3 })
	testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/x", Payload: []byte("kept"), QoS: 1})
	waitFor(t, 5*time.Second, "the message queued", func() bool { return br.Stats().Pending == 1 })

	logs := br.log.String()
	var warned []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "cannot connect") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "certificate signed by unknown authority") {
		t.Errorf("want one warning naming the certificate problem, got:\n%s", strings.Join(warned, "\n"))
	}
	if st := br.Stats(); st.Connected || st.Connects != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestPasswordAuth: username and password (from a file) are accepted; a
// wrong password is refused and retried without a crash.
func TestPasswordAuth(t *testing.T) {
	m := cloud(t, testpeer.MosquittoOptions{Users: map[string]string{"plant1": "s3cret pass", "ops": "ops"}})
	passFile := filepath.Join(t.TempDir(), "upstream.pass")
	if err := os.WriteFile(passFile, []byte("s3cret pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	local := startLocal(t)
	sub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Username: "ops", Password: "ops", Filter: "site-a/#", QoS: 1})

	bad := forwardConfig("tcp://" + m.Addr())
	bad.Username, bad.Password = "plant1", "wrong"
	wrong := startBridge(t, local, bad)
	waitFor(t, 10*time.Second, "refused attempts", func() bool { return wrong.Stats().ConnectFailures >= 2 })
	wrong.stop()
	if logs := wrong.log.String(); !strings.Contains(logs, "not Authorized") || strings.Contains(logs, "wrong") {
		t.Errorf("want the refusal logged and the password not:\n%s", logs)
	}

	good := forwardConfig("tcp://" + m.Addr())
	good.Username, good.PasswordFile = "plant1", passFile
	br := startBridge(t, local, good)
	waitFor(t, 10*time.Second, "connected with a password", func() bool { return br.Stats().Connected })
	testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/auth", Payload: []byte("ok"), QoS: 1})
	sub.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool { return msg.Topic == "site-a/plant1/auth" })
	if logs := br.log.String(); strings.Contains(logs, "s3cret") {
		t.Errorf("the password appears in the log:\n%s", logs)
	}
}

// TestDownlinkAndStatus: the birth is seen on the cloud, a cloud command
// reaches the local broker under its stripped topic and is not forwarded
// back, a retained command is not replayed, and a clean stop leaves
// "offline" retained.
func TestDownlinkAndStatus(t *testing.T) {
	m := cloud(t, testpeer.MosquittoOptions{})
	// A stale retained command waiting on the cloud before the gateway
	// connects: it must not be carried out.
	testpeer.Publish(t, testpeer.PubOptions{Addr: m.Addr(), Topic: "site-a/plant1/pump/speed/set", Payload: []byte("stale"), QoS: 1, Retain: true})
	local := startLocal(t)
	localSub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: local.Addr(), Filter: "plant1/#", QoS: 1})
	cloudSub := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/#", QoS: 1})

	cfg := forwardConfig("tcp://" + m.Addr())
	cfg.Subscribe = []bridge.SubscribeRule{{Filter: "site-a/plant1/+/+/set", StripPrefix: "site-a/"}}
	br := startBridge(t, local, cfg)
	cloudSub.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool {
		return msg.Topic == "site-a/plant1/status" && string(msg.Payload) == "online"
	})
	waitFor(t, 10*time.Second, "the retained command ignored", func() bool { return br.Stats().DownlinkRetainedIgnored == 1 })

	testpeer.Publish(t, testpeer.PubOptions{Addr: m.Addr(), Topic: "site-a/plant1/pump/speed/set", Payload: []byte("42"), QoS: 1})
	got := localSub.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool { return msg.Topic == "plant1/pump/speed/set" })
	if string(got.Payload) != "42" || got.Retained {
		t.Errorf("local command %v", got)
	}
	// A marker through the uplink: once it arrived, anything forwarded
	// before it has too (FIFO).
	testpeer.Publish(t, testpeer.PubOptions{Addr: local.Addr(), Topic: "plant1/marker", Payload: []byte("m"), QoS: 1})
	cloudSub.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool { return msg.Topic == "site-a/plant1/marker" })
	n := 0
	for _, msg := range cloudSub.Messages() {
		if msg.Topic == "site-a/plant1/pump/speed/set" && !msg.Retained {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the cloud saw the command %d times, want once (loop protection)", n)
	}
	for _, msg := range localSub.Messages() {
		if string(msg.Payload) == "stale" {
			t.Errorf("the stale retained command reached the local broker")
		}
	}
	if st := br.Stats(); st.LoopSkipped != 1 || st.DownlinkReceived != 2 || st.DownlinkFailed != 0 {
		t.Errorf("stats %+v", st)
	}

	br.stop()
	cloudSub.WaitFor(t, 10*time.Second, func(msg testpeer.Message) bool {
		return msg.Topic == "site-a/plant1/status" && string(msg.Payload) == "offline"
	})
	status := testpeer.Subscribe(t, testpeer.SubOptions{Addr: m.Addr(), Filter: "site-a/plant1/status"})
	if msg := status.WaitFor(t, 5*time.Second, func(testpeer.Message) bool { return true }); !msg.Retained || string(msg.Payload) != "offline" {
		t.Errorf("retained status after a clean stop: %v", msg)
	}
}
