package testpeer

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP forwarder on 127.0.0.1 that can cut or blackhole the link
// to its target, for tests of link faults between the gateway and a broker.
type Proxy struct {
	tb     testing.TB
	target string
	addr   string

	mu        sync.Mutex
	ln        net.Listener // nil while cut
	conns     map[*proxyConn]struct{}
	blackhole bool
	closed    bool
	wg        sync.WaitGroup
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	client, server net.Conn
	// dead is set when the connection was caught by a blackhole: it
	// forwards nothing ever again, like a session a NAT has forgotten.
	dead atomic.Bool
}

// StartProxy listens on 127.0.0.1 and a free port and forwards every
// connection to target. It is closed in cleanup.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testpeer: proxy: listen: %v", err)
	}
	p := &Proxy{tb: tb, target: target, addr: ln.Addr().String(), conns: map[*proxyConn]struct{}{}}
	p.serve(ln)
	tb.Cleanup(p.close)
	return p
}

// Addr returns the proxy's address, "127.0.0.1:port"; it stays the same
// across Cut and Restore.
func (p *Proxy) Addr() string { return p.addr }

// Cut closes every connection and refuses new ones (connection refused)
// until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	conns := p.takeConns()
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	closeAll(conns)
}

// Restore accepts connections again after Cut, on the same port.
func (p *Proxy) Restore() {
	p.tb.Helper()
	p.mu.Lock()
	running := p.ln != nil
	p.mu.Unlock()
	if running {
		return
	}
	var ln net.Listener
	err := waitUntil(startTimeout, "proxy port "+p.addr, func() (bool, error) {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err == nil, nil
	})
	if err != nil {
		p.tb.Fatalf("testpeer: proxy Restore: %v", err)
	}
	p.serve(ln)
}

// Blackhole(true) keeps the TCP connections open but silently drops all
// bytes in both directions, like a NAT that forgot the session: the ends
// only notice through their own timeouts (keepalive). Connections made
// while it is on are accepted and blackholed too. Blackhole(false) lets new
// connections work again; the ones caught stay dead until their ends
// close them, as a forgotten NAT session does.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = on
	if on {
		for c := range p.conns {
			c.dead.Store(true)
		}
	}
}

// Conns returns the number of open client connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = ln.Close()
		return
	}
	p.ln = ln
	p.wg.Add(1)
	go p.accept(ln)
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		client, err := ln.Accept()
		if err != nil {
			return // closed by Cut or close
		}
		p.wg.Add(1)
		go p.handle(client)
	}
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		// The target is down: the client sees its connection closed.
		_ = client.Close()
		return
	}
	c := &proxyConn{client: client, server: server}
	p.mu.Lock()
	if p.closed || p.ln == nil {
		p.mu.Unlock()
		closeAll([]*proxyConn{c})
		return
	}
	c.dead.Store(p.blackhole)
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	fromClient, fromServer := make(chan struct{}), make(chan struct{})
	go func() { pipe(c, server, client); close(fromClient) }()
	go func() { pipe(c, client, server); close(fromServer) }()
	select {
	case <-fromClient:
	case <-fromServer:
	}
	if c.dead.Load() {
		// A forgotten session passes no close on: each end finds out by
		// itself (its own timeout) and closes its side.
		<-fromClient
		<-fromServer
	}
	closeAll([]*proxyConn{c})
	<-fromClient
	<-fromServer
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// pipe copies src to dst until src ends, dropping everything once c is
// dead.
func pipe(c *proxyConn, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !c.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil && !c.dead.Load() {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) takeConns() []*proxyConn {
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	return conns
}

func closeAll(conns []*proxyConn) {
	for _, c := range conns {
		_ = c.client.Close()
		_ = c.server.Close()
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	ln := p.ln
	p.ln = nil
	conns := p.takeConns()
	p.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	closeAll(conns)
	p.wg.Wait()
}
