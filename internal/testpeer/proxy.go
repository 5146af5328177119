package testpeer

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP forwarder on 127.0.0.1 that can cut or blackhole the link
// to its target, for tests of link faults between the gateway and a broker.
// With ProxyOptions it also adds latency (a delay line per direction) and
// can play a cloud broker's per-client limits.
type Proxy struct {
	tb     testing.TB
	target string
	addr   string
	opts   ProxyOptions
	delay  atomic.Int64 // one-way delay, ns
	st     proxyCounters

	mu        sync.Mutex
	ln        net.Listener // nil while cut
	conns     map[*proxyConn]struct{}
	blackhole bool
	closed    bool
	wg        sync.WaitGroup
}

// ProxyOptions shape the link a Proxy makes.
type ProxyOptions struct {
	// Delay is added to each direction, so the round trip grows by twice
	// it. Bytes are stamped when they arrive and written Delay later: the
	// delay does not cap throughput (a long path, not a slow one).
	Delay time.Duration
	// MaxUnacked plays a broker that takes at most this many
	// unacknowledged QoS 1/2 publishes per client and then stops reading
	// the connection until it has acknowledged some (AWS IoT Core: 100).
	// The limit applies at the broker's end of the delay.
	MaxUnacked int
	// AckDelay holds every PUBACK (and PUBREC) of the broker this long
	// before it leaves; other packets, PINGRESP among them, pass at once: a
	// broker slow to confirm but alive.
	AckDelay time.Duration
}

// lineBytes bounds the bytes in flight per direction: beyond it the proxy
// stops reading and TCP pushes back.
const lineBytes = 16 << 20

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	client, server net.Conn
	// dead is set when the connection was caught by a blackhole: it
	// forwards nothing ever again, like a session a NAT has forgotten.
	dead  atomic.Bool
	lines []*delayLine
	gate  *mqttGate
}

// StartProxy listens on 127.0.0.1 and a free port and forwards every
// connection to target. It is closed in cleanup.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	return StartProxyWith(tb, target, ProxyOptions{})
}

// StartProxyWith is StartProxy with a shaped link.
func StartProxyWith(tb testing.TB, target string, o ProxyOptions) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testpeer: proxy: listen: %v", err)
	}
	p := &Proxy{tb: tb, target: target, addr: ln.Addr().String(), opts: o, conns: map[*proxyConn]struct{}{}}
	p.delay.Store(int64(o.Delay))
	p.serve(ln)
	tb.Cleanup(p.close)
	return p
}

// SetDelay changes the one-way delay for bytes arriving from now on (a
// path that changes, as an LTE link does). Bytes never overtake others.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *Proxy) currentDelay() time.Duration { return time.Duration(p.delay.Load()) }

// Stats returns what the proxy saw at the MQTT level (with MaxUnacked or
// AckDelay set).
func (p *Proxy) Stats() ProxyStats { return p.st.snapshot() }

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
	up := newDelayLine(p.currentDelay, lineBytes)
	down := newDelayLine(p.currentDelay, lineBytes)
	c.lines = []*delayLine{up, down}
	mqttAware := p.opts.MaxUnacked > 0 || p.opts.AckDelay > 0
	if mqttAware {
		c.gate = newMQTTGate(p.opts.MaxUnacked, &p.st)
	}
	p.mu.Lock()
	if p.closed || p.ln == nil {
		p.mu.Unlock()
		closeAll([]*proxyConn{c})
		return
	}
	c.dead.Store(p.blackhole)
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	var workers sync.WaitGroup
	fromClient, fromServer := make(chan struct{}), make(chan struct{})
	workers.Add(2)
	go func() { defer workers.Done(); p.readRaw(c, client, up, mqttAware) }()
	go func() { defer close(fromClient); writeLine(c, server, up, c.gate) }()
	if mqttAware {
		acks := down
		if p.opts.AckDelay > 0 {
			d := p.opts.AckDelay
			acks = newDelayLine(func() time.Duration { return d }, lineBytes)
			c.lines = append(c.lines, acks)
			workers.Add(1)
			go func() { defer workers.Done(); forwardAcks(acks, down, c.gate) }()
		}
		go func() { defer workers.Done(); readBroker(server, down, acks, c.gate, p.opts.AckDelay > 0) }()
	} else {
		go func() { defer workers.Done(); p.readRaw(c, server, down, false) }()
	}
	go func() { defer close(fromServer); writeLine(c, client, down, nil) }()
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
	workers.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// readRaw feeds the delay line from src until src ends. With packets set
// (the client side of an MQTT-aware proxy) it cuts the stream into whole
// MQTT packets, so that the writer can hold back single publishes.
func (p *Proxy) readRaw(c *proxyConn, src net.Conn, line *delayLine, packets bool) {
	defer line.end()
	if packets {
		r := bufio.NewReaderSize(src, 64<<10)
		for {
			pkt, err := readMQTTPacket(r)
			if err != nil || !line.push(pkt) {
				return
			}
		}
	}
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 && !line.push(buf[:n]) {
			return
		}
		if err != nil {
			return
		}
	}
}

// readBroker reads the broker's packets: acknowledgements go through acks
// (held for AckDelay when slow is set), the rest straight into down.
func readBroker(src net.Conn, down, acks *delayLine, gate *mqttGate, slow bool) {
	defer down.end()
	defer acks.end()
	r := bufio.NewReaderSize(src, 64<<10)
	for {
		pkt, err := readMQTTPacket(r)
		if err != nil {
			return
		}
		id, isAck := ackID(pkt)
		switch {
		case isAck && slow:
			if !acks.push(pkt) {
				return
			}
			continue
		case isAck:
			gate.acked(id)
		}
		if !down.push(pkt) {
			return
		}
	}
}

// forwardAcks moves held acknowledgements on once they are due: only then
// does the broker count them as sent.
func forwardAcks(acks, down *delayLine, gate *mqttGate) {
	var buf []byte
	for {
		b := acks.popDue(buf)
		if b == nil {
			return
		}
		for rest := b; len(rest) > 0; {
			n := mqttPacketLen(rest)
			if n == 0 {
				break
			}
			if id, ok := ackID(rest[:n]); ok {
				gate.acked(id)
			}
			rest = rest[n:]
		}
		if !down.push(append([]byte(nil), b...)) {
			return
		}
		buf = b
	}
}

// writeLine writes what the delay line delivers to dst, dropping it once
// the connection is dead. With a gate, each QoS 1/2 publish waits for its
// admission at the broker.
func writeLine(c *proxyConn, dst net.Conn, line *delayLine, gate *mqttGate) {
	var buf, out []byte
	for {
		b := line.popDue(buf)
		if b == nil {
			return
		}
		buf = b
		if c.dead.Load() {
			continue
		}
		if gate == nil {
			if _, err := dst.Write(b); err != nil && !c.dead.Load() {
				return
			}
			continue
		}
		out = out[:0]
		for rest := b; len(rest) > 0; {
			n := mqttPacketLen(rest)
			if n == 0 {
				out = append(out, rest...)
				break
			}
			if id, ok := publishID(rest[:n]); ok {
				if len(out) > 0 {
					if _, err := dst.Write(out); err != nil && !c.dead.Load() {
						return
					}
					out = out[:0]
				}
				if !gate.admit(id) {
					return
				}
			}
			out = append(out, rest[:n]...)
			rest = rest[n:]
		}
		if len(out) > 0 {
			if _, err := dst.Write(out); err != nil && !c.dead.Load() {
				return
			}
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
		for _, l := range c.lines {
			l.close()
		}
		if c.gate != nil {
			c.gate.close()
		}
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
