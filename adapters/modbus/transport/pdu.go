package transport

import (
	"encoding/binary"
	"fmt"
)

// Size limits of Modbus application data units.
const (
	// MaxRTUADU is the largest RTU frame: address, 253-byte PDU, CRC.
	MaxRTUADU = 256
	// MaxTCPADU is the largest Modbus TCP frame: 7-byte MBAP header and PDU.
	MaxTCPADU = 260

	maxPDU = 253
)

// replyKind says how the length of a normal reply follows from the request.
type replyKind uint8

const (
	replyFixed replyKind = iota // set by the function code (5, 6, 15, 16, 22)
	replyCount                  // function, byte count, data (1-4, 23)
	replyFIFO                   // function, 2-byte byte count, data (24)
	replyOpen                   // unknown: ends with silence (RTU) or the MBAP length (TCP)
)

// reply describes the normal reply to one request, as far as the request
// tells. It is computed once per Send and checked against incoming bytes as
// soon as they arrive, so that a frame that cannot be the answer is recognised
// at its second or third byte rather than after a timeout.
type reply struct {
	fc       byte
	kind     replyKind
	fixedLen int // replyFixed: PDU length, function code included
	count    int // replyCount: byte count the request asks for, -1 if unknown
	even     bool
}

// replyFor returns what the reply to request PDU req (function code first)
// must look like.
func replyFor(req []byte) reply {
	if len(req) == 0 {
		return reply{kind: replyOpen}
	}
	r := reply{fc: req[0], count: -1}
	quantity := func(off int) int {
		if len(req) < off+2 {
			return -1
		}
		return int(binary.BigEndian.Uint16(req[off:]))
	}
	switch r.fc {
	case 1, 2:
		r.kind = replyCount
		if q := quantity(3); q >= 0 {
			r.count = (q + 7) / 8
		}
	case 3, 4, 23:
		r.kind, r.even = replyCount, true
		if q := quantity(3); q >= 0 { // FC23: read quantity comes first too
			r.count = 2 * q
		}
	case 5, 6, 15, 16:
		r.kind, r.fixedLen = replyFixed, 5
	case 22:
		r.kind, r.fixedLen = replyFixed, 7
	case 24:
		r.kind = replyFIFO
	default:
		r.kind = replyOpen
	}
	return r
}

// Reasons a frame cannot be the reply.
const (
	badNone uint8 = iota
	badAddress
	badFunction
	badCount
	badLength
)

// badReason says why bytes cannot start the expected reply. It is a value, not
// an error, because the RTU reader tests every byte it skips while hunting for
// the start of a reply and must not allocate for each.
type badReason struct {
	what      uint8
	got, want int
}

func (b badReason) String() string {
	switch b.what {
	case badAddress:
		return fmt.Sprintf("unexpected address 0x%02x, want 0x%02x", b.got, b.want)
	case badFunction:
		return fmt.Sprintf("unexpected function 0x%02x, want 0x%02x", b.got, b.want)
	case badCount:
		return fmt.Sprintf("unexpected byte count %d, want %d", b.got, b.want)
	case badLength:
		if b.want >= 0 {
			return fmt.Sprintf("bad length %d, want %d", b.got, b.want)
		}
		return fmt.Sprintf("impossible length %d", b.got)
	}
	return "no error"
}

// Results of pduLen besides a length.
const (
	needMore = 0  // not enough bytes yet to tell
	openLen  = -1 // the reply's length cannot be told from its header
)

// pduLen inspects the first bytes p of a reply PDU (function code first) and
// returns its total length, needMore, or openLen; or a reason why p cannot
// start a valid reply to the request.
func (r *reply) pduLen(p []byte) (int, badReason) {
	if len(p) == 0 {
		return needMore, badReason{}
	}
	if r.fc < 0x80 && p[0] == r.fc|0x80 {
		return 2, badReason{} // exception: function|0x80, exception code
	}
	if p[0] != r.fc {
		return 0, badReason{what: badFunction, got: int(p[0]), want: int(r.fc)}
	}
	switch r.kind {
	case replyFixed:
		return r.fixedLen, badReason{}
	case replyCount:
		if len(p) < 2 {
			return needMore, badReason{}
		}
		bc := int(p[1])
		switch {
		case r.count >= 0 && bc != r.count:
			return 0, badReason{what: badCount, got: bc, want: r.count}
		case r.count < 0 && (bc == 0 || r.even && bc%2 != 0):
			return 0, badReason{what: badCount, got: bc, want: -1}
		case 2+bc > maxPDU:
			return 0, badReason{what: badLength, got: 2 + bc, want: -1}
		}
		return 2 + bc, badReason{}
	case replyFIFO:
		if len(p) < 3 {
			return needMore, badReason{}
		}
		// Byte count covers the FIFO count and up to 31 registers.
		bc := int(binary.BigEndian.Uint16(p[1:]))
		if bc < 2 || bc > 64 || bc%2 != 0 {
			return 0, badReason{what: badCount, got: bc, want: -1}
		}
		return 3 + bc, badReason{}
	}
	return openLen, badReason{}
}

// checkPDU verifies a complete reply PDU whose length came from outside (the
// MBAP header): it must be the reply the request asked for, of the length its
// header implies.
func (r *reply) checkPDU(p []byte) badReason {
	n, why := r.pduLen(p)
	if why.what != badNone {
		return why
	}
	if n == needMore {
		// A count or FIFO header cut short by the frame's end.
		return badReason{what: badLength, got: len(p), want: -1}
	}
	if n > 0 && n != len(p) {
		return badReason{what: badLength, got: len(p), want: n}
	}
	return badReason{}
}

// crcTable is the table of the Modbus CRC-16 (polynomial 0xA001, reflected).
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc16 returns the Modbus CRC of b. It goes on the wire low byte first.
func crc16(b []byte) uint16 {
	c := uint16(0xFFFF)
	for _, x := range b {
		c = c>>8 ^ crcTable[byte(c)^x]
	}
	return c
}
