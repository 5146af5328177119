package testpeer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Line timing defaults: a device that answers 20 ms after the request, on
// a 19200 baud 8E1 line (11 bits per character).
const (
	DefaultTurnaround = 20 * time.Millisecond
	DefaultCharTime   = time.Second * 11 / 19200 // ≈ 573 µs
)

// CharTime returns the time one character takes on a line of baud bits per
// second with bitsPerChar bits per character (start + data + parity +
// stop: 11 for 8E1 and 8N2, 10 for 8N1).
func CharTime(baud, bitsPerChar int) time.Duration {
	return time.Second * time.Duration(bitsPerChar) / time.Duration(baud)
}

// LineOptions sets the timing of a simulated RS-485 line.
type LineOptions struct {
	// Turnaround is how long after the last byte of a request the first
	// byte of the reply starts (at least; the device's own processing time
	// counts too). Zero means DefaultTurnaround; negative means none.
	Turnaround time.Duration
	// CharTime is the time between successive reply bytes. Zero means
	// DefaultCharTime; negative means a whole reply in one write.
	CharTime time.Duration
}

func (o LineOptions) withDefaults() LineOptions {
	switch {
	case o.Turnaround == 0:
		o.Turnaround = DefaultTurnaround
	case o.Turnaround < 0:
		o.Turnaround = 0
	}
	switch {
	case o.CharTime == 0:
		o.CharTime = DefaultCharTime
	case o.CharTime < 0:
		o.CharTime = 0
	}
	return o
}

// LineStats counts the traffic on an RTU line as the relay saw it.
type LineStats struct {
	// Requests is the number of frames the gateway sent (delimited by the
	// RTU length rules, or by a 3.5-character silence when they do not
	// apply).
	Requests int
	// Replies is the number of frames the device sent back.
	Replies int
	// BytesToDevice counts bytes from the gateway to the device.
	BytesToDevice int
	// BytesFromDevice counts reply bytes delivered to the gateway (a reply
	// cut short by Unplug counts only what was delivered).
	BytesFromDevice int
}

// StartRTU starts a pymodbus RTU device behind a paced relay and returns it
// with Path set to the serial port the gateway should open:
//
//	gateway ⇄ Path ═ socat pair A ═ relay (Go) ═ socat pair B ═ pymodbus (RTU, 8N1)
//
// The relay forwards request bytes to the device as they come, and each
// reply Turnaround after the request, one byte every CharTime, as an
// RS-485 line does. Path is a symlink in a temp dir; it disappears on
// Unplug and comes back on Replug.
func StartRTU(tb testing.TB, spec DeviceSpec, opts LineOptions) *Device {
	tb.Helper()
	socat := lookPeer(tb, "socat", "socat")
	dir := tb.TempDir()
	l := &rtuLine{
		tb:         tb,
		opts:       opts.withDefaults(),
		socat:      socat,
		log:        newTailBuffer(256 << 10),
		gwLink:     filepath.Join(dir, "ttyGW"),
		relayALink: filepath.Join(dir, "relayA"),
		relayBLink: filepath.Join(dir, "relayB"),
		devLink:    filepath.Join(dir, "ttyDEV"),
		replies:    make(chan frame, 64),
		stop:       make(chan struct{}),
	}
	logOutputOnFailure(tb, "rtu line (socat pairs and relay)", l.log.String)

	pairB, err := l.startPair(l.relayBLink, l.devLink)
	if err != nil {
		tb.Fatalf("testpeer: rtu line: device side: %v", err)
	}
	tb.Cleanup(func() { pairB.stop(2 * time.Second) })
	l.portB, err = openPty(l.relayBLink)
	if err != nil {
		tb.Fatalf("testpeer: rtu line: %v", err)
	}

	py, err := startPyDevice(tb, "pymodbus rtu device", spec, "--mode", "rtu", "--serial", l.devLink)
	if err != nil {
		_ = l.portB.Close()
		tb.Fatalf("testpeer: modbus rtu device: %v", err)
	}

	// Registered after the device's cleanup so that it runs before it.
	tb.Cleanup(l.close)
	l.wg.Add(2)
	go l.readDevice()
	go l.writeReplies()
	if err := l.plug(); err != nil {
		tb.Fatalf("testpeer: rtu line: gateway side: %v", err)
	}
	return &Device{Path: l.gwLink, tb: tb, py: py, line: l}
}

// rtuLine is the two socat pairs and the relay between them.
type rtuLine struct {
	tb    testing.TB
	opts  LineOptions
	socat string
	log   *tailBuffer // socat output and relay notes

	gwLink, relayALink  string // pair A: gateway side, relay side
	relayBLink, devLink string // pair B: relay side, device side
	portB               *os.File

	mu      sync.Mutex
	pairA   *process // nil while unplugged
	portA   *os.File // relay end of pair A; nil while unplugged
	stats   LineStats
	corrupt bool      // flip a byte of the next reply
	lastReq time.Time // arrival of the last request byte
	// lastWrites holds when each byte of the last paced reply was written,
	// for the self-test of the pacing.
	lastWrites []time.Time

	replies chan frame    // device replies, in order
	stop    chan struct{} // closed by close
	wg      sync.WaitGroup
	closed  bool
}

// startPair starts socat with a pty pair linked at a and b, and waits for
// both links.
func (l *rtuLine) startPair(a, b string) (*process, error) {
	cmd := exec.Command(l.socat, "-d", "-d",
		"pty,rawer,link="+a, "pty,rawer,link="+b)
	cmd.Stdout, cmd.Stderr = l.log, l.log
	p, err := startProcess("socat", cmd)
	if err != nil {
		return nil, err
	}
	err = waitUntil(startTimeout, "socat pty links", func() (bool, error) {
		if p.exited() {
			return false, p.exitError()
		}
		_, errA := os.Stat(a)
		_, errB := os.Stat(b)
		return errA == nil && errB == nil, nil
	})
	if err != nil {
		p.stop(time.Second)
		return nil, err
	}
	return p, nil
}

// openPty opens one end of a socat pair for the relay. socat's "rawer"
// already made it raw; the file joins the runtime poller, so read
// deadlines work and Close interrupts a blocked Read.
func openPty(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	return f, nil
}

// plug starts pair A and the relay's reader of the gateway side.
func (l *rtuLine) plug() error {
	l.mu.Lock()
	busy := l.closed || l.pairA != nil
	l.mu.Unlock()
	if busy {
		return errors.New("already plugged in")
	}
	pairA, err := l.startPair(l.gwLink, l.relayALink)
	if err != nil {
		return err
	}
	portA, err := openPty(l.relayALink)
	if err != nil {
		pairA.stop(time.Second)
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = portA.Close()
		pairA.stop(time.Second)
		return errors.New("line closed")
	}
	l.pairA, l.portA = pairA, portA
	l.wg.Add(1)
	go l.readGateway(portA)
	return nil
}

// unplug stops pair A: the gateway's port gets a hang-up and its path
// vanishes.
func (l *rtuLine) unplug() error {
	l.mu.Lock()
	pairA, portA := l.pairA, l.portA
	l.pairA, l.portA = nil, nil
	l.mu.Unlock()
	if pairA == nil {
		return errors.New("already unplugged")
	}
	_ = portA.Close()
	pairA.stop(2 * time.Second)
	// socat removes its links on SIGTERM; make sure after a SIGKILL too.
	_ = os.Remove(l.gwLink)
	_ = os.Remove(l.relayALink)
	return nil
}

// close stops the relay and pair A (pair B and the device have their own
// cleanups).
func (l *rtuLine) close() {
	l.mu.Lock()
	l.closed = true
	pairA, portA := l.pairA, l.portA
	l.pairA, l.portA = nil, nil
	l.mu.Unlock()
	close(l.stop)
	if portA != nil {
		_ = portA.Close()
	}
	_ = l.portB.Close()
	l.wg.Wait()
	if pairA != nil {
		pairA.stop(2 * time.Second)
	}
}

// note adds a line to the line log.
func (l *rtuLine) note(format string, args ...any) {
	fmt.Fprintf(l.log, "%s relay: %s\n", time.Now().Format("15:04:05.000000"), fmt.Sprintf(format, args...))
}

func (d *Device) rtu(method string) *rtuLine {
	d.tb.Helper()
	if d.line == nil {
		d.tb.Fatalf("testpeer: %s: not an RTU device", method)
	}
	return d.line
}

// Line returns the traffic counted on the RTU line since the start or the
// last ResetLine.
func (d *Device) Line() LineStats {
	l := d.rtu("Line")
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// ResetLine sets the line counters to zero.
func (d *Device) ResetLine() {
	l := d.rtu("ResetLine")
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stats = LineStats{}
}

// CorruptNextReply flips one byte of the next reply from the device (the
// last data byte, so the frame keeps its length and fails its CRC).
func (d *Device) CorruptNextReply() {
	l := d.rtu("CorruptNextReply")
	l.mu.Lock()
	defer l.mu.Unlock()
	l.corrupt = true
}

// Unplug removes the gateway side of the line, like pulling the USB
// adapter: reads and writes on the open port fail and Path no longer
// exists. Replies in flight are lost.
func (d *Device) Unplug() {
	d.tb.Helper()
	if err := d.rtu("Unplug").unplug(); err != nil {
		d.tb.Fatalf("testpeer: unplug: %v", err)
	}
}

// Replug brings back the gateway side of the line at the same Path (a new
// pty: the gateway must reopen it). The device keeps its state.
func (d *Device) Replug() {
	d.tb.Helper()
	if err := d.rtu("Replug").plug(); err != nil {
		d.tb.Fatalf("testpeer: replug: %v", err)
	}
}
