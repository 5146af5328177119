package transport

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.bug.st/serial"
)

// fakePort behaves like go.bug.st/serial's port where it matters: Read
// returns whatever has arrived (at least one byte), or (0, nil) when its
// timeout passes, and it has no timeout until SetReadTimeout is called. A
// Read without a timeout fails the test: on a real port it blocks forever.
type fakePort struct {
	bus *fakeBus

	mu         sync.Mutex
	in         []byte
	changed    chan struct{} // closed and replaced whenever in, closed or broken change
	timeout    time.Duration
	timeoutSet bool
	closed     bool
	broken     error
	reads      int // calls of Read: a transport that spins shows here
}

func (p *fakePort) signal() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *fakePort) Read(b []byte) (int, error) {
	p.mu.Lock()
	if !p.timeoutSet {
		p.mu.Unlock()
		p.bus.t.Error("Read without SetReadTimeout: on a real port it would block forever")
		return 0, errors.New("no read timeout")
	}
	p.reads++
	deadline := time.Now().Add(p.timeout)
	for {
		switch {
		case p.closed:
			p.mu.Unlock()
			return 0, errors.New("read on closed port")
		case p.broken != nil:
			p.mu.Unlock()
			return 0, p.broken
		case len(p.in) > 0:
			n := copy(b, p.in)
			p.in = p.in[n:]
			p.mu.Unlock()
			return n, nil
		}
		ch := p.changed
		p.mu.Unlock()
		wait := time.Until(deadline)
		if wait <= 0 {
			return 0, nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-ch:
			timer.Stop()
		case <-timer.C:
			return 0, nil
		}
		p.mu.Lock()
	}
}

func (p *fakePort) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return 0, errors.New("write on closed port")
	case p.broken != nil:
		return 0, p.broken
	}
	p.bus.hostWrote(b)
	return len(b), nil
}

func (p *fakePort) SetReadTimeout(d time.Duration) error {
	if d < 0 {
		p.bus.t.Errorf("SetReadTimeout(%v): the transport must never read without a timeout", d)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeout, p.timeoutSet = d, true
	return nil
}

func (p *fakePort) ResetInputBuffer() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.broken != nil {
		return p.broken
	}
	p.bus.flushed(len(p.in))
	p.in = nil
	return nil
}

func (p *fakePort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.signal()
	return nil
}

func (p *fakePort) readCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

func (p *fakePort) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *fakePort) deliver(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.in = append(p.in, b...)
	p.signal()
}

// action is how a fake device answers one request: after turnaround it puts
// bytes on the line one at a time, gap apart (all at once if gap is 0).
type action struct {
	turnaround time.Duration
	bytes      []byte
	gap        time.Duration
}

// script chooses the answer to the n-th request (counting from 0).
type script func(n int, req []byte) action

// fakeBus is a serial line with one fake device on it, and the opener the
// Serial transport uses to reach it. Every open returns a new fakePort, as a
// real open returns a new file descriptor.
type fakeBus struct {
	t    testing.TB
	reqs chan []byte
	stop chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	port      *fakePort
	mode      serial.Mode
	opens     int
	openErr   error
	lastByte  time.Time   // when the device last put a byte on the line
	writes    []time.Time // when the host wrote each request
	flushedIn int         // bytes dropped by ResetInputBuffer
}

func newFakeBus(t testing.TB) *fakeBus {
	b := &fakeBus{t: t, reqs: make(chan []byte, 64), stop: make(chan struct{})}
	t.Cleanup(func() {
		close(b.stop)
		b.wg.Wait()
	})
	return b
}

func (b *fakeBus) open(dev string, mode *serial.Mode) (port, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if mode.InitialStatusBits != nil {
		b.t.Error("InitialStatusBits set: it fails on ptys")
	}
	if b.openErr != nil {
		return nil, b.openErr
	}
	b.opens++
	b.mode = *mode
	b.port = &fakePort{bus: b, changed: make(chan struct{}), timeout: serial.NoTimeout}
	return b.port, nil
}

func (b *fakeBus) current() *fakePort {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.port
}

func (b *fakeBus) hostWrote(p []byte) {
	b.mu.Lock()
	b.writes = append(b.writes, time.Now())
	b.mu.Unlock()
	select {
	case b.reqs <- append([]byte(nil), p...):
	default:
		b.t.Error("fake device: too many unanswered requests")
	}
}

func (b *fakeBus) flushed(n int) {
	b.flushedIn += n // under the port's lock; read only after the Send
}

// deliver puts bytes on the line towards the host, as if sent by the device.
func (b *fakeBus) deliver(p []byte) {
	b.mu.Lock()
	b.lastByte = time.Now()
	port := b.port
	b.mu.Unlock()
	if port != nil {
		port.deliver(p)
	}
}

// unplug makes the port fail like a USB adapter pulled out: reads and writes
// return EIO, and opening fails until plugIn.
func (b *fakeBus) unplug() {
	b.mu.Lock()
	b.openErr = syscall.ENOENT
	p := b.port
	b.mu.Unlock() // a port's Write takes b.mu under p.mu: never the reverse
	if p != nil {
		p.mu.Lock()
		p.broken = syscall.EIO
		p.signal()
		p.mu.Unlock()
	}
}

func (b *fakeBus) plugIn() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.openErr = nil
}

// pause waits d unless the bus is being torn down.
func (b *fakeBus) pause(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-b.stop:
		return false
	}
}

// serve runs the fake device until the test ends.
func (b *fakeBus) serve(sc script) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for n := 0; ; n++ {
			var req []byte
			select {
			case <-b.stop:
				return
			case req = <-b.reqs:
			}
			a := sc(n, req)
			if !b.pause(a.turnaround) {
				return
			}
			if a.gap == 0 {
				if len(a.bytes) > 0 {
					b.deliver(a.bytes)
				}
				continue
			}
			for i := range a.bytes {
				if i > 0 && !b.pause(a.gap) {
					return
				}
				b.deliver(a.bytes[i : i+1])
			}
		}
	}()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}
