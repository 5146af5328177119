package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"
)

// fuzzRTURequests are the requests fuzzed replies answer, one per way of
// knowing a reply's length. The seed corpus in testdata/fuzz refers to them
// by index.
var fuzzRTURequests = [][]byte{
	rtuFrame(1, []byte{3, 0, 0, 0, 2}),                    // fc03, 2 registers: 9 bytes
	rtuFrame(1, []byte{1, 0, 0, 0, 13}),                   // fc01, 13 coils: 7 bytes
	rtuFrame(1, []byte{6, 0, 1, 0x12, 0x34}),              // fc06: 8 bytes
	rtuFrame(1, []byte{22, 0, 1, 0xF0, 0xF0, 0x0F, 0x0F}), // fc22: 10 bytes
	rtuFrame(1, []byte{24, 0, 0}),                         // fc24: length in the reply
	rtuFrame(1, []byte{17}),                               // fc17: length unknown, ends with silence
	rtuFrame(1, []byte{3, 0, 0, 0, 125}),                  // fc03, 125 registers: 255 bytes
}

// FuzzReadRTUResponse feeds arbitrary bytes, in arbitrary pieces, to the RTU
// frame reader as the reply to one of fuzzRTURequests. It must never panic,
// never read more than MaxRTUADU bytes for one reply, never read past the end
// of the frame it returns, and never return a frame that is not a valid reply.
func FuzzReadRTUResponse(f *testing.F) {
	f.Add(byte(0), byte(0), []byte{0x01, 0x03, 0x04, 0x00, 0x01, 0x00, 0x02, 0x2A, 0x32})
	f.Fuzz(func(t *testing.T, which, chunk byte, data []byte) {
		req := fuzzRTURequests[int(which)%len(fuzzRTURequests)]
		l := &scriptLine{data: data, chunk: 1 + int(chunk)%17}
		fr := newTestReader()
		frame, err := fr.readFrame(l, req, time.Now().Add(time.Second), time.Second)
		if l.pos > MaxRTUADU {
			t.Fatalf("read %d bytes for one reply", l.pos)
		}
		if err != nil {
			if !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrFrame) {
				t.Fatalf("error of no kind: %v", err)
			}
			return
		}
		if !bytes.HasSuffix(data[:l.pos], frame) {
			t.Fatalf("frame % x is not the last bytes read (% x)", frame, data[:l.pos])
		}
		if len(frame) < 4 {
			t.Fatalf("frame % x too short", frame)
		}
		if got, want := binary.LittleEndian.Uint16(frame[len(frame)-2:]), crc16(frame[:len(frame)-2]); got != want {
			t.Fatalf("frame % x returned with a bad crc", frame)
		}
		if frame[0] != req[0] {
			t.Fatalf("frame % x from the wrong address", frame)
		}
		switch {
		case frame[1] == req[1]|0x80:
			if len(frame) != 5 {
				t.Fatalf("exception frame % x is not 5 bytes", frame)
			}
		case frame[1] != req[1]:
			t.Fatalf("frame % x has the wrong function", frame)
		default:
			if want := rtuReplyLenOracle(req, frame); want >= 0 && len(frame) != want {
				t.Fatalf("frame % x: %d bytes, want %d", frame, len(frame), want)
			}
		}
	})
}

// rtuReplyLenOracle is the reply length by the Modbus specification, written
// apart from the code under test: -1 where only silence tells.
func rtuReplyLenOracle(req, frame []byte) int {
	q := -1
	if len(req) >= 8 {
		q = int(binary.BigEndian.Uint16(req[4:]))
	}
	switch req[1] {
	case 1, 2:
		return 5 + (q+7)/8
	case 3, 4:
		return 5 + 2*q
	case 5, 6, 15, 16:
		return 8
	case 22:
		return 10
	case 24:
		if len(frame) < 4 {
			return 0 // impossible: fails the test
		}
		bc := int(binary.BigEndian.Uint16(frame[2:]))
		if bc%2 != 0 || bc > 64 {
			return 0
		}
		return 6 + bc
	}
	return -1
}

// fuzzTCPRequests are Modbus TCP requests: transaction id 0x1234, unit 7.
var fuzzTCPRequests = [][]byte{
	tcpFrame(0x1234, 7, []byte{3, 0, 0, 0, 2}),
	tcpFrame(0x1234, 7, []byte{1, 0, 0, 0, 13}),
	tcpFrame(0x1234, 7, []byte{16, 0, 1, 0, 1, 2, 0xAB, 0xCD}),
	tcpFrame(0x1234, 7, []byte{22, 0, 1, 0xF0, 0xF0, 0x0F, 0x0F}),
	tcpFrame(0x1234, 7, []byte{24, 0, 0}),
	tcpFrame(0x1234, 7, []byte{17}),
}

// chunkReader hands out its data at most n bytes per Read, like a socket.
type chunkReader struct {
	data []byte
	n    int
	pos  int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.pos >= len(r.data) {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.data[r.pos:])
	r.pos += k
	return k, nil
}

// FuzzTCPResponse feeds arbitrary bytes to the Modbus TCP reply reader. It
// must never panic, never read more than MaxTCPADU bytes, and return only a
// reply whose ids, length and function fit the request.
func FuzzTCPResponse(f *testing.F) {
	f.Add(byte(0), byte(0), []byte{0x12, 0x34, 0, 0, 0, 7, 7, 3, 4, 0, 1, 0, 2})
	f.Fuzz(func(t *testing.T, which, chunk byte, data []byte) {
		req := fuzzTCPRequests[int(which)%len(fuzzTCPRequests)]
		r := &chunkReader{data: data, n: 1 + int(chunk)%17}
		var buf [MaxTCPADU]byte
		n, err := readTCPFrame(r, "fuzz", req, buf[:], new(counters))
		if r.pos > MaxTCPADU {
			t.Fatalf("read %d bytes for one reply", r.pos)
		}
		if err != nil {
			var re *tcpReadError
			if !errors.As(err, &re) && !errors.Is(err, ErrFrame) {
				t.Fatalf("error of no kind: %v", err)
			}
			return
		}
		frame := buf[:n]
		if !bytes.Equal(frame, data[:n]) || r.pos != n {
			t.Fatalf("frame % x is not the %d bytes read", frame, r.pos)
		}
		switch {
		case !bytes.Equal(frame[:4], req[:4]):
			t.Fatalf("frame % x: transaction or protocol id differ from the request's", frame)
		case int(binary.BigEndian.Uint16(frame[4:])) != n-6:
			t.Fatalf("frame % x: length field does not match %d bytes", frame, n)
		case frame[6] != req[6]:
			t.Fatalf("frame % x: wrong unit", frame)
		}
		pdu, reqPDU := frame[mbapLen:], req[mbapLen:]
		switch {
		case len(pdu) == 0:
			t.Fatalf("frame % x without a function", frame)
		case pdu[0] == reqPDU[0]|0x80:
			if len(pdu) != 2 {
				t.Fatalf("exception % x is not 2 bytes", pdu)
			}
		case pdu[0] != reqPDU[0]:
			t.Fatalf("frame % x has the wrong function", frame)
		default:
			rtuReq := append(append([]byte{7}, reqPDU...), 0, 0)
			rtuLike := append(append([]byte{7}, pdu...), 0, 0)
			if want := rtuReplyLenOracle(rtuReq, rtuLike); want >= 0 && len(pdu)+3 != want {
				t.Fatalf("pdu % x: %d bytes, want %d", pdu, len(pdu), want-3)
			}
		}
	})
}
