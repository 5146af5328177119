package transport

import "time"

// BroadcastTurnaround is how long the RTU transports keep the line quiet after
// a broadcast (unit 0) so that every device has acted on it before the next
// request. The Modbus serial line guide suggests 100 to 200 ms.
const BroadcastTurnaround = 100 * time.Millisecond

// Minimum silences that end a reply of unknown length or a drain after an error.
// t3.5 alone is too fine a measure from user space: USB serial adapters deliver
// bytes in bursts (latency timer) and the scheduler adds jitter, and a serial
// device server adds network buffering on top.
const (
	serialMinSilence = 5 * time.Millisecond
	netMinSilence    = 20 * time.Millisecond
)

// CharTime returns the time one character takes on a serial line at baud: a
// start bit, the data bits, a parity bit and the stop bits. dataBits 0 means 8
// and stopBits 0 means 1. Parity 'N' means no parity bit; any other value,
// including 0 (the Modbus default, even), adds one. CharTime is 0 if baud is not
// positive (unknown).
func CharTime(baud, dataBits int, parity byte, stopBits int) time.Duration {
	if baud <= 0 {
		return 0
	}
	return time.Duration(charBits(dataBits, parity, stopBits)) * time.Second / time.Duration(baud)
}

func charBits(dataBits int, parity byte, stopBits int) int {
	if dataBits <= 0 {
		dataBits = 8
	}
	if stopBits <= 0 {
		stopBits = 1
	}
	bits := 1 + dataBits + stopBits
	if parity != 'N' && parity != 'n' {
		bits++
	}
	return bits
}

// FrameGap returns t3.5, the silence that separates two RTU frames: 3.5
// character times, or a fixed 1.75 ms above 19200 baud where the Modbus serial
// line specification (§2.5.1.1) stops scaling it. FrameGap is 0 if baud is not
// positive (unknown). The arguments are those of CharTime.
func FrameGap(baud, dataBits int, parity byte, stopBits int) time.Duration {
	if baud <= 0 {
		return 0
	}
	if baud > 19200 {
		return 1750 * time.Microsecond
	}
	return time.Duration(7*charBits(dataBits, parity, stopBits)) * time.Second / time.Duration(2*baud)
}

// ExpectedResponseLen returns the length in bytes of the normal reply to an RTU
// request (address, PDU, CRC), so that the poll planner can project bus time.
// It is 0 for a broadcast (unit 0), which gets no reply, and -1 if the length
// cannot be known from the request (function codes other than 1-6, 15, 16, 22,
// 23, or a request too short to carry its quantity). An exception reply is
// always 5 bytes.
func ExpectedResponseLen(request []byte) int {
	if len(request) < 4 {
		return -1
	}
	if request[0] == 0 {
		return 0
	}
	r := replyFor(request[1 : len(request)-2])
	switch {
	case r.kind == replyFixed:
		return 1 + r.fixedLen + 2
	case r.kind == replyCount && r.count >= 0 && 2+r.count <= maxPDU:
		return 1 + 2 + r.count + 2
	}
	return -1
}

// maxDur returns the longer of a and b.
func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
