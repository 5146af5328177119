package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// scriptLine hands out data at most chunk bytes per read, then reports every
// deadline as passed at once: framing is tested without the clock.
type scriptLine struct {
	data  []byte
	chunk int
	pos   int
}

func (l *scriptLine) readBy(p []byte, _ time.Time) (int, error) {
	n := min(len(p), l.chunk, len(l.data)-l.pos)
	copy(p, l.data[l.pos:l.pos+n])
	l.pos += n
	return n, nil
}

func (l *scriptLine) write(p []byte) (int, error) { return len(p), nil }
func (l *scriptLine) flushInput() (int, error)    { return 0, nil }

func newTestReader() *frameReader {
	return &frameReader{name: "line", silence: time.Millisecond, st: new(counters)}
}

func readFrameFrom(req, line []byte, chunk int) ([]byte, *scriptLine, error) {
	l := &scriptLine{data: line, chunk: chunk}
	f, err := newTestReader().readFrame(l, req, time.Now().Add(time.Second), time.Second)
	return f, l, err
}

// requestsForEveryFunction returns one request per function code the
// transports know, and two they do not.
func requestsForEveryFunction(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"fc01 13 coils":      rtuRequest(t, 1, 1, 0, 0, 0, 13),
		"fc02 16 inputs":     rtuRequest(t, 1, 2, 0, 0, 0, 16),
		"fc03 125 registers": rtuRequest(t, 1, 3, 0, 0, 0, 125),
		"fc04 1 register":    rtuRequest(t, 1, 4, 0, 0, 0, 1),
		"fc05":               rtuRequest(t, 1, 5, 0, 1, 0xFF, 0),
		"fc06":               rtuRequest(t, 1, 6, 0, 1, 0x12, 0x34),
		"fc15":               rtuRequest(t, 1, 15, 0, 1, 0, 9, 2, 0xFF, 1),
		"fc16":               rtuRequest(t, 1, 16, 0, 1, 0, 2, 4, 1, 2, 3, 4),
		"fc22":               rtuRequest(t, 1, 22, 0, 1, 0xF0, 0xF0, 0x0F, 0x0F),
		"fc23":               rtuRequest(t, 1, 23, 0, 0, 0, 3, 0, 9, 0, 1, 2, 0xAB, 0xCD),
		"fc24":               rtuRequest(t, 1, 24, 0, 0),
		"fc08 open":          rtuRequest(t, 1, 8, 0, 0, 0x12, 0x34),
		"fc17 open":          rtuRequest(t, 1, 17),
	}
}

// Every reply is assembled whatever pieces it arrives in, and nothing after
// its end is read, so a following frame stays on the line.
func TestReadFrameEveryFunctionCode(t *testing.T) {
	sm := newSim()
	for name, req := range requestsForEveryFunction(t) {
		reply := sm.rtuAnswer(req)
		exc := rtuFrame(1, []byte{req[1] | 0x80, 2})
		open := ExpectedResponseLen(req) < 0 && req[1] != 24
		if !open && ExpectedResponseLen(req) != len(reply) && req[1] != 24 {
			t.Errorf("%s: ExpectedResponseLen %d, reply has %d", name, ExpectedResponseLen(req), len(reply))
		}
		for _, chunk := range []int{1, 2, 3, 5, 8, 300} {
			for _, want := range [][]byte{reply, exc} {
				line := append(append([]byte{}, want...), 0xEE, 0xEE) // trailing bytes
				if open && !bytes.Equal(want, exc) {
					line = want // ends with silence, which the script gives at its end
				}
				got, l, err := readFrameFrom(req, line, chunk)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%s, %d-byte chunks: got % x, %v; want % x", name, chunk, got, err, want)
				}
				if l.pos != len(want) {
					t.Errorf("%s, %d-byte chunks: read %d bytes for a %d-byte frame", name, chunk, l.pos, len(want))
				}
			}
		}
	}
}

func TestReadFrameRejects(t *testing.T) {
	req := rtuRequest(t, 1, 3, 0, 0, 0, 2)
	good := rtuFrame(1, []byte{3, 4, 0, 1, 0, 2})
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x40; return b }
	noise := make([]byte, 1000)
	for i := range noise {
		noise[i] = 0xFF
	}
	cases := []struct {
		name     string
		line     []byte
		kind     error
		contains string
		maxRead  int
	}{
		{"nothing", nil, ErrTimeout, "timeout after 1s (0 of 9 bytes)", 0},
		{"truncated", good[:6], ErrTimeout, "(6 of 9 bytes)", 6},
		{"truncated exception", []byte{1, 0x83, 2}, ErrTimeout, "(3 of 5 bytes)", 3},
		{"crc", flip(len(good) - 1), ErrFrame, "crc mismatch", 9},
		{"data bit", flip(4), ErrFrame, "crc mismatch", 9},
		{"exception crc", []byte{1, 0x83, 2, 0, 0}, ErrFrame, "crc mismatch", 5},
		{"address", rtuFrame(2, []byte{3, 4, 0, 1, 0, 2}), ErrFrame, "unexpected address 0x02, want 0x01", 9},
		{"function", rtuFrame(1, []byte{4, 4, 0, 1, 0, 2}), ErrFrame, "unexpected function 0x04, want 0x03", 9},
		{"byte count", rtuFrame(1, []byte{3, 2, 0, 1}), ErrFrame, "unexpected byte count 2, want 4", 7},
		{"endless noise", noise, ErrFrame, "no valid reply in 256 bytes", 256},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, chunk := range []int{1, 4, 300} {
				_, l, err := readFrameFrom(req, c.line, chunk)
				wantKind(t, err, c.kind, c.contains)
				if l.pos > c.maxRead {
					t.Errorf("%d-byte chunks: read %d bytes, want at most %d", chunk, l.pos, c.maxRead)
				}
			}
		})
	}
}

func TestReadFrameCounts(t *testing.T) {
	req := rtuRequest(t, 1, 3, 0, 0, 0, 1)
	good := rtuFrame(1, []byte{3, 2, 0, 7})
	fr := newTestReader()
	l := &scriptLine{data: append([]byte{0, 0xFF}, good...), chunk: 1}
	if _, err := fr.readFrame(l, req, time.Now().Add(time.Second), time.Second); err != nil {
		t.Fatal(err)
	}
	if st := fr.st.snapshot(); st.BytesRead != 9 || st.BytesDiscarded != 2 {
		t.Errorf("stats %+v: want 9 read, 2 discarded", st)
	}
}

func TestExpectedResponseLen(t *testing.T) {
	cases := []struct {
		req  []byte
		want int
	}{
		{rtuRequest(t, 1, 3, 0, 0, 0, 10), 25},
		{rtuRequest(t, 1, 4, 0, 0, 0, 125), 255},
		{rtuRequest(t, 1, 3, 0, 0, 0, 126), -1}, // no normal reply fits
		{rtuRequest(t, 1, 1, 0, 0, 0, 9), 7},
		{rtuRequest(t, 1, 2, 0, 0, 7, 0xD0), 255}, // 2000 inputs
		{rtuRequest(t, 1, 5, 0, 0, 0xFF, 0), 8},
		{rtuRequest(t, 1, 6, 0, 0, 0, 1), 8},
		{rtuRequest(t, 1, 15, 0, 0, 0, 1, 1, 1), 8},
		{rtuRequest(t, 1, 16, 0, 0, 0, 1, 2, 0, 1), 8},
		{rtuRequest(t, 1, 22, 0, 0, 0, 1, 0, 2), 10},
		{rtuRequest(t, 1, 23, 0, 0, 0, 4, 0, 0, 0, 1, 2, 0, 1), 13},
		{rtuRequest(t, 1, 24, 0, 0), -1},
		{rtuRequest(t, 1, 43, 14, 1, 0), -1},
		{rtuRequest(t, 1, 3, 0), -1}, // too short to say
		{rtuRequest(t, 0, 6, 0, 0, 0, 1), 0},
		{[]byte{1, 3}, -1},
	}
	for _, c := range cases {
		if got := ExpectedResponseLen(c.req); got != c.want {
			t.Errorf("ExpectedResponseLen(% x) = %d, want %d", c.req, got, c.want)
		}
	}
}

func TestCharTimeAndFrameGap(t *testing.T) {
	us := time.Microsecond
	cases := []struct {
		baud, data int
		parity     byte
		stop       int
		char, gap  time.Duration
	}{
		{9600, 8, 'E', 1, 1145833 * time.Nanosecond, 4010416 * time.Nanosecond},
		{9600, 8, 'N', 1, 1041666 * time.Nanosecond, 3645833 * time.Nanosecond},
		{9600, 8, 'N', 2, 1145833 * time.Nanosecond, 4010416 * time.Nanosecond},
		{9600, 0, 0, 0, 1145833 * time.Nanosecond, 4010416 * time.Nanosecond}, // defaults: 8 bits, even, 1 stop
		{19200, 8, 'O', 1, 572916 * time.Nanosecond, 2005208 * time.Nanosecond},
		{38400, 8, 'E', 1, 286458 * time.Nanosecond, 1750 * us},
		{115200, 8, 'N', 1, 86805 * time.Nanosecond, 1750 * us},
		{0, 8, 'E', 1, 0, 0},
	}
	for _, c := range cases {
		if got := CharTime(c.baud, c.data, c.parity, c.stop); got != c.char {
			t.Errorf("CharTime(%d, %d, %q, %d) = %v, want %v", c.baud, c.data, c.parity, c.stop, got, c.char)
		}
		if got := FrameGap(c.baud, c.data, c.parity, c.stop); got != c.gap {
			t.Errorf("FrameGap(%d, %d, %q, %d) = %v, want %v", c.baud, c.data, c.parity, c.stop, got, c.gap)
		}
	}
	// The architecture's bus budget: FC03 of 10 registers at 9600 8E1 is
	// 8 + 25 = 33 characters plus two gaps, about 46 ms, ~22 per second.
	per := 33*CharTime(9600, 8, 'E', 1) + 2*FrameGap(9600, 8, 'E', 1)
	if n := int(time.Second / per); n != 21 && n != 22 {
		t.Errorf("%v per FC03x10 transaction, %d per second; want ~22", per, n)
	}
}

func TestCRC16MatchesGoburrow(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		data := make([]byte, r.IntN(250))
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		adu := rtuRequest(t, byte(i), byte(1+i%100), data...)
		if got, want := crc16(adu[:len(adu)-2]), binary.LittleEndian.Uint16(adu[len(adu)-2:]); got != want {
			t.Fatalf("crc16(% x) = 0x%04x, goburrow says 0x%04x", adu[:len(adu)-2], got, want)
		}
	}
	// The example of the Modbus serial line guide, §6.2.2.
	if got := crc16([]byte{0x02, 0x07}); got != 0x1241 {
		t.Errorf("crc16(02 07) = 0x%04x, want 0x1241", got)
	}
}

func ExampleExpectedResponseLen() {
	// Unit 1, FC03, 10 registers from 0: address, function, count, 20 data
	// bytes, CRC.
	req := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD}
	fmt.Println(ExpectedResponseLen(req))
	// Output: 25
}
