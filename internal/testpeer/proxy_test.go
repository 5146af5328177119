package testpeer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// startEcho runs a TCP echo server for the proxy tests.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// echoes reports whether msg comes back over c within wait.
func echoes(t *testing.T, c net.Conn, msg string, wait time.Duration) (bool, error) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		return false, err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, nil
		}
		return false, err
	}
	return string(buf) == msg, nil
}

func dialProxy(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProxy(t *testing.T) {
	p := StartProxy(t, startEcho(t))
	c := dialProxy(t, p.Addr())
	if ok, err := echoes(t, c, "ping", time.Second); !ok {
		t.Fatalf("no echo through the proxy: %v", err)
	}

	// Cut: the open connection ends, new ones are refused.
	p.Cut()
	if ok, err := echoes(t, c, "ping", time.Second); ok || err == nil {
		t.Fatalf("connection survived Cut: echoed=%v err=%v", ok, err)
	}
	if c2, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c2.Close()
		t.Fatalf("dial succeeded while cut")
	}

	// Restore: the same address works again.
	p.Restore()
	c = dialProxy(t, p.Addr())
	if ok, err := echoes(t, c, "again", time.Second); !ok {
		t.Fatalf("no echo after Restore: %v", err)
	}

	// Blackhole: the connection stays open, but nothing gets through in
	// either direction, and no close is passed on.
	p.Blackhole(true)
	if ok, err := echoes(t, c, "lost", 300*time.Millisecond); ok || err != nil {
		t.Fatalf("blackholed connection: echoed=%v err=%v, want silence", ok, err)
	}
	c3 := dialProxy(t, p.Addr())
	if ok, err := echoes(t, c3, "new", 300*time.Millisecond); ok || err != nil {
		t.Fatalf("connection made during blackhole: echoed=%v err=%v, want silence", ok, err)
	}
	p.Blackhole(false)
	if ok, err := echoes(t, c, "still lost", 300*time.Millisecond); ok || err != nil {
		t.Fatalf("blackholed connection after Blackhole(false): echoed=%v err=%v, want it to stay dead", ok, err)
	}
	c4 := dialProxy(t, p.Addr())
	if ok, err := echoes(t, c4, "fresh", time.Second); !ok {
		t.Fatalf("new connection after Blackhole(false): %v", err)
	}
	if n := p.Conns(); n != 3 {
		t.Errorf("Conns() = %d, want 3 (two dead, one live)", n)
	}
}

func TestProxyToMosquitto(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{})
	p := StartProxy(t, m.Addr())
	s := Subscribe(t, SubOptions{Addr: p.Addr(), Filter: "via/proxy"})
	Publish(t, PubOptions{Addr: p.Addr(), Topic: "via/proxy", Payload: []byte("1")})
	s.WaitCount(t, 1, 5*time.Second)
}

// TestProxyDelay: a delay line adds latency to each direction without
// capping throughput: many chunks written back to back come back about one
// round trip later, not one round trip each.
func TestProxyDelay(t *testing.T) {
	const oneWay = 50 * time.Millisecond
	p := StartProxyWith(t, startEcho(t), ProxyOptions{Delay: oneWay})
	c := dialProxy(t, p.Addr())
	start := time.Now()
	if ok, err := echoes(t, c, "ping", 5*time.Second); !ok {
		t.Fatalf("no echo: %v", err)
	}
	if rtt := time.Since(start); rtt < 2*oneWay {
		t.Fatalf("round trip %v, want at least %v", rtt, 2*oneWay)
	}

	// 400 chunks back to back: a stop-and-wait link would need 400 round
	// trips (40 s); the delay line needs about one.
	const n, size = 400, 1000
	msg := make([]byte, size)
	go func() {
		for range n {
			if _, err := c.Write(msg); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, n*size)); err != nil {
		t.Fatalf("echo of %d bytes: %v", n*size, err)
	}

	// A shorter delay applies to new bytes; the old ones are not overtaken.
	p.SetDelay(0)
	if ok, err := echoes(t, c, "fast", time.Second); !ok {
		t.Fatalf("no echo after SetDelay(0): %v", err)
	}
}

// TestProxyBrokerLimits: with MaxUnacked the proxy plays a cloud broker
// that stops reading a client with that many unacknowledged publishes;
// with AckDelay one that confirms slowly. Everything still arrives.
func TestProxyBrokerLimits(t *testing.T) {
	m := StartMosquitto(t, MosquittoOptions{MaxQueuedMessages: 10000})
	for _, o := range []ProxyOptions{
		{MaxUnacked: 10, Delay: 5 * time.Millisecond},
		{AckDelay: 200 * time.Millisecond},
	} {
		p := StartProxyWith(t, m.Addr(), o)
		const n = 300
		lines := make([][]byte, n)
		for i := range lines {
			lines[i] = fmt.Appendf(nil, "%d", i)
		}
		s := Subscribe(t, SubOptions{Addr: m.Addr(), Filter: "limits/#", QoS: 1})
		start := time.Now()
		PublishLines(t, PubOptions{Addr: p.Addr(), Topic: "limits/x", QoS: 1}, lines)
		s.WaitCount(t, n, 30*time.Second)
		st := p.Stats()
		t.Logf("%+v: %d publishes in %v, %v", o, n, time.Since(start).Round(time.Millisecond), st)
		if o.MaxUnacked > 0 && (st.MaxUnacked > o.MaxUnacked || st.Stalls == 0) {
			t.Errorf("MaxUnacked %d: saw %v, want at most the limit and some stalls", o.MaxUnacked, st)
		}
		if o.AckDelay > 0 && st.MaxUnacked < 2 {
			t.Errorf("AckDelay: saw %v, want acknowledgements held back", st)
		}
	}
}
