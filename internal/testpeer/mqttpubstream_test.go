package testpeer

import (
	"fmt"
	"testing"
	"time"
)

func TestPublisherStreams(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{})
	s := Subscribe(t, SubOptions{Addr: m.Addr(), Filter: "stream/#", QoS: 1})
	p := StartPublisher(t, PubOptions{Addr: m.Addr(), Topic: "stream/a", QoS: 1})
	const n = 200
	for i := range n {
		if err := p.Send(fmt.Appendf(nil, "%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Send([]byte("two\nlines")); err == nil {
		t.Error("Send accepted a newline")
	}
	s.WaitCount(t, n, 10*time.Second)
	waitUntilT(t, func() bool { return p.Acked() == n }, "every PUBACK")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i, msg := range s.Messages() {
		if want := fmt.Sprintf("%04d", i); string(msg.Payload) != want || msg.Topic != "stream/a" {
			t.Fatalf("message %d = %v, want %s on stream/a", i, msg, want)
		}
	}
	if p.Sent() != n || p.Acked() != n || len(p.AckedAt()) != n {
		t.Fatalf("Sent %d, Acked %d, AckedAt %d, want %d", p.Sent(), p.Acked(), len(p.AckedAt()), n)
	}

	// When the broker dies, Send fails once mosquitto_pub has gone, and
	// Kill is safe to call.
	p = StartPublisher(t, PubOptions{Addr: m.Addr(), Topic: "stream/b", QoS: 1})
	m.Kill()
	p.Kill()
	if err := p.Send([]byte("late")); err == nil {
		t.Error("Send after Kill succeeded")
	}
}

func waitUntilT(t *testing.T, cond func() bool, what string) {
	t.Helper()
	if err := waitUntil(10*time.Second, what, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatal(err)
	}
}
