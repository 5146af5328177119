package transport

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/goburrow/modbus"
	"go.bug.st/serial"
)

const testBaud = 19200

// slowMachine is the timeout of requests that must succeed: fake devices
// pace their replies with timers, and on a loaded CI machine under -race a
// timer can fire hundreds of milliseconds late. Requests meant to time out
// use short timeouts of their own.
const slowMachine = 3 * time.Second

var testCharTime = CharTime(testBaud, 8, 'E', 1)

func newTestSerial(t testing.TB, b *fakeBus, timeout time.Duration) *Serial {
	t.Helper()
	s, err := newSerial(SerialConfig{Device: "/dev/ttyFAKE0", Baud: testBaud, Parity: 'E', Timeout: timeout, Logger: testLogger(t)}, b.open)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// paced answers like a real RS-485 device: after a 10–50 ms turnaround, one
// character at a time.
func paced(n int, frame []byte) action {
	return action{turnaround: turnaround(n), bytes: frame, gap: testCharTime}
}

func TestSerialFunctionCodes(t *testing.T) {
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action {
		a := paced(n, sm.rtuAnswer(req))
		if ExpectedResponseLen(req) < 0 && req[1] != 24 {
			// Only silence ends these replies; a fake device on a busy
			// test machine cannot keep its pacing under t3.5, so
			// they come in one piece.
			a.gap = 0
		}
		return a
	})
	tr := newTestSerial(t, b, slowMachine)
	pk := modbus.NewRTUClientHandler("")
	pk.SlaveId = 7
	c := modbus.NewClient2(pk, tr)

	steps := []struct {
		name string
		call func() ([]byte, error)
		want []byte
	}{
		{"fc01 read coils", func() ([]byte, error) { return c.ReadCoils(3, 10) }, []byte{0x49, 0x02}},
		{"fc02 read discrete inputs", func() ([]byte, error) { return c.ReadDiscreteInputs(0, 12) }, []byte{0x42, 0x08}},
		{"fc03 read holding", func() ([]byte, error) { return c.ReadHoldingRegisters(10, 3) }, []byte{0, 71, 0, 78, 0, 85}},
		{"fc04 read input", func() ([]byte, error) { return c.ReadInputRegisters(2, 2) }, []byte{1, 6, 1, 9}},
		{"fc05 write coil", func() ([]byte, error) { return c.WriteSingleCoil(4, 0xFF00) }, []byte{0xFF, 0}},
		{"fc06 write register", func() ([]byte, error) { return c.WriteSingleRegister(5, 0xBEEF) }, []byte{0xBE, 0xEF}},
		{"fc15 write coils", func() ([]byte, error) { return c.WriteMultipleCoils(20, 10, []byte{0xFF, 0x03}) }, []byte{0, 10}},
		{"fc16 write registers", func() ([]byte, error) { return c.WriteMultipleRegisters(30, 2, []byte{0, 1, 0, 2}) }, []byte{0, 2}},
		{"fc22 mask write", func() ([]byte, error) { return c.MaskWriteRegister(5, 0x00FF, 0x1200) }, []byte{0, 0xFF, 0x12, 0}},
		{"fc23 read/write", func() ([]byte, error) { return c.ReadWriteMultipleRegisters(5, 2, 40, 1, []byte{0xCA, 0xFE}) }, []byte{0x12, 0xEF, 0, 43}},
		{"fc03 after fc16", func() ([]byte, error) { return c.ReadHoldingRegisters(30, 2) }, []byte{0, 1, 0, 2}},
		{"fc03 after fc23", func() ([]byte, error) { return c.ReadHoldingRegisters(40, 1) }, []byte{0xCA, 0xFE}},
		{"fc01 after fc15", func() ([]byte, error) { return c.ReadCoils(20, 10) }, []byte{0xFF, 0x03}},
	}
	for _, s := range steps {
		got, err := s.call()
		wantBytes(t, s.name, got, err, s.want)
	}

	// Function codes the client API does not cover or gets wrong, raw.
	raw := []struct {
		name string
		req  []byte
	}{
		{"fc24 fifo (length from its 2-byte count)", rtuRequest(t, 7, 24, 0, 1)},
		{"fc08 diagnostics (length from silence)", rtuRequest(t, 7, 8, 0, 0, 0xA5, 0x37)},
		{"fc17 report server id (length from silence)", rtuRequest(t, 7, 17)},
	}
	for _, r := range raw {
		got, err := tr.Send(r.req)
		wantBytes(t, r.name, got, err, sm.rtuAnswer(r.req))
	}

	st := tr.Stats()
	n := uint64(len(steps) + len(raw))
	if st.Requests != n || st.Responses != n || st.Connects != 1 || st.BytesDiscarded != 0 {
		t.Errorf("stats %+v: want %d requests and responses, 1 open, nothing discarded", st, n)
	}
	if b.mode.Parity != serial.EvenParity || b.mode.BaudRate != testBaud || b.mode.DataBits != 8 || b.mode.StopBits != serial.OneStopBit {
		t.Errorf("port opened with mode %+v, want 19200 8E1", b.mode)
	}
}

// The bug this package exists for: goburrow's RTU transporter reads a
// 5-byte exception reply as 4 bytes, fails its CRC, and leaves a byte that
// corrupts the next reply.
func TestSerialExceptionThenNormal(t *testing.T) {
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action { return paced(n, sm.rtuAnswer(req)) })
	tr := newTestSerial(t, b, slowMachine)
	pk := modbus.NewRTUClientHandler("")
	pk.SlaveId = 1
	c := modbus.NewClient2(pk, tr)

	for i := range 3 {
		_, err := c.ReadHoldingRegisters(1020, 10) // past the end: exception 2
		var me *modbus.ModbusError
		if !errors.As(err, &me) || me.ExceptionCode != 2 || me.FunctionCode != 0x83 {
			t.Fatalf("round %d: got %v, want modbus exception 2 on function 0x83", i, err)
		}
		got, err := c.ReadHoldingRegisters(uint16(i), 2)
		want := []byte{0, byte(i*7 + 1), 0, byte((i+1)*7 + 1)}
		wantBytes(t, fmt.Sprintf("round %d: read after exception", i), got, err, want)
	}
	if st := tr.Stats(); st.Responses != 6 || st.FrameErrors != 0 || st.BytesDiscarded != 0 {
		t.Errorf("stats %+v: want 6 responses, no frame errors, nothing discarded", st)
	}
}

func TestSerialTruncatedReply(t *testing.T) {
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action {
		full := sm.rtuAnswer(req)
		if n == 0 {
			return paced(n, full[:9]) // 9 of 25 bytes, then the device dies
		}
		return paced(n, full)
	})
	tr := newTestSerial(t, b, 300*time.Millisecond)
	_, err := tr.Send(readRegs(t, 1, 0, 10))
	wantKind(t, err, ErrTimeout, "read /dev/ttyFAKE0: timeout after 300ms (9 of 25 bytes)")

	tr.SetTimeout(slowMachine)
	req := readRegs(t, 1, 4, 10)
	got, err := tr.Send(req)
	wantBytes(t, "next request", got, err, sm.rtuAnswer(req))
	if st := tr.Stats(); st.Timeouts != 1 || st.Responses != 1 || st.BytesDiscarded != 9 {
		t.Errorf("stats %+v: want 1 timeout, 1 response, 9 bytes discarded", st)
	}
}

func TestSerialNoReply(t *testing.T) {
	b := newFakeBus(t)
	b.serve(func(int, []byte) action { return action{} })
	tr := newTestSerial(t, b, 300*time.Millisecond)
	_, err := tr.Send(readRegs(t, 1, 0, 10))
	wantKind(t, err, ErrTimeout, "timeout after 300ms (0 of 25 bytes)")
	// Waiting is done by the port's read timeout, in slices, not by
	// spinning on reads that return at once.
	if n := b.current().readCalls(); n > 20 {
		t.Errorf("%d reads while waiting 300 ms for a reply", n)
	}
	tr.SetTimeout(80 * time.Millisecond)
	_, err = tr.Send(rtuRequest(t, 1, 17))
	wantKind(t, err, ErrTimeout, "(0 bytes, reply length unknown)")
}

func TestSerialGarbageAroundFrames(t *testing.T) {
	sm := newSim()
	req := readRegs(t, 3, 0, 4)
	good := sm.rtuAnswer(req)
	foreign := rtuFrame(4, sm.pdu(req[1:6])) // another unit answering
	cases := []struct {
		name      string
		line      []byte
		wantErr   error  // nil: the reply must be found
		contains  string // in the error
		discarded uint64 // bytes the first Send and the next one's flush discard
	}{
		{"glitch byte before", append([]byte{0x00}, good...), nil, "", 1},
		{"two 0xff before", append([]byte{0xFF, 0xFF}, good...), nil, "", 2},
		{"address and function echo before", append([]byte{3, 3}, good...), nil, "", 2},
		{"bytes after", append(append([]byte{}, good...), 0x55, 0xAA, 0x01), nil, "", 3},
		{"foreign frame only", foreign, ErrFrame, "unexpected address 0x04, want 0x03", uint64(len(foreign))},
		{"noise only", []byte{0xFF, 0xFE, 0xFD}, ErrFrame, "3 bytes skipped", 3},
		{"wrong function", rtuFrame(3, []byte{4, 2, 0, 1}), ErrFrame, "unexpected function 0x04, want 0x03", 7},
		{"wrong byte count", rtuFrame(3, []byte{3, 6, 0, 1, 0, 2, 0, 3}), ErrFrame, "unexpected byte count 6, want 8", 11},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newFakeBus(t)
			b.serve(func(n int, r []byte) action {
				if n == 0 {
					return paced(n, c.line)
				}
				return paced(n, sm.rtuAnswer(r))
			})
			tr := newTestSerial(t, b, slowMachine)
			if c.wantErr != nil {
				tr.SetTimeout(300 * time.Millisecond) // it runs out
			}
			got, err := tr.Send(req)
			tr.SetTimeout(slowMachine)
			if c.wantErr == nil {
				wantBytes(t, "first", got, err, good)
			} else {
				wantKind(t, err, c.wantErr, c.contains)
			}
			// Whatever was left on the line must not spoil the next one.
			next := readRegs(t, 3, 8, 2)
			got, err = tr.Send(next)
			wantBytes(t, "next", got, err, sm.rtuAnswer(next))
			if d := tr.Stats().BytesDiscarded + uint64(b.flushedIn); d != c.discarded {
				t.Errorf("%d bytes discarded, want %d", d, c.discarded)
			}
		})
	}
}

func TestSerialCRCErrorThenNext(t *testing.T) {
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action {
		f := sm.rtuAnswer(req)
		if n == 0 {
			f[len(f)-1] ^= 0x5A // CRC high byte corrupted
		}
		if n == 1 {
			f[4] ^= 0x01 // a data bit flipped
		}
		return paced(n, f)
	})
	tr := newTestSerial(t, b, slowMachine)
	req := readRegs(t, 2, 0, 3)
	good := sm.rtuAnswer(req)
	crc := crc16(good[:len(good)-2])
	_, err := tr.Send(req)
	wantKind(t, err, ErrFrame, fmt.Sprintf("/dev/ttyFAKE0: crc mismatch (got 0x%04x, want 0x%04x)", crc^0x5A00, crc))
	_, err = tr.Send(req)
	wantKind(t, err, ErrFrame, "crc mismatch")
	got, err := tr.Send(req)
	wantBytes(t, "third", got, err, good)
	if st := tr.Stats(); st.FrameErrors != 2 || st.Responses != 1 {
		t.Errorf("stats %+v: want 2 frame errors, 1 response", st)
	}
}

func TestSerialPortVanishesAndComesBack(t *testing.T) {
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action { return paced(n, sm.rtuAnswer(req)) })
	tr := newTestSerial(t, b, slowMachine)
	req := readRegs(t, 1, 0, 2)
	got, err := tr.Send(req)
	wantBytes(t, "before unplug", got, err, sm.rtuAnswer(req))
	old := b.current()

	b.unplug()
	_, err = tr.Send(req)
	wantTransportError(t, err, "/dev/ttyFAKE0", "input/output error")
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("error %q does not wrap EIO", err)
	}
	if !old.isClosed() {
		t.Error("the failed port was not closed")
	}
	_, err = tr.Send(req)
	wantTransportError(t, err, "open /dev/ttyFAKE0")

	b.plugIn()
	got, err = tr.Send(req)
	wantBytes(t, "after plugging in", got, err, sm.rtuAnswer(req))
	if st := tr.Stats(); st.Connects != 2 || st.TransportErrors != 2 || st.Responses != 2 {
		t.Errorf("stats %+v: want 2 opens, 2 transport errors, 2 responses", st)
	}
}

func TestSerialCloseUnblocksSend(t *testing.T) {
	b := newFakeBus(t)
	b.serve(func(int, []byte) action { return action{} }) // never answers
	tr := newTestSerial(t, b, time.Hour)
	ch := sendAsync(t, func() ([]byte, error) { return tr.Send(readRegs(t, 1, 0, 1)) })
	waitFor(t, "the request on the line", 5*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.writes) == 1
	})
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	r := await(t, ch, 5*time.Second)
	wantKind(t, r.err, ErrClosed)
	if !b.current().isClosed() {
		t.Error("port left open after Close")
	}
	_, err := tr.Send(readRegs(t, 1, 0, 1))
	wantKind(t, err, ErrClosed)
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestSerialCloseIdle(t *testing.T) {
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action { return paced(n, sm.rtuAnswer(req)) })
	tr := newTestSerial(t, b, slowMachine)
	if _, err := tr.Send(readRegs(t, 1, 0, 1)); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	if !b.current().isClosed() {
		t.Error("port left open after Close")
	}
}

func TestSerialConfig(t *testing.T) {
	bad := []SerialConfig{
		{Baud: 9600},
		{Device: "/dev/x"},
		{Device: "/dev/x", Baud: 9600, Parity: 'X'},
		{Device: "/dev/x", Baud: 9600, DataBits: 7},
		{Device: "/dev/x", Baud: 9600, StopBits: 3},
	}
	for _, c := range bad {
		if _, err := NewSerial(c); err == nil {
			t.Errorf("NewSerial(%+v) accepted", c)
		}
	}
	s, err := NewSerial(SerialConfig{Device: "/dev/x", Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	if s.mode.Parity != serial.EvenParity || s.mode.StopBits != serial.OneStopBit || s.mode.InitialStatusBits != nil {
		t.Errorf("defaults: mode %+v, want 8E1 and no initial status bits", s.mode)
	}
	if s.eng.gap != FrameGap(9600, 8, 'E', 1) || time.Duration(s.cur.Load()) != DefaultTimeout {
		t.Errorf("defaults: gap %v, timeout %v", s.eng.gap, time.Duration(s.cur.Load()))
	}
	s.SetTimeout(250 * time.Millisecond)
	if time.Duration(s.cur.Load()) != 250*time.Millisecond {
		t.Error("SetTimeout ignored")
	}
	s.SetTimeout(0)
	if time.Duration(s.cur.Load()) != DefaultTimeout {
		t.Error("SetTimeout(0) did not restore the configured timeout")
	}
	if _, err := s.Send([]byte{1, 3}); err == nil {
		t.Error("Send accepted a 2-byte request")
	}
}
