package transport

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// Tests of the RTU timing rules: t3.5 before a request, the timeout counted
// from the end of the request on the wire, late replies, broadcasts.

// A reply that comes after its request timed out must not be read as the
// reply to the next request, even though both have the same shape.
func TestSerialLateReplyIsNotTakenForTheNext(t *testing.T) {
	sm := newSim()
	req1, req2 := readRegs(t, 1, 0, 2), readRegs(t, 1, 100, 2)
	late, want := sm.rtuAnswer(req1), sm.rtuAnswer(req2)
	if bytes.Equal(late, want) || len(late) != len(want) {
		t.Fatal("test needs two replies of the same shape and different content")
	}
	const timeout = 60 * time.Millisecond

	t.Run("arrives while the line is drained", func(t *testing.T) {
		b := newFakeBus(t)
		b.serve(func(n int, r []byte) action {
			if n == 0 {
				return action{} // the reply comes from the drain hook below
			}
			return paced(n, sm.rtuAnswer(r))
		})
		tr := newTestSerial(t, b, timeout)
		tr.eng.drainHook = func() {
			tr.eng.drainHook = nil
			b.deliver(late)
		}
		_, err := tr.Send(req1)
		wantKind(t, err, ErrTimeout)
		if d := tr.Stats().BytesDiscarded; d != uint64(len(late)) {
			t.Errorf("the drain discarded %d bytes, want the late reply's %d", d, len(late))
		}
		tr.SetTimeout(slowMachine)
		got, err := tr.Send(req2)
		wantBytes(t, "second", got, err, want)
	})
	t.Run("arrives between requests", func(t *testing.T) {
		b := newFakeBus(t)
		b.serve(func(n int, r []byte) action {
			if n == 0 {
				return action{} // the reply comes below, after the timeout
			}
			return paced(n, sm.rtuAnswer(r))
		})
		tr := newTestSerial(t, b, timeout)
		_, err := tr.Send(req1)
		wantKind(t, err, ErrTimeout)
		b.deliver(late)
		tr.SetTimeout(slowMachine)
		got, err := tr.Send(req2)
		wantBytes(t, "second", got, err, want)
		if d := tr.Stats().BytesDiscarded + uint64(b.flushedIn); d != uint64(len(late)) {
			t.Errorf("%d bytes discarded, want the late reply's %d", d, len(late))
		}
	})
}

func TestSerialBroadcast(t *testing.T) {
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action {
		if req[0] == 0 {
			sm.pdu(req[1 : len(req)-2])
			return action{}
		}
		return paced(n, sm.rtuAnswer(req))
	})
	tr := newTestSerial(t, b, slowMachine)
	resp, err := tr.Send(rtuRequest(t, 0, 6, 0, 9, 0x12, 0x34))
	wantKind(t, err, ErrNoResponse)
	if resp != nil {
		t.Errorf("broadcast returned % x", resp)
	}
	got, err := tr.Send(readRegs(t, 5, 9, 1))
	wantBytes(t, "read back", got, err, rtuFrame(5, []byte{3, 2, 0x12, 0x34}))
	if st := tr.Stats(); st.Broadcasts != 1 || st.Responses != 1 || st.Timeouts != 0 {
		t.Errorf("stats %+v: want 1 broadcast, 1 response", st)
	}
	if ExpectedResponseLen(rtuRequest(t, 0, 6, 0, 9, 0x12, 0x34)) != 0 {
		t.Error("ExpectedResponseLen of a broadcast should be 0")
	}
}

// The transport keeps t3.5 of silence after the last byte on the line before
// it writes, and a byte heard during that wait restarts it.
func TestSerialInterFrameGap(t *testing.T) {
	const baud = 1200 // t3.5 = 32 ms: large enough to measure
	gap := FrameGap(baud, 8, 'E', 1)
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action {
		return action{turnaround: 5 * time.Millisecond, bytes: sm.rtuAnswer(req)}
	})
	s, err := newSerial(SerialConfig{Device: "/dev/ttyFAKE0", Baud: baud, Timeout: slowMachine}, b.open)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 4 {
		if i == 2 {
			// A stray byte 10 ms after the last reply, inside t3.5: the
			// wait restarts from it, and it is discarded.
			time.Sleep(10 * time.Millisecond)
			b.deliver([]byte{0xFF})
		}
		b.mu.Lock()
		last, nw := b.lastByte, len(b.writes)
		b.mu.Unlock()
		req := readRegs(t, 1, uint16(i), 1)
		got, err := s.Send(req)
		wantBytes(t, fmt.Sprintf("round %d", i), got, err, sm.rtuAnswer(req))
		b.mu.Lock()
		wrote := b.writes[nw]
		b.mu.Unlock()
		if silent := wrote.Sub(last); i > 0 && silent < gap {
			t.Errorf("round %d: request written %v after the last byte on the line, want at least t3.5 = %v", i, silent, gap)
		}
	}
	if d := s.Stats().BytesDiscarded + uint64(b.flushedIn); d != 1 {
		t.Errorf("%d bytes discarded, want the stray one", d)
	}
}

// Write returns when the request is in the kernel's buffer; at 300 baud an
// 8-byte request then needs 293 ms more on the wire. The timeout must only
// start after that.
func TestSerialTimeoutStartsAfterTransmission(t *testing.T) {
	const baud = 300
	onWire := 8 * CharTime(baud, 8, 'E', 1)
	b := newFakeBus(t)
	sm := newSim()
	b.serve(func(n int, req []byte) action {
		return action{turnaround: onWire + 100*time.Millisecond, bytes: sm.rtuAnswer(req)}
	})
	s, err := newSerial(SerialConfig{Device: "/dev/ttyFAKE0", Baud: baud, Timeout: 300 * time.Millisecond}, b.open)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	req := readRegs(t, 1, 0, 1)
	got, err := s.Send(req)
	wantBytes(t, "reply 100 ms after the request left the wire, 393 ms after it was written", got, err, sm.rtuAnswer(req))
}
