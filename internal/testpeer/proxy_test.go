package testpeer

import (
	"errors"
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
