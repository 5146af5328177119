package testpeer

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestMosquittoSubPubRetain(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{})

	// A retained message with spaces and a newline, published before the
	// subscription, arrives with the retain flag.
	payload := []byte("hello world\nsecond line \x00\xff")
	Publish(t, PubOptions{Addr: m.Addr(), Topic: "site/dev 1/state", Payload: payload, QoS: 1, Retain: true})
	s := Subscribe(t, SubOptions{Addr: m.Addr(), Filter: "site/#", QoS: 1})
	got := s.WaitFor(t, 5*time.Second, func(m Message) bool { return m.Topic == "site/dev 1/state" })
	if !got.Retained || !bytes.Equal(got.Payload, payload) || got.QoS != 1 {
		t.Fatalf("retained message = %v, want retained %q at QoS 1", got, payload)
	}

	// A live message is not flagged retained even if published with retain;
	// an empty payload is a zero-length message.
	Publish(t, PubOptions{Addr: m.Addr(), Topic: "site/live", Payload: []byte("x"), Retain: true})
	Publish(t, PubOptions{Addr: m.Addr(), Topic: "site/empty"})
	live := s.WaitFor(t, 5*time.Second, func(m Message) bool { return m.Topic == "site/live" })
	if live.Retained || string(live.Payload) != "x" || live.QoS != 0 {
		t.Fatalf("live message = %v", live)
	}
	empty := s.WaitFor(t, 5*time.Second, func(m Message) bool { return m.Topic == "site/empty" })
	if len(empty.Payload) != 0 {
		t.Fatalf("empty message = %v", empty)
	}
	if s.Count() != 3 {
		t.Fatalf("Count() = %d, want 3: %v", s.Count(), s.Messages())
	}
}

func TestMosquittoRestartSamePort(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{Persistence: true})
	addr := m.Addr()
	s := Subscribe(t, SubOptions{Addr: addr, ClientID: "keeper", Filter: "q/#", QoS: 1, Persistent: true})

	start := time.Now()
	m.Stop()
	t.Logf("Stop took %v", time.Since(start))
	if m.Running() || dialable(addr) {
		t.Fatalf("broker still reachable after Stop")
	}
	start = time.Now()
	m.Start()
	t.Logf("Start on the same port took %v", time.Since(start))
	if m.Addr() != addr {
		t.Fatalf("address changed: %s -> %s", addr, m.Addr())
	}
	// mosquitto_sub reconnects by itself and resubscribes.
	Publish(t, PubOptions{Addr: m.Addr(), Topic: "q/after-restart", Payload: []byte("1"), QoS: 1})
	s.WaitFor(t, 10*time.Second, func(m Message) bool { return m.Topic == "q/after-restart" })

	// Kill and start again: also on the same port.
	start = time.Now()
	m.Kill()
	m.Start()
	t.Logf("Kill and Start took %v", time.Since(start))
	Publish(t, PubOptions{Addr: m.Addr(), Topic: "q/after-kill", Payload: []byte("2"), QoS: 1})
	s.WaitFor(t, 10*time.Second, func(m Message) bool { return m.Topic == "q/after-kill" })
}

func TestMosquittoTLS(t *testing.T) {
	certs := GenerateCerts(t, t.TempDir())
	m := StartMosquitto(t, MosquittoOptions{TLS: &MosquittoTLS{
		CAFile: certs.CAFile, CertFile: certs.ServerCertFile, KeyFile: certs.ServerKeyFile,
		RequireCertificate: true, UseIdentityAsUsername: true,
	}})
	s := Subscribe(t, SubOptions{Addr: m.Addr(), Filter: "tls/#"})

	pub := PubOptions{
		Addr: m.TLSAddr(), Topic: "tls/hello", Payload: []byte("over tls"), QoS: 1,
		CAFile: certs.CAFile, CertFile: certs.ClientCertFile, KeyFile: certs.ClientKeyFile,
	}
	Publish(t, pub)
	s.WaitFor(t, 5*time.Second, func(m Message) bool { return m.Topic == "tls/hello" && string(m.Payload) == "over tls" })
	if !strings.Contains(m.Log(), "as "+certs.ClientName) && !strings.Contains(m.Log(), "u'"+certs.ClientName+"'") {
		t.Errorf("broker log does not show the certificate's name %q as the username", certs.ClientName)
	}

	// The same with host name "localhost" (the other SAN).
	_, port, _ := net.SplitHostPort(m.TLSAddr())
	local := pub
	local.Addr, local.Topic = net.JoinHostPort("localhost", port), "tls/localhost"
	Publish(t, local)
	s.WaitFor(t, 5*time.Second, func(m Message) bool { return m.Topic == "tls/localhost" })

	noCert := pub
	noCert.CertFile, noCert.KeyFile, noCert.Topic = "", "", "tls/x"
	if err := TryPublish(t, noCert); err == nil {
		t.Errorf("publish without a client certificate was accepted")
	}
	untrusted := pub
	untrusted.CertFile, untrusted.KeyFile, untrusted.Topic = certs.UntrustedCertFile, certs.UntrustedKeyFile, "tls/x"
	if err := TryPublish(t, untrusted); err == nil {
		t.Errorf("publish with an untrusted client certificate was accepted")
	}
	if n := s.Count(); n != 2 {
		t.Errorf("subscriber got %d messages, want 2: %v", n, s.Messages())
	}
}

func TestMosquittoPasswords(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{Users: map[string]string{"gw": "s3cret", "ops": "x y"}})
	if err := TryPublish(t, PubOptions{Addr: m.Addr(), Topic: "a", Payload: []byte("1")}); err == nil {
		t.Errorf("anonymous publish was accepted")
	}
	if err := TryPublish(t, PubOptions{Addr: m.Addr(), Username: "gw", Password: "wrong", Topic: "a", Payload: []byte("1")}); err == nil {
		t.Errorf("wrong password was accepted")
	}
	s := Subscribe(t, SubOptions{Addr: m.Addr(), Username: "ops", Password: "x y", Filter: "a"})
	Publish(t, PubOptions{Addr: m.Addr(), Username: "gw", Password: "s3cret", Topic: "a", Payload: []byte("1")})
	s.WaitCount(t, 1, 5*time.Second)
}

func TestPublishLinesBurst(t *testing.T) {
	const n = 20000
	m := StartMosquitto(t, MosquittoOptions{MaxQueuedMessages: n + 100, MaxInflightMessages: 20})
	s := Subscribe(t, SubOptions{Addr: m.Addr(), Filter: "burst", QoS: 1})
	lines := make([][]byte, n)
	for i := range lines {
		lines[i] = fmt.Appendf(nil, "%06d %s", i, strings.Repeat("x", 100))
	}
	start := time.Now()
	PublishLines(t, PubOptions{Addr: m.Addr(), Topic: "burst", QoS: 1}, lines)
	sent := time.Since(start)
	s.WaitCount(t, n, 30*time.Second)
	t.Logf("%d QoS 1 messages: published in %v, all received after %v", n, sent, time.Since(start))
	for i, msg := range s.Messages() {
		if !bytes.Equal(msg.Payload, lines[i]) {
			t.Fatalf("message %d = %q, want %q", i, msg.Payload, lines[i])
		}
	}
}
