package transport

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpServer is an in-process server on 127.0.0.1 whose goroutines the test
// waits for at cleanup.
type tcpServer struct {
	t       testing.TB
	ln      net.Listener
	stop    chan struct{}
	wg      sync.WaitGroup
	onReply func() // if set before the first request, runs after each reply is written

	mu       sync.Mutex
	conns    []net.Conn
	accepted int
	closed   int // connections the client closed (read EOF or error)
	requests int
	done     int // handlers returned
	replied  int // replies written in full
}

// serveTCP starts a server that runs handle on every connection; conn is
// closed when handle returns.
func serveTCP(t testing.TB, handle func(s *tcpServer, c net.Conn, conn int)) *tcpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, handle)
}

func serveOn(t testing.TB, ln net.Listener, handle func(s *tcpServer, c net.Conn, conn int)) *tcpServer {
	s := &tcpServer{t: t, ln: ln, stop: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			n := s.accepted
			s.accepted++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.count(func() { s.done++ })
				defer c.Close()
				handle(s, c, n)
			}()
		}
	}()
	t.Cleanup(s.shutdown)
	return s
}

func (s *tcpServer) addr() string { return s.ln.Addr().String() }

func (s *tcpServer) shutdown() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *tcpServer) count(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

func (s *tcpServer) stats() (accepted, closed, requests int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.closed, s.requests
}

// pause waits d unless the server is shutting down.
func (s *tcpServer) pause(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-s.stop:
		return false
	}
}

// tcpAction is how the fake Modbus TCP device answers one request.
type tcpAction struct {
	delay time.Duration
	bytes []byte // nil: no answer
	close bool   // close the connection after writing bytes
}

// mbapDevice reads Modbus TCP requests and answers each as sc says; req
// counts requests over all connections.
func mbapDevice(sc func(conn, req int, adu []byte) tcpAction) func(*tcpServer, net.Conn, int) {
	return func(s *tcpServer, c net.Conn, conn int) {
		hdr := make([]byte, mbapLen)
		for {
			if _, err := io.ReadFull(c, hdr); err != nil {
				s.count(func() { s.closed++ })
				return
			}
			rest := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
			if _, err := io.ReadFull(c, rest); err != nil {
				s.count(func() { s.closed++ })
				return
			}
			var n int
			s.count(func() { n = s.requests; s.requests++ })
			a := sc(conn, n, append(hdr, rest...))
			if !s.pause(a.delay) {
				return
			}
			if a.bytes != nil {
				if _, err := c.Write(a.bytes); err != nil {
					return
				}
			}
			if a.close {
				return
			}
		}
	}
}

// tcpAnswer is a correct reply to a Modbus TCP request.
func (sm *sim) tcpAnswer(adu []byte) []byte {
	return tcpFrame(binary.BigEndian.Uint16(adu), adu[6], sm.pdu(adu[mbapLen:]))
}

// connsDone counts connections whose handler has returned (and closed them).
func (s *tcpServer) connsDone() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}
