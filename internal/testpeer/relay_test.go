package testpeer

import (
	"bytes"
	"testing"
	"time"

	"go.bug.st/serial"
)

func TestSplitter(t *testing.T) {
	read3 := rtuFrame(1, readPDU(3, 0, 3))
	write16 := rtuFrame(1, []byte{16, 0, 0, 0, 2, 4, 0, 1, 0, 2})
	rw23 := rtuFrame(1, []byte{23, 0, 0, 0, 1, 0, 5, 0, 1, 2, 0, 9})
	for _, tc := range []struct {
		name   string
		length func([]byte) int
		chunks [][]byte
		frames [][]byte
		rest   []byte
	}{
		{"request whole", requestLength, [][]byte{read3}, [][]byte{read3}, nil},
		{"request byte by byte", requestLength, split(read3, 1), [][]byte{read3}, nil},
		{"fc16 then fc23 in one chunk", requestLength, [][]byte{cat(write16, rw23)}, [][]byte{write16, rw23}, nil},
		{"unknown function waits for silence", requestLength, [][]byte{{1, 0x41, 2, 3}}, nil, []byte{1, 0x41, 2, 3}},
		{"short frame waits for silence", requestLength, [][]byte{read3[:5]}, nil, read3[:5]},
		{"reply fc3", replyLength, split(rtuFrame(1, registersPDU(3, 1, 2, 3)), 2), [][]byte{rtuFrame(1, registersPDU(3, 1, 2, 3))}, nil},
		{"exception then reply", replyLength, [][]byte{cat(rtuFrame(1, []byte{0x83, 2}), rtuFrame(1, []byte{6, 0, 1, 0, 2}))},
			[][]byte{rtuFrame(1, []byte{0x83, 2}), rtuFrame(1, []byte{6, 0, 1, 0, 2})}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := splitter{length: tc.length}
			var frames [][]byte
			for _, c := range tc.chunks {
				frames = append(frames, s.push(c)...)
			}
			if len(frames) != len(tc.frames) {
				t.Fatalf("frames % x, want % x", frames, tc.frames)
			}
			for i := range frames {
				if !bytes.Equal(frames[i], tc.frames[i]) {
					t.Fatalf("frame %d % x, want % x", i, frames[i], tc.frames[i])
				}
			}
			if rest := s.flush(); !bytes.Equal(rest, tc.rest) {
				t.Fatalf("rest % x, want % x", rest, tc.rest)
			}
		})
	}
}

func FuzzSplitter(f *testing.F) {
	f.Add(rtuFrame(1, readPDU(3, 0, 3)), uint8(3))
	f.Add(rtuFrame(1, []byte{16, 0, 0, 0, 2, 4, 0, 1, 0, 2}), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		for _, length := range []func([]byte) int{requestLength, replyLength} {
			s := splitter{length: length}
			var out []byte
			for _, c := range split(data, int(chunk%16)+1) {
				for _, fr := range s.push(c) {
					if len(fr) == 0 || len(fr) > maxFrame {
						t.Fatalf("frame of %d bytes", len(fr))
					}
					out = append(out, fr...)
				}
			}
			out = append(out, s.flush()...)
			if !bytes.Equal(out, data) {
				t.Fatalf("frames + rest = % x, want % x", out, data)
			}
		}
	})
}

func split(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	if len(b) > 0 {
		out = append(out, b)
	}
	return out
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestRTUWithBugSerial opens the line as the gateway does, with
// go.bug.st/serial at 19200 8E1: twice in a row, then across an unplug.
func TestRTUWithBugSerial(t *testing.T) {
	d := StartRTU(t, DeviceSpec{Units: map[byte]UnitSpec{3: {Input: map[uint16]uint16{10: 0x1234}}}}, LineOptions{})
	mode := &serial.Mode{BaudRate: 19200, DataBits: 8, Parity: serial.EvenParity, StopBits: serial.OneStopBit}
	open := func() serial.Port {
		t.Helper()
		port, err := serial.Open(d.Path, mode)
		if err != nil {
			t.Fatalf("open %s: %v", d.Path, err)
		}
		if err := port.SetReadTimeout(50 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		return port
	}
	poll := func(port serial.Port) {
		t.Helper()
		if _, err := port.Write(rtuFrame(3, readPDU(4, 10, 1))); err != nil {
			t.Fatal(err)
		}
		var reply []byte
		buf := make([]byte, 64)
		deadline := time.Now().Add(2 * time.Second)
		for len(reply) < 7 && time.Now().Before(deadline) {
			n, err := port.Read(buf)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			reply = append(reply, buf[:n]...)
		}
		if want := rtuFrame(3, registersPDU(4, 0x1234)); !bytes.Equal(reply, want) {
			t.Fatalf("reply % x, want % x", reply, want)
		}
	}
	for range 2 {
		port := open()
		poll(port)
		if err := port.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.Line().Requests; got != 2 {
		t.Errorf("Requests = %d, want 2", got)
	}

	port := open()
	d.Unplug()
	_, rerr := port.Read(make([]byte, 8))
	_, werr := port.Write([]byte{1})
	t.Logf("go.bug.st/serial on an unplugged line: read error %v, write error %v", rerr, werr)
	if rerr == nil && werr == nil {
		t.Errorf("no error from an unplugged port")
	}
	_ = port.Close()
	if _, err := serial.Open(d.Path, mode); err == nil {
		t.Errorf("opened %s while unplugged", d.Path)
	}
	d.Replug()
	port = open()
	defer port.Close()
	poll(port)
}
