package testpeer

import (
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"time"
)

// How the relay finds frames. pymodbus writes a reply with one write and
// socat hands it over whole, so a read usually returns one whole frame;
// the relay does not rely on it. It splits each byte stream with the RTU
// length rules (requestLength, replyLength: fixed sizes per function code,
// or the byte-count field), and falls back to silence when the rules do not
// apply (unknown function code, or a frame shorter than its header says):
// bytes followed by 3.5 character times of silence (at least 2 ms) are one
// frame, which is also how a real slave resynchronises.

// frame is one request or reply and when its last byte arrived.
type frame struct {
	data []byte
	at   time.Time
}

// splitter cuts a byte stream into RTU frames.
type splitter struct {
	length func([]byte) int // frame length, 0 if not yet known, -1 if unknowable
	buf    []byte
}

// maxFrame is the largest RTU frame (Modbus over serial line, 2.5.1.1).
const maxFrame = 256

// push adds bytes and returns the frames they complete.
func (s *splitter) push(p []byte) [][]byte {
	s.buf = append(s.buf, p...)
	var frames [][]byte
	for len(s.buf) > 0 {
		n := s.length(s.buf)
		if n <= 0 || n > maxFrame || len(s.buf) < n {
			break // need more bytes, or wait for the silence
		}
		frames = append(frames, append([]byte(nil), s.buf[:n]...))
		s.buf = s.buf[n:]
	}
	if len(s.buf) == 0 {
		s.buf = nil
	}
	return frames
}

// pending reports whether bytes wait for the rest of their frame.
func (s *splitter) pending() bool { return len(s.buf) > 0 }

// flush returns the waiting bytes as a frame (the line went silent).
func (s *splitter) flush() []byte {
	b := s.buf
	s.buf = nil
	return b
}

// requestLength applies the RTU length rules to a request from the master.
func requestLength(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	switch b[1] {
	case 1, 2, 3, 4, 5, 6, 8:
		return 8
	case 7, 11, 12, 17:
		return 4
	case 15, 16:
		return countAt(b, 6, 9)
	case 20, 21:
		return countAt(b, 2, 5)
	case 22:
		return 10
	case 23:
		return countAt(b, 10, 13)
	case 24:
		return 6
	case 43:
		return 7
	}
	return -1
}

// replyLength applies the RTU length rules to a reply from a slave.
func replyLength(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	fc := b[1]
	if fc&0x80 != 0 {
		return 5
	}
	switch fc {
	case 1, 2, 3, 4, 12, 17, 20, 21, 23:
		return countAt(b, 2, 5)
	case 5, 6, 8, 11, 15, 16:
		return 8
	case 7:
		return 5
	case 22:
		return 10
	case 24:
		if len(b) < 4 {
			return 0
		}
		return 6 + int(binary.BigEndian.Uint16(b[2:4]))
	}
	return -1
}

// countAt returns fixed plus the byte count at b[i], or 0 while b is
// shorter than that.
func countAt(b []byte, i, fixed int) int {
	if len(b) <= i {
		return 0
	}
	return fixed + int(b[i])
}

// silence is the gap that ends a frame whose length the rules cannot tell.
func (l *rtuLine) silence() time.Duration {
	return max(l.opts.CharTime*7/2, 2*time.Millisecond)
}

// readGateway forwards what the gateway writes on pair A to the device at
// once, counting bytes and request frames. One runs per plug; it ends when
// its port is closed or hung up.
func (l *rtuLine) readGateway(port *os.File) {
	defer l.wg.Done()
	sp := splitter{length: requestLength}
	buf := make([]byte, 1024)
	for {
		if sp.pending() {
			_ = port.SetReadDeadline(time.Now().Add(l.silence()))
		} else {
			_ = port.SetReadDeadline(time.Time{})
		}
		n, err := port.Read(buf)
		now := time.Now()
		if n > 0 {
			// Counted before forwarding, so a test that saw the reply
			// also sees the request in the counters.
			frames := len(sp.push(buf[:n]))
			l.mu.Lock()
			l.stats.BytesToDevice += n
			l.stats.Requests += frames
			l.lastReq = now
			l.mu.Unlock()
			if _, werr := l.portB.Write(buf[:n]); werr != nil {
				l.note("write to device side: %v", werr)
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if b := sp.flush(); len(b) > 0 {
				l.note("request % x ended by silence", b)
				l.mu.Lock()
				l.stats.Requests++
				l.mu.Unlock()
			}
		default:
			l.note("gateway side closed: %v", err)
			return
		}
	}
}

// readDevice collects the device's replies from pair B.
func (l *rtuLine) readDevice() {
	defer l.wg.Done()
	sp := splitter{length: replyLength}
	buf := make([]byte, 1024)
	for {
		if sp.pending() {
			_ = l.portB.SetReadDeadline(time.Now().Add(l.silence()))
		} else {
			_ = l.portB.SetReadDeadline(time.Time{})
		}
		n, err := l.portB.Read(buf)
		now := time.Now()
		var frames [][]byte
		if n > 0 {
			frames = sp.push(buf[:n])
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if b := sp.flush(); len(b) > 0 {
				l.note("reply % x ended by silence", b)
				frames = append(frames, b)
			}
		default:
			select {
			case <-l.stop:
			default:
				l.note("device side closed: %v", err)
			}
			return
		}
		for _, f := range frames {
			select {
			case l.replies <- frame{data: f, at: now}:
			case <-l.stop:
				return
			}
		}
	}
}

// writeReplies delivers each reply to the gateway: Turnaround after the
// request, then one byte per CharTime.
func (l *rtuLine) writeReplies() {
	defer l.wg.Done()
	for {
		var r frame
		select {
		case r = <-l.replies:
		case <-l.stop:
			return
		}
		l.mu.Lock()
		start := l.lastReq.Add(l.opts.Turnaround)
		corrupt := l.corrupt
		l.corrupt = false
		l.stats.Replies++
		l.mu.Unlock()
		if start.Before(r.at) {
			start = r.at // the device took longer than the turnaround
		}
		if corrupt {
			i := len(r.data) - 1
			if len(r.data) >= 5 {
				i = len(r.data) - 3 // last byte before the CRC
			}
			r.data[i] ^= 0xff
			l.note("corrupted reply byte %d: % x", i, r.data)
		}
		if !l.sleepUntil(start) {
			return
		}
		if l.opts.CharTime == 0 {
			l.deliver(r.data)
			continue
		}
		// Byte i goes out at t0 + i·CharTime, t0 being when the first one
		// did: a late wake-up is caught up on the next bytes, so the reply
		// takes as long as on the wire and no gap grows beyond one
		// overshoot of the sleep.
		var t0 time.Time
		for i, c := range r.data {
			if i > 0 && !l.sleepUntil(t0.Add(time.Duration(i)*l.opts.CharTime)) {
				return
			}
			now := time.Now()
			l.mu.Lock()
			if i == 0 {
				t0 = now
				l.lastWrites = l.lastWrites[:0]
			}
			l.lastWrites = append(l.lastWrites, now)
			l.mu.Unlock()
			if !l.deliver([]byte{c}) {
				break
			}
		}
	}
}

// deliver writes to the gateway side; false if it is unplugged. The bytes
// are counted before the write, so a test that received them also sees
// them counted; what a failed write did not deliver is taken back.
func (l *rtuLine) deliver(b []byte) bool {
	l.mu.Lock()
	port := l.portA
	if port != nil {
		l.stats.BytesFromDevice += len(b)
	}
	l.mu.Unlock()
	if port == nil {
		return false
	}
	n, err := port.Write(b)
	if n < len(b) {
		l.mu.Lock()
		l.stats.BytesFromDevice -= len(b) - n
		l.mu.Unlock()
	}
	return err == nil
}

// sleepUntil waits until t; false if the line is closing. The runtime's
// timers are about a millisecond coarse here (its poller sleeps in whole
// milliseconds), too coarse for character gaps of ~0.5 ms, so the last
// stretch is a nanosleep system call, which blocks only this goroutine's
// thread and wakes within tens of microseconds.
func (l *rtuLine) sleepUntil(t time.Time) bool {
	for {
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		if d > 2*time.Millisecond {
			timer := time.NewTimer(d - 1500*time.Microsecond)
			select {
			case <-timer.C:
			case <-l.stop:
				timer.Stop()
				return false
			}
			continue
		}
		select {
		case <-l.stop:
			return false
		default:
		}
		ts := syscall.NsecToTimespec(d.Nanoseconds())
		_ = syscall.Nanosleep(&ts, nil)
	}
}
