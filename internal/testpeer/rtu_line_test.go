package testpeer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// crc16 is the Modbus RTU CRC (poly 0xA001 reflected, init 0xFFFF),
// written out here so the test does not trust the code under test.
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// rtuFrame appends the CRC (low byte first) to unit+pdu.
func rtuFrame(unit byte, pdu []byte) []byte {
	f := append([]byte{unit}, pdu...)
	return binary.LittleEndian.AppendUint16(f, crc16(f))
}

// rtuPort is the test acting as the gateway on the line's pty.
type rtuPort struct {
	t *testing.T
	f *os.File
}

func openRTU(t *testing.T, path string) *rtuPort {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return &rtuPort{t: t, f: f}
}

// timedReply is a reply and when its bytes arrived, relative to the start
// of the request write.
type timedReply struct {
	data        []byte
	first, last time.Duration
}

// request writes a frame and reads a reply of want bytes (0 = expect none
// within wait).
func (p *rtuPort) request(frame []byte, want int, wait time.Duration) timedReply {
	p.t.Helper()
	// Taken before the write: the relay cannot see the request earlier.
	sent := time.Now()
	if _, err := p.f.Write(frame); err != nil {
		p.t.Fatalf("write request: %v", err)
	}
	var r timedReply
	buf := make([]byte, 512)
	deadline := sent.Add(wait)
	for want == 0 || len(r.data) < want {
		_ = p.f.SetReadDeadline(deadline)
		n, err := p.f.Read(buf)
		if n > 0 {
			now := time.Since(sent)
			if len(r.data) == 0 {
				r.first = now
			}
			r.last = now
			r.data = append(r.data, buf[:n]...)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			p.t.Fatalf("read reply: %v", err)
		}
	}
	if want == 0 && len(r.data) > 0 {
		p.t.Fatalf("expected no reply, got % x", r.data)
	}
	if want > 0 && len(r.data) != want {
		p.t.Fatalf("reply % x: %d bytes, want %d", r.data, len(r.data), want)
	}
	return r
}

// pdu checks the reply's unit and CRC and returns its PDU.
func (p *rtuPort) pdu(unit byte, r timedReply) []byte {
	p.t.Helper()
	b := r.data
	if len(b) < 4 || b[0] != unit {
		p.t.Fatalf("reply % x: not from unit %d", b, unit)
	}
	if got, want := binary.LittleEndian.Uint16(b[len(b)-2:]), crc16(b[:len(b)-2]); got != want {
		p.t.Fatalf("reply % x: crc %04x, want %04x", b, got, want)
	}
	return b[1 : len(b)-2]
}

// pacedRequest sends a request and checks that its n-byte reply came as on
// a real line, and returns it.
//
// At the relay, byte i must have been written at least i·CharTime after
// byte 0: exact, the relay's own clock. At the test's reads, times
// only add latency to the relay's, so the first byte cannot come before
// the turnaround nor the last before turnaround + (n-1) character times:
// also exact. That the bytes also arrive spread out (not bunched into a
// few reads) depends on socat and the reader being scheduled in time, which
// a loaded machine can delay; so that part is tried up to three times and
// needs half the ideal spread.
func pacedRequest(t *testing.T, d *Device, p *rtuPort, frame []byte, n int, opts LineOptions) timedReply {
	t.Helper()
	var r timedReply
	for attempt := 1; attempt <= 3; attempt++ {
		r = p.request(frame, n, 2*time.Second)
		t.Logf("%d-byte reply: first byte after %v, last %v later (ideal %v)",
			n, r.first, r.last-r.first, time.Duration(n-1)*opts.CharTime)
		d.line.mu.Lock()
		writes := append([]time.Time(nil), d.line.lastWrites...)
		d.line.mu.Unlock()
		if len(writes) != n {
			t.Fatalf("relay wrote %d bytes one by one, want %d", len(writes), n)
		}
		var maxGap time.Duration
		for i := 1; i < n; i++ {
			if at, want := writes[i].Sub(writes[0]), time.Duration(i)*opts.CharTime; at < want {
				t.Fatalf("relay wrote byte %d %v after byte 0, want >= %v", i, at, want)
			}
			maxGap = max(maxGap, writes[i].Sub(writes[i-1]))
		}
		t.Logf("relay: %d bytes written over %v, largest gap %v", n, writes[n-1].Sub(writes[0]), maxGap)
		if r.first < opts.Turnaround {
			t.Fatalf("first reply byte after %v, want >= turnaround %v", r.first, opts.Turnaround)
		}
		if floor := opts.Turnaround + time.Duration(n-1)*opts.CharTime; r.last < floor {
			t.Fatalf("last reply byte after %v, want >= turnaround + %d character times = %v", r.last, n-1, floor)
		}
		if r.last-r.first >= time.Duration(n-1)*opts.CharTime/2 {
			return r
		}
	}
	t.Errorf("reply bytes came bunched in 3 attempts (spread %v)", r.last-r.first)
	return r
}

func TestRTUDevice(t *testing.T) {
	d := StartRTU(t, testSpec(), LineOptions{})
	if fi, err := os.Lstat(d.Path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("Path %s is not a symlink: %v", d.Path, err)
	}
	p := openRTU(t, d.Path)
	const wait = 2 * time.Second

	// 3 registers: 1+1+1+6+2 = 11 bytes, spread one character time apart.
	r := pacedRequest(t, d, p, rtuFrame(1, readPDU(3, 0, 3)), 11, LineOptions{}.withDefaults())
	expectPDU(t, "holding 0..2", p.pdu(1, r), registersPDU(3, 1234, 5678, 0xBEEF))
	d.ResetLine()

	r = p.request(rtuFrame(1, readPDU(3, 100, 2)), 5, wait)
	expectPDU(t, "holding 100 (exception range)", p.pdu(1, r), []byte{0x83, 2})
	p.request(rtuFrame(2, readPDU(3, 0, 1)), 0, 500*time.Millisecond)

	want := LineStats{Requests: 2, Replies: 1, BytesToDevice: 16, BytesFromDevice: 5}
	if got := d.Line(); got != want {
		t.Errorf("Line() = %+v, want %+v", got, want)
	}
	d.ResetLine()
	if got := d.Line(); got != (LineStats{}) {
		t.Errorf("Line() after ResetLine = %+v", got)
	}

	// A corrupted reply keeps its length and fails its CRC; the next is fine.
	d.CorruptNextReply()
	r = p.request(rtuFrame(1, readPDU(3, 0, 1)), 7, wait)
	if got, want := binary.LittleEndian.Uint16(r.data[5:]), crc16(r.data[:5]); got == want {
		t.Fatalf("corrupted reply % x has a good CRC", r.data)
	}
	expectPDU(t, "reply after the corrupted one", p.pdu(1, p.request(rtuFrame(1, readPDU(3, 0, 1)), 7, wait)), registersPDU(3, 1234))

	// Runtime control over RTU.
	d.Set(1, Holding, 0, 4321)
	d.SetSilent(2, false)
	expectPDU(t, "holding after Set", p.pdu(1, p.request(rtuFrame(1, readPDU(3, 0, 1)), 7, wait)), registersPDU(3, 4321))
	expectPDU(t, "unit 2 after SetSilent(false)", p.pdu(2, p.request(rtuFrame(2, readPDU(3, 0, 1)), 7, wait)), registersPDU(3, 22))
	if got, want := d.Requests(2), 2; got != want {
		t.Errorf("Requests(2) = %d, want %d", got, want)
	}

	// Unplug: the open port fails and the path vanishes; Replug brings a
	// new pty at the same path and the device answers again.
	d.Unplug()
	if _, err := os.Stat(d.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Path after Unplug: %v, want not exist", err)
	}
	_ = p.f.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := p.f.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on the unplugged port: %v, want an I/O error", err)
	}
	d.Replug()
	p2 := openRTU(t, d.Path)
	expectPDU(t, "after Replug", p2.pdu(1, p2.request(rtuFrame(1, readPDU(3, 0, 1)), 7, wait)), registersPDU(3, 4321))
}

func TestRTULineTiming(t *testing.T) {
	opts := LineOptions{Turnaround: 40 * time.Millisecond, CharTime: CharTime(9600, 11)}
	d := StartRTU(t, DeviceSpec{Units: map[byte]UnitSpec{5: {}}}, opts)
	p := openRTU(t, d.Path)
	// 20 registers: 45 bytes.
	r := pacedRequest(t, d, p, rtuFrame(5, readPDU(3, 0, 20)), 45, opts)
	expectPDU(t, "holding 0..19", p.pdu(5, r), registersPDU(3, make([]uint16, 20)...))
	// Two frames written back to back count as two requests.
	d.ResetLine()
	both := append(rtuFrame(5, readPDU(3, 0, 1)), rtuFrame(5, readPDU(4, 0, 1))...)
	r = p.request(both, 14, 2*time.Second)
	if got := d.Line().Requests; got != 2 {
		t.Errorf("two frames in one write counted as %d requests", got)
	}
	if !bytes.Equal(r.data[:7], rtuFrame(5, registersPDU(3, 0))) {
		t.Errorf("first reply % x", r.data[:7])
	}
}
