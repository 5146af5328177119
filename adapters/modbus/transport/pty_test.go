//go:build linux

package transport

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goburrow/modbus"
	"go.bug.st/serial"
)

// These tests run the serial transport on a real pseudo-terminal pair made by
// socat, against a fake device that opens the other end with go.bug.st/serial
// and answers one character at a time. A pty ignores the baud rate and parity
// but exercises the real termios, select and read paths, and the device
// vanishing when socat dies is the closest thing to unplugging a USB adapter.

func requireSocat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("socat")
	if err != nil {
		if os.Getenv("FIELDBRIDGE_REQUIRE_PEERS") == "1" {
			t.Fatalf("socat is required (FIELDBRIDGE_REQUIRE_PEERS=1) but not found: %v", err)
		}
		t.Skip("socat not installed (apt-get install socat): skipping the pty tests; set FIELDBRIDGE_REQUIRE_PEERS=1 to fail instead")
	}
	return path
}

// lockedBuffer collects socat's stderr, written by exec's copying goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ptyPair is one socat process linking two ptys at dir/a and dir/b.
type ptyPair struct {
	a, b   string
	cmd    *exec.Cmd
	stderr *lockedBuffer
	exited chan struct{}
}

func startPtyPair(t *testing.T, socat, dir string) *ptyPair {
	t.Helper()
	p := &ptyPair{a: filepath.Join(dir, "a"), b: filepath.Join(dir, "b"), stderr: new(lockedBuffer), exited: make(chan struct{})}
	// A socat killed hard leaves its links behind; start clean.
	os.Remove(p.a)
	os.Remove(p.b)
	p.cmd = exec.Command(socat, "-d", "-d", "pty,raw,echo=0,link="+p.a, "pty,raw,echo=0,link="+p.b)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start socat: %v", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errA := os.Stat(p.a)
		_, errB := os.Stat(p.b)
		if errA == nil && errB == nil && strings.Contains(p.stderr.String(), "starting data transfer loop") {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("socat exited early: %s", p.stderr.String())
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("socat pty links not ready after 10s: %s", p.stderr.String())
		}
	}
}

// stop terminates socat by pid and waits for it; the ptys go away with it.
func (p *ptyPair) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// ptyDevice is a fake Modbus RTU device on the far end of a pty pair.
type ptyDevice struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	reqs int
	err  error // why it stopped
}

// startPtyDevice opens path at 8N1 (the pty cannot care) and answers
// requests as sc says. The test waits for it at cleanup.
func startPtyDevice(t *testing.T, path string, sc script) *ptyDevice {
	t.Helper()
	port, err := serial.Open(path, &serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		t.Fatalf("device: open %s: %v", path, err)
	}
	d := &ptyDevice{stop: make(chan struct{}), done: make(chan struct{})}
	go d.run(port, sc)
	t.Cleanup(d.halt)
	return d
}

func (d *ptyDevice) halt() {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
}

func (d *ptyDevice) pause(dur time.Duration) bool {
	timer := time.NewTimer(dur)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-d.stop:
		return false
	}
}

func (d *ptyDevice) run(port serial.Port, sc script) {
	defer close(d.done)
	defer port.Close()
	var buf []byte
	chunk := make([]byte, 64)
	for n := 0; ; {
		select {
		case <-d.stop:
			return
		default:
		}
		// The device obeys the library's trap too: without a timeout
		// this Read would never return once the test is over.
		if err := port.SetReadTimeout(20 * time.Millisecond); err != nil {
			d.fail(err)
			return
		}
		k, err := port.Read(chunk)
		if err != nil {
			d.fail(err)
			return
		}
		buf = append(buf, chunk[:k]...)
		size := rtuRequestLen(buf)
		if size == 0 || len(buf) < size {
			continue
		}
		req := buf[:size:size]
		buf = append([]byte(nil), buf[size:]...)
		d.mu.Lock()
		d.reqs++
		d.mu.Unlock()
		a := sc(n, req)
		n++
		if !d.pause(a.turnaround) {
			return
		}
		for i := range a.bytes {
			if i > 0 && !d.pause(a.gap) {
				return
			}
			if _, err := port.Write(a.bytes[i : i+1]); err != nil {
				d.fail(err)
				return
			}
		}
	}
}

func (d *ptyDevice) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

func newPtySerial(t *testing.T, path string) *Serial {
	t.Helper()
	tr, err := NewSerial(SerialConfig{Device: path, Baud: 9600, Parity: 'E', Timeout: slowMachine, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestSerialOnPty(t *testing.T) {
	socat := requireSocat(t)
	pair := startPtyPair(t, socat, t.TempDir())
	sm := newSim()
	charTime := CharTime(9600, 8, 'N', 1)
	startPtyDevice(t, pair.b, func(n int, req []byte) action {
		f := sm.rtuAnswer(req)
		if n == 4 {
			f[len(f)-2] ^= 0xFF // one corrupted reply
		}
		return action{turnaround: turnaround(n), bytes: f, gap: charTime}
	})
	tr := newPtySerial(t, pair.a)
	pk := modbus.NewRTUClientHandler("")
	pk.SlaveId = 17
	c := modbus.NewClient2(pk, tr)

	got, err := c.ReadHoldingRegisters(0, 4)
	wantBytes(t, "fc03", got, err, []byte{0, 1, 0, 8, 0, 15, 0, 22})
	got, err = c.WriteMultipleRegisters(2, 2, []byte{0xAA, 0xBB, 0xCC, 0xDD})
	wantBytes(t, "fc16", got, err, []byte{0, 2})
	var me *modbus.ModbusError
	if _, err = c.ReadInputRegisters(1000, 100); !errors.As(err, &me) || me.ExceptionCode != 2 {
		t.Fatalf("got %v, want exception 2", err)
	}
	got, err = c.ReadHoldingRegisters(2, 2)
	wantBytes(t, "fc03 after the exception", got, err, []byte{0xAA, 0xBB, 0xCC, 0xDD})
	_, err = c.ReadHoldingRegisters(0, 1)
	wantKind(t, err, ErrFrame, pair.a+": crc mismatch")
	got, err = c.ReadCoils(0, 8)
	wantBytes(t, "fc01 after the crc error", got, err, []byte{0x49})

	st := tr.Stats()
	if st.Requests != 6 || st.Responses != 5 || st.FrameErrors != 1 || st.Connects != 1 {
		t.Errorf("stats %+v: want 6 requests, 5 responses, 1 frame error, 1 open", st)
	}
	// Bytes on the wire: six 8-byte requests but the 13-byte fc16; replies
	// 13 + 8 + 5 + 9 + 7 (the corrupted one) + 6.
	if st.BytesWritten != 5*8+13 || st.BytesRead != 13+8+5+9+7+6 {
		t.Errorf("stats %+v: want 53 bytes written, 48 read", st)
	}
}

// Killing socat makes both ptys vanish under the open ports, the way a USB
// adapter does when unplugged: the transport must report a transport error,
// not a timeout, and reopen the device once it is back.
func TestSerialOnPtyVanishes(t *testing.T) {
	socat := requireSocat(t)
	dir := t.TempDir()
	pair := startPtyPair(t, socat, dir)
	sm := newSim()
	serve := func(n int, req []byte) action {
		return action{turnaround: 10 * time.Millisecond, bytes: sm.rtuAnswer(req), gap: time.Millisecond}
	}
	dev := startPtyDevice(t, pair.b, serve)
	tr := newPtySerial(t, pair.a)
	req := readRegs(t, 1, 0, 2)
	got, err := tr.Send(req)
	wantBytes(t, "before", got, err, sm.rtuAnswer(req))

	pair.stop()
	<-dev.done // its reads fail too

	_, err = tr.Send(req)
	wantTransportError(t, err, pair.a)
	t.Logf("after socat died: %v", err)
	_, err = tr.Send(req)
	wantTransportError(t, err, "open "+pair.a)
	t.Logf("while it is gone: %v", err)

	pair2 := startPtyPair(t, socat, dir)
	startPtyDevice(t, pair2.b, serve)
	got, err = tr.Send(req)
	wantBytes(t, "after socat came back", got, err, sm.rtuAnswer(req))
	if st := tr.Stats(); st.Connects != 2 || st.TransportErrors != 2 || st.Timeouts != 0 {
		t.Errorf("stats %+v: want 2 opens, 2 transport errors, no timeout", st)
	}
}

// A pending Send on a real port returns promptly when Close is called.
func TestSerialOnPtyCloseUnblocks(t *testing.T) {
	socat := requireSocat(t)
	pair := startPtyPair(t, socat, t.TempDir())
	dev := startPtyDevice(t, pair.b, func(int, []byte) action { return action{} })
	tr := newPtySerial(t, pair.a)
	tr.SetTimeout(time.Hour)
	ch := sendAsync(t, func() ([]byte, error) { return tr.Send(readRegs(t, 1, 0, 1)) })
	waitFor(t, "the request at the device", 5*time.Second, func() bool {
		dev.mu.Lock()
		defer dev.mu.Unlock()
		return dev.reqs == 1
	})
	tr.Close()
	wantKind(t, await(t, ch, 5*time.Second).err, ErrClosed)
	// The port was released: the device side can still be opened anew
	// by another transport.
	tr2 := newPtySerial(t, pair.a)
	tr2.SetTimeout(50 * time.Millisecond)
	_, err := tr2.Send(readRegs(t, 1, 0, 1))
	wantKind(t, err, ErrTimeout)
}
