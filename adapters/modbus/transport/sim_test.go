package transport

import (
	"encoding/binary"
	"sync"
)

// sim is the data model of the fake devices: enough of a Modbus server to
// answer every function code the transports know, so that tests check real
// replies rather than canned bytes.
type sim struct {
	mu    sync.Mutex
	coils [2048]bool
	regs  [1024]uint16
	fifo  []uint16
}

func newSim() *sim {
	s := &sim{fifo: []uint16{0x1111, 0x2222, 0x3333}}
	for i := range s.regs {
		s.regs[i] = uint16(i*7 + 1)
	}
	for i := range s.coils {
		s.coils[i] = i%3 == 0
	}
	return s
}

func inputReg(addr int) uint16   { return uint16(addr*3 + 0x100) }
func discreteIn(addr int) bool   { return addr%5 == 1 }
func be16(b []byte, off int) int { return int(binary.BigEndian.Uint16(b[off:])) }

func exception(fc, code byte) []byte { return []byte{fc | 0x80, code} }

// pdu answers a request PDU (function code first) with a reply PDU.
func (s *sim) pdu(req []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	fc := req[0]
	packBits := func(q int, bit func(int) bool) []byte {
		out := make([]byte, 2+(q+7)/8)
		out[0], out[1] = fc, byte((q+7)/8)
		for i := range q {
			if bit(i) {
				out[2+i/8] |= 1 << (i % 8)
			}
		}
		return out
	}
	packRegs := func(q int, reg func(int) uint16) []byte {
		out := []byte{fc, byte(2 * q)}
		for i := range q {
			out = binary.BigEndian.AppendUint16(out, reg(i))
		}
		return out
	}
	switch fc {
	case 1, 2:
		a, q := be16(req, 1), be16(req, 3)
		if q < 1 || q > 2000 {
			return exception(fc, 3)
		}
		if a+q > len(s.coils) {
			return exception(fc, 2)
		}
		if fc == 1 {
			return packBits(q, func(i int) bool { return s.coils[a+i] })
		}
		return packBits(q, func(i int) bool { return discreteIn(a + i) })
	case 3, 4:
		a, q := be16(req, 1), be16(req, 3)
		if q < 1 || q > 125 {
			return exception(fc, 3)
		}
		if a+q > len(s.regs) {
			return exception(fc, 2)
		}
		if fc == 3 {
			return packRegs(q, func(i int) uint16 { return s.regs[a+i] })
		}
		return packRegs(q, func(i int) uint16 { return inputReg(a + i) })
	case 5:
		a, v := be16(req, 1), be16(req, 3)
		if v != 0xFF00 && v != 0 {
			return exception(fc, 3)
		}
		s.coils[a] = v == 0xFF00
		return append([]byte(nil), req[:5]...)
	case 6:
		s.regs[be16(req, 1)] = uint16(be16(req, 3))
		return append([]byte(nil), req[:5]...)
	case 15:
		a, q := be16(req, 1), be16(req, 3)
		for i := range q {
			s.coils[a+i] = req[6+i/8]&(1<<(i%8)) != 0
		}
		return append([]byte(nil), req[:5]...)
	case 16:
		a, q := be16(req, 1), be16(req, 3)
		for i := range q {
			s.regs[a+i] = uint16(be16(req, 6+2*i))
		}
		return append([]byte(nil), req[:5]...)
	case 22:
		a, and, or := be16(req, 1), uint16(be16(req, 3)), uint16(be16(req, 5))
		s.regs[a] = s.regs[a]&and | or&^and
		return append([]byte(nil), req[:7]...)
	case 23:
		ra, rq, wa, wq := be16(req, 1), be16(req, 3), be16(req, 5), be16(req, 7)
		for i := range wq {
			s.regs[wa+i] = uint16(be16(req, 10+2*i))
		}
		return packRegs(rq, func(i int) uint16 { return s.regs[ra+i] })
	case 24:
		out := []byte{fc}
		out = binary.BigEndian.AppendUint16(out, uint16(2+2*len(s.fifo)))
		out = binary.BigEndian.AppendUint16(out, uint16(len(s.fifo)))
		for _, v := range s.fifo {
			out = binary.BigEndian.AppendUint16(out, v)
		}
		return out
	case 8: // diagnostics: echo
		return append([]byte(nil), req...)
	case 17: // report server id: length unknown from the request
		return []byte{fc, 5, 'f', 'b', 'r', 'g', 0xFF}
	}
	return exception(fc, 1)
}

// rtuFrame wraps a PDU for unit into an RTU frame.
func rtuFrame(unit byte, pdu []byte) []byte {
	f := append([]byte{unit}, pdu...)
	return binary.LittleEndian.AppendUint16(f, crc16(f))
}

// tcpFrame wraps a PDU into a Modbus TCP frame.
func tcpFrame(tid uint16, unit byte, pdu []byte) []byte {
	f := binary.BigEndian.AppendUint16(nil, tid)
	f = append(f, 0, 0)
	f = binary.BigEndian.AppendUint16(f, uint16(len(pdu)+1))
	f = append(f, unit)
	return append(f, pdu...)
}

// rtuAnswer is what a well-behaved device puts on the line for request req.
func (s *sim) rtuAnswer(req []byte) []byte {
	return rtuFrame(req[0], s.pdu(req[1:len(req)-2]))
}

// rtuRequestLen tells a fake device how long the request starting with b
// is, or 0 if it needs more bytes to tell.
func rtuRequestLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case 15, 16:
		if len(b) < 7 {
			return 0
		}
		return 9 + int(b[6])
	case 22:
		return 10
	case 23:
		if len(b) < 11 {
			return 0
		}
		return 13 + int(b[10])
	case 24:
		return 6
	case 17:
		return 4
	}
	return 8
}
